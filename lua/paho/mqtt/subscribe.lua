--- paho.mqtt.subscribe (internal): the program's subscriptions, and making them again after every reconnect.
--
-- subscribe() and unsubscribe(); every confirmed subscribe request is kept
-- (client._subs) and sent again when a new connection needs it, retried
-- until a SUBACK confirms it (stats().subscriptions_pending).
local options = require "paho.mqtt.options"
local sched = require "paho.mqtt.scheduler"
local tokens = require "paho.mqtt.token"
local errors = require "paho.mqtt.errors"
local class = require "paho.mqtt.class"

local Client, checkself = class.Client, class.checkself
local check, range = options.check, options.range
local type, ipairs, error, tostring, table = type, ipairs, error, tostring, table
local spawn, report, sleep, track = sched.spawn, sched.report, sched.sleep, tokens.track
local reason_text = errors.reason_text
local unpack = table.unpack or unpack -- luacheck: ignore 143
local fmt = string.format

local S = {}

local sub_spec = {
  qos = range(0, 2), no_local = "boolean", retain_as_published = "boolean",
  retain_handling = range(0, 2), properties = class.props_rule,
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
      sleep(delay)
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
function S.resubscribe(self, all)
  for _, req in ipairs(self._subs) do
    if all then req.pending = true end
    if req.pending then resubscribe_req(self, req, self._loss_gen) end
  end
end

return S
