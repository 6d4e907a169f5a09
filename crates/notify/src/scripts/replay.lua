-- Puts dead letters back into the outbox with their attempts reset, each
-- one leaving the dead stream in the same step, so two replays at once
-- cannot queue it twice. Ids that are not (or no longer) there, and entries
-- without url, signer and body, are skipped.
-- KEYS[1] dead stream, KEYS[2] outbox stream
-- ARGV[1..] dead entry ids. Returns how many were re-queued.
local replayed = 0
for _, id in ipairs(ARGV) do
  local found = redis.call('XRANGE', KEYS[1], id, id)
  if #found == 1 then
    local flat = found[1][2]
    local f = {}
    for i = 1, #flat, 2 do
      f[flat[i]] = flat[i + 1]
    end
    if f.url and f.signer and f.body then
      redis.call('XADD', KEYS[2], '*', 'url', f.url, 'signer', f.signer,
        'body', f.body, 'attempts', '0')
      redis.call('XDEL', KEYS[1], id)
      replayed = replayed + 1
    end
  end
end
return replayed
