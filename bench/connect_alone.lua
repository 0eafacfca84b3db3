--- bench/connect_alone.lua - how long connect() takes for a client alone in
-- its process (paho.mqtt.c 1.3.12's receive thread may sleep up to a second
-- before it sends the CONNECT), and with another client of the process
-- connected; for clean_start = false and for clean_start = "first" with a
-- session expiry (which connects twice: see docs/sessions-and-keepalive.md).
--
--   MQTT_URI=tcp://127.0.0.1:1883 lua bench/connect_alone.lua
--
-- Each sample is a fresh process (BENCH_CONNECT_N of them per case, default
-- 7); the medians are printed with the ratio to clean_start = false alone.
local uri = os.getenv("MQTT_URI") or "tcp://127.0.0.1:1883"
local N = tonumber(os.getenv("BENCH_CONNECT_N") or "7")
local LUA = arg[-1] or "lua"
local SELF = arg[0]
local unpack = table.unpack or unpack -- luacheck: ignore 113

if arg[1] == "--one" then
  -- one sample: arg[2] = "false" | "first", arg[3] = "alone" | "other"
  local mqtt = require "paho.mqtt"
  local now = require("paho.mqtt.core").now
  local other
  if arg[3] == "other" then
    other = assert(mqtt.client { uri = uri })
    assert(other:connect {})
  end
  local c = assert(mqtt.client { uri = uri, id = ("bench-alone-%d-%d"):format(os.time(), math.random(1e9)) })
  local t0 = now()
  local opts = arg[2] == "first" and { clean_start = "first", session_expiry = 60 } or { clean_start = false }
  assert(c:connect(opts))
  local ms = (now() - t0) * 1000
  c:disconnect { session_expiry = 0 }
  c:close()
  if other then other:close() end
  io.write(("%.1f\n"):format(ms))
  os.exit(0)
end

local function median(t)
  table.sort(t)
  return t[math.ceil(#t / 2)]
end

local cases = {
  { "clean_start = false, alone", "false", "alone" },
  { "clean_start = \"first\", expiry 60, alone", "first", "alone" },
  { "clean_start = false, another client connected", "false", "other" },
  { "clean_start = \"first\", another client connected", "first", "other" },
}
local samples = {}
for i = 1, #cases do samples[i] = {} end
-- interleaved: case 1, 2, 3, 4, 1, 2, ...
for _ = 1, N do
  for i, case in ipairs(cases) do
    local p = io.popen(("MQTT_URI=%s %s %s --one %s %s"):format(uri, LUA, SELF, case[2], case[3]))
    local out = p:read("*a")
    p:close()
    local ms = tonumber(out:match("([%d%.]+)"))
    if not ms then
      io.stderr:write("connect_alone: a sample failed: ", out, "\n")
      os.exit(1)
    end
    samples[i][#samples[i] + 1] = ms
  end
end
local base = median(samples[1])
print(("%-48s %10s %10s %8s"):format("connect (a fresh process each, " .. N .. " runs)", "p50 ms", "max ms", "ratio"))
for i, case in ipairs(cases) do
  local max = math.max(unpack(samples[i]))
  print(("%-48s %10.1f %10.1f %8.2f"):format(case[1], median(samples[i]), max, median(samples[i]) / base))
end
