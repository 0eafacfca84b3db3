--- paho.mqtt.scheduler (internal): handler coroutines, timers, waits and dispatch across clients.
--
-- Owns when Lua code runs: every handler runs in a pooled coroutine of its
-- own (spawn), a wait yields inside a handler and dispatches every client
-- elsewhere (wait_for), timers run from the dispatcher, and dispatch polls
-- the clients' descriptors and hands each client's events to its drain
-- function (set by paho.mqtt.session: the scheduler knows nothing of MQTT).
local core = require "paho.mqtt.core"
local options = require "paho.mqtt.options"
local trace = require "paho.mqtt.trace"

local check, range, nrange = options.check, options.range, options.nrange
local type, pairs, error, tostring, setmetatable, pcall = type, pairs, error, tostring, setmetatable, pcall
-- OpenResty replaces these with request-bound versions (keeping the standard
-- ones as coroutine._create etc.); handler coroutines outlive the request or
-- timer that starts them and crash the worker through ngx's versions
local co_create, co_resume, co_yield, co_running =
  rawget(coroutine, "_create") or coroutine.create, rawget(coroutine, "_resume") or coroutine.resume,
  rawget(coroutine, "_yield") or coroutine.yield, coroutine.running
-- In OpenResty a thread carries a pointer to the request it runs for, and a
-- pooled or suspended handler coroutine would keep the one of the timer that
-- created or last resumed it, freed since (ngx.log in a handler crashed the
-- worker: issue 17, src/host.c); every resume gives it the resumer's first
local adopt_host = rawget(coroutine, "_create") ~= nil and core.adopt_host or nil
local now, poll = core.now, core.poll
local unpack = table.unpack or unpack -- luacheck: ignore 143
local fmt = string.format

local S = {}

local clients = setmetatable({}, { __mode = "k" }) -- every open client
local DONE, WAIT = {}, {}                             -- yield markers
local ours = setmetatable({}, { __mode = "k" })      -- our handler coroutines
local pool = {}                                       -- idle handler coroutines
local sleepers = {}                                   -- suspended waits
local depth = 0                                       -- dispatch nesting
local POOL_MAX = 64
local drain -- drain(client, max, till) -> n: set by the session (S.set_drain)

S.clients = clients

function S.set_drain(f) drain = f end

local function running_handler()
  local co = co_running()
  if co and ours[co] then return co end
  return nil
end
S.running_handler = running_handler

-- true inside a handler or a dispatch (where dispatch and run must not be called)
function S.busy() return running_handler() ~= nil or depth > 0 end

local function co_body(f, a, b)
  while true do
    f(a, b)
    f, a, b = co_yield(DONE)
  end
end

-- the client's "error" handler gets err, else stderr
-- (notice: err is the library's own message, not a handler's error)
local function report(client, err, event, notice)
  local h = client and client._handlers.error
  if h then
    local ok, e2 = pcall(h, err, event)
    if ok then return end
    err = tostring(err) .. " (and the error handler raised: " .. tostring(e2) .. ")"
  end
  if notice then
    io.stderr:write(fmt("paho.mqtt: %s\n", tostring(err)))
  else
    io.stderr:write(fmt("paho.mqtt: %s handler raised: %s\n", tostring(event), tostring(err)))
  end
end
S.report = report

-- resume one of our coroutines and file it according to what it yields
-- (client and event name are passed along, not packed in a table: this
-- runs once per message)
local function step(co, client, event, ...)
  if adopt_host then adopt_host(co) end
  local ok, r1, r2 = co_resume(co, ...)
  if not ok then
    ours[co] = nil
    report(client, debug.traceback(co, r1), event)
  elseif r1 == DONE then
    if #pool < POOL_MAX then pool[#pool + 1] = co else ours[co] = nil end
  elseif r1 == WAIT then
    r2.co, r2.client, r2.event = co, client, event
    sleepers[#sleepers + 1] = r2
  else
    ours[co] = nil
    report(client, "a handler yielded outside a paho.mqtt wait; use mqtt.sleep or token:wait", event)
  end
end

-- run handler f(a, b) for client's event `name` in a coroutine of its own
local function spawn(client, name, f, a, b)
  local co = pool[#pool]
  if co then pool[#pool] = nil else
    co = co_create(co_body)
    ours[co] = true
  end
  step(co, client, name, f, a, b)
end
S.spawn = spawn

-- run the handler the program set for client's event `name`, if any
function S.fire(client, name, a, b)
  local h = client._handlers[name]
  if h then spawn(client, name, h, a, b) end
end

-- resume every suspended wait whose condition holds or whose time is up
local function wake_sleepers()
  if #sleepers == 0 then return end
  local t = now()
  local list = sleepers
  sleepers = {}
  for i = 1, #list do
    local s = list[i]
    local r = { s.cond() }
    if r[1] then
      step(s.co, s.client, s.event, unpack(r, 2, 4))
    elseif s.deadline and t >= s.deadline then
      step(s.co, s.client, s.event, nil, s.timeout_msg or "timeout", "timeout")
    else
      sleepers[#sleepers + 1] = s
    end
  end
end

-- Timers: functions the dispatcher calls at a given time (reconnect
-- attempts and their wake-ups). They run in the dispatching thread and must
-- not wait.
local timers = {}

function S.add_timer(at, fn, a)
  timers[#timers + 1] = { at = at, fn = fn, a = a }
end

local function run_timers()
  if #timers == 0 then return end
  local t = now()
  local due
  local keep = {}
  for i = 1, #timers do
    local tm = timers[i]
    if tm.at <= t then
      due = due or {}
      due[#due + 1] = tm
    else
      keep[#keep + 1] = tm
    end
  end
  if not due then return end
  timers = keep
  for i = 1, #due do
    local ok, err = pcall(due[i].fn, due[i].a)
    if not ok then io.stderr:write("paho.mqtt: internal timer failed: ", tostring(err), "\n") end
  end
end

local function earliest_deadline()
  local d
  for i = 1, #sleepers do
    local s = sleepers[i]
    if s.deadline and (not d or s.deadline < d) then d = s.deadline end
  end
  for i = 1, #timers do
    local at = timers[i].at
    if not d or at < d then d = at end
  end
  return d
end
S.earliest_deadline = earliest_deadline

-- wait up to `timeout` seconds for events on the given clients, handle them
-- (at most max_events events, and no new one after max_time seconds)
local function dispatch_clients(list, timeout, max_events, max_time)
  depth = depth + 1
  local ok, n = pcall(function()
    local fds = {}
    for i = 1, #list do
      local c = list[i]
      if c._c then fds[#fds + 1] = c._c:fd() end
      -- kept messages whose consumer has appeared: no waiting for them
      if c._kept and c._consumers_changed then timeout = 0 end
    end
    local d = earliest_deadline()
    if d then
      local left = d - now()
      if left < 0 then left = 0 end
      if timeout < 0 or left < timeout then timeout = left end
    end
    if #fds > 0 then
      poll(fds, timeout)
    elseif timeout > 0 then
      poll({}, timeout)
    end
    local total = 0
    local max = max_events or 10000
    local till = max_time and now() + max_time
    for i = 1, #list do
      if total >= max or (till and total > 0 and now() >= till) then break end
      total = total + drain(list[i], max - total, till)
    end
    run_timers()
    trace.drain()
    wake_sleepers()
    return total
  end)
  depth = depth - 1
  if not ok then error(n, 0) end
  return n
end
S.dispatch_clients = dispatch_clients

local function all_clients()
  local list = {}
  for c in pairs(clients) do
    if c._c then list[#list + 1] = c end
  end
  return list
end

-- Wait until cond() returns true (then return what follows it) or the
-- deadline passes. Inside a handler coroutine this yields to the
-- dispatcher; anywhere else it dispatches every client until done.
local function wait_for(cond, deadline, timeout_msg)
  local r = { cond() }
  if r[1] then return unpack(r, 2, 4) end
  if running_handler() then
    return co_yield(WAIT, { cond = cond, deadline = deadline, timeout_msg = timeout_msg })
  end
  if depth > 0 then
    error("cannot wait here: inside a dispatch, waits work in paho.mqtt handlers (which yield) "
      .. "or at top level", 3)
  end
  while true do
    local t = now()
    if deadline and t >= deadline then return nil, timeout_msg or "timeout", "timeout" end
    dispatch_clients(all_clients(), deadline and (deadline - t) or 1.0)
    r = { cond() }
    if r[1] then return unpack(r, 2, 4) end
  end
end
S.wait_for = wait_for

--- Waits `s` seconds: yields inside a handler, dispatches every client elsewhere.
function S.sleep(s)
  if type(s) ~= "number" or s ~= s or s < 0 then -- (NaN too)
    error("bad argument #1 to sleep (non-negative number expected, got " .. options.describe(s) .. ")", 2)
  end
  local deadline = now() + s
  wait_for(function() return now() >= deadline, true end, deadline)
  return true
end

-- dispatch's optional budget {max_events = n, max_time = s}, for frame loops
local budget_spec = { max_events = range(1, 2 ^ 31), max_time = nrange(0, 86400) }

S.budget_spec = budget_spec

--- Handles events of every client for up to `timeout` seconds (0 = do not wait).
-- budget (optional): {max_events = n, max_time = s} bounds the work of one call.
function S.dispatch(timeout, b)
  timeout = timeout or 0
  if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then
    error("bad argument #1 to dispatch (non-negative number expected, got " .. options.describe(timeout) .. ")", 2)
  end
  if S.busy() then
    error("dispatch: called from inside a handler; handlers may wait (token:wait, mqtt.sleep) instead", 2)
  end
  b = check(b, budget_spec, "dispatch", "dispatch budget")
  return dispatch_clients(all_clients(), timeout, b.max_events, b.max_time)
end

local stopped = false
--- Dispatches every client until mqtt.stop() or until no client is open.
function S.run()
  if S.busy() then
    error("run: called from inside a handler", 2)
  end
  -- a stop() asked for before run() is honoured (see Client:run)
  while true do
    local list = all_clients()
    if #list == 0 and #sleepers == 0 and #timers == 0 then break end
    dispatch_clients(list, stopped and 0 or 1.0)
    if stopped then break end
  end
  stopped = false
  return true
end

function S.stop() stopped = true end

return S
