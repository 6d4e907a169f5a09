-- Meta accepted a message: write its record (status sent, wamid, history),
-- index the wamid, and take the entry off the queue, in one step so a crash
-- leaves either all or nothing.
-- KEYS[1] queue stream, KEYS[2] record, KEYS[3] wamid index, KEYS[4] recent recipients
-- ARGV[1] consumer group  ARGV[2] stream entry id  ARGV[3] message id
-- ARGV[4] wamid           ARGV[5] now ms           ARGV[6] attempts
-- ARGV[7] record ttl ms   ARGV[8] history event JSON  ARGV[9] 'queued' event JSON
-- ARGV[10] fallback used (0/1)  ARGV[11] recipient  ARGV[12] recipients kept for ms
-- ARGV[13..] the record's static field/value pairs (sender, client, to, ...)
-- Returns 1, or 0 and changes nothing when the entry was acknowledged
-- already: another worker finished the message after this one lost the
-- sender, and its record stands.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[7])
-- So that the sender's next owner knows whom it must not message again yet;
-- stamped with Redis's clock, which the next owner reads them against.
local time = redis.call('TIME')
local redis_ms = time[1] * 1000 + math.floor(time[2] / 1000)
redis.call('ZADD', KEYS[4], redis_ms, ARGV[11])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', redis_ms - tonumber(ARGV[12]))
local status, history = unpack(redis.call('HMGET', KEYS[2], 'status', 'history'))
history = history_with(history, ARGV[8], ARGV[9])
-- A status webhook may have overtaken us (delivered/read): keep the later state.
if (RANK[status] or 0) < RANK.sent then
  status = 'sent'
end
redis.call('HSET', KEYS[2], 'status', status, 'wamid', ARGV[4], 'updated_ms', ARGV[5],
  'attempts', ARGV[6], 'history', history, 'fallback_used', ARGV[10], 'next_attempt_ms', '',
  unpack(ARGV, 13))
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return 1
