--- paho.mqtt.trace (internal): mqtt.trace, paho's trace lines handed to Lua.
--
-- The C core (src/trace.c) queues the lines paho writes on its threads;
-- every dispatch hands them to the program's handler here.
local core = require "paho.mqtt.core"
local options = require "paho.mqtt.options"

local type, error, tostring, pcall = type, error, tostring, pcall
local fmt = string.format

local T = {}

local trace_levels = { maximum = 1, medium = 2, minimum = 3, protocol = 4, error = 5, severe = 6, fatal = 7 }
local trace_names = { "maximum", "medium", "minimum", "protocol", "error", "severe", "fatal" }
local trace_handler

-- called by every dispatch
function T.drain()
  if not trace_handler then return end
  local lines, lost = core.trace_take()
  if not lines then return end
  local h = trace_handler
  if lost > 0 then
    pcall(h, "error", fmt("paho.mqtt: %d trace lines were dropped (the trace queue was full)", lost))
  end
  for i = 1, #lines, 2 do
    local ok, err = pcall(h, trace_names[lines[i]] or tostring(lines[i]), lines[i + 1])
    if not ok then io.stderr:write("paho.mqtt: the trace handler raised: ", tostring(err), "\n") end
  end
end

--- Forwards paho.mqtt.c's trace lines at `level` and above to handler(level, line),
-- called when the program dispatches; mqtt.trace(nil) turns it off.
function T.trace(level, handler)
  if level == nil or level == false then
    core.trace_level(0)
    trace_handler = nil
    return true
  end
  local n = trace_levels[level]
  if not n then
    local hint = type(level) == "string" and options.closest(level, trace_levels)
    error(fmt("bad argument #1 to trace (maximum, medium, minimum, protocol, error, severe, fatal or nil "
      .. "expected, got %s%s)", options.describe(level), hint and ("; did you mean '" .. hint .. "'?") or ""), 2)
  end
  if type(handler) ~= "function" then
    error("bad argument #2 to trace (function expected, got " .. type(handler) .. ")", 2)
  end
  trace_handler = handler
  core.trace_level(n)
  return true
end

return T
