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
