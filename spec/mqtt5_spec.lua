-- MQTT 5 features against a real mosquitto: request/response, topic
-- aliases, the broker's Server Keep Alive.
local helper = require "helper"
local mqtt = require "paho.mqtt"

local function until_(cond, timeout)
  return helper.eventually(cond, timeout, mqtt)
end

describe("MQTT 5", function()
  local b
  setup(function() b = helper.broker() end)
  teardown(function() helper.stop_all() end)

  -- a responder that answers "svc/echo" requests with the payload upper-cased
  local function responder()
    local r = assert(mqtt.client { uri = b.uri, id = helper.uid("resp") })
    r:on("message", function(m)
      local p = m.properties or {}
      if p.response_topic then
        r:publish(p.response_topic, m.payload:upper(), { qos = 1,
          properties = { correlation_data = p.correlation_data } })
      end
    end)
    assert(r:connect())
    assert(r:subscribe("svc/echo", 1))
    return r
  end

  it("request() waits for the matching response (responder in the same script)", function()
    local r = responder()
    local c = assert(mqtt.client { uri = b.uri, id = helper.uid("req") })
    local seen = 0
    c:on("message", function() seen = seen + 1 end)
    assert(c:connect())
    local msg, err = c:request("svc/echo", "hello", { timeout = 5 })
    assert.is_table(msg, err)
    assert.are.equal("HELLO", msg.payload)
    assert.is_string(msg.properties.correlation_data)
    -- several in a row, each gets its own answer
    for i = 1, 5 do
      local m = assert(c:request("svc/echo", "n" .. i, { timeout = 5 }))
      assert.are.equal("N" .. i, m.payload)
    end
    assert.are.equal(0, seen) -- responses go to request(), not to the message handler
    c:close()
    r:close()
  end)

  it("request() works from inside a handler, which yields while others run", function()
    local r = responder()
    local c = assert(mqtt.client { uri = b.uri, id = helper.uid("reqh") })
    local answers = {}
    c:on("message", function(m)
      if m.topic == "go" then
        local resp, err = c:request("svc/echo", m.payload, { timeout = 5 })
        answers[#answers + 1] = resp and resp.payload or err
      end
    end)
    assert(c:connect())
    assert(c:subscribe("go", 1))
    assert(c:publish("go", "a", { qos = 1 }):wait(5))
    assert(c:publish("go", "b", { qos = 1 }):wait(5))
    assert.is_true(until_(function() return #answers == 2 end, 5))
    table.sort(answers)
    assert.are.same({ "A", "B" }, answers)
    c:close()
    r:close()
  end)

  it("request() times out with a clear message when nobody answers", function()
    local c = assert(mqtt.client { uri = b.uri, id = helper.uid("reqt") })
    assert(c:connect())
    local msg, err, code = c:request("svc/nobody", "x", { timeout = 0.3 })
    assert.is_nil(msg)
    assert.are.equal("timeout", code)
    assert.truthy(err:find("no response", 1, true), err)
    c:close()
  end)

  it("request() is MQTT 5 only", function()
    local c = assert(mqtt.client { uri = b.uri, version = 4 })
    assert.has_error(function() c:request("a", "b") end,
      "request: MQTT 5 only (response topic and correlation data are MQTT 5 properties)")
    c:close()
  end)

  it("sends with a topic alias: the alias alone names the topic after the first publish", function()
    local sub = assert(mqtt.client { uri = b.uri, id = helper.uid("asub") })
    local got = {}
    sub:on("message", function(m) got[#got + 1] = m.topic .. "=" .. m.payload end)
    assert(sub:connect())
    assert(sub:subscribe("alias/long/topic/name", 1))
    local pub = assert(mqtt.client { uri = b.uri, id = helper.uid("apub") })
    local _, info = assert(pub:connect())
    assert.is_true((info.properties.topic_alias_maximum or 0) >= 1)
    assert(pub:publish("alias/long/topic/name", "1", { qos = 1, properties = { topic_alias = 1 } }):wait(5))
    assert(pub:publish("", "2", { qos = 1, properties = { topic_alias = 1 } }):wait(5))
    assert.is_true(until_(function() return #got == 2 end, 5))
    assert.are.same({ "alias/long/topic/name=1", "alias/long/topic/name=2" }, got)
    sub:close()
    pub:close()
  end)

  it("adopts the broker's Server Keep Alive when it is shorter than the keepalive asked for", function()
    local bk = helper.broker { config = { "max_keepalive 10" } }
    local c = assert(mqtt.client { uri = bk.uri, id = helper.uid("ska") })
    local connects = 0
    c:on("connect", function() connects = connects + 1 end)
    local ok, info = c:connect { keepalive = 60 }
    assert.is_true(ok, info)
    assert.are.equal(10, info.properties.server_keep_alive)
    assert.is_false(info.session_present)
    local s = c:stats()
    assert.are.equal(10, s.keepalive)          -- paho now pings every 10 s
    assert.are.equal(10, s.server_keep_alive)
    assert.are.equal(2.5 * 10 + 1, s.detect_within)
    mqtt.sleep(0.1)
    assert.are.equal(1, connects)             -- the program saw one connect
    assert.truthy(helper.read(bk.dir .. "/mosquitto.log"):find("k10)", 1, true))
    assert(c:subscribe("ska/t", 1))
    c:close()
    bk:stop()
  end)
end)

describe("subscription options and refusals", function()
  local b
  setup(function() b = helper.broker() end)
  teardown(function() helper.stop_all() end)

  local function client(opts)
    opts = opts or {}
    opts.uri = opts.uri or b.uri
    opts.id = opts.id or helper.uid("so")
    local c = assert(mqtt.client(opts))
    local got = {}
    c:on("message", function(m) got[#got + 1] = m end)
    assert(c:connect())
    return c, got
  end

  it("no_local: a client does not get its own publishes back", function()
    local c, got = client()
    local other = client()
    assert(c:subscribe("so/nl", { qos = 1, no_local = true }))
    assert(c:publish("so/nl", "mine", { qos = 1 }):wait(5))
    assert(other:publish("so/nl", "theirs", { qos = 1 }):wait(5))
    assert.is_true(until_(function() return #got >= 1 end, 5))
    mqtt.sleep(0.3)
    assert.are.equal(1, #got)
    assert.are.equal("theirs", got[1].payload)
    c:close()
    other:close()
  end)

  it("retain_as_published keeps the retain flag on live messages; without it the flag is cleared", function()
    local plain, got_plain = client()
    local rap, got_rap = client()
    assert(plain:subscribe("so/rap", 1))
    assert(rap:subscribe("so/rap", { qos = 1, retain_as_published = true }))
    local p = client()
    assert(p:publish("so/rap", "r", { qos = 1, retain = true }):wait(5))
    assert.is_true(until_(function() return #got_plain == 1 and #got_rap == 1 end, 5))
    assert.is_false(got_plain[1].retain)
    assert.is_true(got_rap[1].retain)
    assert(p:publish("so/rap", "", { qos = 1, retain = true }):wait(5)) -- clear it
    plain:close()
    rap:close()
    p:close()
  end)

  it("retain_handling 0 sends retained messages on every subscribe, 1 only on a new one, 2 never", function()
    local p = client()
    assert(p:publish("so/rh", "kept", { qos = 1, retain = true }):wait(5))
    local counts = {}
    for rh = 0, 2 do
      local c, got = client()
      assert(c:subscribe("so/rh", { qos = 1, retain_handling = rh }))
      assert(c:subscribe("so/rh", { qos = 1, retain_handling = rh })) -- the same subscription again
      mqtt.sleep(0.4)
      counts[rh + 1] = #got
      c:close()
    end
    assert.are.same({ 2, 1, 0 }, counts)
    assert(p:publish("so/rh", "", { qos = 1, retain = true }):wait(5))
    p:close()
  end)

  it("a refused subscription returns nil, message, 'refused' (a broker that refuses: aedes)", function()
    local aedes = require "aedes"
    local s = aedes.start { deny_prefix = "secret/" }
    local c = assert(mqtt.client { uri = s.uri, version = 4, id = helper.uid("deny") })
    local ok, err = c:connect()
    assert.is_true(ok, err)
    local granted, msg, code = c:subscribe("secret/x", 1)
    assert.is_nil(granted)
    assert.are.equal("refused", code)
    assert.are.equal("subscribe refused: the broker returned failure 0x80 for filter 'secret/x'", msg)
    -- a list with one refused filter is refused as a whole, naming it
    granted, msg, code = c:subscribe { { "open/a", 1 }, { "secret/y", 0 } }
    assert.is_nil(granted)
    assert.are.equal("refused", code)
    assert.truthy(msg:find("'secret/y'", 1, true), msg)
    -- and the client goes on
    assert.are.equal(1, c:subscribe("open/b", 1))
    c:close()
    s:stop()
  end)
end)

describe("a broker with Receive Maximum 65535", function()
  teardown(function() helper.stop_all() end)

  it("takes thousands of QoS 1 publishes while paho cannot write (no -12 from paho's buffer limit)", function()
    -- paho counts every unwritten request against maxBufferedMessages,
    -- connected or not; that limit was the offline_queue (1000 by default),
    -- so once paho had 1000 publishes it could not write yet, publish()
    -- returned "No more messages can be buffered (paho code -12)"
    local fp = require "faultproxy"
    local b = helper.broker { config = { "max_inflight_messages 0", "max_queued_messages 0" } }
    local proxy = fp.start(b.port)
    local c = assert(mqtt.client { uri = proxy.uri, id = helper.uid("rm") })
    assert(c:connect {})
    proxy:stall() -- nothing gets through: paho's writes stop once the socket is full
    local toks, big = {}, ("x"):rep(10000) -- 30 MB: more than the proxy and the sockets buffer
    for i = 1, 3000 do
      local tok, err = c:publish("rm/t", big, { qos = 1 })
      assert.is_truthy(tok, err)
      toks[i] = tok
      if i % 100 == 0 then mqtt.dispatch(0.01) end
    end
    proxy:pass()
    for i = 1, #toks do assert(toks[i]:wait(30)) end
    c:close()
    proxy:stop()
    b:stop()
  end)
end)
