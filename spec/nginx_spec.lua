-- paho.mqtt.nginx in a real nginx with lua-nginx-module (OpenResty's
-- LuaJIT): a worker's init_worker_by_lua starts a timer-driven client
-- subscribed to a topic; GET /pub?msg=... publishes (QoS 1, waiting for the
-- PUBACK with ngx.sleep) and GET /msgs lists what the client received.
--
-- nginx loads the LuaJIT build of the core (build/luajit), whatever Lua
-- runs this spec; the spec runs `make LUA=luajit all` first, which builds it
-- when it is missing or out of date. curl is the HTTP
-- client. Every wait is bounded, and nginx is stopped at the end.
local helper = require "helper"

local MODULES = "/usr/lib/nginx/modules"
local root = (function()
  local p = io.popen("pwd")
  local d = p:read("*l")
  p:close()
  return d
end)()

local function capture(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- alive and not a zombie (nginx daemonizes; PID 1 of a container may never reap it)
local function alive(pid)
  local stat = helper.read("/proc/" .. pid .. "/stat")
  return stat ~= nil and not stat:match("^%d+ %b() Z")
end

local function http_get(port, path)
  -- (curl hangs with `make asan`'s ASan preload)
  return capture(("env -u LD_PRELOAD curl -s -m 5 'http://127.0.0.1:%d%s' 2>&1"):format(port, path))
end

local CONF = [[
load_module MODULES/ndk_http_module.so;
load_module MODULES/ngx_http_lua_module.so;
USER
daemon on;
master_process on;
worker_processes 1;
pid PREFIX/nginx.pid;
error_log PREFIX/logs/error.log info;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path PREFIX/tmp/body;
  proxy_temp_path PREFIX/tmp/proxy;
  fastcgi_temp_path PREFIX/tmp/fastcgi;
  uwsgi_temp_path PREFIX/tmp/uwsgi;
  scgi_temp_path PREFIX/tmp/scgi;
  lua_package_path "ROOT/lua/?.lua;ROOT/lua/?/init.lua;;";
  lua_package_cpath "ROOT/build/luajit/?.so;;";
  init_worker_by_lua_block {
    local mqngx = require "paho.mqtt.nginx"
    local mqtt = mqngx.mqtt
    local state = { got = {}, subscribed = false }
    package.loaded.spec_state = state
    local client = assert(mqtt.client{ uri = "BROKER", id = "nginx-spec-" .. ngx.worker.pid() })
    client:on("connect", function()
      state.subscribed = assert(client:subscribe("TOPIC", 1)) == 1
    end)
    client:on("message", function(msg)
      mqtt.sleep(0.02) -- a suspended wait: the timer chain must wake it
      state.got[#state.got + 1] = msg.payload
    end)
    state.client = client
    state.handle = mqngx.attach(client, { connect = { keepalive = 30, timeout = 2 }, interval = 0.01 })
  }
  server {
    listen 127.0.0.1:PORT;
    location = /status { content_by_lua_block {
      local s = package.loaded.spec_state
      ngx.say(s.client:state(), " ", s.subscribed and "subscribed" or "not-subscribed", " pid=", ngx.worker.pid())
    } }
    location = /pub { content_by_lua_block {
      local s = package.loaded.spec_state
      local tok, err = s.client:publish("TOPIC", ngx.var.arg_msg, { qos = 1 })
      if not tok then ngx.say("error ", err) return end
      local ok, werr = require("paho.mqtt.nginx").wait(tok, 5)
      ngx.say(ok and "ok" or ("error " .. tostring(werr)))
    } }
    location = /msgs { content_by_lua_block {
      ngx.say(table.concat(package.loaded.spec_state.got, ","))
    } }
  }
}
]]

describe("nginx (lua-nginx-module)", function()
  local broker, prefix, port, worker_pid
  local topic = helper.uid("nginx/t")

  local function master_pid()
    return tonumber(helper.read(prefix .. "/nginx.pid") or "")
  end

  local function error_log()
    return helper.read(prefix .. "/logs/error.log") or ""
  end

  setup(function()
    for _, f in ipairs({ "/usr/sbin/nginx", MODULES .. "/ngx_http_lua_module.so", MODULES .. "/ndk_http_module.so",
                         "/usr/bin/curl" }) do
      assert(exists(f), f .. " is missing: install nginx, libnginx-mod-http-lua and curl (tools/deps.sh)")
    end
    -- (re)build the LuaJIT core if it is missing or older than src/
    -- (`make asan` preloads ASan into every program the specs start; make
    -- and nginx are not ours to check, and make breaks under it)
    local made = capture("env -u LD_PRELOAD make --no-print-directory -C '" .. root
      .. "' LUA=luajit all 2>&1; echo rc=$?")
    assert(made:match("rc=0%s*$") and exists(root .. "/build/luajit/paho/mqtt/core.so"),
      "could not build the LuaJIT core (make LUA=luajit all):\n" .. made)
    broker = helper.broker()
    prefix = helper.tmpdir() .. "/" .. helper.uid("nginx")
    assert(helper.sh(("mkdir -p %s/logs %s/tmp"):format(prefix, prefix)))
    local is_root = capture("id -u"):match("^0") ~= nil
    local started, out = false, ""
    for _ = 1, 10 do
      port = 20000 + math.random(0, 39999)
      local conf = CONF:gsub("%u+", {
        MODULES = MODULES, PREFIX = prefix, ROOT = root, BROKER = broker.uri, TOPIC = topic,
        PORT = tostring(port), USER = is_root and "user root;" or "",
      })
      local f = assert(io.open(prefix .. "/nginx.conf", "w"))
      f:write(conf)
      f:close()
      -- the environment is not nginx's business: keep the busted run's
      -- LUA_PATH/LUA_CPATH (relative, for another Lua) out of its defaults
      out = capture(("env -u LUA_PATH -u LUA_CPATH -u LUA_INIT -u LD_PRELOAD timeout 10 nginx -p %s -c %s/nginx.conf"
        .. " -e %s/logs/error.log 2>&1; echo rc=$?"):format(prefix, prefix, prefix))
      if out:match("rc=0%s*$") then started = true break end
      if not out:find("Address already in use", 1, true) then break end
    end
    assert(started, "nginx did not start:\n" .. out .. error_log())
  end)

  teardown(function()
    local pid = prefix and master_pid()
    if pid then
      helper.sh("kill -QUIT " .. pid .. " 2>/dev/null")
      local deadline = helper.now() + 5
      while (alive(pid) or (worker_pid and alive(worker_pid))) and helper.now() < deadline do helper.sleep(0.02) end
      for _, p in ipairs({ pid, worker_pid }) do
        if alive(p) then helper.sh("kill -KILL " .. p .. " 2>/dev/null") end
      end
    end
    helper.stop_all()
  end)

  it("a timer-driven client in a worker subscribes, publishes and receives", function()
    local status = ""
    local deadline = helper.now() + 20
    for _ = 1, 200 do -- the worker connects and subscribes from its first timers
      status = http_get(port, "/status")
      if status:find("connected subscribed", 1, true) or helper.now() > deadline then break end
      helper.sleep(0.05)
    end
    assert.matches("^connected subscribed pid=%d+", status, 1, false)
    worker_pid = tonumber(status:match("pid=(%d+)"))

    assert.are.equal("ok\n", http_get(port, "/pub?msg=hello"))
    assert.are.equal("ok\n", http_get(port, "/pub?msg=world"))

    local msgs = ""
    deadline = helper.now() + 20
    for _ = 1, 200 do
      msgs = http_get(port, "/msgs")
      if msgs == "hello,world\n" or helper.now() > deadline then break end
      helper.sleep(0.05)
    end
    assert.are.equal("hello,world\n", msgs)

    local log = error_log()
    assert.is_nil(log:match("[^\n]*%[alert%][^\n]*"), log)
    assert.is_nil(log:match("[^\n]*%[error%][^\n]*"), log)
    assert.is_nil(log:match("[^\n]*%[crit%][^\n]*"), log)
  end)

  it("stops: the worker closes its client and exits on QUIT", function()
    local pid = assert(master_pid())
    assert.is_true(alive(pid))
    assert.is_truthy(worker_pid)
    assert.is_true(helper.sh("kill -QUIT " .. pid))
    local deadline = helper.now() + 10
    while (alive(pid) or alive(worker_pid)) and helper.now() < deadline do helper.sleep(0.02) end
    assert.is_false(alive(worker_pid), "the nginx worker did not exit on QUIT")
    assert.is_false(alive(pid), "the nginx master did not exit on QUIT")
    local log = error_log()
    assert.is_nil(log:match("[^\n]*exited on signal[^\n]*"), log)
    -- the premature timer closed the client, which sent DISCONNECT (a
    -- worker that just died would leave "closed its connection" instead)
    local said = "Client nginx-spec-" .. worker_pid .. " disconnected."
    local mlog = ""
    for _ = 1, 100 do
      mlog = helper.read(broker.dir .. "/mosquitto.log") or ""
      if mlog:find(said, 1, true) then break end
      helper.sleep(0.02)
    end
    assert.is_truthy(mlog:find(said, 1, true), mlog)
  end)
end)
