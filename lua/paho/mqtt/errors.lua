--- paho.mqtt.errors (internal): what a failed request or connect is called, as the contract says.
--
-- paho's return codes, the broker's reason codes and CONNACK return codes
-- become a message a person can act on and one of the contract's codes
-- ("refused", "network", "timeout", "disconnected", "not_connected",
-- "closed", "error"); a connect that failed on the network is tried once
-- more on its own (src/probe.c) to name the host, port and cause.
local core = require "paho.mqtt.core"
local sched = require "paho.mqtt.scheduler"

local pcall, tonumber, tostring = pcall, tonumber, tostring
local now, spawn, sleep = core.now, sched.spawn, sched.sleep
local fmt = string.format
local RC = core.rc -- paho's return codes by name (src/codes.c)

local E = {}

function E.reason_text(code)
  return fmt("0x%02X %s", code, core.reason(code))
end
local reason_text = E.reason_text

local connack3 = {
  [1] = "unacceptable protocol version", [2] = "identifier rejected",
  [3] = "server unavailable", [4] = "bad user name or password", [5] = "not authorized",
}

-- host, port of a URI ("tcp://host:1883", "wss://[::1]:443/mqtt")
local function host_port(uri)
  local scheme, rest = uri:match("^(%a+)://(.*)$")
  if not scheme then return nil end
  local host, port = rest:match("^%[([^%]]+)%]:(%d+)")
  if not host then host, port = rest:match("^([^:/]+):(%d+)") end
  return host, tonumber(port), scheme
end

local PROBE_TIMEOUT = 1 -- s: how long explain's own connect may take

-- A connect that failed on the network: paho 1.3.12 says "TCP/TLS connect
-- failure" (or nothing) for a refused port, an unknown host and a dead
-- route alike, so try the same host:port once (src/probe.c, on a thread of
-- its own) and say what happened; then done(message). Not network: done(msg)
-- at once.
function E.explain(self, network, msg, done)
  local uri = self._uris[self._uri_index or 1] or ""
  local host, port, scheme = host_port(uri)
  if not network or not host or (self._copts and self._copts.http_proxy) then return done(msg) end
  local ok, probe = pcall(core.probe, host, port, PROBE_TIMEOUT)
  if not ok then return done(msg) end
  local paho = msg:gsub("^connect failed: ", "")
  local where = fmt("connect failed: %s:%d: ", host, port)
  spawn(self, "connect", function()
    local deadline = now() + PROBE_TIMEOUT + 0.5
    local tcp, cause = probe:result()
    while tcp == nil and now() < deadline and not self._closed do
      sleep(0.01)
      tcp, cause = probe:result()
    end
    if tcp == nil then return done(msg) end
    if not tcp then return done(where .. cause .. " [paho: " .. paho .. "]") end
    if scheme == "ssl" or scheme == "wss" then
      return done(where .. "the TCP connection works, so the TLS handshake failed [paho: " .. paho .. "]")
    end
    done(where .. "the broker accepted the TCP connection and closed it before its CONNACK "
      .. "(the broker's log says why) [paho: " .. paho .. "]")
  end)
end

function E.op_failure(self, kind, rc, reason, text)
  if kind == "connect" then
    if self.version == 5 and reason and reason >= 0x80 then
      return fmt("connect refused: %s", reason_text(reason)), "refused", reason
    elseif self.version == 5 and rc and rc >= 0x80 and rc <= 0xA2 then
      -- paho 1.3.12 reports a refusing CONNACK's reason code as its return code
      return fmt("connect refused: %s", reason_text(rc)), "refused", rc
    elseif self.version ~= 5 and rc >= 1 and rc <= 5 then
      return fmt("connect refused: CONNACK return code %d %s", rc, connack3[rc]), "refused", rc
    end
    local t = text or "paho gave no reason"
    if t:find("timeout", 1, true) then return "connect timed out: " .. t, "timeout" end
    if t:find("certificate verify failed", 1, true) then
      t = t .. "; the broker's certificate is not signed by a CA in tls.ca_file / tls.ca_path, "
        .. "or does not name the host in the URI (tls.verify = false turns the check off)"
    elseif t:find("TLS: ", 1, true) and (t:find("pkcs12", 1, true) or t:find("decrypt", 1, true)
        or t:find("PEM", 1, true) or t:find("key", 1, true)) then
      t = t .. "; check tls.key_file and tls.key_password (the password of an encrypted key)"
    elseif self._copts and self._copts.tls and (t:find("TCP", 1, true) or t:find("socket", 1, true)) then
      -- paho often reports a failed TLS handshake with no reason at all
      t = t .. "; if the broker is reachable, the TLS handshake failed: check tls.ca_file / tls.ca_path, "
        .. "that the certificate names the host name in the URI, a client certificate (tls.cert_file, "
        .. "tls.key_file, tls.key_password) if the broker requires one, and tls.ciphers"
    end
    return "connect failed: " .. t .. (rc and fmt(" (paho code %d)", rc) or ""), "network"
  end
  if rc == RC.OPERATION_INCOMPLETE then
    if self._closed then return fmt("%s: not completed: the client was closed", kind), "closed" end
    -- paho 1.3.12 fails a request with -11 only when it drops the session
    -- state (MQTTAsync_cleanSession: a CONNACK with session_present false
    -- or Clean Start, or a session that ends with its connection) or its
    -- handle (see rebuilt in complete_op); the core knows why the
    -- connection ended
    return fmt("%s: not completed: the session it belonged to ended (the broker kept no session, "
      .. "or it ends with the connection); %s", kind, self._c:not_connected()), "disconnected"
  end
  if reason and reason >= 0x80 then
    return fmt("%s refused: %s", kind, reason_text(reason)), "refused", reason
  end
  if kind == "subscribe" and rc == 0x80 then
    -- paho reports a 3.1.1 SUBACK failure (0x80) for a single filter as a failure
    return "subscribe refused: the broker returned failure 0x80", "refused", 0x80
  end
  if rc == RC.DISCONNECTED then
    return kind .. ": " .. self._c:not_connected(), "not_connected"
  end
  if rc == RC.PERSISTENCE_ERROR and kind == "publish" then
    return "publish: paho could not write the message to its persistence store (paho code -2); "
      .. "the message was not delivered", "error"
  end
  if rc == RC.FAILURE and kind == "publish" then
    -- paho 1.3.12 (MQTTAsync_processCommand): writing the PUBLISH failed, so
    -- it closed the connection and failed the request (complete_op marks the
    -- client damaged; core_connect rebuilds paho's handle)
    local cause = self._c:is_connected() and "" or ": " .. self._c:not_connected()
    if self._persist then
      -- paho keeps a copy in its store (written before the socket): the fresh paho handle
      -- the client starts at its next connect sends it from there
      return fmt("publish: the connection failed while the message was being written (paho code -1)%s; "
        .. "the client starts a fresh paho handle at its next connect, which sends the message again "
        .. "from the persistence store, untracked", cause), "disconnected"
    end
    return fmt("publish: the connection failed while the message was being written (paho code -1)%s; "
      .. "the message was not delivered (the client starts a fresh paho handle at its next connect)",
      cause), "disconnected"
  end
  return fmt("%s failed: %s (paho code %d)", kind, text or "unknown error", rc or 0), "error"
end

-- the damage a -1/-2 publish failure leaves (see complete_op), as the
-- failed tokens of a fresh handle name it
function E.write_failed(rc)
  return fmt("a publish failed while being written (paho code %d)", rc)
end

-- the message of a request that failed because the client replaced paho's
-- handle (see paho.mqtt.workarounds, damaged sessions)
function E.rebuilt(self, kind, why)
  return fmt("%s: not completed: the client started a fresh paho handle, because %s%s",
    kind, tostring(why), self._persist and kind == "publish"
    and "; a publish paho had saved in the persistence store is sent again from there, untracked" or ""),
    "disconnected"
end

return E
