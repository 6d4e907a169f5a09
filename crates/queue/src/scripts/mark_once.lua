-- Marks a field of a message's record, once: the caller counts what the
-- mark stands for (a billed message) only when this returns 1. A record
-- that is gone (expired) is not created again: 0.
if redis.call('EXISTS', record_key) == 0 then
  return 0
end
return redis.call('HSETNX', record_key, field, now_ms)
