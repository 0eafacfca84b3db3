--- paho.mqtt.publish (internal): publish(), its checks, and the count of the offline queue.
--
-- What publish() accepts goes to the C core at once (src/outbox.c holds
-- what the flow-control windows do not let through yet and hands it to
-- paho on paho's own threads); the token completes at a later dispatch.
local options = require "paho.mqtt.options"
local tokens = require "paho.mqtt.token"
local class = require "paho.mqtt.class"

local Client, checkself = class.Client, class.checkself
local check, range = options.check, options.range
local type, error = type, error
local track = tokens.track
local fmt = string.format

local pub_spec = { qos = range(0, 2), retain = "boolean", properties = class.props_rule }
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

return { submit = submit }
