-- dispatch's budget for frame loops, a stop() asked for before run(), and
-- stats().messages_out counting every publish publish() accepted (issue 17
-- items 5 and 7, issue 19 item 4). Every wait is bounded.
local mqtt = require "paho.mqtt"
local helper = require "helper"
local core = require "paho.mqtt.core"

describe("dispatch", function()
  local broker
  local made = {}

  setup(function() broker = helper.broker() end)
  teardown(function()
    for _, c in ipairs(made) do pcall(c.close, c) end
    helper.stop_all()
  end)

  local function connected(id)
    local c = assert(mqtt.client{ uri = broker.uri, id = helper.uid(id) })
    made[#made + 1] = c
    assert(c:connect{})
    return c
  end

  -- n QoS 1 messages from a second client, waiting (unhandled) in c's queue
  local function flood(c, topic, n)
    local pub = connected("flood-pub")
    local toks = {}
    for i = 1, n do toks[i] = assert(pub:publish(topic, "m" .. i, { qos = 1 })) end
    -- the publisher's tokens complete through its own dispatch only
    assert.is_true(helper.eventually(function()
      pub:dispatch(0)
      return toks[n]:done()
    end, 20))
    -- wait for c's queue to hold them all, without dispatching c
    local deadline = core.now() + 20
    while c:stats().queued < n and core.now() < deadline do helper.sleep(0.01) end
    assert.are.equal(n, c:stats().queued)
    pub:close()
  end

  it("handles at most max_events events per call and leaves the rest queued", function()
    local c = connected("budget-n")
    local topic = helper.uid("budget/n")
    local got = {}
    c:on("message", function(m) got[#got + 1] = m.payload end)
    assert(c:subscribe(topic, 1))
    flood(c, topic, 300)
    assert.are.equal(100, c:dispatch(0, { max_events = 100 }))
    assert.are.equal(100, #got)
    assert.are.equal(200, c:stats().queued)
    assert.are.equal(100, mqtt.dispatch(0, { max_events = 100 }))
    assert.are.equal(200, #got)
    assert.is_true(helper.eventually(function() return #got == 300 end, 10, mqtt))
    for i = 1, 300 do assert.are.equal("m" .. i, got[i]) end -- in order, none lost
  end)

  it("starts no new event once max_time has passed, and always handles one", function()
    local c = connected("budget-t")
    local topic = helper.uid("budget/t")
    local got = 0
    c:on("message", function() got = got + 1 helper.sleep(0.002) end) -- a 2 ms handler
    assert(c:subscribe(topic, 1))
    flood(c, topic, 200)
    local n = c:dispatch(0, { max_time = 0.02 })
    assert.is_true(n >= 1 and n < 200, "handled " .. n)
    assert.are.equal(n, got)
    assert.are.equal(1, c:dispatch(0, { max_time = 0 })) -- at least one: the loop makes progress
    assert.is_true(helper.eventually(function() return got == 200 end, 10, mqtt))
  end)

  it("raises on a bad budget, naming the option", function()
    local c = connected("budget-bad")
    assert.has_error(function() c:dispatch(0, { max_event = 3 }) end,
      "unknown option 'max_event' to dispatch (did you mean 'max_events'?)")
    assert.has_error(function() c:dispatch(0, { max_events = 0 }) end)
    assert.has_error(function() mqtt.dispatch(0, { max_time = -1 }) end)
    assert.has_error(function() mqtt.dispatch(0, 5) end)
  end)

  it("run() honours a stop() a handler asked for before run() was entered", function()
    local c = connected("stop-before")
    local topic = helper.uid("stop/before")
    local got = 0
    c:on("message", function()
      got = got + 1
      c:stop()
    end)
    assert(c:subscribe(topic, 1))
    -- the message arrives while publish():wait() dispatches, and its handler stops
    assert(assert(c:publish(topic, "x", { qos = 1 })):wait(5))
    assert.is_true(helper.eventually(function() return got == 1 end, 5, mqtt))
    -- a guard: should run() not return, a message 3 s from now stops it
    assert(helper.sh(("(sleep 3; mosquitto_pub -h 127.0.0.1 -p %d -t '%s' -m guard) >/dev/null 2>&1 &")
      :format(broker.port, topic)))
    local t0 = core.now()
    assert.is_true(c:run())
    assert.is_true(core.now() - t0 < 2, "run() did not return at once")
    assert.are.equal(1, got)
    -- and a stop() does not outlive the run() it ended: this run() goes on
    -- until the guard's message stops it
    assert.is_true(c:run())
    assert.are.equal(2, got)
  end)

  it("mqtt.run() honours an mqtt.stop() asked for before it", function()
    connected("mstop")
    mqtt.stop()
    local t0 = core.now()
    assert.is_true(mqtt.run())
    assert.is_true(core.now() - t0 < 0.9)
  end)
end)

describe("stats().messages_out", function()
  local broker
  setup(function() broker = helper.broker() end)
  teardown(function() helper.stop_all() end)

  it("counts every publish publish() accepted, held ones included", function()
    local c = assert(mqtt.client{ uri = broker.uri, id = helper.uid("out") })
    assert(c:connect{})
    local topic = helper.uid("out/t")
    local toks, bytes = {}, 0
    for i = 1, 500 do
      toks[i] = assert(c:publish(topic, "p" .. i, { qos = i % 2 }))
      bytes = bytes + #("p" .. i)
    end
    local s = c:stats()
    assert.is_true(s.held_peak > 0, "nothing was held back: the case is not tested")
    assert.are.equal(500, s.messages_out)
    assert.are.equal(bytes, s.bytes_out)
    assert.is_true(helper.eventually(function() return toks[500]:done() end, 20, mqtt))
    assert.are.equal(500, c:stats().messages_out) -- not counted again when handed to paho
    c:close()
    assert.are.equal(500, c:stats().messages_out)
  end)
end)

describe("close()", function()
  local broker
  setup(function() broker = helper.broker() end)
  teardown(function() helper.stop_all() end)

  it("fires 'disconnect' with cause 'client' once when the client was connected", function()
    local c = assert(mqtt.client{ uri = broker.uri, id = helper.uid("close-ev") })
    local got = {}
    c:on("disconnect", function(r)
      got[#got + 1] = r
      c:close() -- a close from the handler is a no-op
    end)
    assert(c:connect{})
    assert.is_true(c:close())
    assert.are.equal(1, #got)
    assert.are.equal("client", got[1].cause)
    assert.are.equal(false, got[1].reconnecting)
    assert.are.equal("the client was closed", got[1].message)
    assert.is_true(c:close())
    assert.are.equal(1, #got)
  end)

  it("fires nothing for a client that never connected", function()
    local c = assert(mqtt.client{ uri = broker.uri, id = helper.uid("close-none") })
    local n = 0
    c:on("disconnect", function() n = n + 1 end)
    assert.is_true(c:close())
    mqtt.dispatch(0)
    assert.are.equal(0, n)
  end)
end)
