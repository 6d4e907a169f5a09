-- A delivery is given up on: the stream entry leaves the outbox and a copy
-- enters the dead-letter stream in one step. If the entry was already
-- acknowledged (another worker reclaimed and settled it), nothing is added.
-- KEYS[1] outbox stream, KEYS[2] dead stream
-- ARGV[1] consumer group, ARGV[2] entry id, ARGV[3] dead stream max length,
-- ARGV[4..] field, value, ... of the dead entry. Returns 1 if moved.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
return 1
