-- Sessions against a real mosquitto: Clean Start, Session Expiry, 3.1.1
-- clean session, session_present, and offline queuing of missed messages.
local mqtt = require "paho.mqtt"
local helper = require "helper"

local broker

local function client(id, version)
  return assert(mqtt.client{ uri = broker.uri, id = id, version = version })
end

local function collect(c)
  local got = {}
  c:on("message", function(m) got[#got + 1] = m.payload end)
  return got
end

-- subscribe with a session, go away, have three messages published, come back
local function away_and_back(id, first_connect, back_connect, version)
  local topic = helper.uid("sess")
  local sub = client(id, version)
  local got = collect(sub)
  assert(sub:connect(first_connect))
  assert(sub:subscribe(topic, 1))
  assert(sub:disconnect())
  local pub = client(helper.uid("pub"))
  assert(pub:connect{})
  for i = 1, 3 do assert(pub:publish(topic, "m" .. i, { qos = 1 })):wait(5) end
  pub:close()
  if back_connect.sleep then helper.sleep(back_connect.sleep) back_connect.sleep = nil end
  local _, info = assert(sub:connect(back_connect))
  mqtt.dispatch(0.5)
  helper.eventually(function() return #got >= 3 end, 3, mqtt)
  sub:disconnect{ session_expiry = version == 5 and 0 or nil }
  sub:close()
  return info.session_present, got
end

describe("sessions", function()
  setup(function() broker = helper.broker() end)
  teardown(function() helper.stop_all() end)

  it("delivers what was published while away (MQTT 5, expiry 300 s, clean start off)", function()
    local present, got = away_and_back(helper.uid("s5"),
      { clean_start = true, session_expiry = 300 }, { clean_start = false, session_expiry = 300 }, 5)
    assert.is_true(present)
    assert.are.same({ "m1", "m2", "m3" }, got)
  end)

  it("keeps nothing with session expiry 0", function()
    local present, got = away_and_back(helper.uid("s0"),
      { clean_start = true, session_expiry = 0 }, { clean_start = false }, 5)
    assert.is_false(present)
    assert.are.same({}, got)
  end)

  it("discards a kept session when Clean Start is on", function()
    local present, got = away_and_back(helper.uid("sc"),
      { clean_start = true, session_expiry = 300 }, { clean_start = true, session_expiry = 300 }, 5)
    assert.is_false(present)
    assert.are.same({}, got)
  end)

  it("loses a session that outlives its interval", function()
    local present, got = away_and_back(helper.uid("sx"),
      { clean_start = true, session_expiry = 1 }, { clean_start = false, sleep = 2.5 }, 5)
    assert.is_false(present)
    assert.are.same({}, got)
  end)

  it("overrides the expiry on disconnect (MQTT 5)", function()
    local id, topic = helper.uid("sd"), helper.uid("sess")
    local sub = client(id)
    assert(sub:connect{ clean_start = true, session_expiry = 300 })
    assert(sub:subscribe(topic, 1))
    assert(sub:disconnect{ session_expiry = 0 })
    local _, info = assert(sub:connect{ clean_start = false })
    assert.is_false(info.session_present)
    sub:close()
  end)

  it("keeps a 3.1.1 persistent session (clean session off)", function()
    local present, got = away_and_back(helper.uid("s4"),
      { clean_start = false }, { clean_start = false }, 4)
    assert.is_true(present)
    assert.are.same({ "m1", "m2", "m3" }, got)
  end)

  it("resumes on reconnects only with clean_start = 'first'", function()
    local id, topic = helper.uid("sf"), helper.uid("sess")
    local c = client(id)
    local _, info = assert(c:connect{ clean_start = "first", session_expiry = 300 })
    assert.is_false(info.session_present)
    assert(c:subscribe(topic, 1))
    assert(c:disconnect())
    _, info = assert(c:connect{ clean_start = "first", session_expiry = 300 })
    assert.is_true(info.session_present)
    c:disconnect{ session_expiry = 0 }
    c:close()
  end)

  it("takes the id the broker assigns for an empty id (MQTT 5)", function()
    local c = client("")
    local _, info = assert(c:connect{})
    assert.is_string(info.properties.assigned_client_id)
    assert.is_true(#info.properties.assigned_client_id > 0)
    c:close()
  end)
end)

describe("messages that arrive before a consumer exists", function()
  setup(function() broker = helper.broker() end)
  teardown(function() helper.stop_all() end)

  -- subscribe with a persistent session, go away, have n QoS 1 messages
  -- published, come back: they arrive inside connect(), before any handler
  local function resumed(n, opts)
    local id, topic = helper.uid("kept"), helper.uid("kept")
    local sub = assert(mqtt.client(opts and opts(broker.uri, id) or { uri = broker.uri, id = id }))
    assert(sub:connect{ clean_start = false, session_expiry = 300 })
    assert(sub:subscribe(topic, 1))
    assert(sub:disconnect())
    local pub = client(helper.uid("pub"))
    assert(pub:connect{})
    local last
    for i = 1, n do last = assert(pub:publish(topic, "m" .. i, { qos = 1 })) end
    assert(last:wait(5))
    pub:close()
    local _, info = assert(sub:connect{ clean_start = false, session_expiry = 300 })
    assert.is_true(info.session_present)
    -- connect() dispatched the session's messages: nothing consumed them yet
    helper.eventually(function() return sub:stats().unhandled + sub:stats().unhandled_dropped >= n end, 5, mqtt)
    return sub, topic
  end

  local function numbers(got)
    local out = {}
    for i = 1, #got do out[i] = tonumber(got[i]:match("^m(%d+)$")) end
    return out
  end

  local function range(a, b)
    local r = {}
    for i = a, b do r[#r + 1] = i end
    return r
  end

  it("keeps them for the \"message\" handler set after connect() (0 of 50 before)", function()
    local sub = resumed(50)
    assert.are.equal(50, sub:stats().unhandled)
    assert.are.equal(0, sub:stats().unhandled_dropped)
    local got = {}
    sub:on("message", function(m) got[#got + 1] = m.payload end)
    helper.eventually(function() return #got >= 50 end, 5, mqtt)
    assert.are.same(range(1, 50), numbers(got))
    assert.are.equal(0, sub:stats().unhandled)
    sub:disconnect{ session_expiry = 0 }
    sub:close()
  end)

  it("hands them to the first messages() iterator, oldest first", function()
    local sub, topic = resumed(20)
    local got = {}
    for m in sub:messages{ timeout = 1 } do
      got[#got + 1] = m.payload
      if #got == 20 then break end
    end
    assert.are.same(range(1, 20), numbers(got))
    -- and what arrives while it runs follows them
    assert(sub:publish(topic, "m21", { qos = 1 }):wait(5))
    local m = sub:messages{ timeout = 2 }()
    got[#got + 1] = m and m.payload
    assert.are.same(range(1, 21), numbers(got))
    sub:disconnect{ session_expiry = 0 }
    sub:close()
  end)

  it("keeps at most queue_max, counts and reports the rest once, and still completes its own publishes", function()
    local errors = {}
    local sub, topic = resumed(30, function(uri, id)
      return { uri = uri, id = id, queue_max = 10 }
    end)
    sub:on("error", function(e, ev) errors[#errors + 1] = { e, ev } end)
    local s = sub:stats()
    assert.are.equal(10, s.unhandled)
    assert.are.equal(20, s.unhandled_dropped)
    -- the report was made inside connect(), before the error handler: set
    -- one now and one more dropped message must not report again
    assert(sub:publish(topic, "m31", { qos = 1 }):wait(5)) -- own publish: no deadlock
    helper.eventually(function() return sub:stats().unhandled_dropped >= 21 end, 5, mqtt)
    assert.are.equal(21, sub:stats().unhandled_dropped)
    assert.are.same({}, errors)
    local got = {}
    sub:on("message", function(m) got[#got + 1] = m.payload end)
    helper.eventually(function() return #got >= 10 end, 5, mqtt)
    assert.are.same(range(1, 10), numbers(got))
    sub:disconnect{ session_expiry = 0 }
    sub:close()
  end)

  it("says once through the error handler that messages are being dropped", function()
    local id, topic = helper.uid("kept"), helper.uid("kept")
    local sub = assert(mqtt.client{ uri = broker.uri, id = id, queue_max = 5 })
    local errors = {}
    sub:on("error", function(e, ev) errors[#errors + 1] = { e, ev } end)
    assert(sub:connect{})
    assert(sub:subscribe(topic, 0))
    local pub = client(helper.uid("pub"))
    assert(pub:connect{})
    for i = 1, 12 do assert(pub:publish(topic, "m" .. i, { qos = 1 })):wait(5) end
    pub:close()
    helper.eventually(function() return sub:stats().unhandled_dropped >= 7 end, 5, mqtt)
    assert.are.equal(5, sub:stats().unhandled)
    assert.are.equal(7, sub:stats().unhandled_dropped)
    assert.are.equal(1, #errors)
    assert.are.equal("message", errors[1][2])
    assert.matches("no \"message\" handler and no messages%(%) iterator", errors[1][1])
    assert.matches("unhandled_dropped", errors[1][1])
    sub:close()
  end)
end)

describe("clean_start = 'first' across a broker restart (mosquitto with persistence)", function()
  teardown(function() helper.stop_all() end)

  -- mosquitto 2.0.11 saves no session whose connection began with Clean
  -- Start = 1 (persist_write.c: contexts with clean_start set are skipped)
  for _, version in ipairs { 5, 4 } do
    it("keeps the session it began and the messages queued in it (MQTT " .. version .. ")", function()
      local b = helper.broker()
      local id, topic = helper.uid("first"), helper.uid("first")
      local sub = assert(mqtt.client{ uri = b.uri, id = id, version = version })
      local opts = { clean_start = "first", session_expiry = version == 5 and 300 or nil }
      local _, info = assert(sub:connect(opts))
      assert.is_false(info.session_present) -- what the program sees: a fresh session
      assert(sub:subscribe(topic, 1))
      assert(sub:disconnect())
      b:stop() -- SIGTERM: mosquitto writes its store
      b:start()
      local pub = assert(mqtt.client{ uri = b.uri })
      assert(pub:connect{})
      local last
      for i = 1, 5 do last = assert(pub:publish(topic, "m" .. i, { qos = 1 })) end
      assert(last:wait(5))
      pub:close()
      _, info = assert(sub:connect(opts))
      assert.is_true(info.session_present)
      local got = {}
      sub:on("message", function(m) got[#got + 1] = m.payload end)
      helper.eventually(function() return #got >= 5 end, 5, mqtt)
      assert.are.same({ "m1", "m2", "m3", "m4", "m5" }, got)
      sub:disconnect{ session_expiry = version == 5 and 0 or nil }
      sub:close()
      b:stop()
    end)
  end
end)
