-- Hands a sender over: leaves the recent send times for the next owner and
-- frees the lease, only if this worker still holds it.
-- KEYS[1] lease, KEYS[2] send log; ARGV[1] worker id, ARGV[2] send log, ARGV[3] its ttl ms.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] ~= '' then
    redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  end
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
