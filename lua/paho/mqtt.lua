--- paho.mqtt: an MQTT 3.1/3.1.1/5 client for Lua, on Eclipse paho.mqtt.c.
--
-- This Lua layer holds what is easier in Lua: option checking with helpful
-- messages, tokens, the dispatcher that runs handlers in coroutines, waits
-- that yield inside handlers and dispatch on the main thread, and iterators.
-- The C core (paho.mqtt.core) wraps paho's MQTTAsync API and queues every
-- event paho reports on its own threads; nothing here ever runs on them.
local core = require "paho.mqtt.core"
local options = require "paho.mqtt.options"
local topics = require "paho.mqtt.topic"

local check, range, nrange, oneof = options.check, options.range, options.nrange, options.oneof
local type, pairs, ipairs, error, tostring, setmetatable =
  type, pairs, ipairs, error, tostring, setmetatable
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

local M = {
  VERSION = "0.1.0",
  PAHO_VERSION = core.PAHO_VERSION, -- what paho's library says (Debian 12's 1.3.12 says 1.3.11: api.md)
  PAHO_BUILD = core.PAHO_BUILD,
  PAHO_INFO = core.PAHO_INFO,
  NEVER_EXPIRE = 0xFFFFFFFF,
  _raw_coroutines = true, -- for paho.mqtt.nginx: see co_create above
}

--- The name of an MQTT reason code: mqtt.reason(0x87) -> "not authorized".
function M.reason(code)
  if type(code) ~= "number" then
    error("bad argument #1 to reason (number expected, got " .. type(code) .. ")", 2)
  end
  return core.reason(code)
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function reason_text(code)
  return fmt("0x%02X %s", code, core.reason(code))
end

-----------------------------------------------------------------------------
-- Scheduler: handler coroutines, waits, dispatch across clients

local clients = setmetatable({}, { __mode = "k" }) -- every open client
local DONE, WAIT = {}, {}                             -- yield markers
local ours = setmetatable({}, { __mode = "k" })      -- our handler coroutines
local pool = {}                                       -- idle handler coroutines
local sleepers = {}                                   -- suspended waits
local depth = 0                                       -- dispatch nesting
local POOL_MAX = 64
-- QoS 1/2 publishes handed to paho and not yet acknowledged, at most, on
-- MQTT 3.1/3.1.1 (MQTT 5 uses the broker's Receive Maximum); 20 is
-- mosquitto's default max_inflight_messages
local V3_WINDOW = 20
-- publishes kept while disconnected when reconnect is on and offline_queue unset
local DEFAULT_OFFLINE = 1000

local function running_handler()
  local co = co_running()
  if co and ours[co] then return co end
  return nil
end

local function co_body(f, a, b)
  while true do
    f(a, b)
    f, a, b = co_yield(DONE)
  end
end

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

-- for the event-loop adapters: run f(a, b) as a handler of client's event
-- `name`, so that its waits yield to the dispatcher instead of blocking
-- (paho.mqtt.nginx connects this way)
M._spawn = spawn

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

local function add_timer(at, fn, a)
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

-- mqtt.trace: paho's trace lines, queued by the C core, handed to Lua here
local trace_levels = { maximum = 1, medium = 2, minimum = 3, protocol = 4, error = 5, severe = 6, fatal = 7 }
local trace_names = { "maximum", "medium", "minimum", "protocol", "error", "severe", "fatal" }
local trace_handler

local function drain_trace()
  if not trace_handler then return end
  local lines, lost = core.trace_take()
  if not lines then return end
  local h = trace_handler
  if lost > 0 then
    pcall(h, "error", fmt("paho.mqtt: %d trace lines were dropped (the trace queue was full)", lost))
  end
  for i = 1, #lines, 2 do
    local ok, err = pcall(h, trace_names[lines[i]] or tostring(lines[i]), lines[i + 1])
    if not ok then io.stderr:write("paho.mqtt: the trace handler raised: ", tostring(err), "\n") end
  end
end

--- Forwards paho.mqtt.c's trace lines at `level` and above to handler(level, line),
-- called when the program dispatches; mqtt.trace(nil) turns it off.
function M.trace(level, handler)
  if level == nil or level == false then
    core.trace_level(0)
    trace_handler = nil
    return true
  end
  local n = trace_levels[level]
  if not n then
    local hint = type(level) == "string" and options.closest(level, trace_levels)
    error(fmt("bad argument #1 to trace (maximum, medium, minimum, protocol, error, severe, fatal or nil "
      .. "expected, got %s%s)", options.describe(level), hint and ("; did you mean '" .. hint .. "'?") or ""), 2)
  end
  if type(handler) ~= "function" then
    error("bad argument #2 to trace (function expected, got " .. type(handler) .. ")", 2)
  end
  trace_handler = handler
  core.trace_level(n)
  return true
end

local handle_event -- defined with the client
local keep, consume, deliver_kept -- defined with the client: messages and their consumers
local explain -- defined with op_failure: where and why a connect failed
local wake_paho -- defined with connect

-- handle what client c has queued; at most `max` events

local kick -- defined with connect

-- paho holds publishes the client did not hand it: ones it restored from
-- its persistence store
local function restored_left(c)
  local _, _, handed = c._c:outbox()
  return (c._c:pending() or 0) > handed
end

-- the numbers of a "published" event land here (one table, reused)
local ids_buf = {}

local function drain(c, max, till)
  local n = 0
  local core_c = c._c
  if c._kept and c._consumers_changed then n = deliver_kept(c, max, till) end
  while n < max do
    if not c._c or c._closed then break end -- a handler may close it
    if till and n > 0 and now() >= till then break end -- the caller's time budget
    if handle_event(c, core_c:next(ids_buf)) == false then break end
    n = n + 1
  end
  if c._delivered then
    -- paho completed a publish while it still held some it restored from
    -- its persistence store (client:watch_restored): wake it if so
    c._delivered = false
    if c._c and not c._closed and c._restoring then
      if restored_left(c) then
        c._kick = true
      else
        c._restoring = false -- all restored ones are done
        c._c:watch_restored(false)
      end
    end
  end
  if c._kick then
    c._kick = false
    kick(c)
  end
  return n
end

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
    drain_trace()
    wake_sleepers()
    return total
  end)
  depth = depth - 1
  if not ok then error(n, 0) end
  return n
end

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

--- Waits `s` seconds: yields inside a handler, dispatches every client elsewhere.
function M.sleep(s)
  if type(s) ~= "number" or s ~= s or s < 0 then -- (NaN too)
    error("bad argument #1 to sleep (non-negative number expected, got " .. options.describe(s) .. ")", 2)
  end
  local deadline = now() + s
  wait_for(function() return now() >= deadline, true end, deadline)
  return true
end

-- dispatch's optional budget {max_events = n, max_time = s}, for frame loops
local budget_spec = { max_events = range(1, 2 ^ 31), max_time = nrange(0, 86400) }


--- Handles events of every client for up to `timeout` seconds (0 = do not wait).
-- budget (optional): {max_events = n, max_time = s} bounds the work of one call.
function M.dispatch(timeout, b)
  timeout = timeout or 0
  if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then
    error("bad argument #1 to dispatch (non-negative number expected, got " .. options.describe(timeout) .. ")", 2)
  end
  if running_handler() or depth > 0 then
    error("dispatch: called from inside a handler; handlers may wait (token:wait, mqtt.sleep) instead", 2)
  end
  b = check(b, budget_spec, "dispatch", "dispatch budget")
  return dispatch_clients(all_clients(), timeout, b.max_events, b.max_time)
end

local stopped = false
--- Dispatches every client until mqtt.stop() or until no client is open.
function M.run()
  if running_handler() or depth > 0 then
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

function M.stop() stopped = true end

-----------------------------------------------------------------------------
-- Tokens

local Token = {}
Token.__index = Token

-- The fields a token may get later are named in the constructor (as nil) so
-- that the table is made with room for them: no rehash per publish.
local function new_token(client, kind)
  return setmetatable({ _client = client, kind = kind, qos = nil, status = nil, message = nil,
    code = nil, value = nil, offline = nil }, Token)
end

local function finish(tok, ok, msg, code, value)
  if tok.status ~= nil then return end
  tok.status = ok
  tok.message, tok.code, tok.value = msg, code, value
end

local function token_result(tok)
  if tok.status == true then return true, true end
  return true, nil, tok.message, tok.code
end

--- true once the request has completed (successfully or not).
function Token:done()
  if getmetatable(self) ~= Token then error("bad self to token:done (token expected)", 2) end
  return self.status ~= nil
end

--- Waits for completion: true | nil, message, code.
function Token:wait(timeout)
  if getmetatable(self) ~= Token then error("bad self to token:wait (token expected)", 2) end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
    error("bad argument #1 to wait (non-negative number of seconds expected, got "
      .. options.describe(timeout) .. ")", 2)
  end
  if self.status ~= nil then
    if self.status then return true end
    return nil, self.message, self.code
  end
  local client = self._client
  local gen = client._loss_gen
  local function cond()
    if self.status ~= nil then return token_result(self) end
    if client._closed then return true, nil, fmt("%s: the client was closed", self.kind), "closed" end
    if client._loss_gen ~= gen then
      return true, nil, fmt("%s: the connection was lost while waiting (%s)", self.kind,
        client._loss and client._loss.message or "unknown cause"), "disconnected"
    end
    return false
  end
  return wait_for(cond, timeout and (now() + timeout),
    fmt("%s: no answer within %g s", self.kind, timeout or 0))
end

-----------------------------------------------------------------------------
-- Client

local Client = {}
Client.__index = Client

local function checkself(self, fname)
  if getmetatable(self) ~= Client then
    error(fmt("bad self to %s (paho.mqtt client expected, got %s; call it as client:%s(...))",
      fname, type(self), fname), 3)
  end
  if self._closed then error(fname .. ": the client is closed", 3) end
  return self._c
end

local text_problem -- defined below

local uri_rule = function(v)
  if type(v) ~= "string" then return false, "URI string" end
  local scheme = v:match("^(%a+)://")
  if not scheme then return false, "URI like 'tcp://host:1883'" end
  local ok = ({ tcp = 1, mqtt = 1, ssl = 1, mqtts = 1, ws = 1, wss = 1 })[scheme:lower()]
  if not ok then return false, "tcp://, mqtt://, ssl://, mqtts://, ws:// or wss:// URI" end
  return true
end

local function normal_uri(u)
  return (u:gsub("^[Mm][Qq][Tt][Tt][Ss]://", "ssl://"):gsub("^[Mm][Qq][Tt][Tt]://", "tcp://"))
end

local client_spec = {
  uri = uri_rule,
  uris = "table",
  id = "string",
  version = oneof(3, 4, 5),
  persistence = function(v)
    if v == nil or v == "memory" then return true end
    if type(v) == "table" and type(v.dir) == "string" then return true end
    return false, "'memory' or {dir = 'path'}"
  end,
  offline_queue = range(0, 2 ^ 30),
  queue_max = range(1, 2 ^ 30),
  queue_max_bytes = range(1024, 2 ^ 31 - 1),
}

-- what is wrong with a string MQTT sends as UTF-8 text, or nil
function text_problem(v)
  if #v > 65535 then return "longer than 65535 bytes" end
  if v:find("\0", 1, true) then return "contains a zero byte" end
  if not core.valid_utf8(v) then return "not valid UTF-8" end
  return nil
end

local idseq = 0
local function random_id()
  idseq = idseq + 1
  return fmt("lua-%x-%x%04x", idseq, os.time() % 0x10000000, math.random(0, 0xffff))
end

--- Creates a client: mqtt.client{uri = ..., id = ..., version = 5, ...}.
function M.client(opts)
  if opts == nil then opts = {} end
  check(opts, client_spec, "client")
  local uris = {}
  if opts.uris then
    if opts.uri then error("bad options to client (give 'uri' or 'uris', not both)", 2) end
    for i, u in ipairs(opts.uris) do
      local ok, expected = uri_rule(u)
      if not ok then error(fmt("bad option 'uris' to client (item %d: %s expected, got %s)", i, expected,
        options.describe(u)), 2) end
      uris[i] = normal_uri(u)
    end
    if #uris == 0 then error("bad option 'uris' to client (non-empty list expected)", 2) end
  else
    uris[1] = normal_uri(opts.uri or "tcp://127.0.0.1:1883")
  end
  local version = opts.version or 5
  local id = opts.id
  if id == nil then id = random_id() end
  local bad = text_problem(id)
  if bad then error(fmt("bad option 'id' to client (%s)", bad), 2) end
  if id == "" and version ~= 5 then
    -- 3.1.1 allows an empty id only with a clean session; 3.1 never
    if version == 3 then error("bad option 'id' to client (MQTT 3.1 needs a client id)", 2) end
  end
  local c, err, code = core.new {
    uris = uris, id = id, version = version,
    persist_dir = type(opts.persistence) == "table" and opts.persistence.dir or nil,
    -- unset, paho gets room for the default a connect with reconnect gives
    -- (the Lua layer refuses publishes while disconnected when it is 0)
    offline_queue = opts.offline_queue or DEFAULT_OFFLINE,
    queue_max = opts.queue_max or 10000,
    queue_max_bytes = opts.queue_max_bytes or 64 * 1024 * 1024,
  }
  if not c then return nil, err, code end
  local self = setmetatable({
    _c = c,
    _uris = uris,
    _given = opts.uris or { opts.uri or "tcp://127.0.0.1:1883" }, -- as the program wrote them
    _id = id,
    version = version,
    _handlers = {},
    _tokens = {},
    _state = "disconnected",
    _loss_gen = 0,
    _stats = { messages_out = 0, bytes_out = 0, reconnects = 0, rebuilds = 0, unhandled_dropped = 0 },
    _inbox = nil,
    _subs = {},             -- subscribe requests, for resubscribing after a reconnect
    _aliases = {},          -- the broker's topic aliases on this connection
    _offline_set = opts.offline_queue,  -- nil: DEFAULT_OFFLINE with reconnect, else 0 (see connect)
    _offline_max = opts.offline_queue or 0,
    _offline_n = 0,         -- publishes handed to paho while disconnected, not done
    _persist = type(opts.persistence) == "table",
    _kept = nil,            -- messages that arrived with no consumer: {first, last, ...}
    _keep_max = opts.queue_max or 10000,
    _keep_max_bytes = opts.queue_max_bytes or 64 * 1024 * 1024,
  }, Client)
  clients[self] = true
  return self
end

function Client:__tostring()
  return fmt("paho.mqtt client '%s' (%s, %s)", tostring(self._id), self._uris[1], self._state)
end

local events = { message = 1, connect = 1, disconnect = 1, connect_failed = 1, error = 1 }

-- raises unless handler is nil, a function or a callable table (argument 2 of fname)
local function check_handler(handler, fname)
  if handler ~= nil and type(handler) ~= "function" then
    local mt = getmetatable(handler)
    if not (mt and mt.__call) then
      error(fmt("bad argument #2 to %s (function expected, got %s)", fname, type(handler)), 3)
    end
  end
end

--- Sets the handler for an event ("message", "connect", "disconnect",
-- "connect_failed", "error"); nil removes it. Returns the client.
function Client:on(name, handler)
  checkself(self, "on")
  if type(name) ~= "string" or not events[name] then
    local hint = type(name) == "string" and options.closest(name, events)
    error(fmt("bad argument #1 to on (event name expected: message, connect, disconnect, connect_failed "
      .. "or error; got %s%s)", options.describe(name), hint and ("; did you mean '" .. hint .. "'?") or ""), 2)
  end
  check_handler(handler, "on")
  self._handlers[name] = handler
  if name == "message" and handler ~= nil then self._consumers_changed = true end
  return self
end

--- Routes the messages whose topic matches `filter` to `handler` (nil
-- removes the route). Every matching route's handler runs, in the order the
-- routes were added; the "message" handler gets only what no route matched.
function Client:route(filter, handler)
  checkself(self, "route")
  local c, why = topics.compile(filter)
  if not c then error(fmt("bad argument #1 to route (%s)", why), 2) end
  check_handler(handler, "route")
  local routes = self._routes or {}
  for i = 1, #routes do
    if routes[i].filter == filter then
      if handler == nil then table.remove(routes, i) else routes[i].handler = handler end
      handler = nil
      break
    end
  end
  if handler ~= nil then
    routes[#routes + 1] = { filter = filter, c = c, handler = handler }
    self._consumers_changed = true
  end
  self._routes = #routes > 0 and routes or nil
  return self
end

--- mqtt.topic_matches(filter, topic) -> boolean
function M.topic_matches(filter, name)
  local c, why = topics.compile(filter)
  if not c then error(fmt("bad argument #1 to topic_matches (%s)", why), 2) end
  local ok, bad = topics.check_topic(name)
  if not ok then error(fmt("bad argument #2 to topic_matches (%s)", bad), 2) end
  return topics.match(c, name)
end

-- methods that work on a closed client still check what they are called on
local function checkany(self, fname)
  if getmetatable(self) ~= Client then
    error(fmt("bad self to %s (paho.mqtt client expected, got %s; call it as client:%s(...))",
      fname, type(self), fname), 3)
  end
end

function Client:state()
  checkany(self, "state")
  if self._closed then return "closed" end
  return self._state
end

function Client:is_connected()
  checkany(self, "is_connected")
  if self._closed then return false end
  return self._state == "connected" and self._c:is_connected()
end

function Client:fd()
  return checkself(self, "fd"):fd()
end
Client.pollfd = Client.fd

function Client.events() return "r" end

--- For pollers: seconds until a suspended wait needs attention, or nil.
function Client.timeout()
  local d = earliest_deadline()
  if not d then return nil end
  local left = d - now()
  return left > 0 and left or 0
end

--- Handles this client's events for up to `timeout` seconds; budget as mqtt.dispatch.
function Client:dispatch(timeout, b)
  checkself(self, "dispatch")
  timeout = timeout or 0
  if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then
    error("bad argument #1 to dispatch (non-negative number expected, got " .. options.describe(timeout) .. ")", 2)
  end
  if running_handler() or depth > 0 then
    error("dispatch: called from inside a handler; handlers may wait (token:wait, mqtt.sleep) instead", 2)
  end
  b = check(b, budget_spec, "dispatch", "dispatch budget")
  return dispatch_clients({ self }, timeout, b.max_events, b.max_time)
end

--- Dispatches until stop() or a final disconnect. A stop() asked for before
-- run() was entered (from a handler that ran in a wait, say) makes it
-- dispatch what is pending and return, as libuv's uv_stop does.
function Client:run()
  checkself(self, "run")
  if running_handler() or depth > 0 then error("run: called from inside a handler", 2) end
  while not self._closed do
    if self._state == "disconnected" and self._ever_connected then break end
    dispatch_clients({ self }, self._stop and 0 or 1.0)
    if self._stop then break end
  end
  self._stop = false
  return true
end

function Client:stop() self._stop = true end

-----------------------------------------------------------------------------
-- Events from the core

local connack3 = {
  [1] = "unacceptable protocol version", [2] = "identifier rejected",
  [3] = "server unavailable", [4] = "bad user name or password", [5] = "not authorized",
}

local function fire(self, name, a, b)
  local h = self._handlers[name]
  if h then spawn(self, name, h, a, b) end
end

-- host, port of a URI ("tcp://host:1883", "wss://[::1]:443/mqtt")
local function host_port(uri)
  local scheme, rest = uri:match("^(%a+)://(.*)$")
  if not scheme then return nil end
  local host, port = rest:match("^%[([^%]]+)%]:(%d+)")
  if not host then host, port = rest:match("^([^:/]+):(%d+)") end
  return host, tonumber(port), scheme
end

local PROBE_TIMEOUT = 1 -- s: how long explain's own connect may take

-- A connect that failed on the network: paho 1.3.12 says "TCP/TLS connect
-- failure" (or nothing) for a refused port, an unknown host and a dead
-- route alike, so try the same host:port once (src/probe.c, on a thread of
-- its own) and say what happened; then done(message). Not network: done(msg)
-- at once.
function explain(self, network, msg, done)
  local uri = self._uris[self._uri_index or 1] or ""
  local host, port, scheme = host_port(uri)
  if not network or not host or (self._copts and self._copts.http_proxy) then return done(msg) end
  local ok, probe = pcall(core.probe, host, port, PROBE_TIMEOUT)
  if not ok then return done(msg) end
  local paho = msg:gsub("^connect failed: ", "")
  local where = fmt("connect failed: %s:%d: ", host, port)
  spawn(self, "connect", function()
    local deadline = now() + PROBE_TIMEOUT + 0.5
    local tcp, cause = probe:result()
    while tcp == nil and now() < deadline and not self._closed do
      M.sleep(0.01)
      tcp, cause = probe:result()
    end
    if tcp == nil then return done(msg) end
    if not tcp then return done(where .. cause .. " [paho: " .. paho .. "]") end
    if scheme == "ssl" or scheme == "wss" then
      return done(where .. "the TCP connection works, so the TLS handshake failed [paho: " .. paho .. "]")
    end
    done(where .. "the broker accepted the TCP connection and closed it before its CONNACK "
      .. "(the broker's log says why) [paho: " .. paho .. "]")
  end)
end

local function op_failure(self, kind, rc, reason, text)
  if kind == "connect" then
    if self.version == 5 and reason and reason >= 0x80 then
      return fmt("connect refused: %s", reason_text(reason)), "refused", reason
    elseif self.version == 5 and rc and rc >= 0x80 and rc <= 0xA2 then
      -- paho 1.3.12 reports a refusing CONNACK's reason code as its return code
      return fmt("connect refused: %s", reason_text(rc)), "refused", rc
    elseif self.version ~= 5 and rc >= 1 and rc <= 5 then
      return fmt("connect refused: CONNACK return code %d %s", rc, connack3[rc]), "refused", rc
    end
    local t = text or "paho gave no reason"
    if t:find("timeout", 1, true) then return "connect timed out: " .. t, "timeout" end
    if t:find("certificate verify failed", 1, true) then
      t = t .. "; the broker's certificate is not signed by a CA in tls.ca_file / tls.ca_path, "
        .. "or does not name the host in the URI (tls.verify = false turns the check off)"
    elseif t:find("TLS: ", 1, true) and (t:find("pkcs12", 1, true) or t:find("decrypt", 1, true)
        or t:find("PEM", 1, true) or t:find("key", 1, true)) then
      t = t .. "; check tls.key_file and tls.key_password (the password of an encrypted key)"
    elseif self._copts and self._copts.tls and (t:find("TCP", 1, true) or t:find("socket", 1, true)) then
      -- paho often reports a failed TLS handshake with no reason at all
      t = t .. "; if the broker is reachable, the TLS handshake failed: check tls.ca_file / tls.ca_path, "
        .. "that the certificate names the host name in the URI, a client certificate (tls.cert_file, "
        .. "tls.key_file, tls.key_password) if the broker requires one, and tls.ciphers"
    end
    return "connect failed: " .. t .. (rc and fmt(" (paho code %d)", rc) or ""), "network"
  end
  if rc == -11 then -- MQTTASYNC_OPERATION_INCOMPLETE
    if self._closed then return fmt("%s: not completed: the client was closed", kind), "closed" end
    -- paho 1.3.12 fails a request with -11 only when it drops the session
    -- state (MQTTAsync_cleanSession: a CONNACK with session_present false
    -- or Clean Start, or a session that ends with its connection) or its
    -- handle (see rebuilt in complete_op); the core knows why the
    -- connection ended
    return fmt("%s: not completed: the session it belonged to ended (the broker kept no session, "
      .. "or it ends with the connection); %s", kind, self._c:not_connected()), "disconnected"
  end
  if reason and reason >= 0x80 then
    return fmt("%s refused: %s", kind, reason_text(reason)), "refused", reason
  end
  if kind == "subscribe" and rc == 0x80 then
    -- paho reports a 3.1.1 SUBACK failure (0x80) for a single filter as a failure
    return "subscribe refused: the broker returned failure 0x80", "refused", 0x80
  end
  if rc == -3 then
    return kind .. ": " .. self._c:not_connected(), "not_connected"
  end
  if rc == -2 and kind == "publish" then
    return "publish: paho could not write the message to its persistence store (paho code -2); "
      .. "the message was not delivered", "error"
  end
  if rc == -1 and kind == "publish" then
    -- paho 1.3.12 (MQTTAsync_processCommand): writing the PUBLISH failed, so
    -- it closed the connection and failed the request (complete_op marks the
    -- client damaged; core_connect rebuilds paho's handle)
    local cause = self._c:is_connected() and "" or ": " .. self._c:not_connected()
    if self._persist then
      -- paho keeps a copy in its store (written before the socket): the fresh paho handle
      -- the client starts at its next connect sends it from there
      return fmt("publish: the connection failed while the message was being written (paho code -1)%s; "
        .. "the client starts a fresh paho handle at its next connect, which sends the message again "
        .. "from the persistence store, untracked", cause), "disconnected"
    end
    return fmt("publish: the connection failed while the message was being written (paho code -1)%s; "
      .. "the message was not delivered (the client starts a fresh paho handle at its next connect)",
      cause), "disconnected"
  end
  return fmt("%s failed: %s (paho code %d)", kind, text or "unknown error", rc or 0), "error"
end

local schedule_reconnect, reconnect_failed, resubscribe -- defined with connect

-- the damage a -1/-2 publish failure leaves (see complete_op), as the
-- failed tokens of a fresh handle name it
local function write_failed(rc)
  return fmt("a publish failed while being written (paho code %d)", rc)
end

-- see lost(): a connection that ends within QUICK_LOSS s of its CONNACK,
-- QUICK_LOSSES times in a row, means paho damaged its session
local QUICK_LOSS, QUICK_LOSSES = 0.5, 3

-- Every CONNECT goes through here. After paho 1.3.12 damaged its session
-- state (a QoS 1/2 publish failed with -1, see complete_op), the client
-- first gets a fresh paho handle with the same id (and persistence
-- directory: paho restores what it saved there, intact); the requests
-- pending in the old one fail ("disconnected").
local function core_connect(self, o)
  -- (the core notes a -1/-2 publish failure at once, on paho's thread: this
  -- connect may come before the Lua side has handled that failure's event)
  local paho_rc = self._c:damaged()
  if self._damaged or paho_rc then
    -- what the old handle still owes fails; say why
    local why = type(self._damaged) == "string" and self._damaged
      or paho_rc and write_failed(paho_rc) or "cause not recorded"
    self._damaged = nil
    for _, tok in pairs(self._tokens) do tok.rebuilt = why end
    for _, q in pairs(self._more or {}) do
      for i = q.first, q.last do q[i].rebuilt = why end
    end
    -- paho would free the damaged publish again if the old handle were
    -- destroyed: it is retired instead (src/retire.c)
    self._c:suspect()
    local ok, err, code = self._c:rebuild()
    if not ok then return nil, err, code end
    self._stats.rebuilds = self._stats.rebuilds + 1
    -- In memory the fresh handle has none of the session's state, while
    -- the broker still has its half: QoS 2 publishes waiting for a PUBREL
    -- that will never come hold the broker's receive quota (valgrind, fault
    -- spec: "0x97 quota exceeded", 110 reconnects, 74 fresh handles). A
    -- client that lost its session state starts a new session (until a
    -- connect succeeds); the connect event says session_present = false
    -- and an automatic reconnect subscribes again.
    if not self._persist then self._need_clean = true end
  end
  if self._need_clean == true then
    o = copy(o)
    o.clean = true
  end
  return self._c:connect(o)
end

local function lost(self, cause, message, code, props)
  if self._state ~= "connected" then return end
  -- paho 1.3.12 can keep freed memory in its in-flight list (see
  -- core_connect) and resend it after each reconnect; an MQTT 5 broker then
  -- says "malformed packet" (DISCONNECT 0x81) and closes the connection
  if cause == "broker" and code == 0x81 then
    self._damaged = self._damaged or "the broker closed the connection with DISCONNECT 0x81 (malformed packet)"
  end
  -- paho sends the publishes it restored from its store with no callback
  -- of the binding (MQTTAsync_restoreCommand): when one of them fails to
  -- be written (-1), paho frees it, keeps it in flight and tells nobody
  -- (valgrind: the next connection resent it from freed memory, and saved
  -- that over the store's copy). So a loss while paho still holds restored
  -- publishes counts as damage; the fresh handle restores them intact.
  if self._restoring and cause ~= "client" then
    self._damaged = self._damaged
      or "the connection ended while paho was sending publishes restored from its persistence store"
  end
  self._restoring = false
  -- The same resend loop can show no reason at all: each connection is
  -- closed right after its CONNACK (paho resends at once). QUICK_LOSSES
  -- such losses in a row, each within QUICK_LOSS s of its connect, count as
  -- damage too (with persistence, a fresh handle restores the store, which
  -- holds an intact copy of every QoS 1/2 publish paho wrote).
  if cause ~= "client" then
    if self._up_at and now() - self._up_at < QUICK_LOSS then
      self._quick = (self._quick or 0) + 1
      if self._quick >= QUICK_LOSSES then
        self._damaged = self._damaged or fmt("%d connections in a row ended within %g s of their CONNACK",
          QUICK_LOSSES, QUICK_LOSS)
        self._quick = 0
      end
    else
      self._quick = 0
    end
  end
  local again = self._reconnect ~= nil and cause ~= "client" and not self._closed
  self._state = again and "reconnecting" or "disconnected"
  self._loss_gen = self._loss_gen + 1
  self._loss = { cause = cause, message = message, code = code, at = now() }
  local retry_in
  if again then
    retry_in = self._reconnect.min
    self._retry_delay = retry_in
    schedule_reconnect(self, retry_in)
  end
  fire(self, "disconnect", { cause = cause, message = message, code = code, reconnecting = again,
    retry_in = retry_in, properties = props })
end

local function complete_op(self, kind, token, ok, rc, reason, text, extra, props)
  if kind == "connect" then
    local tok = self._connect_tok
    self._connect_tok = nil
    local again = self._state == "reconnecting"
    self._attempting = nil
    if ok then
      if not tok and not again then
        -- an automatic reconnect the user gave up on (disconnect() meanwhile)
        self._c:disconnect(0)
        return
      end
      local ska = props and props.server_keep_alive
      local asked = self._copts and self._copts.keepalive
      if ska and asked and (asked == 0 or ska < asked) and not self._adopt then
        -- MQTT 5 Server Keep Alive: the broker wants pings more often than
        -- asked and drops a client that pings late. paho 1.3.12 ignores it,
        -- so connect again at once with the broker's interval (resuming the
        -- session just made; the program sees one connect).
        self._adopt = { session_present = extra, tok = tok, ska = ska, why = "the broker's Server Keep Alive" }
        self._copts.keepalive = ska
        self._connect_tok = tok
        if again then self._attempting = true end
        self._c:disconnect(0)
        return
      end
      local o = self._copts
      -- (a fresh paho handle in memory connected with Clean Start, see
      -- core_connect, though the program asked for a lasting session)
      local fresh = self._need_clean == true and o and not o.clean
      if o and (o.clean or fresh) and not self._adopt
          and ((self.version == 5 and (o.session_expiry or 0) > 0)
            or (self.version ~= 5 and (self._clean_first or fresh))) then
        -- A session meant to outlive the connection, begun with Clean Start
        -- = 1: mosquitto 2.0.11 never writes such a session to its store
        -- (persist_write.c skips contexts whose connection had clean_start
        -- set) until a connection with Clean Start = 0 takes it over, so a
        -- broker restart would lose it, and paho would fail what was in
        -- flight (-11) at the CONNACK saying so. Take it over at once (the
        -- program sees one connect, with the first CONNACK's session_present).
        -- the new session is made: Clean Start 0 from now on (publishes
        -- still wait in the client until the program sees the connect)
        if fresh then self._need_clean = "made" end
        self._adopt = { session_present = extra, tok = tok, why = "Clean Start = 0 (a session the broker stores)" }
        self._connect_tok = tok
        if again then self._attempting = true end
        self._c:disconnect(0)
        return
      end
      local adopt = self._adopt
      self._adopt = nil
      if adopt then
        extra = adopt.session_present
        props = props or {}
        props.server_keep_alive = props.server_keep_alive or adopt.ska
      end
      self._state = "connected"
      self._ever_connected = true
      self._need_clean = nil
      self._up_at = now()
      -- paho names the server without its scheme: give back the URI the program used
      for i, u in ipairs(self._uris) do
        if text and u:sub(-#text - 3) == "://" .. text then text = self._given[i] or u break end
      end
      local info = { session_present = extra, uri = text, properties = props or {}, reconnect = again }
      -- MQTT 3.1/3.1.1 has no Receive Maximum: the same window (V3_WINDOW)
      -- (the outbox, src/outbox.c, hands paho what waits as far as it allows)
      self._c:open_window(self.version == 5 and (info.properties.receive_maximum or 65535) or V3_WINDOW)
      self._max_packet = info.properties.maximum_packet_size
      self._aliases = {} -- topic aliases live as long as one connection
      self._server_keep_alive = info.properties.server_keep_alive
      self._connected_uri = text
      if again then
        self._stats.reconnects = self._stats.reconnects + 1
        self._retry_delay = nil
        if self._resubscribe then resubscribe(self, not info.session_present) end
      end
      if self._offline_n > 0 or self._persist then self._kick = true end
      if self._persist then
        -- what paho restored from its store has no token here and completes
        -- unseen: while paho holds more publishes than the client handed
        -- it, watch paho's deliveryComplete (see kick) and count a loss as
        -- damage (see lost)
        self._restoring = restored_left(self)
        self._c:watch_restored(self._restoring)
      end
      if tok then finish(tok, true, nil, nil, info) end
      fire(self, "connect", info)
    else
      local msg, code, rcode = op_failure(self, kind, rc, reason, text)
      if not again and self._state == "connecting" then self._state = "disconnected" end
      -- a network failure: find out where and why (explain) before saying it
      explain(self, code == "network", msg, function(m)
        self._stats.connect_failure = m
        if again then
          if self._state == "reconnecting" and not self._closed then reconnect_failed(self, m, rcode, code) end
          return
        end
        if tok then finish(tok, false, m, code) end
        if not self._closed then fire(self, "connect_failed", { message = m, code = rcode, cause = code }) end
      end)
    end
    return
  end
  if kind == "disconnect" and self._adopt then
    local o = copy(self._copts)
    o.clean = false
    if #self._uris > 1 then o.uris = { self._uris[self._uri_index or 1] } end
    local cok, err = core_connect(self, o)
    if not cok then
      local adopt = self._adopt
      self._adopt = nil
      self._connect_tok = nil
      local msg = "connect: reconnecting with " .. adopt.why .. " failed: " .. tostring(err)
      if self._state == "reconnecting" then
        reconnect_failed(self, msg, nil, "error")
      else
        self._state = "disconnected"
        if adopt.tok then finish(adopt.tok, false, msg, "error") end
      end
    end
    return
  end
  if kind == "disconnect" then
    local tok = self._disconnect_tok
    self._disconnect_tok = nil
    if self._state == "connected" or self._state == "disconnecting" then
      self._state = "connected"
      lost(self, "client", "disconnected by the client")
    end
    if tok then finish(tok, true) end
    return
  end
  local tokens = self._tokens
  local tok = tokens[token]
  if not tok then
    -- a publish paho restored from its persistence store: more may wait
    if kind == "publish" then self._kick = true end
    return
  end
  local q = self._more and self._more[token]
  if q and q.first <= q.last then
    tokens[token] = q[q.first]
    q[q.first] = nil
    q.first = q.first + 1
  else
    tokens[token] = nil
  end
  if tok.offline then
    self._offline_n = self._offline_n - 1
    if self._offline_n > 0 then self._kick = true end
  end
  if not ok then
    -- (not for a token of a handle already replaced: the core saw the
    -- failure first, see core_connect)
    if (rc == -1 or rc == -2) and kind == "publish" and tok.qos and tok.qos > 0 and not tok.rebuilt then
      -- paho 1.3.12 freed this publish's topic and payload but kept it in
      -- its in-flight list; it would resend that freed memory after every
      -- reconnect (the broker: "malformed packet") for ever
      -- (eclipse/paho.mqtt.c#1401; tools/paho-resend-repro.c). -2
      -- (MQTTASYNC_PERSISTENCE_ERROR: writing its store failed) takes the
      -- same path in MQTTAsync_processCommand as -1 (SOCKET_ERROR).
      -- With persistence the store holds an intact copy of all that is in
      -- flight, which the fresh handle sends again. In memory the fresh
      -- handle drops what was pending (the tokens say so: 2,923 publishes
      -- after one such failure under valgrind), but keeping the old one
      -- lets paho's threads read the freed memory (valgrind, CI run at
      -- f36b277), so memory safety wins.
      self._damaged = self._damaged or write_failed(rc)
    end
    local msg, code = op_failure(self, kind, rc, reason, text)
    if tok.rebuilt then
      msg, code = fmt("%s: not completed: the client started a fresh paho handle, because %s%s",
        kind, tostring(tok.rebuilt), self._persist and kind == "publish"
        and "; a publish paho had saved in the persistence store is sent again from there, untracked" or ""),
        "disconnected"
    end
    finish(tok, false, msg, code)
  elseif kind == "publish" and reason and reason >= 0x80 then
    finish(tok, false, fmt("publish refused: %s", reason_text(reason)), "refused")
  else
    -- (a publish's value is never read: no table for it)
    finish(tok, true, nil, nil, kind ~= "publish" and
      { codes = type(extra) == "table" and extra or nil, properties = props } or nil)
  end
end

local function push(q, msg)
  q.last = q.last + 1
  q[q.last] = msg
end

-- A message to its consumers: the handler of every route whose filter
-- matches (in the order they were added), else the "message" handler; the
-- messages() iterators' shared inbox, and the inbox of each filtered
-- iterator that matches. False when nothing took it.
function consume(self, msg)
  local taken, routed = false, false
  local routes = self._routes
  if routes then
    local t = msg.topic
    for i = 1, #routes do
      local r = routes[i]
      if topics.match(r.c, t) then
        routed = true
        spawn(self, "message", r.handler, msg)
      end
    end
  end
  local iters = self._filtered
  if iters then
    local t = msg.topic
    for i = 1, #iters do
      local it = iters[i]
      if topics.match(it.c, t) then
        taken = true
        push(it.inbox, msg)
      end
    end
  end
  local inbox = self._inbox
  if inbox then
    taken = true
    push(inbox, msg)
  end
  if not routed then
    local handler = self._handlers.message
    if handler then
      taken = true
      spawn(self, "message", handler, msg)
    end
  end
  return taken or routed
end

-- A message that arrived with no consumer (route, "message" handler or
-- messages() iterator) waits for the first of them (drain hands it over), up to
-- queue_max messages; beyond that it is dropped, counted in
-- stats().unhandled_dropped, and said once through the error path.
function keep(self, msg)
  local k = self._kept
  if not k then
    k = { first = 1, last = 0 }
    self._kept = k
    self._kept_bytes = 0
  end
  local size = #msg.topic + #msg.payload
  if k.last - k.first + 1 >= self._keep_max or self._kept_bytes + size > self._keep_max_bytes then
    local st = self._stats
    st.unhandled_dropped = st.unhandled_dropped + 1
    if st.unhandled_dropped == 1 then
      report(self, fmt("%d messages (%d bytes) arrived with no \"message\" handler and no messages() "
        .. "iterator and wait for one (queue_max, queue_max_bytes); the messages arriving from now on "
        .. "are dropped until one is set (stats().unhandled_dropped counts them)",
        k.last - k.first + 1, self._kept_bytes), "message", true)
    end
    return
  end
  self._kept_bytes = self._kept_bytes + size
  k.last = k.last + 1
  k[k.last] = msg
end

-- hand kept messages to the consumers that appeared (on, route,
-- messages), oldest first; those still without one stay kept, in order.
-- At most `max` handed over (and none after `till`); the number handed over.
function deliver_kept(self, max, till)
  local k = self._kept
  local rest = { first = 1, last = 0 }
  local n, i = 0, k.first
  while i <= k.last do
    if self._closed then break end
    if n >= max or (till and n > 0 and now() >= till) then break end
    local msg = k[i]
    k[i] = nil
    i = i + 1
    if consume(self, msg) then
      n = n + 1
      self._kept_bytes = self._kept_bytes - #msg.topic - #msg.payload
    else
      push(rest, msg)
    end
  end
  if i > k.last then
    self._consumers_changed = nil -- every kept message was looked at
  else
    for j = i, k.last do push(rest, k[j]) end
  end
  if self._kept == k then self._kept = rest.last >= rest.first and rest or nil end
  return n
end

function handle_event(self, ev, a, b, c, d, e, f, g, h)
  if ev == nil then return false end
  if ev == "message" then
    local p = a.properties
    if p and p.topic_alias then
      -- MQTT 5 topic alias: the broker names a topic once, then sends the alias
      local aliases = self._aliases
      if a.topic == "" then
        a.topic = aliases[p.topic_alias] or a.topic
      else
        aliases[p.topic_alias] = a.topic
      end
    end
    local reqs = self._requests
    if reqs and p and p.correlation_data then
      local r = reqs[p.correlation_data]
      if r and a.topic == r.topic then
        -- the response to a request(): it goes to the waiting request only
        reqs[p.correlation_data] = nil
        r.msg = a
        return true
      end
    end
    -- kept messages go first to a consumer that appeared meanwhile
    if self._kept and self._consumers_changed then deliver_kept(self, math.huge) end
    if not consume(self, a) then keep(self, a) end -- no consumer yet: it waits for one
  elseif ev == "op" then
    complete_op(self, a, b, c, d, e, f, g, h)
  elseif ev == "published" then
    -- publishes that succeeded plainly (reason 0, no properties), batched
    -- in the core: a holds their numbers, b how many
    for i = 1, b do
      if self._closed then break end -- a handler woken by one may close it
      complete_op(self, "publish", a[i], true, 0, 0)
    end
  elseif ev == "delivered" then
    self._delivered = true
  elseif ev == "lost" then
    lost(self, a, b)
  elseif ev == "disconnected" then
    -- the broker's DISCONNECT: reason code a, text b, properties c
    if c and c.reason_string then b = b .. ": " .. c.reason_string end
    lost(self, "broker", b, a, c)
  end
  return true
end

-----------------------------------------------------------------------------
-- Requests

local function props_rule(v)
  if type(v) == "table" then return true end
  return false, "properties table"
end

local will_spec = {
  topic = "string", payload = "string", qos = range(0, 2), retain = "boolean", properties = props_rule,
}
local tls_spec = {
  ca_file = "string", ca_path = "string", cert_file = "string", key_file = "string",
  key_password = "string", verify = "boolean", alpn = "table", ciphers = "string",
}
local connect_spec = {
  keepalive = range(0, 65535),
  clean_start = function(v)
    if type(v) == "boolean" or v == "first" then return true end
    return false, "true, false or 'first'"
  end,
  session_expiry = range(0, 0xFFFFFFFF),
  username = "string",
  password = "string",
  will = "table",
  timeout = nrange(0.001, 3600),
  reconnect = function(v)
    if type(v) == "boolean" or type(v) == "table" then return true end
    return false, "boolean or {min = s, max = s}"
  end,
  resubscribe = "boolean",
  credentials = "function",
  tls = "table",
  http_proxy = "string",
  properties = props_rule,
}

local track -- defined below

-- paho 1.3.12's receiving thread polls the sockets it already had for up to
-- a second before it notices a new one, so a connect made while another
-- client is connected takes about 1.1 s. A request on a connected client
-- (an UNSUBSCRIBE of a filter nobody uses) makes the broker answer on a
-- socket paho is polling, which wakes it; repeat until the CONNACK is in.
local WAKE_FILTER = { "$paho-lua/wake" }
local function other_connected(self)
  for c in pairs(clients) do
    if c ~= self and c._c and c._state == "connected" then return c end
  end
end

function wake_paho(self, tok)
  local other = other_connected(self)
  if not other then return end
  local deadline = now() + 1.5
  local function done() return tok.status ~= nil or self._closed, true end
  while not done() and now() < deadline and other._c and other._state == "connected" do
    local token = other._c:unsubscribe(WAKE_FILTER)
    if token then track(other, token, "wake") end
    wait_for(done, now() + 0.02)
  end
end

-- The same wake-up for an automatic reconnect, which nobody waits for:
-- a timer pokes another connected client every 20 ms until the attempt ends.
local function wake_tick(ref)
  local self = ref.c
  if not self or self._closed or not self._attempting or now() > ref.till then return end
  local other = other_connected(self)
  if not other then return end
  local token = other._c:unsubscribe(WAKE_FILTER)
  if token then track(other, token, "wake") end
  add_timer(now() + 0.02, wake_tick, ref)
end

-- Automatic reconnect: attempts run from the dispatcher's timers; a timer
-- holds the client weakly, so a client the program dropped can be collected.
local function attempt(ref)
  local self = ref.c
  if not self or self._closed or self._state ~= "reconnecting" or not self._c then return end
  local o = copy(self._copts)
  if self._clean_first then o.clean = false end
  if #self._uris > 1 then o.uris = { self._uris[self._uri_index or 1] } end
  local msg
  if self._credentials then
    local ok, user, pass = pcall(self._credentials)
    if not ok then
      msg = "reconnect: the credentials function raised: " .. tostring(user)
    elseif (user ~= nil and type(user) ~= "string") or (pass ~= nil and type(pass) ~= "string") then
      msg = "reconnect: the credentials function must return user, password as strings (or nil)"
    else
      o.username, o.password = user, pass
    end
  end
  if not msg then
    local ok, err = core_connect(self, o)
    if ok then
      self._attempting = true
      self._attempts = (self._attempts or 0) + 1
      if other_connected(self) then
        wake_tick(setmetatable({ c = self, till = now() + 1.5 }, { __mode = "v" }))
      end
      return
    end
    msg = err
  end
  reconnect_failed(self, msg, nil, "error")
end

function schedule_reconnect(self, delay)
  self._next_attempt = now() + delay
  add_timer(now() + delay, attempt, setmetatable({ c = self }, { __mode = "v" }))
end

function reconnect_failed(self, msg, rcode, cause)
  if #self._uris > 1 then self._uri_index = (self._uri_index or 1) % #self._uris + 1 end
  -- the first attempt came `min` s after the loss; each failure doubles it, up to `max`
  local delay = math.min((self._retry_delay or self._reconnect.min) * 2, self._reconnect.max)
  self._retry_delay = delay
  schedule_reconnect(self, delay)
  fire(self, "connect_failed", { message = msg, code = rcode, cause = cause, retry_in = delay })
end

-- One earlier subscribe request, sent again for the connection of loss
-- generation gen. It stays pending until a SUBACK confirms it: a failure
-- while that connection lasts is retried with the reconnect backoff; after
-- a loss the next connect sends it again (see resubscribe).
local function resubscribe_req(self, req, gen, delay)
  if self._closed or not self._c or self._loss_gen ~= gen or not req.pending or #req.filters == 0 then return end
  local filters = { unpack(req.filters) } -- as sent (an unsubscribe may change req meanwhile)
  local r = self._reconnect or { min = 1, max = 30 }
  delay = delay and math.min(delay * 2, r.max) or r.min
  local token, err = self._c:subscribe(req.filters, req.sopts, req.props)
  local tok = token and track(self, token, "subscribe")
  spawn(self, "connect", function()
    local ok, emsg = false, err
    if tok then ok, emsg = tok:wait(30) end
    if ok then
      req.pending = false
      for i, code in ipairs(tok.value and tok.value.codes or {}) do
        if code >= 0x80 then
          report(self, fmt("resubscribe refused: %s (filter '%s')", reason_text(code), tostring(filters[i])), "connect")
        end
      end
    elseif self._closed or self._loss_gen ~= gen then
      report(self, fmt("resubscribe failed: %s; it is sent again at the next connect", tostring(emsg)), "connect")
    else
      report(self, fmt("resubscribe failed: %s; it is sent again in %g s", tostring(emsg), delay), "connect")
      M.sleep(delay)
      resubscribe_req(self, req, gen, delay)
    end
  end)
end

-- After a reconnect, subscribe again to what this client subscribed to (one
-- SUBSCRIBE per earlier subscribe call): all of it when the broker kept no
-- session (all), and in any case what an earlier resubscribe did not get
-- confirmed: a loss may have cut it short while the broker kept the session
-- that connection began, without those subscriptions, and says
-- session_present = true next time.
function resubscribe(self, all)
  for _, req in ipairs(self._subs) do
    if all then req.pending = true end
    if req.pending then resubscribe_req(self, req, self._loss_gen) end
  end
end

-- paho 1.3.12 sends the publishes it buffered while disconnected (or
-- restored from its store) only up to the broker's Receive Maximum, and then
-- looks at its command queue again only when a new request arrives or a
-- second has passed. As their acknowledgements come in, a new request (the
-- UNSUBSCRIBE that wakes paho, see wake_paho) makes it go on at once. The
-- buffered ones have tokens here, whose completions kick; the restored ones
-- have none: paho's deliveryComplete ("delivered" events, see drain) kicks
-- for them (400 restored publishes: all sent in under 0.5 s, against 224 in
-- 10 s with paho's one-second wait; a fresh paho handle restored 674 to
-- 2,748 of them in the fault spec).
function kick(self)
  if self._state ~= "connected" or not self._c then return end
  local token = self._c:unsubscribe(WAKE_FILTER)
  if token then track(self, token, "wake") end
end

local reconnect_spec = { min = nrange(0.01, 3600), max = nrange(0.01, 86400) }

local connect_once -- defined below

--- Connects and waits for the CONNACK: true, info | nil, message, code.
function Client:connect(opts)
  local c = checkself(self, "connect")
  opts = check(opts, connect_spec, "connect")
  if opts.will then check(opts.will, will_spec, "connect", "will") end
  if opts.tls then
    check(opts.tls, tls_spec, "connect", "tls")
    -- on a plain URI paho would connect in plain text and ignore it
    for i, u in ipairs(self._uris) do
      if not (u:match("^ssl://") or u:match("^wss://")) then
        error(fmt("bad option 'tls' to connect (the URI '%s' is not a TLS one: tls applies to ssl://, mqtts:// "
          .. "and wss:// URIs)", tostring(self._given[i] or u)), 2)
      end
    end
  end
  if self.version ~= 5 and opts.session_expiry and opts.session_expiry ~= 0 then
    error(fmt("bad option 'session_expiry' to connect (MQTT 5 only; this client uses %s)",
      self.version == 4 and "3.1.1" or "3.1"), 2)
  end
  if self.version ~= 5 and opts.properties then
    error("bad option 'properties' to connect (MQTT 5 only)", 2)
  end
  if opts.username then
    local bad = text_problem(opts.username)
    if bad then error(fmt("bad option 'username' to connect (%s)", bad), 2) end
  end
  if opts.password and #opts.password > 65535 then
    error("bad option 'password' to connect (longer than 65535 bytes)", 2)
  end
  if opts.will then
    local w = opts.will
    if type(w.topic) ~= "string" or w.topic == "" then
      error("bad option 'will.topic' to connect (non-empty string expected)", 2)
    end
    local bad = text_problem(w.topic)
    if bad then error(fmt("bad option 'will.topic' to connect (%s)", bad), 2) end
    if w.topic:find("[+#]") then
      error("bad option 'will.topic' to connect (wildcards are not allowed in a topic name)", 2)
    end
    if w.payload and #w.payload > 65535 then
      error("bad option 'will.payload' to connect (longer than 65535 bytes)", 2)
    end
  end
  if self._state == "connected" and c:is_connected() then
    return nil, "connect: already connected", "connected"
  end
  if self._state == "connecting" then
    return nil, "connect: a connect is already in progress", "connecting"
  end
  if self._state == "reconnecting" then
    return nil, "connect: the client is reconnecting by itself (reconnect is on); wait for the "
      .. "connect event, or call disconnect() first", "connecting"
  end
  local reconnect = opts.reconnect
  if reconnect == true then
    reconnect = { min = 1, max = 60 }
  elseif type(reconnect) == "table" then
    check(reconnect, reconnect_spec, "connect", "reconnect")
    reconnect = { min = reconnect.min or 1, max = reconnect.max or 60 }
    if reconnect.min > reconnect.max then
      error(fmt("bad option 'reconnect' to connect (min %g is greater than max %g)", reconnect.min, reconnect.max), 2)
    end
  else
    reconnect = nil
  end
  local username, password = opts.username, opts.password
  if opts.credentials then
    if username or password then
      error("bad options to connect (give 'credentials' or 'username'/'password', not both)", 2)
    end
    local ok, user, pass = pcall(opts.credentials)
    if not ok then return nil, "connect: the credentials function raised: " .. tostring(user), "error" end
    if (user ~= nil and type(user) ~= "string") or (pass ~= nil and type(pass) ~= "string") then
      error("bad option 'credentials' to connect (the function must return user, password as strings or nil)", 2)
    end
    username, password = user, pass
  end
  local clean = opts.clean_start
  if clean == nil then clean = true end
  if clean == "first" then clean = not self._ever_connected end
  local timeout = opts.timeout or 10
  local o = {
    keepalive = opts.keepalive or 60,
    clean = clean,
    session_expiry = opts.session_expiry,
    username = username,
    password = password,
    will = opts.will,
    timeout = math.max(1, math.ceil(timeout)),
    tls = opts.tls,
    http_proxy = opts.http_proxy,
    properties = opts.properties,
  }
  if not o.tls then
    for _, u in ipairs(self._uris) do
      if u:match("^ssl://") or u:match("^wss://") then o.tls = {} break end
    end
  end
  if o.tls and o.tls.ca_file then
    local f, ferr = io.open(o.tls.ca_file, "rb")
    if not f then return nil, fmt("connect: cannot read tls.ca_file: %s", tostring(ferr)), "network" end
    f:close()
  end
  -- what an automatic reconnect needs (never the password when a function gives it)
  local saved = copy(o)
  if opts.credentials then saved.username, saved.password = nil, nil end
  self._copts = saved
  self._reconnect = reconnect
  -- an unset offline_queue is DEFAULT_OFFLINE with reconnect on: a sensor's
  -- readings wait out a broker restart instead of failing
  self._offline_max = self._offline_set or (reconnect and DEFAULT_OFFLINE or 0)
  self._resubscribe = opts.resubscribe ~= false
  self._credentials = opts.credentials
  self._clean_first = opts.clean_start == "first"
  -- With several URIs the binding tries them in turn itself: given the
  -- list, paho 1.3.12 also moves to the next URI on its own when an
  -- established connection drops, racing the binding's reconnect.
  local r, msg, ecode
  for i = 1, #self._uris do
    if #self._uris > 1 then o.uris = { self._uris[i] } end
    self._uri_index = i
    r, msg, ecode = connect_once(self, o, timeout)
    if r then return true, msg end
    if ecode == "refused" or self._closed then break end
  end
  return nil, msg, ecode
end

-- one CONNECT and its CONNACK
function connect_once(self, o, timeout)
  local ok, err, code = core_connect(self, o)
  if not ok then return nil, err, code end
  self._state = "connecting"
  local tok = new_token(self, "connect")
  self._connect_tok = tok
  wake_paho(self, tok)
  local r, msg, ecode = tok:wait(timeout + 2)
  if r then return true, tok.value end
  if ecode == "timeout" and self._connect_tok == tok then
    self._state = "disconnected"
    self._connect_tok = nil
    msg = fmt("connect timed out: no CONNACK within %g s", timeout)
  end
  return nil, msg, ecode
end

function track(self, token, kind, tok)
  tok = tok or new_token(self, kind)
  local tokens = self._tokens
  if tokens[token] then
    -- paho reused the id before we saw the earlier completion (publishes
    -- have numbers of their own, negative, which never repeat): queue them
    -- in order, O(1) each way
    local more = self._more
    if not more then
      more = {}
      self._more = more
    end
    local q = more[token]
    if not q then
      q = { first = 1, last = 0 }
      more[token] = q
    end
    q.last = q.last + 1
    q[q.last] = tok
  else
    tokens[token] = tok
  end
  return tok
end

local sub_spec = {
  qos = range(0, 2), no_local = "boolean", retain_as_published = "boolean",
  retain_handling = range(0, 2), properties = props_rule,
}

local function sub_opts(v, fname)
  if type(v) == "number" or v == nil then
    if v ~= nil and not (options.is_integer(v) and v >= 0 and v <= 2) then
      error(fmt("bad argument 'qos' to %s (0, 1 or 2 expected, got %s)", fname, tostring(v)), 4)
    end
    return { qos = v or 0 }
  end
  check(v, sub_spec, fname, "subscription options")
  return v
end

-- takes filters out of the subscribe requests kept for resubscribing
local function forget_filters(self, filters)
  for _, req in ipairs(self._subs) do
    for i = #req.filters, 1, -1 do
      for _, f in ipairs(filters) do
        if req.filters[i] == f then
          table.remove(req.filters, i)
          table.remove(req.sopts, i)
          break
        end
      end
    end
  end
end

local function granted_result(self, codes, filters, props)
  for i, code in ipairs(codes) do
    if code >= 0x80 then
      if self.version == 5 then
        return nil, fmt("subscribe refused: %s (filter '%s')", reason_text(code), filters[i]), "refused"
      end
      return nil, fmt("subscribe refused: the broker returned failure 0x80 for filter '%s'", filters[i]), "refused"
    end
  end
  return codes, { reason_codes = codes, properties = props }
end

--- subscribe(filter, qos_or_opts) -> granted, info
--- subscribe{ {filter, qos_or_opts}, ... } -> {granted...}, info
function Client:subscribe(filter, opts)
  local c = checkself(self, "subscribe")
  local filters, sopts, props = {}, {}, nil
  local many = type(filter) == "table"
  if many then
    if opts ~= nil then error("bad argument #2 to subscribe (not used with a list of subscriptions)", 2) end
    for i, item in ipairs(filter) do
      if type(item) ~= "table" or type(item[1]) ~= "string" then
        error(fmt("bad argument #1 to subscribe (item %d: {filter, qos_or_opts} expected)", i), 2)
      end
      filters[i] = item[1]
      sopts[i] = sub_opts(item[2], "subscribe")
      props = props or sopts[i].properties
    end
    if #filters == 0 then error("bad argument #1 to subscribe (empty list)", 2) end
  elseif type(filter) == "string" then
    filters[1] = filter
    sopts[1] = sub_opts(opts, "subscribe")
    props = sopts[1].properties
  else
    error("bad argument #1 to subscribe (topic filter string or list expected, got " .. type(filter) .. ")", 2)
  end
  local token, err, code = c:subscribe(filters, sopts, props)
  if not token then return nil, err, code end
  local tok = track(self, token, "subscribe")
  local ok, emsg, ecode = tok:wait()
  if not ok then
    if ecode == "refused" and emsg == "subscribe refused: the broker returned failure 0x80" then
      emsg = fmt("%s for filter '%s'", emsg, table.concat(filters, "', '"))
    end
    return nil, emsg, ecode
  end
  local res = tok.value
  local codes = res.codes or {}
  local granted, info = granted_result(self, codes, filters, res.properties)
  if not granted then return nil, info, "refused" end
  -- remember it for resubscribing (a filter subscribed again moves to the new request)
  forget_filters(self, filters)
  self._subs[#self._subs + 1] = { filters = filters, sopts = sopts, props = props }
  if many then return granted, info end
  return granted[1], info
end

--- unsubscribe(filter_or_list) -> true | nil, message, code
function Client:unsubscribe(filter, props)
  local c = checkself(self, "unsubscribe")
  local filters = type(filter) == "table" and filter or { filter }
  if type(filter) ~= "table" and type(filter) ~= "string" then
    error("bad argument #1 to unsubscribe (topic filter string or list expected, got " .. type(filter) .. ")", 2)
  end
  local token, err, code = c:unsubscribe(filters, props)
  if not token then return nil, err, code end
  local res, emsg, ecode = track(self, token, "unsubscribe"):wait()
  if not res then return nil, emsg, ecode end
  forget_filters(self, filters)
  return true
end

local pub_spec = { qos = range(0, 2), retain = "boolean", properties = props_rule }
local submit -- defined below

-- stats: messages_out and bytes_out count the publishes publish() accepted
local function count_out(self, payload)
  local st = self._stats
  st.messages_out = st.messages_out + 1
  st.bytes_out = st.bytes_out + (payload and #payload or 0)
end

local function offline_full(self, waiting)
  return fmt("publish: the offline queue is full (offline_queue = %d; %d publishes wait for the connection)",
    self._offline_max, waiting)
end

--- publish(topic, payload, opts) -> token | nil, message, code. Does not wait.
function Client:publish(topic, payload, opts)
  local c = checkself(self, "publish")
  local qos, retain, props
  if opts ~= nil then
    check(opts, pub_spec, "publish")
    qos, retain, props = opts.qos, opts.retain, opts.properties
  end
  if type(topic) ~= "string" then
    error("bad argument #1 to publish (topic string expected, got " .. type(topic) .. ")", 2)
  end
  if payload ~= nil and type(payload) ~= "string" then
    error("bad argument #2 to publish (string payload or nil expected, got " .. type(payload) .. ")", 2)
  end
  local maxp = self._max_packet
  if maxp and self._state == "connected" then
    -- the broker's Maximum Packet Size (MQTT 5 CONNACK): it would disconnect
    -- us (0x95). The whole packet counts: topic, packet id, properties
    -- (counted exactly with properties or near the limit: without them the
    -- packet is at most 6 bytes more than this)
    local size = 4 + #topic + (payload and #payload or 0)
    if props or size + 6 > maxp then size = c:packet_size(topic, payload, qos, props) end
    if size > maxp then
      return nil, fmt("publish: the message (%d bytes with its headers and properties) is larger than the "
        .. "broker's maximum packet size (%d bytes)", size, maxp), "too_large"
    end
  end
  -- Flow control (the broker's Receive Maximum, the 3.1.1 window, the QoS 0
  -- window) is the C core's: src/outbox.c holds what does not fit and
  -- hands it to paho on paho's own threads as room appears
  if self._offline_max == 0 and self._state ~= "connected" then
    -- the loss is known here (the "disconnect" event has run) but paho may
    -- not have closed the socket yet, and would take the publish
    c:check_publish(topic, payload, qos, retain, props) -- raises as publish would
    return nil, "publish: " .. c:not_connected() .. " (offline_queue is 0: publishes are not kept while "
      .. "disconnected)", "not_connected"
  end
  if self._need_clean and self._state ~= "connected" then
    -- a fresh paho handle in memory connects with Clean Start, and paho
    -- fails every request queued before that CONNACK (-9): keep the
    -- publishes in the outbox until it is in (within offline_queue)
    local waiting = self._offline_n + (c:outbox())
    if waiting >= self._offline_max then
      c:check_publish(topic, payload, qos, retain, props) -- raises as publish would
      return nil, offline_full(self, waiting), "queue_full"
    end
    return submit(self, topic, payload, qos, retain, props, true)
  end
  if self._state ~= "connected" then
    -- offline_queue is counted here, not by paho: paho's limit
    -- (maxBufferedMessages) counts every request not yet written, connected
    -- or not, and refused publishes while connected under load (-12)
    local waiting = self._offline_n + (c:outbox())
    if waiting >= self._offline_max then
      c:check_publish(topic, payload, qos, retain, props) -- raises as publish would
      return nil, offline_full(self, waiting), "queue_full"
    end
  end
  return submit(self, topic, payload, qos, retain, props)
end

-- hand one publish to the core (paho now, or its outbox: hold = true
-- keeps it there until the window opens) and count it
function submit(self, topic, payload, qos, retain, props, hold)
  local token, held, code = self._c:publish(topic, payload, qos, retain, props, hold)
  if not token then
    local err = held
    -- paho's count of unsent requests is the offline queue only while
    -- disconnected with one; otherwise keep paho's own words
    if code == "queue_full" and self._offline_max > 0 and self._state ~= "connected" then
      err = offline_full(self, self._offline_n)
    end
    return nil, err, code
  end
  count_out(self, payload)
  local tok = track(self, token, "publish")
  tok.qos = qos or 0
  if not held and self._state ~= "connected" then
    tok.offline = true -- paho keeps it until the connection is back (offline_queue)
    self._offline_n = self._offline_n + 1
  end
  return tok
end

local request_spec = {
  qos = range(0, 2), timeout = nrange(0, 86400), properties = props_rule, response_topic = "string",
  retain = "boolean",
}
local reqseq = 0

--- MQTT 5 request/response: publishes `payload` to `topic` with a response
-- topic and fresh correlation data, and waits for the response.
-- request(topic, payload, {timeout = 10, qos = 1, response_topic = ..., properties = ...})
--   -> msg | nil, message, code
function Client:request(topic, payload, opts)
  checkself(self, "request")
  opts = check(opts, request_spec, "request")
  if self.version ~= 5 then
    error("request: MQTT 5 only (response topic and correlation data are MQTT 5 properties)", 2)
  end
  if type(topic) ~= "string" then
    error("bad argument #1 to request (topic string expected, got " .. type(topic) .. ")", 2)
  end
  if payload ~= nil and type(payload) ~= "string" then
    error("bad argument #2 to request (string payload or nil expected, got " .. type(payload) .. ")", 2)
  end
  if opts.response_topic and opts.response_topic:find("[+#]") then
    error("bad option 'response_topic' to request (wildcards '+' and '#' are not allowed in a topic name)", 2)
  end
  do -- what publish would raise, named for request
    local ok, err = pcall(self._c.check_publish, self._c, topic, payload, opts.qos or 1, opts.retain,
      opts.properties)
    if not ok then error((tostring(err):gsub(" to publish", " to request", 1)), 2) end
  end
  local rtopic = opts.response_topic
  if not rtopic then
    rtopic = self._resp_topic
    if not rtopic then
      rtopic = fmt("paho-lua/response/%s/%x%04x", self._id ~= "" and self._id or "anon",
        os.time() % 0x1000000, math.random(0, 0xffff))
      local ok, err, code = self:subscribe(rtopic, 1)
      if not ok then return nil, "request: cannot subscribe to the response topic: " .. tostring(err), code end
      self._resp_topic = rtopic
    end
  end
  reqseq = reqseq + 1
  local corr = fmt("%x-%x-%x", reqseq, math.random(0, 0x7fffffff), os.time())
  local props = {}
  for k, v in pairs(opts.properties or {}) do props[k] = v end
  props.response_topic = rtopic
  props.correlation_data = corr
  local reqs = self._requests
  if not reqs then
    reqs = {}
    self._requests = reqs
  end
  local r = { topic = rtopic }
  reqs[corr] = r
  local tok, err, code = self:publish(topic, payload, { qos = opts.qos or 1, retain = opts.retain, properties = props })
  if not tok then
    reqs[corr] = nil
    return nil, "request: " .. tostring(err), code
  end
  local timeout = opts.timeout or 10
  local gen = self._loss_gen
  local msg, emsg, ecode = wait_for(function()
    if r.msg then return true, r.msg end
    if self._closed then return true, nil, "request: the client was closed", "closed" end
    if self._loss_gen ~= gen and self._state ~= "reconnecting" then
      return true, nil, "request: the connection was lost while waiting for the response", "disconnected"
    end
    return false
  end, now() + timeout, fmt("request: no response on '%s' within %g s", rtopic, timeout))
  reqs[corr] = nil
  if not msg then return nil, emsg, ecode end
  return msg
end

local disconnect_spec = {
  timeout = nrange(0, 3600), reason = range(0, 255), session_expiry = range(0, 0xFFFFFFFF),
  properties = props_rule,
}

--- disconnect{timeout, reason, session_expiry, properties} -> true | nil, message, code
function Client:disconnect(opts)
  local c = checkself(self, "disconnect")
  opts = check(opts, disconnect_spec, "disconnect")
  if self.version ~= 5 and (opts.reason or opts.session_expiry or opts.properties) then
    error("bad option to disconnect ('reason', 'session_expiry' and 'properties' are MQTT 5 only)", 2)
  end
  if self._state == "reconnecting" then
    -- stop reconnecting; an attempt in flight is dropped when it completes
    self._state = "disconnected"
    self._loss = { cause = "client", message = "disconnected by the client while reconnecting", at = now() }
    return true
  end
  if self._state ~= "connected" or not c:is_connected() then
    if self._state == "connected" then
      -- the loss is known to paho but not dispatched yet
      drain(self, 10000)
    end
    return nil, "disconnect: " .. c:not_connected(), "not_connected"
  end
  local ok, err, code = c:disconnect(opts.timeout or 0, opts.reason, opts.session_expiry, opts.properties)
  if not ok then return nil, err, code end
  self._state = "disconnecting"
  local tok = new_token(self, "disconnect")
  self._disconnect_tok = tok
  local r, emsg, ecode = tok:wait((opts.timeout or 0) + 5)
  if not r and self._state == "disconnecting" then
    self._state = "connected"
    lost(self, "client", "disconnected by the client")
  end
  if not r and ecode ~= "disconnected" then return nil, emsg, ecode end
  return true
end

--- Closes the client: disconnects and frees everything. Idempotent.
function Client:close()
  if getmetatable(self) ~= Client then error("bad self to close (paho.mqtt client expected)", 2) end
  if self._closed then return true end
  local was = self._state
  self._closed = true
  clients[self] = nil
  if self._damaged then self._c:suspect() end -- retired, not destroyed (src/retire.c)
  self._c:close()
  -- every request still pending ends now, with "closed"
  local function closed(tok)
    if tok then finish(tok, false, fmt("%s: the client was closed", tok.kind), "closed") end
  end
  for _, tok in pairs(self._tokens) do closed(tok) end
  for _, q in pairs(self._more or {}) do
    for i = q.first, q.last do closed(q[i]) end
  end
  closed(self._connect_tok)
  closed(self._disconnect_tok)
  self._state = "closed"
  if was == "connected" then
    self._loss_gen = self._loss_gen + 1
    self._loss = { cause = "client", message = "the client was closed", at = now() }
    -- the connection ended: say so, as disconnect() does (and at once: no
    -- dispatch reaches a closed client)
    fire(self, "disconnect", { cause = "client", message = "the client was closed", reconnecting = false })
  end
  return true
end
Client.__close = Client.close

--- What a person watching a live system needs (see the API reference).
function Client:stats()
  checkany(self, "stats")
  if self._closed then
    return { state = "closed", messages_out = self._stats.messages_out, bytes_out = self._stats.bytes_out }
  end
  local s = self._c:stats()
  s.state = self:state()
  local inflight = 0
  for _ in pairs(self._tokens) do inflight = inflight + 1 end
  for _, q in pairs(self._more or {}) do inflight = inflight + q.last - q.first + 1 end
  s.inflight = inflight
  local held, held_bytes, _, held_peak = self._c:outbox() -- waiting for room in the window (src/outbox.c)
  s.held, s.held_bytes, s.held_peak, s.inflight = held, held_bytes, held_peak, inflight - held
  local subs, pending = 0, 0
  for _, req in ipairs(self._subs) do
    subs = subs + #req.filters
    if req.pending then pending = pending + #req.filters end
  end
  s.subscriptions, s.subscriptions_pending = subs, pending
  s.unhandled = self._kept and (self._kept.last - self._kept.first + 1) or 0 -- waiting for a consumer
  s.unhandled_dropped = self._stats.unhandled_dropped
  s.messages_out = self._stats.messages_out
  s.bytes_out = self._stats.bytes_out
  s.reconnects = self._stats.reconnects
  s.rebuilds = self._stats.rebuilds -- fresh paho handles after paho damaged its session
  s.retired = self._c:retired() -- damaged paho handles left idle, not destroyed (src/retire.c)
  s.reconnect_attempts = self._attempts or 0
  -- paho pings after `keepalive` s of silence and gives up 1.5 x keepalive
  -- later; its timer runs about once a second
  if s.keepalive and s.keepalive > 0 then s.detect_within = 2.5 * s.keepalive + 1 end
  s.server_keep_alive = self._server_keep_alive
  s.offline_queued = self._offline_n
  s.offline_queue = self._offline_max
  if self._state == "reconnecting" and self._next_attempt then
    local left = self._next_attempt - now()
    s.retry_in = left > 0 and left or 0
  end
  if self._loss then
    s.loss_cause = self._loss.cause
    s.loss_message = self._loss.message
    s.last_loss = now() - self._loss.at
  end
  s.connect_failure = self._stats.connect_failure
  s.uri = self._connected_uri
  return s
end

--- Iterator over arriving messages: for msg in client:messages{timeout = s} do ... end
-- ends after `timeout` seconds without a message (default: never) or on close.
-- While an iterator is open, arriving messages are kept for it (the
-- "message" handler, if any, still runs).
function Client:messages(opts)
  checkself(self, "messages")
  opts = check(opts, { timeout = nrange(0, 1e9), filter = "string" }, "messages")
  local timeout = opts.timeout
  local inbox, entry
  if opts.filter then
    local c, why = topics.compile(opts.filter)
    if not c then error(fmt("bad argument #1 to messages (filter: %s)", why), 2) end
    -- a filtered iterator has its own inbox: what matches its filter
    inbox = { first = 1, last = 0 }
    entry = { c = c, inbox = inbox }
    self._filtered = self._filtered or {}
    self._filtered[#self._filtered + 1] = entry
  else
    inbox = self._inbox
    if not inbox then
      inbox = { first = 1, last = 0 }
      self._inbox = inbox
    end
    self._iterators = (self._iterators or 0) + 1
  end
  self._consumers_changed = true -- messages kept for want of a consumer come first
  local finished = false
  local function pop()
    if inbox.first <= inbox.last then
      local m = inbox[inbox.first]
      inbox[inbox.first] = nil
      inbox.first = inbox.first + 1
      return true, m
    end
    if self._closed then return true, nil end
    return false
  end
  return function()
    if finished then return nil end
    local msg = wait_for(pop, timeout and (now() + timeout))
    if msg == nil then
      -- ended (a timeout with nothing waiting, or the client closed)
      finished = true
      if entry then
        local list = self._filtered
        for i = #list, 1, -1 do
          if list[i] == entry then table.remove(list, i) end
        end
        if #list == 0 then self._filtered = nil end
      else
        self._iterators = self._iterators - 1
        if self._iterators == 0 then self._inbox = nil end
      end
    end
    return msg
  end
end

M.Client = Client
M.Token = Token
return M
