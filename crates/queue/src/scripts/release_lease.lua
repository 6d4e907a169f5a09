-- Hands a sender over: leaves the recent send times for the next owner and
-- frees the lease, only if this worker still holds it. The send times are
-- kept as "how long ago" against Redis's own clock, so that the next owner
-- reads them back without trusting either host's wall clock.
-- KEYS[1] lease, KEYS[2] send log
-- ARGV[1] worker id  ARGV[2] the sends, ms before now ("1,250,...")  ARGV[3] its ttl ms
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] ~= '' then
    local now = redis.call('TIME')
    local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
    redis.call('SET', KEYS[2], now_ms .. '|' .. ARGV[2], 'PX', ARGV[3])
  end
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
