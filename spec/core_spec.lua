-- Core binding against a real mosquitto: round trips, bursts, payloads,
-- retained messages, wills, lifecycle and the bounded event queue.
local mqtt = require "paho.mqtt"
local helper = require "helper"

local broker

local function connected(opts)
  opts = opts or {}
  local c = assert(mqtt.client{ uri = broker.uri, id = opts.id or helper.uid("c"), version = opts.version,
    queue_max = opts.queue_max, queue_max_bytes = opts.queue_max_bytes })
  local ok, info = c:connect(opts.connect or {})
  assert(ok, info)
  return c, info
end

-- collects messages of a client into a list
local function collector(c)
  local got = {}
  c:on("message", function(m) got[#got + 1] = m end)
  return got
end

-- a connected client watching a fresh will topic: client, messages, topic
local function will_watcher(name)
  local watcher = connected{}
  local got = collector(watcher)
  local topic = helper.uid(name)
  assert(watcher:subscribe(topic, 1))
  return watcher, got, topic
end

local function wait_count(list, n, timeout)
  return helper.eventually(function() return #list >= n end, timeout or 10, mqtt)
end

describe("core", function()
  -- mosquitto drops QoS 1/2 messages beyond max_queued_messages (1000) for
  -- a client that reads slowly; the backpressure test needs more room
  setup(function() broker = helper.broker{ config = { "max_queued_messages 100000" } } end)
  teardown(function() helper.stop_all() end)

  for _, version in ipairs({ 5, 4 }) do
    describe("MQTT " .. (version == 5 and "5" or "3.1.1"), function()
      it("round-trips QoS 0, 1 and 2", function()
        local sub = connected{ version = version }
        local pub = connected{ version = version }
        local got = collector(sub)
        local topic = helper.uid("rt")
        assert.are.equal(2, sub:subscribe(topic, 2))
        for qos = 0, 2 do
          local tok = assert(pub:publish(topic, "q" .. qos, { qos = qos }))
          assert.is_true(tok:wait(5))
          assert.is_true(tok:done())
        end
        assert.is_true(wait_count(got, 3))
        for qos = 0, 2 do
          assert.are.equal(topic, got[qos + 1].topic)
          assert.are.equal("q" .. qos, got[qos + 1].payload)
          assert.are.equal(qos, got[qos + 1].qos)
          assert.is_false(got[qos + 1].retain)
        end
        assert.is_true(sub:disconnect())
        assert.is_true(pub:disconnect())
        sub:close()
        pub:close()
      end)

      it("subscribes to a list and unsubscribes", function()
        local c = connected{ version = version }
        local a, b = helper.uid("a"), helper.uid("b")
        local granted = assert(c:subscribe{ { a, 1 }, { b, { qos = 2 } } })
        assert.are.same({ 1, 2 }, granted)
        local got = collector(c)
        assert.is_true(c:unsubscribe(a))
        assert(c:publish(a, "not delivered", { qos = 1 })):wait(5)
        assert(c:publish(b, "delivered", { qos = 1 })):wait(5)
        assert.is_true(wait_count(got, 1))
        mqtt.dispatch(0.2)
        assert.are.equal(1, #got)
        assert.are.equal("delivered", got[1].payload)
        assert.is_true(c:unsubscribe{ b })
        c:close()
      end)
    end)
  end

  it("delivers a 10,000-message burst complete and in order", function()
    local sub = connected{}
    local pub = connected{}
    local topic = helper.uid("burst")
    local n, expect, bad = 0, 1, nil
    sub:on("message", function(m)
      n = n + 1
      if tonumber(m.payload) ~= expect then bad = bad or (m.payload .. " at " .. expect) end
      expect = expect + 1
    end)
    assert(sub:subscribe(topic, 1))
    local t0 = helper.now()
    local last
    for i = 1, 10000 do
      last = assert(pub:publish(topic, tostring(i), { qos = 1 }))
      if i % 500 == 0 then mqtt.dispatch(0) end
    end
    assert.is_true(last:wait(30))
    assert.is_true(helper.eventually(function() return n >= 10000 end, 30, mqtt))
    local secs = helper.now() - t0
    print(("\n    burst: 10000 QoS 1 messages in %.2f s (%.0f msg/s)"):format(secs, 10000 / secs))
    assert.is_nil(bad)
    assert.are.equal(10000, n)
    sub:close()
    pub:close()
  end)

  it("keeps binary, empty and 1 MiB payloads intact", function()
    local c = connected{}
    local got = collector(c)
    local topic = helper.uid("bin")
    assert(c:subscribe(topic, 1))
    local bin = "a\0b\0\0c\255\1" .. string.char(0):rep(10)
    local big = {}
    for i = 1, 1024 do big[i] = string.char(i % 256):rep(1024) end
    big = table.concat(big)
    assert(c:publish(topic, bin, { qos = 1 })):wait(5)
    assert(c:publish(topic, "", { qos = 1 })):wait(5)
    assert(c:publish(topic, nil, { qos = 1 })):wait(5)
    assert(c:publish(topic, big, { qos = 1 })):wait(10)
    assert.is_true(wait_count(got, 4))
    assert.are.equal(bin, got[1].payload)
    assert.are.equal(#bin, #got[1].payload)
    assert.are.equal("", got[2].payload)
    assert.are.equal("", got[3].payload)
    assert.are.equal(1024 * 1024, #got[4].payload)
    assert.is_true(got[4].payload == big)
    c:close()
  end)

  it("keeps retained messages for later subscribers and clears them", function()
    local pub = connected{}
    local topic = helper.uid("ret")
    assert(pub:publish(topic, "kept", { qos = 1, retain = true })):wait(5)
    local sub = connected{}
    local got = collector(sub)
    assert(sub:subscribe(topic, 1))
    assert.is_true(wait_count(got, 1))
    assert.are.equal("kept", got[1].payload)
    assert.is_true(got[1].retain)
    assert(pub:publish(topic, "", { qos = 1, retain = true })):wait(5) -- clears it
    local late = connected{}
    local got2 = collector(late)
    assert(late:subscribe(topic, 1))
    mqtt.dispatch(0.3)
    assert.are.equal(0, #got2)
    pub:close() sub:close() late:close()
  end)

  it("sends the will on a disconnect with reason 0x04, not on a normal one", function()
    local watcher, got, topic = will_watcher("will")
    local c = connected{ connect = { will = { topic = topic, payload = "gone", qos = 1 } } }
    assert.is_true(c:disconnect())
    mqtt.dispatch(0.3)
    assert.are.equal(0, #got)
    c = connected{ connect = { will = { topic = topic, payload = "gone", qos = 1,
      properties = { content_type = "text/plain" } } } }
    assert.is_true(c:disconnect{ reason = 0x04 })
    assert.is_true(wait_count(got, 1))
    assert.are.equal("gone", got[1].payload)
    assert.are.equal("text/plain", got[1].properties.content_type)
    watcher:close() c:close()
  end)

  it("does not send the will when the client is closed (close sends DISCONNECT)", function()
    local watcher, got, topic = will_watcher("will2")
    local c = connected{ connect = { will = { topic = topic, payload = "gone", qos = 1 } } }
    c:close()
    mqtt.dispatch(0.3)
    assert.are.equal(0, #got) -- a clean DISCONNECT discards the will
    watcher:close()
  end)

  it("frees a connected client collected mid-traffic", function()
    local pub = connected{}
    local topic = helper.uid("gc")
    do
      local c = connected{}
      local n = 0
      c:on("message", function() n = n + 1 end)
      assert(c:subscribe(topic, 1))
      for i = 1, 200 do pub:publish(topic, tostring(i), { qos = 1 }) end
      -- collected while messages are still arriving
      assert.is_true(helper.eventually(function() return n > 0 end, 5, mqtt))
    end
    for _ = 1, 4 do collectgarbage("collect") end
    for i = 1, 200 do pub:publish(topic, tostring(i), { qos = 1 }) end
    assert.is_true(assert(pub:publish(topic, "last", { qos = 1 })):wait(5))
    mqtt.dispatch(0.1)
    assert.is_true(pub:is_connected())
    pub:close()
  end)

  it("creates and closes 200 clients without leaking descriptors or threads", function()
    local fds0, threads0, map0
    for i = 1, 200 do
      local c = assert(mqtt.client{ uri = broker.uri, id = helper.uid("many") })
      if i % 4 == 0 then assert(c:connect{}) end
      if i % 8 == 0 then c = nil collectgarbage() else c:close() end -- luacheck: ignore 311
      if i == 20 then fds0, threads0, map0 = helper.fd_count(), helper.thread_count(), helper.fd_map() end
    end
    collectgarbage() collectgarbage()
    -- a leak stays; what an earlier spec left under way (a probe's socket,
    -- a close in progress) goes within a moment
    local fds1, threads1
    helper.eventually(function()
      collectgarbage()
      fds1, threads1 = helper.fd_count(), helper.thread_count()
      return fds1 <= fds0 and threads1 <= threads0
    end, 3, mqtt)
    print(("\n    fds %d -> %d, threads %d -> %d"):format(fds0, fds1, threads0, threads1))
    local new = {}
    for fd, target in pairs(helper.fd_map()) do
      if map0[fd] ~= target then new[#new + 1] = fd .. " -> " .. target end
    end
    assert.is_true(fds1 <= fds0, "descriptors new since the 20th client: " .. table.concat(new, ", "))
    assert.is_true(threads1 <= threads0)
  end)

  it("bounds the event queue: a slow consumer gets everything, the broker is held back", function()
    local sub = connected{ queue_max = 50 }
    local topic = helper.uid("slow")
    local n, expect, bad = 0, 1, nil
    sub:on("message", function(m)
      if tonumber(m.payload) ~= expect then bad = bad or m.payload end
      expect = expect + 1
      n = n + 1
    end)
    assert(sub:subscribe(topic, 1))
    -- another process floods the topic while this one does not dispatch
    assert.is_true(helper.sh(("seq 1 2000 | mosquitto_pub -h 127.0.0.1 -p %d -t %s -q 1 -l -V 5 &")
      :format(broker.port, topic)))
    helper.sleep(1.0)
    local s = sub:stats()
    assert.is_true(s.queued <= 50 + s.overflows, "queued " .. s.queued)
    assert.is_true(s.stalls >= 1, "stalls " .. s.stalls)
    -- a slow consumer: a few events at a time
    assert.is_true(helper.eventually(function()
      sub:dispatch(0.001)
      return n >= 2000
    end, 60))
    s = sub:stats()
    assert.is_nil(bad)
    assert.are.equal(2000, n)
    assert.is_true(s.queue_peak <= 50 + s.overflows, "peak " .. s.queue_peak)
    print(("\n    queue_max 50: peak %d, stalls %d, overflows %d, stalled %.2f s"):format(
      s.queue_peak, s.stalls, s.overflows, s.stalled_seconds))
    sub:close()
  end)

  it("holds MQTT 5 publishes beyond the broker's Receive Maximum and sends them in order", function()
    local small = helper.broker{ config = { "max_inflight_messages 2" } }
    local function client(id)
      local x = assert(mqtt.client{ uri = small.uri, id = helper.uid(id) })
      local _, info = assert(x:connect{})
      return x, info
    end
    local sub = client("rmsub")
    local pub, info = client("rmpub")
    assert.are.equal(2, info.properties.receive_maximum)
    local got = collector(sub)
    local topic = helper.uid("rm")
    assert(sub:subscribe(topic, 1))
    local toks = {}
    for i = 1, 50 do toks[i] = assert(pub:publish(topic, tostring(i), { qos = 1 })) end
    assert.is_true(pub:stats().held_peak > 0)
    -- a held publish is checked as one sent at once would be
    assert.has_error(function() pub:publish("a/+", "x", { qos = 1 }) end)
    assert.has_error(function() pub:publish("a\255", "x", { qos = 1 }) end,
      "bad argument 'topic' to publish (not valid UTF-8)")
    for i = 1, 50 do assert.is_true(toks[i]:wait(10)) end
    assert.are.equal(0, pub:stats().held)
    assert.is_true(wait_count(got, 50))
    for i = 1, 50 do assert.are.equal(tostring(i), got[i].payload) end
    sub:close() pub:close()
    small:stop()
  end)

  it("reports a publish on a disconnected client with the reason", function()
    local c = connected{}
    assert.is_true(c:disconnect())
    local tok, msg, code = c:publish("x", "y")
    assert.is_nil(tok)
    assert.are.equal("not_connected", code)
    assert.matches("not connected: disconnected by the client [%d.]+ s ago", msg)
    c:close()
    local c2 = assert(mqtt.client{ uri = broker.uri })
    tok, msg, code = c2:publish("x", "y")
    assert.is_nil(tok)
    assert.are.equal("not_connected", code)
    assert.matches("has not connected yet", msg)
    c2:close()
  end)

  it("fails a connect to a port nobody listens on", function()
    local c = assert(mqtt.client{ uri = "tcp://127.0.0.1:1", id = helper.uid("nobody") })
    local ok, msg, code = c:connect{ timeout = 2 }
    assert.is_nil(ok)
    assert.is_string(msg)
    assert.is_true(code == "network" or code == "timeout", code)
    assert.are.equal("disconnected", c:state())
    c:close()
    assert.are.equal("closed", c:state())
  end)
end)
