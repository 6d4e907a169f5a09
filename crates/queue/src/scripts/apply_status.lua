-- A status from Meta's webhook for a message we sent: add it to the history,
-- move the status forward (never back: a late 'delivered' after 'read' is
-- history only), and for a final failure dead-letter a copy that can be
-- replayed. Each (status, wamid) counts once, however often Meta sends it.
-- `reason` is for 'failed' only.
-- Returns 'moved', 'recorded', 'duplicate', 'stale' (the event is for an
-- earlier send of a message sent again) or 'unknown' (no such record).
local recorded_wamid = redis.call('HGET', record_key, 'wamid')
if not recorded_wamid then
  return 'unknown'
end
if recorded_wamid ~= event_wamid then
  return 'stale'
end
if redis.call('HSETNX', record_key, 'seen:' .. new_status .. ':' .. event_wamid, now_ms) == 0 then
  return 'duplicate'
end
-- Meta's events may arrive out of order: a late one goes before the later
-- Meta events already there, so the history reads sent, delivered, read.
local ok, events = pcall(cjson.decode, redis.call('HGET', record_key, 'history') or '[]')
if not ok or type(events) ~= 'table' then
  events = {}
end
local at = #events + 1
while at > 1 and type(events[at - 1]) == 'table' and events[at - 1].source == 'meta'
    and (RANK[events[at - 1].status] or 0) > RANK[new_status] do
  at = at - 1
end
table.insert(events, at, cjson.decode(event))
redis.call('HSET', record_key, 'history', cjson.encode(events))
local current = redis.call('HGET', record_key, 'status')
if (RANK[current] or 0) >= RANK[new_status] then
  return 'recorded'
end
redis.call('HSET', record_key, 'status', new_status, 'updated_ms', now_ms)
if new_status == 'failed' then
  redis.call('HSET', record_key, 'error_code', code, 'error_title', title)
  redis.call('XADD', dead_key, 'MAXLEN', '~', dead_max_len, '*', 'id', message_id,
    'code', code, 'title', title, 'reason', reason,
    'attempts', redis.call('HGET', record_key, 'attempts') or '1', 'failed_ms', now_ms,
    unpack(message_fields(record_key)))
elseif new_status == 'delivered' or new_status == 'read' then
  -- Delivered: no resend can be needed any more, so the bodies can go.
  redis.call('HDEL', record_key, 'body', 'fb')
end
return 'moved'
