--- MQTT 5 request/response: a service answers on the response topic the
-- request names, with the request's correlation data; client:request()
-- sends a request and waits for its answer.
--
--   MQTT_URI=tcp://127.0.0.1:1883 lua5.4 examples/request_response.lua
local mqtt = require "paho.mqtt"

local uri = os.getenv("MQTT_URI") or "tcp://127.0.0.1:1883"
local service_topic = "demo/rr/upper/" .. os.time()

-- the service: upper-cases what it gets
local service = assert(mqtt.client { uri = uri, id = "demo-rr-service" })
service:on("message", function(msg)
  local p = msg.properties or {}
  if p.response_topic then
    service:publish(p.response_topic, msg.payload:upper(),
      { qos = 1, properties = { correlation_data = p.correlation_data } })
  end
end)
assert(service:connect())
assert(service:subscribe(service_topic, 1))

-- the caller (it could be another process: the broker is all they share)
local caller = assert(mqtt.client { uri = uri, id = "demo-rr-caller" })
assert(caller:connect())
local answered = 0
for _, word in ipairs { "hello", "mqtt", "request" } do
  local reply, err = caller:request(service_topic, word, { timeout = 5 })
  if reply then
    answered = answered + 1
    print(("request %q -> response %q (correlation data %q)"):format(word, reply.payload,
      reply.properties.correlation_data))
  else
    print(("request %q failed: %s"):format(word, err))
  end
end
local _, err, code = caller:request("demo/rr/nobody", "anyone?", { timeout = 0.5 })
print(("a request nobody answers: %s (%s)"):format(err, code))

caller:close()
service:close()
if answered == 3 then
  print("OK: every request got its response")
else
  print("FAILED: " .. answered .. " of 3 answered")
  os.exit(1)
end
