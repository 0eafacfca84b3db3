-- TLS against real mosquitto brokers with a TLS listener on 127.0.0.1, using
-- a throwaway PKI made with `openssl` (spec/support/tls.lua): server verification
-- (on by default), host names, client certificates, encrypted keys, CA
-- directories, cipher lists and ALPN.
local helper = require "helper"
local tls = require "tls"
local mqtt = require "paho.mqtt"

local function until_(cond, timeout)
  return helper.eventually(cond, timeout, mqtt)
end

-- subscribe, publish QoS 1 to itself, receive: the connection carries MQTT
local function round_trip(c)
  local topic = helper.uid("tls/rt")
  local got
  c:on("message", function(m) got = m end)
  assert(c:subscribe(topic, 1))
  assert(c:publish(topic, "over tls", { qos = 1 }):wait(5))
  assert.is_true(until_(function() return got ~= nil end, 5), "no message came back")
  assert.are.equal("over tls", got.payload)
  assert.are.equal(topic, got.topic)
end

-- connect timeout: a failing TLS handshake under valgrind, with other
-- suites beside it, once took more than 5 s (CI, 2026-11-30)
local CONNECT_T = os.getenv("PMQ_VALGRIND") and 20 or 5

-- connect must fail: returns message, code
local function refused(uri, opts, version)
  local c = assert(mqtt.client { uri = uri, id = helper.uid("tlsno"), version = version })
  opts.timeout = opts.timeout or CONNECT_T
  local ok, msg, code = c:connect(opts)
  c:close()
  -- a TLS connect started right after another client's failed TLS connect
  -- and close() sometimes fails with "socket error" (paho 1.3.12): a bug of
  -- its own, shown by the test "connects right after another client's
  -- failed TLS connect"; the pause keeps the other tests independent of it
  mqtt.sleep(0.3)
  assert.is_nil(ok, "connect succeeded where it must fail")
  assert.is_string(msg)
  return msg, code
end

local function lua_cmd()
  return os.getenv("PMQ_LUA") or "lua5.4"
end

describe("tls", function()
  local pki, b
  setup(function()
    pki = tls.pki()
    b = tls.broker()
  end)
  teardown(function() helper.stop_all() end)

  for _, version in ipairs { 5, 4 } do
    it("connects with ssl:// and tls.ca_file and round-trips a message (MQTT " .. version .. ")", function()
      local c = assert(mqtt.client { uri = b.tls_uri, id = helper.uid("tls"), version = version })
      local ok, info = c:connect { tls = { ca_file = pki.ca } }
      assert.is_true(ok, info)
      assert.are.equal(b.tls_uri, info.uri)
      assert.is_true(c:is_connected())
      round_trip(c)
      c:close()
    end)
  end

  it("connects with mqtts:// the same way, and info.uri is the URI given", function()
    local uri = "mqtts://127.0.0.1:" .. b.tls_port
    local c = assert(mqtt.client { uri = uri, id = helper.uid("mqtts") })
    local ok, info = c:connect { tls = { ca_file = pki.ca } }
    assert.is_true(ok, info)
    round_trip(c)
    -- KNOWN FAILURE (lua/paho/mqtt.lua): info.uri comes back as
    -- "ssl://127.0.0.1:<port>", the normalised form, not the URI the
    -- program gave (docs/api.md: "the URI of the server that answered, one
    -- of the client's uri/uris"). The fix is in the report of issue 6.
    assert.are.equal(uri, info.uri)
    c:close()
  end)

  it("talks TLS with a plain client on the same broker (one broker, two listeners)", function()
    local c = assert(mqtt.client { uri = b.tls_uri, id = helper.uid("tlsx") })
    assert(c:connect { tls = { ca_file = pki.ca } })
    local topic = helper.uid("tls/x")
    local got
    c:on("message", function(m) got = m end)
    assert(c:subscribe(topic, 1))
    local p = assert(mqtt.client { uri = b.uri, id = helper.uid("plain") })
    assert(p:connect {})
    assert(p:publish(topic, "from plain", { qos = 1 }):wait(5))
    assert.is_true(until_(function() return got ~= nil end, 5))
    assert.are.equal("from plain", got.payload)
    p:close()
    c:close()
  end)

  it("verifies the server by default: no tls table and a CA the system does not trust fails", function()
    local msg, code = refused(b.tls_uri, {})
    assert.are.equal("network", code)
    -- KNOWN FAILURE (src/): paho 1.3.12 says only
    -- "connect failed: TCP/TLS connect failure (paho code -1)"; the binding
    -- must hand paho an ssl_error_cb to learn OpenSSL's reason.
    assert.truthy(msg:find("certificate verify failed", 1, true), msg)
  end)

  it("fails with a wrong CA, with a message that says the certificate was not verified", function()
    local msg, code = refused(b.tls_uri, { tls = { ca_file = pki.other_ca } })
    assert.are.equal("network", code)
    -- KNOWN FAILURE (src/): see above; today's message is
    -- "connect failed: TCP/TLS connect failure (paho code -1)"
    assert.truthy(msg:find("certificate verify failed", 1, true), msg)
    assert.truthy(msg:find("ca_file", 1, true), msg) -- says which option to look at
  end)

  it("connects with a wrong CA when verify = false", function()
    local c = assert(mqtt.client { uri = b.tls_uri, id = helper.uid("nover") })
    local ok, info = c:connect { tls = { ca_file = pki.other_ca, verify = false } }
    assert.is_true(ok, info)
    round_trip(c)
    c:close()
  end)

  it("fails with a CA file that does not exist, naming the option", function()
    local msg, code = refused(b.tls_uri, { tls = { ca_file = pki.dir .. "/no-such-ca.crt" } })
    assert.are.equal("network", code)
    -- KNOWN FAILURE (src/): today "connect failed: TCP/TLS connect failure (paho code -1)"
    assert.truthy(msg:find("ca_file", 1, true), msg)
  end)

  it("connects with tls.ca_path (a hashed directory) instead of ca_file", function()
    local c = assert(mqtt.client { uri = b.tls_uri, id = helper.uid("capath") })
    local ok, info = c:connect { tls = { ca_path = pki.ca_path } }
    assert.is_true(ok, info)
    round_trip(c)
    c:close()
  end)

  it("fails on a tls.ciphers list that matches nothing, and connects with one that does", function()
    local msg, code = refused(b.tls_uri, { tls = { ca_file = pki.ca, ciphers = "NO-SUCH-CIPHER" } })
    assert.are.equal("network", code)
    -- paho 1.3.12 takes OpenSSL's only error ("no cipher match") off the
    -- queue before its error callback runs, so the binding cannot quote it;
    -- the message must at least name the option.
    -- KNOWN FAILURE (src/): today "connect failed: TCP/TLS connect failure (paho code -1)"
    assert.truthy(msg:find("tls.ciphers", 1, true), msg)
    -- (TLS 1.3 suites are not chosen by the list; it applies to TLS <= 1.2)
    local c = assert(mqtt.client { uri = b.tls_uri, id = helper.uid("ciph") })
    local ok, info = c:connect { tls = { ca_file = pki.ca, ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256" } }
    assert.is_true(ok, info)
    c:close()
  end)

  it("connects right after another client's failed TLS connect (30 times)", function()
    -- KNOWN FAILURE (intermittent; paho 1.3.12, worked around in
    -- src/quirks.c): when a client whose TLS handshake failed (here:
    -- certificate verify failed) is closed and a new client connects over
    -- TLS at once, that connect sometimes fails within a millisecond, before
    -- any handshake, with "connect failed: socket error (paho code -1)": 0
    -- to 4 of 30 in our runs (8 and 11 in 180). Not with a pause after
    -- close(), nor while the failed client stays open, nor with plain TCP.
    -- paho's receive thread seems to hand results of a poll() made for the
    -- destroyed client's socket to the new socket with the same descriptor;
    -- a connect that waits until 50 ms have passed since the last destroy
    -- made it go away (0 in 180).
    local keep = assert(mqtt.client { uri = b.uri, id = helper.uid("keep") })
    assert(keep:connect {}) -- paho's threads keep running, as in a real program
    local failures = {}
    for i = 1, 30 do
      local a = assert(mqtt.client { uri = b.tls_uri, id = helper.uid("bad") })
      local ok = a:connect { tls = { ca_file = pki.other_ca }, timeout = CONNECT_T }
      a:close()
      assert.is_nil(ok)
      local c = assert(mqtt.client { uri = b.tls_uri, id = helper.uid("good") })
      local ok2, msg = c:connect { tls = { ca_file = pki.ca }, timeout = CONNECT_T }
      if not ok2 then failures[#failures + 1] = ("#%d: %s"):format(i, msg) end
      c:close()
    end
    keep:close()
    assert.are.same({}, failures)
  end)

  describe("host name", function()
    local other
    setup(function()
      -- a certificate from the right CA, but for other.example only
      other = tls.broker { cert = pki.other_crt, key = pki.other_key }
    end)

    for _, version in ipairs { 5, 4 } do
      it("fails when the certificate is for another name and verify is on (MQTT " .. version .. ")", function()
        local msg, code = refused(other.tls_uri, { tls = { ca_file = pki.ca } }, version)
        assert.are.equal("network", code)
        -- KNOWN FAILURE (src/): paho checks the name after the handshake
        -- and reports only "connect failed: TCP/TLS connect failure (paho
        -- code -1)", with no OpenSSL error to forward; the binding must say
        -- what the likely cause is.
        assert.truthy(msg:find("host name", 1, true), msg)
      end)
    end

    it("connects to the same broker with verify = false", function()
      local c = assert(mqtt.client { uri = other.tls_uri, id = helper.uid("host") })
      local ok, info = c:connect { tls = { ca_file = pki.ca, verify = false } }
      assert.is_true(ok, info)
      round_trip(c)
      c:close()
    end)

    it("verify = true is what the default does (the same failure)", function()
      local _, code = refused(other.tls_uri, { tls = { ca_file = pki.ca, verify = true } })
      assert.are.equal("network", code)
    end)
  end)

  describe("client certificates (require_certificate true)", function()
    local rb
    setup(function() rb = tls.broker { require_certificate = true } end)

    it("connects with cert_file and key_file", function()
      local c = assert(mqtt.client { uri = rb.tls_uri, id = helper.uid("cc") })
      local ok, info = c:connect { tls = { ca_file = pki.ca, cert_file = pki.client_crt, key_file = pki.client_key } }
      assert.is_true(ok, info)
      round_trip(c)
      c:close()
    end)

    it("connects with an encrypted key and key_password", function()
      local c = assert(mqtt.client { uri = rb.tls_uri, id = helper.uid("ccenc") })
      local ok, info = c:connect { tls = { ca_file = pki.ca, cert_file = pki.client_crt,
        key_file = pki.client_key_enc, key_password = pki.key_password } }
      assert.is_true(ok, info)
      round_trip(c)
      c:close()
    end)

    it("is refused without a client certificate, with a hint", function()
      local msg, code = refused(rb.tls_uri, { tls = { ca_file = pki.ca } })
      assert.are.equal("network", code)
      -- KNOWN FAILURE (src/): today "connect failed: TCP connect completion
      -- failure (paho code -1)"
      assert.truthy(msg:find("client certificate", 1, true), msg)
    end)

    it("fails with a wrong key_password, naming the option, and never shows the pass phrase", function()
      local wrong = "not-the-" .. pki.key_password
      local msg, code = refused(rb.tls_uri, { tls = { ca_file = pki.ca, cert_file = pki.client_crt,
        key_file = pki.client_key_enc, key_password = wrong } })
      assert.are.equal("network", code)
      assert.falsy(msg:find(wrong, 1, true), msg)
      -- KNOWN FAILURE (src/): today "connect failed: TCP/TLS connect failure (paho code -1)"
      assert.truthy(msg:find("key_password", 1, true), msg)
    end)

    it("fails without key_password for an encrypted key, and never asks on the terminal", function()
      -- paho leaves OpenSSL's default pass phrase callback in place when no
      -- password is given: it prompts "Enter PEM pass phrase:" on the
      -- controlling terminal and blocks. Run the connect in a child process
      -- on a pseudo terminal (script(1)), bounded by timeout(1).
      local child = helper.tmpdir() .. "/tls-nopass.lua"
      local f = assert(io.open(child, "w"))
      f:write(([[
local mqtt = require "paho.mqtt"
local c = mqtt.client{ uri = %q }
local ok, msg, code = c:connect{ timeout = 3, keepalive = 0,
  tls = { ca_file = %q, cert_file = %q, key_file = %q } }
print("RESULT", tostring(ok), code, msg)
c:close()
]]):format(rb.tls_uri, pki.ca, pki.client_crt, pki.client_key_enc))
      f:close()
      local out = helper.tmpdir() .. "/tls-nopass.out"
      local t0 = helper.now()
      helper.sh(("timeout 15 script -qec %s /dev/null </dev/null >%s 2>&1"):format(
        ("'%s %s'"):format(lua_cmd(), child), out))
      local text = helper.read(out) or ""
      -- KNOWN FAILURE (src/): today the child prints "Enter PEM pass phrase:"
      -- and hangs until timeout(1) kills it after 15 s
      assert.falsy(text:find("pass phrase", 1, true), text)
      assert.truthy(text:find("RESULT\tnil\tnetwork", 1, true), text)
      assert.is_true(helper.now() - t0 < 10, text)
    end)
  end)

  describe("ALPN", function()
    -- mosquitto 2.0.11 has no ALPN setting for its listeners (only
    -- bridge_alpn for bridges): it ignores the extension and the connect
    -- works. What the client offers is checked with `openssl s_server
    -- -alpn`, which prints the protocols a client advertised.
    it("connects to mosquitto with tls.alpn = {'mqtt'}", function()
      local c = assert(mqtt.client { uri = b.tls_uri, id = helper.uid("alpn") })
      local ok, info = c:connect { tls = { ca_file = pki.ca, alpn = { "mqtt" } } }
      assert.is_true(ok, info)
      round_trip(c)
      c:close()
    end)

    it("offers the protocols of tls.alpn in its ClientHello", function()
      local port = tls.free_port()
      local out = helper.tmpdir() .. "/s_server-" .. port .. ".out"
      -- at most 20 s, one connection (-www: answers by itself, needs no stdin)
      helper.sh(("timeout 20 openssl s_server -accept 127.0.0.1:%d -naccept 1 -www -cert %s -key %s -alpn mqtt,x-other"
        .. " </dev/null >%s 2>&1 & echo $! >%s.pid"):format(port, pki.server_crt, pki.server_key, out, out))
      assert.is_true(until_(function() return (helper.read(out) or ""):find("ACCEPT", 1, true) ~= nil end, 5),
        helper.read(out))
      local c = assert(mqtt.client { uri = "ssl://127.0.0.1:" .. port, id = helper.uid("alpn2") })
      -- s_server speaks no MQTT: the TLS handshake is all that matters
      c:connect { timeout = 3, keepalive = 0, tls = { ca_file = pki.ca, alpn = { "mqtt", "x-test" } } }
      c:close()
      local text
      until_(function()
        text = helper.read(out) or ""
        return text:find("ALPN protocols advertised by the client", 1, true) ~= nil
      end, 5)
      local pid = tonumber((helper.read(out .. ".pid") or ""):match("%d+"))
      if pid then helper.sh("kill " .. pid .. " 2>/dev/null") end
      assert.truthy(text:find("ALPN protocols advertised by the client: mqtt, x-test", 1, true), text)
      assert.truthy(text:find("ALPN protocols selected: mqtt", 1, true), text)
    end)
  end)
end)
