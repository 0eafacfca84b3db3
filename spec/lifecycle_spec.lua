-- Lifecycle under stress: close() from inside handlers, while a connect is
-- in progress and with requests pending; the garbage collector taking a
-- client that paho is still delivering to; a handler that raises on every
-- one of 10,000 messages; two clients driven from separate coroutines.
-- Nothing may crash, leak or hang: every wait here is bounded.
local mqtt = require "paho.mqtt"
local helper = require "helper"
local fp = require "faultproxy"

local broker, trigger
local proxies, made = {}, {}

local function pack(...) return { n = select("#", ...), ... } end

local function client(opts)
  opts = opts or {}
  local x = assert(mqtt.client{ uri = opts.uri or broker.uri, id = helper.uid(opts.name or "lc"),
    queue_max = opts.queue_max })
  made[#made + 1] = x
  return x
end

local function connected(opts)
  local x = client(opts)
  assert(x:connect(opts and opts.connect or {}))
  return x
end

local function proxy()
  local p = fp.start(broker.port)
  proxies[#proxies + 1] = p
  return p
end

local function eventually(cond, timeout)
  return helper.eventually(cond, timeout or 5, mqtt)
end

-- runs fn in a paho.mqtt handler (a message handler of the `trigger`
-- client), where waits yield; returns a table that gets .started, then
-- .done and .result (what fn returned) once fn has finished
local function in_handler(fn)
  local st = {}
  local topic = helper.uid("trig")
  trigger:on("message", function(m)
    if m.topic ~= topic then return end
    st.started = true
    st.result = pack(fn())
    st.done = true
  end)
  assert(trigger:subscribe(topic, 0))
  assert(assert(trigger:publish(topic, "go", { qos = 1 })):wait(5))
  assert.is_true(eventually(function() return st.started end), "the handler did not start")
  return st
end

local function rss_kb()
  return helper.rss_kib() or 0
end

describe("lifecycle", function()
  setup(function()
    broker = helper.broker{ config = { "max_queued_messages 100000" } }
    trigger = assert(mqtt.client{ uri = broker.uri, id = helper.uid("trigger") })
    assert(trigger:connect{})
  end)
  teardown(function()
    if trigger then trigger:close() end
    helper.stop_all()
  end)
  after_each(function()
    for i = #made, 1, -1 do made[i]:close() made[i] = nil end
    for i = #proxies, 1, -1 do proxies[i]:stop() proxies[i] = nil end
    trigger:on("message", nil)
  end)

  describe("close() from inside a handler", function()
    it("a message handler closes its own client with more messages queued", function()
      local sub, pub = connected{ name = "self" }, connected{ name = "pub" }
      local topic = helper.uid("self")
      assert(sub:subscribe(topic, 1))
      local calls, after = 0, nil
      sub:on("message", function()
        calls = calls + 1
        sub:close()
        after = sub:state()
      end)
      local last
      for i = 1, 20 do last = assert(pub:publish(topic, tostring(i), { qos = 1 })) end
      assert.is_true(last:wait(5))
      helper.sleep(0.3) -- let paho queue the messages for sub without dispatching them
      local ok, err = pcall(mqtt.dispatch, 0.5)
      assert(ok, "dispatch raised after a handler closed its client: " .. tostring(err))
      ok, err = pcall(mqtt.dispatch, 0.2)
      assert(ok, "the next dispatch raised: " .. tostring(err))
      assert.are.equal(1, calls) -- the queued events were discarded, not dispatched
      assert.are.equal("closed", after)
      assert.are.equal("closed", sub:state())
      assert.is_false(sub:is_connected())
      -- the other client goes on
      assert.is_true(assert(pub:publish(topic, "still", { qos = 1 })):wait(5))
      assert.is_true(pub:is_connected())
    end)

    it("a suspended wait of the same client returns nil, ..., 'closed' when another handler closes it", function()
      local p = proxy()
      local x = connected{ name = "susp", uri = p.uri }
      local topic = helper.uid("susp")
      assert(x:subscribe(topic, 0))
      p:stall() -- the PUBACK never comes: the wait stays suspended
      local tok = assert(x:publish(topic, "never acked", { qos = 1 }))
      local st = in_handler(function() return tok:wait(10) end)
      assert.is_nil(st.done)
      local closer = in_handler(function() x:close() return true end)
      assert.is_true(eventually(function() return st.done and closer.done end, 3), "the wait did not end")
      assert.is_nil(st.result[1])
      assert.are.equal("closed", st.result[3])
      assert.are.equal("publish: the client was closed", st.result[2])
    end)

    it("the connect handler closes the client", function()
      local x = client{ name = "onconn" }
      local seen
      x:on("connect", function(info)
        seen = info
        x:close()
      end)
      local ok, info = x:connect{}
      assert.is_true(ok)
      assert.is_table(info)
      assert.is_true(eventually(function() return seen ~= nil end, 3))
      assert.are.equal("closed", x:state())
      assert.is_true(pcall(mqtt.dispatch, 0.1))
    end)

    it("the disconnect handler closes the client after the broker went away", function()
      local b = helper.broker()
      local x = assert(mqtt.client{ uri = b.uri, id = helper.uid("ondisc") })
      made[#made + 1] = x
      local reason
      x:on("disconnect", function(r)
        reason = r
        x:close()
      end)
      assert(x:connect{ keepalive = 5 })
      b:kill()
      assert.is_true(eventually(function() return reason ~= nil end, 10))
      assert.are.equal("network", reason.cause)
      assert.are.equal("closed", x:state())
      assert.is_true(pcall(mqtt.dispatch, 0.1))
    end)
  end)

  describe("close() while a connect is in progress", function()
    local function close_during_connect(uri)
      local x = client{ name = "midconn", uri = uri }
      local st = in_handler(function() return x:connect{ timeout = 8 } end)
      assert.is_nil(st.done, "connect returned: " .. tostring(st.result and st.result[2]))
      assert.are.equal("connecting", x:state())
      local t0 = helper.now()
      assert.is_true(x:close())
      local took = helper.now() - t0
      assert.is_true(took < 3, ("close() took %.2f s"):format(took))
      assert.is_true(eventually(function() return st.done end, 3), "connect() did not return after close()")
      assert.is_nil(st.result[1])
      assert.are.equal("closed", st.result[3])
      assert.truthy(tostring(st.result[2]):find("closed", 1, true), st.result[2])
      assert.are.equal("closed", x:state())
      -- nothing arrives later for the closed client, and dispatch goes on
      assert.is_true(pcall(mqtt.dispatch, 0.2))
    end

    it("the broker accepts TCP but never answers (fault proxy: stall)", function()
      local p = proxy()
      p:stall()
      close_during_connect(p.uri)
    end)

    it("the broker is frozen (SIGSTOP)", function()
      local b = helper.broker()
      b:pause()
      local ok, err = pcall(close_during_connect, b.uri)
      b:resume()
      b:stop()
      assert(ok, err)
    end)

    it("close() from the main thread while connect() waits in a handler; a new client connects at once", function()
      local p = proxy()
      p:stall()
      close_during_connect(p.uri)
      p:pass()
      local y = connected{ name = "after", uri = p.uri }
      assert.is_true(y:is_connected())
    end)
  end)

  describe("close() with requests pending", function()
    it("tokens of QoS 0, 1 and 2 publishes (some held for Receive Maximum) end with 'closed'", function()
      local p = proxy()
      local x = connected{ name = "pend", uri = p.uri }
      local topic = helper.uid("pend")
      p:stall()
      local toks = {}
      for i = 1, 60 do toks[i] = assert(x:publish(topic, tostring(i), { qos = i % 3 })) end
      local held = x:stats().held
      local t0 = helper.now()
      assert.is_true(x:close())
      assert.is_true(helper.now() - t0 < 3, "close() blocked")
      for i, tok in ipairs(toks) do
        local ok, msg, code = tok:wait(2)
        if ok == nil then
          assert.are.equal("closed", code, ("token %d: %s"):format(i, tostring(msg)))
          assert.are.equal("publish: the client was closed", msg)
        else
          -- QoS 0 may have been written to the socket before the stall
          assert.is_true(i % 3 == 0, ("token %d (QoS %d) completed"):format(i, i % 3))
        end
        assert.is_true(tok:done())
      end
      assert.is_true(helper.now() - t0 < 4, "the waits did not return at once")
      print(("\n    %d publishes pending at close, %d of them held for Receive Maximum"):format(#toks, held))
    end)

    it("subscribe() and a request() waiting in handlers end with 'closed'", function()
      local p = proxy()
      local x = connected{ name = "pend2", uri = p.uri }
      p:stall()
      local s1 = in_handler(function() return x:subscribe(helper.uid("never"), 1) end)
      local s2 = in_handler(function() return x:request(helper.uid("svc"), "ping", { timeout = 8 }) end)
      assert.is_nil(s1.done)
      assert.is_nil(s2.done)
      x:close()
      assert.is_true(eventually(function() return s1.done and s2.done end, 3))
      assert.is_nil(s1.result[1])
      assert.are.equal("closed", s1.result[3])
      assert.is_nil(s2.result[1])
      assert.are.equal("closed", s2.result[3])
    end)
  end)

  describe("the garbage collector", function()
    it("collects an unreferenced client while paho is still delivering to it", function()
      local pub = connected{ name = "gcpub" }
      local topic = helper.uid("gc")
      local fired = 0
      local alive = setmetatable({}, { __mode = "k" })
      local fds0, threads0 = helper.fd_count(), helper.thread_count()
      local map0 = helper.fd_map()
      do
        local x = assert(mqtt.client{ uri = broker.uri, id = helper.uid("gcsub"), queue_max = 100 })
        assert(x:connect{})
        assert(x:subscribe(topic, 1))
        x:on("message", function() fired = fired + 1 end)
        alive[x] = true
      end
      -- flood it without dispatching: paho fills its queue (100) and waits
      for i = 1, 3000 do
        pub:publish(topic, tostring(i), { qos = i % 3 })
        if i % 100 == 0 then collectgarbage("step") end
      end
      helper.sleep(0.3)
      local t0 = helper.now()
      for _ = 1, 4 do collectgarbage("collect") end
      assert.is_nil(next(alive), "the client was not collected")
      local took = helper.now() - t0
      assert.is_true(took < 5, ("the collection took %.2f s"):format(took))
      -- paho goes on for everyone else; nothing runs for the collected client
      local last = assert(pub:publish(topic, "last", { qos = 1 }))
      assert.is_true(last:wait(10))
      assert.is_true(pcall(mqtt.dispatch, 0.3))
      assert.are.equal(0, fired)
      assert.is_true(pub:is_connected())
      collectgarbage("collect")
      -- a descriptor another part of the process opens meanwhile (a client of
      -- an earlier spec reconnecting, a popen) is no leak if it goes again
      local fds1, threads1 = helper.fd_count(), helper.thread_count()
      for _ = 1, 25 do
        if fds1 <= fds0 then break end
        mqtt.dispatch(0.2)
        fds1, threads1 = helper.fd_count(), helper.thread_count()
      end
      print(("\n    collected in %.2f s; fds %d -> %d, threads %d -> %d"):format(took, fds0, fds1,
        threads0, threads1))
      assert.is_true(fds1 <= fds0, "descriptors leaked: " .. helper.fd_diff(map0, helper.fd_map()))
      assert.is_true(threads1 <= threads0 + 1, "threads leaked") -- +1: paho's keepalive watchdog may start
    end)

    it("collects clients in every state, with events queued, while collecting all the time", function()
      local pub = connected{ name = "gcpub2" }
      local topic = helper.uid("gc2")
      local p = proxy()
      local alive = setmetatable({}, { __mode = "k" })
      local stop_at = helper.now() + 20
      for round = 1, 20 do
        if helper.now() > stop_at then break end
        local x = assert(mqtt.client{ uri = (round % 4 == 3) and p.uri or broker.uri,
          id = helper.uid("gcr"), queue_max = 20, offline_queue = 5 })
        alive[x] = true
        local kind = round % 4
        if kind == 0 then
          x:publish(topic, "offline", { qos = 1 }) -- never connected, one publish queued
        elseif kind == 1 or kind == 2 then
          assert(x:connect{})
          assert(x:subscribe(topic, 1))
          x:on("message", function() end)
          for i = 1, 50 do pub:publish(topic, tostring(i), { qos = 1 }) end
          if kind == 2 then x:publish(topic, "mine", { qos = 2 }) end
        else
          assert(x:connect{}) -- through the proxy, which then stalls: requests pending
          p:stall()
          for i = 1, 10 do x:publish(topic, tostring(i), { qos = 1 }) end
        end
        x = nil -- luacheck: ignore 311
        collectgarbage("collect")
        if kind == 3 then p:pass() end
        mqtt.dispatch(0)
      end
      for _ = 1, 3 do collectgarbage("collect") end
      assert.is_nil(next(alive))
      assert.is_true(assert(pub:publish(topic, "end", { qos = 1 })):wait(10))
    end)
  end)

  it("goes on through 10,000 messages whose handler raises every time", function()
    local sub = connected{ name = "raise" }
    local pub = connected{ name = "raisepub" }
    local topic = helper.uid("raise")
    local errors, events, bad = 0, {}, nil
    sub:on("message", function(m) error("boom " .. m.payload) end)
    sub:on("error", function(err, event)
      errors = errors + 1
      events[event] = (events[event] or 0) + 1
      if not bad and not tostring(err):find("boom " .. errors, 1, true) then bad = tostring(err) end
    end)
    assert(sub:subscribe(topic, 1))
    local mem_mid, rss_mid
    local function measure()
      if not mem_mid and errors >= 2000 then
        collectgarbage("collect")
        mem_mid, rss_mid = collectgarbage("count"), rss_kb()
      end
    end
    local last
    for i = 1, 10000 do
      last = assert(pub:publish(topic, tostring(i), { qos = 1 }))
      if i % 500 == 0 then
        mqtt.dispatch(0)
        measure()
      end
    end
    -- (under valgrind, beside CI's other parts, 10,000 tracebacks take minutes)
    local deadline = helper.now() + (os.getenv("PMQ_VALGRIND") and 300 or 60)
    while errors < 10000 and helper.now() < deadline do
      mqtt.dispatch(0.05)
      measure()
    end
    assert.are.equal(10000, errors)
    assert.is_true(last:wait(10))
    mqtt.dispatch(0.2)
    assert.are.equal(10000, errors)
    assert.are.same({ message = 10000 }, events)
    assert.is_nil(bad, "an error came out of order or without its message: " .. tostring(bad))
    collectgarbage("collect")
    collectgarbage("collect")
    local mem_end, rss_end = collectgarbage("count"), rss_kb()
    print(("\n    Lua heap %.0f KiB -> %.0f KiB, RSS %d KiB -> %d KiB (after 2,000 and 10,000 errors)"):format(
      mem_mid, mem_end, rss_mid, rss_end))
    assert.is_true(mem_end - mem_mid < 2048, "the Lua heap grew by " .. (mem_end - mem_mid) .. " KiB")
    -- under AddressSanitizer freed memory sits in its quarantine, so RSS says
    -- nothing there; the Lua heap check above still holds
    if not (os.getenv("LD_PRELOAD") or ""):find("asan", 1, true) then
      assert.is_true(rss_end - rss_mid < 64 * 1024, "RSS grew by " .. (rss_end - rss_mid) .. " KiB")
    end
    local s = sub:stats()
    assert.are.equal(0, s.queued)
    assert.are.equal(10000, s.messages_in)
    -- and the client works normally once the handler behaves
    local got
    sub:on("message", function(m) got = m.payload end)
    assert.is_true(assert(pub:publish(topic, "fine", { qos = 1 })):wait(5))
    assert.is_true(eventually(function() return got == "fine" end))
  end)

  it("runs two clients in separate coroutines that share nothing", function()
    local function worker(name, n)
      return coroutine.create(function()
        local x = assert(mqtt.client{ uri = broker.uri, id = helper.uid(name) })
        local got = {}
        x:on("message", function(m) got[#got + 1] = m.payload end)
        assert(x:connect{})
        local topic = helper.uid(name)
        assert(x:subscribe(topic, 1))
        coroutine.yield("subscribed")
        for i = 1, n do
          assert(x:publish(topic, name .. ":" .. i, { qos = 1 }))
          if i % 25 == 0 then coroutine.yield(i) end
        end
        local deadline = helper.now() + 15
        while #got < n and helper.now() < deadline do
          x:dispatch(0.02)
          coroutine.yield("waiting")
        end
        local s = x:stats()
        x:close()
        return got, s
      end)
    end
    local n = 300
    local a, b = worker("coa", n), worker("cob", n)
    local results = {}
    local deadline = helper.now() + 30
    while (coroutine.status(a) ~= "dead" or coroutine.status(b) ~= "dead") and helper.now() < deadline do
      for name, co in pairs({ a = a, b = b }) do
        if coroutine.status(co) == "suspended" then
          local r = pack(coroutine.resume(co))
          assert(r[1], r[2])
          if coroutine.status(co) == "dead" then results[name] = { got = r[2], stats = r[3] } end
        end
      end
    end
    assert.is_truthy(results.a, "coroutine a did not finish")
    assert.is_truthy(results.b, "coroutine b did not finish")
    for name, r in pairs(results) do
      assert.are.equal(n, #r.got, name .. " got " .. #r.got)
      for i = 1, n do
        assert.are.equal("co" .. name .. ":" .. i, r.got[i])
      end
      assert.are.equal(n, r.stats.messages_in)
    end
  end)
end)
