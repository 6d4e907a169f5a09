-- A message ended without being sent (failed or expired): write its record
-- (status, code, title, history), dead-letter it if it failed, and take it
-- off the queue, in one step. After the named arguments come
-- `entry_pair_args` arguments of the stream entry's field/value pairs
-- (copied to the dead letter, for replay), then the record's static
-- field/value pairs. `final_status` 'failed' is dead-lettered, 'expired' is not.
-- A message a client cancelled before it expired keeps its cancelled
-- record; otherwise the claim on it (Queue::claim_send) ends with it.
-- Returns 1, or 0 and changes nothing when the entry was acknowledged
-- already (see record_sent.lua).
if redis.call('XACK', stream_key, group, entry_id) == 0 then
  return 0
end
redis.call('XDEL', stream_key, entry_id)
if redis.call('GET', fate_key) == 'cancelled' then
  return 1
end
redis.call('DEL', fate_key)
local entry_end = MORE - 1 + tonumber(entry_pair_args)
if final_status == 'failed' then
  redis.call('XADD', dead_key, 'MAXLEN', '~', dead_max_len, '*', 'id', message_id,
    'code', code, 'title', title, 'reason', reason, 'attempts', attempts,
    'failed_ms', now_ms, unpack(ARGV, MORE, entry_end))
end
local history = history_with(redis.call('HGET', record_key, 'history'), event, queued_event)
redis.call('HSET', record_key, 'status', final_status, 'error_code', code,
  'error_title', title, 'updated_ms', now_ms, 'attempts', attempts,
  'fallback_used', fallback_used, 'history', history, 'next_attempt_ms', '',
  unpack(ARGV, entry_end + 1))
redis.call('PEXPIRE', record_key, record_ttl_ms)
return 1
