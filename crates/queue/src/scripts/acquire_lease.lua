-- Takes a sender's lease: when nobody holds it, when this worker does, or
-- when the holder is ARGV[2], a worker the caller found gone (its liveness
-- key expired, and it never comes back under that name).
-- KEYS[1] lease, KEYS[2] send log; ARGV[1] this worker, ARGV[2] a gone holder or ''.
-- Returns {1, send log or false, Redis's clock in ms} when taken (the log as
-- release_lease.lua left it), {0, holder} when held by another.
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] or (ARGV[2] ~= '' and holder == ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1])
  local now = redis.call('TIME')
  return {1, redis.call('GET', KEYS[2]), now[1] * 1000 + math.floor(now[2] / 1000)}
end
return {0, holder}
