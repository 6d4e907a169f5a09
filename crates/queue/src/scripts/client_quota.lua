-- Takes up to `wanted` messages from a client's quotas, all or part. Each
-- quota scope (the client's senders together, or one sender of it) has
-- three keys from MORE_KEYS on (its UTC day's count, its last second's
-- log, the counter that numbers the log) and two arguments from MORE on
-- (per_day, per_second; 0 for a quota it does not have). A scope allows
-- at most `per_day` in the UTC day its day key names, and at most
-- `per_second` in any 1,000 ms, kept exact with a log of the last second's
-- sends by Redis's own clock, so that every api process counts against the
-- same figures. What is granted is taken from every scope.
-- Returns {granted, reason, retry_after_ms}: reason is '' when all were
-- granted, else the quota that stopped the rest ('client_daily_quota' or
-- 'client_rate_limited') and when it has room again.
local granted = tonumber(wanted)
local reason = ''
local retry_after_ms = 0
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local scopes = {}
local k = MORE_KEYS
local a = MORE
while KEYS[k] do
  scopes[#scopes + 1] = {
    day_key = KEYS[k], rate_key = KEYS[k + 1], sequence_key = KEYS[k + 2],
    per_day = tonumber(ARGV[a]), per_second = tonumber(ARGV[a + 1]),
  }
  k = k + 3
  a = a + 2
end

for _, scope in ipairs(scopes) do
  if scope.per_day > 0 then
    local used = tonumber(redis.call('GET', scope.day_key) or '0')
    local room = math.max(scope.per_day - used, 0)
    if room < granted then
      granted = room
      reason = 'client_daily_quota'
      retry_after_ms = tonumber(ms_to_day_end)
    end
  end
  if scope.per_second > 0 then
    redis.call('ZREMRANGEBYSCORE', scope.rate_key, '-inf', now_ms - 1000)
    local room = math.max(scope.per_second - redis.call('ZCARD', scope.rate_key), 0)
    if room < granted then
      granted = room
      reason = 'client_rate_limited'
      local oldest = redis.call('ZRANGE', scope.rate_key, 0, 0, 'WITHSCORES')
      retry_after_ms = math.max(tonumber(oldest[2] or now_ms) + 1000 - now_ms, 1)
    end
  end
end

if granted > 0 then
  for _, scope in ipairs(scopes) do
    if scope.per_second > 0 then
      -- Members must be distinct: a counter in the same slot numbers them.
      local last = redis.call('INCRBY', scope.sequence_key, granted)
      local members = {}
      for n = last - granted + 1, last do
        members[#members + 1] = now_ms
        members[#members + 1] = n
        -- unpack has a limit: a large batch goes in parts.
        if #members >= 2000 or n == last then
          redis.call('ZADD', scope.rate_key, unpack(members))
          members = {}
        end
      end
      redis.call('PEXPIRE', scope.rate_key, 2000)
      redis.call('PEXPIRE', scope.sequence_key, 2000)
    end
    if scope.per_day > 0 then
      redis.call('INCRBY', scope.day_key, granted)
      redis.call('PEXPIRE', scope.day_key, day_key_ttl_ms)
    end
  end
end
return {granted, reason, retry_after_ms}
