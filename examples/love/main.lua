--- paho.mqtt in a LÖVE game: connect, subscribe, publish every frame, show
-- what arrives. The client is dispatched once per frame with a budget, so a
-- burst of messages (or a stall) never overruns a frame.
--
--   make LUA=luajit
--   LUA_PATH="$PWD/lua/?.lua;;" LUA_CPATH="$PWD/build/luajit/?.so;;" \
--     MQTT_URI=tcp://127.0.0.1:1883 love examples/love
--
-- LÖVE runs LuaJIT, so it needs the LuaJIT build of the core. MQTT_SECONDS
-- (CI: 3) ends the game after that many seconds and prints a summary; CI
-- runs it under xvfb-run (LÖVE needs OpenGL, which Xvfb gives it).
local mqtt = require "paho.mqtt"

local uri = os.getenv("MQTT_URI") or "tcp://127.0.0.1:1883"
local seconds = tonumber(os.getenv("MQTT_SECONDS") or "")
-- each frame gives the client at most 500 events and 4 ms of a 16.7 ms frame
local BUDGET = { max_events = 500, max_time = 0.004 }

local client, topic
local game = { frames = 0, sent = 0, acked = 0, received = 0, last = "-", worst = 0, started = nil }
local tokens = {}

function love.load()
  topic = ("game/love-%d-%d/pos"):format(os.time(), math.random(1, 1e6))
  client = assert(mqtt.client{ uri = uri })
  client:on("message", function(msg)
    game.received = game.received + 1
    game.last = msg.payload
  end)
  -- before the first frame: connect and subscribe may wait here
  assert(client:connect{ keepalive = 10, timeout = 5 })
  assert(client:subscribe(topic, 1))
  game.started = love.timer.getTime()
end

function love.update()
  local t0 = love.timer.getTime()
  client:dispatch(0, BUDGET)               -- never waits; bounded work
  game.frames = game.frames + 1
  -- a position every frame (QoS 0), and every 10th frame at QoS 1
  local qos = game.frames % 10 == 0 and 1 or 0
  local tok = client:publish(topic, ("x=%d y=%d"):format(game.frames % 480, game.frames % 240), { qos = qos })
  if tok then
    game.sent = game.sent + 1
    if qos == 1 then tokens[#tokens + 1] = tok end
  end
  for i = #tokens, 1, -1 do                -- look at QoS 1 results in later frames
    if tokens[i]:done() then
      if tokens[i]:wait(0) then game.acked = game.acked + 1 end
      table.remove(tokens, i)
    end
  end
  local work = love.timer.getTime() - t0
  if work > game.worst then game.worst = work end
  -- at most 60 frames a second where the display gives no vsync (Xvfb)
  local left = game.started + game.frames / 60 - love.timer.getTime()
  if left > 0 then love.timer.sleep(left) end
  if seconds and love.timer.getTime() - game.started >= seconds then love.event.quit() end
end

function love.draw()
  love.graphics.print(("paho.mqtt %s on %s"):format(mqtt.VERSION, uri), 10, 10)
  love.graphics.print(("frame %d   sent %d   received %d   QoS 1 acked %d"):format(
    game.frames, game.sent, game.received, game.acked), 10, 40)
  love.graphics.print("last: " .. game.last, 10, 70)
  love.graphics.print(("client work per frame: worst %.2f ms"):format(game.worst * 1000), 10, 100)
  love.graphics.print(("%d fps"):format(love.timer.getFPS()), 10, 130)
end

function love.quit()
  -- what is still on its way comes back within a second
  local deadline = love.timer.getTime() + 2
  while game.received < game.sent and love.timer.getTime() < deadline do client:dispatch(0.01) end
  print(("love: %d frames in %.1f s, published %d, received %d of %d, QoS 1 acked %d; "
    .. "client work per frame: worst %.2f ms"):format(game.frames, love.timer.getTime() - game.started,
    game.sent, game.received, game.sent, game.acked, game.worst * 1000))
  if game.frames > 0 and game.received == game.sent then
    print("OK: every message went out and came back")
  end
  client:close()
  return false
end
