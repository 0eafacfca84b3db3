-- Bad input: a table of wrong calls to every public function and option, each
-- with the exact error the API contract asks for (/work/shared/API-CONTRACT.md,
-- "Errors"): a programming error raises a message that names the function,
-- the argument and what was expected; a run-time failure returns
-- nil, message, code. The wrong calls are made on one connected client (and
-- one MQTT 3.1.1 client), which must still work normally afterwards: no wrong
-- call may break its connection, crash or hang.
--
-- The expected messages follow the wording the binding already uses. Where
-- the binding does not do what the contract says yet (no error at all, a
-- garbled message, a connection the broker drops as malformed, a wait that
-- never ends), the case keeps the contract's answer and fails until the core
-- is fixed. Calls that may never return run in a child process that is
-- killed after 5 s.
local mqtt = require "paho.mqtt"
local helper = require "helper"

local broker
local c, c4          -- connected MQTT 5 and 3.1.1 clients: the wrong calls go to them
local closed         -- a client that was closed
local pending        -- a token that never completes (offline queue, never connected)
local made = {}      -- clients a case made; closed after it

local unpack = table.unpack or unpack -- luacheck: ignore 113
local function pack(...) return { n = select("#", ...), ... } end

local NAN = tostring(0 / 0) -- "nan" or "-nan", as the platform's tostring writes it
local K64 = string.rep("a", 65536) -- one byte over MQTT's string limit
local V64 = string.rep("v", 65536)

-- a client of the shared broker that a case may use; closed after the case
local function fresh(opts)
  opts = opts or {}
  local x = assert(mqtt.client{ uri = opts.uri or broker.uri, id = opts.id or helper.uid("bad"),
    version = opts.version, offline_queue = opts.offline_queue })
  made[#made + 1] = x
  return x
end

-- a connect that has no business reaching the broker: bounded, should it get there
local function connect(opts, version)
  local x = fresh{ version = version }
  opts.timeout = opts.timeout or 2
  return x:connect(opts)
end

-- the message without the "file:line: " position Lua may put in front
local function bare(err)
  return (tostring(err):gsub("^[%w%./_%-]+:%d+: ", "", 1))
end

-- A call that may never return (a wait on NaN seconds) runs in a child
-- process, killed after 5 s: the expression `expr`, with `mqtt`, a client `c`
-- (never connected, offline_queue 1) and a token `tok` that never completes.
-- Raises what the call raised; returns true when it returned.
local child_seq = 0
local function in_child(expr)
  child_seq = child_seq + 1
  local path = ("%s/badinput-child-%d.lua"):format(helper.tmpdir(), child_seq)
  local f = assert(io.open(path, "w"))
  f:write(([[
local mqtt = require "paho.mqtt"
local c = assert(mqtt.client{ uri = %q, offline_queue = 1 })
local tok = assert(c:publish("t", "x", { qos = 1 }))
local ok, err = pcall(function() return %s end)
io.write(ok and "RETURNED" or ("RAISED\t" .. tostring(err)))
c:close()
]]):format(broker.uri, expr))
  f:close()
  local lua = os.getenv("PMQ_LUA") or "lua5.4"
  local p = io.popen(("timeout -k 2 5 %s %s 2>&1; rc=$?; echo; echo \"rc=$rc\""):format(lua, path))
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  if rc == 124 or rc == 137 then
    error({ hung = ("%s did not return within 5 s (the child was killed)"):format(expr) })
  end
  local raised = out:match("RAISED\t(.-)\n")
  if raised then error(raised, 0) end
  if out:find("RETURNED", 1, true) then return true end
  error({ hung = ("the child running %s failed (rc %s): %s"):format(expr, tostring(rc), out) })
end

-- Each case: { name, function() ... end, "message" } -> it must raise exactly
-- that message; or { name, function() ... end, code = "...", message = pattern }
-- -> it must return nil, a message matching pattern, code (code may be a set
-- {code = true, ...} where more than one is right).
local cases = {}
local function group(title, list)
  cases[#cases + 1] = { title = title, list = list }
end

group("mqtt.client", {
  { "options not a table", function() return mqtt.client("tcp://127.0.0.1:1883") end,
    "bad argument to client (options table expected, got string 'tcp://127.0.0.1:1883')" },
  { "uri not a string", function() return mqtt.client{ uri = 42 } end,
    "bad option 'uri' to client (URI string expected, got number 42)" },
  { "uri with an unknown scheme", function() return mqtt.client{ uri = "http://x:1883" } end,
    "bad option 'uri' to client (tcp://, mqtt://, ssl://, mqtts://, ws:// or wss:// URI expected, got string "
    .. "'http://x:1883')" },
  { "uri without a scheme", function() return mqtt.client{ uri = "127.0.0.1:1883" } end,
    "bad option 'uri' to client (URI like 'tcp://host:1883' expected, got string '127.0.0.1:1883')" },
  { "uris not a list", function() return mqtt.client{ uris = "tcp://a:1883" } end,
    "bad option 'uris' to client (table expected, got string 'tcp://a:1883')" },
  { "uris empty", function() return mqtt.client{ uris = {} } end,
    "bad option 'uris' to client (non-empty list expected)" },
  { "uris with a number", function() return mqtt.client{ uris = { "tcp://a:1883", 5 } } end,
    "bad option 'uris' to client (item 2: URI string expected, got number 5)" },
  { "uri and uris", function() return mqtt.client{ uri = "tcp://a:1883", uris = { "tcp://b:1883" } } end,
    "bad options to client (give 'uri' or 'uris', not both)" },
  { "id not a string", function() return mqtt.client{ id = 5 } end,
    "bad option 'id' to client (string expected, got number 5)" },
  { "id with a zero byte (it would be cut short)", function() return mqtt.client{ id = "a\0b" } end,
    "bad option 'id' to client (contains a zero byte)" },
  { "id not valid UTF-8", function() return mqtt.client{ id = "id\255" } end,
    "bad option 'id' to client (not valid UTF-8)" },
  { "id over 65535 bytes", function() return mqtt.client{ id = K64 } end,
    "bad option 'id' to client (longer than 65535 bytes)" },
  { "empty id on MQTT 3.1", function() return mqtt.client{ id = "", version = 3 } end,
    "bad option 'id' to client (MQTT 3.1 needs a client id)" },
  { "version 6", function() return mqtt.client{ version = 6 } end,
    "bad option 'version' to client (3, 4, 5 expected, got number 6)" },
  { "version as a string", function() return mqtt.client{ version = "5" } end,
    "bad option 'version' to client (3, 4, 5 expected, got string '5')" },
  { "persistence 'disk'", function() return mqtt.client{ persistence = "disk" } end,
    "bad option 'persistence' to client ('memory' or {dir = 'path'} expected, got string 'disk')" },
  { "persistence without dir", function() return mqtt.client{ persistence = {} } end,
    "bad option 'persistence' to client ('memory' or {dir = 'path'} expected, got table)" },
  { "offline_queue -1", function() return mqtt.client{ offline_queue = -1 } end,
    "bad option 'offline_queue' to client (integer 0..1073741824 expected, got number -1)" },
  { "queue_max 0", function() return mqtt.client{ queue_max = 0 } end,
    "bad option 'queue_max' to client (integer 1..1073741824 expected, got number 0)" },
  { "queue_max_bytes 10", function() return mqtt.client{ queue_max_bytes = 10 } end,
    "bad option 'queue_max_bytes' to client (integer 1024..2147483647 expected, got number 10)" },
  { "misspelt option", function() return mqtt.client{ versoin = 5 } end,
    "unknown option 'versoin' to client (did you mean 'version'?)" },
  { "clientid (another client's name)", function() return mqtt.client{ clientid = "x" } end,
    "unknown option 'clientid' to client (did you mean 'id'?)" },
  { "option with a number key", function() return mqtt.client{ "tcp://a:1883" } end,
    "unknown option '1' to client" },
})

group("client:connect", {
  { "options not a table", function() return c:connect("tcp://x") end,
    "bad argument to connect (options table expected, got string 'tcp://x')" },
  { "keepalive -1", function() return connect{ keepalive = -1 } end,
    "bad option 'keepalive' to connect (integer 0..65535 expected, got number -1)" },
  { "keepalive 70000", function() return connect{ keepalive = 70000 } end,
    "bad option 'keepalive' to connect (integer 0..65535 expected, got number 70000)" },
  { "keepalive 1.5", function() return connect{ keepalive = 1.5 } end,
    "bad option 'keepalive' to connect (integer 0..65535 expected, got number 1.5)" },
  { "keepalive NaN", function() return connect{ keepalive = 0 / 0 } end,
    "bad option 'keepalive' to connect (integer 0..65535 expected, got number " .. NAN .. ")" },
  { "misspelt keepalive", function() return connect{ keep_alive = 5 } end,
    "unknown option 'keep_alive' to connect (did you mean 'keepalive'?)" },
  { "clean_start 'yes'", function() return connect{ clean_start = "yes" } end,
    "bad option 'clean_start' to connect (true, false or 'first' expected, got string 'yes')" },
  { "session_expiry -1", function() return connect{ session_expiry = -1 } end,
    "bad option 'session_expiry' to connect (integer 0..4294967295 expected, got number -1)" },
  { "session_expiry on MQTT 3.1.1", function() return connect({ session_expiry = 10 }, 4) end,
    "bad option 'session_expiry' to connect (MQTT 5 only; this client uses 3.1.1)" },
  { "timeout 0", function() return connect{ timeout = 0 } end,
    "bad option 'timeout' to connect (number 0.001..3600 expected, got number 0)" },
  { "username not a string", function() return connect{ username = 1 } end,
    "bad option 'username' to connect (string expected, got number 1)" },
  { "username not valid UTF-8", function() return connect{ username = "user\255" } end,
    "bad option 'username' to connect (not valid UTF-8)" },
  { "username with a zero byte (it would be cut short)", function() return connect{ username = "a\0b" } end,
    "bad option 'username' to connect (contains a zero byte)" },
  { "username over 65535 bytes", function() return connect{ username = K64 } end,
    "bad option 'username' to connect (longer than 65535 bytes)" },
  { "password not a string", function() return connect{ password = {} } end,
    "bad option 'password' to connect (string expected, got table)" },
  { "password over 65535 bytes", function() return connect{ password = K64 } end,
    "bad option 'password' to connect (longer than 65535 bytes)" },
  { "will not a table", function() return connect{ will = "bye" } end,
    "bad option 'will' to connect (table expected, got string 'bye')" },
  { "will without a topic", function() return connect{ will = { payload = "x" } } end,
    "bad option 'will.topic' to connect (non-empty string expected)" },
  { "will topic with a wildcard", function() return connect{ will = { topic = "a/+" } } end,
    "bad option 'will.topic' to connect (wildcards are not allowed in a topic name)" },
  { "will topic with a zero byte", function() return connect{ will = { topic = "a\0b" } } end,
    "bad option 'will.topic' to connect (contains a zero byte)" },
  { "will topic not valid UTF-8", function() return connect{ will = { topic = "a\255" } } end,
    "bad option 'will.topic' to connect (not valid UTF-8)" },
  { "will topic over 65535 bytes", function() return connect{ will = { topic = K64 } } end,
    "bad option 'will.topic' to connect (longer than 65535 bytes)" },
  { "will payload over 65535 bytes", function() return connect{ will = { topic = "t", payload = V64 } } end,
    "bad option 'will.payload' to connect (longer than 65535 bytes)" },
  { "will qos 3", function() return connect{ will = { topic = "t", qos = 3 } } end,
    "bad option 'will.qos' to connect (integer 0..2 expected, got number 3)" },
  { "will payload a number", function() return connect{ will = { topic = "t", payload = 1 } } end,
    "bad option 'will.payload' to connect (string expected, got number 1)" },
  { "will.message (Python paho's name)", function() return connect{ will = { topic = "t", message = "bye" } } end,
    "unknown option 'will.message' to connect (did you mean 'will.payload'?)" },
  { "clean_session (3.1.1's name)", function() return connect{ clean_session = false } end,
    "unknown option 'clean_session' to connect (did you mean 'clean_start'?)" },
  { "tls on a tcp:// URI (it would connect in plain text)", function()
      return fresh{ uri = "tcp://127.0.0.1:1" }:connect{ tls = { verify = false }, timeout = 2 }
    end,
    "bad option 'tls' to connect (the URI 'tcp://127.0.0.1:1' is not a TLS one: "
    .. "tls applies to ssl://, mqtts:// and wss:// URIs)" },
  { "misspelt will option", function() return connect{ will = { topci = "t" } } end,
    "unknown option 'will.topci' to connect (did you mean 'will.topic'?)" },
  { "will property of the wrong type",
    function() return connect{ will = { topic = "t", properties = { will_delay_interval = "1" } } } end,
    "bad property 'will_delay_interval' to connect (will) (integer expected, got string)" },
  { "tls verify 'yes'", function() return connect{ tls = { verify = "yes" } } end,
    "bad option 'tls.verify' to connect (boolean expected, got string 'yes')" },
  { "tls alpn with an empty name", function()
      return fresh{ uri = "ssl://127.0.0.1:1" }:connect{ tls = { alpn = { "" } }, timeout = 2 }
    end,
    "bad option 'tls.alpn' to connect (list of 1..255 byte strings expected)" },
  { "reconnect 'yes'", function() return connect{ reconnect = "yes" } end,
    "bad option 'reconnect' to connect (boolean or {min = s, max = s} expected, got string 'yes')" },
  { "reconnect min > max", function() return connect{ reconnect = { min = 10, max = 1 } } end,
    "bad option 'reconnect' to connect (min 10 is greater than max 1)" },
  { "misspelt reconnect option", function() return connect{ reconnect = { mn = 1 } } end,
    "unknown option 'reconnect.mn' to connect (did you mean 'reconnect.min'?)" },
  { "credentials and username", function() return connect{ credentials = function() end, username = "u" } end,
    "bad options to connect (give 'credentials' or 'username'/'password', not both)" },
  { "credentials returning a number", function() return connect{ credentials = function() return 1 end } end,
    "bad option 'credentials' to connect (the function must return user, password as strings or nil)" },
  { "http_proxy a number", function() return connect{ http_proxy = 1 } end,
    "bad option 'http_proxy' to connect (string expected, got number 1)" },
  { "properties not a table", function() return connect{ properties = "x" } end,
    "bad option 'properties' to connect (properties table expected, got string 'x')" },
  { "properties on MQTT 3.1.1", function() return connect({ properties = { receive_maximum = 10 } }, 4) end,
    "bad option 'properties' to connect (MQTT 5 only)" },
  { "misspelt property", function() return connect{ properties = { recieve_maximum = 10 } } end,
    "unknown property 'recieve_maximum' to connect (did you mean 'receive_maximum'?)" },
  { "property named by a number", function() return connect{ properties = { 2 } } end,
    "bad 'properties' to connect (property names are strings, got number)" },
  { "receive_maximum 0 (a protocol error)", function() return connect{ properties = { receive_maximum = 0 } } end,
    "bad property 'receive_maximum' to connect (0 out of range 1..65535)" },
  { "maximum_packet_size 0 (a protocol error)",
    function() return connect{ properties = { maximum_packet_size = 0 } } end,
    "bad property 'maximum_packet_size' to connect (0 out of range 1..4294967295)" },
  { "request_response_information 2",
    function() return connect{ properties = { request_response_information = 2 } } end,
    "bad property 'request_response_information' to connect (2 out of range 0..1)" },
  { "user property pair without a value", function() return connect{ properties = { user = { { "k" } } } } end,
    "bad property 'user' to connect (item 1: value must be a string, got nil)" },
  { "user property key over 65535 bytes", function() return connect{ properties = { user = { { K64, "v" } } } } end,
    "bad property 'user' to connect (item 1: key longer than 65535 bytes)" },
  { "a PUBLISH property in CONNECT", function() return connect{ properties = { topic_alias = 1 } } end,
    "bad property 'topic_alias' to connect (not allowed in CONNECT)" },
  { "bad will on a client that is already connected", function() return c:connect{ will = { topic = "a/+" } } end,
    "bad option 'will.topic' to connect (wildcards are not allowed in a topic name)" },
})

group("client:subscribe", {
  { "filter a number", function() return c:subscribe(42) end,
    "bad argument #1 to subscribe (topic filter string or list expected, got number)" },
  { "qos 3", function() return c:subscribe("a", 3) end,
    "bad argument 'qos' to subscribe (0, 1 or 2 expected, got 3)" },
  { "qos -1", function() return c:subscribe("a", -1) end,
    "bad argument 'qos' to subscribe (0, 1 or 2 expected, got -1)" },
  { "qos 1.5", function() return c:subscribe("a", 1.5) end,
    "bad argument 'qos' to subscribe (0, 1 or 2 expected, got 1.5)" },
  { "qos NaN", function() return c:subscribe("a", 0 / 0) end,
    "bad argument 'qos' to subscribe (0, 1 or 2 expected, got " .. NAN .. ")" },
  { "qos as a string", function() return c:subscribe("a", "1") end,
    "bad argument to subscribe (subscription options table expected, got string '1')" },
  { "options qos 3", function() return c:subscribe("a", { qos = 3 }) end,
    "bad option 'qos' to subscribe (integer 0..2 expected, got number 3)" },
  { "retain_handling 3", function() return c:subscribe("a", { retain_handling = 3 }) end,
    "bad option 'retain_handling' to subscribe (integer 0..2 expected, got number 3)" },
  { "no_local 1", function() return c:subscribe("a", { no_local = 1 }) end,
    "bad option 'no_local' to subscribe (boolean expected, got number 1)" },
  { "misspelt option", function() return c:subscribe("a", { no_lcal = true }) end,
    "unknown option 'no_lcal' to subscribe (did you mean 'no_local'?)" },
  { "'#' not last", function() return c:subscribe("a/#/b") end,
    "bad topic filter 'a/#/b' to subscribe ('#' must be last and follow '/')" },
  { "'#' inside a level", function() return c:subscribe("a#") end,
    "bad topic filter 'a#' to subscribe ('#' must be last and follow '/')" },
  { "'+' mixed in a level", function() return c:subscribe("a/b+") end,
    "bad topic filter 'a/b+' to subscribe ('+' must fill a whole level)" },
  { "'+' at the start of a level", function() return c:subscribe("+a/b") end,
    "bad topic filter '+a/b' to subscribe ('+' must fill a whole level)" },
  { "empty filter", function() return c:subscribe("") end,
    "bad topic filter to subscribe (empty string)" },
  { "filter with a zero byte", function() return c:subscribe("a\0b") end,
    "bad topic filter to subscribe (contains a zero byte)" },
  { "filter not valid UTF-8", function() return c:subscribe("a/\255") end,
    "bad topic filter to subscribe (not valid UTF-8)" },
  { "filter over 65535 bytes", function() return c:subscribe(K64) end,
    "bad topic filter to subscribe (longer than 65535 bytes)" },
  { "empty list", function() return c:subscribe({}) end,
    "bad argument #1 to subscribe (empty list)" },
  { "list and a second argument", function() return c:subscribe({ { "a", 1 } }, 1) end,
    "bad argument #2 to subscribe (not used with a list of subscriptions)" },
  { "list of strings", function() return c:subscribe({ "a" }) end,
    "bad argument #1 to subscribe (item 1: {filter, qos_or_opts} expected)" },
  { "a bad filter in a list", function() return c:subscribe{ { "ok/a", 1 }, { "a/#/b", 0 } } end,
    "bad topic filter 'a/#/b' to subscribe ('#' must be last and follow '/')" },
  { "subscription_identifier 0 (a protocol error)",
    function() return c:subscribe("a", { properties = { subscription_identifier = 0 } }) end,
    "bad property 'subscription_identifier' to subscribe (0 out of range 1..268435455)" },
  { "subscription_identifier over the maximum",
    function() return c:subscribe("a", { properties = { subscription_identifier = 268435456 } }) end,
    "bad property 'subscription_identifier' to subscribe (268435456 out of range 1..268435455)" },
  { "misspelt property", function() return c:subscribe("a", { properties = { subscription_id = 1 } }) end,
    "unknown property 'subscription_id' to subscribe (did you mean 'subscription_identifier'?)" },
  { "properties on MQTT 3.1.1",
    function() return c4:subscribe("a", { properties = { subscription_identifier = 1 } }) end,
    "bad 'properties' to subscribe (properties need MQTT 5; this client uses version 4)" },
})

group("client:unsubscribe", {
  { "filter a number", function() return c:unsubscribe(42) end,
    "bad argument #1 to unsubscribe (topic filter string or list expected, got number)" },
  { "'#' not last", function() return c:unsubscribe("a/#/b") end,
    "bad topic filter 'a/#/b' to unsubscribe ('#' must be last and follow '/')" },
  { "empty list", function() return c:unsubscribe({}) end,
    "bad argument #1 to unsubscribe (at least one topic filter expected)" },
  { "list with a number", function() return c:unsubscribe({ "a", 5 }) end,
    "bad topic filter to unsubscribe (string expected, got number)" },
  { "filter not valid UTF-8", function() return c:unsubscribe("a/\255") end,
    "bad topic filter to unsubscribe (not valid UTF-8)" },
  { "filter over 65535 bytes", function() return c:unsubscribe(K64) end,
    "bad topic filter to unsubscribe (longer than 65535 bytes)" },
  { "properties a string", function() return c:unsubscribe("a", "props") end,
    "bad 'properties' to unsubscribe (table expected, got string)" },
})

group("client:publish", {
  { "topic a number", function() return c:publish(42, "x") end,
    "bad argument #1 to publish (topic string expected, got number)" },
  { "payload a table", function() return c:publish("t", {}) end,
    "bad argument #2 to publish (string payload or nil expected, got table)" },
  { "payload a number", function() return c:publish("t", 42) end,
    "bad argument #2 to publish (string payload or nil expected, got number)" },
  { "options a string", function() return c:publish("t", "x", "x") end,
    "bad argument to publish (options table expected, got string 'x')" },
  { "qos 3", function() return c:publish("t", "x", { qos = 3 }) end,
    "bad option 'qos' to publish (integer 0..2 expected, got number 3)" },
  { "qos -1", function() return c:publish("t", "x", { qos = -1 }) end,
    "bad option 'qos' to publish (integer 0..2 expected, got number -1)" },
  { "qos as a string", function() return c:publish("t", "x", { qos = "1" }) end,
    "bad option 'qos' to publish (integer 0..2 expected, got string '1')" },
  { "retain 1", function() return c:publish("t", "x", { retain = 1 }) end,
    "bad option 'retain' to publish (boolean expected, got number 1)" },
  { "misspelt option", function() return c:publish("t", "x", { qso = 1 }) end,
    "unknown option 'qso' to publish (did you mean 'qos'?)" },
  { "'+' in the topic", function() return c:publish("a/+/b", "x") end,
    "bad argument 'topic' to publish (wildcards '+' and '#' are not allowed in a topic name: 'a/+/b')" },
  { "'#' in the topic", function() return c:publish("a/#", "x") end,
    "bad argument 'topic' to publish (wildcards '+' and '#' are not allowed in a topic name: 'a/#')" },
  { "empty topic without topic_alias", function() return c:publish("", "x") end,
    "bad argument 'topic' to publish (empty topic; only allowed with properties.topic_alias)" },
  { "topic with a zero byte", function() return c:publish("a\0b", "x") end,
    "bad argument 'topic' to publish (contains a zero byte)" },
  { "topic not valid UTF-8", function() return c:publish("a\255\254", "x") end,
    "bad argument 'topic' to publish (not valid UTF-8)" },
  { "topic with an overlong encoding", function() return c:publish("a\192\175", "x") end,
    "bad argument 'topic' to publish (not valid UTF-8)" },
  { "topic with a UTF-16 surrogate", function() return c:publish("a\237\160\128", "x") end,
    "bad argument 'topic' to publish (not valid UTF-8)" },
  { "topic cut in the middle of a character", function() return c:publish("caf\195", "x") end,
    "bad argument 'topic' to publish (not valid UTF-8)" },
  { "topic over 65535 bytes", function() return c:publish(K64, "x") end,
    "bad argument 'topic' to publish (longer than 65535 bytes)" },
  { "topic over 65535 bytes, QoS 1", function() return c:publish(K64, "x", { qos = 1 }) end,
    "bad argument 'topic' to publish (longer than 65535 bytes)" },
  { "misspelt property", function() return c:publish("t", "x", { properties = { content_typ = "a" } }) end,
    "unknown property 'content_typ' to publish (did you mean 'content_type'?)" },
  { "property name with a zero byte (a known name before it)",
    function() return c:publish("t", "x", { properties = { ["response_information\0bi"] = "" } }) end,
    "bad property name 'response_information...' to publish (contains a zero byte)" },
  { "property of the wrong type",
    function() return c:publish("t", "x", { properties = { message_expiry_interval = "x" } }) end,
    "bad property 'message_expiry_interval' to publish (integer expected, got string)" },
  { "property below its range",
    function() return c:publish("t", "x", { properties = { message_expiry_interval = -1 } }) end,
    "bad property 'message_expiry_interval' to publish (-1 out of range 0..4294967295)" },
  { "property above its range",
    function() return c:publish("t", "x", { properties = { message_expiry_interval = 4294967296 } }) end,
    "bad property 'message_expiry_interval' to publish (4294967296 out of range 0..4294967295)" },
  { "payload_format_indicator 2",
    function() return c:publish("t", "x", { properties = { payload_format_indicator = 2 } }) end,
    "bad property 'payload_format_indicator' to publish (2 out of range 0..1)" },
  { "topic_alias 0 (a protocol error)", function() return c:publish("t", "x", { properties = { topic_alias = 0 } }) end,
    "bad property 'topic_alias' to publish (0 out of range 1..65535)" },
  { "user properties as a flat list",
    function() return c:publish("t", "x", { properties = { user = { "k", "v" } } }) end,
    "bad property 'user' to publish (item 1: {key, value} expected, got string)" },
  { "user properties as a map (would send nothing)",
    function() return c:publish("t", "x", { properties = { user = { k = "v" } } }) end,
    "bad property 'user' to publish (a list of {key, value} pairs expected, got a table with key 'k': "
    .. "write user = { {\"key\", \"value\"} }, as keys may repeat)" },
  { "user properties, a list with a map key too",
    function() return c:publish("t", "x", { properties = { user = { { "a", "b" }, k = "v" } } }) end,
    "bad property 'user' to publish (a list of {key, value} pairs expected, got a table with key 'k': "
    .. "write user = { {\"key\", \"value\"} }, as keys may repeat)" },
  { "user property value a number",
    function() return c:publish("t", "x", { properties = { user = { { "k", 1 } } } }) end,
    "bad property 'user' to publish (item 1: value must be a string, got number)" },
  { "user property key not valid UTF-8",
    function() return c:publish("t", "x", { properties = { user = { { "k\255", "v" } } } }) end,
    "bad property 'user' to publish (item 1: key not valid UTF-8)" },
  { "content_type over 65535 bytes", function() return c:publish("t", "x", { properties = { content_type = K64 } }) end,
    "bad property 'content_type' to publish (longer than 65535 bytes)" },
  { "content_type not valid UTF-8",
    function() return c:publish("t", "x", { properties = { content_type = "\255" } }) end,
    "bad property 'content_type' to publish (not valid UTF-8)" },
  { "content_type with a zero byte",
    function() return c:publish("t", "x", { properties = { content_type = "a\0b" } }) end,
    "bad property 'content_type' to publish (contains a zero byte)" },
  { "correlation_data a number", function() return c:publish("t", "x", { properties = { correlation_data = 5 } }) end,
    "bad property 'correlation_data' to publish (string expected, got number)" },
  { "response_topic with a wildcard",
    function() return c:publish("t", "x", { properties = { response_topic = "a/#" } }) end,
    "bad property 'response_topic' to publish (wildcards '+' and '#' are not allowed in a topic name)" },
  { "a CONNECT property in PUBLISH",
    function() return c:publish("t", "x", { qos = 1, properties = { session_expiry_interval = 1 } }) end,
    "bad property 'session_expiry_interval' to publish (not allowed in PUBLISH)" },
  { "properties on MQTT 3.1.1", function() return c4:publish("t", "x", { properties = { content_type = "a" } }) end,
    "bad 'properties' to publish (properties need MQTT 5; this client uses version 4)" },
})

group("client:request", {
  { "topic a number", function() return c:request(42, "x") end,
    "bad argument #1 to request (topic string expected, got number)" },
  { "payload a number", function() return c:request("t", 42) end,
    "bad argument #2 to request (string payload or nil expected, got number)" },
  { "wildcard in the topic", function() return c:request("a/+", "x", { timeout = 1 }) end,
    "bad argument 'topic' to request (wildcards '+' and '#' are not allowed in a topic name: 'a/+')" },
  { "options a string", function() return c:request("t", "x", "str") end,
    "bad argument to request (options table expected, got string 'str')" },
  { "timeout -1", function() return c:request("t", "x", { timeout = -1 }) end,
    "bad option 'timeout' to request (number 0..86400 expected, got number -1)" },
  { "timeout NaN", function() return c:request("t", "x", { timeout = 0 / 0 }) end,
    "bad option 'timeout' to request (number 0..86400 expected, got number " .. NAN .. ")" },
  { "misspelt option", function() return c:request("t", "x", { tiemout = 1 }) end,
    "unknown option 'tiemout' to request (did you mean 'timeout'?)" },
  { "response_topic with a wildcard",
    function() return c:request("t", "x", { response_topic = "r/#", timeout = 1 }) end,
    "bad option 'response_topic' to request (wildcards '+' and '#' are not allowed in a topic name)" },
  { "misspelt property", function() return c:request("t", "x", { properties = { content_typ = "a" } }) end,
    "unknown property 'content_typ' to request (did you mean 'content_type'?)" },
  { "on MQTT 3.1.1", function() return c4:request("t", "x") end,
    "request: MQTT 5 only (response topic and correlation data are MQTT 5 properties)" },
})

group("client:disconnect", {
  { "options a string", function() return c:disconnect("x") end,
    "bad argument to disconnect (options table expected, got string 'x')" },
  { "timeout -1", function() return c:disconnect{ timeout = -1 } end,
    "bad option 'timeout' to disconnect (number 0..3600 expected, got number -1)" },
  { "reason 256", function() return c:disconnect{ reason = 256 } end,
    "bad option 'reason' to disconnect (integer 0..255 expected, got number 256)" },
  { "session_expiry -1", function() return c:disconnect{ session_expiry = -1 } end,
    "bad option 'session_expiry' to disconnect (integer 0..4294967295 expected, got number -1)" },
  { "reason on MQTT 3.1.1", function() return c4:disconnect{ reason = 4 } end,
    "bad option to disconnect ('reason', 'session_expiry' and 'properties' are MQTT 5 only)" },
  { "misspelt option", function() return c:disconnect{ tiemout = 1 } end,
    "unknown option 'tiemout' to disconnect (did you mean 'timeout'?)" },
  { "misspelt property", function() return c:disconnect{ properties = { reason_strng = "x" } } end,
    "unknown property 'reason_strng' to disconnect (did you mean 'reason_string'?)" },
})

group("client:messages", {
  { "options a string", function() return c:messages("x") end,
    "bad argument to messages (options table expected, got string 'x')" },
  { "timeout -1", function() return c:messages{ timeout = -1 } end,
    "bad option 'timeout' to messages (number 0.." .. tostring(1e9) .. " expected, got number -1)" },
  { "misspelt option", function() return c:messages{ timout = 1 } end,
    "unknown option 'timout' to messages (did you mean 'timeout'?)" },
})

group("client:on", {
  { "misspelt event", function() return c:on("mesage", print) end,
    "bad argument #1 to on (event name expected: message, connect, disconnect, connect_failed or error; "
    .. "got string 'mesage'; did you mean 'message'?)" },
  { "event 'close' (other clients' name)", function() return c:on("close", print) end,
    "bad argument #1 to on (event name expected: message, connect, disconnect, connect_failed or error; "
    .. "got string 'close'; did you mean 'disconnect'?)" },
  { "event a number", function() return c:on(1, print) end,
    "bad argument #1 to on (event name expected: message, connect, disconnect, connect_failed or error; "
    .. "got number 1)" },
  { "handler a number", function() return c:on("message", 1) end,
    "bad argument #2 to on (function expected, got number)" },
  { "handler a table that cannot be called", function() return c:on("message", {}) end,
    "bad argument #2 to on (function expected, got table)" },
})

group("dispatch and sleep", {
  { "mqtt.dispatch('x')", function() return mqtt.dispatch("x") end,
    "bad argument #1 to dispatch (non-negative number expected, got string 'x')" },
  { "mqtt.dispatch(-1)", function() return mqtt.dispatch(-1) end,
    "bad argument #1 to dispatch (non-negative number expected, got number -1)" },
  { "mqtt.dispatch(NaN) (it waited for ever)", function() return in_child("mqtt.dispatch(0 / 0)") end,
    "bad argument #1 to dispatch (non-negative number expected, got number " .. NAN .. ")" },
  { "client:dispatch('x')", function() return c:dispatch("x") end,
    "bad argument #1 to dispatch (non-negative number expected, got string 'x')" },
  { "client:dispatch(NaN) (it waited for ever)", function() return in_child("c:dispatch(0 / 0)") end,
    "bad argument #1 to dispatch (non-negative number expected, got number " .. NAN .. ")" },
  { "mqtt.sleep(-1)", function() return mqtt.sleep(-1) end,
    "bad argument #1 to sleep (non-negative number expected, got number -1)" },
  { "mqtt.sleep('1')", function() return mqtt.sleep("1") end,
    "bad argument #1 to sleep (non-negative number expected, got string '1')" },
  { "mqtt.sleep()", function() return mqtt.sleep() end,
    "bad argument #1 to sleep (non-negative number expected, got nil)" },
  { "mqtt.sleep(NaN) (it slept for ever)", function() return in_child("mqtt.sleep(0 / 0)") end,
    "bad argument #1 to sleep (non-negative number expected, got number " .. NAN .. ")" },
  { "mqtt.reason('x')", function() return mqtt.reason("x") end,
    "bad argument #1 to reason (number expected, got string)" },
})

group("mqtt.trace", {
  { "misspelt level", function() return mqtt.trace("protocl", print) end,
    "bad argument #1 to trace (maximum, medium, minimum, protocol, error, severe, fatal or nil expected, "
    .. "got string 'protocl'; did you mean 'protocol'?)" },
  { "level a number", function() return mqtt.trace(5, print) end,
    "bad argument #1 to trace (maximum, medium, minimum, protocol, error, severe, fatal or nil expected, "
    .. "got number 5)" },
  { "handler a string", function() return mqtt.trace("protocol", "print") end,
    "bad argument #2 to trace (function expected, got string)" },
})

group("token", {
  { "wait(-1)", function() return pending:wait(-1) end,
    "bad argument #1 to wait (non-negative number of seconds expected, got number -1)" },
  { "wait('1')", function() return pending:wait("1") end,
    "bad argument #1 to wait (non-negative number of seconds expected, got string '1')" },
  { "wait(NaN) (it waited for ever)", function() return in_child("tok:wait(0 / 0)") end,
    "bad argument #1 to wait (non-negative number of seconds expected, got number " .. NAN .. ")" },
  { "wait called with a dot", function() return pending.wait(5) end,
    "bad self to token:wait (token expected)" },
  { "done called with a dot", function() return pending.done({}) end,
    "bad self to token:done (token expected)" },
})

group("methods called with a dot", {
  { "publish", function() return c.publish("t", "x") end,
    "bad self to publish (paho.mqtt client expected, got string; call it as client:publish(...))" },
  { "subscribe", function() return c.subscribe("t") end,
    "bad self to subscribe (paho.mqtt client expected, got string; call it as client:subscribe(...))" },
  { "stats", function() return c.stats("x") end,
    "bad self to stats (paho.mqtt client expected, got string; call it as client:stats(...))" },
  { "is_connected", function() return c.is_connected(5) end,
    "bad self to is_connected (paho.mqtt client expected, got number; call it as client:is_connected(...))" },
  { "state", function() return c.state({}) end,
    "bad self to state (paho.mqtt client expected, got table; call it as client:state(...))" },
  { "close", function() return c.close(5) end,
    "bad self to close (paho.mqtt client expected)" },
})

local closed_methods = { "connect", "subscribe", "unsubscribe", "publish", "disconnect", "request", "messages",
  "on", "dispatch", "run", "fd" }
local closed_list = {}
for _, m in ipairs(closed_methods) do
  local args = ({ connect = { {} }, subscribe = { "t", 0 }, unsubscribe = { "t" }, publish = { "t", "x" },
    request = { "t", "x" }, on = { "message", print } })[m] or {}
  closed_list[#closed_list + 1] = { m, function() return closed[m](closed, unpack(args)) end,
    m .. ": the client is closed" }
end
group("a closed client", closed_list)

-- run-time failures: nil, message, code
group("run-time failures", {
  { "publish before connecting", function() return fresh():publish("t", "x") end,
    code = "not_connected", message = "^publish: not connected: the client has not connected yet "
      .. "%(offline_queue is 0: publishes are not kept while disconnected%)$" },
  { "subscribe before connecting", function() return fresh():subscribe("t", 1) end,
    code = "not_connected", message = "^subscribe: not connected: the client has not connected yet$" },
  { "unsubscribe before connecting", function() return fresh():unsubscribe("t") end,
    code = "not_connected", message = "^unsubscribe: not connected: the client has not connected yet$" },
  { "disconnect before connecting", function() return fresh():disconnect() end,
    code = "not_connected", message = "^disconnect: not connected: the client has not connected yet$" },
  { "request before connecting", function() return fresh():request("t", "x", { timeout = 1 }) end,
    code = "not_connected", message = "^request: cannot subscribe to the response topic: subscribe: not connected" },
  { "connect when connected", function() return c:connect{} end,
    code = "connected", message = "^connect: already connected$" },
  { "connect to a port nobody listens on", function()
      return fresh{ uri = "tcp://127.0.0.1:1" }:connect{ timeout = 2 }
    end, code = { network = true, timeout = true }, message = "^connect " },
  { "a token wait that times out", function() return pending:wait(0.1) end,
    code = "timeout", message = "^publish: no answer within 0.1 s$" },
  { "an offline queue that is full", function()
      local x = fresh{ offline_queue = 1 }
      assert(x:publish("t", "1", { qos = 1 }))
      return x:publish("t", "2", { qos = 1 })
    end, code = "queue_full", message = "^publish: the offline queue is full %(offline_queue = 1; 1 publishes wait" },
})

describe("bad input", function()
  setup(function()
    broker = helper.broker()
    c = assert(mqtt.client{ uri = broker.uri, id = helper.uid("badin") })
    assert(c:connect{})
    c4 = assert(mqtt.client{ uri = broker.uri, id = helper.uid("badin4"), version = 4 })
    assert(c4:connect{})
    closed = assert(mqtt.client{ uri = broker.uri, id = helper.uid("closed") })
    assert(closed:connect{})
    closed:close()
    local never = assert(mqtt.client{ uri = broker.uri, id = helper.uid("never"), offline_queue = 10 })
    pending = assert(never:publish("t", "x", { qos = 1 }))
    made.never = never
  end)
  teardown(function()
    for _, x in pairs(made) do x:close() end
    if c then c:close() end
    if c4 then c4:close() end
    helper.stop_all()
  end)
  after_each(function()
    for i = #made, 1, -1 do made[i]:close() made[i] = nil end
  end)

  local total = 0
  for _, g in ipairs(cases) do
    describe(g.title, function()
      for _, case in ipairs(g.list) do
        total = total + 1
        it(case[1], function()
          local t0 = helper.now()
          local r = pack(pcall(case[2]))
          local took = helper.now() - t0
          local verdict_ok, verdict = pcall(function()
            if not r[1] and type(r[2]) == "table" and r[2].hung then error(r[2].hung, 0) end
            if case.code then
              assert(r[1], "raised instead of returning nil, message, code: " .. tostring(r[2]))
              assert.is_nil(r[2], "a run-time failure must return nil, message, code")
              if type(case.code) == "table" then
                assert.is_true(case.code[r[4]] ~= nil,
                  "code " .. tostring(r[4]) .. " (message: " .. tostring(r[3]) .. ")")
              else
                assert.are.equal(case.code, r[4], "code (message: " .. tostring(r[3]) .. ")")
              end
              assert.is_string(r[3])
              assert.truthy(r[3]:find(case.message), ("message %q does not match %q"):format(r[3], case.message))
            else
              if r[1] then
                local got = {}
                for i = 2, r.n do got[#got + 1] = tostring(r[i]) end
                error(("expected an error %q, but the call returned %s"):format(case[3],
                  #got > 0 and table.concat(got, ", ") or "nothing"), 0)
              end
              assert.are.equal(case[3], bare(r[2]))
            end
            -- a wrong call is answered at once: it never waits on the network
            assert.is_true(took < 12, "the call took " .. took .. " s")
          end)
          -- whatever the verdict, the shared clients must be as they were: a
          -- call that reached the network may have broken the connection
          -- (give a DISCONNECT from the broker the time to arrive)
          if r[1] then mqtt.sleep(0.3) else mqtt.dispatch(0) end
          local broke
          for _, x in ipairs({ c, c4 }) do
            if not x:is_connected() then
              broke = "the wrong call broke the connection of the shared client: " .. tostring(x:stats().loss_message)
              assert(x:connect{}) -- for the cases after this one
            end
          end
          if not verdict_ok then
            if broke then
              local m = type(verdict) == "table" and verdict.message or verdict
              error(tostring(m) .. "\n" .. broke, 0)
            end
            error(verdict, 0)
          end
          if broke then error(broke, 0) end
        end)
      end
    end)
  end

  it("made at least 60 wrong calls", function()
    assert.is_true(total >= 60, "only " .. total)
    print(("\n    %d wrong calls"):format(total))
  end)

  describe("a payload over the broker's limit", function()
    -- mosquitto's message_size_limit: an MQTT 5 QoS 1/2 PUBLISH is refused
    -- with 0x95 in the PUBACK/PUBREC; QoS 0 and MQTT 3.1.1 are dropped
    -- silently (the protocol has no way to say so). Either way the
    -- connection stays up and the client goes on.
    local small
    setup(function() small = helper.broker{ config = { "message_size_limit 1000" } } end)

    for _, version in ipairs({ 5, 4 }) do
      it("message_size_limit, MQTT " .. (version == 5 and "5" or "3.1.1"), function()
        local x = assert(mqtt.client{ uri = small.uri, id = helper.uid("big"), version = version })
        made[#made + 1] = x
        local lost
        x:on("disconnect", function(r) lost = r end)
        local got = {}
        x:on("message", function(m) got[#got + 1] = m.payload end)
        assert(x:connect{})
        local topic = helper.uid("big")
        assert(x:subscribe(topic, 1))
        for qos = 0, 2 do
          local tok, msg, code = x:publish(topic, string.rep("x", 2000), { qos = qos })
          assert(tok, msg) -- paho does not know the broker's limit: it sends
          local ok, emsg, ecode = tok:wait(5)
          if version == 5 and qos > 0 then
            assert.is_nil(ok)
            assert.are.equal("refused", ecode)
            assert.are.equal("publish refused: 0x95 packet too large", emsg)
          else
            assert.is_true(ok, emsg)
          end
          assert.is_nil(code)
        end
        assert.is_true(assert(x:publish(topic, "small", { qos = 1 })):wait(5))
        assert.is_true(helper.eventually(function() return #got >= 1 end, 5, mqtt))
        assert.are.same({ "small" }, got)
        assert.is_nil(lost)
        assert.is_true(x:is_connected())
      end)
    end

    it("max_packet_size (sent in CONNACK): nil, message, code or a disconnect that says why", function()
      local b = helper.broker{ config = { "max_packet_size 1000" } }
      local x = assert(mqtt.client{ uri = b.uri, id = helper.uid("mps") })
      made[#made + 1] = x
      local lost
      x:on("disconnect", function(r) lost = r end)
      local _, info = assert(x:connect{})
      assert.are.equal(1000, info.properties.maximum_packet_size)
      local ok, pcall_err, tok, msg, code
      ok, pcall_err = pcall(function() tok, msg, code = x:publish("t/big", string.rep("x", 2000), { qos = 1 }) end)
      if not ok then
        -- a programming error is fine too, if it says why
        assert.truthy(bare(pcall_err):find("publish", 1, true), pcall_err)
      elseif not tok then
        assert.is_string(msg)
        assert.is_string(code)
      else
        local wok, wmsg, wcode = tok:wait(5)
        assert.is_nil(wok)
        assert.truthy(wcode == "disconnected" or wcode == "refused", wcode)
        assert.is_true(helper.eventually(function() return lost ~= nil end, 5, mqtt))
        assert.are.equal("broker", lost.cause)
        assert.are.equal(0x95, lost.code)
        assert.truthy(lost.message:find("0x95", 1, true), lost.message)
        assert.truthy(wmsg:find("0x95", 1, true) or wmsg:find("lost", 1, true), wmsg)
      end
      -- and it connects again and works
      if not x:is_connected() then assert(x:connect{}) end
      assert.is_true(assert(x:publish("t/small", "x", { qos = 1 })):wait(5))
      b:stop()
    end)
  end)

  it("max_packet_size counts the whole packet: properties, topic and packet id (too_large before sending)",
    function()
      local b = helper.broker{ config = { "max_packet_size 256" } }
      local x = assert(mqtt.client{ uri = b.uri, id = helper.uid("mps-props") })
      made[#made + 1] = x
      local lost
      x:on("disconnect", function(r) lost = r end)
      local _, info = assert(x:connect{})
      assert.are.equal(256, info.properties.maximum_packet_size)
      local topic = "t/mps"
      -- 100 B of payload and a 200 B user property: over 256 only with the property
      local big = { user = { { "k", string.rep("v", 200) } } }
      local tok, msg, code = x:publish(topic, string.rep("p", 100), { qos = 1, properties = big })
      assert.is_nil(tok)
      assert.are.equal("too_large", code)
      assert.truthy(msg:find("maximum packet size (256 bytes)", 1, true), msg)
      local n = tonumber(msg:match("%((%d+) bytes with its headers"))
      -- fixed header 1 + remaining length 2, topic 2+5, packet id 2, property
      -- length 2 + the property 1+2+1+2+200, payload 100
      assert.are.equal(320, n)
      -- exactly at the limit: sent; one byte over: refused
      local props = { user = { { "k", string.rep("v", 136) } } } -- 1+2 + 7+2 + 2+142 + 100 = 256
      assert.is_true(assert(x:publish(topic, string.rep("p", 100), { qos = 1, properties = props })):wait(5))
      props.user[1][2] = props.user[1][2] .. "v"
      tok, _, code = x:publish(topic, string.rep("p", 100), { qos = 1, properties = props })
      assert.is_nil(tok)
      assert.are.equal("too_large", code)
      -- without properties, near the limit: counted exactly too (QoS 0, no packet id)
      assert.is_true(assert(x:publish(topic, string.rep("p", 256 - 3 - 7 - 1), { qos = 0 })):wait(5))
      tok, _, code = x:publish(topic, string.rep("p", 256 - 3 - 7 - 1 + 1), { qos = 0 })
      assert.is_nil(tok)
      assert.are.equal("too_large", code)
      assert.is_true(x:is_connected())
      assert.is_nil(lost)
      b:stop()
    end)

  it("leaves the client it was called on working: a publish/subscribe round trip", function()
    for _, x in ipairs({ c, c4 }) do
      assert.is_true(x:is_connected())
      local got = {}
      x:on("message", function(m) got[#got + 1] = m end)
      local topic = helper.uid("after")
      assert.are.equal(1, x:subscribe(topic, 1))
      assert.is_true(assert(x:publish(topic, "still fine", { qos = 1 })):wait(5))
      assert.is_true(helper.eventually(function() return #got == 1 end, 5, mqtt))
      assert.are.equal("still fine", got[1].payload)
      assert.are.equal(topic, got[1].topic)
      assert.is_true(x:unsubscribe(topic))
      x:on("message", nil)
    end
    local s = c:stats()
    assert.are.equal("connected", s.state)
    assert.is_nil(s.last_loss)
  end)
end)
