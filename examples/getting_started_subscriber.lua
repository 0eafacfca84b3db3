--- Getting started, part 1: a subscriber with a persistent session.
-- docs/getting-started.md walks through it.
--
--   lua5.4 examples/getting_started_subscriber.lua       -- runs until Ctrl-C
--   lua5.4 examples/getting_started_subscriber.lua 3     -- stops after 3 messages
--
-- The broker is MQTT_URI, or a mosquitto on this machine.
local mqtt = require "paho.mqtt"

local uri = os.getenv("MQTT_URI") or "tcp://127.0.0.1:1883"
local stop_after = tonumber(arg and arg[1])   -- nil: run until Ctrl-C

-- 1. The client. Its id names its session on the broker: run the script again
--    with the same id and the broker knows it is the same subscriber.
local client = assert(mqtt.client{ uri = uri, id = "getting-started-subscriber" })

-- 2. What to do with a message. Set it before connecting: a resumed session
--    may deliver the messages it kept as soon as the connection is up.
local received = 0
client:on("message", function(msg)
  received = received + 1
  print(("%s: %s (qos %d)"):format(msg.topic, msg.payload, msg.qos))
end)

-- 3. Connect, asking the broker to keep the session for an hour after the
--    connection ends (clean_start = false: resume it if it is still there).
local _, info = assert(client:connect{
  clean_start = false,
  session_expiry = 3600,
  keepalive = 30,
})

-- 4. A new session has no subscriptions; a resumed one still has them.
if info.session_present then
  print("session resumed: messages published while we were away come now")
else
  print("new session: subscribing to greetings/#")
  assert(client:subscribe("greetings/#", 1))
end
print("waiting for messages on greetings/# (Ctrl-C to stop)")
io.stdout:flush()

-- 5. Handle messages as they arrive: dispatch(1) waits up to 1 s for
--    something to happen and runs the handlers.
while client:is_connected() and not (stop_after and received >= stop_after) do
  client:dispatch(1)
end

-- 6. Leave. The session stays on the broker (session_expiry), so the
--    messages published until we come back are kept for us.
client:disconnect()
client:close()
