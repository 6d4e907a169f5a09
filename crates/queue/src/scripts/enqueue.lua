-- Stores one accepted message that needs more than a plain XADD: one with
-- an idempotency key (checked and set with it), one held until its
-- send_after (a sorted-set member and a record instead of a stream entry),
-- or, on a Redis Cluster, one whose command the driver may send twice
-- (after a dropped connection): its request's own key makes the repeat
-- answer the first id instead of queueing the message again.
-- The idempotency or repeat key, if any, follows the named keys. After the
-- named arguments come `record_pair_args` arguments of record field/value
-- pairs (used when scheduled), then the stream entry's field/value pairs.
-- `id_mark` is the lane's mark in message ids ('' or 'b'); `fingerprint`
-- is the payload's ('' for a repeat key); `scheduled_id` is '' to queue now.
-- Returns {outcome, message id}: 'queued' with the new id, or for a known key
-- 'duplicate' (same payload) / 'conflict' (another payload) with the first id.
local guard_key = KEYS[MORE_KEYS]
if guard_key then
  local seen = redis.call('GET', guard_key)
  if seen then
    local space = string.find(seen, ' ', 1, true) or (#seen + 1)
    local first_id = string.sub(seen, 1, space - 1)
    if fingerprint == '' then
      return {'queued', first_id}
    end
    if string.sub(seen, space + 1) == fingerprint then
      return {'duplicate', first_id}
    end
    return {'conflict', first_id}
  end
end
local record_end = MORE - 1 + tonumber(record_pair_args)
local id
if scheduled_id ~= '' then
  id = scheduled_id
  redis.call('ZADD', scheduled_key, due_ms, scheduled_member)
  redis.call('HSET', record_key, unpack(ARGV, MORE, record_end))
  redis.call('PEXPIRE', record_key, record_ttl_ms)
else
  local entry_id = redis.call('XADD', stream_key, '*', unpack(ARGV, record_end + 1))
  id = sender .. '-' .. id_mark .. entry_id
end
if guard_key then
  redis.call('SET', guard_key, id .. ' ' .. fingerprint, 'PX', guard_ttl_ms)
end
return {'queued', id}
