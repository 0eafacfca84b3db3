--- bench/frame_budget.lua - what one frame's dispatch costs after a stall.
--
-- A game or GUI loop calls dispatch(0) once per frame. When the loop stalls
-- (a level load, a GC pause, a window drag) messages pile up in the
-- client's queue, and the next dispatch(0) handles all of them in one
-- frame. This floods a subscriber with N QoS 0 messages while it does not
-- dispatch for STALL seconds, then times the first dispatch of each kind
-- in the same run: plain dispatch(0), and dispatch(0, {max_time = BUDGET})
-- (the events left wait for the next frames). Prints both, their ratio, and
-- how many frames the budgeted loop took to catch up.
--
--   MQTT_URI=tcp://127.0.0.1:1883 lua bench/frame_budget.lua
--
-- Environment: FRAME_N (10000 messages), FRAME_STALL (0.5 s),
-- FRAME_BUDGET (0.004 s: 4 ms of a 16.7 ms frame).
local mqtt = require "paho.mqtt"
local core = require "paho.mqtt.core"

local uri = os.getenv("MQTT_URI") or "tcp://127.0.0.1:1883"
local N = tonumber(os.getenv("FRAME_N") or "10000")
local STALL = tonumber(os.getenv("FRAME_STALL") or "0.5")
local BUDGET = tonumber(os.getenv("FRAME_BUDGET") or "0.004")
local now = core.now

local function run(budget)
  local topic = ("bench/frame/%d-%d"):format(os.time(), math.random(1, 1e9))
  local sub = assert(mqtt.client{ uri = uri, queue_max = N + 100 })
  local pub = assert(mqtt.client{ uri = uri })
  local got = 0
  local last_pos
  sub:on("message", function(msg) got = got + 1 last_pos = msg.payload end) -- a game-state update
  assert(sub:connect{})
  assert(sub:subscribe(topic, 0))
  assert(pub:connect{})
  local last
  for i = 1, N do last = assert(pub:publish(topic, ("x=%d y=%d"):format(i, i * 2), { qos = 0 })) end
  -- the stall: nobody dispatches the subscriber (the publisher is waited for alone)
  local t_end = now() + STALL
  while not last:done() and now() < t_end + 10 do pub:dispatch(0.01) end
  local rest = t_end - now()
  if rest > 0 then core.poll({}, rest) end
  local deadline = now() + 10
  while sub:stats().queued < N and now() < deadline do core.poll({}, 0.01) end
  local queued = sub:stats().queued
  local t0 = now()
  local n = sub:dispatch(0, budget and { max_time = budget } or nil)
  local first = now() - t0
  local frames = 1
  while got < queued and frames < 100000 do
    sub:dispatch(0, budget and { max_time = budget } or nil)
    frames = frames + 1
  end
  sub:close()
  pub:close()
  assert(last_pos, "no message was handled")
  return { first = first, handled = n, queued = queued, frames = frames }
end

local plain = run(nil)
local budgeted = run(BUDGET)
print(("frame budget, %d QoS 0 messages queued during a %.1f s stall:"):format(N, STALL))
print(("  dispatch(0)                        first frame %6.2f ms, %5d events, caught up in %d frame(s)")
  :format(plain.first * 1000, plain.handled, plain.frames))
print(("  dispatch(0, {max_time = %.3f})    first frame %6.2f ms, %5d events, caught up in %d frames")
  :format(BUDGET, budgeted.first * 1000, budgeted.handled, budgeted.frames))
print(("  first frame, budgeted / plain: %.2f"):format(budgeted.first / plain.first))
