-- Keepalive and disconnect causes, against real mosquitto brokers:
-- a frozen broker (SIGSTOP) is a half-open link that only the keepalive
-- can notice; a killed broker, a takeover and the broker's own DISCONNECT
-- are told apart from it.
local helper = require "helper"
local mqtt = require "paho.mqtt"

-- dispatch until `cond()` or `timeout` seconds; bounded
local function until_(cond, timeout)
  return helper.eventually(cond, timeout, mqtt)
end

local function watch(client)
  local seen = {}
  client:on("disconnect", function(r)
    r.at = helper.now()
    seen[#seen + 1] = r
  end)
  return seen
end

describe("keepalive", function()
  teardown(function() helper.stop_all() end)

  for _, ka in ipairs({ 1, 2 }) do
    it("detects a frozen broker (half-open link) with keepalive " .. ka .. " within 2.5 x keepalive + 1 s", function()
      local b = helper.broker()
      local c = mqtt.client { uri = b.uri, id = helper.uid("ka") }
      local seen = watch(c)
      assert(c:connect { keepalive = ka })
      assert.is_true(c:is_connected())
      mqtt.sleep(0.2)
      local t0 = helper.now()
      b:pause()
      -- (under valgrind the Lua thread runs the event up to seconds late:
      -- 7.35 s with keepalive 2 in one CI run)
      local slack = os.getenv("PMQ_VALGRIND") and 3 or 0
      local ok = until_(function() return #seen > 0 end, 2.5 * ka + 3 + slack)
      b:resume()
      assert.is_true(ok, "no disconnect event")
      local r = seen[1]
      assert.are.equal("keepalive", r.cause)
      assert.is_false(r.reconnecting)
      assert.truthy(r.message:find("PINGRESP", 1, true), r.message)
      assert.is_true(r.at - t0 <= 2.5 * ka + 1 + slack, ("detected after %.2f s"):format(r.at - t0))
      assert.is_false(c:is_connected())
      assert.are.equal("disconnected", c:state())
      -- a call on the dead link says why and since when
      local tok, msg, code = c:publish("ka/x", "late")
      assert.is_nil(tok)
      assert.are.equal("not_connected", code)
      assert.truthy(msg:match("connection lost %d+%.%d s ago %(keepalive: no PINGRESP within"), msg)
      local s = c:stats()
      assert.are.equal("keepalive", s.loss_cause)
      assert.is_true(s.last_loss >= 0)
      assert.are.equal(2.5 * ka + 1, s.detect_within)
      c:close()
      b:stop()
    end)
  end

  it("keeps an idle healthy connection up across many keepalive periods", function()
    local b = helper.broker()
    local c = mqtt.client { uri = b.uri, id = helper.uid("idle") }
    local seen = watch(c)
    -- keepalive 2 s, 8 s idle: four periods. (With 1 s, paho's once-a-second
    -- timer leaves no margin: CI runs several suites at once, and a PINGRESP
    -- processed a little late there dropped a healthy link twice in 2 runs.)
    assert(c:connect { keepalive = 2 })
    mqtt.sleep(8)
    assert.are.equal(0, #seen, seen[1] and ("%s: %s"):format(tostring(seen[1].cause), tostring(seen[1].message)))
    assert.is_true(c:is_connected())
    local s = c:stats()
    assert.are.equal("connected", s.state)
    assert.is_true(s.connected_since >= 7.5)
    -- and it still works
    assert(c:subscribe("idle/t", 1))
    local got
    c:on("message", function(m) got = m.payload end)
    assert(c:publish("idle/t", "still here", { qos = 1 }):wait(5))
    assert.is_true(until_(function() return got ~= nil end, 5))
    assert.are.equal("still here", got)
    c:close()
  end)

  it("tells a killed broker (network) from a keepalive timeout", function()
    local b = helper.broker()
    local c = mqtt.client { uri = b.uri, id = helper.uid("kill") }
    local seen = watch(c)
    assert(c:connect { keepalive = 1 })
    mqtt.sleep(2.5) -- long enough for the keepalive watch to be listening
    local t0 = helper.now()
    b:kill()
    assert.is_true(until_(function() return #seen > 0 end, 5))
    assert.are.equal("network", seen[1].cause)
    assert.is_true(seen[1].at - t0 < 1.5)
    local _, msg, code = c:publish("x", "y")
    assert.are.equal("not_connected", code)
    assert.truthy(msg:find("(network:", 1, true), msg)
    c:close()
  end)

  it("reports a takeover by a second client with the same id", function()
    local b = helper.broker()
    local id = helper.uid("same")
    local first = mqtt.client { uri = b.uri, id = id }
    local seen = watch(first)
    assert(first:connect { keepalive = 5 })
    local second = mqtt.client { uri = b.uri, id = id }
    assert(second:connect { keepalive = 5 })
    assert.is_true(until_(function() return #seen > 0 end, 5))
    -- mosquitto 2.0.11 closes the first connection without a DISCONNECT
    -- packet; a broker that sends one gives "broker" with 0x8E
    local r = seen[1]
    assert.is_true(r.cause == "network" or (r.cause == "broker" and r.code == 0x8E),
      ("cause %s code %s"):format(tostring(r.cause), tostring(r.code)))
    assert.is_true(second:is_connected())
    first:close()
    second:close()
  end)

  it("gives the broker's DISCONNECT reason 0x9A when a retained publish meets retain_available false", function()
    local b = helper.broker { config = { "retain_available false" } }
    local c = mqtt.client { uri = b.uri, id = helper.uid("r9a") }
    local seen = watch(c)
    assert(c:connect { keepalive = 5 })
    c:publish("r/t", "kept?", { retain = true, qos = 1 })
    assert.is_true(until_(function() return #seen > 0 end, 5))
    assert.are.equal("broker", seen[1].cause)
    assert.are.equal(0x9A, seen[1].code)
    assert.truthy(seen[1].message:find("0x9A", 1, true), seen[1].message)
    local _, msg, code = c:publish("r/t", "again")
    assert.are.equal("not_connected", code)
    assert.truthy(msg:find("broker", 1, true), msg)
    c:close()
  end)

  it("gives the broker's DISCONNECT reason 0x9B when a QoS 1 publish meets max_qos 0", function()
    local b = helper.broker { config = { "max_qos 0" } }
    local c = mqtt.client { uri = b.uri, id = helper.uid("r9b") }
    local seen = watch(c)
    assert(c:connect { keepalive = 5 })
    c:publish("q/t", "too high", { qos = 1 })
    assert.is_true(until_(function() return #seen > 0 end, 5))
    assert.are.equal("broker", seen[1].cause)
    assert.are.equal(0x9B, seen[1].code)
    c:close()
  end)

  it("says 'client' when the program disconnects", function()
    local b = helper.broker()
    local c = mqtt.client { uri = b.uri, id = helper.uid("cl") }
    local seen = watch(c)
    assert(c:connect { keepalive = 5 })
    assert(c:disconnect())
    assert.is_true(until_(function() return #seen > 0 end, 5))
    assert.are.equal("client", seen[1].cause)
    assert.are.equal("client", c:stats().loss_cause)
    local _, msg, code = c:publish("x", "y")
    assert.are.equal("not_connected", code)
    assert.truthy(msg:find("disconnected by the client", 1, true), msg)
    c:close()
  end)

  it("lists what a person watching the connection needs in stats()", function()
    local b = helper.broker()
    local c = mqtt.client { uri = b.uri, id = helper.uid("st") }
    assert(c:connect { keepalive = 7 })
    assert(c:subscribe("st/t", 1))
    assert(c:publish("st/t", "abc", { qos = 1 }):wait(5))
    assert.is_true(until_(function() return c:stats().messages_in == 1 end, 5))
    local s = c:stats()
    assert.are.equal("connected", s.state)
    assert.are.equal(7, s.keepalive)
    assert.are.equal(2.5 * 7 + 1, s.detect_within)
    assert.is_number(s.connected_since)
    assert.is_nil(s.last_loss)
    assert.are.equal(0, s.reconnects)
    assert.are.equal(1, s.messages_out)
    assert.are.equal(3, s.bytes_out)
    assert.are.equal(1, s.messages_in)
    assert.are.equal(3, s.bytes_in)
    assert.are.equal(0, s.queued)
    assert.are.equal(0, s.offline_queued)
    assert.are.equal(0, s.inflight)
    assert.are.equal(b.uri, s.uri)
    c:close()
  end)
end)
