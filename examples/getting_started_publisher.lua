--- Getting started, part 2: a publisher.
-- docs/getting-started.md walks through it.
--
--   lua5.4 examples/getting_started_publisher.lua        -- publishes 3 messages
--   lua5.4 examples/getting_started_publisher.lua 10     -- publishes 10
--
-- The broker is MQTT_URI, or a mosquitto on this machine.
local mqtt = require "paho.mqtt"

local uri = os.getenv("MQTT_URI") or "tcp://127.0.0.1:1883"
local count = tonumber(arg and arg[1]) or 3

local client = assert(mqtt.client{ uri = uri, id = "getting-started-publisher" })
assert(client:connect{})   -- a clean session: a publisher needs no state

for i = 1, count do
  -- QoS 1: the broker acknowledges the message; wait(5) waits for that.
  local token = assert(client:publish("greetings/hello", "hello " .. i, { qos = 1 }))
  assert(token:wait(5))
  print("published hello " .. i)
end

client:disconnect()
client:close()
