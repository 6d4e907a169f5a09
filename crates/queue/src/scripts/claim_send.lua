-- A worker is about to send a message (the first step of each attempt),
-- and found its fate key there (Queue::claim_send takes an absent one with
-- a plain SET NX). The fate key decides between the send and a client's
-- cancel (cancel.lua), so exactly one of them wins: a cancelled message
-- leaves the queue here, its record already saying so; any other (marked
-- by an attempt that died, or whose outcome was lost) is marked 'sending'
-- afresh until the attempt's outcome is recorded (record_sent,
-- record_final, record_progress delete the mark), so a cancel meanwhile
-- answers 409. `sending_ttl_ms` bounds the mark after a crash.
-- Returns 0 when the message was cancelled, 1 when it is claimed.
if redis.call('GET', fate_key) == 'cancelled' then
  redis.call('XACK', stream_key, group, entry_id)
  redis.call('XDEL', stream_key, entry_id)
  return 0
end
redis.call('SET', fate_key, 'sending', 'PX', sending_ttl_ms)
return 1
