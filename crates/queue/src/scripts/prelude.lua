-- What every script starts with, after the tables generated from the domain
-- and the queue crate: RANK (a status only ever moves to a higher rank) and
-- the message's field names (MESSAGE_FIELDS, REQUIRED_FIELDS, LEGACY_FIELDS).

-- A record's history (a JSON array, as text; false or empty when there is
-- none yet) with `event` (JSON) appended; `first`, if given, is the event a
-- history that is missing starts with.
local function history_with(history, event, first)
  if history and #history > 2 then
    return string.sub(history, 1, -2) .. ',' .. event .. ']'
  end
  if first then
    return '[' .. first .. ',' .. event .. ']'
  end
  return '[' .. event .. ']'
end

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
