--- An MQTT 3.1.1 broker with a WebSocket listener, for the specs:
-- Debian's mosquitto 2.0.11 is built without websockets, so the specs run
-- aedes (a Node.js broker) behind aedes-server-factory instead.
--
--   local aedes = require "aedes"
--   local s = aedes.start()                  -- ws://127.0.0.1:<port>/mqtt
--   local s = aedes.start{ tls = {cert = path, key = path} }  -- wss://
--   s.port, s.uri; s:stop()
--
-- The npm packages are installed on first use into build/node under the
-- repository root (build/ is not tracked; $PMQ_NODE_DIR overrides it), with
-- `npm install --prefix`, bounded by timeout(1). If that fails (no npm, the
-- registry unreachable) start() raises with npm's output: the specs fail,
-- they never pass silently.
local helper = require "helper"

local M = {}

M.PACKAGES = { "aedes@0.51.3", "aedes-server-factory@0.2.1" }
M.INSTALL_TIMEOUT = 300 -- seconds for npm install

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- the repository root: this file is <root>/spec/support/aedes.lua
local function root()
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/spec/support/[^/]*$")
  if dir and dir:sub(1, 1) ~= "/" then
    local p = io.popen("pwd")
    dir = p:read("*l") .. "/" .. dir
    p:close()
  end
  return dir or "."
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

M.dir = os.getenv("PMQ_NODE_DIR") or (root() .. "/build/node")

local function installed()
  return exists(M.dir .. "/node_modules/aedes/package.json")
    and exists(M.dir .. "/node_modules/aedes-server-factory/package.json")
end

--- Installs the npm packages unless they are there; raises on failure.
function M.install()
  if installed() then return end
  if not helper.sh("command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1") then
    error("aedes: node and npm are needed for the websocket specs (tools/deps.sh installs them)", 2)
  end
  assert(helper.sh("mkdir -p " .. q(M.dir)))
  local log = M.dir .. "/npm-install.log"
  local ok = helper.sh(("cd %s && timeout %d npm install --prefix %s --no-audit --no-fund --save-exact"
    .. " --loglevel=error %s >%s 2>&1"):format(q(M.dir), M.INSTALL_TIMEOUT, q(M.dir),
    table.concat(M.PACKAGES, " "), q(log)))
  if not ok or not installed() then
    error(("aedes: `npm install %s` into %s failed (is the npm registry reachable?):\n%s")
      :format(table.concat(M.PACKAGES, " "), M.dir, helper.read(log) or "(no output)"), 2)
  end
end

-- the broker: prints and writes its port once listening; stops by itself
-- after max_seconds; SIGTERM closes it
local SCRIPT = [[
const path = require('path')
const fs = require('fs')
const [modules, portfile, maxSeconds, certfile, keyfile] = process.argv.slice(2)
const aedes = require(path.join(modules, 'aedes'))()
const deny = process.env.AEDES_DENY_PREFIX
if (deny) {
  // refuse subscriptions under a prefix: the SUBACK carries 0x80 for them
  aedes.authorizeSubscribe = (client, sub, cb) =>
    sub.topic.startsWith(deny) ? cb(null, null) : cb(null, sub)
}
const { createServer } = require(path.join(modules, 'aedes-server-factory'))
const opts = { ws: true }
if (certfile) opts.https = { cert: fs.readFileSync(certfile), key: fs.readFileSync(keyfile) }
const server = createServer(aedes, opts)
server.listen(0, '127.0.0.1', () => {
  const port = server.address().port
  fs.writeFileSync(portfile, port + '\n')
  console.log('aedes ' + (certfile ? 'wss' : 'ws') + ' listening on 127.0.0.1:' + port)
})
const stop = () => {
  server.close()
  aedes.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 1000).unref()
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
setTimeout(stop, Number(maxSeconds) * 1000).unref()
]]

local Server = {}
Server.__index = Server

local seq = 0

local function alive(pid)
  local stat = helper.read("/proc/" .. pid .. "/stat")
  return stat ~= nil and not stat:match("^%d+ %b() Z")
end

--- Starts aedes on a free 127.0.0.1 port. opts.tls = {cert = , key = } for
-- wss; opts.max_seconds (600) bounds its life should the spec never stop it;
-- opts.deny_prefix makes it refuse subscriptions to filters starting with it.
function M.start(opts)
  opts = opts or {}
  M.install()
  seq = seq + 1
  local base = ("%s/aedes-%d-%d"):format(helper.tmpdir(), helper.pid() or 0, seq)
  local f = assert(io.open(base .. ".js", "w"))
  f:write(SCRIPT)
  f:close()
  local portfile = base .. ".port"
  os.remove(portfile)
  local args = { q(M.dir .. "/node_modules"), q(portfile), tostring(opts.max_seconds or 600) }
  if opts.tls then
    args[#args + 1] = q(opts.tls.cert)
    args[#args + 1] = q(opts.tls.key)
  end
  local env = opts.deny_prefix and ("AEDES_DENY_PREFIX=" .. q(opts.deny_prefix) .. " ") or ""
  local p = io.popen(("%snode %s %s >%s.out 2>&1 & echo $!"):format(env, q(base .. ".js"),
    table.concat(args, " "), q(base)))
  local pid = tonumber(p:read("*l"))
  p:close()
  local self = setmetatable({ pid = pid, base = base }, Server)
  local port
  local deadline = helper.now() + 15
  repeat
    port = tonumber((helper.read(portfile) or ""):match("^(%d+)\n"))
    if not port then helper.sleep(0.05) end
  until port or helper.now() > deadline or not (pid and alive(pid))
  if not port then
    self:stop()
    error("aedes did not start:\n" .. (helper.read(base .. ".out") or "(no output)"), 2)
  end
  self.port = port
  self.uri = ("%s://127.0.0.1:%d/mqtt"):format(opts.tls and "wss" or "ws", port)
  return self
end

--- What node printed so far.
function Server:output()
  return helper.read(self.base .. ".out") or ""
end

--- Stops node: SIGTERM, then SIGKILL after 5 s.
function Server:stop()
  local pid = self.pid
  if not pid then return end
  self.pid = nil
  helper.sh("kill -TERM " .. pid .. " 2>/dev/null")
  local deadline = helper.now() + 5
  while alive(pid) and helper.now() < deadline do helper.sleep(0.02) end
  if alive(pid) then helper.sh("kill -KILL " .. pid .. " 2>/dev/null") end
end

return M
