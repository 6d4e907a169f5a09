-- A business-initiated conversation (a template outside an open window)
-- asks for room under its portfolio's messaging limit: unique users in the
-- last `window_ms`. A user counted within it costs nothing more (their
-- first conversation keeps its time). The limit is `limit_override` when
-- above 0, else the one Meta reported (`limit_key`; absent: unknown or
-- unlimited, so nothing is held). New users are held once `hold_at` (a
-- share) of the limit is counted.
-- Returns {verdict, counted, frees_at_ms, limit}: 'counted' (a new user),
-- 'known' (counted already), or 'held' with when the oldest count leaves
-- the window and frees room; `counted` is the users in the window after;
-- `limit` is the one applied (0 when none).
local now = tonumber(now_ms)
local limit = tonumber(limit_override)
if limit <= 0 then
  limit = tonumber(redis.call('GET', limit_key) or '0') or 0
end
redis.call('ZREMRANGEBYSCORE', users_key, '-inf', now - tonumber(window_ms))
if redis.call('ZSCORE', users_key, recipient) then
  return {'known', redis.call('ZCARD', users_key), 0, limit}
end
local counted = redis.call('ZCARD', users_key)
if limit > 0 and counted >= math.max(math.floor(limit * tonumber(hold_at)), 1) then
  local oldest = redis.call('ZRANGE', users_key, 0, 0, 'WITHSCORES')
  local frees_at = tonumber(oldest[2] or now) + tonumber(window_ms)
  return {'held', counted, frees_at, limit}
end
redis.call('ZADD', users_key, now, recipient)
redis.call('PEXPIRE', users_key, window_ms)
return {'counted', counted + 1, 0, limit}
