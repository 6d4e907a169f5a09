-- Takes a sender's lease: when nobody holds it, when this worker does, or
-- when the holder is `gone_holder` (or ''), a worker the caller found gone
-- (its liveness key expired, and it never comes back under that name).
-- Returns {1, send log or false, Redis's clock in ms} when taken (the log as
-- release_lease.lua left it), {0, holder} when held by another.
local holder = redis.call('GET', lease_key)
if not holder or holder == worker or (gone_holder ~= '' and holder == gone_holder) then
  redis.call('SET', lease_key, worker)
  local now = redis.call('TIME')
  return {1, redis.call('GET', send_log_key), now[1] * 1000 + math.floor(now[2] / 1000)}
end
return {0, holder}
