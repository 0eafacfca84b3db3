--- Drives tools/faultproxy (built to build/tools/faultproxy by `make all`):
-- a loopback TCP proxy between a client and a broker that injects faults.
--
--   local fp = require "faultproxy"
--   local p = fp.start(broker.port)        -- p.port, p.uri = "tcp://127.0.0.1:<port>"
--   p:stall()  p:pass()  p:delay(150)  p:reset()  p:halfclose()  p:refuse()  p:accept()
--   p:stop()
--
-- Each command applies to every current and future connection through the
-- proxy and has taken effect when the method returns. The binary is found at
-- build/tools/faultproxy under the repository root, or at $PMQ_FAULTPROXY.
local helper = require "helper"

local M = {}

local Proxy = {}
Proxy.__index = Proxy

-- the repository root: this file is <root>/spec/support/faultproxy.lua
local function root()
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/spec/support/[^/]*$")
  return dir or "."
end

local function binary()
  local env = os.getenv("PMQ_FAULTPROXY")
  if env and env ~= "" then return env end
  return root() .. "/build/tools/faultproxy"
end
M.binary = binary

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function alive(pid)
  local stat = helper.read("/proc/" .. pid .. "/stat")
  return stat ~= nil and not stat:match("^%d+ %b() Z")
end

local seq = 0

--- Starts a proxy to 127.0.0.1:target_port. opts.max_seconds (600) bounds
-- its life should the spec never stop it.
function M.start(target_port, opts)
  opts = opts or {}
  local bin = binary()
  if not exists(bin) then
    error("faultproxy: no " .. bin .. " (run `make all`, or set PMQ_FAULTPROXY)", 2)
  end
  seq = seq + 1
  local base = ("%s/faultproxy-%d-%d"):format(helper.tmpdir(), helper.pid() or 0, seq)
  local portfile, pidfile = base .. ".port", base .. ".pid"
  os.remove(portfile)
  -- the shell writes its pid and becomes the proxy (exec), so the pid is the proxy's
  local cmd = ("echo $$ >'%s'; exec '%s' %d '%s' %d >'%s.out' 2>'%s.err'"):format(
    pidfile, bin, target_port, portfile, opts.max_seconds or 600, base, base)
  local pipe = assert(io.popen(cmd, "w"))
  local self = setmetatable({ pipe = pipe, base = base, target_port = target_port }, Proxy)
  local deadline = helper.now() + 5
  local port
  repeat
    port = tonumber((helper.read(portfile) or ""):match("^(%d+)\n"))
    if not port then helper.sleep(0.01) end
  until port or helper.now() > deadline
  self.pid = tonumber((helper.read(pidfile) or ""):match("^(%d+)"))
  if not port then
    self:stop()
    error("faultproxy did not start: " .. (helper.read(base .. ".err") or "(no stderr)"), 2)
  end
  self.port = port
  self.uri = "tcp://127.0.0.1:" .. port
  return self
end

--- What the proxy wrote to stderr so far.
function Proxy:errors()
  return helper.read(self.base .. ".err") or ""
end

function Proxy:alive()
  return self.pid ~= nil and alive(self.pid)
end

--- Sends one command line and waits ~50 ms for it to take effect.
function Proxy:command(line)
  assert(self.pipe, "faultproxy: already stopped")
  -- writing to a dead proxy would kill this process with SIGPIPE
  if not self:alive() then
    error("faultproxy has exited: " .. self:errors(), 2)
  end
  assert(self.pipe:write(line, "\n"))
  assert(self.pipe:flush())
  helper.sleep(0.05)
  return self
end

function Proxy:pass() return self:command("pass") end
function Proxy:stall() return self:command("stall") end
function Proxy:reset() return self:command("reset") end
function Proxy:halfclose() return self:command("halfclose") end
function Proxy:refuse() return self:command("refuse") end
function Proxy:accept() return self:command("accept") end

function Proxy:delay(ms)
  assert(type(ms) == "number" and ms >= 0, "delay: milliseconds expected")
  return self:command(("delay %d"):format(ms))
end

--- Quits the proxy (its connections close) and waits for it to exit.
-- Safe to call twice.
function Proxy:stop()
  local pipe = self.pipe
  if not pipe then return end
  self.pipe = nil
  if self:alive() then
    pcall(pipe.write, pipe, "quit\n")
    pcall(pipe.flush, pipe)
  end
  pipe:close() -- EOF on its stdin: it exits even if quit was not read; pclose waits
end

return M
