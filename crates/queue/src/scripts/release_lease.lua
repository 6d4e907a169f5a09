-- Hands a sender over: leaves the recent send times for the next owner and
-- frees the lease, only if this worker still holds it. The send times are
-- kept as "how long ago" against Redis's own clock, so that the next owner
-- reads them back without trusting either host's wall clock. `sends`: ms
-- before now, "1,250,...".
if redis.call('GET', lease_key) == worker then
  if sends ~= '' then
    local now = redis.call('TIME')
    local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
    redis.call('SET', send_log_key, now_ms .. '|' .. sends, 'PX', send_log_ttl_ms)
  end
  redis.call('DEL', lease_key)
  return 1
end
return 0
