--- paho.mqtt with Copas.
--
-- attach() adds a Copas thread that waits until client:fd() is readable (it
-- hands Copas an object with getfd(), as LuaSocket's select expects) and
-- then dispatches the client.
--
--   local copas = require "copas"
--   local mqtt = require "paho.mqtt"
--   local mqcopas = require "paho.mqtt.copas"
--
--   local client = assert(mqtt.client{ uri = "tcp://127.0.0.1:1883" })
--   client:on("message", function(msg) print(msg.topic, msg.payload) end)
--   assert(client:connect{})
--   assert(client:subscribe("demo/#", 1))
--   local h = mqcopas.attach(client)
--   client:publish("demo/x", "hello")
--   mqcopas.loop()          -- or copas.step() in a loop of your own, see below
--
-- Suspended waits (mqtt.sleep or token:wait(t) inside a handler) need a
-- wake-up when their time is up, not only when an event arrives:
-- * Copas 2 and later have copas.sleep; attach() then adds a second thread
--   that sleeps until client:timeout() and dispatches, and copas.loop()
--   works as usual.
-- * Copas 1.x (Debian 12 ships 1.1.7) has no timers: run the loop with
--   mqcopas.loop() or mqcopas.step(timeout), which bound copas.step's wait
--   by the clients' timeout() and dispatch them afterwards.
-- Waits made in a Copas thread of your own (connect, subscribe, token:wait)
-- dispatch until done and block the Copas loop meanwhile; make them before
-- the loop or inside paho handlers, where they yield.
local copas = require "copas"
local adapter = require "paho.mqtt.adapter"

local M = {}
local attached = setmetatable({}, { __mode = "k" }) -- handle -> true

local Handle = {}
Handle.__index = Handle

--- Stops dispatching the client; its Copas threads end at their next turn.
function Handle:stop()
  if self.stopped then return end
  self.stopped = true
  attached[self] = nil
  if self._timer_co and copas.wakeup then copas.wakeup(self._timer_co) end
end

--- Stops dispatching and closes the client. It may be called from a paho
-- handler: no handler of this client runs after it.
function Handle:close()
  self:stop()
  self.client:close()
end

local function dispatch(h)
  if h.stopped then return end
  if h.client:state() == "closed" then h:stop() return end
  local n, err = adapter.dispatch(h.client)
  if not n then error(err, 0) end
  if h._timer_co and copas.wakeup then copas.wakeup(h._timer_co) end -- a new wait may be due earlier
end

--- Dispatches `client` from Copas threads. Returns a handle: h:stop(), h:close().
-- opts.max_wait (default 1 s): with Copas >= 2, the longest the timer
-- thread sleeps before looking at client:timeout() again.
function M.attach(client, opts)
  local max_wait = opts and opts.max_wait or 1.0
  local fd = client:fd()
  local h = setmetatable({ client = client, stopped = false }, Handle)
  -- What Copas selects on: LuaSocket's select calls getfd() on it, and
  -- takes it as ready at once while dirty() is true, which is how stop()
  -- ends the thread (and keeps a closed descriptor out of select).
  local watch = {}
  function watch.getfd() return fd end
  function watch.dirty() return h.stopped end
  function watch.settimeout() return 1 end
  function watch.close() return 1 end
  function watch.receive()
    if h.stopped then return nil, "closed" end
    dispatch(h)
    if h.stopped then return nil, "closed" end
    return nil, "timeout" -- Copas parks the thread until the fd is readable
  end
  h._watch = watch
  copas.addthread(function() copas.receive(watch, "*l") end)
  if copas.sleep then
    h._timer_co = copas.addthread(function()
      while not h.stopped do
        local t = adapter.timeout(client)
        copas.sleep(t and math.min(t, max_wait) or max_wait)
        dispatch(h)
      end
    end)
  end
  attached[h] = true
  return h
end

-- the earliest timeout() of the attached clients, capped at `cap`
local function next_timeout(cap)
  local t = cap
  for h in pairs(attached) do
    local ct = not h.stopped and adapter.timeout(h.client)
    if ct and (not t or ct < t) then t = ct end
  end
  return t
end

--- One Copas step that also wakes the attached clients' suspended waits:
-- waits at most `timeout` seconds (nil: until something happens).
function M.step(timeout)
  local r = copas.step(next_timeout(timeout))
  for h in pairs(attached) do
    if not h.stopped then
      local ct = adapter.timeout(h.client)
      if ct and ct <= 0 then dispatch(h) end
    end
  end
  return r
end

--- Runs M.step until cond() returns true (default: until no client is attached).
function M.loop(cond)
  cond = cond or function() return next(attached) == nil end
  while not cond() do M.step(1.0) end
end

return M
