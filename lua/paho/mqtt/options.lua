--- Option-table checking with messages that name the function, the option
-- and what was expected, and suggest the closest valid name for a typo.
local M = {}

local type, pairs, ipairs, tostring, math_type = type, pairs, ipairs, tostring, math.type

-- did you mean: one implementation for every name, here and for MQTT 5
-- property names (src/util.c, pmq_closest)
local closest = require("paho.mqtt.core").closest

-- names other MQTT clients use (Python paho, paho.mqtt.golang, luamqtt,
-- mosquitto) for what is called otherwise here: did-you-mean hints for them
local synonyms = {
  message = { "payload" }, msg = { "payload" }, data = { "payload" },
  clientid = { "id" }, client_id = { "id" }, clientId = { "id" },
  clean_session = { "clean_start" }, cleansession = { "clean_start" }, clean = { "clean_start" },
  keep_alive = { "keepalive" }, keepAlive = { "keepalive" },
  user = { "username" }, login = { "username" }, pass = { "password" }, passwd = { "password" },
  host = { "uri" }, hostname = { "uri" }, broker = { "uri" }, server = { "uri" }, url = { "uri" },
  ssl = { "tls" }, secure = { "tls" },
  ca = { "ca_file" }, cafile = { "ca_file" }, ca_certs = { "ca_file" },
  cert = { "cert_file" }, certfile = { "cert_file" }, key = { "key_file" }, keyfile = { "key_file" },
  lwt = { "will" }, last_will = { "will" },
  -- events
  close = { "disconnect" }, closed = { "disconnect" }, disconnected = { "disconnect" }, offline = { "disconnect" },
  connected = { "connect" }, connack = { "connect" }, publish = { "message" }, messages = { "message" },
  ["connect-failed"] = { "connect_failed" }, failure = { "connect_failed" },
}

--- The valid name closest to `name`, or nil when none is close.
function M.closest(name, spec)
  for _, k in ipairs(synonyms[name] or synonyms[name:lower()] or {}) do
    if spec[k] then return k end
  end
  return closest(name, spec)
end

local function is_integer(v)
  if math_type then return math_type(v) == "integer" or (type(v) == "number" and v % 1 == 0) end
  return type(v) == "number" and v % 1 == 0
end

local checkers = {
  string = function(v) return type(v) == "string" end,
  number = function(v) return type(v) == "number" end,
  integer = is_integer,
  boolean = function(v) return type(v) == "boolean" end,
  table = function(v) return type(v) == "table" end,
  ["function"] = function(v) return type(v) == "function" end,
  any = function() return true end,
}

local function describe(v)
  if type(v) == "number" then return "number " .. tostring(v) end
  if type(v) == "string" then return "string '" .. v .. "'" end
  return type(v)
end

--- Checks table `t` (argument `argn` of `fname`) against `spec`:
-- spec[name] = "type" or "type|type" or a function(value) -> ok, expected.
-- Raises (level 3: the caller of the public function) on the first problem.
-- `what` names the table: "options" (the default), a descriptive phrase
-- ("subscription options"), or the name of a nested option ("will", "tls"),
-- which then prefixes the names in messages: 'will.message'.
function M.check(t, spec, fname, what)
  what = what or "options"
  if t == nil then return {} end
  if type(t) ~= "table" then
    error(("bad argument to %s (%s table expected, got %s)"):format(fname, what, describe(t)), 3)
  end
  local prefix = what:match("^[%a_][%w_]*$") and what ~= "options" and (what .. ".") or ""
  for k, v in pairs(t) do
    local rule = type(k) == "string" and spec[k]
    if not rule then
      local hint = type(k) == "string" and M.closest(k, spec)
      error(("unknown option '%s%s' to %s%s"):format(prefix, tostring(k), fname,
        hint and (" (did you mean '" .. prefix .. hint .. "'?)") or ""), 3)
    end
    if type(rule) == "function" then
      local ok, expected = rule(v)
      if not ok then
        error(("bad option '%s%s' to %s (%s expected, got %s)"):format(prefix, k, fname, expected, describe(v)), 3)
      end
    else
      local ok = false
      for alt in rule:gmatch("[^|]+") do
        if checkers[alt](v) then ok = true break end
      end
      if not ok then
        error(("bad option '%s%s' to %s (%s expected, got %s)"):format(prefix, k, fname,
          rule:gsub("|", " or "), describe(v)), 3)
      end
    end
  end
  return t
end

--- A rule: an integer in lo..hi.
function M.range(lo, hi)
  return function(v)
    if is_integer(v) and v >= lo and v <= hi then return true end
    return false, ("integer %d..%d"):format(lo, hi)
  end
end

--- A rule: a number in lo..hi.
function M.nrange(lo, hi)
  return function(v)
    if type(v) == "number" and v >= lo and v <= hi then return true end
    return false, ("number %s..%s"):format(tostring(lo), tostring(hi))
  end
end

--- A rule: one of the listed values.
function M.oneof(...)
  local set, names = {}, {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    set[v] = true
    names[#names + 1] = type(v) == "string" and ("'" .. v .. "'") or tostring(v)
  end
  return function(v)
    if set[v] ~= nil then return true end
    return false, table.concat(names, ", ")
  end
end

M.is_integer = is_integer
M.describe = describe
return M
