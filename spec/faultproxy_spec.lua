-- Faults on the link between client and broker, injected by tools/faultproxy
-- (spec/support/faultproxy.lua): a clean pass, delays, resets, a half-open link that
-- only keepalive can detect, a half-close and refused connections.
local mqtt = require "paho.mqtt"
local helper = require "helper"
local fp = require "faultproxy"

local broker
local proxies, clients = {}, {}

local function proxy()
  local p = fp.start(broker.port)
  proxies[#proxies + 1] = p
  return p
end

local function client(uri, opts)
  opts = opts or {}
  local c = assert(mqtt.client{ uri = uri, id = opts.id or helper.uid("fp"), version = opts.version })
  clients[#clients + 1] = c
  return c
end

local function connected(uri, connect_opts)
  local c = client(uri)
  local ok, info, code = c:connect(connect_opts or {})
  assert(ok, tostring(info) .. " (" .. tostring(code) .. ")")
  return c, info
end

local function collector(c)
  local got = {}
  c:on("message", function(m) got[#got + 1] = m end)
  return got
end

-- records the first "disconnect" event of c: { reason = ..., at = seconds }
local function watch_disconnect(c)
  local seen = {}
  c:on("disconnect", function(reason)
    if not seen.reason then
      seen.reason = reason
      seen.at = helper.now()
    end
  end)
  return seen
end

local function wait_until(cond, timeout)
  return helper.eventually(cond, timeout, mqtt)
end

describe("faultproxy", function()
  setup(function() broker = helper.broker() end)
  teardown(function() helper.stop_all() end)

  after_each(function()
    for i = #clients, 1, -1 do
      pcall(clients[i].close, clients[i])
      clients[i] = nil
    end
    for i = #proxies, 1, -1 do
      proxies[i]:stop()
      proxies[i] = nil
    end
  end)

  it("passes a connection and a publish round trip through", function()
    local p = proxy()
    assert.is_number(p.port)
    assert.are.equal("tcp://127.0.0.1:" .. p.port, p.uri)
    local sub, info = connected(p.uri)
    assert.matches(":" .. p.port, info.uri, 1, true) -- connected through the proxy
    local pub = connected(p.uri)
    local got = collector(sub)
    local topic = helper.uid("fp-pass")
    assert.are.equal(1, sub:subscribe(topic, 1))
    assert.is_true(assert(pub:publish(topic, "through the proxy", { qos = 1 })):wait(5))
    assert.is_true(wait_until(function() return #got >= 1 end, 5))
    assert.are.equal(topic, got[1].topic)
    assert.are.equal("through the proxy", got[1].payload)
    assert.are.equal("", p:errors())
  end)

  it("delivers 200 QoS 1 messages in order through a 150 ms delay", function()
    local p = proxy()
    local sub = connected(p.uri)
    local pub = connected(p.uri)
    local got = collector(sub)
    local topic = helper.uid("fp-delay")
    assert.are.equal(1, sub:subscribe(topic, 1))
    p:delay(150)
    -- PUBLISH out and PUBACK back are each held 150 ms
    local t0 = helper.now()
    assert.is_true(assert(pub:publish(topic, "0", { qos = 1 })):wait(5))
    assert.is_true(helper.now() - t0 >= 0.25, "the delay did not apply")
    assert.is_true(wait_until(function() return #got >= 1 end, 5))
    local tokens = {}
    for i = 1, 200 do tokens[i] = assert(pub:publish(topic, tostring(i), { qos = 1 })) end
    local deadline = helper.now() + 30
    for i = 1, 200 do
      local ok, msg = tokens[i]:wait(math.max(0.1, deadline - helper.now()))
      assert(ok, "publish " .. i .. ": " .. tostring(msg))
    end
    assert.is_true(wait_until(function() return #got >= 201 end, 30))
    mqtt.dispatch(0.5) -- nothing more (no duplicates) arrives
    assert.are.equal(201, #got)
    for i = 0, 200 do
      assert.are.equal(tostring(i), got[i + 1].payload)
      assert.is_false(got[i + 1].dup)
    end
  end)

  it("reports a reset as a network disconnect, and later connections pass", function()
    local p = proxy()
    local c = connected(p.uri)
    local seen = watch_disconnect(c)
    p:reset()
    assert.is_true(wait_until(function() return seen.reason ~= nil end, 5), "no disconnect event")
    assert.are.equal("network", seen.reason.cause)
    assert.is_string(seen.reason.message)
    assert.is_false(seen.reason.reconnecting)
    assert.is_false(c:is_connected())
    -- a reset does not carry over to new connections
    local c2 = connected(p.uri)
    assert.is_true(c2:is_connected())
  end)

  it("detects a stalled (half-open) link by keepalive", function()
    local p = proxy()
    local keepalive = 1
    local c = connected(p.uri, { keepalive = keepalive })
    local seen = watch_disconnect(c)
    mqtt.dispatch(0.3)
    assert.is_nil(seen.reason)
    p:stall()
    local t0 = helper.now()
    -- (under valgrind the event can run seconds late, as in keepalive_spec:
    -- 3.65 s here in one CI run with four suites on two cores)
    local limit = 2.5 * keepalive + 1 + (os.getenv("PMQ_VALGRIND") and 3 or 0)
    assert.is_true(wait_until(function() return seen.reason ~= nil end, limit + 2), "no disconnect event")
    local took = seen.at - t0
    assert.is_true(took <= limit, ("detected after %.2f s, more than %.1f s"):format(took, limit))
    assert.are.equal("keepalive", seen.reason.cause,
      ("cause %s (%s) after %.2f s"):format(tostring(seen.reason.cause), tostring(seen.reason.message), took))
  end)

  it("reports a half-close from the broker's side as a network disconnect", function()
    local p = proxy()
    local c = connected(p.uri)
    local seen = watch_disconnect(c)
    p:halfclose()
    assert.is_true(wait_until(function() return seen.reason ~= nil end, 5), "no disconnect event")
    assert.are.equal("network", seen.reason.cause)
  end)

  it("fails a connect to a refusing proxy with nil, message, code, then accepts again", function()
    local p = proxy()
    p:refuse()
    local c = client(p.uri)
    local t0 = helper.now()
    local ok, msg, code = c:connect{ timeout = 5 }
    local took = helper.now() - t0
    assert.is_nil(ok)
    assert.is_string(msg)
    assert.is_string(code)
    assert.is_true(took < 4.5, ("connect took %.2f s"):format(took))
    assert.is_false(c:is_connected())
    p:accept()
    local ok2, info = c:connect{ timeout = 5 }
    assert(ok2, info)
    assert.is_true(c:is_connected())
  end)
end)
