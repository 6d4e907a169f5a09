-- The message's own fields as `record` (a record key) keeps them, as
-- name/value pairs for a queue entry or a dead letter: each under its name
-- or the one it had before, the optional ones left out when empty.
local function message_fields(record)
  local pairs_out = {}
  for _, name in ipairs(MESSAGE_FIELDS) do
    local value = redis.call('HGET', record, name)
    if (not value or value == '') and LEGACY_FIELDS[name] then
      value = redis.call('HGET', record, LEGACY_FIELDS[name])
    end
    if (value and value ~= '') or REQUIRED_FIELDS[name] then
      table.insert(pairs_out, name)
      table.insert(pairs_out, value or '')
    end
  end
  return pairs_out
end
