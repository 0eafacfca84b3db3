--- A client driven by cqueues (paho.mqtt.cqueues): publish, wait for the PUBACK
-- and the message by yielding to cqueues. Needs lua-cqueues.
--
--   MQTT_URI=tcp://127.0.0.1:1883 lua5.4 examples/cqueues.lua
local cqueues = require "cqueues"
local mqtt = require "paho.mqtt"
local mqcq = require "paho.mqtt.cqueues"

local done = false
local client = assert(mqtt.client{ uri = os.getenv("MQTT_URI") or "tcp://127.0.0.1:1883" })
local topic = "demo/cqueues/" .. os.time()
local got
client:on("message", function(msg) got = msg end)
assert(client:connect{})                     -- before the loop: these waits block it
assert(client:subscribe(topic, 1))

local cq = cqueues.new()
local h = mqcq.wrap(cq, client)              -- a coroutine that polls and dispatches
cq:wrap(function()
  local tok = client:publish(topic, "hello", { qos = 1 })
  assert(h:wait(tok, 5))                     -- yields to cqueues until the PUBACK
  assert(h:wait(function() return got end, 5))
  print("cqueues got", got.topic, got.payload)
  done = true
  h:close()                                  -- ends the dispatch coroutine, closes
end)
assert(cq:loop())
if not done then print("FAILED: no message") os.exit(1) end
print("OK: the cqueues loop delivered the message")
