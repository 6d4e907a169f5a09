-- A message ended without being sent (failed or expired): write its record
-- (status, code, title, history), dead-letter it if it failed, and take it
-- off the queue, in one step.
-- KEYS[1] queue stream, KEYS[2] record, KEYS[3] dead-letter stream
-- ARGV[1] consumer group  ARGV[2] stream entry id  ARGV[3] message id
-- ARGV[4] error code      ARGV[5] error title      ARGV[6] now ms
-- ARGV[7] attempts        ARGV[8] history event JSON  ARGV[9] 'queued' event JSON
-- ARGV[10] record ttl ms  ARGV[11] dead-letter max length  ARGV[12] reason
-- ARGV[13] final status ('failed' is dead-lettered, 'expired' is not)
-- ARGV[14] fallback used (0/1)
-- ARGV[15] number of entry field/value arguments that follow (2n)
-- ARGV[16 .. 15+2n] the stream entry's fields (copied to the dead letter, for replay)
-- ARGV[16+2n ..] the record's static field/value pairs
-- Returns 1, or 0 and changes nothing when the entry was acknowledged
-- already (see record_sent.lua).
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('XDEL', KEYS[1], ARGV[2])
local entry_end = 15 + tonumber(ARGV[15])
if ARGV[13] == 'failed' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[11], '*', 'id', ARGV[3], 'code', ARGV[4],
    'title', ARGV[5], 'reason', ARGV[12], 'attempts', ARGV[7], 'failed_ms', ARGV[6],
    unpack(ARGV, 16, entry_end))
end
local history = history_with(redis.call('HGET', KEYS[2], 'history'), ARGV[8], ARGV[9])
redis.call('HSET', KEYS[2], 'status', ARGV[13], 'error_code', ARGV[4], 'error_title', ARGV[5],
  'updated_ms', ARGV[6], 'attempts', ARGV[7], 'fallback_used', ARGV[14], 'history', history,
  'next_attempt_ms', '', unpack(ARGV, entry_end + 1))
redis.call('PEXPIRE', KEYS[2], ARGV[10])
return 1
