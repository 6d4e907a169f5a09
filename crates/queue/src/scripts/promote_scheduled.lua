-- Moves scheduled messages whose time has come into their stream, under
-- their own ids. Malformed members are dropped rather than retried forever.
-- KEYS[1] scheduled set, KEYS[2] transactional stream, KEYS[3] bulk stream
-- ARGV[1] now ms, ARGV[2] most to move.
-- Returns {how many were due, when the next one is due (ms) or -1}.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local ok, message = pcall(cjson.decode, member)
  if ok and type(message) == 'table' and type(message.id) == 'string'
      and type(message.fields) == 'table' then
    local stream = KEYS[2]
    if message.lane == 'b' then
      stream = KEYS[3]
    end
    -- Due from now (`due_ms`): its age, for `max_age`, counts from its time.
    redis.call('XADD', stream, '*', 'id', message.id, 'due_ms', ARGV[1], unpack(message.fields))
  end
  redis.call('ZREM', KEYS[1], member)
end
local next = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, next[2] or -1}
