-- A delivery failed and will be tried again later: the stream entry leaves
-- the outbox and the notification enters the retry set in one step, so a
-- crash cannot lose it or keep both. If the entry was already acknowledged
-- (another worker reclaimed and settled it), nothing is added.
-- KEYS[1] outbox stream, KEYS[2] retry set
-- ARGV[1] consumer group, ARGV[2] entry id, ARGV[3] due Unix ms,
-- ARGV[4] the notification as JSON (retry member). Returns 1 if moved.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
