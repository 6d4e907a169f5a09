-- Parks messages of one recipient: entries the worker holds (or has just
-- read) become pending for the reserved 'parked' consumer, listed under the
-- recipient in entry-id order, so they wait in Redis instead of the worker's
-- memory and keep their place in the recipient's order. Only entries still
-- pending are parked: one finished meanwhile is left alone.
-- KEYS[1] stream, KEYS[2] parked index (recipient -> due ms), KEYS[3] the
-- recipient's parked set (member: entry id with its sequence zero-padded,
-- score: its milliseconds)
-- ARGV[1] group  ARGV[2] parked consumer  ARGV[3] recipient
-- ARGV[4] due ms, or '' to keep the recipient's due time (a message read
-- for a recipient already parked waits behind the others)
-- ARGV[5] now ms  ARGV[6..] entry ids
-- Returns {recipients parked, earliest due ms or -1}.
for i = 6, #ARGV do
  local ms, seq = string.match(ARGV[i], '^(%d+)%-(%d+)$')
  if ms then
    local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    if #claimed > 0 then
      redis.call('ZADD', KEYS[3], ms, ms .. '-' .. string.rep('0', 20 - #seq) .. seq)
    end
  end
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  if ARGV[4] ~= '' then
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
  else
    redis.call('ZADD', KEYS[2], 'NX', ARGV[5], ARGV[3])
  end
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {redis.call('ZCARD', KEYS[2]), first[2] or -1}
