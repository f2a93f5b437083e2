-- Stores "key -> mode" for every entry of X-Vidim-Participants (see README.md).
-- NOT exercised by CI. Install in FreeSWITCH's scripts directory.
local conf = session:getVariable("vidim_conf")
local list = session:getVariable("vidim_list") or ""
for entry in string.gmatch(list, "[^,]+") do
  local mode = string.match(entry, ";mode=([%w]+)")
  local key = string.match(entry, ";key=([%w_-]+)")
  if conf and mode and key then
    freeswitch.API():execute("hash", "insert/vidim/" .. conf .. "-" .. key .. "/" .. mode)
  end
end
