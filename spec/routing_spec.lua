-- Routing: mqtt.topic_matches, handlers per topic filter (client:route) and
-- the filter of client:messages, against a real mosquitto.
local mqtt = require "paho.mqtt"
local helper = require "helper"

describe("mqtt.topic_matches", function()
  local cases = {
    { "a/b", "a/b", true }, { "a/b", "a/c", false }, { "a/b", "a/b/c", false }, { "a/b", "a", false },
    { "a/+", "a/b", true }, { "a/+", "a/", true }, { "a/+", "a", false }, { "a/+", "a/b/c", false },
    { "+/+", "/x", true }, { "+", "a", true }, { "+", "/a", false },
    { "a/#", "a", true }, { "a/#", "a/b/c", true }, { "a/#", "ab", false }, { "a/b/#", "a/b/", true },
    { "#", "a/b", true }, { "#", "/", true }, { "+/b/#", "x/b", true }, { "+/b/#", "x/c/b", false },
    -- topics beginning with "$" are not matched by a leading wildcard
    { "#", "$SYS/broker/uptime", false }, { "+/broker/uptime", "$SYS/broker/uptime", false },
    { "$SYS/#", "$SYS/broker/uptime", true }, { "$SYS/+/uptime", "$SYS/broker/uptime", true },
    -- a shared subscription matches what its filter matches
    { "$share/g/a/+", "a/b", true }, { "$share/g/a/+", "$share/g/a/b", false }, { "$share/g/#", "x", true },
    { "$share/g/#", "$SYS/x", false },
  }
  for _, case in ipairs(cases) do
    it(("'%s' %s '%s'"):format(case[1], case[3] and "matches" or "does not match", case[2]), function()
      assert.are.equal(case[3], mqtt.topic_matches(case[1], case[2]))
    end)
  end

  it("raises for a filter or topic that is not valid, saying why", function()
    local function raises(pattern, f, t)
      local ok, err = pcall(mqtt.topic_matches, f, t)
      assert.is_false(ok)
      assert.matches(pattern, err)
    end
    raises("bad argument #1 to topic_matches %('#' must be the last level", "a/#/b", "a")
    raises("bad argument #1 to topic_matches %(a wildcard", "a/b+", "a")
    raises("bad argument #1 to topic_matches %(a topic filter is at least one character", "", "a")
    raises("bad argument #1 to topic_matches %(a shared subscription is", "$share//a", "a")
    raises("bad argument #1 to topic_matches %(string expected, got nil", nil, "a")
    raises("bad argument #2 to topic_matches %(a topic name cannot contain wildcards", "a/+", "a/+")
    raises("bad argument #2 to topic_matches %(string expected, got number", "a/+", 5)
  end)
end)

describe("routes", function()
  local broker
  setup(function() broker = helper.broker() end)
  teardown(function() helper.stop_all() end)

  local function connected(opts)
    local c = assert(mqtt.client(opts or { uri = broker.uri }))
    assert(c:connect{})
    return c
  end

  it("run every matching route in the order added; the \"message\" handler gets the rest", function()
    local base = helper.uid("rt")
    local c = connected()
    local seen = {}
    c:route(base .. "/a/+", function(m) seen[#seen + 1] = "a+ " .. m.topic end)
     :route(base .. "/#", function(m) seen[#seen + 1] = "# " .. m.topic end)
     :on("message", function(m) seen[#seen + 1] = "rest " .. m.topic end)
    assert(c:subscribe(base .. "/#", 1))
    assert(c:subscribe(helper.uid("other") .. "/#", 1))
    local pub = connected()
    assert.are.equal(2, c:stats().subscriptions)
    assert(pub:publish(base .. "/a/x", "1", { qos = 1 }):wait(5))
    assert(pub:publish(base .. "/b", "2", { qos = 1 }):wait(5))
    helper.eventually(function() return #seen >= 3 end, 5, mqtt)
    assert.are.same({ "a+ " .. base .. "/a/x", "# " .. base .. "/a/x", "# " .. base .. "/b" }, seen)
    -- a route removed: its messages go to the others
    c:route(base .. "/a/+", nil)
    c:route(base .. "/#", nil)
    assert(pub:publish(base .. "/a/y", "3", { qos = 1 }):wait(5))
    helper.eventually(function() return #seen >= 4 end, 5, mqtt)
    assert.are.equal("rest " .. base .. "/a/y", seen[4])
    assert.are.equal(4, #seen)
    pub:close()
    c:close()
  end)

  it("replaces the handler of a filter routed again, keeping its place", function()
    local base = helper.uid("rt")
    local c = connected()
    local seen = {}
    c:route(base .. "/x", function() seen[#seen + 1] = "old" end)
    c:route(base .. "/#", function() seen[#seen + 1] = "all" end)
    c:route(base .. "/x", function() seen[#seen + 1] = "new" end)
    assert(c:subscribe(base .. "/#", 1))
    assert(c:publish(base .. "/x", "p", { qos = 1 }):wait(5))
    helper.eventually(function() return #seen >= 2 end, 5, mqtt)
    assert.are.same({ "new", "all" }, seen)
    c:close()
  end)

  it("messages{filter} iterates over what matches; what nothing consumes waits for a route", function()
    local base = helper.uid("rt")
    local c = connected()
    assert(c:subscribe(base .. "/#", 1))
    local pub = connected()
    for i = 1, 3 do
      assert(pub:publish(base .. "/a", "a" .. i, { qos = 1 }):wait(5))
      assert(pub:publish(base .. "/b", "b" .. i, { qos = 1 }):wait(5))
    end
    helper.eventually(function() return c:stats().unhandled >= 6 end, 5, mqtt)
    assert.are.equal(6, c:stats().unhandled)
    local got = {}
    for m in c:messages{ filter = base .. "/a", timeout = 0.5 } do got[#got + 1] = m.payload end
    assert.are.same({ "a1", "a2", "a3" }, got)
    assert.are.equal(3, c:stats().unhandled) -- the b ones still wait
    local b = {}
    c:route(base .. "/b", function(m) b[#b + 1] = m.payload end)
    helper.eventually(function() return #b >= 3 end, 5, mqtt)
    assert.are.same({ "b1", "b2", "b3" }, b)
    assert.are.equal(0, c:stats().unhandled)
    pub:close()
    c:close()
  end)

  it("raises for a bad filter or handler, naming the argument", function()
    local c = assert(mqtt.client{ uri = broker.uri })
    local ok, err = pcall(c.route, c, "a/#/b", print)
    assert.is_false(ok)
    assert.matches("bad argument #1 to route %('#' must be the last level", err)
    ok, err = pcall(c.route, c, "a/b", 42)
    assert.is_false(ok)
    assert.matches("bad argument #2 to route %(function expected, got number%)", err)
    ok, err = pcall(c.messages, c, { filter = "a+" })
    assert.is_false(ok)
    assert.matches("bad argument #1 to messages %(filter: a wildcard", err)
    ok, err = pcall(c.route, 5, "a", print)
    assert.is_false(ok)
    assert.matches("route", err)
    c:close()
  end)
end)
