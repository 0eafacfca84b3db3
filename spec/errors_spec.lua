-- Errors: programming mistakes raise naming the function and the argument;
-- run-time failures return nil, message, code.
local mqtt = require "paho.mqtt"
local helper = require "helper"

local broker, c

local function raises(pattern, f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.matches(pattern, tostring(err))
end

describe("errors", function()
  setup(function()
    broker = helper.broker()
    c = assert(mqtt.client{ uri = broker.uri, id = helper.uid("err") })
    assert(c:connect{})
  end)
  teardown(function()
    c:close()
    helper.stop_all()
  end)

  it("suggests the closest option name for a typo", function()
    raises("unknown option 'keep_alive' to connect %(did you mean 'keepalive'%?%)", c.connect, c, { keep_alive = 5 })
    raises("unknown option 'qso' to publish %(did you mean 'qos'%?%)", c.publish, c, "t", "x", { qso = 1 })
    raises("unknown option 'versoin' to client %(did you mean 'version'%?%)", mqtt.client, { versoin = 5 })
    raises("unknown option 'zzzzzzzz' to client$", mqtt.client, { zzzzzzzz = 5 })
  end)

  it("rejects wrong types and ranges, naming the argument", function()
    raises("bad option 'qos' to publish %(integer 0..2 expected, got number 3%)", c.publish, c, "t", "x", { qos = 3 })
    raises("bad argument #1 to publish %(topic string expected, got number%)", c.publish, c, 42, "x")
    raises("bad argument #2 to publish %(string payload or nil expected, got table%)", c.publish, c, "t", {})
    raises("bad option 'keepalive' to connect %(integer 0..65535 expected, got string 'x'%)",
      c.connect, c, { keepalive = "x" })
    raises("bad option 'version' to client", mqtt.client, { version = 6 })
    raises("bad option 'uri' to client", mqtt.client, { uri = "http://x" })
    raises("bad argument 'qos' to subscribe %(0, 1 or 2 expected, got 3%)", c.subscribe, c, "a", 3)
    raises("bad argument #1 to subscribe", c.subscribe, c, 42)
    raises("bad argument #1 to on", c.on, c, "mesage", print)
    raises("did you mean 'message'", c.on, c, "mesage", print)
    raises("bad argument #2 to on %(function expected, got number%)", c.on, c, "message", 1)
    raises("bad argument #1 to sleep", mqtt.sleep, -1)
    raises("bad argument #1 to dispatch", mqtt.dispatch, "x")
  end)

  it("rejects wildcards in a publish topic and bad filters", function()
    raises("publish %(wildcards '%+' and '#' are not allowed", c.publish, c, "a/+/b", "x")
    raises("publish %(wildcards", c.publish, c, "a/#", "x")
    raises("publish %(empty topic", c.publish, c, "", "x")
    raises("publish %(contains a zero byte%)", c.publish, c, "a\0b", "x")
    raises("subscribe %('#' must be last", c.subscribe, c, "a/#/b", 0)
    raises("subscribe %('%+' must fill a whole level%)", c.subscribe, c, "a/b+", 0)
    raises("bad topic filter to subscribe %(empty string%)", c.subscribe, c, "", 0)
    raises("publish %(not valid UTF%-8%)", c.publish, c, "a\255\254", "x")
  end)

  it("rejects unknown properties and MQTT 5 options on 3.1.1", function()
    raises("unknown property 'content_typ' to publish", c.publish, c, "t", "x", { properties = { content_typ = "a" } })
    raises("bad property 'message_expiry_interval' to publish %(integer expected, got string%)",
      c.publish, c, "t", "x", { properties = { message_expiry_interval = "x" } })
    raises("bad property 'user' to publish", c.publish, c, "t", "x", { properties = { user = { "k", "v" } } })
    local c3 = assert(mqtt.client{ uri = broker.uri, id = helper.uid("v4"), version = 4 })
    raises("bad option 'session_expiry' to connect %(MQTT 5 only", c3.connect, c3, { session_expiry = 10 })
    assert(c3:connect{ session_expiry = 0 })
    raises("properties need MQTT 5", c3.publish, c3, "t", "x", { properties = { content_type = "a" } })
    c3:close()
  end)

  it("raises on any call to a closed client, and close is idempotent", function()
    local x = assert(mqtt.client{ uri = broker.uri })
    assert.is_true(x:close())
    assert.is_true(x:close())
    raises("publish: the client is closed", x.publish, x, "t", "x")
    raises("connect: the client is closed", x.connect, x, {})
    raises("subscribe: the client is closed", x.subscribe, x, "t", 0)
    assert.are.equal("closed", x:state())
    assert.is_false(x:is_connected())
  end)

  it("raises when a method is called with a dot", function()
    raises("call it as client:publish", c.publish, "t", "x")
  end)

  it("returns nil, message, code for run-time failures", function()
    local x = assert(mqtt.client{ uri = broker.uri, id = helper.uid("rt") })
    local ok, msg, code = x:subscribe("a", 0)
    assert.is_nil(ok)
    assert.are.equal("not_connected", code)
    assert.matches("not connected", msg)
    ok, msg, code = x:disconnect()
    assert.is_nil(ok)
    assert.matches("not connected", msg)
    assert.are.equal("not_connected", code)
    x:close()
  end)

  it("works normally after all of the above", function()
    local got = {}
    c:on("message", function(m) got[#got + 1] = m.payload end)
    local topic = helper.uid("after")
    assert(c:subscribe(topic, 1))
    assert.is_true(assert(c:publish(topic, "still fine", { qos = 1 })):wait(5))
    assert.is_true(helper.eventually(function() return #got == 1 end, 5, mqtt))
    assert.are.equal("still fine", got[1])
  end)

  it("names MQTT reason codes", function()
    assert.are.equal("not authorized", mqtt.reason(0x87))
    assert.are.equal("session taken over", mqtt.reason(0x8E))
    assert.are.equal(0xFFFFFFFF, mqtt.NEVER_EXPIRE)
    assert.matches("^%d+%.%d+%.%d+", mqtt.VERSION)
    assert.matches("^1%.3", mqtt.PAHO_VERSION)
    -- what paho's library says of itself, as it says it
    assert.are.equal(mqtt.PAHO_VERSION, mqtt.PAHO_INFO.Version)
    assert.are.equal(mqtt.PAHO_INFO["Build level"], mqtt.PAHO_BUILD)
    assert.is_string(mqtt.PAHO_INFO["Product name"])
  end)
end)

describe("connect failures say where and why", function()
  local fp = require "faultproxy"
  teardown(function() helper.stop_all() end)

  -- a port where nothing listens: a broker's, after it stopped
  local function closed_port()
    local b = helper.broker()
    b:stop()
    return b.port
  end

  it("names host:port and 'connection refused' for a closed port", function()
    local port = closed_port()
    local cl = assert(mqtt.client{ uri = "tcp://127.0.0.1:" .. port })
    local ok, msg, code = cl:connect{ timeout = 5 }
    assert.is_nil(ok)
    assert.are.equal("network", code)
    assert.matches("^connect failed: 127%.0%.0%.1:" .. port .. ": connection refused", msg)
    assert.are.equal(msg, cl:stats().connect_failure)
    cl:close()
  end)

  it("says 'host not found' for a host name that cannot be resolved", function()
    -- an empty label: glibc refuses the name without asking any DNS server
    local cl = assert(mqtt.client{ uri = "tcp://bad..host:1883" })
    local ok, msg, code = cl:connect{ timeout = 5 }
    assert.is_nil(ok)
    assert.are.equal("network", code)
    assert.matches("^connect failed: bad%.%.host:1883: host not found: cannot resolve 'bad%.%.host'", msg)
    cl:close()
  end)

  it("says the broker closed the connection before its CONNACK when TCP works", function()
    local b = helper.broker()
    local proxy = fp.start(b.port)
    proxy:refuse() -- it accepts each connection and closes it at once
    local cl = assert(mqtt.client{ uri = proxy.uri })
    local ok, msg = cl:connect{ timeout = 5 }
    assert.is_nil(ok)
    assert.matches("^connect failed: 127%.0%.0%.1:" .. proxy.port .. ": the broker accepted the TCP connection "
      .. "and closed it before its CONNACK", msg)
    cl:close()
    proxy:stop()
    b:stop()
  end)

  it("says the same in connect_failed events while reconnecting", function()
    local b = helper.broker()
    local cl, log = helper.recorder{ uri = b.uri, id = helper.uid("cf") }
    assert(cl:connect{ reconnect = { min = 0.1, max = 0.2 } })
    b:stop()
    assert.is_true(helper.eventually(function() return #log.connect_failed > 0 end, 10, mqtt))
    local m = log.connect_failed[1].message
    assert.matches("^connect failed: 127%.0%.0%.1:" .. b.port .. ": connection refused", m)
    assert.are.equal("network", log.connect_failed[1].cause)
    assert.is_number(log.connect_failed[1].retry_in)
    assert.matches("connection refused", cl:stats().connect_failure)
    cl:close()
  end)
end)
