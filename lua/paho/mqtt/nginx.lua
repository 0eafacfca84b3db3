--- paho.mqtt in OpenResty / nginx (lua-nginx-module, LuaJIT).
--
-- nginx gives Lua no way to watch a foreign descriptor, so a chain of
-- ngx.timer.at timers dispatches the client every `interval` seconds (or
-- sooner when client:timeout() says a suspended wait is due). Dispatching
-- with timeout 0 never blocks the worker.
--
--   init_worker_by_lua_block {
--     local mqngx = require "paho.mqtt.nginx"   -- first: see load_mqtt below
--     local mqtt = mqngx.mqtt                   -- = require "paho.mqtt"
--     local client = assert(mqtt.client{ uri = "tcp://127.0.0.1:1883",
--                                        id = "nginx-" .. ngx.worker.pid(), offline_queue = 1000 })
--     client:on("message", function(msg) ngx.log(ngx.INFO, msg.topic, " ", msg.payload) end)
--     package.loaded.mqtt_client = client
--     mqngx.attach(client, { connect = { keepalive = 30, timeout = 2, reconnect = true } })
--   }
--   location /pub { content_by_lua_block {
--     local ok, err = require("paho.mqtt.nginx").publish(package.loaded.mqtt_client,
--       "demo/x", ngx.var.arg_msg, { qos = 1 }, 5)          -- waits with ngx.sleep
--     if not ok then ngx.status = 503 end
--     ngx.say(ok and "ok" or err)
--   } }
--
-- docs/event-loops.md has the whole configuration, and which ngx APIs
-- handlers may call (what a timer allows and does not yield).
--
-- One client per worker: init_worker_by_lua runs in every worker process,
-- and each worker has its own Lua VM, its own client and its own paho
-- threads. Never create a client in init_by_lua (the master process):
-- paho's threads do not survive the fork into the workers. With several
-- workers and a subscription, each worker receives every message (use a
-- shared subscription, "$share/group/topic", or subscribe in one worker
-- only: `if ngx.worker.id() == 0`).
--
-- Nothing here blocks the worker: attach connects as a paho handler (its
-- wait for the CONNACK yields to the dispatcher), and wait/publish below
-- wait with ngx.sleep. In paho handlers use mqtt.sleep, never ngx.sleep or
-- cosockets.
local ngx = ngx -- luacheck: ignore 113 (the global of lua-nginx-module)
local M = {}

-- lua-nginx-module replaces coroutine.create/resume/yield/wrap/status with
-- versions bound to the current request (a timer is a fake request). The
-- dispatcher's handler coroutines outlive the timer that created them, and
-- resuming them through those versions crashes the worker (SIGSEGV, seen
-- with lua-nginx-module 0.10.23): they must be plain Lua coroutines. So
-- paho.mqtt is loaded here with the standard functions (which ngx keeps as
-- coroutine._create etc.) in place; require this module before paho.mqtt,
-- or use its `mqtt` field.
local function load_mqtt()
  local co = coroutine
  local in_ngx = rawget(co, "_create") ~= nil
  local loaded = package.loaded["paho.mqtt"]
  if loaded then
    if in_ngx and not loaded._raw_coroutines then
      error("paho.mqtt.nginx: paho.mqtt was loaded before paho.mqtt.nginx and uses ngx's request-bound "
        .. "coroutines, which crash the worker; require 'paho.mqtt.nginx' first and use its 'mqtt' field", 3)
    end
    return loaded
  end
  local saved = {}
  if in_ngx then
    for _, k in ipairs({ "create", "resume", "yield", "wrap", "status" }) do
      saved[k] = rawget(co, k)
      rawset(co, k, rawget(co, "_" .. k) or saved[k])
    end
  end
  local ok, mod = pcall(require, "paho.mqtt")
  for k, f in pairs(saved) do rawset(co, k, f) end
  if not ok then error(mod, 0) end
  if in_ngx then mod._raw_coroutines = true end
  return mod
end
M.mqtt = load_mqtt()
local adapter = require "paho.mqtt.adapter" -- (after paho.mqtt: see load_mqtt)

local Handle = {}
Handle.__index = Handle

--- Stops dispatching (the timer chain ends at its next turn).
function Handle:stop() self.stopped = true end

--- Stops dispatching and closes the client. It may be called from a paho
-- handler: no handler of this client runs after it.
function Handle:close()
  self.stopped = true
  self.client:close()
end

-- worker exit (reload, quit): publishes in flight get their chance to
-- complete, as the requests waiting for them are still being served, then
-- the client is closed; at most `grace` seconds
local function drain_and_close(client, grace)
  local deadline = ngx.now() + grace
  while client:state() ~= "closed" do
    local ok = adapter.dispatch(client)
    local s = client:stats()
    local busy = (s.inflight or 0) + (s.held or 0) + (s.offline_queued or 0) > 0
    if not ok or not busy or client:state() ~= "connected" or ngx.now() >= deadline then break end
    ngx.sleep(0.005)
  end
  if client:state() ~= "closed" then client:close() end
end

--- Dispatches `client` from a chain of ngx timers. Call it from
-- init_worker_by_lua* (or any phase where ngx.timer.at works).
-- opts.interval (default 0.01 s): the dispatch period.
-- opts.connect: a table for client:connect; the client is connected from
--   the first timer, and connected again (after opts.retry seconds, default
--   1) whenever it is found disconnected, unless the program disconnected it.
--   The connect runs as a paho handler, so it never blocks the worker: the
--   timers go on dispatching while it waits for the CONNACK.
--   With connect{reconnect = true} the client reconnects by itself after a
--   loss (state "reconnecting"), and this only retries a failed first connect.
-- opts.on_connect_error(message, code): called when such a connect fails
--   (default: ngx.log at WARN).
-- opts.shutdown_grace (default 5 s): on worker exit, how long publishes in
--   flight may take to complete before the client is closed (nginx's own
--   worker_shutdown_timeout, when shorter, still ends the worker).
-- Returns a handle: h:stop(), h:close().
function M.attach(client, opts)
  opts = opts or {}
  local interval = opts.interval or 0.01
  local retry = opts.retry or 1
  local grace = opts.shutdown_grace or 5
  local h = setmetatable({ client = client, stopped = false }, Handle)
  local next_connect = 0
  local connecting = false

  local function connect_error(err, code)
    if opts.on_connect_error then opts.on_connect_error(err, code)
    else ngx.log(ngx.WARN, "paho.mqtt.nginx: ", err) end
  end

  -- a paho handler: its wait for the CONNACK yields to the dispatcher
  local function connect()
    local ok, err, code = client:connect(opts.connect)
    connecting = false
    if not ok and client:state() ~= "closed" then connect_error(err, code) end
  end

  local tick
  local function schedule()
    local delay = interval
    local t = client:state() ~= "closed" and client:timeout()
    if t and t < delay then delay = t end
    local ok, err = ngx.timer.at(delay, tick)
    if not ok then
      ngx.log(ngx.ERR, "paho.mqtt.nginx: cannot schedule the dispatch timer: ", err)
    end
  end

  function tick(premature)
    if premature then -- the worker is exiting
      if client:state() ~= "closed" then drain_and_close(client, grace) end
      return
    end
    if h.stopped or client:state() == "closed" then return end
    if opts.connect and not connecting and client:state() == "disconnected" and ngx.now() >= next_connect
        and client:stats().loss_cause ~= "client" then -- not after the program's own disconnect()
      next_connect = ngx.now() + retry
      connecting = true
      M.mqtt._spawn(client, "connect", connect)
    end
    local n, derr = adapter.dispatch(client)
    if not n then ngx.log(ngx.ERR, "paho.mqtt.nginx: dispatch failed: ", derr) end
    if not h.stopped and client:state() ~= "closed" then schedule() end
  end

  local ok, err = ngx.timer.at(0, tick)
  if not ok then error("paho.mqtt.nginx: cannot start the dispatch timer: " .. tostring(err), 2) end
  return h
end

--- In a request handler (content_by_lua, access_by_lua, a timer...): waits
-- until `token` completes with ngx.sleep, so the worker goes on serving.
-- true | nil, message, code.
function M.wait(token, timeout, step)
  step = step or 0.005
  local deadline = timeout and (ngx.now() + timeout)
  while not token:done() do
    if deadline and ngx.now() >= deadline then
      return nil, ("publish: no answer within %g s"):format(timeout), "timeout"
    end
    ngx.sleep(step)
  end
  return token:wait(0)
end

--- In a request handler: publishes and waits (ngx.sleep) for the outcome.
-- true | nil, message, code. A client closed because the worker is exiting
-- (a request that came in on a kept-alive connection after the adapter
-- closed it) answers nil, message, "closed" instead of raising.
function M.publish(client, topic, payload, opts, timeout)
  if client:state() == "closed" then
    return nil, "publish: the client was closed (the worker is exiting)", "closed"
  end
  local tok, err, code = client:publish(topic, payload, opts)
  if not tok then return nil, err, code end
  return M.wait(tok, timeout or 5)
end

return M
