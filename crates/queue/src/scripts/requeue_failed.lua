-- Meta reported a failure after accepting a message, and it is worth another
-- try (a transient code, or 131047 with a fallback template to send): queue
-- the message again under its own id, due at `due_ms`, and record why. Each
-- (failed, wamid) counts once. It goes back to the stream it was in (the
-- record's `lane`; `lane_code`, from its id, for a record written before
-- records kept it). `send_fallback` and `close_window` are '1' or '0'.
-- Returns 'moved', 'recorded' (Meta already reported it delivered),
-- 'duplicate', 'stale' or 'unknown', as apply_status.lua.
local recorded_wamid = redis.call('HGET', record_key, 'wamid')
if not recorded_wamid then
  return 'unknown'
end
if recorded_wamid ~= event_wamid then
  return 'stale'
end
if redis.call('HSETNX', record_key, 'seen:failed:' .. event_wamid, now_ms) == 0 then
  return 'duplicate'
end
if close_window == '1' then
  redis.call('DEL', window_key)
end
redis.call('HSET', record_key, 'history',
  history_with(redis.call('HGET', record_key, 'history'), event))
if (RANK[redis.call('HGET', record_key, 'status')] or 0) > RANK['sent'] then
  return 'recorded'
end
local progress = redis.call('HMGET', record_key, 'attempts', 'fallback_used')
local fallback = progress[2] or '0'
if send_fallback == '1' then
  fallback = '1'
end
local lane = redis.call('HGET', record_key, 'lane') or lane_code
local fields = message_fields(record_key)
table.insert(fields, 'attempts')
table.insert(fields, progress[1] or '1')
table.insert(fields, 'fallback_used')
table.insert(fields, fallback)
-- The promote_scheduled.lua member shape: it moves the message into its stream when due.
redis.call('ZADD', scheduled_key, due_ms,
  cjson.encode({id = message_id, lane = lane, fields = fields}))
redis.call('HSET', record_key, 'status', 'retrying', 'updated_ms', now_ms, 'next_attempt_ms',
  due_ms, 'error_code', code, 'error_title', title, 'fallback_used', fallback)
return 'moved'
