-- Meta reported a failure after accepting a message, and it is worth another
-- try (a transient code, or 131047 with a fallback template to send): queue
-- the message again under its own id, due at ARGV[6], and record why. Each
-- (failed, wamid) counts once.
-- KEYS[1] record, KEYS[2] scheduled set, KEYS[3] the recipient's window
-- ARGV[1] wamid  ARGV[2] history event JSON  ARGV[3] now ms  ARGV[4] error code
-- ARGV[5] error title  ARGV[6] due ms  ARGV[7] message id  ARGV[8] lane code ('t' or 'b')
-- ARGV[9] send the fallback (0/1)  ARGV[10] close the window (0/1)
-- Returns 'moved', 'recorded' (Meta already reported it delivered),
-- 'duplicate', 'stale' or 'unknown', as apply_status.lua.
local wamid = redis.call('HGET', KEYS[1], 'wamid')
if not wamid then
  return 'unknown'
end
if wamid ~= ARGV[1] then
  return 'stale'
end
if redis.call('HSETNX', KEYS[1], 'seen:failed:' .. ARGV[1], ARGV[3]) == 0 then
  return 'duplicate'
end
if ARGV[10] == '1' then
  redis.call('DEL', KEYS[3])
end
redis.call('HSET', KEYS[1], 'history',
  history_with(redis.call('HGET', KEYS[1], 'history'), ARGV[2]))
if (RANK[redis.call('HGET', KEYS[1], 'status')] or 0) > RANK['sent'] then
  return 'recorded'
end
local progress = redis.call('HMGET', KEYS[1], 'attempts', 'fallback_used')
local fallback = progress[2] or '0'
if ARGV[9] == '1' then
  fallback = '1'
end
local fields = message_fields(KEYS[1])
table.insert(fields, 'attempts')
table.insert(fields, progress[1] or '1')
table.insert(fields, 'fallback_used')
table.insert(fields, fallback)
-- The promote_scheduled.lua member shape: it moves the message into its stream when due.
redis.call('ZADD', KEYS[2], ARGV[6], cjson.encode({id = ARGV[7], lane = ARGV[8], fields = fields}))
redis.call('HSET', KEYS[1], 'status', 'retrying', 'updated_ms', ARGV[3], 'next_attempt_ms',
  ARGV[6], 'error_code', ARGV[4], 'error_title', ARGV[5], 'fallback_used', fallback)
return 'moved'
