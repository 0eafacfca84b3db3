-- The outgoing path (src/outbox.c): publishes held for the flow-control
-- windows reach the wire on paho's threads, whether or not the program ever
-- dispatches the publishing client.
local mqtt = require "paho.mqtt"
local helper = require "helper"

describe("outbox", function()
  local broker
  setup(function()
    broker = helper.broker { config = { "max_queued_messages 0", "max_inflight_messages 0" } }
  end)
  teardown(function() helper.stop_all() end)

  for _, version in ipairs { 5, 4 } do
    local vname = version == 5 and "MQTT 5" or "MQTT 3.1.1"
    it(vname .. ": a publisher never dispatched delivers 2,000 QoS 0 + 300 QoS 1 "
      .. "while only its subscriber is dispatched", function()
      -- before: the publishes beyond the windows (QoS 0: 64 unsent; QoS 1:
      -- the 3.1.1 window of 20, or the broker's Receive Maximum) waited in
      -- the Lua layer for a dispatch of the publisher: 64 of 2,300 arrived
      local topic = helper.uid("never")
      local sub = assert(mqtt.client { uri = broker.uri, id = helper.uid("nsub"), version = version,
        queue_max = 10000 })
      local got, order_ok, last = { 0, 0 }, true, { -1, -1 }
      sub:on("message", function(m)
        local q, i = m.payload:match("^q(%d)%-(%d+)$")
        q, i = tonumber(q), tonumber(i)
        got[q + 1] = got[q + 1] + 1
        if i <= last[q + 1] then order_ok = false end
        last[q + 1] = i
      end)
      assert(sub:connect {})
      assert(sub:subscribe(topic, 1))
      -- a small Receive Maximum would hold more; mosquitto's is 65535 with
      -- max_inflight_messages 0, so on MQTT 5 the QoS 0 window is what holds
      local pub = assert(mqtt.client { uri = broker.uri, id = helper.uid("npub"), version = version })
      assert(pub:connect {})
      local toks = {}
      for i = 1, 2000 do
        toks[#toks + 1] = assert(pub:publish(topic, "q0-" .. i, { qos = 0 }))
        if i % 7 == 0 then toks[#toks + 1] = assert(pub:publish(topic, "q1-" .. i, { qos = 1 })) end
      end
      for i = 2001, 2000 + 300 - math.floor(2000 / 7) do
        toks[#toks + 1] = assert(pub:publish(topic, "q1-" .. i, { qos = 1 }))
      end
      assert.are.equal(2300, #toks)
      -- (paho's thread may have sent them all by now: the peak says some waited)
      assert.is_true(pub:stats().held_peak > 0, "nothing was held: the test would prove nothing")
      -- only the subscriber is dispatched (bounded: 30 s)
      local deadline = helper.now() + 30
      while got[1] + got[2] < 2300 and helper.now() < deadline do sub:dispatch(0.05) end
      print(("\n    %s: %d QoS 0 + %d QoS 1 arrived, publisher never dispatched"):format(vname, got[1], got[2]))
      assert.are.equal(2000, got[1])
      assert.are.equal(300, got[2])
      assert.is_true(order_ok, "out of order")
      assert.are.equal(0, pub:stats().held)
      -- and the tokens complete when the publisher is dispatched at last
      for _, tok in ipairs(toks) do assert.is_true(tok:wait(10)) end
      pub:close()
      sub:close()
    end)
  end

  it("holds publishes beyond a small Receive Maximum in C and releases them in order as PUBACKs come", function()
    local small = helper.broker { config = { "max_inflight_messages 3" } }
    local sub = assert(mqtt.client { uri = small.uri, id = helper.uid("rsub") })
    local got = {}
    sub:on("message", function(m) got[#got + 1] = m.payload end)
    assert(sub:connect {})
    assert(sub:subscribe("rm/t", 2))
    local pub = assert(mqtt.client { uri = small.uri, id = helper.uid("rpub") })
    local _, info = assert(pub:connect {})
    assert.are.equal(3, info.properties.receive_maximum)
    for i = 1, 200 do assert(pub:publish("rm/t", tostring(i), { qos = 1 })) end
    local st = pub:stats()
    assert.is_true(st.held_peak >= 100, "held at most " .. st.held_peak)
    assert.is_true(st.held_bytes <= st.held * 8, "held_bytes " .. st.held_bytes)
    local deadline = helper.now() + 20
    while #got < 200 and helper.now() < deadline do sub:dispatch(0.05) end
    assert.are.equal(200, #got)
    for i = 1, 200 do assert.are.equal(tostring(i), got[i]) end
    assert.are.equal(0, pub:stats().held)
    pub:close()
    sub:close()
    small:stop()
  end)

  it("hands paho at most max_inflight QoS 1/2 publishes (QoS 2: 512 by default), within the Receive Maximum", function()
    -- this broker has no in-flight limit: its Receive Maximum is 65,535
    local sub = assert(mqtt.client { uri = broker.uri, id = helper.uid("misub") })
    local got = {}
    sub:on("message", function(m) got[#got + 1] = m.payload end)
    assert(sub:connect {})
    assert(sub:subscribe("mi/t", 2))
    local function run(opts, n, qos)
      local pub = assert(mqtt.client { uri = broker.uri, id = helper.uid("mipub"), version = opts.version })
      local _, info = assert(pub:connect { max_inflight = opts.max_inflight })
      if pub.version == 5 then assert.are.equal(65535, info.properties.receive_maximum or 65535) end
      got = {}
      local last
      -- the broker paused: no acknowledgement comes back during the burst,
      -- so exactly what the window does not let through is held
      broker:pause()
      for i = 1, n do last = assert(pub:publish("mi/t", tostring(i), { qos = qos })) end
      local peak = pub:stats().held_peak
      broker:resume()
      local deadline = helper.now() + 30
      while #got < n and helper.now() < deadline do mqtt.dispatch(0.05) end
      assert.are.equal(n, #got)
      for i = 1, n do assert.are.equal(tostring(i), got[i]) end
      assert.is_true(last:wait(10))
      assert.are.equal(0, pub:stats().held)
      pub:close()
      return peak
    end
    -- 5 in flight: the other 195 of 200 wait their turn in the outbox
    assert.are.equal(195, run({ max_inflight = 5 }, 200, 1))
    assert.are.equal(195, run({ max_inflight = 5, version = 4 }, 200, 2))
    -- the default: of 2,000 QoS 2 at once, all beyond 512 held; QoS 1 as
    -- many as the broker allows: nothing held
    assert.are.equal(2000 - 512, run({}, 2000, 2))
    assert.are.equal(0, run({}, 2000, 1))
    assert.are.equal(0, run({ max_inflight = 65535 }, 2000, 2))
    sub:close()
  end)

  it("raises on a max_inflight outside 1..65535", function()
    local c = assert(mqtt.client { uri = broker.uri })
    for _, bad in ipairs { 0, 65536, 1.5, "10" } do
      local ok, err = pcall(c.connect, c, { max_inflight = bad })
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("max_inflight", 1, true), tostring(err))
    end
    c:close()
  end)

  it("a client closed or collected with publishes held frees them and ends their tokens", function()
    local small = helper.broker { config = { "max_inflight_messages 1" } }
    local pub = assert(mqtt.client { uri = small.uri, id = helper.uid("cpub") })
    assert(pub:connect {})
    local toks = {}
    for i = 1, 100 do toks[i] = assert(pub:publish("c/t", ("x"):rep(1000), { qos = 1 })) end
    assert.is_true(pub:stats().held_peak > 0)
    pub:close()
    local closed = 0
    for i = 1, 100 do
      local ok, _, code = toks[i]:wait(0)
      if not ok then
        assert.are.equal("closed", code)
        closed = closed + 1
      end
    end
    assert.is_true(closed > 0, "no token ended with the close")
    -- collected without close
    local pub2 = assert(mqtt.client { uri = small.uri, id = helper.uid("gpub") })
    assert(pub2:connect {})
    for _ = 1, 100 do assert(pub2:publish("c/t", "y", { qos = 1 })) end
    assert.is_true(pub2:stats().held_peak > 0)
    pub2 = nil -- luacheck: ignore 311
    collectgarbage() collectgarbage()
    small:stop()
  end)
end)
