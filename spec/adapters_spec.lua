-- The event-loop adapters (paho.mqtt.cqueues, .luv, .copas): a round trip
-- through mosquitto driven by the loop only. Once the client is connected
-- and subscribed, nothing but the loop dispatches it: the publish is made
-- from inside the loop and the message comes back through it. The message
-- handler waits (mqtt.sleep) before it records the message, so the adapter
-- must also honour client:timeout() to finish the round trip.
--
-- A loop library is tested where it is installed for this Lua. Where the
-- Debian package has no build for this Lua version, the test is marked
-- pending and says so; any other reason a library is missing fails.
local mqtt = require "paho.mqtt"
local helper = require "helper"

local abi = _VERSION:match("%d+%.%d+") -- LuaJIT says 5.1
local lua_name = (jit and "LuaJIT (" .. _VERSION .. " ABI)") or _VERSION

-- require `module`; nil, reason when the Debian package `pkg` has no build
-- for this Lua; raises for any other failure
local function loop_library(module, pkg)
  local ok, lib = pcall(require, module)
  if ok then return lib end
  local p = io.popen("dpkg-query -L " .. pkg .. " 2>/dev/null")
  local files = p:read("*a")
  p:close()
  if files == "" then
    error(("%s is missing: the Debian package %s is not installed (make deps / tools/deps.sh installs it)")
      :format(module, pkg))
  end
  if not files:find("/lua/" .. abi .. "/", 1, true) then
    return nil, ("%s: Debian's %s is not packaged for %s"):format(module, pkg, lua_name)
  end
  error(("%s is installed for Lua %s but require failed: %s"):format(module, abi, tostring(lib)))
end

local broker

-- a connected client subscribed to a fresh topic; its handler waits 20 ms
-- (a suspended wait the loop must wake) and records each message
local function subscriber()
  local c = assert(mqtt.client{ uri = broker.uri, id = helper.uid("loop") })
  local topic = helper.uid("loop/t")
  local got = {}
  c:on("message", function(msg)
    mqtt.sleep(0.02)
    got[#got + 1] = msg.payload
  end)
  assert(c:connect{ keepalive = 30 })
  assert.are.equal(1, c:subscribe(topic, 1))
  return c, topic, got
end

-- a (QoS 1), b (QoS 0) and c (QoS 1) all arrived, the QoS 1 ones in
-- order. Across QoS levels the order is not kept: a, c, b in one loaded
-- CI run (copas on LuaJIT).
local function round_trip(got)
  assert.are.equal(3, #got)
  local sorted = { got[1], got[2], got[3] }
  table.sort(sorted)
  assert.are.same({ "a", "b", "c" }, sorted)
  local qos1 = {}
  for _, p in ipairs(got) do if p ~= "b" then qos1[#qos1 + 1] = p end end
  assert.are.same({ "a", "c" }, qos1)
end

describe("event-loop adapters", function()
  -- an idle connected client lets the binding wake paho's receive thread,
  -- so each test's connect takes milliseconds instead of paho's 1.1 s
  local keeper
  setup(function()
    broker = helper.broker()
    keeper = assert(mqtt.client{ uri = broker.uri, id = helper.uid("keeper") })
    assert(keeper:connect{})
  end)
  teardown(function()
    keeper:close()
    helper.stop_all()
  end)

  describe("cqueues", function()
    local cqueues, why = loop_library("cqueues", "lua-cqueues")
    if not cqueues then
      pending(why)
      return
    end
    local mqcq = require "paho.mqtt.cqueues"

    it("round-trips QoS 0 and 1 with the client polled by cqueues", function()
      local c, topic, got = subscriber()
      local cq = cqueues.new()
      local h = mqcq.wrap(cq, c)
      local results = {}
      cq:wrap(function()
        results[1] = { h:wait(assert(c:publish(topic, "a", { qos = 1 })), 10) }
        assert(c:publish(topic, "b", { qos = 0 }))
        results[2] = { h:wait(assert(c:publish(topic, "c", { qos = 1 })), 10) }
        local deadline = cqueues.monotime() + 10
        while #got < 3 and cqueues.monotime() < deadline do cqueues.sleep(0.01) end
        h:stop()
      end)
      local deadline = helper.now() + 15
      for _ = 1, 10000 do
        assert(cq:step(0.1))
        if cq:empty() or helper.now() > deadline then break end
      end
      assert.is_true(cq:empty(), "the cqueues loop did not end (the dispatch coroutine is still running)")
      assert.are.same({ true }, results[1])
      assert.are.same({ true }, results[2])
      round_trip(got)
      c:close()
    end)

    it("h:close() ends the dispatch coroutine and closes the client", function()
      local c = subscriber()
      local cq = cqueues.new()
      local h = mqcq.wrap(cq, c)
      cq:wrap(function() cqueues.sleep(0.01) h:close() end)
      for _ = 1, 200 do
        assert(cq:step(0.05))
        if cq:empty() then break end
      end
      assert.is_true(cq:empty())
      assert.are.equal("closed", c:state())
    end)

    it("h:close() from a message handler closes the client after that dispatch; h:wait(function)", function()
      local c, topic = subscriber()
      local cq = cqueues.new()
      local h = mqcq.wrap(cq, c)
      local seen = 0
      c:on("message", function()
        seen = seen + 1
        h:close() -- more events are queued behind this one
      end)
      local waited
      cq:wrap(function()
        for i = 1, 3 do assert(c:publish(topic, tostring(i), { qos = 1 })) end
        waited = { h:wait(function() return seen > 0 end, 10) }
      end)
      for _ = 1, 1000 do
        assert(cq:step(0.05))
        if cq:empty() then break end
      end
      assert.is_true(cq:empty())
      assert.are.same({ true }, waited)
      assert.are.equal(1, seen)
      assert.are.equal("closed", c:state())
    end)
  end)

  describe("luv", function()
    local uv, why = loop_library("luv", "lua-luv")
    if not uv then
      pending(why)
      return
    end
    local mquv = require "paho.mqtt.luv"

    it("round-trips QoS 0 and 1 with a uv poll handle and timer", function()
      local c, topic, got = subscriber()
      local h
      local dispatched = 0
      h = mquv.attach(c, { on_dispatch = function(n)
        dispatched = dispatched + n
        if #got >= 3 then h:stop() end
      end })
      local toks = {}
      local start = uv.new_timer()
      start:start(0, 0, function()
        start:close()
        toks[1] = assert(c:publish(topic, "a", { qos = 1 }))
        assert(c:publish(topic, "b", { qos = 0 }))
        toks[2] = assert(c:publish(topic, "c", { qos = 1 }))
      end)
      local guard = uv.new_timer() -- ends the test if the round trip never completes
      guard:start(15000, 0, function() h:stop() end)
      guard:unref()
      local deadline = helper.now() + 20
      for _ = 1, 100000 do
        if not uv.run("once") or helper.now() > deadline then break end
      end
      if not guard:is_closing() then guard:close() end
      uv.run("nowait")
      assert.is_true(h.stopped, "the uv loop ended before the round trip")
      round_trip(got)
      assert.is_true(toks[1]:done())
      assert.is_true(toks[2]:done())
      assert.is_true(toks[1]:wait(0))
      assert.is_true(dispatched >= 5) -- 3 messages and 2 PUBACKs went through the uv loop
      c:close()
    end)

    it("h:close() closes the uv handles and the client, and uv.run returns", function()
      local c = subscriber()
      local h = mquv.attach(c)
      local t = uv.new_timer()
      t:start(10, 0, function() t:close() h:close() end)
      for _ = 1, 1000 do
        if not uv.run("once") then break end
      end
      assert.is_false(uv.loop_alive())
      assert.are.equal("closed", c:state())
    end)

    it("h:close() from a message handler closes the client after that dispatch", function()
      local c, topic = subscriber()
      local h = mquv.attach(c)
      local seen = 0
      c:on("message", function()
        seen = seen + 1
        h:close() -- more events are queued behind this one
      end)
      local t = uv.new_timer()
      t:start(0, 0, function()
        t:close()
        for i = 1, 3 do assert(c:publish(topic, tostring(i), { qos = 1 })) end
      end)
      local guard = uv.new_timer()
      guard:start(15000, 0, function() h:stop() end)
      guard:unref()
      for _ = 1, 100000 do
        if not uv.run("once") or h.stopped then break end
      end
      if not guard:is_closing() then guard:close() end
      uv.run("nowait")
      assert.are.equal(1, seen)
      assert.are.equal("closed", c:state())
    end)
  end)

  describe("copas", function()
    local copas, why = loop_library("copas", "lua-copas")
    if not copas then
      pending(why)
      return
    end
    local mqcopas = require "paho.mqtt.copas"

    it("round-trips QoS 0 and 1 from a copas thread (" .. tostring(copas._VERSION) .. ")", function()
      local c, topic, got = subscriber()
      local h = mqcopas.attach(c)
      local toks = {}
      copas.addthread(function()
        toks[1] = assert(c:publish(topic, "a", { qos = 1 }))
        assert(c:publish(topic, "b", { qos = 0 }))
        toks[2] = assert(c:publish(topic, "c", { qos = 1 }))
      end)
      local deadline = helper.now() + 15
      mqcopas.loop(function()
        return (#got >= 3 and toks[2] and toks[2]:done()) or helper.now() > deadline
      end)
      h:stop()
      round_trip(got)
      assert.is_true(toks[1]:wait(0))
      assert.is_true(toks[2]:wait(0))
      c:close()
      -- the stopped watcher leaves copas at its next step, without the
      -- closed descriptor ever reaching select
      for _ = 1, 3 do copas.step(0) end
    end)

    it("h:close() from a message handler closes the client after that dispatch", function()
      local c, topic = subscriber()
      local h = mqcopas.attach(c)
      local seen = 0
      c:on("message", function()
        seen = seen + 1
        h:close() -- more events are queued behind this one
      end)
      copas.addthread(function()
        for i = 1, 3 do assert(c:publish(topic, tostring(i), { qos = 1 })) end
      end)
      local deadline = helper.now() + 15
      mqcopas.loop(function() return h.stopped or helper.now() > deadline end)
      for _ = 1, 3 do copas.step(0) end
      assert.are.equal(1, seen)
      assert.are.equal("closed", c:state())
    end)
  end)
end)
