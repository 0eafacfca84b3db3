--- bench/benchlib.lua - what the benchmark drivers share (bench/run.lua,
-- bench/race.lua): shell helpers, the median, and a private mosquitto on a
-- free loopback port. Not a test helper (spec/support/helper.lua is).
local core = require "paho.mqtt.core" -- now() and a sleep; no client is made here

local M = {}

M.now = core.now
function M.sleep(s) core.poll({}, s) end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

function M.capture(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end

function M.sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

function M.alive(pid)
  local stat = M.read("/proc/" .. pid .. "/stat")
  return stat ~= nil and not stat:match("^%d+ %b() Z") -- PID 1 may never reap it
end

-- the median of a list of numbers (nil for an empty one); the list is not changed
function M.median(list)
  local t = {}
  for _, v in ipairs(list) do t[#t + 1] = v end
  if #t == 0 then return nil end
  table.sort(t)
  if #t % 2 == 1 then return t[(#t + 1) / 2] end
  return (t[#t / 2] + t[#t / 2 + 1]) / 2
end

--- Starts mosquitto on a free loopback port in a fresh temporary directory
-- (tag names it), with `extra` configuration lines; returns
-- { pid, port, dir, uri, stop = function }, or raises.
function M.broker(tag, extra)
  local dir = M.capture(("mktemp -d /tmp/paho-mqtt-%s.XXXXXX"):format(tag)):match("%S+")
  local is_root = M.capture("id -u"):match("%d+") == "0"
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  for _ = 1, 20 do
    local port = 20000 + math.random(0, 39999)
    local conf = {
      "listener " .. port .. " 127.0.0.1",
      "allow_anonymous true",
      "log_dest file " .. dir .. "/mosquitto.log",
      "log_type error", "log_type warning", "log_type notice", "log_type information",
    }
    for _, line in ipairs(extra or {}) do conf[#conf + 1] = line end
    if is_root then conf[#conf + 1] = "user root" end
    local f = assert(io.open(dir .. "/mosquitto.conf", "w"))
    f:write(table.concat(conf, "\n"), "\n")
    f:close()
    os.remove(dir .. "/mosquitto.log")
    local pid = M.capture(("mosquitto -c %s/mosquitto.conf >%s/mosquitto.out 2>&1 & echo $!"):format(dir, dir))
      :match("%d+")
    local deadline = M.now() + 5
    while pid and M.now() < deadline do
      if (M.read(dir .. "/mosquitto.log") or ""):find("running", 1, true) then
        local b = { pid = pid, port = port, dir = dir, uri = "tcp://127.0.0.1:" .. port }
        function b.stop()
          if not b.pid then return end
          M.sh("kill " .. b.pid .. " 2>/dev/null")
          local until_ = M.now() + 5
          while M.alive(b.pid) and M.now() < until_ do M.sleep(0.02) end
          if M.alive(b.pid) then M.sh("kill -9 " .. b.pid .. " 2>/dev/null") end
          M.sh("rm -rf " .. b.dir)
          b.pid = nil
        end
        return b
      end
      if not M.alive(pid) then break end
      M.sleep(0.02)
    end
    if pid then M.sh("kill -9 " .. pid .. " 2>/dev/null") end
  end
  M.sh("rm -rf " .. dir)
  error("could not start mosquitto")
end

return M
