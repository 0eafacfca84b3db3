--- A client driven by copas (paho.mqtt.copas). Needs lua-copas (Debian: Lua 5.1
-- and LuaJIT only).
--
--   MQTT_URI=tcp://127.0.0.1:1883 lua5.1 examples/copas.lua
local copas = require "copas"
local mqtt = require "paho.mqtt"
local mqcopas = require "paho.mqtt.copas"

local done = false
local client = assert(mqtt.client{ uri = os.getenv("MQTT_URI") or "tcp://127.0.0.1:1883" })
local topic = "demo/copas/" .. os.time()
local h
client:on("message", function(msg)
  print("copas got", msg.topic, msg.payload)
  done = true
  h:stop()
end)
assert(client:connect{})
assert(client:subscribe(topic, 1))
h = mqcopas.attach(client)                   -- a copas thread waits on client:fd()
copas.addthread(function()
  client:publish(topic, "hello", { qos = 1 })
end)
mqcopas.loop(function() return h.stopped end) -- copas.step + the clients' timeouts
client:close()
if not done then print("FAILED: no message") os.exit(1) end
print("OK: the copas loop delivered the message")
