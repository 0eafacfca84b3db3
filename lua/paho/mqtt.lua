--- paho.mqtt: an MQTT 3.1/3.1.1/5 client for Lua, on Eclipse paho.mqtt.c.
--
-- This module is the public API of docs/api.md: the module's functions,
-- client creation, handlers and routes, connect, disconnect, close and
-- stats, with every option checked. Its parts, one job each (see
-- docs/architecture.md): paho.mqtt.scheduler (handler coroutines, waits,
-- dispatch), .token, .session (the connection's state machine), .publish,
-- .subscribe, .inbox (arriving messages), .request, .errors, .trace and
-- .workarounds (paho's shortcomings, each with its evidence). The C core
-- (paho.mqtt.core) wraps paho's MQTTAsync API and queues every event paho
-- reports on its own threads; nothing here ever runs on them.
local core = require "paho.mqtt.core"
local options = require "paho.mqtt.options"
local topics = require "paho.mqtt.topic"
local sched = require "paho.mqtt.scheduler"
local trace = require "paho.mqtt.trace"
local token = require "paho.mqtt.token"
local class = require "paho.mqtt.class"
local session = require "paho.mqtt.session"
local W = require "paho.mqtt.workarounds"
require "paho.mqtt.publish"   -- client:publish
require "paho.mqtt.subscribe" -- client:subscribe, client:unsubscribe
require "paho.mqtt.inbox"     -- client:messages
require "paho.mqtt.request"   -- client:request

local check, range, nrange, oneof = options.check, options.range, options.nrange, options.oneof
local type, pairs, ipairs, error, tostring, setmetatable, getmetatable =
  type, pairs, ipairs, error, tostring, setmetatable, getmetatable
local now, finish, new_token = core.now, token.finish, token.new
local fire, dispatch_clients, busy = sched.fire, sched.dispatch_clients, sched.busy
local connect_once, lost, drain = session.connect_once, session.lost, session.drain
local Client, checkself, checkany = class.Client, class.checkself, class.checkany
local fmt = string.format

-- publishes kept while disconnected when reconnect is on and offline_queue unset
local DEFAULT_OFFLINE = 1000

local M = {
  VERSION = "0.1.0",
  PAHO_VERSION = core.PAHO_VERSION, -- what paho's library says (Debian 12's 1.3.12 says 1.3.11: api.md)
  PAHO_BUILD = core.PAHO_BUILD,
  PAHO_INFO = core.PAHO_INFO,
  NEVER_EXPIRE = 0xFFFFFFFF,
  _raw_coroutines = true, -- for paho.mqtt.nginx: see co_create in paho.mqtt.scheduler
  sleep = sched.sleep,
  dispatch = sched.dispatch,
  run = sched.run,
  stop = sched.stop,
  trace = trace.trace,
  -- for the event-loop adapters: run f(a, b) as a handler of client's event
  -- `name`, so that its waits yield to the dispatcher instead of blocking
  -- (paho.mqtt.nginx connects this way)
  _spawn = sched.spawn,
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

-----------------------------------------------------------------------------
-- Client

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
  sched.clients[self] = true
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
  local d = sched.earliest_deadline()
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
  if busy() then
    error("dispatch: called from inside a handler; handlers may wait (token:wait, mqtt.sleep) instead", 2)
  end
  b = check(b, sched.budget_spec, "dispatch", "dispatch budget")
  return dispatch_clients({ self }, timeout, b.max_events, b.max_time)
end

--- Dispatches until stop() or a final disconnect. A stop() asked for before
-- run() was entered (from a handler that ran in a wait, say) makes it
-- dispatch what is pending and return, as libuv's uv_stop does.
function Client:run()
  checkself(self, "run")
  if busy() then error("run: called from inside a handler", 2) end
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
-- Connect, disconnect, close

local will_spec = {
  topic = "string", payload = "string", qos = range(0, 2), retain = "boolean", properties = class.props_rule,
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
  properties = class.props_rule,
  max_inflight = range(1, 65535),
}

local reconnect_spec = { min = nrange(0.01, 3600), max = nrange(0.01, 86400) }

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
  self._max_inflight = opts.max_inflight
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

local disconnect_spec = {
  timeout = nrange(0, 3600), reason = range(0, 255), session_expiry = range(0, 0xFFFFFFFF),
  properties = class.props_rule,
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
  sched.clients[self] = nil
  W.closing(self)
  self._c:close()
  -- every request still pending ends now, with "closed"
  local function closed(tok)
    if tok then finish(tok, false, fmt("%s: the client was closed", tok.kind), "closed") end
  end
  token.each(self, closed)
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

M.Client = Client
M.Token = token.Token
return M
