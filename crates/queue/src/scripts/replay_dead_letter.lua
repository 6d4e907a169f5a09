-- Puts one dead letter back on its sender's queue, under its own message
-- id, and resets its record to queued; nothing if it was replayed already.
-- The queue entry's field/value pairs follow the named arguments.
-- The message is due again from now (`due_ms`): its age, for `max_age`,
-- counts from the replay.
if #redis.call('XRANGE', dead_key, dead_entry_id, dead_entry_id) == 0 then
  return 0
end
redis.call('XADD', stream_key, '*', 'id', message_id, 'due_ms', now_ms, unpack(ARGV, MORE))
redis.call('XDEL', dead_key, dead_entry_id)
local history = history_with(redis.call('HGET', record_key, 'history'), event)
redis.call('HSET', record_key, 'status', 'queued', 'updated_ms', now_ms, 'attempts', '0',
  'error_code', '', 'error_title', '', 'next_attempt_ms', '', 'fallback_used', '0',
  'history', history)
redis.call('PEXPIRE', record_key, record_ttl_ms)
return 1
