-- A worker gives back its claim (Queue::claim_send) on a message whose
-- attempt ended before the Graph API call with nothing to record: until the
-- next attempt claims it, it may be cancelled. A cancelled mark is kept.
-- Returns 1 if a claim was given back.
if redis.call('GET', fate_key) == 'sending' then
  return redis.call('DEL', fate_key)
end
return 0
