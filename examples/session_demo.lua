--- The scenario people learn MQTT sessions with, step by step:
-- a subscriber with a persistent session misses nothing while it is away.
--
--   MQTT_URI=tcp://127.0.0.1:1883 lua5.4 examples/session_demo.lua
-- (`make demo` starts a private mosquitto and runs this against it.)
local mqtt = require "paho.mqtt"

local uri = os.getenv("MQTT_URI") or "tcp://127.0.0.1:1883"
local topic = "demo/sessions/" .. os.time()
local function step(fmt, ...) print(("%-4s " .. fmt):format("--", ...)) end

-- 1. a subscriber: MQTT 5, Clean Start on, Session Expiry 300 s
local sub = assert(mqtt.client{ uri = uri, id = "demo-subscriber" })
local received = {}
sub:on("message", function(msg)
  received[#received + 1] = msg.payload
  print(("     subscriber got %q (qos %d)"):format(msg.payload, msg.qos))
end)
local _, info = assert(sub:connect{ clean_start = true, session_expiry = 300, keepalive = 10 })
step("subscriber connected (clean start, session expiry 300 s), session_present = %s", tostring(info.session_present))
assert(sub:subscribe(topic, 1))
step("subscriber subscribed to %s at QoS 1", topic)

-- 2. a publisher publishes; the subscriber receives
local pub = assert(mqtt.client{ uri = uri, id = "demo-publisher" })
assert(pub:connect{})
assert(pub:publish(topic, "message 1", { qos = 1 })):wait(5)
step("publisher published 'message 1'")
local deadline = os.time() + 5
while #received < 1 and os.time() < deadline do mqtt.dispatch(0.1) end
assert(#received == 1, "the subscriber did not receive message 1")

-- 3. the subscriber goes away; its session stays on the broker
assert(sub:disconnect())
step("subscriber disconnected; the broker keeps its session for 300 s")

-- 4. three more messages while it is away
for i = 2, 4 do
  assert(pub:publish(topic, "message " .. i, { qos = 1 })):wait(5)
  step("publisher published 'message %d' while the subscriber is away", i)
end

-- 5. the subscriber comes back: same id, Clean Start off
_, info = assert(sub:connect{ clean_start = false, session_expiry = 300, keepalive = 10 })
step("subscriber reconnected (clean start off), session_present = %s", tostring(info.session_present))
deadline = os.time() + 5
while #received < 4 and os.time() < deadline do mqtt.dispatch(0.1) end
step("subscriber received %d of the 3 messages it missed", #received - 1)

local st = sub:stats()
step("keepalive %d s: a half-open link is noticed within %g s (stats().detect_within)",
  st.keepalive, st.detect_within)

-- 6. clean up: end the session (expiry 0 on disconnect) and close
assert(sub:disconnect{ session_expiry = 0 })
assert(pub:disconnect())
sub:close()
pub:close()
if not info.session_present or #received ~= 4 then
  print("FAILED: the session did not keep the messages")
  os.exit(1)
end
print("OK: the persistent session delivered every message published while the subscriber was away")
