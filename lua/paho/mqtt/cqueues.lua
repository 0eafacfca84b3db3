--- paho.mqtt with cqueues.
--
-- A client is pollable by cqueues as it is (it has pollfd(), events() and
-- timeout()), so `cqueues.poll(client)` inside a cqueues coroutine returns
-- when the client has events to dispatch or one of its suspended waits needs
-- attention. This module packs the usual loop into one call:
--
--   local cqueues = require "cqueues"
--   local mqtt = require "paho.mqtt"
--   local mqcq = require "paho.mqtt.cqueues"
--
--   local cq = cqueues.new()
--   local client = assert(mqtt.client{ uri = "tcp://127.0.0.1:1883" })
--   client:on("message", function(msg) print(msg.topic, msg.payload) end)
--   assert(client:connect{})
--   assert(client:subscribe("demo/#", 1))
--   local h = mqcq.wrap(cq, client)   -- a cqueues coroutine dispatches it
--   cq:wrap(function()
--     local tok = client:publish("demo/x", "hello", { qos = 1 })
--     assert(h:wait(tok, 5))           -- yields to cqueues, not a blocking wait
--     h:stop()
--   end)
--   assert(cq:loop())
--
-- Waits made outside paho handlers (connect, subscribe, token:wait on a
-- cqueues coroutine) block the whole cqueues loop while they dispatch; do
-- them before the loop starts, inside paho handlers (where they yield to
-- the paho dispatcher), or use h:wait(token) for publishes.
local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local adapter = require "paho.mqtt.adapter"

local M = {}

local Handle = {}
Handle.__index = Handle

--- Ends the dispatch coroutine (at once if it is polling).
function Handle:stop()
  if not self.stopped then
    self.stopped = true
    self._stopcond:signal()
  end
end

--- Stops dispatching and closes the client. Prefer this to client:close()
-- while the loop runs: cqueues must forget the descriptor before it is
-- closed. It may be called from a paho handler: no handler of this client
-- runs after it.
function Handle:close()
  self:stop()
  if self.client:state() ~= "closed" then
    pcall(cqueues.cancel, self._fd)
    self.client:close()
  end
end

--- Inside a cqueues coroutine: waits until `token` (from client:publish)
-- completes, yielding to cqueues meanwhile: true | nil, message, code.
-- With a function instead of a token, waits until it returns true (looked
-- at after each dispatch): true | nil, message, "timeout".
function Handle:wait(token, timeout)
  local deadline = timeout and (cqueues.monotime() + timeout)
  local is_fn = type(token) == "function"
  while not (is_fn and token() or not is_fn and token:done()) do
    if self.stopped or self.client:state() == "closed" then
      return nil, "wait: the client is no longer dispatched", "closed"
    end
    local left
    if deadline then
      left = deadline - cqueues.monotime()
      if left <= 0 then
        return nil, ("%s: no answer within %g s"):format(is_fn and "wait" or "publish", timeout), "timeout"
      end
    end
    cqueues.poll(self._dispatched, self._stopcond, left)
  end
  if is_fn then return true end
  return token:wait(0)
end

--- Adds a coroutine to `cq` that dispatches `client` whenever it has events
-- or a suspended wait is due. Returns a handle: h:stop(), h:close(),
-- h:wait(token, timeout). opts.max_wait (default 1 s): the longest the
-- coroutine sleeps before looking at the client again.
function M.wrap(cq, client, opts)
  local max_wait = opts and opts.max_wait or 1.0
  local h = setmetatable({
    client = client,
    stopped = false,
    _fd = client:fd(),
    _stopcond = condition.new(),
    _dispatched = condition.new(),
  }, Handle)
  cq:wrap(function()
    while not h.stopped and client:state() ~= "closed" do
      cqueues.poll(client, h._stopcond, max_wait)
      if h.stopped or client:state() == "closed" then break end
      local n, err = adapter.dispatch(client)
      if not n then error(err, 0) end
      h._dispatched:signal()
    end
    h.stopped = true
    h._dispatched:signal()
  end)
  return h
end

return M
