-- Keeps a recipient's messages in order while some of theirs are parked:
-- an entry for a parked recipient is parked behind the recipient's other
-- messages (see park.lua), however it reached the worker. Two `mode`s:
-- 'read' reads up to `count` new entries first (XREADGROUP), and returns
-- those not parked; 'given' routes the entries named after the named
-- arguments (entry id, recipient, ...), just taken over, and returns the ids
-- it parked. `parked_prefix`: the prefix of the recipients' parked sets (the
-- recipient follows; every such key shares the sender's hash tag);
-- `recipient_field`: the entry field naming the recipient.
-- Returns {entries not parked ('read') or ids parked ('given'), how many
-- were parked, recipients parked, earliest due ms or -1}.
local function park(id, recipient)
  if not recipient or not redis.call('ZSCORE', parked_key, recipient) then
    return false
  end
  local ms, seq = string.match(id, '^(%d+)%-(%d+)$')
  if not ms then
    return false
  end
  redis.call('XCLAIM', stream_key, group, parked_consumer, 0, id, 'JUSTID')
  redis.call('ZADD', parked_prefix .. recipient, ms, ms .. '-' .. string.rep('0', 20 - #seq) .. seq)
  return true
end
local out = {}
local parked = 0
if mode == 'read' then
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count,
    'STREAMS', stream_key, '>')
  if read then
    for _, entry in ipairs(read[1][2]) do
      local fields = entry[2]
      local recipient
      for i = 1, #fields, 2 do
        if fields[i] == recipient_field then
          recipient = fields[i + 1]
          break
        end
      end
      if park(entry[1], recipient) then
        parked = parked + 1
      else
        table.insert(out, entry)
      end
    end
  end
else
  for i = MORE, #ARGV, 2 do
    if park(ARGV[i], ARGV[i + 1]) then
      parked = parked + 1
      table.insert(out, ARGV[i])
    end
  end
end
local first = redis.call('ZRANGE', parked_key, 0, 0, 'WITHSCORES')
return {out, parked, redis.call('ZCARD', parked_key), first[2] or -1}
