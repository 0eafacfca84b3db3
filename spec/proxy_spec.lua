-- connect{http_proxy = "http://host:port"}: the connection goes through an
-- HTTP proxy (CONNECT method), for tcp://, ssl:// and ws://. The proxy is a
-- few lines of Node.js (no npm packages) on a free 127.0.0.1 port that logs
-- each CONNECT it tunnels; the brokers are mosquitto (plain and TLS
-- listeners) and aedes for websockets.
local helper = require "helper"
local tls = require "tls"
local aedes = require "aedes"
local mqtt = require "paho.mqtt"

local function until_(cond, timeout)
  return helper.eventually(cond, timeout, mqtt)
end

-- connect timeout: a TLS handshake under valgrind, with other suites
-- beside it, once took more than 5 s (CI, 2026-11-30)
local CONNECT_T = os.getenv("PMQ_VALGRIND") and 20 or 5

local PROXY = [[
const http = require('http'), net = require('net'), fs = require('fs')
const [portfile, maxSeconds] = process.argv.slice(2)
const server = http.createServer((req, res) => { res.writeHead(405); res.end() })
server.on('connect', (req, sock, head) => {
  console.log('CONNECT ' + req.url)
  const i = req.url.lastIndexOf(':')
  const up = net.connect(Number(req.url.slice(i + 1)), req.url.slice(0, i), () => {
    sock.write('HTTP/1.1 200 Connection established\r\n\r\n')
    if (head && head.length) up.write(head)
    up.pipe(sock)
    sock.pipe(up)
  })
  up.on('error', () => sock.destroy())
  sock.on('error', () => up.destroy())
})
server.listen(0, '127.0.0.1', () => fs.writeFileSync(portfile, server.address().port + '\n'))
setTimeout(() => process.exit(0), Number(maxSeconds) * 1000).unref()
process.on('SIGTERM', () => process.exit(0))
]]

local function alive(pid)
  local stat = helper.read("/proc/" .. pid .. "/stat")
  return stat ~= nil and not stat:match("^%d+ %b() Z")
end

-- starts the proxy; returns {port, url, log(), stop()}
local function start_proxy()
  local base = helper.tmpdir() .. "/proxy-" .. helper.uid("p")
  local f = assert(io.open(base .. ".js", "w"))
  f:write(PROXY)
  f:close()
  local p = io.popen(("node '%s.js' '%s.port' 300 >'%s.out' 2>&1 & echo $!"):format(base, base, base))
  local pid = tonumber(p:read("*l"))
  p:close()
  local port
  until_(function()
    port = tonumber((helper.read(base .. ".port") or ""):match("^(%d+)\n"))
    return port ~= nil or not alive(pid)
  end, 10)
  assert(port, "the proxy did not start: " .. (helper.read(base .. ".out") or ""))
  return {
    port = port,
    url = "http://127.0.0.1:" .. port,
    log = function() return helper.read(base .. ".out") or "" end,
    stop = function()
      helper.sh("kill " .. pid .. " 2>/dev/null")
      local deadline = helper.now() + 5
      while alive(pid) and helper.now() < deadline do helper.sleep(0.02) end
      if alive(pid) then helper.sh("kill -9 " .. pid .. " 2>/dev/null") end
    end,
  }
end

local function round_trip(c)
  local topic = helper.uid("px/t")
  local got
  c:on("message", function(m) got = m end)
  assert(c:subscribe(topic, 1))
  assert(c:publish(topic, "through the proxy", { qos = 1 }):wait(5))
  assert.is_true(until_(function() return got ~= nil end, 5))
  assert.are.equal("through the proxy", got.payload)
end

describe("http_proxy", function()
  local proxy, pki, b
  setup(function()
    proxy = start_proxy()
    pki = tls.pki()
    b = tls.broker()
  end)
  teardown(function()
    if proxy then proxy.stop() end
    helper.stop_all()
  end)

  it("tunnels tcp:// through the proxy", function()
    local c = assert(mqtt.client { uri = b.uri, id = helper.uid("pxtcp") })
    local ok, info = c:connect { http_proxy = proxy.url, timeout = CONNECT_T }
    assert.is_true(ok, info)
    assert.truthy(proxy.log():find("CONNECT 127.0.0.1:" .. b.port, 1, true), proxy.log())
    round_trip(c)
    c:close()
  end)

  it("tunnels ssl:// through the proxy", function()
    local c = assert(mqtt.client { uri = b.tls_uri, id = helper.uid("pxtls") })
    local ok, info = c:connect { http_proxy = proxy.url, timeout = CONNECT_T, tls = { ca_file = pki.ca } }
    c:close()
    -- KNOWN FAILURE (src/requests.c): paho 1.3.12 strips "http://" from
    -- httpProxy but not from httpsProxy (the proxy it uses for TLS), and
    -- looks up "http://127.0.0.1" as a host name (trace: "getaddrinfo
    -- failed for addr http://127.0.0.1"); today connect returns
    -- nil, "connect failed: paho code -1 (paho code -1)", "network"
    assert.is_true(ok, info)
    assert.truthy(proxy.log():find("CONNECT 127.0.0.1:" .. b.tls_port, 1, true), proxy.log())
  end)

  it("tunnels ws:// through the proxy", function()
    local s = aedes.start()
    local c = assert(mqtt.client { uri = s.uri, id = helper.uid("pxws"), version = 4 })
    local ok, info = c:connect { http_proxy = proxy.url, timeout = CONNECT_T }
    assert.is_true(ok, info)
    assert.truthy(proxy.log():find("CONNECT 127.0.0.1:" .. s.port, 1, true), proxy.log())
    round_trip(c)
    c:close()
    s:stop()
  end)

  it("fails with 'network' when the proxy is not there", function()
    local c = assert(mqtt.client { uri = b.uri, id = helper.uid("pxdead") })
    local ok, msg, code = c:connect { http_proxy = "http://127.0.0.1:" .. tls.free_port(), timeout = 3 }
    c:close()
    assert.is_nil(ok)
    assert.are.equal("network", code)
    assert.is_string(msg)
  end)
end)
