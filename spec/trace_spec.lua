-- mqtt.trace: paho's trace lines reach Lua on the dispatching thread,
-- with passwords redacted, and tracing does not disturb keepalive detection.
local helper = require "helper"
local mqtt = require "paho.mqtt"

describe("mqtt.trace", function()
  local b
  setup(function() b = helper.broker() end)
  teardown(function()
    mqtt.trace(nil)
    helper.stop_all()
  end)

  it("forwards protocol lines, with the password replaced by *****", function()
    local lines = {}
    local main = coroutine.running()
    local on_main = true
    assert.is_true(mqtt.trace("protocol", function(level, line)
      if coroutine.running() ~= main then on_main = false end
      lines[#lines + 1] = { level = level, line = line }
    end))
    -- an id equal to the password puts the password in paho's own lines
    local secret = helper.uid("pw-secret")
    local c = assert(mqtt.client { uri = b.uri, id = secret })
    assert(c:connect { username = "u", password = secret })
    assert.is_true(helper.eventually(function()
      for _, l in ipairs(lines) do
        if l.line:find("<- CONNACK", 1, true) then return true end
      end
    end, 5, mqtt))
    local connect_line
    for _, l in ipairs(lines) do
      assert.is_nil(l.line:find(secret, 1, true), l.line)
      assert.are.equal("protocol", l.level)
      if l.line:find("-> CONNECT", 1, true) then connect_line = l.line end
    end
    assert.truthy(connect_line and connect_line:find("*****", 1, true), connect_line)
    assert.is_true(on_main)
    -- off: nothing more arrives
    mqtt.trace(nil)
    local n = #lines
    assert(c:publish("t/x", "y", { qos = 1 }):wait(5))
    mqtt.sleep(0.1)
    assert.are.equal(n, #lines)
    c:close()
  end)

  it("raises on a bad level or handler", function()
    assert.has_error(function() mqtt.trace("protocl", print) end,
      "bad argument #1 to trace (maximum, medium, minimum, protocol, error, severe, fatal or nil expected, "
      .. "got string 'protocl'; did you mean 'protocol'?)")
    assert.has_error(function() mqtt.trace("error", 42) end, "bad argument #2 to trace (function expected, got number)")
  end)

  it("keeps telling keepalive timeouts apart while the program traces at a coarser level", function()
    local got = {}
    mqtt.trace("error", function(_, line) got[#got + 1] = line end)
    local bk = helper.broker()
    local c = assert(mqtt.client { uri = bk.uri, id = helper.uid("trka") })
    local lost
    c:on("disconnect", function(r) lost = r end)
    assert(c:connect { keepalive = 1 })
    mqtt.sleep(0.2)
    bk:pause()
    assert.is_true(helper.eventually(function() return lost ~= nil end, 6, mqtt))
    bk:resume()
    assert.are.equal("keepalive", lost.cause)
    for _, line in ipairs(got) do -- no protocol-level line reached an "error" handler
      assert.is_nil(line:find("PINGRESP not received", 1, true), line)
    end
    mqtt.trace(nil)
    c:close()
    bk:stop()
  end)
end)
