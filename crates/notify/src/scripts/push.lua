-- Queues a notification unless max_backlog already wait: the outbox
-- stream (to deliver, or in flight) and the retry set together. The check
-- and the XADD in one step, so the cap costs no round trip and pushes at
-- once cannot overshoot it.
-- KEYS[1] outbox stream, KEYS[2] retry set
-- ARGV[1] max_backlog, ARGV[2..] field, value, ... of the entry.
-- Returns 1 when queued, 0 when full and nothing was stored.
local waiting = redis.call('XLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])
if waiting >= tonumber(ARGV[1]) then
  return 0
end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
return 1
