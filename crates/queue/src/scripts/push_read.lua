-- Queues a read receipt for the sender's owner, unless `most` wait already
-- (nobody has drained them: no worker owns the sender). The list lives
-- `ttl_ms` after the last one: receipts nobody sent in that time are moot.
-- Returns 1 when queued, 0 when full.
if redis.call('LLEN', reads_key) >= tonumber(most) then
  return 0
end
redis.call('RPUSH', reads_key, request)
redis.call('PEXPIRE', reads_key, ttl_ms)
return 1
