--- Test PKI and TLS brokers for the specs.
--
--   local tls = require "tls"
--   local pki = tls.pki()        -- made once per run under helper.tmpdir()
--   pki.ca, pki.server_crt, pki.server_key, pki.client_crt, pki.client_key,
--   pki.client_key_enc (pass phrase pki.key_password), pki.other_ca (an
--   unrelated CA), pki.other_crt/other_key (signed by the test CA, but only for
--   the name other.example), pki.ca_path (a hashed directory holding the CA)
--   local b = tls.broker{ require_certificate = true }
--   b.tls_port, b.tls_uri ("ssl://127.0.0.1:<tls_port>"), b.uri (plain listener)
--
-- Everything is made with the `openssl` command line tool: EC P-256 keys,
-- certificates valid for two days, the server certificate for
-- subjectAltName IP:127.0.0.1 and DNS:localhost.
local helper = require "helper"

local M = {}

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function run(dir, cmd)
  local log = dir .. "/openssl.log"
  if not helper.sh(("cd %s && (%s) >>%s 2>&1"):format(q(dir), cmd, q(log))) then
    error("tls: openssl failed: " .. cmd .. "\n" .. (helper.read(log) or ""), 3)
  end
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local EC = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1"

local function ca(dir, name, cn)
  run(dir, ("openssl req -x509 %s -nodes -days 2 -subj %s -keyout %s.key -out %s.crt"
    .. " -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign'")
    :format(EC, q("/CN=" .. cn), name, name))
end

-- a leaf certificate `name`.crt/.key signed by `ca_name`, with extensions `ext`
local function leaf(dir, name, cn, ca_name, ext)
  write(("%s/%s.ext"):format(dir, name), ext)
  run(dir, ("openssl req %s -nodes -subj %s -keyout %s.key -out %s.csr"):format(EC, q("/CN=" .. cn), name, name))
  run(dir, ("openssl x509 -req -days 2 -in %s.csr -CA %s.crt -CAkey %s.key -CAcreateserial -out %s.crt -extfile %s.ext")
    :format(name, ca_name, ca_name, name, name))
end

local pki
--- Makes the test PKI (once per run) and returns the paths.
function M.pki()
  if pki then return pki end
  local dir = helper.tmpdir() .. "/pki"
  helper.sh("rm -rf " .. q(dir) .. " && mkdir -p " .. q(dir .. "/capath"))
  ca(dir, "ca", "paho-mqtt-lua test CA")
  ca(dir, "other-ca", "some other CA")
  leaf(dir, "server", "localhost", "ca",
    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    .. "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
  leaf(dir, "other", "other.example", "ca",
    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    .. "subjectAltName=DNS:other.example\n")
  leaf(dir, "client", "test-client", "ca",
    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n")
  local pass = "kp-" .. helper.uid("pw")
  run(dir, ("openssl pkey -in client.key -aes256 -passout pass:%s -out client-enc.key"):format(pass))
  run(dir, "cp ca.crt capath/ && openssl rehash capath")
  pki = {
    dir = dir,
    ca = dir .. "/ca.crt",
    ca_path = dir .. "/capath",
    other_ca = dir .. "/other-ca.crt",
    server_crt = dir .. "/server.crt", server_key = dir .. "/server.key",
    other_crt = dir .. "/other.crt", other_key = dir .. "/other.key",
    client_crt = dir .. "/client.crt", client_key = dir .. "/client.key",
    client_key_enc = dir .. "/client-enc.key", key_password = pass,
  }
  return pki
end

-- TCP ports something listens on now (IPv4 and IPv6)
local function listening()
  local ports = {}
  for _, f in ipairs { "/proc/net/tcp", "/proc/net/tcp6" } do
    for line in ((helper.read(f) or "") .. ""):gmatch("[^\n]+") do
      local port, st = line:match("^%s*%d+:%s+%x+:(%x+)%s+%x+:%x+%s+(%x+)")
      if port and st == "0A" then ports[tonumber(port, 16)] = true end
    end
  end
  return ports
end

--- A port nothing listens on now (the broker start retries should one be
-- taken meanwhile).
function M.free_port()
  local used = listening()
  for _ = 1, 200 do
    local p = helper.listen_port()
    if not used[p] then return p end
  end
  error("tls: no free port found")
end

--- A mosquitto with its usual plain listener plus a TLS listener on
-- 127.0.0.1:<tls_port>. opts: cert/key (default the 127.0.0.1 server
-- certificate), require_certificate (boolean), config (more lines, after
-- the TLS listener's).
function M.broker(opts)
  opts = opts or {}
  local p = M.pki()
  local last
  for _ = 1, 2 do
    local port = M.free_port()
    local conf = {
      "listener " .. port .. " 127.0.0.1",
      "cafile " .. p.ca,
      "certfile " .. (opts.cert or p.server_crt),
      "keyfile " .. (opts.key or p.server_key),
    }
    if opts.require_certificate then conf[#conf + 1] = "require_certificate true" end
    for _, l in ipairs(opts.config or {}) do conf[#conf + 1] = l end
    local ok, b = pcall(helper.broker, { config = conf })
    if ok then
      b.tls_port = port
      b.tls_uri = "ssl://127.0.0.1:" .. port
      return b
    end
    last = b
  end
  error("tls: could not start a TLS broker: " .. tostring(last), 2)
end

return M
