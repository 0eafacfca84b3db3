-- More than one broker: failover with uris, reconnecting to the next broker
-- when one dies, shared subscriptions spread over consumers, and a
-- two-broker mosquitto bridge. Every broker is a private mosquitto on
-- 127.0.0.1 (spec/support/helper.lua).
local helper = require "helper"
local tls = require "tls" -- for free_port
local mqtt = require "paho.mqtt"

local function until_(cond, timeout)
  return helper.eventually(cond, timeout, mqtt)
end

local recorder = helper.recorder -- a client that records its events

local function dead_uri()
  return "tcp://127.0.0.1:" .. tls.free_port() -- nothing listens there
end

describe("many brokers", function()
  teardown(function() helper.stop_all() end)

  describe("uris failover", function()
    it("connects to the live broker when the first URI is dead, and info.uri says which", function()
      local b = helper.broker()
      local dead = dead_uri()
      local c = assert(mqtt.client { uris = { dead, b.uri }, id = helper.uid("fo") })
      local ok, info = c:connect { timeout = 5 }
      assert.is_true(ok, info)
      assert.are.equal(b.uri, info.uri)
      assert.are.equal(b.uri, c:stats().uri)
      assert.is_true(c:is_connected())
      c:close()
    end)

    it("takes the first URI that answers, in order", function()
      local b1, b2 = helper.broker(), helper.broker()
      local c = assert(mqtt.client { uris = { b1.uri, b2.uri }, id = helper.uid("fo2") })
      local ok, info = c:connect { timeout = 5 }
      assert.is_true(ok, info)
      assert.are.equal(b1.uri, info.uri)
      c:close()
    end)

    it("fails with one message when no URI answers", function()
      local c = assert(mqtt.client { uris = { dead_uri(), dead_uri() }, id = helper.uid("fo3") })
      local ok, msg, code = c:connect { timeout = 3 }
      c:close()
      assert.is_nil(ok)
      assert.are.equal("network", code)
      assert.is_string(msg)
    end)

    it("reconnects to the second broker when the first is killed", function()
      local b1, b2 = helper.broker(), helper.broker()
      local c, log = recorder { uris = { b1.uri, b2.uri }, id = helper.uid("fo4") }
      local ok, info = c:connect { keepalive = 5, reconnect = { min = 0.1, max = 0.5 } }
      assert.is_true(ok, info)
      assert.are.equal(b1.uri, info.uri)
      assert(c:subscribe("fo/t", 1))
      b1:kill()
      assert.is_true(until_(function() return #log.connect >= 2 end, 10), "no reconnect")
      assert.are.equal("network", log.disconnect[1].cause)
      assert.is_true(log.disconnect[1].reconnecting)
      local again = log.connect[2]
      assert.is_true(again.reconnect)
      -- KNOWN FAILURE (paho 1.3.12 with serverURIs, worked around in
      -- lua/paho/mqtt.lua): on the loss of an established connection paho's
      -- nextOrClose() sees "more URIs to try" and connects to the next URI on
      -- its own, racing the binding's reconnect; its success report then
      -- names uris[1] (today: again.uri == b1.uri while the client is on b2)
      -- and the two connects knock each other off (see the next assertions).
      assert.are.equal(b2.uri, again.uri)
      assert.is_false(again.session_present) -- b2 never saw this client
      assert.are.equal(b2.uri, c:stats().uri)
      -- and it stays there: one loss, one reconnect
      mqtt.sleep(2)
      assert.are.equal(1, #log.disconnect)
      assert.are.equal(2, #log.connect)
      assert.are.equal(1, c:stats().reconnects)
      -- resubscribed on b2: a message published there arrives
      local p = assert(mqtt.client { uri = b2.uri, id = helper.uid("fo4p") })
      assert(p:connect {})
      assert.is_true(until_(function()
        p:publish("fo/t", "on b2", { qos = 1 })
        return #log.message > 0
      end, 5))
      assert.are.equal("on b2", log.message[1].payload)
      assert.are.equal(0, #log.errors)
      p:close()
      c:close()
    end)
  end)

  for _, version in ipairs { 5, 4 } do
    it("shared subscription: 300 messages over three consumers, each exactly once in total (MQTT "
      .. version .. ")", function()
      local b = helper.broker()
      local topic = helper.uid("share/t")
      local consumers, seen, per = {}, {}, {}
      local total, dup = 0, {}
      for i = 1, 3 do
        local c = assert(mqtt.client { uri = b.uri, id = helper.uid("cons" .. i), version = version })
        per[i] = 0
        c:on("message", function(m)
          per[i] = per[i] + 1
          total = total + 1
          if seen[m.payload] then dup[#dup + 1] = m.payload end
          seen[m.payload] = true
        end)
        assert(c:connect {})
        assert(c:subscribe("$share/g/" .. topic, 1))
        consumers[i] = c
      end
      local p = assert(mqtt.client { uri = b.uri, id = helper.uid("prod"), version = version })
      assert(p:connect {})
      local tokens = {}
      for n = 1, 300 do
        tokens[n] = assert(p:publish(topic, tostring(n), { qos = 1 }))
      end
      for n = 1, 300 do assert(tokens[n]:wait(10)) end
      assert.is_true(until_(function() return total >= 300 end, 10), "got " .. total)
      mqtt.sleep(0.3) -- a duplicate would have come by now
      assert.are.equal(300, total)
      assert.are.same({}, dup)
      for n = 1, 300 do assert.is_true(seen[tostring(n)], "missing " .. n) end
      for i = 1, 3 do
        assert.is_true(per[i] > 0, ("consumer %d got nothing (%d/%d/%d)"):format(i, per[1], per[2], per[3]))
      end
      p:close()
      for _, c in ipairs(consumers) do c:close() end
    end)
  end

  it("bridge: a message published on broker A reaches a subscriber on broker B, and back", function()
    local a = helper.broker()
    local b = helper.broker { config = {
      "connection to-a",
      "address 127.0.0.1:" .. a.port,
      "topic bridge/# both 1",
      "cleansession true",
      "restart_timeout 1",
    } }
    local sa, la = recorder { uri = a.uri, id = helper.uid("onA") }
    local sb, lb = recorder { uri = b.uri, id = helper.uid("onB") }
    assert(sa:connect {})
    assert(sb:connect {})
    assert(sa:subscribe("bridge/#", 1))
    assert(sb:subscribe("bridge/#", 1))
    local pa = assert(mqtt.client { uri = a.uri, id = helper.uid("pubA") })
    local pb = assert(mqtt.client { uri = b.uri, id = helper.uid("pubB") })
    assert(pa:connect {})
    assert(pb:connect {})
    -- the bridge connects after B starts: probe until a message crosses (bounded)
    local function arrived(log, payload)
      for _, m in ipairs(log.message) do
        if m.payload == payload then return true end
      end
      return false
    end
    local up = until_(function()
      pa:publish("bridge/probe", "probe", { qos = 1 })
      mqtt.sleep(0.1)
      return arrived(lb, "probe")
    end, 10)
    assert.is_true(up, "the bridge did not come up:\n" .. (helper.read(b.dir .. "/mosquitto.log") or ""))
    -- A -> B
    assert(pa:publish("bridge/x", "from A", { qos = 1 }):wait(5))
    assert.is_true(until_(function() return arrived(lb, "from A") end, 5))
    -- B -> A
    assert(pb:publish("bridge/y", "from B", { qos = 1 }):wait(5))
    assert.is_true(until_(function() return arrived(la, "from B") end, 5))
    mqtt.sleep(0.3)
    -- each crossed once, and did not come back around the bridge
    local function count(log, payload)
      local n = 0
      for _, m in ipairs(log.message) do
        if m.payload == payload then n = n + 1 end
      end
      return n
    end
    assert.are.equal(1, count(lb, "from A"))
    assert.are.equal(1, count(la, "from A"))
    assert.are.equal(1, count(la, "from B"))
    assert.are.equal(1, count(lb, "from B"))
    -- topics outside the bridge pattern stay on their broker
    assert(sb:subscribe("local/#", 1))
    assert(pa:publish("local/z", "stays on A", { qos = 1 }):wait(5))
    mqtt.sleep(0.3)
    assert.is_false(arrived(lb, "stays on A"))
    for _, c in ipairs { pa, pb, sa, sb } do c:close() end
  end)
end)
