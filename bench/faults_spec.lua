-- A measurement, not yet in CI (busted runs spec/ only): with paho.mqtt.c
-- 1.3.12 it does not pass yet. Run it with
--   make all && LUA_PATH="lua/?.lua;spec/?.lua;;" LUA_CPATH="build/lua5.4/?.so;;" \
--     PMQ_FAULT_N=1000 PMQ_FAULT_V=5 PMQ_FAULT_NOPERS=1 lua5.4 /usr/bin/busted bench/faults_spec.lua
-- Found so far (N = 1000, 2026-11-29): without persistence, MQTT 5: every
-- fault recovered (4 publisher reconnects) but 2 QoS 1 and 10 QoS 2 messages
-- missing, 14 QoS 1 duplicates, 20 publish tokens that never completed; with
-- persistence = {dir} paho resends the messages it had in flight malformed
-- after the reconnect (mosquitto: "disconnected due to malformed packet";
-- MQTT 5 and, under load, 3.1.1), so the publisher never gets back on.
--
-- Zero loss under faults: 20,000 QoS 1 and 20,000 QoS 2 messages while the
-- broker is stopped and restarted twice (SIGTERM: mosquitto saves its
-- persistence file) and the publisher's connection is cut twice through
-- the fault proxy. QoS 1: every message arrives at least once; QoS 2:
-- exactly once. Prints the duplicate counts.
local helper = require "helper"
local mqtt = require "paho.mqtt"
local fp = require "faultproxy"

local N = tonumber(os.getenv("PMQ_FAULT_N") or "20000")

local function until_(cond, timeout)
  return helper.eventually(cond, timeout, mqtt)
end

describe("faults under load", function()
  teardown(function() helper.stop_all() end)

  it(("loses nothing: %d QoS 1 + %d QoS 2 across 2 broker restarts and 2 cut connections"):format(N, N), function()
    -- the broker queues every message for the subscriber while it is away
    local b = helper.broker { config = { "max_queued_messages 0", "max_queued_bytes 0" } }
    local p = fp.start(b.port)
    local counts = { [1] = {}, [2] = {} }
    local events = { sub = 0, pub = 0, faults = 0 }

    -- the subscriber: a session mosquitto writes to disk (Clean Start off from the start)
    local sub = assert(mqtt.client { uri = b.uri, id = helper.uid("fsub"), queue_max = 50000, version = 4 })
    sub:on("message", function(m)
      local q, i = m.payload:match("^q(%d)%-(%d+)$")
      local c = counts[tonumber(q)]
      i = tonumber(i)
      c[i] = (c[i] or 0) + 1
    end)
    sub:on("connect", function(info) if info.reconnect then events.sub = events.sub + 1 end end)
    assert(sub:connect { clean_start = false, keepalive = 5,
      reconnect = { min = 0.1, max = 0.5 } })
    assert(sub:subscribe { { "load/q1", 1 }, { "load/q2", 2 } })

    -- the publisher: through the proxy, its unacknowledged messages on disk.
    -- MQTT 3.1.1: paho.mqtt.c 1.3.12 resends MQTT 5 messages restored from
    -- its persistence store malformed (see docs/sessions-and-keepalive.md)
    local dir = helper.tmpdir() .. "/" .. helper.uid("fpub-store")
    assert.is_true(helper.sh("mkdir -p " .. dir))
    local pub = assert(mqtt.client { uri = p.uri, id = helper.uid("fpub"),
      version = tonumber(os.getenv("PMQ_FAULT_V") or 4),
      persistence = os.getenv("PMQ_FAULT_NOPERS") == nil and { dir = dir } or nil,
      offline_queue = 2 * N })
    local debug = os.getenv("PMQ_DEBUG")
    pub:on("connect", function(info)
      if info.reconnect then events.pub = events.pub + 1 end
      if debug then print("pub connect", helper.now(), info.reconnect, info.session_present) end
    end)
    if os.getenv("PMQ_DEBUG") then
      pub:on("disconnect", function(r) print("pub disconnect", helper.now(), r.cause, r.message) end)
      pub:on("connect_failed", function(r) print("pub connect_failed", helper.now(), r.message, r.retry_in) end)
    end
    assert(pub:connect { clean_start = false, keepalive = 5,
      reconnect = { min = 0.1, max = 0.5 } })

    local faults = {
      [math.floor(N * 0.2)] = function() p:reset() end,
      [math.floor(N * 0.4)] = function() b:stop() helper.sleep(0.5) b:start() end,
      [math.floor(N * 0.6)] = function() p:reset() end,
      [math.floor(N * 0.8)] = function() b:stop() helper.sleep(0.5) b:start() end,
    }
    local tokens, refused = {}, 0
    local t0 = helper.now()
    for i = 1, N do
      for q = 1, 2 do
        local tok
        for _ = 1, 2000 do -- bounded retry while the client cannot take it
          tok = pub:publish("load/q" .. q, ("q%d-%d"):format(q, i), { qos = q })
          if tok then break end
          refused = refused + 1
          mqtt.sleep(0.01)
        end
        assert.truthy(tok, "publish kept failing")
        tokens[#tokens + 1] = tok
      end
      if faults[i] then
        -- one fault at a time: the previous one is over when both are back
        until_(function() return pub:is_connected() and sub:is_connected() end, 30)
        if os.getenv("PMQ_DEBUG") then print("fault at", i, helper.now(), pub:state()) end
        faults[i]()
        events.faults = events.faults + 1
      end
      if i % 200 == 0 then mqtt.dispatch(0) end
    end
    -- every publish completes
    local failed = {}
    for _, tok in ipairs(tokens) do
      local ok, msg, code = tok:wait(120)
      if not ok then failed[#failed + 1] = tostring(code) .. ": " .. tostring(msg) end
    end
    -- and everything arrives
    local function complete()
      for q = 1, 2 do
        for i = 1, N do if not counts[q][i] then return false end end
      end
      return true
    end
    until_(complete, 120)
    mqtt.sleep(1) -- late duplicates, if any
    local missing, dups = { 0, 0 }, { 0, 0 }
    for q = 1, 2 do
      for i = 1, N do
        local c = counts[q][i]
        if not c then missing[q] = missing[q] + 1 elseif c > 1 then dups[q] = dups[q] + c - 1 end
      end
    end
    print(("\n    %d + %d messages in %.1f s, faults %d, reconnects pub %d sub %d, publishes refused %d; "
      .. "missing q1 %d q2 %d; duplicates q1 %d q2 %d; failed tokens %d")
      :format(N, N, helper.now() - t0, events.faults, events.pub, events.sub, refused,
        missing[1], missing[2], dups[1], dups[2], #failed))
    if os.getenv("PMQ_DEBUG") then print(helper.read(b.dir .. "/mosquitto.log")) end
    assert.are.equal(4, events.faults)
    assert.is_true(events.pub >= 4)
    assert.are.equal(0, missing[1])
    assert.are.equal(0, missing[2])
    assert.are.equal(0, dups[2]) -- QoS 2: exactly once
    assert.are.same({}, failed)
    pub:close()
    sub:close()
    p:stop()
  end)
end)
