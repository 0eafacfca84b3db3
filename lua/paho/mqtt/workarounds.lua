--- paho.mqtt.workarounds (internal): what the Lua layer does because paho.mqtt.c 1.3.12 (or a broker) falls short.
--
-- Each section names the version it was seen in, its evidence (a repro
-- under tools/, paho's source lines, the upstream issue) and what would
-- let it go. The session (paho.mqtt.session) calls these at fixed points;
-- removing a section means removing its calls there and nothing else.
-- The C core's workarounds live in src/ with the same kind of header
-- (src/retire.c: damaged handles are retired, not destroyed).
local core = require "paho.mqtt.core"
local sched = require "paho.mqtt.scheduler"
local token = require "paho.mqtt.token"
local errors = require "paho.mqtt.errors"

local pairs, type, setmetatable = pairs, type, setmetatable
local now, track, wait_for, add_timer = core.now, token.track, sched.wait_for, sched.add_timer
local clients = sched.clients
local fmt = string.format
local RC = core.rc -- paho's return codes by name (src/codes.c)

local W = {}

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-----------------------------------------------------------------------------
-- 1. The UNSUBSCRIBE wake (paho 1.3.12).
--
-- paho's receiving thread polls the sockets it already had for up to a
-- second before it notices a new one or looks at its command queue again
-- (Socket_getReadySocket, src/Socket.c:537-546, 1000 ms from
-- MQTTAsyncUtils.c:2023; tools/repro/paho-lone-connect-repro.c). So a connect made
-- while another client is connected takes about 1.1 s, and publishes paho
-- buffered while disconnected (or restored from its store) go out only up
-- to the broker's Receive Maximum, then wait a second. A request on a
-- connected client (an UNSUBSCRIBE of a filter nobody uses) makes the
-- broker answer on a socket paho is polling, which wakes it.
--
-- The C core wakes paho for connects itself (src/wake.c: the process's
-- anchor handle is connected to a loopback peer of ours, which writes to it
-- every 10 ms while a connect waits), which also serves a lone client; the
-- connect wakes here are for when that peer could not be set up
-- (core.wake_up() false). The kick of buffered and restored publishes
-- stays here. Can go when paho wakes its receive thread for new sockets and
-- commands.

local WAKE_FILTER = { "$paho-lua/wake" }

local function other_connected(self)
  for c in pairs(clients) do
    if c ~= self and c._c and c._state == "connected" then return c end
  end
end

-- a connect waiting for its CONNACK (tok): poke another connected client
-- every 20 ms until it is in (at most 1.5 s)
function W.wake_connect(self, tok)
  if core.wake_up() then return end -- src/wake.c does it
  local other = other_connected(self)
  if not other then return end
  local deadline = now() + 1.5
  local function done() return tok.status ~= nil or self._closed, true end
  while not done() and now() < deadline and other._c and other._state == "connected" do
    local t = other._c:unsubscribe(WAKE_FILTER)
    if t then track(other, t, "wake") end
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
  local t = other._c:unsubscribe(WAKE_FILTER)
  if t then track(other, t, "wake") end
  add_timer(now() + 0.02, wake_tick, ref)
end

function W.wake_reconnect(self)
  if not core.wake_up() and other_connected(self) then
    wake_tick(setmetatable({ c = self, till = now() + 1.5 }, { __mode = "v" }))
  end
end

-- As the acknowledgements of buffered publishes come in, a new request
-- makes paho go on at once. The buffered ones have tokens, whose
-- completions set client._kick (paho.mqtt.session); the restored ones have
-- none: paho's deliveryComplete ("delivered" events) does (400 restored
-- publishes: all sent in under 0.5 s, against 224 in 10 s with paho's
-- one-second wait; a fresh paho handle restored 674 to 2,748 of them in
-- the fault spec).
local function kick(self)
  if self._state ~= "connected" or not self._c then return end
  local t = self._c:unsubscribe(WAKE_FILTER)
  if t then track(self, t, "wake") end
end

-- paho holds publishes the client did not hand it: ones it restored from
-- its persistence store
local function restored_left(c)
  local _, _, handed = c._c:outbox()
  return (c._c:pending() or 0) > handed
end

-- at a CONNACK: wake paho for what it buffered; with persistence, watch
-- paho's deliveryComplete while it holds more publishes than the client
-- handed it (client:watch_restored)
function W.connected(self)
  if self._offline_n > 0 or self._persist then self._kick = true end
  if self._persist then
    self._restoring = restored_left(self)
    self._c:watch_restored(self._restoring)
  end
end

-- after each drain of the client's events
function W.drained(c)
  if c._delivered then
    -- paho completed a publish while it still held some it restored from
    -- its persistence store: wake it if so
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
end

-----------------------------------------------------------------------------
-- 2. Damaged sessions: a fresh paho handle (paho 1.3.12).
--
-- When the send thread writes a new QoS 1/2 PUBLISH on a connection that
-- has just broken, MQTTAsync_processCommand (MQTTAsyncUtils.c:1530-1585)
-- fails the publish (-1; -2, MQTTASYNC_PERSISTENCE_ERROR, takes the same
-- path) and frees its topic and payload (MQTTAsync_freeCommand1), but keeps
-- it in the session's in-flight list (MQTTProtocolClient.c:177-185); paho
-- then resends that freed memory after every reconnect (the broker:
-- "malformed packet") for ever (eclipse/paho.mqtt.c#1401, #1621, #1622;
-- tools/repro/paho-resend-repro.c). The client connects next through a fresh
-- paho handle with the same id (the old one is retired, src/retire.c):
-- with persistence paho restores an intact copy of all that was in flight
-- from its store; in memory the requests pending in the old handle fail
-- ("disconnected": 2,923 publishes after one such failure under valgrind),
-- but keeping the old handle lets paho's threads read the freed memory
-- (valgrind, CI run at f36b277), so memory safety wins.
-- Can go when paho takes a failed publish out of its in-flight list.

-- a connection that ends within QUICK_LOSS s of its CONNACK, QUICK_LOSSES
-- times in a row, means paho damaged its session
local QUICK_LOSS, QUICK_LOSSES = 0.5, 3

-- a publish failed (rc) before the connection ended
function W.publish_failed(self, tok, rc)
  -- (not for a token of a handle already replaced: the core saw the
  -- failure first, see W.before_connect)
  if (rc == RC.FAILURE or rc == RC.PERSISTENCE_ERROR) and tok.qos and tok.qos > 0 and not tok.rebuilt then
    self._damaged = self._damaged or errors.write_failed(rc)
  end
end

-- the connection ended (cause, code: as the "disconnect" event says them)
function W.lost(self, cause, code)
  -- the resend of freed memory: an MQTT 5 broker says "malformed packet"
  -- (DISCONNECT 0x81) and closes the connection
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
end

-- Before every CONNECT: after paho damaged its session state the client
-- first gets a fresh paho handle with the same id (and persistence
-- directory); the requests pending in the old one fail ("disconnected",
-- errors.rebuilt). Returns the connect options, or nil, message, code.
function W.before_connect(self, o)
  -- (the core notes a -1/-2 publish failure at once, on paho's thread: this
  -- connect may come before the Lua side has handled that failure's event)
  local paho_rc = self._c:damaged()
  if self._damaged or paho_rc then
    -- what the old handle still owes fails; say why
    local why = type(self._damaged) == "string" and self._damaged
      or paho_rc and errors.write_failed(paho_rc) or "cause not recorded"
    self._damaged = nil
    token.each(self, function(tok) tok.rebuilt = why end)
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
  return o
end

-- at close: a damaged handle is retired, not destroyed (src/retire.c)
function W.closing(self)
  if self._damaged then self._c:suspect() end
end

-----------------------------------------------------------------------------
-- 3. Taking a session over at once: connect again right after a CONNACK
--    (the program sees one connect, with the first CONNACK's session_present).
--
-- a. MQTT 5 Server Keep Alive (paho 1.3.12): the broker wants pings more
--    often than asked and drops a client that pings late; paho ignores the
--    property (MQTTAsync keeps its own keepAliveInterval), so the client
--    connects again with the broker's interval. Can go when paho adopts it.
-- b. Clean Start and mosquitto 2.0.11 (a broker's, not paho's): a session
--    meant to outlive the connection, begun with Clean Start = 1, is never
--    written to mosquitto's store (persist_write.c skips contexts whose
--    connection had clean_start set) until a connection with Clean Start =
--    0 takes it over, so a broker restart would lose it, and paho would fail
--    what was in flight (-11) at the CONNACK saying so (measured: 196 and 100
--    of 300 delivered across restarts; taken over, 300 of 300). Can go for
--    brokers that store such sessions.

-- At a successful CONNACK (tok: the connect's token, again: an automatic
-- reconnect, present: session_present): true when the client disconnected
-- to connect again at once (the session continues at the disconnect's
-- completion, W.take_over_step).
function W.take_over(self, tok, again, present, props)
  if self._adopt then return false end -- this is the connect that takes over
  local ska = props and props.server_keep_alive
  local asked = self._copts and self._copts.keepalive
  if ska and asked and (asked == 0 or ska < asked) then
    self._adopt = { session_present = present, tok = tok, ska = ska, why = "the broker's Server Keep Alive" }
    self._copts.keepalive = ska
  else
    local o = self._copts
    -- (a fresh paho handle in memory connected with Clean Start, see
    -- W.before_connect, though the program asked for a lasting session)
    local fresh = self._need_clean == true and o and not o.clean
    if not (o and (o.clean or fresh)
        and ((self.version == 5 and (o.session_expiry or 0) > 0)
          or (self.version ~= 5 and (self._clean_first or fresh)))) then
      return false
    end
    -- the new session is made: Clean Start 0 from now on (publishes
    -- still wait in the client until the program sees the connect)
    if fresh then self._need_clean = "made" end
    self._adopt = { session_present = present, tok = tok, why = "Clean Start = 0 (a session the broker stores)" }
  end
  self._connect_tok = tok
  if again then self._attempting = true end
  self._c:disconnect(0)
  return true
end

-- The CONNACK of the connect that took over: the first CONNACK's
-- session_present and Server Keep Alive
function W.taken_over(self, present, props)
  local adopt = self._adopt
  self._adopt = nil
  if adopt then
    present = adopt.session_present
    props = props or {}
    props.server_keep_alive = props.server_keep_alive or adopt.ska
  end
  return present, props
end

-- A disconnect completed: when it was take_over's, connect again with Clean
-- Start = 0 (connect(self, o) -> ok, err, code: the session's core connect;
-- failed(self, msg, adopt) reports a failure). true when it was take_over's.
function W.take_over_step(self, connect, failed)
  if not self._adopt then return false end
  local o = copy(self._copts)
  o.clean = false
  if #self._uris > 1 then o.uris = { self._uris[self._uri_index or 1] } end
  local cok, err = connect(self, o)
  if not cok then
    local adopt = self._adopt
    self._adopt = nil
    self._connect_tok = nil
    failed(self, "connect: reconnecting with " .. adopt.why .. " failed: " .. tostring(err), adopt)
  end
  return true
end

-----------------------------------------------------------------------------
-- 4. The QoS 2 in-flight cap (paho 1.3.12).
--
-- With thousands of QoS 2 publishes in flight paho slows down 3-4x: it
-- walks its command, in-flight and response lists for each new message id
-- (MQTTAsync_assignMsgId, MQTTAsyncUtils.c:2731-2733) and its in-flight
-- list for acknowledgements (a profile: 31 % of all samples in
-- cmdMessageIDCompare, messageIDCompare and ListFindItem). Measured, QoS 2,
-- 20,000 x 100 B, a broker with no in-flight limit, source paho: about
-- 3,900 msg/s with 65,535 in flight, 11,000-16,000 with 64-512; QoS 1 is
-- fastest uncapped (docs/performance.md, "The in-flight cap"). So the
-- session opens the outbox's QoS 2 window at most this wide unless
-- connect's max_inflight says otherwise. Can go when paho finds message ids
-- and acknowledgements without walking lists.
W.MAX_QOS2 = 512

return W
