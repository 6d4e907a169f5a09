-- Stores one accepted message that carries an idempotency key: the stream
-- entry and the key together, or, for a key already seen, nothing.
-- KEYS[1] queue stream, KEYS[2] idempotency key
-- ARGV[1] phone_number_id  ARGV[2] payload fingerprint  ARGV[3] idempotency ttl ms
-- ARGV[4..] the stream entry's field/value pairs
-- Returns {outcome, message id}: 'queued' with the new id, or for a known key
-- 'duplicate' (same payload) / 'conflict' (another payload) with the first id.
local seen = redis.call('GET', KEYS[2])
if seen then
  local space = string.find(seen, ' ', 1, true) or (#seen + 1)
  local first_id = string.sub(seen, 1, space - 1)
  if string.sub(seen, space + 1) == ARGV[2] then
    return {'duplicate', first_id}
  end
  return {'conflict', first_id}
end
local entry_id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))
local id = ARGV[1] .. '-' .. entry_id
redis.call('SET', KEYS[2], id .. ' ' .. ARGV[2], 'PX', ARGV[3])
return {'queued', id}
