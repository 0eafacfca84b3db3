--- Test helper: owns the mosquitto processes the specs run against.
--
--   local helper = require "helper"
--   local broker = helper.broker()            -- a fresh mosquitto on a free port
--   local b2 = helper.broker{ config = {"max_qos 0"} }
--   broker.uri, broker.port; broker:stop(); broker:pause(); broker:resume(); broker:kill()
--
-- Every broker listens on 127.0.0.1 only and is stopped when the spec file
-- ends (helper.stop_all, called from a `teardown`; tools/run-tests.sh stops
-- any a crashed run left behind).
local core = require "paho.mqtt.core"

local M = {}
local running = {}
local seq = 0

function M.sleep(s) core.poll({}, s) end
M.now = core.now

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
M.read = read

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end
M.sh = sh

--- A name unique in this run, for client ids and topics.
function M.uid(prefix)
  seq = seq + 1
  return ("%s-%d-%d"):format(prefix or "t", os.time() % 100000, seq)
end

local tmproot
local function tmpdir()
  if not tmproot then
    -- under PMQ_TMP_ROOT when tools/run-tests.sh set one (it removes the
    -- whole root after the run), else /tmp
    local root = os.getenv("PMQ_TMP_ROOT")
    if not root or not root:match("^/[%w%./_-]+$") then root = "/tmp" end
    local p = io.popen("mktemp -d " .. root .. "/paho-mqtt-spec.XXXXXX")
    tmproot = p:read("*l")
    p:close()
  end
  return tmproot
end
M.tmpdir = tmpdir

local is_root = (function()
  local p = io.popen("id -u")
  local uid = p:read("*l")
  p:close()
  return uid == "0"
end)()

local Broker = {}
Broker.__index = Broker

-- alive and not a zombie (PID 1 of a container may never reap it)
local function alive(pid)
  local stat = read("/proc/" .. pid .. "/stat")
  return stat ~= nil and not stat:match("^%d+ %b() Z")
end

function Broker:alive()
  return self.pid ~= nil and alive(self.pid)
end

function Broker:signal(sig)
  if self.pid then sh(("kill -%s %d 2>/dev/null"):format(sig, self.pid)) end
end

function Broker:pause() self:signal("STOP") end
function Broker:resume() self:signal("CONT") end

--- Stops the broker (SIGTERM: mosquitto saves its persistence file) and waits.
function Broker:stop(sig)
  if not self.pid then return end
  self:signal("CONT")
  self:signal(sig or "TERM")
  local deadline = core.now() + 5
  while self:alive() and core.now() < deadline do M.sleep(0.02) end
  if self:alive() then self:signal("KILL") M.sleep(0.1) end
  running[self] = nil
  self.pid = nil
end

function Broker:kill() self:stop("KILL") end

--- Starts it again on the same port, with the same config and data.
function Broker:start()
  assert(not self.pid, "broker already running")
  for _ = 1, 10 do
    local log = self.dir .. "/mosquitto.log"
    -- the log of the broker's previous life is kept as mosquitto.log.<n>
    self.lives = (self.lives or 0) + 1
    os.rename(log, log .. "." .. self.lives)
    local p = io.popen(("mosquitto -c %s/mosquitto.conf >%s.out 2>&1 & echo $!"):format(self.dir, log))
    local pid = tonumber(p:read("*l"))
    p:close()
    if not pid then error("could not start mosquitto") end
    local deadline = core.now() + 5
    while core.now() < deadline do
      local text = read(log) or ""
      if text:find("running", 1, true) then
        self.pid = pid
        running[self] = true
        return self
      end
      if not alive(pid) then break end
      M.sleep(0.02)
    end
    sh("kill -9 " .. pid .. " 2>/dev/null")
    M.sleep(0.2) -- the port may be in TIME_WAIT after a restart
  end
  error("mosquitto did not start on port " .. self.port .. ":\n" .. (read(self.dir .. "/mosquitto.log") or "")
    .. (read(self.dir .. "/mosquitto.log.out") or ""))
end

--- A port for a listener: below the kernel's ephemeral range (which
-- outgoing connections take their local ports from), so a broker stopped
-- and started again on its port cannot find it taken by one of the many
-- connections the specs open meanwhile (seen: "Address already in use" on
-- every retry of a restart, two fault specs side by side)
local port_low, port_high = 20000, 59999
do
  local f = io.open("/proc/sys/net/ipv4/ip_local_port_range")
  local low = f and tonumber((f:read("*l") or ""):match("^(%d+)"))
  if f then f:close() end
  if low and low > port_low + 2000 then port_high = low - 1 end
end
function M.listen_port()
  return math.random(port_low, port_high)
end

--- A new broker: opts.config = {"extra config line", ...}
function M.broker(opts)
  opts = opts or {}
  seq = seq + 1
  local dir = ("%s/broker-%d"):format(tmpdir(), seq)
  sh("mkdir -p " .. dir)
  for _ = 1, 20 do
    local port = M.listen_port()
    local conf = {
      "listener " .. port .. " 127.0.0.1",
      "allow_anonymous true",
      "persistence true",
      "persistence_location " .. dir .. "/",
      "log_dest file " .. dir .. "/mosquitto.log",
      "log_type error",
      "log_type warning",
      "log_type notice",
      "log_type information",
    }
    if is_root then conf[#conf + 1] = "user root" end -- keep write access to dir
    for _, line in ipairs(opts.config or {}) do conf[#conf + 1] = line end
    local f = assert(io.open(dir .. "/mosquitto.conf", "w"))
    f:write(table.concat(conf, "\n"), "\n")
    f:close()
    local b = setmetatable({ port = port, dir = dir, uri = "tcp://127.0.0.1:" .. port }, Broker)
    local ok = pcall(b.start, b)
    if ok then return b end
  end
  error("could not start mosquitto on any port")
end

function M.stop_all()
  for b in pairs(running) do b:stop() end
end

--- Polls cond() every 10 ms while dispatching, for at most `timeout` s.
function M.eventually(cond, timeout, mqtt)
  local deadline = core.now() + (timeout or 5)
  repeat
    if cond() then return true end
    if mqtt then mqtt.dispatch(0.01) else M.sleep(0.01) end
  until core.now() > deadline
  return cond() and true or false
end

--- A client that records its events in order: returns c, log with the lists
-- log.connect, log.disconnect, log.connect_failed, log.message, log.errors.
function M.recorder(opts)
  local c = assert(require("paho.mqtt").client(opts))
  local log = { connect = {}, disconnect = {}, connect_failed = {}, message = {}, errors = {} }
  c:on("connect", function(i) log.connect[#log.connect + 1] = i end)
  c:on("disconnect", function(r) log.disconnect[#log.disconnect + 1] = r end)
  c:on("connect_failed", function(r) log.connect_failed[#log.connect_failed + 1] = r end)
  c:on("message", function(m) log.message[#log.message + 1] = m end)
  c:on("error", function(e) log.errors[#log.errors + 1] = e end)
  return c, log
end

--- Open descriptors of this process.
function M.pid()
  return tonumber((read("/proc/self/stat") or ""):match("^(%d+)"))
end

function M.fd_count()
  local p = io.popen("ls /proc/" .. M.pid() .. "/fd 2>/dev/null | wc -l")
  local n = tonumber(p:read("*l"))
  p:close()
  return n
end

--- This process's descriptors as { [fd] = target } (sockets, pipes, files).
function M.fd_map()
  local p = io.popen("ls -l /proc/" .. M.pid() .. "/fd 2>/dev/null")
  local m = {}
  for line in p:lines() do
    local fd, target = line:match("(%d+) %-> (.*)$")
    if fd then m[tonumber(fd)] = target end
  end
  p:close()
  return m
end

--- What b has that a has not, as "fd -> target, ..." ("" when nothing).
function M.fd_diff(a, b)
  local out = {}
  for fd, target in pairs(b) do
    if a[fd] ~= target then out[#out + 1] = fd .. " -> " .. target end
  end
  table.sort(out)
  return table.concat(out, ", ")
end

--- Resident set size of this process in KiB (nil if /proc says nothing).
function M.rss_kib()
  return tonumber((read("/proc/self/status") or ""):match("VmRSS:%s*(%d+)"))
end

--- Threads of this process.
function M.thread_count()
  local s = read("/proc/self/status") or ""
  return tonumber(s:match("Threads:%s*(%d+)"))
end

-- No finalizer stops brokers at exit: under LuaJIT, one that opened files
-- and slept while the state closed spun for ever at 100 % CPU after the
-- last test (4 CI runs). Every spec stops its brokers in `teardown`;
-- tools/run-tests.sh stops whatever a crashed or killed run left under its
-- PMQ_TMP_ROOT.

math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
return M
