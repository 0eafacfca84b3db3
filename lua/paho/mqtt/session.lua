--- paho.mqtt.session (internal): the connection's state machine: connect, loss, reconnect, and the core's events.
--
-- The dispatcher hands each client's queued events (client:next() in
-- src/client.c) to drain; handle_event turns them into token completions,
-- state changes ("connecting", "connected", "reconnecting",
-- "disconnected"), automatic reconnects with backoff, resubscribes and the
-- program's "connect", "disconnect" and "connect_failed" events. paho's
-- shortcomings are worked around in paho.mqtt.workarounds, called from here.
local core = require "paho.mqtt.core"
local sched = require "paho.mqtt.scheduler"
local token = require "paho.mqtt.token"
local errors = require "paho.mqtt.errors"
local inbox = require "paho.mqtt.inbox"
local subscribe = require "paho.mqtt.subscribe"
local W = require "paho.mqtt.workarounds"

local type, pairs, ipairs, tostring, setmetatable, pcall = type, pairs, ipairs, tostring, setmetatable, pcall
local now, fire, add_timer = core.now, sched.fire, sched.add_timer
local finish, new_token = token.finish, token.new
local consume, keep, deliver_kept = inbox.consume, inbox.keep, inbox.deliver_kept
local op_failure, reason_text = errors.op_failure, errors.reason_text
local fmt = string.format

-- QoS 1/2 publishes handed to paho and not yet acknowledged, at most, on
-- MQTT 3.1/3.1.1 (MQTT 5 uses the broker's Receive Maximum); 20 is
-- mosquitto's default max_inflight_messages
local V3_WINDOW = 20

local N = {}

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- Every CONNECT goes through here (paho's handle may be replaced first:
-- W.before_connect)
local function core_connect(self, o)
  local err, code
  o, err, code = W.before_connect(self, o)
  if not o then return nil, err, code end
  return self._c:connect(o)
end
N.core_connect = core_connect

-----------------------------------------------------------------------------
-- Reconnect

local reconnect_failed -- defined below

-- attempts run from the dispatcher's timers; a timer holds the client
-- weakly, so a client the program dropped can be collected
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
      W.wake_reconnect(self)
      return
    end
    msg = err
  end
  reconnect_failed(self, msg, nil, "error")
end

local function schedule_reconnect(self, delay)
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

-- one CONNECT and its CONNACK, waited for (Client:connect)
function N.connect_once(self, o, timeout)
  local ok, err, code = core_connect(self, o)
  if not ok then return nil, err, code end
  self._state = "connecting"
  local tok = new_token(self, "connect")
  self._connect_tok = tok
  W.wake_connect(self, tok)
  local r, msg, ecode = tok:wait(timeout + 2)
  if r then return true, tok.value end
  if ecode == "timeout" and self._connect_tok == tok then
    self._state = "disconnected"
    self._connect_tok = nil
    msg = fmt("connect timed out: no CONNACK within %g s", timeout)
  end
  return nil, msg, ecode
end

-----------------------------------------------------------------------------
-- Loss

local function lost(self, cause, message, code, props)
  if self._state ~= "connected" then return end
  W.lost(self, cause, code)
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
N.lost = lost

-----------------------------------------------------------------------------
-- Completions

local function connected(self, tok, again, present, uri, props)
  present, props = W.taken_over(self, present, props)
  self._state = "connected"
  self._ever_connected = true
  self._need_clean = nil
  self._up_at = now()
  -- paho names the server without its scheme: give back the URI the program used
  for i, u in ipairs(self._uris) do
    if uri and u:sub(-#uri - 3) == "://" .. uri then uri = self._given[i] or u break end
  end
  local info = { session_present = present, uri = uri, properties = props or {}, reconnect = again }
  -- the outbox (src/outbox.c) hands paho what waits as far as the window
  -- allows: the broker's Receive Maximum, or on 3.1/3.1.1, which has none,
  -- connect's max_inflight or the guess V3_WINDOW; QoS 2 at most W.MAX_QOS2
  local window = self.version == 5
    and math.min(info.properties.receive_maximum or 65535, self._max_inflight or 65535)
    or self._max_inflight or V3_WINDOW
  self._c:open_window(window, math.min(window, self._max_inflight or W.MAX_QOS2))
  self._max_packet = info.properties.maximum_packet_size
  self._aliases = {} -- topic aliases live as long as one connection
  self._server_keep_alive = info.properties.server_keep_alive
  self._connected_uri = uri
  if again then
    self._stats.reconnects = self._stats.reconnects + 1
    self._retry_delay = nil
    if self._resubscribe then subscribe.resubscribe(self, not info.session_present) end
  end
  W.connected(self)
  if tok then finish(tok, true, nil, nil, info) end
  fire(self, "connect", info)
end

local function connect_done(self, ok, rc, reason, text, present, props)
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
    if W.take_over(self, tok, again, present, props) then return end
    return connected(self, tok, again, present, text, props)
  end
  local msg, code, rcode = op_failure(self, "connect", rc, reason, text)
  if not again and self._state == "connecting" then self._state = "disconnected" end
  -- a network failure: find out where and why (explain) before saying it
  errors.explain(self, code == "network", msg, function(m)
    self._stats.connect_failure = m
    if again then
      if self._state == "reconnecting" and not self._closed then reconnect_failed(self, m, rcode, code) end
      return
    end
    if tok then finish(tok, false, m, code) end
    if not self._closed then fire(self, "connect_failed", { message = m, code = rcode, cause = code }) end
  end)
end

local function take_over_failed(self, msg, adopt)
  if self._state == "reconnecting" then
    reconnect_failed(self, msg, nil, "error")
  else
    self._state = "disconnected"
    if adopt.tok then finish(adopt.tok, false, msg, "error") end
  end
end

-- r: the "op" record of client:next() (src/client.c): kind, token, ok, rc,
-- reason, text, session_present | codes | packet, properties
local function complete_op(self, r)
  local kind, ok, rc, reason, text = r.kind, r.ok, r.rc, r.reason, r.text
  if kind == "connect" then return connect_done(self, ok, rc, reason, text, r.session_present, r.properties) end
  if kind == "disconnect" then
    if W.take_over_step(self, core_connect, take_over_failed) then return end
    local tok = self._disconnect_tok
    self._disconnect_tok = nil
    if self._state == "connected" or self._state == "disconnecting" then
      self._state = "connected"
      lost(self, "client", "disconnected by the client")
    end
    if tok then finish(tok, true) end
    return
  end
  local tok = token.take(self, r.token)
  if not tok then
    -- a publish paho restored from its persistence store: more may wait
    if kind == "publish" then self._kick = true end
    return
  end
  if tok.offline then
    self._offline_n = self._offline_n - 1
    if self._offline_n > 0 then self._kick = true end
  end
  if not ok then
    if kind == "publish" then W.publish_failed(self, tok, rc) end
    local msg, code = op_failure(self, kind, rc, reason, text)
    if tok.rebuilt then msg, code = errors.rebuilt(self, kind, tok.rebuilt) end
    finish(tok, false, msg, code)
  elseif kind == "publish" and reason and reason >= 0x80 then
    finish(tok, false, fmt("publish refused: %s", reason_text(reason)), "refused")
  else
    -- (a publish's value is never read: no table for it)
    finish(tok, true, nil, nil, kind ~= "publish" and { codes = r.codes, properties = r.properties } or nil)
  end
end

-----------------------------------------------------------------------------
-- Events from the core

-- a plain publish success, as complete_op sees it (one record, reused)
local plain = { kind = "publish", ok = true, rc = 0, reason = 0 }

-- ev, a: an event's name and record (client:next() in src/client.c)
local function handle_event(self, ev, a)
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
    complete_op(self, a)
  elseif ev == "published" then
    -- publishes that succeeded plainly (reason 0, no properties), batched
    -- in the core: their numbers in a[1..a.n]
    for i = 1, a.n do
      if self._closed then break end -- a handler woken by one may close it
      plain.token = a[i]
      complete_op(self, plain)
    end
  elseif ev == "delivered" then
    self._delivered = true
  elseif ev == "lost" then
    lost(self, a.cause, a.message)
  elseif ev == "disconnected" then
    -- the broker's DISCONNECT: its reason code, text and properties
    local p, text = a.properties, a.message
    if p and p.reason_string then text = text .. ": " .. p.reason_string end
    lost(self, "broker", text, a.reason, p)
  end
  return true
end

-- the numbers of a "published" event land here (one table, reused)
local ids_buf = {}

-- handle what client c has queued; at most `max` events (none after `till`)
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
  W.drained(c)
  return n
end
N.drain = drain
sched.set_drain(drain)

return N
