--- bench/bench.lua - the cases of bench/raw.c through the Lua binding.
--
--   lua bench/bench.lua throughput URI N SIZE QOS
--   lua bench/bench.lua latency URI M SIZE QOS
--   lua bench/bench.lua connect URI K
--
-- Each prints one "RESULT impl=lua ..." line with the same fields as
-- raw.c's. It uses the binding as an application would: `publish` in a loop,
-- `client:on("message", ...)` to count arrivals, `mqtt.dispatch` to run the
-- handlers. With BROKER_PID in the environment it also reports the broker's
-- CPU seconds over the measured interval. `make bench` runs it through
-- bench/run.lua, which starts the broker; the module path comes from the
-- Makefile (LUA_PATH/LUA_CPATH).
local mqtt = require "paho.mqtt"
local now = require("paho.mqtt.core").now -- a monotonic clock, for timing only

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local TICK = 100 -- USER_HZ: Linux reports /proc/*/stat times in 1/100 s

-- utime + stime of a process, in seconds
local function cpu_of(pid)
  local s = read("/proc/" .. pid .. "/stat")
  if not s then return nil end
  local rest = s:match("%) (.*)$")
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  -- fields after the command: state is 1, utime 12, stime 13
  return (tonumber(f[12]) + tonumber(f[13])) / TICK
end

local BROKER_PID = os.getenv("BROKER_PID")
local function cpu_self() return cpu_of("self") end
local function cpu_broker() return BROKER_PID and cpu_of(BROKER_PID) or nil end
local function delta(a, b) return (a and b) and (b - a) or -1 end

local pid = read("/proc/self/stat"):match("^(%d+)")

local function payload_of(size)
  local t = {}
  for i = 0, size - 1 do t[#t + 1] = string.char(97 + i % 26) end
  return table.concat(t)
end

-- connect's max_inflight for the publisher (unset: the binding's default)
local MAX_INFLIGHT = tonumber(os.getenv("BENCH_MAX_INFLIGHT") or "")

-- a publisher and a subscriber on one topic at qos, both connected
local function pair(uri, tag, qos)
  local topic = ("bench/lua/%s/%s"):format(pid, tag)
  local sub = assert(mqtt.client { uri = uri, id = "lua-sub-" .. pid })
  local pub = assert(mqtt.client { uri = uri, id = "lua-pub-" .. pid })
  assert(sub:connect {})
  assert(pub:connect { max_inflight = MAX_INFLIGHT })
  assert(sub:subscribe(topic, qos))
  return pub, sub, topic
end

local function close_pair(pub, sub)
  -- the last acknowledgements, then disconnect
  local deadline = now() + 2
  while pub:stats().inflight > 0 and now() < deadline do mqtt.dispatch(0.05) end
  pub:disconnect()
  sub:disconnect()
  pub:close()
  sub:close()
end

-- how often the publishing loop lets the dispatcher run (publish() never
-- waits; dispatching hands held QoS 1/2 publishes to paho and runs the
-- subscriber's handlers). BENCH_DISPATCH_EVERY=0: only after the loop.
local DISPATCH_EVERY = tonumber(os.getenv("BENCH_DISPATCH_EVERY") or "100")
-- BENCH_WINDOW=W: the application waits for publish i-W to complete before
-- publishing i (what raw.c does for QoS 0 by default). 0: it never waits,
-- as a plain application does; QoS 1/2 are paced by the binding anyway.
local WINDOW = tonumber(os.getenv("BENCH_WINDOW") or "0")

local function throughput(uri, n, size, qos)
  local pub, sub, topic = pair(uri, "tput", qos)
  local payload = payload_of(size)
  local opts = { qos = qos }
  local received, bad, last = 0, 0, 0
  sub:on("message", function(msg)
    received = received + 1
    if #msg.payload ~= size then bad = bad + 1 end
    last = now()
  end)
  local tokens = {}
  local t0, c0, b0 = now(), cpu_self(), cpu_broker()
  for i = 1, n do
    if WINDOW > 0 and i > WINDOW then
      assert(tokens[i - WINDOW]:wait(10))
      tokens[i - WINDOW] = nil
    end
    local tok, err = pub:publish(topic, payload, opts)
    if not tok then error("publish failed: " .. tostring(err)) end
    if WINDOW > 0 then tokens[i] = tok end
    if DISPATCH_EVERY > 0 and i % DISPATCH_EVERY == 0 then mqtt.dispatch(0) end
  end
  -- wait for the arrivals; give up after 5 s without progress
  local prev, progress = -1, now()
  while received < n do
    if received ~= prev then prev, progress = received, now()
    elseif now() - progress > 5 then break end
    mqtt.dispatch(0.5)
  end
  local t1 = received > 0 and last or now()
  local c1, b1 = cpu_self(), cpu_broker()
  print(("RESULT impl=lua mode=throughput qos=%d size=%d n=%d received=%d bad=%d elapsed_s=%.4f "
    .. "msgs_per_s=%.0f cpu_s=%.3f broker_cpu_s=%.3f")
    :format(qos, size, n, received, bad, t1 - t0, received / (t1 - t0), delta(c0, c1), delta(b0, b1)))
  io.stdout:flush()
  close_pair(pub, sub)
  return received == n
end

local function percentile(sorted, p)
  return sorted[math.floor(p * (#sorted - 1) + 0.5) + 1]
end

local function latency(uri, m, size, qos)
  local pub, sub, topic = pair(uri, "lat", qos)
  local payload = payload_of(size)
  local opts = { qos = qos }
  local received = 0
  sub:on("message", function() received = received + 1 end)
  local warm = math.min(50, math.floor(m / 10))
  local lat, sum = {}, 0
  local c0, b0, start = cpu_self(), cpu_broker(), now()
  for i = -warm + 1, m do
    local target = received + 1
    local t0 = now()
    assert(pub:publish(topic, payload, opts))
    local deadline = t0 + 5
    while received < target do
      if now() > deadline then error("message " .. i .. " did not arrive within 5 s") end
      mqtt.dispatch(1)
    end
    if i >= 1 then
      local us = (now() - t0) * 1e6
      lat[i] = us
      sum = sum + us
    end
  end
  local c1, b1 = cpu_self(), cpu_broker()
  table.sort(lat)
  print(("RESULT impl=lua mode=latency qos=%d size=%d n=%d p50_us=%.1f p99_us=%.1f mean_us=%.1f "
    .. "elapsed_s=%.4f cpu_s=%.3f broker_cpu_s=%.3f")
    :format(qos, size, m, percentile(lat, 0.5), percentile(lat, 0.99), sum / m, now() - start,
      delta(c0, c1), delta(b0, b1)))
  io.stdout:flush()
  close_pair(pub, sub)
  return true
end

local function connect_times(uri, k)
  local clients, t = {}, {}
  for i = 1, k do
    local t0 = now()
    local c = assert(mqtt.client { uri = uri, id = ("lua-conn-%s-%d"):format(pid, i) })
    assert(c:connect {})
    t[i] = (now() - t0) * 1e3
    clients[i] = c
  end
  local rest = {}
  for i = 2, k do rest[#rest + 1] = t[i] end
  table.sort(rest)
  print(("RESULT impl=lua mode=connect n=%d first_ms=%.2f next_p50_ms=%.2f next_max_ms=%.2f")
    :format(k, t[1], percentile(rest, 0.5), rest[#rest]))
  io.stdout:flush()
  for i = k, 1, -1 do
    clients[i]:disconnect()
    clients[i]:close()
  end
  return true
end

local mode, uri = arg[1], arg[2]
local a, b, c = tonumber(arg[3]), tonumber(arg[4]), tonumber(arg[5])
local ok
if mode == "throughput" and a and b and c then
  ok = throughput(uri, math.floor(a), math.floor(b), math.floor(c))
elseif mode == "latency" and a and b and c then
  ok = latency(uri, math.floor(a), math.floor(b), math.floor(c))
elseif mode == "connect" and a and a >= 2 then
  ok = connect_times(uri, math.floor(a))
elseif mode == "version" then
  print(("paho.mqtt %s, paho.mqtt.c %s, %s"):format(mqtt.VERSION, mqtt.PAHO_VERSION, _VERSION))
  ok = true
else
  io.stderr:write("usage: lua bench/bench.lua throughput|latency URI N SIZE QOS | connect URI K | version\n")
  os.exit(1)
end
os.exit(ok and 0 or 1)
