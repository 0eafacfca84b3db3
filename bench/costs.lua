--- bench/costs.lua - what each step of the Lua path costs, in microseconds
-- of the Lua thread per message, measured one step at a time.
--
--   MQTT_URI=tcp://127.0.0.1:PORT lua bench/costs.lua [N]
--   tools/with-broker.sh lua5.4 bench/costs.lua
--
-- Steps:
--   publish call, QoS 0     client:publish() alone (Lua checks, core.publish,
--                           paho's MQTTAsync_sendMessage), no dispatch
--   publish call, QoS 1     the same; beyond the broker's Receive Maximum the
--                           binding only holds the message (Lua table)
--   dispatch publish done   dispatching the completion event of a QoS 0 publish
--                           (core next(), token bookkeeping)
--   dispatch message        dispatching one arrived message to a "message"
--                           handler that does nothing (core next() builds the
--                           msg table; the handler runs in a pooled coroutine)
--   dispatch message, no handler   the same without a handler
-- Messages for the dispatch steps are published by mosquitto_pub (another
-- process) and left to queue up in the client before the timed drain.
-- Not run by `make bench`; docs/performance.md quotes its numbers.
local mqtt = require "paho.mqtt"
local core = require "paho.mqtt.core"
local now = core.now

local URI = os.getenv("MQTT_URI") or error("set MQTT_URI")
local host, port = URI:match("^%a+://([^:/]+):(%d+)")
local N = tonumber(arg[1] or "10000")
local pid = io.open("/proc/self/stat"):read("*l"):match("^(%d+)")
local payload = string.rep("x", 100)

local function sleep_nodispatch(s) core.poll({}, s) end

local function wait_queued(c, n, timeout)
  local deadline = now() + (timeout or 20)
  while c:stats().queued < n and now() < deadline do sleep_nodispatch(0.02) end
  return c:stats().queued
end

local function drain(c)
  local t0, handled = now(), 0
  while c:stats().queued > 0 do handled = handled + c:dispatch(0) end
  return now() - t0, handled
end

local function report(name, seconds, n)
  print(("%-34s %8.2f us   (%d in %.3f s)"):format(name, seconds / n * 1e6, n, seconds))
end

local pub = assert(mqtt.client { uri = URI, id = "costs-pub-" .. pid, queue_max = N * 3 })
assert(pub:connect {})

-- 1. publish calls, QoS 0, then the completion events
do
  local topic = "bench/costs/" .. pid .. "/nobody"
  collectgarbage()
  local t0 = now()
  for _ = 1, N do pub:publish(topic, payload) end
  report("publish call, QoS 0", now() - t0, N)
  local q = wait_queued(pub, N)
  local secs, handled = drain(pub)
  if q >= N then report("dispatch publish done (QoS 0)", secs, handled) end
end

-- 2. publish calls, QoS 1 (mostly held beyond the Receive Maximum)
do
  local topic = "bench/costs/" .. pid .. "/nobody1"
  collectgarbage()
  local t0 = now()
  local last
  for _ = 1, N do last = pub:publish(topic, payload, { qos = 1 }) end
  report("publish call, QoS 1 (held)", now() - t0, N)
  assert(last:wait(60))
end

-- 3. arriving messages, with and without a handler
local function arrivals(with_handler)
  local topic = ("bench/costs/%s/in%s"):format(pid, with_handler and "h" or "")
  local sub = assert(mqtt.client { uri = URI, id = "costs-sub-" .. pid, queue_max = N * 2 })
  assert(sub:connect {})
  assert(sub:subscribe(topic, 0))
  local got = 0
  if with_handler then sub:on("message", function() got = got + 1 end) end
  local cmd = ("mosquitto_pub -h %s -p %s -V mqttv5 -q 0 -t %s -l >/dev/null"):format(host, port, topic)
  local f = assert(io.popen(cmd, "w"))
  local line = payload .. "\n"
  for _ = 1, N do f:write(line) end
  f:close()
  local q = wait_queued(sub, N)
  collectgarbage()
  local secs, handled = drain(sub)
  if q >= N then
    report(with_handler and "dispatch message (empty handler)" or "dispatch message, no handler", secs, handled)
  else
    print(("only %d of %d messages arrived"):format(q, N))
  end
  sub:disconnect()
  sub:close()
end
arrivals(true)
arrivals(false)

pub:disconnect()
pub:close()
