-- Stores a webhook body unless the events stream already holds max_backlog
-- entries: the check and the XADD in one step, so that the cap costs no
-- round trip and api processes storing at once cannot overshoot it.
-- KEYS[1] the events stream
-- ARGV[1] max_backlog, ARGV[2..] the entry's field, value, ...
-- Returns 1 when stored, 0 when the stream is full and nothing was stored.
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
return 1
