--- paho.mqtt with luv (libuv).
--
-- A uv poll handle watches client:fd() and dispatches the client when it is
-- readable; a uv timer fires when client:timeout() says a suspended wait
-- (mqtt.sleep or token:wait(t) inside a handler) is due.
--
--   local uv = require "luv"
--   local mqtt = require "paho.mqtt"
--   local mquv = require "paho.mqtt.luv"
--
--   local client = assert(mqtt.client{ uri = "tcp://127.0.0.1:1883" })
--   client:on("message", function(msg) print(msg.topic, msg.payload) end)
--   assert(client:connect{})
--   assert(client:subscribe("demo/#", 1))
--   local h = mquv.attach(client)
--   client:publish("demo/x", "hello")
--   uv.run()            -- returns once h:stop() or h:close() was called
--
-- luv callbacks run on the main thread, so a wait made in one of them
-- (connect, subscribe, token:wait) dispatches until it is done and blocks
-- the uv loop meanwhile; waits inside paho handlers yield and do not.
local uv = require "luv"
local adapter = require "paho.mqtt.adapter"

local M = {}

local Handle = {}
Handle.__index = Handle

--- Stops watching the client (closes the uv handles); uv.run() can return.
function Handle:stop()
  if self.stopped then return end
  self.stopped = true
  self._poll:stop()
  self._timer:stop()
  if not self._poll:is_closing() then self._poll:close() end
  if not self._timer:is_closing() then self._timer:close() end
end

--- Stops watching and closes the client. Prefer it to client:close(): libuv
-- must stop polling the descriptor before it is closed. It may be called
-- from a paho handler: no handler of this client runs after it.
function Handle:close()
  self:stop()
  self.client:close()
end

--- Watches `client` on the luv loop. Returns a handle: h:stop(), h:close().
-- opts.on_dispatch(n): called after each dispatch with the number of events.
function M.attach(client, opts)
  local on_dispatch = opts and opts.on_dispatch
  local h = setmetatable({ client = client, stopped = false }, Handle)
  local poll = uv.new_poll(client:fd())
  local timer = uv.new_timer()
  h._poll, h._timer = poll, timer

  local run
  local function rearm()
    if h.stopped then return end
    local t = client:timeout()
    if t then
      timer:start(math.ceil(t * 1000), 0, run)
    else
      timer:stop()
    end
  end

  function run()
    if h.stopped then return end
    if client:state() == "closed" then h:stop() return end
    local n, err = adapter.dispatch(client)
    if not n then error(err, 0) end
    if on_dispatch then on_dispatch(n) end
    rearm()
  end

  poll:start("r", function(err)
    if err then error("paho.mqtt.luv: polling the client failed: " .. tostring(err)) end
    run()
  end)
  rearm()
  return h
end

return M
