--- Keepalive: how a half-open connection is noticed, and what the program sees.
--
-- The broker stops answering but its socket stays open (here: the demo
-- freezes mosquitto with SIGSTOP, as a crashed host or a dead NAT entry
-- would look). Only the keepalive can tell: the client sends PINGREQ after
-- `keepalive` seconds of silence and gives up when no PINGRESP comes within
-- 1.5 x keepalive. With reconnect on, it comes back by itself when the
-- broker answers again.
--
--   MQTT_URI=tcp://127.0.0.1:1883 MQTT_BROKER_PID=<mosquitto's pid> lua5.4 examples/keepalive_demo.lua
-- (`make demo` starts a private mosquitto and runs this against it.)
local mqtt = require "paho.mqtt"

local uri = os.getenv("MQTT_URI") or "tcp://127.0.0.1:1883"
local broker_pid = tonumber(os.getenv("MQTT_BROKER_PID") or "")
local KEEPALIVE = 2
local clock = require("paho.mqtt.core").now -- monotonic seconds
local t0 = clock()
local frozen_at
local function step(fmt, ...) print(("%5.2f s  " .. fmt):format(clock() - t0, ...)) end

-- offline_queue = 0: a publish while the link is down fails and says why and
-- since when (by default, with reconnect on, it would be kept until the link is back)
local client = assert(mqtt.client { uri = uri, id = "demo-keepalive", offline_queue = 0 })
local lost, back
client:on("disconnect", function(r)
  if lost then return end -- the first loss is the one this demo is about
  lost = r
  if frozen_at then r.after = clock() - frozen_at end
  step("disconnect event: cause = %q, reconnecting = %s", r.cause, tostring(r.reconnecting))
  step("  %s", r.message)
end)
client:on("connect_failed", function(r)
  step("reconnect attempt failed (%s); next in %.1f s", r.message, r.retry_in)
end)
client:on("connect", function(info)
  if info.reconnect then
    back = info
    step("connect event: reconnect = true, session_present = %s", tostring(info.session_present))
  end
end)

assert(client:connect { keepalive = KEEPALIVE, clean_start = "first", session_expiry = 60,
  reconnect = { min = 0.5, max = 2 } })
local s = client:stats()
step("connected with keepalive %d s: a dead link is noticed within %.1f s (stats().detect_within)",
  s.keepalive, s.detect_within)

if not broker_pid then
  print("MQTT_BROKER_PID is not set: cannot freeze the broker; `make demo` sets it.")
  client:close()
  return
end

mqtt.sleep(1)
os.execute("kill -STOP " .. broker_pid)
frozen_at = clock()
step("broker frozen (SIGSTOP): the socket stays open, nothing answers")
local deadline = clock() + 2.5 * KEEPALIVE + 3
while not lost and clock() < deadline do mqtt.dispatch(0.1) end
local ok, msg, code = client:publish("demo/keepalive", "hello?")
step("publish on the dead link -> %s, %q, %q", tostring(ok), tostring(msg), tostring(code))
step("state() = %q, is_connected() = %s", client:state(), tostring(client:is_connected()))

os.execute("kill -CONT " .. broker_pid)
step("broker resumed (SIGCONT)")
deadline = clock() + 10
while not back and clock() < deadline do mqtt.dispatch(0.1) end
s = client:stats()
step("stats: state = %s, reconnects = %d, loss_cause = %s", s.state, s.reconnects, tostring(s.loss_cause))
client:disconnect()
client:close()

if lost and lost.cause == "keepalive" and back then
  print(("OK: the half-open link was detected after %.1f s (bound %.1f s) as a keepalive timeout, "
    .. "and the client reconnected by itself."):format(lost.after, s.detect_within))
else
  print("FAILED: " .. (lost and ("cause " .. tostring(lost.cause)) or "no disconnect event")
    .. (back and "" or ", no reconnect"))
  os.exit(1)
end
