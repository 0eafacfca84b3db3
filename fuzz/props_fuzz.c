/*
 * props_fuzz.c - libFuzzer harness for the C code that turns Lua values into
 * paho properties and request options, and paho's properties back into Lua
 * tables (src/props.c, the argument checks of src/client.c, the event queue
 * of src/events.c).
 *
 *   make fuzz                      (FUZZ_SECONDS=60, corpus fuzz/corpus/)
 *   build/fuzz/props_fuzz -runs=1 crash-file     (replay one input)
 *
 * It is built from all of src/ (every .c) with clang -fsanitize=fuzzer,address,undefined
 * and linked with liblua5.4 and libpaho-mqtt3as: nothing of the core is
 * changed or left out. One Lua state loads the core the way `require` would
 * (luaopen_paho_mqtt_core) and makes two clients that never connect (MQTT 5
 * and 3.1.1), so every call below stays off the network: paho refuses a
 * request of a client that is not connected right after the binding has
 * checked and built it.
 *
 * Each input is decoded into Lua values (see decode below) and drives one of
 *   0  client:check_publish(topic, payload, qos, retain, properties)
 *   1  client:publish(...)            checks, builds the properties, paho refuses
 *   2  client:subscribe({filter}, {{qos =, retain_handling =, no_local =}}, properties)
 *   3  client:unsubscribe({filter}, properties)
 *   4  client:disconnect(0, reason, session_expiry, properties)
 *   5  round trip of a request completion: the properties are checked and
 *      built, handed to pmq_publish_ok5 as paho would, and read back with
 *      client:next(); what comes back must equal what went in
 *   6  round trip of a message: topic, payload and properties in paho-owned
 *      memory (MQTTAsync_malloc, MQTTProperties_copy) through pmq_on_message
 *      and client:next()
 * and checks (an "oracle" in the embedded Lua driver) that
 *   - every error raised is a string naming the function ("... to publish",
 *     "publish: ..."), never Lua's own complaint about a bad format or a
 *     nil index;
 *   - check_publish's verdict on a topic agrees with Lua 5.4's utf8.len
 *     (strict UTF-8) and the other topic rules;
 *   - a refused request returns nil, message, "not_connected", not a token;
 *   - round trips give back the values that went in.
 * A failed check prints what happened and aborts, so libFuzzer saves the
 * input. PMQ_FUZZ_ORACLE=0 turns the checks off (memory errors only).
 *
 * Input format (bytes; a short input reads zeros after its end):
 *   op(1) flags(1) topic(value) payload(value) qos(value) props(table-or-nil)
 *   extra(value: reason / retain_handling) extra2(value: session_expiry)
 * where a value is a type byte and its data (push_value), and a properties
 * table is a count byte and (name, value) pairs, the name a known property
 * name most of the time (push_props).
 */
#include "../src/luapmq.h"

#include <lualib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

PMQ_EXPORT int luaopen_paho_mqtt_core(lua_State *L);

typedef struct {
    const uint8_t *p;
    size_t n;
} rd;

static unsigned u8(rd *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

static uint64_t u64(rd *r)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | u8(r);
    return v;
}

/* the property names of props.c, with the kind of value each takes, so that
 * most inputs reach the building code and not only the first check */
enum { K_BYTE, K_INT2, K_INT4, K_VBI, K_BIN, K_STR, K_PAIR };
static const struct {
    const char *name;
    int kind;
} names[] = {
    {"payload_format_indicator", K_BYTE}, {"message_expiry_interval", K_INT4},
    {"content_type", K_STR}, {"response_topic", K_STR}, {"correlation_data", K_BIN},
    {"subscription_identifier", K_VBI}, {"session_expiry_interval", K_INT4},
    {"assigned_client_id", K_STR}, {"server_keep_alive", K_INT2},
    {"authentication_method", K_STR}, {"authentication_data", K_BIN},
    {"request_problem_information", K_BYTE}, {"will_delay_interval", K_INT4},
    {"request_response_information", K_BYTE}, {"response_information", K_STR},
    {"server_reference", K_STR}, {"reason_string", K_STR}, {"receive_maximum", K_INT2},
    {"topic_alias_maximum", K_INT2}, {"topic_alias", K_INT2}, {"maximum_qos", K_BYTE},
    {"retain_available", K_BYTE}, {"user", K_PAIR}, {"maximum_packet_size", K_INT4},
    {"wildcard_subscription_available", K_BYTE}, {"subscription_identifiers_available", K_BYTE},
    {"shared_subscription_available", K_BYTE},
};
#define NNAMES (sizeof names / sizeof names[0])

static const lua_Integer edge_ints[] = {
    0, 1, 2, 3, -1, 255, 256, 65535, 65536, 268435455, 268435456, 2147483647, 2147483648LL,
    4294967295LL, 4294967296LL, 9007199254740993LL, INT64_MAX, INT64_MIN};

#define S(x) {x, sizeof x - 1}
static const struct {
    const char *s;
    size_t n; /* they may hold a zero byte */
} edge_strings[] = {
    S(""), S("a"), S("a/b"), S("a/+"), S("a/#"), S("#"), S("+"), S("/"), S("//"), S("a/b/"),
    S("$SYS/x"), S("a\0b"), S("\xC0\x80"), S("\xC0\xAF"), S("\xED\xA0\x80"), S("\xED\x9F\xBF"),
    S("\xF4\x8F\xBF\xBF"), S("\xF4\x90\x80\x80"), S("\xF0\x9F\x98\x80"), S("\xE2\x82"), S("\x80"),
    S("\xFF"), S("\xEF\xBB\xBF"), S("a b"), S("caf\xC3\xA9"), S("content_typ"), S("recieve_maximum"),
    S("user"), S("topic_alias")};
#define NEDGE_STR (sizeof edge_strings / sizeof edge_strings[0])

static int nop(lua_State *L)
{
    (void)L;
    return 0;
}

static void push_bytes(lua_State *L, rd *r, size_t len)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < len; i++)
        luaL_addchar(&b, (char)u8(r));
    luaL_pushresult(&b);
}

static void push_value(lua_State *L, rd *r, int depth, int kind);

/* {{k, v}, ...}, mostly well formed */
static void push_pairs(lua_State *L, rd *r, int depth)
{
    int n = (int)(u8(r) % 5);
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
        unsigned how = u8(r) % 8;
        if (how == 0) {
            push_value(L, r, depth + 1, -1);
        } else {
            lua_createtable(L, 2, 0);
            for (int j = 1; j <= (how == 1 ? 1 : 2); j++) {
                push_value(L, r, depth + 1, how == 2 ? -1 : K_STR);
                lua_rawseti(L, -2, j);
            }
        }
        lua_rawseti(L, -2, i);
    }
}

/* a value of any type; kind >= 0 biases it towards what that kind takes */
static void push_value(lua_State *L, rd *r, int depth, int kind)
{
    unsigned t = u8(r);
    if (kind >= 0 && (t & 0x80)) {
        switch (kind) {
        case K_BYTE:
        case K_INT2:
        case K_INT4:
        case K_VBI:
            if (t & 0x40)
                lua_pushinteger(L, edge_ints[u8(r) % (sizeof edge_ints / sizeof edge_ints[0])]);
            else
                lua_pushinteger(L, (lua_Integer)(u64(r) >> (u8(r) % 64)));
            return;
        case K_STR:
        case K_BIN:
            if (t & 0x40) {
                unsigned i = u8(r) % NEDGE_STR;
                lua_pushlstring(L, edge_strings[i].s, edge_strings[i].n);
            } else {
                push_bytes(L, r, u8(r) % 48);
            }
            return;
        case K_PAIR:
            if (depth < 3) {
                push_pairs(L, r, depth);
                return;
            }
            break;
        }
    }
    switch (t % 13) {
    case 0:
        lua_pushnil(L);
        break;
    case 1:
        lua_pushboolean(L, (int)(u8(r) & 1));
        break;
    case 2:
        lua_pushinteger(L, (lua_Integer)u64(r));
        break;
    case 3: {
        uint64_t v = u64(r);
        double d;
        memcpy(&d, &v, sizeof d);
        lua_pushnumber(L, (lua_Number)d);
        break;
    }
    case 4:
        lua_pushinteger(L, edge_ints[u8(r) % (sizeof edge_ints / sizeof edge_ints[0])]);
        break;
    case 5: {
        static const double f[] = {0.5, 10.0, -0.0, 1.0, 2.0, 255.0, 65535.0, 4294967295.0, 4294967296.0,
                                   1e300, -1e300, 9.2233720368547758e18};
        unsigned i = u8(r) % 14;
        if (i == 12)
            lua_pushnumber(L, (lua_Number)NAN);
        else if (i == 13)
            lua_pushnumber(L, (lua_Number)(u8(r) & 1 ? INFINITY : -INFINITY));
        else
            lua_pushnumber(L, (lua_Number)f[i]);
        break;
    }
    case 6:
        push_bytes(L, r, u8(r) % 48);
        break;
    case 7: {
        unsigned i = u8(r) % NEDGE_STR;
        lua_pushlstring(L, edge_strings[i].s, edge_strings[i].n);
        break;
    }
    case 8: {
        static const size_t lens[] = {255, 256, 65534, 65535, 65536, 70000};
        size_t len = lens[u8(r) % 6];
        char *s = malloc(len);
        if (!s)
            abort();
        memset(s, "a\xC3\xFF+#/"[u8(r) % 6], len);
        lua_pushlstring(L, s, len);
        free(s);
        break;
    }
    case 9:
        if (depth < 3) {
            int n = (int)(u8(r) % 4);
            lua_createtable(L, n, 0);
            for (int i = 1; i <= n; i++) {
                push_value(L, r, depth + 1, -1);
                lua_rawseti(L, -2, i);
            }
        } else {
            lua_newtable(L);
        }
        break;
    case 10:
        if (depth < 3)
            push_pairs(L, r, depth);
        else
            lua_newtable(L);
        break;
    case 11:
        lua_pushcfunction(L, nop);
        break;
    default:
        lua_newuserdata(L, 1);
        break;
    }
}

/* nil, or a properties table */
static void push_props(lua_State *L, rd *r)
{
    unsigned n = u8(r);
    if (n == 0) {
        lua_pushnil(L);
        return;
    }
    n %= 7;
    lua_createtable(L, 0, (int)n);
    for (unsigned i = 0; i < n; i++) {
        unsigned k = u8(r);
        int kind = -1;
        if (k < 224) {
            kind = names[k % NNAMES].kind;
            lua_pushstring(L, names[k % NNAMES].name);
        } else if (k < 240) {
            push_bytes(L, r, u8(r) % 24); /* an unknown name */
        } else {
            push_value(L, r, 2, -1); /* a key of any type */
            if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1))) {
                lua_pop(L, 1);
                continue; /* not a valid table key */
            }
        }
        push_value(L, r, 1, kind);
        lua_rawset(L, -3);
    }
}

/* driver(v, op, topic, payload, qos, retain, props, extra, extra2) */
static const char driver[] =
    "local core, c5, c4, rt_op, rt_msg, fail, oracle = ...\n"
    "local names = { 'check_publish', 'publish', 'subscribe', 'unsubscribe', 'disconnect', 'publish', 'message' }\n"
    "local fnames = { 'publish', 'publish', 'subscribe', 'unsubscribe', 'disconnect', 'properties', 'properties' }\n"
    "local function describe(v)\n"
    "  if type(v) == 'string' then return ('%q'):format(#v > 80 and v:sub(1, 80) .. '...(' .. #v .. ' bytes)' or v) end\n"
    "  if type(v) == 'table' then\n"
    "    local t = {}\n"
    "    for k, x in pairs(v) do t[#t + 1] = '[' .. describe(k) .. ']=' .. describe(x) end\n"
    "    table.sort(t)\n"
    "    return '{' .. table.concat(t, ', ') .. '}'\n"
    "  end\n"
    "  if math.type(v) == 'float' then return ('%.17g'):format(v) end\n"
    "  return tostring(v)\n"
    "end\n"
    "local function check_error(op, err, args)\n"
    "  if not oracle then return end\n"
    "  if type(err) ~= 'string' then fail('non-string error ' .. describe(err) .. ' for ' .. args) end\n"
    "  local msg = err:gsub('^%[string \"[^\"]*\"%]:%d+: ', '')\n"
    "  local fname = fnames[op + 1]\n"
    /* the binding's own forms; Lua's complaints ("invalid option '%.' to
     * 'lua_pushfstring'", "attempt to index ...") match none of them */
    "  local own = msg:find('^bad ') or msg:find('^unknown property ') or msg:find(fname .. ': ', 1, true) == 1\n"
    "  local names = msg:find(' to ' .. fname, 1, true) or msg:find(fname .. ': ', 1, true) == 1 or\n"
    "     msg:find(\"^bad argument #%d+ to '\") -- luaL_check* of the raw core (the Lua layer checks first)\n"
    "  if own and names then return end\n"
    "  fail('error does not name ' .. fname .. ': ' .. msg .. ' for ' .. args)\n"
    "end\n"
    /* the topic rules of publish, with utf8.len as the reference for UTF-8 */
    "local function topic_ok(topic, props)\n"
    "  if type(topic) ~= 'string' then return nil end\n"
    "  if topic:find('%z') or topic:find('[+#]') or #topic > 65535 then return false end\n"
    "  if topic == '' then return type(props) == 'table' and props.topic_alias ~= nil end\n"
    "  return utf8.len(topic) ~= nil\n"
    "end\n"
    "local function same(a, b)\n"
    "  if type(a) == 'number' and type(b) == 'number' then return a == b end\n"
    "  return a == b\n"
    "end\n"
    /* what the properties table must look like after a round trip */
    "local function expect_back(props)\n"
    "  local e = {}\n"
    "  for k, v in pairs(props or {}) do\n"
    "    if k == 'user' then\n"
    "      if #v > 0 then e.user = v end\n"
    "    elseif k == 'subscription_identifier' then e[k] = { v }\n"
    "    else e[k] = v end\n"
    "  end\n"
    "  return e\n"
    "end\n"
    "local function compare(want, got, args)\n"
    "  got = got or {}\n"
    "  for k, v in pairs(want) do\n"
    "    local g = got[k]\n"
    "    if type(v) == 'table' then\n"
    "      if type(g) ~= 'table' or #g ~= #v then fail('round trip: ' .. k .. ' ' .. describe(v) .. ' came back as ' .. describe(g) .. ' for ' .. args) end\n"
    "      for i = 1, #v do\n"
    "        local a, b = v[i], g[i]\n"
    "        if type(a) == 'table' then\n"
    "          if type(b) ~= 'table' or a[1] ~= b[1] or a[2] ~= b[2] then fail('round trip: user item ' .. i .. ' ' .. describe(a) .. ' came back as ' .. describe(b) .. ' for ' .. args) end\n"
    "        elseif not same(a, b) then fail('round trip: ' .. k .. '[' .. i .. '] ' .. describe(a) .. ' came back as ' .. describe(b) .. ' for ' .. args) end\n"
    "      end\n"
    "    elseif not same(v, g) then\n"
    "      fail('round trip: ' .. k .. ' = ' .. describe(v) .. ' came back as ' .. describe(g) .. ' for ' .. args)\n"
    "    end\n"
    "  end\n"
    "  for k, v in pairs(got) do\n"
    "    if want[k] == nil then fail('round trip: unexpected ' .. describe(k) .. ' = ' .. describe(v) .. ' for ' .. args) end\n"
    "  end\n"
    "end\n"
    "return function(v, op, topic, payload, qos, retain, props, extra, extra2)\n"
    "  local c = v == 4 and c4 or c5\n"
    "  local args = ('%s v%d (topic %s, payload %s, qos %s, retain %s, properties %s, extra %s, %s)'):format(\n"
    "    names[op + 1], v, describe(topic), describe(payload), describe(qos), describe(retain), describe(props),\n"
    "    describe(extra), describe(extra2))\n"
    "  local r\n"
    "  if op == 0 then\n"
    "    r = table.pack(pcall(c.check_publish, c, topic, payload, qos, retain, props))\n"
    "    if oracle and type(topic) == 'string' and (payload == nil or type(payload) == 'string') and\n"
    "       math.type(qos) == 'integer' and qos >= 0 and qos <= 2 and (props == nil or v == 5) then\n"
    "      local want = topic_ok(topic, props)\n"
    "      if r[1] and not want then fail('check_publish accepted a bad topic: ' .. args) end\n"
    "      if not r[1] and want and props == nil then fail('check_publish refused a good topic: ' .. tostring(r[2]) .. ' for ' .. args) end\n"
    "      if not r[1] and tostring(r[2]):gsub('^%[string \"[^\"]*\"%]:%d+: ', '') == \"bad argument 'topic' to publish (not valid UTF-8)\" and utf8.len(topic) then\n"
    "        fail('check_publish called valid UTF-8 invalid: ' .. args)\n"
    "      end\n"
    "    end\n"
    "  elseif op == 1 then\n"
    "    r = table.pack(pcall(c.publish, c, topic, payload, qos, retain, props))\n"
    "  elseif op == 2 then\n"
    "    r = table.pack(pcall(c.subscribe, c, { topic }, { { qos = qos, retain_handling = extra, no_local = retain } }, props))\n"
    "  elseif op == 3 then\n"
    "    r = table.pack(pcall(c.unsubscribe, c, { topic }, props))\n"
    "  elseif op == 4 then\n"
    "    r = table.pack(pcall(c.disconnect, c, 0, extra, extra2, props))\n"
    "  elseif op == 5 then\n"
    "    r = table.pack(pcall(rt_op, c, props, v))\n"
    "    if r[1] then\n"
    "      local ev, rec = c:next()\n"
    "      if oracle then\n"
    "        local p\n"
    "        if ev == 'published' then\n"
    "          -- a plain success (no properties) comes batched: numbers in rec[1..rec.n]\n"
    "          if rec.n ~= 1 or rec[1] ~= 42 then fail('round trip: published ' .. describe(rec[1]) .. ' for ' .. args) end\n"
    "        elseif ev ~= 'op' or rec.kind ~= 'publish' or rec.token ~= 42 or rec.ok ~= true then fail('round trip: event ' .. describe(ev) .. ' ' .. describe(rec and rec.kind) .. ' for ' .. args) end\n"
    "        if ev == 'op' then p = rec.properties end\n"
    "        compare(expect_back(props), p, args)\n"
    "      end\n"
    "    end\n"
    "  else\n"
    "    r = table.pack(pcall(rt_msg, c, topic, payload, props, v))\n"
    "    if r[1] then\n"
    "      local ev, m = c:next()\n"
    "      if oracle then\n"
    "        if ev ~= 'message' then fail('round trip: event ' .. describe(ev) .. ' for ' .. args) end\n"
    /* numbers go in as strings, the way lua_tolstring writes them */
    "        local t = type(topic) == 'number' and tostring(topic) or topic\n"
    "        local pl = type(payload) == 'number' and tostring(payload) or payload or ''\n"
    "        if m.topic ~= t then fail('round trip: topic ' .. describe(m.topic) .. ' for ' .. args) end\n"
    "        if m.payload ~= pl then fail('round trip: payload ' .. describe(m.payload) .. ' for ' .. args) end\n"
    "        local want = expect_back(props)\n"
    "        if next(want) == nil then\n"
    "          if m.properties ~= nil then fail('round trip: properties ' .. describe(m.properties) .. ' for ' .. args) end\n"
    "        else compare(want, m.properties, args) end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  if c:next() ~= nil then fail('an event was left in the queue: ' .. args) end\n"
    "  if not r[1] then check_error(op, r[2], args) return end\n"
    "  if oracle and (op == 1 or op == 2 or op == 3 or op == 4) then\n"
    "    if r[2] ~= nil or r[4] ~= 'not_connected' then\n"
    "      fail('a request of a client that never connected gave ' .. describe(r[2]) .. ', ' .. describe(r[3]) .. ', ' .. describe(r[4]) .. ' for ' .. args)\n"
    "    end\n"
    "  end\n"
    "end\n";

static int l_fail(lua_State *L)
{
    size_t len;
    const char *msg = luaL_checklstring(L, 1, &len);
    fputs("\nprops_fuzz: ", stderr);
    fwrite(msg, 1, len, stderr); /* it may hold zero bytes */
    fputc('\n', stderr);
    fflush(stderr);
    abort();
    return 0;
}

static pmq_ctx *ctx_of(lua_State *L, int idx)
{
    pmq_box *b = luaL_checkudata(L, idx, PMQ_CLIENT_MT);
    if (!b->c)
        luaL_error(L, "closed");
    return b->c;
}

/* rt_op(client, props, version): the properties through a publish completion */
static int l_rt_op(lua_State *L)
{
    pmq_ctx *c = ctx_of(L, 1);
    MQTTProperties p = MQTTProperties_initializer;
    MQTTAsync_successData5 r = MQTTAsync_successData5_initializer;
    /* "properties": a name that is no packet's, so every property may go */
    pmq_props_check(L, 2, "properties", (int)luaL_checkinteger(L, 3));
    pmq_props_build(L, 2, &p);
    r.token = 42;
    r.properties = p;
    /* the context of a publish: its own number (42), freed by the callback */
    pmq_publish_ok5(pmq_subop_new(c, 42), &r); /* paho calls it with its own data, then frees it */
    MQTTProperties_free(&p);
    return 0;
}

/* rt_msg(client, topic, payload, props, version): a message as paho hands it over */
static int l_rt_msg(lua_State *L)
{
    pmq_ctx *c = ctx_of(L, 1);
    size_t tlen, plen = 0;
    const char *topic = luaL_checklstring(L, 2, &tlen);
    const char *payload = luaL_optlstring(L, 3, NULL, &plen);
    MQTTProperties p = MQTTProperties_initializer;
    MQTTAsync_message init = MQTTAsync_message_initializer;
    MQTTAsync_message *m;
    char *t;
    pmq_props_check(L, 4, "properties", (int)luaL_checkinteger(L, 5));
    pmq_props_build(L, 4, &p);
    m = MQTTAsync_malloc(sizeof *m);
    t = MQTTAsync_malloc(tlen + 1);
    if (!m || !t)
        abort();
    *m = init;
    memcpy(t, topic, tlen);
    t[tlen] = 0;
    if (plen > 0) {
        m->payload = MQTTAsync_malloc(plen);
        if (!m->payload)
            abort();
        memcpy(m->payload, payload, plen);
    }
    m->payloadlen = (int)plen;
    m->qos = 1;
    m->msgid = 7;
    m->properties = MQTTProperties_copy(&p);
    MQTTProperties_free(&p);
    /* paho passes topiclen 0 when the topic is a C string without zeros */
    if (!pmq_on_message(c, t, memchr(t, 0, tlen) ? (int)tlen : 0, m)) {
        MQTTAsync_freeMessage(&m);
        MQTTAsync_free(t);
        luaL_error(L, "properties: the message was not queued");
    }
    return 0;
}

static lua_State *L;
static int driver_ref = LUA_NOREF;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *o = getenv("PMQ_FUZZ_ORACLE");
    (void)argc;
    (void)argv;
    L = luaL_newstate();
    if (!L)
        abort();
    luaL_openlibs(L);
    if (luaL_loadbuffer(L, driver, sizeof driver - 1, "driver") != LUA_OK) {
        fprintf(stderr, "driver: %s\n", lua_tostring(L, -1));
        abort();
    }
    luaL_requiref(L, "paho.mqtt.core", luaopen_paho_mqtt_core, 0);
    for (int v = 5; v >= 4; v--) {
        lua_getfield(L, -1 - (v == 4), "new");
        lua_createtable(L, 0, 4);
        lua_createtable(L, 1, 0);
        lua_pushstring(L, "tcp://127.0.0.1:1");
        lua_rawseti(L, -2, 1);
        lua_setfield(L, -2, "uris");
        lua_pushstring(L, v == 5 ? "fuzz5" : "fuzz4");
        lua_setfield(L, -2, "id");
        lua_pushinteger(L, v);
        lua_setfield(L, -2, "version");
        lua_pushinteger(L, 100);
        lua_setfield(L, -2, "queue_max");
        lua_call(L, 1, 1);
    }
    lua_pushcfunction(L, l_rt_op);
    lua_pushcfunction(L, l_rt_msg);
    lua_pushcfunction(L, l_fail);
    lua_pushboolean(L, !(o && strcmp(o, "0") == 0));
    lua_call(L, 7, 1);
    driver_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rd r = {data, size};
    unsigned op, flags;
    int top = lua_gettop(L);
    op = u8(&r) % 7;
    flags = u8(&r);
    lua_rawgeti(L, LUA_REGISTRYINDEX, driver_ref);
    lua_pushinteger(L, flags & 1 ? 4 : 5);
    lua_pushinteger(L, op);
    push_value(L, &r, 0, K_STR);                      /* topic */
    if (flags & 2)
        lua_pushnil(L);
    else
        push_value(L, &r, 0, K_BIN);                  /* payload */
    if (flags & 4)
        lua_pushinteger(L, (lua_Integer)(u8(&r) % 5) - 1); /* qos -1..3 */
    else
        push_value(L, &r, 0, K_BYTE);
    lua_pushboolean(L, (int)(flags & 8));             /* retain */
    push_props(L, &r);
    push_value(L, &r, 0, K_BYTE);                     /* reason, retain_handling */
    if (flags & 16)
        lua_pushnil(L);
    else
        push_value(L, &r, 0, K_INT4);                 /* session_expiry */
    if (lua_pcall(L, 9, 0, 0) != LUA_OK) {
        /* the driver catches the core's errors; this is the driver's own */
        fprintf(stderr, "props_fuzz: driver error: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, top);
    if ((size & 63) == 0)
        lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
