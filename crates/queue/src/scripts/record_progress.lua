-- An attempt failed and another is due, or the message is on hold: write the
-- record (status, attempts, due time, last error, history). The stream entry
-- stays pending, so the message stays this sender's until it is done, in
-- order with the recipient's later messages; the due time survives a crash.
-- KEYS[1] record, KEYS[2] queue stream
-- ARGV[1] status ('retrying')  ARGV[2] now ms  ARGV[3] attempts  ARGV[4] next attempt ms
-- ARGV[5] error code  ARGV[6] error title  ARGV[7] fallback used (0/1)
-- ARGV[8] record ttl ms  ARGV[9] history event JSON  ARGV[10] 'queued' event JSON
-- ARGV[11] consumer group  ARGV[12] stream entry id
-- ARGV[13..] the record's static field/value pairs
-- Returns 1, or 0 and changes nothing when the entry is no longer pending:
-- another worker finished the message after this one lost the sender.
if #redis.call('XPENDING', KEYS[2], ARGV[11], ARGV[12], ARGV[12], 1) == 0 then
  return 0
end
local history = history_with(redis.call('HGET', KEYS[1], 'history'), ARGV[9], ARGV[10])
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated_ms', ARGV[2], 'attempts', ARGV[3],
  'next_attempt_ms', ARGV[4], 'error_code', ARGV[5], 'error_title', ARGV[6],
  'fallback_used', ARGV[7], 'history', history, unpack(ARGV, 13))
redis.call('PEXPIRE', KEYS[1], ARGV[8])
return 1
