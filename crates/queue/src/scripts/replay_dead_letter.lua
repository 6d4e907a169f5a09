-- Puts one dead letter back on its sender's queue, under its own message
-- id, and resets its record to queued; nothing if it was replayed already.
-- KEYS[1] dead-letter stream, KEYS[2] queue stream, KEYS[3] record
-- ARGV[1] dead-letter entry id  ARGV[2] message id  ARGV[3] now ms
-- ARGV[4] history event JSON    ARGV[5] record ttl ms
-- ARGV[6..] the queue entry's field/value pairs
-- The message is due again from now (`due_ms`): its age, for `max_age`,
-- counts from the replay.
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then
  return 0
end
redis.call('XADD', KEYS[2], '*', 'id', ARGV[2], 'due_ms', ARGV[3], unpack(ARGV, 6))
redis.call('XDEL', KEYS[1], ARGV[1])
local history = history_with(redis.call('HGET', KEYS[3], 'history'), ARGV[4])
redis.call('HSET', KEYS[3], 'status', 'queued', 'updated_ms', ARGV[3], 'attempts', '0',
  'error_code', '', 'error_title', '', 'next_attempt_ms', '', 'fallback_used', '0',
  'history', history)
redis.call('PEXPIRE', KEYS[3], ARGV[5])
return 1
