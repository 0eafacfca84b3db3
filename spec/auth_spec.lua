-- Authentication and authorization against a real mosquitto 2.0.11 with a
-- password file (mosquitto_passwd -b), allow_anonymous false and an ACL file.
local helper = require "helper"
local mqtt = require "paho.mqtt"

local function until_(cond, timeout)
  return helper.eventually(cond, timeout, mqtt)
end

-- every string reachable from v (keys and values), for leak checks
local function strings(v, out, seen)
  out, seen = out or {}, seen or {}
  if type(v) == "string" then
    out[#out + 1] = v
  elseif type(v) == "table" and not seen[v] then
    seen[v] = true
    for k, x in pairs(v) do
      strings(k, out, seen)
      strings(x, out, seen)
    end
  end
  return out
end

local function assert_no_leak(secret, what, v)
  for _, s in ipairs(strings(v)) do
    assert.falsy(s:find(secret, 1, true), ("%s shows the password: %s"):format(what, s))
  end
end

-- MQTT 5 reason codes a broker may refuse bad credentials with
local function refused_v5(msg)
  return msg:find("0x86 bad user name or password", 1, true) or msg:find("0x87 not authorized", 1, true)
end

-- MQTT 3.1.1 CONNACK return codes 4 and 5
local function refused_v4(msg)
  return msg:find("return code 4 bad user name or password", 1, true)
    or msg:find("return code 5 not authorized", 1, true)
end

describe("auth", function()
  local b, users
  setup(function()
    local dir = helper.tmpdir() .. "/auth"
    assert(helper.sh("mkdir -p " .. dir))
    users = { alice = "pw-" .. helper.uid("alice"), bob = "pw-" .. helper.uid("bob") }
    assert.is_true(helper.sh(("mosquitto_passwd -b -c %s/passwd alice %s >/dev/null 2>&1"):format(dir, users.alice)))
    assert.is_true(helper.sh(("mosquitto_passwd -b %s/passwd bob %s >/dev/null 2>&1"):format(dir, users.bob)))
    local f = assert(io.open(dir .. "/acl", "w"))
    f:write([[
user alice
topic readwrite allowed/#
topic read secret/#

user bob
topic readwrite allowed/#
topic write secret/#
topic write hidden/#
topic read sink/#
]])
    f:close()
    -- helper.broker writes "allow_anonymous true" first; the later line wins
    b = helper.broker { config = {
      "allow_anonymous false",
      "password_file " .. dir .. "/passwd",
      "acl_file " .. dir .. "/acl",
    } }
  end)
  teardown(function() helper.stop_all() end)

  local function client(version, id)
    return assert(mqtt.client { uri = b.uri, id = id or helper.uid("auth"), version = version })
  end

  for _, version in ipairs { 5, 4 } do
    describe("MQTT " .. version, function()
      it("connects with the right user name and password", function()
        local c = client(version)
        local ok, info = c:connect { username = "alice", password = users.alice }
        assert.is_true(ok, info)
        assert.is_true(c:is_connected())
        assert_no_leak(users.alice, "tostring(client)", tostring(c))
        assert_no_leak(users.alice, "client:stats()", c:stats())
        c:close()
      end)

      it("is refused without credentials (allow_anonymous false)", function()
        local c = client(version)
        local ok, msg, code = c:connect {}
        c:close()
        assert.is_nil(ok)
        -- KNOWN FAILURE on MQTT 5 (lua/paho/mqtt.lua): today
        -- "connect failed: CONNACK return code (paho code 135)", code "network"
        assert.are.equal("refused", code, msg)
        if version == 5 then
          assert.truthy(refused_v5(msg), msg)
        else
          assert.truthy(refused_v4(msg), msg)
        end
      end)

      it("is refused with a wrong password, says why, and never shows the password", function()
        local wrong = "wrong-" .. users.alice
        local c = client(version, "auth-" .. helper.uid("wrong"))
        local failed = {}
        c:on("connect_failed", function(r) failed[#failed + 1] = r end)
        local ok, msg, code = c:connect { username = "alice", password = wrong }
        assert.is_nil(ok)
        assert.is_string(msg)
        -- KNOWN FAILURE on MQTT 5 (lua/paho/mqtt.lua): today
        -- "connect failed: CONNACK return code (paho code 135)", code "network"
        assert.are.equal("refused", code, msg)
        if version == 5 then
          -- mosquitto 2.0.11 answers 0x87 not authorized for a wrong password
          assert.truthy(refused_v5(msg), msg)
        else
          assert.truthy(refused_v4(msg), msg)
        end
        assert_no_leak(wrong, "the error message", msg)
        assert_no_leak(wrong, "tostring(client)", tostring(c))
        assert_no_leak(wrong, "client:stats()", c:stats())
        assert.is_true(until_(function() return #failed > 0 end, 5))
        assert_no_leak(wrong, "the connect_failed event", failed)
        -- nor after close
        c:close()
        assert_no_leak(wrong, "tostring(client) after close", tostring(c))
        assert_no_leak(wrong, "client:stats() after close", c:stats())
      end)

      it("is refused for an unknown user", function()
        local c = client(version)
        local ok, msg, code = c:connect { username = "mallory", password = "guess" }
        c:close()
        assert.is_nil(ok)
        -- KNOWN FAILURE on MQTT 5: as above
        assert.are.equal("refused", code, msg)
        assert_no_leak("guess", "the error message", msg)
      end)

      it("takes the credentials from a credentials function, and a wrong one is refused", function()
        local c = client(version)
        local ok, info = c:connect { credentials = function() return "bob", users.bob end }
        assert.is_true(ok, info)
        assert_no_leak(users.bob, "client:stats()", c:stats())
        assert_no_leak(users.bob, "tostring(client)", tostring(c))
        c:close()
        local d = client(version)
        local ok2, msg, code = d:connect { credentials = function() return "bob", "nope-" .. users.bob end }
        d:close()
        assert.is_nil(ok2)
        -- KNOWN FAILURE on MQTT 5: as above
        assert.are.equal("refused", code, msg)
        assert_no_leak(users.bob, "the error message", msg)
      end)

      -- mosquitto 2.0.11 checks the ACL when it delivers, not when a client
      -- subscribes: a SUBSCRIBE to a topic the user may not read is granted,
      -- and then nothing published there reaches that subscriber.
      it("ACL: a subscription to a denied topic is granted, but nothing is delivered on it", function()
        local alice = client(version)
        assert(alice:connect { username = "alice", password = users.alice })
        local got = {}
        alice:on("message", function(m) got[#got + 1] = m.topic .. "=" .. m.payload end)
        local granted = alice:subscribe("hidden/#", 1)
        assert.are.equal(1, granted) -- granted, not refused
        assert.are.equal(1, alice:subscribe("allowed/#", 1))
        assert.are.equal(1, alice:subscribe("secret/#", 1))
        local bob = client(version)
        assert(bob:connect { username = "bob", password = users.bob })
        -- bob may write all three; alice may read allowed/ and secret/ only
        assert(bob:publish("hidden/x", "h", { qos = 1 }):wait(5))
        assert(bob:publish("secret/x", "s", { qos = 1 }):wait(5))
        assert(bob:publish("allowed/x", "a", { qos = 1 }):wait(5))
        assert.is_true(until_(function() return #got >= 2 end, 5), table.concat(got, " "))
        mqtt.sleep(0.3) -- anything more would have come by now
        assert.are.same({ "secret/x=s", "allowed/x=a" }, got)
        bob:close()
        alice:close()
      end)

      it("ACL: a publish to a topic the user may not write is dropped"
        .. (version == 5 and " and PUBACK says 0x87" or " (3.1.1 cannot say so)"), function()
        local bob = client(version)
        assert(bob:connect { username = "bob", password = users.bob })
        local got = {}
        bob:on("message", function(m) got[#got + 1] = m.topic end)
        assert(bob:subscribe("sink/#", 1)) -- bob may read sink/
        local alice = client(version)
        assert(alice:connect { username = "alice", password = users.alice })
        local ok, msg, code = alice:publish("sink/x", "denied", { qos = 1 }):wait(5)
        if version == 5 then
          assert.is_nil(ok)
          assert.are.equal("refused", code)
          assert.are.equal("publish refused: 0x87 not authorized", msg)
        else
          assert.is_true(ok, msg) -- 3.1.1 PUBACK has no reason code
        end
        -- allowed traffic still flows, and the denied message never came
        assert(bob:subscribe("allowed/#", 1))
        assert(alice:publish("allowed/y", "ok", { qos = 1 }):wait(5))
        assert.is_true(until_(function() return #got >= 1 end, 5))
        mqtt.sleep(0.3)
        assert.are.same({ "allowed/y" }, got)
        alice:close()
        bob:close()
      end)
    end)
  end
end)
