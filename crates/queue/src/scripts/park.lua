-- Parks messages of one recipient: entries the worker holds (or has just
-- read) become pending for the reserved `parked_consumer`, listed under the
-- recipient in entry-id order, so they wait in Redis instead of the worker's
-- memory and keep their place in the recipient's order. Only entries still
-- pending are parked: one finished meanwhile is left alone. The entry ids
-- follow the named arguments.
-- `parked_key`: the parked index (recipient -> due ms); `recipient_parked_key`:
-- the recipient's parked set (member: entry id with its sequence
-- zero-padded, score: its milliseconds). `due_ms` is '' to keep the
-- recipient's due time (a message read for a recipient already parked waits
-- behind the others).
-- Returns {recipients parked, earliest due ms or -1}.
for i = MORE, #ARGV do
  local ms, seq = string.match(ARGV[i], '^(%d+)%-(%d+)$')
  if ms then
    local claimed = redis.call('XCLAIM', stream_key, group, parked_consumer, 0, ARGV[i], 'JUSTID')
    if #claimed > 0 then
      redis.call('ZADD', recipient_parked_key, ms, ms .. '-' .. string.rep('0', 20 - #seq) .. seq)
    end
  end
end
if redis.call('EXISTS', recipient_parked_key) == 1 then
  if due_ms ~= '' then
    redis.call('ZADD', parked_key, due_ms, recipient)
  else
    redis.call('ZADD', parked_key, 'NX', now_ms, recipient)
  end
end
local first = redis.call('ZRANGE', parked_key, 0, 0, 'WITHSCORES')
return {redis.call('ZCARD', parked_key), first[2] or -1}
