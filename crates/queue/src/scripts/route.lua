-- Keeps a recipient's messages in order while some of theirs are parked:
-- an entry for a parked recipient is parked behind the recipient's other
-- messages (see park.lua), however it reached the worker. Two modes:
-- 'read' reads up to ARGV[3] new entries first (XREADGROUP), and returns
-- those not parked; 'given' routes the entries named in ARGV[8..] (entry
-- id, recipient, ...), just taken over, and returns the ids it parked.
-- KEYS[1] stream, KEYS[2] parked index
-- ARGV[1] group  ARGV[2] consumer  ARGV[3] count ('read')  ARGV[4] parked
-- consumer  ARGV[5] the prefix of the recipients' parked sets (the
-- recipient follows; every such key shares the sender's hash tag)
-- ARGV[6] the entry field naming the recipient  ARGV[7] mode
-- Returns {entries not parked ('read') or ids parked ('given'), how many
-- were parked, recipients parked, earliest due ms or -1}.
local function park(id, recipient)
  if not recipient or not redis.call('ZSCORE', KEYS[2], recipient) then
    return false
  end
  local ms, seq = string.match(id, '^(%d+)%-(%d+)$')
  if not ms then
    return false
  end
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[4], 0, id, 'JUSTID')
  redis.call('ZADD', ARGV[5] .. recipient, ms, ms .. '-' .. string.rep('0', 20 - #seq) .. seq)
  return true
end
local out = {}
local parked = 0
if ARGV[7] == 'read' then
  local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3],
    'STREAMS', KEYS[1], '>')
  if read then
    for _, entry in ipairs(read[1][2]) do
      local fields = entry[2]
      local recipient
      for i = 1, #fields, 2 do
        if fields[i] == ARGV[6] then
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
  for i = 8, #ARGV, 2 do
    if park(ARGV[i], ARGV[i + 1]) then
      parked = parked + 1
      table.insert(out, ARGV[i])
    end
  end
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {out, parked, redis.call('ZCARD', KEYS[2]), first[2] or -1}
