--- bench/run.lua - `make bench`: the Lua binding against raw paho.mqtt.c.
--
--   lua bench/run.lua RAW_BINARY
--
-- Starts a private mosquitto on a free loopback port, then runs every case
-- with bench/raw.c (C) and bench/bench.lua (Lua) interleaved, C, Lua, C,
-- Lua, ... (BENCH_REPS times each, default 3), and prints per case the
-- median of the runs: messages per second, latency p50/p99, connect times,
-- the Lua/C ratio, the client's CPU per message and the broker's CPU use
-- over the measured interval (from /proc/PID/stat). Last it runs
-- bench/frame_budget.lua (one frame's dispatch after a stall, with and
-- without a budget), bench/self_subscribe.lua (a client receiving its own
-- QoS 1 publishes, against no_local and a second client),
-- bench/connect_alone.lua (connect times of a client alone in its process),
-- bench/race.lua (the binding against raw paho C, luamqtt, Python paho and
-- mosquitto_pub/sub, each on the same broker) and
-- bench/slow_consumer.lua (memory with a slow subscriber).
--
-- Environment: BENCH_REPS (3), BENCH_SCALE (1.0: multiplies every message
-- count), BENCH_CASES (a Lua pattern matched against case names, e.g.
-- "qos1" or "latency"), BENCH_SLOW_N (50000; 0 skips the slow consumer),
-- BENCH_PACE (20: the window of the "paced" Lua runs, which wait for
-- publish i-PACE before publish i, as raw.c does; the plain Lua runs
-- publish everything at once and let the binding hold what does not fit).
--
-- Benchmarks are not tests: the exit status is 0 when everything ran,
-- whatever the numbers; it is 1 only when a run failed (crashed, timed out
-- or lost a QoS 1/2 message).

local RAW = arg[1]
if not RAW then
  io.stderr:write("usage: lua bench/run.lua RAW_BINARY\n")
  os.exit(2)
end
local HERE = (arg[0]:match("^(.*)/[^/]*$") or ".")
local LUA = arg[-1] or "lua"
local REPS = tonumber(os.getenv("BENCH_REPS") or "3")
local SCALE = tonumber(os.getenv("BENCH_SCALE") or "1")
local ONLY = os.getenv("BENCH_CASES")
local SLOW_N = tonumber(os.getenv("BENCH_SLOW_N") or "50000")
-- the window raw.c keeps (the broker's Receive Maximum: mosquitto's
-- max_inflight_messages, 20 by default) for the "paced" Lua runs
local PACE = tonumber(os.getenv("BENCH_PACE") or "20")

package.path = HERE .. "/?.lua;" .. package.path
local lib = require "benchlib"
local now, capture, sh, alive = lib.now, lib.capture, lib.sh, lib.alive

local broker -- bench/benchlib.lua starts it, below

-----------------------------------------------------------------------------
-- runs

local failures = {}

local function parse(line)
  local r = {}
  for k, v in line:gmatch("([%w_]+)=(%S+)") do r[k] = tonumber(v) or v end
  return r
end

-- run one program; returns the parsed RESULT line or nil
local function run_one(impl, args)
  local cmd
  if impl == "c" then
    cmd = ("%s %s"):format(RAW, args)
  elseif impl == "paced" then
    -- the same program, pacing its publishes as raw.c does: publish i waits
    -- for publish i-PACE to complete (PACE: mosquitto's Receive Maximum)
    cmd = ("env BENCH_WINDOW=%d %s %s/bench.lua %s"):format(PACE, LUA, HERE, args)
  else
    cmd = ("%s %s/bench.lua %s"):format(LUA, HERE, args)
  end
  local out = capture(("BROKER_PID=%s timeout 120 %s 2>&1"):format(broker.pid, cmd))
  local line = out:match("(RESULT[^\n]*)")
  if not line then
    failures[#failures + 1] = ("%s %s: no result\n%s"):format(impl, args, out)
    io.write(("  %-4s FAILED (%s)\n"):format(impl, (out:gsub("\n", " | ")):sub(1, 300)))
    return nil
  end
  local r = parse(line)
  if r.received and r.n and r.received < r.n and r.qos and r.qos > 0 then
    failures[#failures + 1] = ("%s %s: lost %d of %d messages"):format(impl, args, r.n - r.received, r.n)
  end
  io.write("  ", line:gsub("^RESULT ", ""), "\n")
  io.flush()
  if not alive(broker.pid) then error("the broker died") end
  return r
end

local median = lib.median

local function col(runs, key)
  local t = {}
  for _, r in ipairs(runs) do
    if r[key] ~= nil and type(r[key]) == "number" then t[#t + 1] = r[key] end
  end
  return t
end

-- runs C and Lua interleaved; returns {c = {results}, lua = {results}}
local function interleave(args, impls)
  impls = impls or { "c", "lua" }
  local res = {}
  for _, impl in ipairs(impls) do res[impl] = {} end
  for _ = 1, REPS do
    for _, impl in ipairs(impls) do
      local r = run_one(impl, args)
      if r then res[impl][#res[impl] + 1] = r end
    end
  end
  return res
end

-----------------------------------------------------------------------------
-- cases

local function n_of(n) return math.max(10, math.floor(n * SCALE + 0.5)) end

local throughput_cases = {
  { name = "qos0-100B", qos = 0, size = 100, n = 30000 },
  { name = "qos1-100B", qos = 1, size = 100, n = 20000 },
  { name = "qos2-100B", qos = 2, size = 100, n = 12000 },
  { name = "qos0-16KiB", qos = 0, size = 16384, n = 10000 },
  { name = "qos1-16KiB", qos = 1, size = 16384, n = 10000 },
  { name = "qos2-16KiB", qos = 2, size = 16384, n = 6000 },
}
local latency_cases = {
  { name = "latency-qos0", qos = 0, size = 100, n = 3000 },
  { name = "latency-qos1", qos = 1, size = 100, n = 3000 },
}
local CONNECT_K = 10

local function wanted(name) return not ONLY or name:find(ONLY) ~= nil end

local function fmt_num(v, f)
  if v == nil then return "-" end
  return (f or "%.0f"):format(v)
end

local function ratio(a, b)
  if not a or not b or b == 0 then return nil end
  return a / b
end

local function first_line(s) return (s or ""):match("[^\n]*") end

-- never drop messages for a subscriber that falls behind (the default drops
-- QoS 0 and queues at most 1000 QoS 1/2 messages per client): the
-- benchmarks count every message
broker = lib.broker("bench", { "max_queued_messages 0" })
local ok, err = pcall(function()
  local t_start = now()
  local cpu = first_line(capture("grep -m1 'model name' /proc/cpuinfo")):gsub("^model name%s*:%s*", "")
  print("paho.mqtt for Lua: benchmark against raw paho.mqtt.c (MQTT 5, one process: publisher + subscriber)")
  print(("machine: %s cores (nproc), %s; %s"):format(first_line(capture("nproc")), cpu,
    first_line(capture("uname -sr"))))
  print(("paho.mqtt.c: %s"):format(first_line(capture(RAW .. " version | grep '^Version'"))))
  print(("lua: %s"):format(first_line(capture(("%s %s/bench.lua version"):format(LUA, HERE)))))
  print(("broker: %s (pid %s, %s, max_queued_messages 0)"):format(
    first_line(capture("mosquitto -h 2>&1 | head -1")), broker.pid, broker.uri))
  print(("load before: %s"):format(first_line(capture("cat /proc/loadavg"))))
  print(("runs: %d of each, interleaved C, Lua, C, Lua...; medians reported"):format(REPS))
  print()

  local tput_rows, lat_rows, conn_row = {}, {}, nil

  for _, case in ipairs(throughput_cases) do
    if wanted(case.name) then
      local n = n_of(case.n)
      print(("== throughput %s: %d messages of %d B at QoS %d"):format(case.name, n, case.size, case.qos))
      local res = interleave(("throughput %s %d %d %d"):format(broker.uri, n, case.size, case.qos),
        { "c", "lua", "paced" })
      local row = { name = case.name }
      for _, impl in ipairs { "c", "lua", "paced" } do
        local runs = res[impl]
        row[impl] = {
          rate = median(col(runs, "msgs_per_s")),
          cpu_us = median((function()
            local t = {}
            for _, r in ipairs(runs) do
              if r.cpu_s and r.received and r.received > 0 then t[#t + 1] = r.cpu_s / r.received * 1e6 end
            end
            return t
          end)()),
          broker = median((function()
            local t = {}
            for _, r in ipairs(runs) do
              if r.broker_cpu_s and r.broker_cpu_s >= 0 and r.elapsed_s > 0 then
                t[#t + 1] = 100 * r.broker_cpu_s / r.elapsed_s
              end
            end
            return t
          end)()),
          all = col(runs, "msgs_per_s"),
        }
      end
      row.ratio = ratio(row.lua.rate, row.c.rate)
      row.pratio = ratio(row.paced.rate, row.c.rate)
      tput_rows[#tput_rows + 1] = row
      print(("   C %s msg/s, Lua %s msg/s, Lua/C %s; Lua paced like C %s msg/s, %s"):format(fmt_num(row.c.rate),
        fmt_num(row.lua.rate), fmt_num(row.ratio, "%.2f"), fmt_num(row.paced.rate), fmt_num(row.pratio, "%.2f")))
      print()
    end
  end

  for _, case in ipairs(latency_cases) do
    if wanted(case.name) then
      local n = n_of(case.n)
      print(("== %s: %d round trips of %d B at QoS %d"):format(case.name, n, case.size, case.qos))
      local res = interleave(("latency %s %d %d %d"):format(broker.uri, n, case.size, case.qos))
      local row = { name = case.name }
      for _, impl in ipairs { "c", "lua" } do
        row[impl] = { p50 = median(col(res[impl], "p50_us")), p99 = median(col(res[impl], "p99_us")) }
      end
      lat_rows[#lat_rows + 1] = row
      print(("   p50: C %s us, Lua %s us, Lua/C %s"):format(fmt_num(row.c.p50, "%.1f"),
        fmt_num(row.lua.p50, "%.1f"), fmt_num(ratio(row.lua.p50, row.c.p50), "%.2f")))
      print()
    end
  end

  if wanted("connect") then
    print(("== connect: %d clients one after another in one process, each staying connected"):format(CONNECT_K))
    local res = interleave(("connect %s %d"):format(broker.uri, CONNECT_K))
    conn_row = {}
    for _, impl in ipairs { "c", "lua" } do
      conn_row[impl] = { first = median(col(res[impl], "first_ms")), next = median(col(res[impl], "next_p50_ms")) }
    end
    print()
  end

  -- the summary
  print(("== summary (median of %d runs each; Lua/C > 1 means Lua is faster for rates, slower for times)")
    :format(REPS))
  if #tput_rows > 0 then
    print()
    print("throughput            C msg/s  Lua msg/s  Lua/C   C CPU us/msg  Lua CPU us/msg  broker CPU C / Lua")
    for _, r in ipairs(tput_rows) do
      print(("%-20s %9s %10s %6s %14s %15s %10s / %s"):format(r.name, fmt_num(r.c.rate), fmt_num(r.lua.rate),
        fmt_num(r.ratio, "%.2f"), fmt_num(r.c.cpu_us), fmt_num(r.lua.cpu_us),
        fmt_num(r.c.broker, "%.0f%%"), fmt_num(r.lua.broker, "%.0f%%")))
    end
    print()
    print(("paced like C (publish i waits for i-%d)  C msg/s  Lua msg/s  Lua/C   Lua CPU us/msg"):format(PACE))
    for _, r in ipairs(tput_rows) do
      print(("%-38s %9s %10s %6s %15s"):format(r.name, fmt_num(r.c.rate), fmt_num(r.paced.rate),
        fmt_num(r.pratio, "%.2f"), fmt_num(r.paced.cpu_us)))
    end
  end
  if #lat_rows > 0 then
    print()
    print("latency (100 B)       C p50 us  Lua p50 us  Lua/C   C p99 us  Lua p99 us  Lua/C")
    for _, r in ipairs(lat_rows) do
      print(("%-20s %9s %11s %6s %10s %11s %6s"):format(r.name, fmt_num(r.c.p50, "%.1f"),
        fmt_num(r.lua.p50, "%.1f"), fmt_num(ratio(r.lua.p50, r.c.p50), "%.2f"), fmt_num(r.c.p99, "%.1f"),
        fmt_num(r.lua.p99, "%.1f"), fmt_num(ratio(r.lua.p99, r.c.p99), "%.2f")))
    end
  end
  if conn_row then
    print()
    print("connect (create + CONNACK)   C ms     Lua ms   Lua/C")
    print(("1st client             %10s %10s %7s"):format(fmt_num(conn_row.c.first, "%.1f"),
      fmt_num(conn_row.lua.first, "%.1f"), fmt_num(ratio(conn_row.lua.first, conn_row.c.first), "%.2f")))
    print(("2nd..%dth, p50         %10s %10s %7s"):format(CONNECT_K, fmt_num(conn_row.c.next, "%.1f"),
      fmt_num(conn_row.lua.next, "%.1f"), fmt_num(ratio(conn_row.lua.next, conn_row.c.next), "%.2f")))
  end
  print()
  print(("load after: %s; the benchmarks took %.0f s"):format(first_line(capture("cat /proc/loadavg")),
    now() - t_start))

  if wanted("frame") then
    print()
    print("== frame budget (bench/frame_budget.lua)")
    io.flush()
    if not sh(("MQTT_URI=%s timeout 120 %s %s/frame_budget.lua"):format(broker.uri, LUA, HERE)) then
      failures[#failures + 1] = "frame budget: failed"
    end
  end

  if wanted("selfsub") then
    print()
    print("== receiving your own QoS 1 publishes (bench/self_subscribe.lua)")
    io.flush()
    if not sh(("MQTT_URI=%s timeout 300 %s %s/self_subscribe.lua"):format(broker.uri, LUA, HERE)) then
      failures[#failures + 1] = "self subscribe: failed"
    end
  end

  if wanted("race") then
    print()
    print("== the race: this binding against raw paho C, luamqtt, Python paho and mosquitto_pub/sub "
      .. "(bench/race.lua)")
    io.flush()
    if not sh(("timeout 1200 %s %s/race.lua"):format(LUA, HERE)) then
      failures[#failures + 1] = "race: a run failed"
    end
  end

  if wanted("alone") then
    print()
    print("== connect, a client alone in its process (bench/connect_alone.lua)")
    io.flush()
    if not sh(("MQTT_URI=%s timeout 300 %s %s/connect_alone.lua"):format(broker.uri, LUA, HERE)) then
      failures[#failures + 1] = "connect alone: failed"
    end
  end

  if SLOW_N > 0 and wanted("slow") then
    print()
    print(("== slow consumer (bench/slow_consumer.lua, SLOW_CONSUMER_N=%d)"):format(SLOW_N))
    io.flush()
    local cmd = ("SLOW_CONSUMER_N=%d MQTT_URI=%s BROKER_PID=%s timeout %d %s %s/slow_consumer.lua")
      :format(SLOW_N, broker.uri, broker.pid, 600 + math.floor(SLOW_N / 100), LUA, HERE)
    if not sh(cmd) then failures[#failures + 1] = "slow consumer: failed or lost messages" end
  end
end)
broker.stop()
if not ok then
  io.stderr:write("bench: ", tostring(err), "\n")
  os.exit(1)
end
if #failures > 0 then
  print()
  print("bench: some runs failed:")
  for _, f in ipairs(failures) do print("  " .. f) end
  os.exit(1)
end
os.exit(0)
