--- paho.mqtt.class (internal): the client's method table and the checks every method starts with.
--
-- paho.mqtt and the modules of its parts (publish, subscribe, inbox,
-- request) add their methods to this one table.
local type, error, getmetatable = type, error, getmetatable
local fmt = string.format

local Client = {}
Client.__index = Client

local C = { Client = Client }

-- the core client of a method's self, or a raise naming the method
-- (level 3: the method's caller)
function C.checkself(self, fname)
  if getmetatable(self) ~= Client then
    error(fmt("bad self to %s (paho.mqtt client expected, got %s; call it as client:%s(...))",
      fname, type(self), fname), 3)
  end
  if self._closed then error(fname .. ": the client is closed", 3) end
  return self._c
end

-- methods that work on a closed client still check what they are called on
function C.checkany(self, fname)
  if getmetatable(self) ~= Client then
    error(fmt("bad self to %s (paho.mqtt client expected, got %s; call it as client:%s(...))",
      fname, type(self), fname), 3)
  end
end

-- an option rule: a table of MQTT 5 properties (checked by the C core)
function C.props_rule(v)
  if type(v) == "table" then return true end
  return false, "properties table"
end

return C
