--- bench/slow_consumer.lua - memory with a subscriber slower than its traffic.
--
-- A publisher in a separate process sends N numbered messages at QoS 1 and
-- then at QoS 2 as fast as it can; this process subscribes with a "message"
-- handler that burns a fixed amount of CPU per message (a busy loop), so
-- messages arrive faster than they are handled. The binding's event queue is
-- bounded (queue_max / queue_max_bytes): once it is full, paho's receive
-- thread waits, TCP pushes back, and the broker holds the rest. This prints
-- the process's RSS (VmRSS) every 10 % of N and at the end, the queue's
-- statistics, and the count received against the count sent, checking that
-- every message arrived once and in order.
--
--   BENCH_CASES=slow BENCH_SLOW_N=1000000 make bench   (its broker keeps every message)
--   MQTT_URI=tcp://127.0.0.1:1883 lua bench/slow_consumer.lua
--
-- Environment (all optional):
--   SLOW_CONSUMER_N=1000000   messages per QoS level (default 100000;
--                             `make bench` runs 50000)
--   SLOW_CONSUMER_QOS=1,2     the QoS levels to run
--   SLOW_CONSUMER_SIZE=100    payload bytes
--   SLOW_CONSUMER_HANDLER_US=200   CPU time the handler burns per message
--   SLOW_CONSUMER_QUEUE_MAX=10000  the client's queue_max (events)
--   SLOW_CONSUMER_RECEIVE_MAX=n    send MQTT 5 Receive Maximum n in CONNECT
--   BROKER_PID=pid            also report the broker's RSS
--
-- The broker must not drop messages for a slow subscriber: mosquitto's
-- default max_queued_messages (1000) drops QoS 1/2 messages beyond it, so
-- bench/run.lua starts its broker with `max_queued_messages 0` (and so does
-- not tools/with-broker.sh); with another broker, lost messages are the
-- broker's policy, not the binding's. At QoS 2 a subscriber far behind gets
-- slower and bigger in paho itself (docs/performance.md): a million QoS 2
-- messages take very long; SLOW_CONSUMER_QOS=1 runs QoS 1 only.
--
-- Exits 0 when every message arrived exactly once, in order.
local mqtt = require "paho.mqtt"
local now = require("paho.mqtt.core").now

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function kib(pid, field)
  local s = read("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

local function mib(v) return v and ("%.1f MiB"):format(v / 1024) or "?" end

local LUA = arg[-1] or "lua"
local SCRIPT = arg[0]
local pid = read("/proc/self/stat"):match("^(%d+)")

-----------------------------------------------------------------------------
-- publisher mode: publish N numbered messages, print "sent=N" when all done

if arg[1] == "publish" then
  local uri, topic, n, size, qos = arg[2], arg[3], tonumber(arg[4]), tonumber(arg[5]), tonumber(arg[6])
  local c = assert(mqtt.client { uri = uri, id = "slow-pub-" .. pid })
  assert(c:connect {})
  local pad = string.rep("x", math.max(0, size - 10))
  local t0 = now()
  local opts = { qos = qos }
  local tokens, first = {}, 1
  for i = 1, n do
    tokens[i] = assert(c:publish(topic, ("%09d "):format(i) .. pad, opts))
    if i % 100 == 0 then
      mqtt.dispatch(0)
      -- keep the number of unfinished publishes bounded
      while first <= i - 2000 do
        assert(tokens[first]:wait(60))
        tokens[first], first = nil, first + 1
      end
    end
  end
  for i = first, n do assert(tokens[i]:wait(60)) end
  io.stdout:write(("sent=%d publish_s=%.2f\n"):format(n, now() - t0))
  c:disconnect()
  c:close()
  os.exit(0)
end

-----------------------------------------------------------------------------
-- consumer

local URI = arg[1] or os.getenv("MQTT_URI")
if not URI then
  io.stderr:write("slow_consumer: set MQTT_URI, or run it with BENCH_CASES=slow make bench\n")
  os.exit(2)
end
local N = tonumber(os.getenv("SLOW_CONSUMER_N") or "100000")
local SIZE = tonumber(os.getenv("SLOW_CONSUMER_SIZE") or "100")
local HANDLER_S = tonumber(os.getenv("SLOW_CONSUMER_HANDLER_US") or "200") / 1e6
local QUEUE_MAX = tonumber(os.getenv("SLOW_CONSUMER_QUEUE_MAX") or "10000")
local BROKER_PID = os.getenv("BROKER_PID")
-- MQTT 5 Receive Maximum the consumer sends in CONNECT (unset: none, so
-- the broker may have up to 65535 QoS 1/2 messages in flight to it)
local RECEIVE_MAX = tonumber(os.getenv("SLOW_CONSUMER_RECEIVE_MAX") or "")
local levels = {}
for q in (os.getenv("SLOW_CONSUMER_QOS") or "1,2"):gmatch("%d") do levels[#levels + 1] = tonumber(q) end

local function run(qos)
  local topic = ("bench/slow/%s/%d"):format(pid, qos)
  local c = assert(mqtt.client { uri = URI, id = ("slow-sub-%s-%d"):format(pid, qos), queue_max = QUEUE_MAX })
  assert(c:connect { properties = RECEIVE_MAX and { receive_maximum = RECEIVE_MAX } or nil })
  assert(c:subscribe(topic, qos))

  local received, expected_next, out_of_order, dups = 0, 1, 0, 0
  local seen_max = 0
  local step = math.max(1, math.floor(N / 10))
  local next_report, t0 = step, now()
  c:on("message", function(msg)
    local seq = tonumber(msg.payload:sub(1, 9))
    received = received + 1
    if seq == expected_next then
      expected_next = seq + 1
    elseif seq <= seen_max then
      dups = dups + 1
    else
      out_of_order = out_of_order + 1
      expected_next = seq + 1
    end
    if seq > seen_max then seen_max = seq end
    local until_t = now() + HANDLER_S -- the slow part
    while now() < until_t do end
    if received >= next_report then
      next_report = next_report + step
      local st = c:stats()
      print(("%3d%%  received %8d  %6.1f s  RSS %s  queued %5d  queue_peak %5d  stalls %d%s")
        :format(math.floor(100 * received / N + 0.5), received, now() - t0, mib(kib("self", "VmRSS")),
          st.queued, st.queue_peak, st.stalls,
          BROKER_PID and ("  broker RSS " .. mib(kib(BROKER_PID, "VmRSS"))) or ""))
      io.stdout:flush()
    end
  end)

  print(("-- QoS %d: %d messages of %d bytes, handler %.0f us, queue_max %d; RSS at start %s")
    :format(qos, N, SIZE, HANDLER_S * 1e6, QUEUE_MAX, mib(kib("self", "VmRSS"))))
  io.stdout:flush()
  local publisher = assert(io.popen(("%q %q publish %q %q %d %d %d"):format(LUA, SCRIPT, URI, topic, N, SIZE, qos)))
  t0 = now()
  local progress, last_count = now(), 0
  while received < N do
    mqtt.dispatch(0.2)
    if received ~= last_count then
      last_count, progress = received, now()
    elseif now() - progress > 30 then
      print("no message for 30 s: giving up")
      break
    end
  end
  local elapsed = now() - t0
  local out = publisher:read("*a") or ""
  publisher:close()
  local sent = tonumber(out:match("sent=(%d+)")) or 0
  local s = c:stats()
  local lost = sent - received
  print(("end   received %d of %d sent, lost %d, duplicates %d, out of order %d; %.1f s (%.0f msg/s)")
    :format(received, sent, lost, dups, out_of_order, elapsed, received / elapsed))
  print(("      RSS %s, peak RSS (VmHWM) %s; queue_peak %d, stalls %d (%.1f s stalled), overflows %d")
    :format(mib(kib("self", "VmRSS")), mib(kib("self", "VmHWM")), s.queue_peak, s.stalls,
      s.stalled_seconds, s.overflows))
  io.stdout:flush()
  c:disconnect()
  c:close()
  return sent == N and received == N and dups == 0 and out_of_order == 0
end

local all_ok = true
for _, q in ipairs(levels) do
  if not run(q) then all_ok = false end
end
print(all_ok and "slow consumer: every message arrived once, in order"
  or "slow consumer: MESSAGES LOST OR OUT OF ORDER")
os.exit(all_ok and 0 or 1)
