-- A message failed for good: record why, move it to the dead-letter stream,
-- and take it off the queue, in one step.
-- KEYS[1] queue stream, KEYS[2] record, KEYS[3] dead-letter stream
-- ARGV[1] consumer group  ARGV[2] stream entry id  ARGV[3] message id
-- ARGV[4] error code      ARGV[5] error title      ARGV[6] now ms
-- ARGV[7] attempts        ARGV[8] history event JSON
-- ARGV[9] dead-letter max length
-- ARGV[10] recipient key  ARGV[11] message type  ARGV[12] Graph API body  ARGV[13] reason
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[9], '*', 'id', ARGV[3], 'rcpt', ARGV[10],
  'kind', ARGV[11], 'body', ARGV[12], 'code', ARGV[4], 'title', ARGV[5],
  'reason', ARGV[13], 'attempts', ARGV[7], 'at', ARGV[6])
local status = redis.call('HGET', KEYS[2], 'status')
if not status then
  return 0
end
local history = redis.call('HGET', KEYS[2], 'history') or '[]'
if #history > 2 then
  history = string.sub(history, 1, -2) .. ',' .. ARGV[8] .. ']'
else
  history = '[' .. ARGV[8] .. ']'
end
redis.call('HSET', KEYS[2], 'status', 'failed', 'error_code', ARGV[4], 'error_title', ARGV[5],
  'updated_ms', ARGV[6], 'attempts', ARGV[7], 'history', history)
return 1
