-- Stores one accepted message atomically: stream entry, record and
-- idempotency key, or nothing at all.
-- KEYS[1] queue stream, KEYS[2] record, KEYS[3] idempotency key (optional)
-- ARGV[1] message id       ARGV[2] payload fingerprint  ARGV[3] record ttl ms
-- ARGV[4] idempotency ttl  ARGV[5] now ms               ARGV[6] recipient key
-- ARGV[7] message type     ARGV[8] Graph API body       ARGV[9] fallback body or ''
-- ARGV[10] sender name     ARGV[11] client name         ARGV[12] metadata JSON or ''
-- ARGV[13] history event JSON
-- Returns {outcome, message id}: 'queued', or for a known idempotency key
-- 'duplicate' (same payload) / 'conflict' (another payload) with the first id.
if KEYS[3] then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    local space = string.find(seen, ' ', 1, true) or (#seen + 1)
    local first_id = string.sub(seen, 1, space - 1)
    if string.sub(seen, space + 1) == ARGV[2] then
      return {'duplicate', first_id}
    end
    return {'conflict', first_id}
  end
end
if ARGV[9] == '' then
  redis.call('XADD', KEYS[1], '*', 'id', ARGV[1], 'rcpt', ARGV[6], 'kind', ARGV[7],
    'at', ARGV[5], 'body', ARGV[8])
else
  redis.call('XADD', KEYS[1], '*', 'id', ARGV[1], 'rcpt', ARGV[6], 'kind', ARGV[7],
    'at', ARGV[5], 'body', ARGV[8], 'fb', ARGV[9])
end
redis.call('HSET', KEYS[2], 'status', 'queued', 'sender', ARGV[10], 'client', ARGV[11],
  'to', ARGV[6], 'kind', ARGV[7], 'created_ms', ARGV[5], 'updated_ms', ARGV[5],
  'attempts', '0', 'metadata', ARGV[12], 'history', '[' .. ARGV[13] .. ']')
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if KEYS[3] then
  redis.call('SET', KEYS[3], ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[4])
end
return {'queued', ARGV[1]}
