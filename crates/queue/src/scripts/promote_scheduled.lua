-- Moves scheduled messages whose time has come into their stream, under
-- their own ids, `most` at a time. Malformed members are dropped rather
-- than retried forever, and cancelled ones (their fate key, under
-- `fate_prefix`, says so; see cancel.lua) are dropped.
-- Returns {how many were due, when the next one is due (ms) or -1}.
local due = redis.call('ZRANGEBYSCORE', scheduled_key, '-inf', now_ms, 'LIMIT', 0, most)
for _, member in ipairs(due) do
  local ok, message = pcall(cjson.decode, member)
  if ok and type(message) == 'table' and type(message.id) == 'string'
      and type(message.fields) == 'table'
      and redis.call('GET', fate_prefix .. message.id) ~= 'cancelled' then
    local stream = transactional_key
    if message.lane == 'b' then
      stream = bulk_key
    end
    -- Due from now (`due_ms`): its age, for `max_age`, counts from its time.
    redis.call('XADD', stream, '*', 'id', message.id, 'due_ms', now_ms, unpack(message.fields))
  end
  redis.call('ZREM', scheduled_key, member)
end
local next = redis.call('ZRANGE', scheduled_key, 0, 0, 'WITHSCORES')
return {#due, next[2] or -1}
