--- paho.mqtt.token (internal): tokens, what a request returns, and the client's table of them.
--
-- A token is finished once, by the session when the request's completion
-- event is dispatched (or by close); token:wait waits through the scheduler.
local core = require "paho.mqtt.core"
local options = require "paho.mqtt.options"
local sched = require "paho.mqtt.scheduler"

local type, pairs, error, setmetatable, getmetatable = type, pairs, error, setmetatable, getmetatable
local now, wait_for = core.now, sched.wait_for
local fmt = string.format

local Token = {}
Token.__index = Token

local K = { Token = Token }

-- The fields a token may get later are named in the constructor (as nil) so
-- that the table is made with room for them: no rehash per publish.
local function new_token(client, kind)
  return setmetatable({ _client = client, kind = kind, qos = nil, status = nil, message = nil,
    code = nil, value = nil, offline = nil }, Token)
end
K.new = new_token

function K.finish(tok, ok, msg, code, value)
  if tok.status ~= nil then return end
  tok.status = ok
  tok.message, tok.code, tok.value = msg, code, value
end

local function token_result(tok)
  if tok.status == true then return true, true end
  return true, nil, tok.message, tok.code
end

--- true once the request has completed (successfully or not).
function Token:done()
  if getmetatable(self) ~= Token then error("bad self to token:done (token expected)", 2) end
  return self.status ~= nil
end

--- Waits for completion: true | nil, message, code.
function Token:wait(timeout)
  if getmetatable(self) ~= Token then error("bad self to token:wait (token expected)", 2) end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
    error("bad argument #1 to wait (non-negative number of seconds expected, got "
      .. options.describe(timeout) .. ")", 2)
  end
  if self.status ~= nil then
    if self.status then return true end
    return nil, self.message, self.code
  end
  local client = self._client
  local gen = client._loss_gen
  local function cond()
    if self.status ~= nil then return token_result(self) end
    if client._closed then return true, nil, fmt("%s: the client was closed", self.kind), "closed" end
    if client._loss_gen ~= gen then
      return true, nil, fmt("%s: the connection was lost while waiting (%s)", self.kind,
        client._loss and client._loss.message or "unknown cause"), "disconnected"
    end
    return false
  end
  return wait_for(cond, timeout and (now() + timeout),
    fmt("%s: no answer within %g s", self.kind, timeout or 0))
end

-- file a new token (or `tok`) under paho's token number `token` in the
-- client's table, where the session finds it when the request completes
function K.track(self, token, kind, tok)
  tok = tok or new_token(self, kind)
  local tokens = self._tokens
  if tokens[token] then
    -- paho reused the id before we saw the earlier completion (publishes
    -- have numbers of their own, negative, which never repeat): queue them
    -- in order, O(1) each way
    local more = self._more
    if not more then
      more = {}
      self._more = more
    end
    local q = more[token]
    if not q then
      q = { first = 1, last = 0 }
      more[token] = q
    end
    q.last = q.last + 1
    q[q.last] = tok
  else
    tokens[token] = tok
  end
  return tok
end

-- the token filed under `token` (the oldest, when paho reused the number),
-- taken out of the client's table; nil for a request the client did not make
function K.take(self, token)
  local tokens = self._tokens
  local tok = tokens[token]
  if not tok then return nil end
  local q = self._more and self._more[token]
  if q and q.first <= q.last then
    tokens[token] = q[q.first]
    q[q.first] = nil
    q.first = q.first + 1
  else
    tokens[token] = nil
  end
  return tok
end

-- every token still pending: f(tok) for each
function K.each(self, f)
  for _, tok in pairs(self._tokens) do f(tok) end
  for _, q in pairs(self._more or {}) do
    for i = q.first, q.last do f(q[i]) end
  end
end

return K
