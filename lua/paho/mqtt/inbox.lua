--- paho.mqtt.inbox (internal): arriving messages and their consumers.
--
-- A message goes to every matching route, else the "message" handler, and
-- to the messages() iterators; one with no consumer waits, bounded and in
-- order, for the first to appear (kept), instead of being dropped.
local core = require "paho.mqtt.core"
local options = require "paho.mqtt.options"
local topics = require "paho.mqtt.topic"
local sched = require "paho.mqtt.scheduler"
local class = require "paho.mqtt.class"

local Client, checkself = class.Client, class.checkself
local check, nrange = options.check, options.nrange
local error, table = error, table
local now, spawn, report, wait_for = core.now, sched.spawn, sched.report, sched.wait_for
local fmt = string.format

local I = {}

local function push(q, msg)
  q.last = q.last + 1
  q[q.last] = msg
end

-- A message to its consumers: the handler of every route whose filter
-- matches (in the order they were added), else the "message" handler; the
-- messages() iterators' shared inbox, and the inbox of each filtered
-- iterator that matches. False when nothing took it.
local function consume(self, msg)
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
local function keep(self, msg)
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
local function deliver_kept(self, max, till)
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

I.consume, I.keep, I.deliver_kept = consume, keep, deliver_kept

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

return I
