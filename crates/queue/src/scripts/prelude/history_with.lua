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
