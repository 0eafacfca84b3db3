-- src/wake.c: paho 1.3.12's receive thread sleeps up to a second in a poll
-- before it sends the CONNECT of a client alone in its process; the
-- process's anchor handle, connected to a loopback peer of the binding's,
-- is written to while a connect waits, which ends that poll. A client
-- alone in a fresh Lua process connects, disconnects and connects again
-- through the same paho handle, and reconnects by itself after a broker
-- restart; the peer wakes paho while those connects wait and is quiet
-- otherwise. How long the connects take is measured in
-- bench/connect_alone.lua; here only a generous bound (issue 19): each
-- connect again through the handle under 0.8 s, where paho alone takes
-- 1.0-1.1 s and the binding about 0.01 s.
local helper = require "helper"

local script = [[
local mqtt = require "paho.mqtt"
local core = require "paho.mqtt.core"
local uri, id, ready, go = arg[1], arg[2], arg[3], arg[4]
local function say(...) io.write(table.concat({ ... }, " "), "\n") io.flush() end
local c = assert(mqtt.client{ uri = uri, id = id })
local events = {}
c:on("connect", function(info) events[#events + 1] = info.reconnect and "reconnect" or "connect" end)
c:on("disconnect", function(info) events[#events + 1] = "disconnect:" .. info.cause end)
local took = {}
for i = 1, 3 do
  local t0 = core.now()
  assert(c:connect{ clean_start = i == 1 and "first" or false, session_expiry = 60, timeout = 5 })
  took[i] = core.now() - t0
  assert(c:disconnect())
end
say("took", ("%.3f %.3f %.3f"):format(took[1], took[2], took[3]))
local up, wakes = core.wake_up()
say("up", tostring(up), "wakes", wakes)
-- idle: no connect waits, so no wake is written
mqtt.dispatch(0.3)
local _, w1 = core.wake_up()
mqtt.dispatch(0.3)
local _, w2 = core.wake_up()
say("idle", w2 - w1)
assert(c:connect{ clean_start = false, session_expiry = 60, reconnect = { min = 0.05, max = 0.2 }, timeout = 5 })
local f = assert(io.open(ready, "w")) f:close()
-- the spec restarts the broker; the client reconnects by itself
local deadline = core.now() + 30
local n = #events
while core.now() < deadline do
  mqtt.dispatch(0.05)
  if events[#events] == "reconnect" and #events > n then break end
end
local _, w3 = core.wake_up()
say("events", table.concat(events, ","))
say("reconnect wakes", w3 - w2)
c:close()
say("done", go)
]]

describe("paho's receive thread is woken for connects (src/wake.c)", function()
  teardown(function() helper.stop_all() end)

  it("lets a client alone in its process connect again and reconnect, and is quiet in between", function()
    local b = helper.broker()
    local dir = helper.tmpdir() .. "/" .. helper.uid("wake")
    assert.is_true(helper.sh("mkdir -p " .. dir))
    local path = dir .. "/lone.lua"
    local f = assert(io.open(path, "w"))
    f:write(script)
    f:close()
    local lua = os.getenv("PMQ_LUA") or "lua5.4"
    local out, ready = dir .. "/out", dir .. "/ready"
    assert.is_true(helper.sh(("%s %s %s %s %s x >%s 2>&1 &"):format(lua, path, b.uri, helper.uid("lone"), ready, out)))
    assert.is_true(helper.eventually(function() return helper.read(ready) ~= nil end, 60), helper.read(out))
    b:stop()
    b:start()
    assert.is_true(helper.eventually(function() return (helper.read(out) or ""):find("done", 1, true) end, 60),
      helper.read(out))
    local text = helper.read(out)
    assert.are.equal("true", text:match("up (%a+)"), text)
    assert.is_true(tonumber(text:match("wakes (%d+)")) >= 1, text)
    assert.are.equal(0, tonumber(text:match("idle (%d+)")), text)
    assert.is_truthy(text:find("events connect,disconnect:client,connect,disconnect:client,connect,"
      .. "disconnect:client,connect,disconnect:network,reconnect", 1, true), text)
    assert.is_true(tonumber(text:match("reconnect wakes (%d+)")) >= 1, text)
    -- (a generous bound; none under valgrind, where everything is slow)
    local t2, t3 = text:match("took [%d.]+ ([%d.]+) ([%d.]+)")
    if not os.getenv("PMQ_VALGRIND") then
      assert.is_true(tonumber(t2) < 0.8 and tonumber(t3) < 0.8, text)
    end
  end)
end)
