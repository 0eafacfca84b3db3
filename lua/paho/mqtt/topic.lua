--- MQTT topic filters: validation and matching (MQTT 5 section 4.7, the
-- same rules in 3.1.1), for mqtt.topic_matches, client:route and the
-- filter of client:messages.
--
-- Rules: levels are separated by "/"; "+" matches exactly one level (which
-- may be empty); "#" matches the parent level and any number of levels
-- below it, and must be the last level; a wildcard is a whole level. A
-- topic beginning with "$" (such as $SYS/...) is not matched by a filter
-- whose first level is a wildcard. A shared subscription filter
-- "$share/<group>/<filter>" matches what <filter> matches.
local M = {}

local find, sub = string.find, string.sub

-- the levels of s, split at "/"
local function levels(s)
  local t, i = {}, 1
  while true do
    local j = find(s, "/", i, true)
    if not j then
      t[#t + 1] = sub(s, i)
      return t
    end
    t[#t + 1] = sub(s, i, j - 1)
    i = j + 1
  end
end

--- Checks a topic filter; returns its compiled form, or nil and the reason.
-- The compiled form: {levels..., hash = true if it ends in "#"}.
function M.compile(filter)
  if type(filter) ~= "string" then return nil, "string expected, got " .. type(filter) end
  if filter == "" then return nil, "a topic filter is at least one character long" end
  if find(filter, "\0", 1, true) then return nil, "a topic filter cannot contain U+0000" end
  local f = filter
  if sub(f, 1, 7) == "$share/" then
    local group, rest = f:match("^%$share/([^/]*)/(.*)$")
    if not group or group == "" then
      return nil, "a shared subscription is $share/<group>/<filter>, with a group name"
    end
    if find(group, "[+#]") then return nil, "a share group name cannot contain '+' or '#'" end
    if rest == "" then return nil, "a shared subscription needs a filter after $share/<group>/" end
    f = rest
  end
  local lv = levels(f)
  local c = { n = #lv }
  for i, l in ipairs(lv) do
    if l == "#" then
      if i ~= #lv then return nil, "'#' must be the last level of a topic filter" end
      c.hash = true
      c.n = i - 1
    elseif l == "+" then
      c[i] = true -- any one level
    elseif find(l, "[+#]") then
      return nil, "a wildcard ('+' or '#') must be a whole level of a topic filter"
    else
      c[i] = l
    end
  end
  c.wild_first = lv[1] == "#" or lv[1] == "+"
  return c
end

--- Checks a topic name; returns true or nil and the reason.
function M.check_topic(topic)
  if type(topic) ~= "string" then return nil, "string expected, got " .. type(topic) end
  if topic == "" then return nil, "a topic name is at least one character long" end
  if find(topic, "[+#]") then return nil, "a topic name cannot contain wildcards ('+' or '#')" end
  return true
end

--- Does the compiled filter c match topic (a valid topic name)?
function M.match(c, topic)
  if c.wild_first and sub(topic, 1, 1) == "$" then return false end
  local n, i, lvl = c.n, 1, 1
  local len = #topic
  while lvl <= n do
    if i > len + 1 then return false end -- the topic has fewer levels
    local j = find(topic, "/", i, true)
    local want = c[lvl]
    if want ~= true then
      local stop = (j or len + 1) - 1
      if stop - i + 1 ~= #want or sub(topic, i, stop) ~= want then return false end
    end
    if not j then
      -- the topic's last level: matched if the filter ends here (or in "#")
      return lvl == n
    end
    i = j + 1
    lvl = lvl + 1
  end
  -- every filter level matched and the topic goes on (i points past a "/"),
  -- or the filter is only "#": "#" takes the rest, even nothing ("a/#" matches "a")
  return c.hash == true
end

return M
