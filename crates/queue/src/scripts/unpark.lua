-- Takes parked messages back into the worker: the oldest ones of each
-- recipient due by ARGV[3], at most ARGV[5] per recipient and ARGV[4] in all,
-- claimed for the consumer ARGV[2] (returned as XCLAIM gives them). A
-- recipient with messages left stays parked, due at ARGV[6]: its next
-- message cannot go before the pair limit lets it.
-- KEYS[1] stream, KEYS[2] parked index
-- ARGV[1] group  ARGV[2] consumer  ARGV[3] due by (ms)  ARGV[4] most messages
-- ARGV[5] most per recipient  ARGV[6] due ms for what is left
-- ARGV[7] the prefix of the recipients' parked sets
-- Returns {entries, recipients parked, earliest due ms or -1}.
local budget = tonumber(ARGV[4])
local recipients = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'LIMIT', 0, budget)
local out = {}
for _, recipient in ipairs(recipients) do
  if budget <= 0 then
    break
  end
  local set = ARGV[7] .. recipient
  local take = math.min(tonumber(ARGV[5]), budget)
  local members = redis.call('ZPOPMIN', set, take)
  local ids = {}
  for i = 1, #members, 2 do
    local ms, seq = string.match(members[i], '^(%d+)%-(%d+)$')
    if ms then
      local trimmed = string.match(seq, '^0*(%d-)$')
      if trimmed == '' then
        trimmed = '0'
      end
      table.insert(ids, ms .. '-' .. trimmed)
    end
  end
  if #ids > 0 then
    local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids))
    for _, entry in ipairs(claimed) do
      table.insert(out, entry)
    end
  end
  budget = budget - #ids
  if redis.call('EXISTS', set) == 1 then
    redis.call('ZADD', KEYS[2], ARGV[6], recipient)
  else
    redis.call('ZREM', KEYS[2], recipient)
  end
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {out, redis.call('ZCARD', KEYS[2]), first[2] or -1}
