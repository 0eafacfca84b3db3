--- bench/race.lua - the binding against the other MQTT clients a Lua user
-- could pick, in one run, interleaved: the same workload (one publisher and
-- one subscriber through one mosquitto, 100 B payloads, everything published
-- at once, the time until the last message arrived) through
--
--   lua (system paho)   bench/bench.lua on the core built against Debian's paho
--   lua (source paho)   the same on the core linked with paho built from source
--                       (make PAHO_SRC=..., PAHO_HIGH_PERFORMANCE)
--   C (system paho)     bench/raw.c, paho's MQTTAsync API used directly
--   C (source paho)     the same, linked with the source build
--   luamqtt 3.4.3       pure Lua on LuaSocket (bench/peers/luamqtt.lua)
--   python paho 1.6     Debian's python3-paho-mqtt (bench/peers/paho_python.py)
--   mosquitto_pub/sub   libmosquitto's clients (bench/peers/mosquitto_clients.sh)
--
-- and prints msgs/s (median of RACE_REPS runs, default 3) and the ratio of
-- the binding on the source build to each. A peer that is not available is
-- reported as such. Its own broker: mosquitto with max_queued_messages 0 and
-- max_inflight_messages 0 (nothing dropped, no in-flight limit), the same
-- for every peer.
--
--   lua bench/race.lua          (make bench runs it; see bench/run.lua)
--
-- Environment (the Makefile sets the first four): RACE_RAW (C, system),
-- RACE_SRC_BUILD (a BUILD made with PAHO_SRC: its core and bench/raw),
-- RACE_SYS_CPATH (the system core's LUA_CPATH), RACE_LUAMQTT (luamqtt's
-- tarball or source directory), RACE_REPS (3), RACE_SCALE (1.0), RACE_QOS
-- ("0 1 2").
local HERE = (arg[0]:match("^(.*)/[^/]*$") or ".")
package.path = HERE .. "/?.lua;" .. package.path
local lib = require "benchlib"
local sh, capture, exists, median = lib.sh, lib.capture, lib.exists, lib.median
local LUA = arg[-1] or "lua"
local REPS = tonumber(os.getenv("RACE_REPS") or "3")
local SCALE = tonumber(os.getenv("RACE_SCALE") or "1")
local QOS = {}
for q in (os.getenv("RACE_QOS") or "0 1 2"):gmatch("%d") do QOS[#QOS + 1] = tonumber(q) end
local SIZE = 100
local N = { [0] = 20000, [1] = 10000, [2] = 10000 }

-- the broker (its directory also holds the unpacked luamqtt) -------------------
local broker = lib.broker("race", { "max_queued_messages 0", "max_inflight_messages 0" })
local dir = broker.dir
local URI = "tcp://127.0.0.1:" .. broker.port

-- the peers ---------------------------------------------------------------------
local root = HERE .. "/.."
local src = os.getenv("RACE_SRC_BUILD")
local luamqtt_dir
do
  local lm = os.getenv("RACE_LUAMQTT")
  if lm and exists(lm) and lm:match("%.tar%.gz$") then
    sh(("mkdir -p %s/luamqtt && tar -xzf %s -C %s/luamqtt"):format(dir, lm, dir))
    luamqtt_dir = capture(("ls -d %s/luamqtt/*/ 2>/dev/null"):format(dir)):match("[^\n]+")
  elseif lm and exists(lm .. "/mqtt/init.lua") then
    luamqtt_dir = lm
  end
  if luamqtt_dir then luamqtt_dir = luamqtt_dir:gsub("/$", "") end
end
local has_socket = sh(LUA .. " -e 'require \"socket\"' 2>/dev/null")
local has_python = sh("/usr/bin/python3 -c 'import paho.mqtt.client' 2>/dev/null")
local has_mosq = sh("command -v mosquitto_pub >/dev/null && command -v mosquitto_sub >/dev/null")
local sys_cpath = os.getenv("RACE_SYS_CPATH") or os.getenv("LUA_CPATH") or ""
local lua_path = ("%s/lua/?.lua;;"):format(root)

local peers = {
  { name = "lua (source paho)", why = "no source build (make PAHO_SRC=...)",
    ok = src and exists(src .. "/paho/mqtt/core.so"),
    cmd = function(n, q)
      return ("LUA_PATH='%s' LUA_CPATH='%s/?.so;;' %s %s/bench.lua throughput %s %d %d %d")
        :format(lua_path, src, LUA, HERE, URI, n, SIZE, q)
    end },
  { name = "lua (system paho)", ok = true,
    cmd = function(n, q)
      return ("LUA_PATH='%s' LUA_CPATH='%s' %s %s/bench.lua throughput %s %d %d %d")
        :format(lua_path, sys_cpath, LUA, HERE, URI, n, SIZE, q)
    end },
  { name = "C (source paho)", why = "no source build", ok = src and exists(src .. "/bench/raw"),
    cmd = function(n, q) return ("%s/bench/raw throughput %s %d %d %d"):format(src, URI, n, SIZE, q) end },
  { name = "C (system paho)", why = "RACE_RAW not set", ok = os.getenv("RACE_RAW") ~= nil,
    cmd = function(n, q) return ("%s throughput %s %d %d %d"):format(os.getenv("RACE_RAW"), URI, n, SIZE, q) end },
  { name = "luamqtt 3.4.3", ok = luamqtt_dir ~= nil and has_socket,
    why = not has_socket and "no LuaSocket for " .. LUA or "no luamqtt source (RACE_LUAMQTT)",
    cmd = function(n, q)
      return ("LUA_PATH='%s/?.lua;%s/?/init.lua;;' %s %s/peers/luamqtt.lua 127.0.0.1:%d %d %d %d")
        :format(luamqtt_dir, luamqtt_dir, LUA, HERE, broker.port, n, SIZE, q)
    end },
  { name = "python paho-mqtt", ok = has_python, why = "no python3-paho-mqtt",
    cmd = function(n, q)
      return ("/usr/bin/python3 %s/peers/paho_python.py 127.0.0.1 %d %d %d %d"):format(HERE, broker.port, n, SIZE, q)
    end },
  { name = "mosquitto_pub/sub", ok = has_mosq, why = "no mosquitto-clients",
    cmd = function(n, q)
      return ("sh %s/peers/mosquitto_clients.sh 127.0.0.1 %d %d %d %d"):format(HERE, broker.port, n, SIZE, q)
    end },
}

print(("race: %d B payloads, one publisher + one subscriber through mosquitto (127.0.0.1:%d, "
  .. "max_inflight_messages 0, max_queued_messages 0), medians of %d interleaved runs"):format(SIZE, broker.port, REPS))
local results, failed = {}, 0
for _, q in ipairs(QOS) do
  local n = math.max(100, math.floor(N[q] * SCALE))
  results[q] = {}
  for rep = 1, REPS do
    for i, p in ipairs(peers) do
      if p.ok then
        local out = capture(("timeout 120 env %s 2>&1"):format(p.cmd(n, q)))
        local line = out:match("RESULT[^\n]*")
        local rate = line and tonumber(line:match("msgs_per_s=([%d%.]+)"))
        local got = line and tonumber(line:match("received=(%d+)"))
        if not rate or got ~= n then
          failed = failed + 1
          io.write(("  qos %d run %d %-18s FAILED: %s\n"):format(q, rep, p.name,
            (line or out):gsub("\n", " | "):sub(1, 200)))
        else
          results[q][i] = results[q][i] or {}
          table.insert(results[q][i], rate)
        end
        io.flush()
      end
    end
  end
end
broker.stop()

-- the table: msgs/s per QoS, and the source-build binding's ratio to each
io.write(("\n%-20s"):format("msgs/s"))
for _, q in ipairs(QOS) do io.write(("%12s %7s"):format("QoS " .. q, "ours/")) end
io.write("\n")
for i, p in ipairs(peers) do
  io.write(("%-20s"):format(p.name))
  for _, q in ipairs(QOS) do
    local m = p.ok and results[q][i] and median(results[q][i])
    local ours = results[q][1] and median(results[q][1]) or (results[q][2] and median(results[q][2]))
    if m then
      io.write(("%12.0f %7.2f"):format(m, ours and ours / m or 0))
    else
      io.write(("%20s"):format(p.ok and "failed" or "n/a"))
    end
  end
  if not p.ok then io.write("   (" .. p.why .. ")") end
  io.write("\n")
end
print("ours/: the binding on the source build (else the system build) divided by the row")
os.exit(failed == 0 and 0 or 1)
