-- A client cancels a message. Its fate key decides against a worker's
-- claim (Queue::claim_send): a message being sent, or past sending, is not
-- cancelled. A message no worker has read yet leaves its stream now; one a
-- worker holds (read ahead, parked, waiting for its next attempt or held)
-- leaves when the worker claims it, and a scheduled one when it is due
-- (promote_scheduled.lua); both find the fate key. The record says
-- cancelled from now on; a message no worker touched yet gets its record
-- from its stream entry. `entry_id` is '' for a scheduled message.
-- Returns {'cancelled', client, recipient, callback_url, metadata},
-- {'already'}, {'conflict', status} or {'missing'}.
local fate = redis.call('GET', fate_key)
if fate == 'cancelled' then
  return {'already'}
end
if fate == 'sending' then
  return {'conflict', 'sending'}
end
local status = redis.call('HGET', record_key, 'status')
if status == 'cancelled' then
  return {'already'}
end
if status and (RANK[status] or RANK.sent) >= RANK.sent then
  return {'conflict', status}
end
local entry
if entry_id ~= '' then
  local found = redis.call('XRANGE', stream_key, entry_id, entry_id)
  if #found > 0 then
    entry = found[1][2]
  end
end
if not status and not entry then
  return {'missing'}
end
if entry then
  -- No consumer group yet (no worker ever ran): nobody read it either.
  local pending = redis.pcall('XPENDING', stream_key, group, entry_id, entry_id, 1)
  if pending.err or #pending == 0 then
    redis.call('XDEL', stream_key, entry_id)
  end
end
if not status then
  local copied = {'created_ms', accepted_ms, 'lane', lane_code}
  for i = 1, #entry, 2 do
    if entry[i] ~= 'id' then
      table.insert(copied, entry[i])
      table.insert(copied, entry[i + 1])
    end
  end
  redis.call('HSET', record_key, unpack(copied))
end
local history = history_with(redis.call('HGET', record_key, 'history'), event, queued_event)
redis.call('HSET', record_key, 'status', 'cancelled', 'updated_ms', now_ms,
  'history', history, 'next_attempt_ms', '')
-- Kept as long as the record, and at least until a scheduled message is due.
local ttl_ms = math.max(tonumber(record_ttl_ms), redis.call('PTTL', record_key))
redis.call('PEXPIRE', record_key, ttl_ms)
redis.call('SET', fate_key, 'cancelled', 'PX', ttl_ms)
local kept = redis.call('HMGET', record_key, client_field, recipient_field, callback_field,
  metadata_field)
return {'cancelled', kept[1] or '', kept[2] or '', kept[3] or '', kept[4] or ''}
