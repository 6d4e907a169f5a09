-- A user's message arrived: remember it was handled (Meta delivers webhooks
-- more than once) and open or extend the user's window under each key the
-- user has (the window keys follow the named key). A window only ever moves
-- later: an old message processed after a newer one changes nothing.
-- Returns 1 for a new message, 0 for one handled before.
if not redis.call('SET', seen_key, inbound_ms, 'NX', 'PX', seen_ttl_ms) then
  return 0
end
if tonumber(closes_ms) > tonumber(now_ms) then
  for i = MORE_KEYS, #KEYS do
    local current = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
    if current < tonumber(inbound_ms) then
      redis.call('SET', KEYS[i], inbound_ms, 'PXAT', closes_ms)
    end
  end
end
return 1
