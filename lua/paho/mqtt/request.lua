--- paho.mqtt.request (internal): MQTT 5 request/response, client:request.
--
-- A request publishes with a response topic and fresh correlation data;
-- the session hands the message that answers it to the waiting request
-- only (client._requests), before any route or handler sees it.
local core = require "paho.mqtt.core"
local options = require "paho.mqtt.options"
local sched = require "paho.mqtt.scheduler"
local class = require "paho.mqtt.class"

local Client, checkself = class.Client, class.checkself
local check, range, nrange = options.check, options.range, options.nrange
local type, pairs, error, tostring, pcall = type, pairs, error, tostring, pcall
local now, wait_for = core.now, sched.wait_for
local fmt = string.format

local request_spec = {
  qos = range(0, 2), timeout = nrange(0, 86400), properties = class.props_rule, response_topic = "string",
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

return {}
