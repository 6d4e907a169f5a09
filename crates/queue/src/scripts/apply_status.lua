-- A status from Meta's webhook for a message we sent: add it to the history,
-- move the status forward (never back: a late 'delivered' after 'read' is
-- history only), and for a final failure dead-letter a copy that can be
-- replayed. Each (status, wamid) counts once, however often Meta sends it.
-- KEYS[1] record, KEYS[2] dead-letter stream
-- ARGV[1] wamid  ARGV[2] status  ARGV[3] history event JSON  ARGV[4] now ms
-- ARGV[5] error code  ARGV[6] error title  ARGV[7] reason (failed only)
-- ARGV[8] dead-letter max length  ARGV[9] message id
-- Returns 'moved', 'recorded', 'duplicate', 'stale' (the event is for an
-- earlier send of a message sent again) or 'unknown' (no such record).
local wamid = redis.call('HGET', KEYS[1], 'wamid')
if not wamid then
  return 'unknown'
end
if wamid ~= ARGV[1] then
  return 'stale'
end
if redis.call('HSETNX', KEYS[1], 'seen:' .. ARGV[2] .. ':' .. ARGV[1], ARGV[4]) == 0 then
  return 'duplicate'
end
-- Meta's events may arrive out of order: a late one goes before the later
-- Meta events already there, so the history reads sent, delivered, read.
local ok, events = pcall(cjson.decode, redis.call('HGET', KEYS[1], 'history') or '[]')
if not ok or type(events) ~= 'table' then
  events = {}
end
local event = cjson.decode(ARGV[3])
local at = #events + 1
while at > 1 and type(events[at - 1]) == 'table' and events[at - 1].source == 'meta'
    and (RANK[events[at - 1].status] or 0) > RANK[ARGV[2]] do
  at = at - 1
end
table.insert(events, at, event)
redis.call('HSET', KEYS[1], 'history', cjson.encode(events))
local current = redis.call('HGET', KEYS[1], 'status')
if (RANK[current] or 0) >= RANK[ARGV[2]] then
  return 'recorded'
end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'updated_ms', ARGV[4])
if ARGV[2] == 'failed' then
  redis.call('HSET', KEYS[1], 'error_code', ARGV[5], 'error_title', ARGV[6])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*', 'id', ARGV[9], 'code', ARGV[5],
    'title', ARGV[6], 'reason', ARGV[7],
    'attempts', redis.call('HGET', KEYS[1], 'attempts') or '1', 'failed_ms', ARGV[4],
    unpack(message_fields(KEYS[1])))
elseif ARGV[2] == 'delivered' or ARGV[2] == 'read' then
  -- Delivered: no resend can be needed any more, so the bodies can go.
  redis.call('HDEL', KEYS[1], 'body', 'fb')
end
return 'moved'
