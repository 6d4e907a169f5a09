-- Stores one accepted message that needs more than a plain XADD: one with
-- an idempotency key (checked and set with it), one held until its
-- send_after (a sorted-set member and a record instead of a stream entry),
-- or, on a Redis Cluster, one whose command the driver may send twice
-- (after a dropped connection): its request's own key makes the repeat
-- answer the first id instead of queueing the message again.
-- KEYS[1] stream, KEYS[2] scheduled set, KEYS[3] record (used when scheduled),
-- KEYS[4] idempotency or repeat key (optional)
-- ARGV[1] phone_number_id   ARGV[2] the lane's mark in message ids ('' or 'b')
-- ARGV[3] payload fingerprint ('' for a repeat key)
-- ARGV[4] that key's ttl ms  ARGV[5] scheduled id ('' to queue now)  ARGV[6] due ms
-- ARGV[7] record ttl ms     ARGV[8] scheduled member JSON
-- ARGV[9] number of record field/value arguments that follow (2n)
-- ARGV[10 .. 9+2n] record fields; ARGV[10+2n ..] stream entry fields
-- Returns {outcome, message id}: 'queued' with the new id, or for a known key
-- 'duplicate' (same payload) / 'conflict' (another payload) with the first id.
if KEYS[4] then
  local seen = redis.call('GET', KEYS[4])
  if seen then
    local space = string.find(seen, ' ', 1, true) or (#seen + 1)
    local first_id = string.sub(seen, 1, space - 1)
    if ARGV[3] == '' then
      return {'queued', first_id}
    end
    if string.sub(seen, space + 1) == ARGV[3] then
      return {'duplicate', first_id}
    end
    return {'conflict', first_id}
  end
end
local record_end = 9 + tonumber(ARGV[9])
local id
if ARGV[5] ~= '' then
  id = ARGV[5]
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[8])
  redis.call('HSET', KEYS[3], unpack(ARGV, 10, record_end))
  redis.call('PEXPIRE', KEYS[3], ARGV[7])
else
  local entry_id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, record_end + 1))
  id = ARGV[1] .. '-' .. ARGV[2] .. entry_id
end
if KEYS[4] then
  redis.call('SET', KEYS[4], id .. ' ' .. ARGV[3], 'PX', ARGV[4])
end
return {'queued', id}
