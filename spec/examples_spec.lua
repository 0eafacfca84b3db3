-- Every example runs against a broker this spec starts.
local helper = require "helper"

local function run_example(path, uri, env)
  local lua = os.getenv("PMQ_LUA") or "lua5.4"
  local cmd = ("%sMQTT_URI=%s timeout 60 %s %s 2>&1"):format(env or "", uri, lua, path)
  local p = io.popen(cmd)
  local out = p:read("*a")
  local ok, _, code = p:close()
  return (ok == true or ok == 0) and (code == nil or code == 0), out
end

describe("examples", function()
  local broker
  setup(function() broker = helper.broker() end)
  teardown(function() helper.stop_all() end)

  it("session_demo.lua delivers the missed messages with session_present", function()
    local ok, out = run_example("examples/session_demo.lua", broker.uri)
    assert.is_true(ok, out)
    assert.matches("session_present = true", out)
    assert.matches("received 3 of the 3 messages it missed", out)
    assert.matches("OK: the persistent session", out)
  end)

  it("keepalive_demo.lua shows a frozen broker detected as a keepalive timeout, then a reconnect", function()
    local b = helper.broker() -- its own: the demo freezes it
    local ok, out = run_example("examples/keepalive_demo.lua", b.uri, "MQTT_BROKER_PID=" .. b.pid .. " ")
    b:resume()
    assert.is_true(ok, out)
    assert.matches('disconnect event: cause = "keepalive", reconnecting = true', out)
    assert.matches("not_connected", out)
    assert.matches("connect event: reconnect = true, session_present = true", out)
    assert.matches("OK: the half%-open link was detected", out)
    b:stop()
  end)

  it("request_response.lua gets an answer to each request", function()
    local ok, out = run_example("examples/request_response.lua", broker.uri)
    assert.is_true(ok, out)
    assert.matches('request "mqtt" %-> response "MQTT"', out)
    assert.matches("a request nobody answers: .* %(timeout%)", out)
    assert.matches("OK: every request got its response", out)
  end)

  -- the event-loop examples, where Debian packages the loop for this Lua
  for _, loop in ipairs { "cqueues", "luv", "copas" } do
    local lua = os.getenv("PMQ_LUA") or "lua5.4"
    local has = os.execute(("%s -e 'require(%q)' >/dev/null 2>&1"):format(lua, loop))
    has = has == true or has == 0
    local name = ("%s.lua drives a round trip from the %s loop"):format(loop, loop)
    if has then
      it(name, function()
        local ok, out = run_example("examples/" .. loop .. ".lua", broker.uri)
        assert.is_true(ok, out)
        assert.matches("OK: the " .. loop .. " loop delivered the message", out)
      end)
    else
      pending(name .. ": Debian does not package " .. loop .. " for " .. lua)
    end
  end

  -- a real game engine: LÖVE (LuaJIT) under Xvfb, for 3 s
  it("love/ runs as a LÖVE game: publishes every frame and gets every message back", function()
    for _, f in ipairs({ "/usr/bin/love", "/usr/bin/xvfb-run" }) do
      local h = io.open(f, "rb")
      assert(h, f .. " is missing: install love and xvfb (tools/deps.sh)")
      h:close()
    end
    local root = assert(io.popen("pwd")):read("*l")
    -- LÖVE runs LuaJIT: it needs build/luajit (make LUA=luajit); `make asan`
    -- preloads ASan into what the specs start, which make and LÖVE are not
    local p = io.popen("env -u LD_PRELOAD make --no-print-directory LUA=luajit all 2>&1; echo rc=$?")
    local made = p:read("*a")
    p:close()
    assert(made:match("rc=0%s*$"), made)
    p = io.popen(("env -u LD_PRELOAD LUA_PATH='%s/lua/?.lua;;' LUA_CPATH='%s/build/luajit/?.so;;' MQTT_URI=%s"
      .. " MQTT_SECONDS=3 timeout 60 xvfb-run -a love examples/love 2>&1; echo rc=$?"):format(root, root, broker.uri))
    local out = p:read("*a")
    p:close()
    assert.matches("rc=0%s*$", out)
    local frames, sent, got = out:match("love: (%d+) frames in [%d.]+ s, published (%d+), received (%d+) of")
    assert.is_truthy(frames, out)
    assert.is_true(tonumber(frames) >= 60, out)
    assert.are.equal(sent, got, out)
    assert.matches("OK: every message went out and came back", out)
  end)

  -- speed is not asserted (the example prints its worst frame); the round
  -- trip through one dispatch(0) per frame is
  it("game_loop.lua gets every message back through one dispatch(0) per 60 Hz frame", function()
    local ok, out = run_example("examples/game_loop.lua", broker.uri)
    assert.is_true(ok, out)
    assert.matches("published 18 %(18 completed%), received 18 of 18", out)
    assert.matches("client work per frame: max [%d.]+ ms", out)
    assert.matches("OK: every message went out and came back", out)
  end)
end)
