--- bench/self_subscribe.lua - a client that receives its own QoS 1 publishes.
--
-- One client publishes N QoS 1 messages to a topic. Three cases, in the same
-- run, against the same broker:
--   self      the publisher is itself subscribed to the topic at QoS 1
--   no_local  the same subscription with no_local = true (MQTT 5): the broker
--             does not send the client its own messages
--   other     a second client subscribes; the publisher receives nothing
-- Time runs from the first publish until every token is done and (self,
-- other) every message has arrived. Prints msg/s for each and the ratios.
--
-- The self case is slow because of paho.mqtt.c 1.3.12, not the binding:
-- Nagle's algorithm on paho's socket (it never sets TCP_NODELAY) holds the
-- PUBACK for each received message behind the broker's delayed ACK.
-- tools/repro/paho-selfsub-repro.c shows the same in raw C; docs/event-loops.md,
-- "Receiving your own QoS 1 publishes".
--
--   MQTT_URI=tcp://127.0.0.1:1883 lua bench/self_subscribe.lua
--
-- Environment: SELFSUB_N (2000 messages).
local mqtt = require "paho.mqtt"
local core = require "paho.mqtt.core"

local uri = os.getenv("MQTT_URI") or "tcp://127.0.0.1:1883"
local N = tonumber(os.getenv("SELFSUB_N") or "2000")
local now = core.now
local payload = string.rep("x", 100)

local function run(case)
  local topic = ("bench/selfsub/%s/%d-%d"):format(case, os.time(), math.random(1, 1e9))
  local pub = assert(mqtt.client{ uri = uri, queue_max = N + 100 })
  local sub = pub
  local got = 0
  assert(pub:connect{})
  if case == "other" then
    sub = assert(mqtt.client{ uri = uri, queue_max = N + 100 })
    assert(sub:connect{})
  end
  sub:on("message", function() got = got + 1 end)
  if case ~= "none" then
    assert(sub:subscribe(topic, { qos = 1, no_local = case == "no_local" }))
  end
  local want = (case == "self" or case == "other") and N or 0
  local t0 = now()
  local last
  for _ = 1, N do last = assert(pub:publish(topic, payload, { qos = 1 })) end
  local deadline = t0 + 120
  while (not last:done() or got < want) and now() < deadline do
    pub:dispatch(0.01)
    if sub ~= pub then sub:dispatch(0) end
  end
  local took = now() - t0
  local done = last:done()
  if sub ~= pub then sub:close() end
  pub:close()
  assert(done and got == want, ("%s: %d of %d arrived, last token %s after %.1f s"):format(case, got, want,
    done and "done" or "pending", took))
  if case == "no_local" then assert(got == 0, "no_local: the client got its own messages") end
  return N / took, took
end

local rate = {}
for _, case in ipairs({ "self", "no_local", "other" }) do
  local r, took = run(case)
  rate[case] = r
  print(("%-9s %5d QoS 1 publishes in %6.2f s  %8.0f msg/s"):format(case, N, took, r))
end
print(("no_local / self %.1fx, other / self %.1fx (paho 1.3.12: Nagle on its socket; "
  .. "docs/event-loops.md)"):format(rate.no_local / rate.self, rate.other / rate.self))
