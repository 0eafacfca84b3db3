/*
 * props.c - options and MQTT 5 properties, from Lua tables to what paho takes
 * (and properties back).
 *
 * Options: pmq_opt_int, pmq_opt_str, pmq_opt_bool read one field of an
 * option table, checking its type (and range), raising with the option's
 * name; pmq_opt_alpn builds TLS's ALPN list.
 *
 * Properties: Lua tables <-> paho's MQTTProperties.
 * A properties table uses the snake_case names of the MQTT 5 properties:
 *   { content_type = "text/plain", correlation_data = "\0\1",
 *     user = { {"key", "value"}, {"key", "again"} } }
 * Converting to paho happens in two passes: pmq_props_check validates and may
 * raise (nothing is allocated yet), pmq_props_build then allocates and cannot
 * raise, so a bad table never leaks.
 */
#include "luapmq.h"

#include <stdio.h>
#include <string.h>

enum { T_BYTE, T_INT2, T_INT4, T_VBI, T_BINARY, T_STRING, T_PAIR };

/* the packets a client may send each property in (MQTT 5, section 2.2.2.2) */
enum { P_CONNECT = 1, P_WILL = 2, P_PUBLISH = 4, P_SUBSCRIBE = 8, P_UNSUBSCRIBE = 16, P_DISCONNECT = 32,
       P_NONE = 0 };

static const struct {
    const char *name;
    int code;
    int type;
    double lo, hi;   /* numbers: the allowed range */
    int packets;     /* where a client may send it */
} props[] = {
    {"payload_format_indicator", MQTTPROPERTY_CODE_PAYLOAD_FORMAT_INDICATOR, T_BYTE, 0, 1, P_WILL | P_PUBLISH},
    {"message_expiry_interval", MQTTPROPERTY_CODE_MESSAGE_EXPIRY_INTERVAL, T_INT4, 0, 4294967295.0, P_WILL | P_PUBLISH},
    {"content_type", MQTTPROPERTY_CODE_CONTENT_TYPE, T_STRING, 0, 0, P_WILL | P_PUBLISH},
    {"response_topic", MQTTPROPERTY_CODE_RESPONSE_TOPIC, T_STRING, 0, 0, P_WILL | P_PUBLISH},
    {"correlation_data", MQTTPROPERTY_CODE_CORRELATION_DATA, T_BINARY, 0, 0, P_WILL | P_PUBLISH},
    {"subscription_identifier", MQTTPROPERTY_CODE_SUBSCRIPTION_IDENTIFIER, T_VBI, 1, 268435455, P_SUBSCRIBE},
    {"session_expiry_interval", MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL, T_INT4, 0, 4294967295.0,
     P_CONNECT | P_DISCONNECT},
    {"assigned_client_id", MQTTPROPERTY_CODE_ASSIGNED_CLIENT_IDENTIFER, T_STRING, 0, 0, P_NONE},
    {"server_keep_alive", MQTTPROPERTY_CODE_SERVER_KEEP_ALIVE, T_INT2, 0, 65535, P_NONE},
    {"authentication_method", MQTTPROPERTY_CODE_AUTHENTICATION_METHOD, T_STRING, 0, 0, P_CONNECT},
    {"authentication_data", MQTTPROPERTY_CODE_AUTHENTICATION_DATA, T_BINARY, 0, 0, P_CONNECT},
    {"request_problem_information", MQTTPROPERTY_CODE_REQUEST_PROBLEM_INFORMATION, T_BYTE, 0, 1, P_CONNECT},
    {"will_delay_interval", MQTTPROPERTY_CODE_WILL_DELAY_INTERVAL, T_INT4, 0, 4294967295.0, P_WILL},
    {"request_response_information", MQTTPROPERTY_CODE_REQUEST_RESPONSE_INFORMATION, T_BYTE, 0, 1, P_CONNECT},
    {"response_information", MQTTPROPERTY_CODE_RESPONSE_INFORMATION, T_STRING, 0, 0, P_NONE},
    {"server_reference", MQTTPROPERTY_CODE_SERVER_REFERENCE, T_STRING, 0, 0, P_NONE},
    {"reason_string", MQTTPROPERTY_CODE_REASON_STRING, T_STRING, 0, 0, P_DISCONNECT},
    {"receive_maximum", MQTTPROPERTY_CODE_RECEIVE_MAXIMUM, T_INT2, 1, 65535, P_CONNECT},
    {"topic_alias_maximum", MQTTPROPERTY_CODE_TOPIC_ALIAS_MAXIMUM, T_INT2, 0, 65535, P_CONNECT},
    {"topic_alias", MQTTPROPERTY_CODE_TOPIC_ALIAS, T_INT2, 1, 65535, P_PUBLISH},
    {"maximum_qos", MQTTPROPERTY_CODE_MAXIMUM_QOS, T_BYTE, 0, 1, P_NONE},
    {"retain_available", MQTTPROPERTY_CODE_RETAIN_AVAILABLE, T_BYTE, 0, 1, P_NONE},
    {"user", MQTTPROPERTY_CODE_USER_PROPERTY, T_PAIR, 0, 0,
     P_CONNECT | P_WILL | P_PUBLISH | P_SUBSCRIBE | P_UNSUBSCRIBE | P_DISCONNECT},
    {"maximum_packet_size", MQTTPROPERTY_CODE_MAXIMUM_PACKET_SIZE, T_INT4, 1, 4294967295.0, P_CONNECT},
    {"wildcard_subscription_available", MQTTPROPERTY_CODE_WILDCARD_SUBSCRIPTION_AVAILABLE, T_BYTE, 0, 1, P_NONE},
    {"subscription_identifiers_available", MQTTPROPERTY_CODE_SUBSCRIPTION_IDENTIFIERS_AVAILABLE, T_BYTE, 0, 1,
     P_NONE},
    {"shared_subscription_available", MQTTPROPERTY_CODE_SHARED_SUBSCRIPTION_AVAILABLE, T_BYTE, 0, 1, P_NONE},
    {NULL, 0, 0, 0, 0, 0}};

/* the whole Lua string must match: "response_information\0x" is not a name */
static int find(const char *name, size_t len)
{
    for (int i = 0; props[i].name; i++)
        if (strlen(props[i].name) == len && memcmp(props[i].name, name, len) == 0)
            return i;
    return -1;
}

static int find_code(int code)
{
    for (int i = 0; props[i].name; i++)
        if (props[i].code == code)
            return i;
    return -1;
}

/* the packet a check is for, from the function name the caller gives */
static int packet_of(const char *fname, const char **pname)
{
    static const struct { const char *prefix; int packet; const char *name; } map[] = {
        {"connect (will)", P_WILL, "the will"}, {"connect", P_CONNECT, "CONNECT"},
        {"publish", P_PUBLISH, "PUBLISH"}, {"request", P_PUBLISH, "PUBLISH"},
        {"subscribe", P_SUBSCRIBE, "SUBSCRIBE"}, {"unsubscribe", P_UNSUBSCRIBE, "UNSUBSCRIBE"},
        {"disconnect", P_DISCONNECT, "DISCONNECT"}, {NULL, 0, NULL}};
    for (int i = 0; map[i].prefix; i++)
        if (strncmp(fname, map[i].prefix, strlen(map[i].prefix)) == 0) {
            *pname = map[i].name;
            return map[i].packet;
        }
    *pname = NULL;
    return 0;
}

/* did you mean (util.c) among the property names */
static const char *closest(const char *name)
{
    const char *names[64];
    int n = 0;
    for (int i = 0; props[i].name && n < 64; i++)
        names[n++] = props[i].name;
    return pmq_closest(name, names, n);
}

static void check_number(lua_State *L, int vidx, const char *fname, int i)
{
    lua_Number v;
    char got[40], lo[24], hi[24];
    if (!pmq_isinteger(L, vidx))
        luaL_error(L, "bad property '%s' to %s (integer expected, got %s)", props[i].name, fname,
                   lua_type(L, vidx) == LUA_TNUMBER ? "a fraction" : luaL_typename(L, vidx));
    v = lua_tonumber(L, vidx);
    if (v < props[i].lo || v > props[i].hi) {
        snprintf(got, sizeof got, "%.0f", (double)v);
        snprintf(lo, sizeof lo, "%.0f", props[i].lo);
        snprintf(hi, sizeof hi, "%.0f", props[i].hi);
        luaL_error(L, "bad property '%s' to %s (%s out of range %s..%s)", props[i].name, fname, got, lo, hi);
    }
}

/* a UTF-8 string property, or a user property's key or value */
static void check_text(lua_State *L, int vidx, const char *fname, const char *name, const char *what)
{
    size_t len;
    const char *s = lua_tolstring(L, vidx, &len);
    if (len > 65535)
        luaL_error(L, "bad property '%s' to %s (%s%slonger than 65535 bytes)", name, fname, what, *what ? " " : "");
    if (memchr(s, 0, len))
        luaL_error(L, "bad property '%s' to %s (%s%scontains a zero byte)", name, fname, what, *what ? " " : "");
    if (!pmq_valid_utf8((const unsigned char *)s, len))
        luaL_error(L, "bad property '%s' to %s (%s%snot valid UTF-8)", name, fname, what, *what ? " " : "");
}

void pmq_props_check(lua_State *L, int idx, const char *fname, int version)
{
    const char *pname;
    int packet = packet_of(fname, &pname);
    idx = pmq_absindex(L, idx);
    if (lua_isnoneornil(L, idx))
        return;
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "bad 'properties' to %s (table expected, got %s)", fname, luaL_typename(L, idx));
    if (version != 5) {
        lua_pushnil(L);
        if (lua_next(L, idx)) {
            lua_pop(L, 2);
            luaL_error(L, "bad 'properties' to %s (properties need MQTT 5; this client uses version %d)",
                       fname, version);
        }
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *name;
        size_t nlen;
        int i;
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "bad 'properties' to %s (property names are strings, got %s)", fname,
                       luaL_typename(L, -2));
        name = lua_tolstring(L, -2, &nlen);
        if (memchr(name, 0, nlen))
            luaL_error(L, "bad property name '%s...' to %s (contains a zero byte)", name, fname);
        if ((i = find(name, nlen)) < 0) {
            const char *hint = closest(name);
            if (hint)
                luaL_error(L, "unknown property '%s' to %s (did you mean '%s'?)", name, fname, hint);
            luaL_error(L, "unknown property '%s' to %s", name, fname);
        }
        if (packet && !(props[i].packets & packet))
            luaL_error(L, "bad property '%s' to %s (not allowed in %s)", name, fname, pname);
        switch (props[i].type) {
        case T_BYTE:
        case T_INT2:
        case T_INT4:
        case T_VBI:
            check_number(L, -1, fname, i);
            break;
        case T_STRING:
        case T_BINARY:
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "bad property '%s' to %s (string expected, got %s)", name, fname,
                           luaL_typename(L, -1));
            if (props[i].type == T_STRING) {
                check_text(L, -1, fname, name, "");
            } else if (pmq_rawlen(L, -1) > 65535) {
                luaL_error(L, "bad property '%s' to %s (longer than 65535 bytes)", name, fname);
            }
            if (props[i].code == MQTTPROPERTY_CODE_RESPONSE_TOPIC) {
                size_t len;
                const char *t = lua_tolstring(L, -1, &len);
                if (memchr(t, '+', len) || memchr(t, '#', len))
                    luaL_error(L, "bad property '%s' to %s (wildcards '+' and '#' are not allowed in a topic name)",
                               name, fname);
                if (len == 0)
                    luaL_error(L, "bad property '%s' to %s (empty topic)", name, fname);
            }
            break;
        case T_PAIR: {
            int n, t = lua_gettop(L);
            if (lua_type(L, t) != LUA_TTABLE)
                luaL_error(L, "bad property 'user' to %s (list of {key, value} pairs expected, got %s)",
                           fname, luaL_typename(L, t));
            n = (int)pmq_rawlen(L, t);
            /* a map ({k = "v"}) has no list part: it would send nothing */
            lua_pushnil(L);
            while (lua_next(L, t)) {
                lua_pop(L, 1);
                if (!(pmq_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 && lua_tointeger(L, -1) <= n))
                    luaL_error(L, "bad property 'user' to %s (a list of {key, value} pairs expected, got a table "
                               "with key %s%s%s: write user = { {\"key\", \"value\"} }, as keys may repeat)",
                               fname, lua_type(L, -1) == LUA_TSTRING ? "'" : "",
                               lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1),
                               lua_type(L, -1) == LUA_TSTRING ? "'" : "");
            }
            for (int k = 1; k <= n; k++) {
                lua_rawgeti(L, t, k);
                if (lua_type(L, -1) != LUA_TTABLE)
                    luaL_error(L, "bad property 'user' to %s (item %d: {key, value} expected, got %s)",
                               fname, k, luaL_typename(L, -1));
                for (int j = 1; j <= 2; j++) {
                    char what[32];
                    lua_rawgeti(L, -1, j);
                    if (lua_type(L, -1) != LUA_TSTRING)
                        luaL_error(L, "bad property 'user' to %s (item %d: %s must be a string, got %s)",
                                   fname, k, j == 1 ? "key" : "value", luaL_typename(L, -1));
                    snprintf(what, sizeof what, "item %d: %s", k, j == 1 ? "key" : "value");
                    check_text(L, -1, fname, "user", what);
                    lua_pop(L, 1);
                }
                lua_pop(L, 1);
            }
            break;
        }
        }
        lua_pop(L, 1);
    }
}

static void add(MQTTProperties *p, int code, int type, lua_State *L, int vidx)
{
    MQTTProperty pr;
    size_t len;
    memset(&pr, 0, sizeof pr);
    pr.identifier = (enum MQTTPropertyCodes)code;
    switch (type) {
    case T_BYTE:
        pr.value.byte = (unsigned char)lua_tonumber(L, vidx);
        break;
    case T_INT2:
        pr.value.integer2 = (unsigned short)lua_tonumber(L, vidx);
        break;
    case T_INT4:
    case T_VBI:
        pr.value.integer4 = (unsigned int)lua_tonumber(L, vidx);
        break;
    case T_STRING:
    case T_BINARY:
        pr.value.data.data = (char *)lua_tolstring(L, vidx, &len);
        pr.value.data.len = (int)len;
        break;
    }
    MQTTProperties_add(p, &pr); /* copies the data */
}

void pmq_props_build(lua_State *L, int idx, MQTTProperties *p)
{
    idx = pmq_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE)
        return;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t nlen;
        const char *name = lua_tolstring(L, -2, &nlen);
        int i = find(name, nlen);
        if (props[i].type == T_PAIR) {
            int n = (int)pmq_rawlen(L, -1);
            for (int k = 1; k <= n; k++) {
                MQTTProperty pr;
                size_t len;
                memset(&pr, 0, sizeof pr);
                pr.identifier = MQTTPROPERTY_CODE_USER_PROPERTY;
                lua_rawgeti(L, -1, k);
                lua_rawgeti(L, -1, 1);
                lua_rawgeti(L, -2, 2);
                pr.value.data.data = (char *)lua_tolstring(L, -2, &len);
                pr.value.data.len = (int)len;
                pr.value.value.data = (char *)lua_tolstring(L, -1, &len);
                pr.value.value.len = (int)len;
                MQTTProperties_add(p, &pr);
                lua_pop(L, 3);
            }
        } else {
            add(p, props[i].code, props[i].type, L, -1);
        }
        lua_pop(L, 1);
    }
}

void pmq_props_push(lua_State *L, const MQTTProperties *p)
{
    lua_createtable(L, 0, p ? p->count : 0);
    if (!p)
        return;
    for (int k = 0; k < p->count; k++) {
        const MQTTProperty *pr = &p->array[k];
        int i = find_code((int)pr->identifier);
        if (i < 0)
            continue;
        switch (props[i].type) {
        case T_BYTE:
            lua_pushinteger(L, pr->value.byte);
            break;
        case T_INT2:
            lua_pushinteger(L, pr->value.integer2);
            break;
        case T_INT4:
        case T_VBI:
            lua_pushnumber(L, (lua_Number)pr->value.integer4);
            if (pr->value.integer4 <= 0x7fffffffU) {
                lua_pop(L, 1);
                lua_pushinteger(L, (lua_Integer)pr->value.integer4);
            }
            break;
        case T_STRING:
        case T_BINARY:
            lua_pushlstring(L, pr->value.data.data ? pr->value.data.data : "", (size_t)pr->value.data.len);
            break;
        case T_PAIR:
            lua_getfield(L, -1, "user");
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_newtable(L);
                lua_pushvalue(L, -1);
                lua_setfield(L, -3, "user");
            }
            lua_createtable(L, 2, 0);
            lua_pushlstring(L, pr->value.data.data ? pr->value.data.data : "", (size_t)pr->value.data.len);
            lua_rawseti(L, -2, 1);
            lua_pushlstring(L, pr->value.value.data ? pr->value.value.data : "", (size_t)pr->value.value.len);
            lua_rawseti(L, -2, 2);
            lua_rawseti(L, -2, (int)pmq_rawlen(L, -2) + 1);
            lua_pop(L, 1);
            continue;
        }
        if (pr->identifier == MQTTPROPERTY_CODE_SUBSCRIPTION_IDENTIFIER) {
            /* a message may match several subscriptions: always a list */
            lua_getfield(L, -2, props[i].name);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_newtable(L);
                lua_pushvalue(L, -1);
                lua_setfield(L, -4, props[i].name);
            }
            lua_insert(L, -2);
            lua_rawseti(L, -2, (int)pmq_rawlen(L, -2) + 1);
            lua_pop(L, 1);
            continue;
        }
        lua_setfield(L, -2, props[i].name);
    }
}

/* ------------------------------------------------------------------ */
/* options: one field of an option table, checked; raise when it is bad */

int pmq_opt_int(lua_State *L, int t, const char *field, int def, int lo, int hi, const char *fname)
{
    lua_Number v;
    int r = def;
    lua_getfield(L, t, field);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "bad option '%s' to %s (number expected, got %s)", field, fname,
                       luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
        if (!(v >= lo && v <= hi)) /* NaN too: (int)NaN is undefined */
            luaL_error(L, "bad option '%s' to %s (%f out of range %d..%d)", field, fname, (double)v, lo, hi);
        r = (int)v;
    }
    lua_pop(L, 1);
    return r;
}

const char *pmq_opt_str(lua_State *L, int t, const char *k, const char *fname)
{
    const char *s = NULL;
    lua_getfield(L, t, k);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "bad option '%s' to %s (string expected, got %s)", k, fname, luaL_typename(L, -1));
        s = lua_tostring(L, -1);
    }
    lua_pop(L, 1); /* the string stays alive: the table holds it */
    return s;
}

int pmq_opt_bool(lua_State *L, int t, const char *k, int def)
{
    int v = def;
    lua_getfield(L, t, k);
    if (!lua_isnil(L, -1))
        v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

unsigned char *pmq_opt_alpn(lua_State *L, int t, unsigned int *len)
{
    /* {"mqtt", "x"} -> "\4mqtt\1x" */
    size_t total = 0;
    int n;
    unsigned char *buf, *p;
    lua_getfield(L, t, "alpn");
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        return NULL;
    }
    n = (int)pmq_rawlen(L, -1);
    for (int i = 1; i <= n; i++) {
        size_t l = 0;
        lua_rawgeti(L, -1, i);
        if (lua_type(L, -1) != LUA_TSTRING || (l = pmq_rawlen(L, -1)) == 0 || l > 255)
            luaL_error(L, "bad option 'tls.alpn' to connect (list of 1..255 byte strings expected)");
        total += 1 + l;
        lua_pop(L, 1);
    }
    /* stays on the stack, freed by the GC. NUL-terminated: paho 1.3.12 copies
     * it with strlen (no length byte is 0, so that finds the end) */
    buf = lua_newuserdata(L, total + 1);
    lua_insert(L, -2);
    p = buf;
    for (int i = 1; i <= n; i++) {
        size_t l;
        const char *s;
        lua_rawgeti(L, -1, i);
        s = lua_tolstring(L, -1, &l);
        *p++ = (unsigned char)l;
        memcpy(p, s, l);
        p += l;
        lua_pop(L, 1);
    }
    *p = 0;
    lua_pop(L, 1);
    *len = (unsigned int)total;
    return total ? buf : NULL;
}
