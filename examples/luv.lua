--- A client driven by libuv (paho.mqtt.luv): a uv poll on client:fd() and a
-- uv timer dispatch it. Needs lua-luv.
--
--   MQTT_URI=tcp://127.0.0.1:1883 lua5.4 examples/luv.lua
local uv = require "luv"
local mqtt = require "paho.mqtt"
local mquv = require "paho.mqtt.luv"

local done = false
local client = assert(mqtt.client{ uri = os.getenv("MQTT_URI") or "tcp://127.0.0.1:1883" })
local topic = "demo/luv/" .. os.time()
local h
client:on("message", function(msg)
  print("luv got", msg.topic, msg.payload)
  done = true
  h:close()                                  -- closes the uv handles and the client
end)
assert(client:connect{})
assert(client:subscribe(topic, 1))
h = mquv.attach(client)                      -- uv poll on client:fd() + a uv timer
client:publish(topic, "hello", { qos = 1 })
uv.run()                                     -- returns when no handle is left
if not done then print("FAILED: no message") os.exit(1) end
print("OK: the luv loop delivered the message")
