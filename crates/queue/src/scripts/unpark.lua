-- Takes parked messages back into the worker: the oldest ones of each
-- recipient due by `due_by_ms`, at most `most_per_recipient` per recipient
-- and `most` in all, claimed for `consumer` (returned as XCLAIM gives them).
-- A recipient with messages left stays parked, due at `left_due_ms`: its
-- next message cannot go before the pair limit lets it. `parked_prefix`:
-- the prefix of the recipients' parked sets.
-- Returns {entries, recipients parked, earliest due ms or -1}.
local budget = tonumber(most)
local recipients = redis.call('ZRANGEBYSCORE', parked_key, '-inf', due_by_ms, 'LIMIT', 0, budget)
local out = {}
for _, recipient in ipairs(recipients) do
  if budget <= 0 then
    break
  end
  local set = parked_prefix .. recipient
  local take = math.min(tonumber(most_per_recipient), budget)
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
    local claimed = redis.call('XCLAIM', stream_key, group, consumer, 0, unpack(ids))
    for _, entry in ipairs(claimed) do
      table.insert(out, entry)
    end
  end
  budget = budget - #ids
  if redis.call('EXISTS', set) == 1 then
    redis.call('ZADD', parked_key, left_due_ms, recipient)
  else
    redis.call('ZREM', parked_key, recipient)
  end
end
local first = redis.call('ZRANGE', parked_key, 0, 0, 'WITHSCORES')
return {out, redis.call('ZCARD', parked_key), first[2] or -1}
