-- An attempt failed and another is due, or the message is on hold: write the
-- record (status, attempts, due time, last error, history). The stream entry
-- stays pending, so the message stays this sender's until it is done, in
-- order with the recipient's later messages; the due time survives a crash.
-- The record's static field/value pairs follow the named arguments.
-- Returns 1, or 0 and changes nothing when the entry is no longer pending:
-- another worker finished the message after this one lost the sender.
if #redis.call('XPENDING', stream_key, group, entry_id, entry_id, 1) == 0 then
  return 0
end
-- The attempt is over: until the next one claims it, it may be cancelled.
redis.call('DEL', fate_key)
local history = history_with(redis.call('HGET', record_key, 'history'), event, queued_event)
redis.call('HSET', record_key, 'status', status, 'updated_ms', now_ms, 'attempts', attempts,
  'next_attempt_ms', next_attempt_ms, 'error_code', code, 'error_title', title,
  'fallback_used', fallback_used, 'history', history, unpack(ARGV, MORE))
redis.call('PEXPIRE', record_key, record_ttl_ms)
return 1
