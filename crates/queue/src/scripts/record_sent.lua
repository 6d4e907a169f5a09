-- Meta accepted a message: write its record (status sent, wamid, history),
-- index the wamid, and take the entry off the queue, in one step so a crash
-- leaves either all or nothing. The record's static field/value pairs
-- (sender, client, recipient, ...) follow the named arguments.
-- The claim on the message (Queue::claim_send) ends with it.
-- Returns 1, or 0 and changes nothing when the entry was acknowledged
-- already: another worker finished the message after this one lost the
-- sender, and its record stands.
if redis.call('XACK', stream_key, group, entry_id) == 0 then
  return 0
end
redis.call('XDEL', stream_key, entry_id)
redis.call('DEL', fate_key)
redis.call('SET', wamid_key, message_id, 'PX', record_ttl_ms)
-- So that the sender's next owner knows whom it must not message again yet;
-- stamped with Redis's clock, which the next owner reads them against.
local time = redis.call('TIME')
local redis_ms = time[1] * 1000 + math.floor(time[2] / 1000)
redis.call('ZADD', recent_key, redis_ms, recipient)
redis.call('ZREMRANGEBYSCORE', recent_key, '-inf', redis_ms - tonumber(recent_ms))
local status, history = unpack(redis.call('HMGET', record_key, 'status', 'history'))
history = history_with(history, event, queued_event)
-- A status webhook may have overtaken us (delivered/read): keep the later state.
if (RANK[status] or 0) < RANK.sent then
  status = 'sent'
end
redis.call('HSET', record_key, 'status', status, 'wamid', wamid, 'updated_ms', now_ms,
  'attempts', attempts, 'history', history, 'fallback_used', fallback_used,
  'next_attempt_ms', '', unpack(ARGV, MORE))
redis.call('PEXPIRE', record_key, record_ttl_ms)
return 1
