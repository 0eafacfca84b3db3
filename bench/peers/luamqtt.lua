--- bench/peers/luamqtt.lua - the race's workload through luamqtt (pure Lua,
-- LuaSocket), driven as its README shows: both clients in one ioloop
-- (mqtt.run_ioloop, busy-polled), the publisher's loop a function added to
-- the same ioloop, publishing a batch per iteration; the subscriber acknowledges
-- each message as luamqtt requires.
--
--   LUA_PATH=<luamqtt-3.4.3>/?.lua;; lua bench/peers/luamqtt.lua HOST:PORT N SIZE QOS
--
-- Prints one "RESULT impl=luamqtt mode=throughput ..." line, as bench.lua.
local mqtt = require "mqtt"
local socket = require "socket"
local now = socket.gettime

local uri, n, size, qos = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
local BATCH = 100
local topic = ("race/luamqtt/%d/%d"):format(os.time(), math.random(1e9))
local payload = ("x"):rep(size)

local received, bad, sent = 0, 0, 0
local t0, last, progress
local sub_ready, pub_ready, done = false, false, false
local pub, sub, publisher
-- busy-polled: no network timeout and no sleep between iterations (the
-- default ioloop waits up to 5 ms per receive, and receives one packet per
-- client per iteration: about 240 msg/s here)
mqtt.get_ioloop(true, { timeout = 0, sleep = 0 })

local function finish()
  done = true
  pub:disconnect()
  sub:disconnect()
  mqtt.get_ioloop():remove(publisher) -- the loop ends with its last member
end

sub = mqtt.client { uri = uri, clean = true, version = mqtt.v311, id = "race-sub-" .. math.random(1e9) }
pub = mqtt.client { uri = uri, clean = true, version = mqtt.v311, id = "race-pub-" .. math.random(1e9) }
sub:on {
  connect = function(ack)
    assert(ack.rc == 0, "sub: connect failed")
    assert(sub:subscribe { topic = topic, qos = qos, callback = function() sub_ready = true end })
  end,
  message = function(msg)
    sub:acknowledge(msg)
    received = received + 1
    if #msg.payload ~= size then bad = bad + 1 end
    last = now()
    progress = last
    if received == n then finish() end
  end,
  error = function(err) io.stderr:write("luamqtt sub: ", tostring(err), "\n") end,
}
pub:on {
  connect = function(ack)
    assert(ack.rc == 0, "pub: connect failed")
    pub_ready = true
  end,
  error = function(err) io.stderr:write("luamqtt pub: ", tostring(err), "\n") end,
}
function publisher()
  if done or not (sub_ready and pub_ready) then return end
  if not t0 then t0, progress = now(), now() end
  for _ = 1, BATCH do
    if sent >= n then break end
    assert(pub:publish { topic = topic, payload = payload, qos = qos })
    sent = sent + 1
  end
  if now() - progress > 5 then finish() end -- no progress: give up
end
mqtt.run_ioloop(sub, pub, publisher)
local t1 = last or now()
print(("RESULT impl=luamqtt mode=throughput qos=%d size=%d n=%d received=%d bad=%d elapsed_s=%.4f msgs_per_s=%.0f")
  :format(qos, size, n, received, bad, t1 - t0, received / (t1 - t0)))
