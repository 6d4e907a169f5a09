-- Takes up to `wanted` messages from a client's quotas, all or part:
-- at most `per_day` in the UTC day `day_key` names (0: no daily quota), and
-- at most `per_second` in any 1,000 ms (0: no rate quota), kept exact with
-- a log of the last second's sends by Redis's own clock, so that every api
-- process counts against the same figures.
-- Returns {granted, reason, retry_after_ms}: reason is '' when all were
-- granted, else the quota that stopped the rest ('client_daily_quota' or
-- 'client_rate_limited') and when it has room again.
local wanted = tonumber(wanted)
local per_day = tonumber(per_day)
local per_second = tonumber(per_second)
local granted = wanted
local reason = ''
local retry_after_ms = 0

if per_day > 0 then
  local used = tonumber(redis.call('GET', day_key) or '0')
  local room = math.max(per_day - used, 0)
  if room < granted then
    granted = room
    reason = 'client_daily_quota'
    retry_after_ms = tonumber(ms_to_day_end)
  end
end

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if per_second > 0 and granted > 0 then
  redis.call('ZREMRANGEBYSCORE', rate_key, '-inf', now_ms - 1000)
  local room = math.max(per_second - redis.call('ZCARD', rate_key), 0)
  if room < granted then
    granted = room
    reason = 'client_rate_limited'
    local oldest = redis.call('ZRANGE', rate_key, 0, 0, 'WITHSCORES')
    retry_after_ms = math.max(tonumber(oldest[2] or now_ms) + 1000 - now_ms, 1)
  end
end

if granted > 0 then
  if per_second > 0 then
    -- Members must be distinct: a counter in the same slot numbers them.
    local last = redis.call('INCRBY', sequence_key, granted)
    local members = {}
    for n = last - granted + 1, last do
      members[#members + 1] = now_ms
      members[#members + 1] = n
      -- unpack has a limit: a large batch goes in parts.
      if #members >= 2000 or n == last then
        redis.call('ZADD', rate_key, unpack(members))
        members = {}
      end
    end
    redis.call('PEXPIRE', rate_key, 2000)
    redis.call('PEXPIRE', sequence_key, 2000)
  end
  if per_day > 0 then
    redis.call('INCRBY', day_key, granted)
    redis.call('PEXPIRE', day_key, day_key_ttl_ms)
  end
end
return {granted, reason, retry_after_ms}
