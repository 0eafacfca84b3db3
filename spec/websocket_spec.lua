-- MQTT over WebSockets (ws:// and wss://) against aedes, a Node.js broker
-- (spec/support/aedes.lua installs it with npm into build/node on first use):
-- Debian's mosquitto 2.0.11 has no websockets. aedes speaks MQTT 3.1.1, so
-- the clients use version = 4.
local helper = require "helper"
local aedes = require "aedes"
local tls = require "tls"
local mqtt = require "paho.mqtt"

local function until_(cond, timeout)
  return helper.eventually(cond, timeout, mqtt)
end

local function round_trip(uri, connect_opts)
  local c = assert(mqtt.client { uri = uri, id = helper.uid("ws"), version = 4 })
  local ok, info = c:connect(connect_opts or {})
  assert.is_true(ok, info)
  assert.are.equal(uri, info.uri)
  assert.is_true(c:is_connected())
  local topic = helper.uid("ws/t")
  local got = {}
  c:on("message", function(m) got[#got + 1] = m end)
  assert.are.equal(1, (c:subscribe(topic, 1)))
  for qos = 0, 2 do
    assert(c:publish(topic, "over websockets qos " .. qos, { qos = qos }):wait(5))
  end
  assert.is_true(until_(function() return #got >= 3 end, 5), "got " .. #got .. " of 3")
  local payloads = {}
  for i, m in ipairs(got) do payloads[i] = m.payload end
  table.sort(payloads)
  assert.are.same({ "over websockets qos 0", "over websockets qos 1", "over websockets qos 2" }, payloads)
  assert.are.equal(topic, got[1].topic)
  return c
end

describe("websockets", function()
  local server
  setup(function() server = aedes.start() end)
  teardown(function()
    if server then server:stop() end
    helper.stop_all()
  end)

  it("connects with ws://, subscribes, publishes and receives (MQTT 3.1.1)", function()
    local c = round_trip(server.uri)
    assert(c:disconnect())
    c:close()
  end)

  it("carries a 64 KiB binary payload intact", function()
    local c = assert(mqtt.client { uri = server.uri, id = helper.uid("wsbin"), version = 4 })
    assert(c:connect {})
    local topic = helper.uid("ws/bin")
    local got
    c:on("message", function(m) got = m end)
    assert(c:subscribe(topic, 1))
    local payload = "\0\1\2\255 binary \0 and a 64 KiB tail " .. ("x"):rep(65536)
    assert(c:publish(topic, payload, { qos = 1 }):wait(5))
    assert.is_true(until_(function() return got ~= nil end, 5))
    assert.are.equal(#payload, #got.payload)
    assert.is_true(got.payload == payload)
    c:close()
  end)

  -- a WebSocket connect to aedes timed out once (5 s, "TCP connect
  -- timeout") in a loaded CI run: 10 s, and one more try after a timeout
  local function connect_ws(c)
    local ok, err, code = c:connect { timeout = 10 }
    if not ok and code == "timeout" then
      print("\n    a WebSocket connect timed out (" .. tostring(err) .. "); trying once more")
      ok, err, code = c:connect { timeout = 10 }
    end
    return ok, err, code
  end

  -- paho.mqtt.c keeps WebSocket receive state per process: two WebSocket
  -- connections at once corrupt each other, so the binding allows one
  it("lets one client at a time hold a WebSocket connection; a second gets 'busy'", function()
    local aid = helper.uid("wsa")
    local a = assert(mqtt.client { uri = server.uri, id = aid, version = 4 })
    local b = assert(mqtt.client { uri = server.uri, id = helper.uid("wsb"), version = 4 })
    assert(a:connect {})
    local ok, msg, code = b:connect { timeout = 2 }
    assert.is_nil(ok)
    assert.are.equal("busy", code)
    assert.matches("client '" .. aid .. "' of this process holds a WebSocket connection", msg, 1, true)
    assert.is_false(b:is_connected())
    -- the first is untouched, and a TCP client may connect meanwhile
    local topic = helper.uid("ws/one")
    local got
    a:on("message", function(m) got = m end)
    assert(a:subscribe(topic, 1))
    assert(a:publish(topic, "still here", { qos = 1 }):wait(5))
    assert.is_true(until_(function() return got ~= nil end, 5))
    assert.are.equal("still here", got.payload)
    local broker = helper.broker()
    local t = assert(mqtt.client { uri = broker.uri, id = helper.uid("tcp") })
    assert(t:connect {})
    t:close()
    -- once the first lets go, the second connects
    assert(a:disconnect())
    assert(connect_ws(b))
    assert.is_true(b:is_connected())
    -- and a client whose connection ended (closed here) frees it too
    b:close()
    assert(connect_ws(a))
    a:close()
  end)

  it("notices when the websocket server goes away", function()
    local s2 = aedes.start()
    local c = assert(mqtt.client { uri = s2.uri, id = helper.uid("wsgone"), version = 4 })
    local lost
    c:on("disconnect", function(r) lost = r end)
    assert(c:connect { keepalive = 5 })
    s2:stop()
    assert.is_true(until_(function() return lost ~= nil end, 10), "no disconnect event")
    assert.are.equal("network", lost.cause)
    assert.is_false(c:is_connected())
    c:close()
  end)

  describe("wss://", function()
    local secure, pki
    setup(function()
      pki = tls.pki()
      secure = aedes.start { tls = { cert = pki.server_crt, key = pki.server_key } }
    end)
    teardown(function() if secure then secure:stop() end end)

    it("connects with tls.ca_file and round-trips", function()
      local c = round_trip(secure.uri, { tls = { ca_file = pki.ca } })
      c:close()
    end)

    it("verifies the server certificate by default", function()
      local c = assert(mqtt.client { uri = secure.uri, id = helper.uid("wssno"), version = 4 })
      local ok, msg, code = c:connect { timeout = 5, tls = { ca_file = pki.other_ca } }
      c:close()
      mqtt.sleep(0.3) -- see tls_spec: a TLS connect right after a failed one may fail
      assert.is_nil(ok)
      assert.are.equal("network", code)
      assert.is_string(msg)
    end)
  end)
end)
