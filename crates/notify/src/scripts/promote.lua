-- Moves retries that are due back into the outbox stream, oldest due first,
-- at most ARGV[2] per call so one call stays short. Members this code did
-- not write (not a JSON object with string url, signer and body) are
-- dropped rather than retried forever, and counted.
-- KEYS[1] retry set, KEYS[2] outbox stream
-- ARGV[1] now Unix ms, ARGV[2] most to move.
-- Returns {moved, dropped, the earliest remaining member's score (due Unix
-- ms) or -1, the stream's length, the retry set's size}: the caller
-- schedules its next call by the score, and reports the two sizes without
-- another round trip.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local moved, dropped = 0, 0
for _, member in ipairs(due) do
  local ok, n = pcall(cjson.decode, member)
  if ok and type(n) == 'table' and type(n.url) == 'string'
      and type(n.signer) == 'string' and type(n.body) == 'string'
      and type(n.attempts) == 'number' then
    local fields = {'url', n.url, 'signer', n.signer, 'body', n.body,
      'attempts', string.format('%d', n.attempts)}
    if type(n.last_error) == 'string' then
      table.insert(fields, 'last_error')
      table.insert(fields, n.last_error)
    end
    redis.call('XADD', KEYS[2], '*', unpack(fields))
    moved = moved + 1
  else
    dropped = dropped + 1
  end
  redis.call('ZREM', KEYS[1], member)
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {moved, dropped, first[2] or -1,
  redis.call('XLEN', KEYS[2]), redis.call('ZCARD', KEYS[1])}
