-- A user's message arrived: remember it was handled (Meta delivers webhooks
-- more than once) and open or extend the user's window under each key the
-- user has. A window only ever moves later: an old message processed after
-- a newer one changes nothing.
-- KEYS[1] inbound-seen key, KEYS[2..] window keys
-- ARGV[1] inbound ms  ARGV[2] window closes at (ms)  ARGV[3] now ms  ARGV[4] seen ttl ms
-- Returns 1 for a new message, 0 for one handled before.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[4]) then
  return 0
end
if tonumber(ARGV[2]) > tonumber(ARGV[3]) then
  for i = 2, #KEYS do
    local current = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
    if current < tonumber(ARGV[1]) then
      redis.call('SET', KEYS[i], ARGV[1], 'PXAT', ARGV[2])
    end
  end
end
return 1
