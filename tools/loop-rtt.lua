--- Round-trip time through each event loop, for docs/event-loops.md.
--
--   tools/with-broker.sh lua5.4 tools/loop-rtt.lua     (LUA_PATH/LUA_CPATH
--   naming this tree and build/<lua>, as `make` exports them)
--
-- One client subscribes to a topic and plays ping-pong with itself: its
-- message handler publishes the next QoS 0 message, and each loop under
-- test is the only thing that dispatches it. Prints one line per loop with
-- the median and 99th percentile of N round trips (publish -> broker ->
-- message handler), or why the loop was not measured. Nothing is asserted.
local mqtt = require "paho.mqtt"

local uri = os.getenv("MQTT_URI") or "tcp://127.0.0.1:1883"
local N = tonumber(os.getenv("RTT_COUNT") or "") or 300
local lua = jit and jit.version or _VERSION
local now = require("paho.mqtt.core").now

-- a connected client in ping-pong; run(stop) must dispatch it until stop()
-- has been called (the handler calls it after N round trips)
local function pingpong(name, drive)
  local client = assert(mqtt.client{ uri = uri })
  local topic = ("rtt/%s/%d"):format(name, math.random(1, 1e9))
  local rtts, sent_at, stopped = {}, nil, false
  local stop_fn
  client:on("message", function()
    rtts[#rtts + 1] = now() - sent_at
    if #rtts >= N then stopped = true if stop_fn then stop_fn() end return end
    sent_at = now()
    client:publish(topic, "p")
  end)
  assert(client:connect{})
  assert(client:subscribe(topic, 0))
  local function start()
    sent_at = now()
    client:publish(topic, "p")
  end
  local deadline = now() + 30
  local ok, err = pcall(drive, client, start, function(f) stop_fn = f end,
    function() return stopped or now() > deadline end)
  client:close()
  if not ok then
    print(("%-18s %-9s failed: %s"):format(lua, name, tostring(err)))
    return
  end
  table.sort(rtts)
  if #rtts < N then
    print(("%-18s %-9s only %d of %d round trips within 30 s"):format(lua, name, #rtts, N))
    return
  end
  print(("%-18s %-9s %d round trips: median %.3f ms, p99 %.3f ms"):format(lua, name, #rtts,
    rtts[math.ceil(#rtts / 2)] * 1000, rtts[math.ceil(#rtts * 0.99)] * 1000))
end

local function try(module)
  local ok, lib = pcall(require, module)
  if ok then return lib end
  return nil
end

-- reference: mqtt.run
pingpong("mqtt.run", function(_, start, on_stop)
  on_stop(mqtt.stop)
  start()
  mqtt.run()
end)

-- a select() loop on client:fd() (LuaSocket)
local socket = try("socket")
if socket then
  pingpong("select", function(client, start, _, done)
    local fd = client:fd()
    local watch = { getfd = function() return fd end }
    start()
    while not done() do
      local t = client:timeout() or 1
      local readable = socket.select({ watch }, nil, math.min(t, 1))
      if readable[watch] or client:timeout() == 0 then client:dispatch(0) end
    end
  end)
else
  print(("%-18s %-9s not measured: luasocket is not installed for this Lua"):format(lua, "select"))
end

local cqueues = try("cqueues")
if cqueues then
  local mqcq = require "paho.mqtt.cqueues"
  pingpong("cqueues", function(client, start, on_stop, done)
    local cq = cqueues.new()
    local h = mqcq.wrap(cq, client)
    on_stop(function() h:stop() end)
    cq:wrap(start)
    while not cq:empty() and not done() do assert(cq:step(1)) end
    h:stop()
  end)
else
  print(("%-18s %-9s not measured: cqueues is not installed for this Lua"):format(lua, "cqueues"))
end

local uv = try("luv")
if uv then
  local mquv = require "paho.mqtt.luv"
  pingpong("luv", function(client, start, on_stop, done)
    local h = mquv.attach(client)
    on_stop(function() h:stop() end)
    local t = uv.new_timer()
    t:start(0, 0, function() t:close() start() end)
    while not done() and uv.run("once") do end
    h:stop()
    uv.run("nowait")
  end)
else
  print(("%-18s %-9s not measured: luv is not installed for this Lua"):format(lua, "luv"))
end

local copas = try("copas")
if copas then
  local mqcopas = require "paho.mqtt.copas"
  pingpong("copas", function(client, start, on_stop, done)
    local h = mqcopas.attach(client)
    on_stop(function() h:stop() end)
    copas.addthread(start)
    mqcopas.loop(function() return h.stopped or done() end)
    h:stop()
    copas.step(0)
  end)
else
  print(("%-18s %-9s not measured: copas is not installed for this Lua"):format(lua, "copas"))
end
