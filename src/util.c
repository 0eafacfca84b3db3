/*
 * util.c - text checks (UTF-8, did-you-mean) and the module's own functions
 * (core.now, core.poll, core.reason, core.trace_*, core.probe, core.closest,
 * PAHO_INFO). Codes and messages are codes.c's; options and properties
 * props.c's.
 */
#include "luapmq.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <ctype.h>
#include <string.h>

/* 1 when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates) */
int pmq_valid_utf8(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char b = s[i];
        size_t n;
        unsigned int cp;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            n = 1;
            cp = b & 0x1F;
        } else if ((b & 0xF0) == 0xE0) {
            n = 2;
            cp = b & 0x0F;
        } else if ((b & 0xF8) == 0xF0) {
            n = 3;
            cp = b & 0x07;
        } else {
            return 0;
        }
        if (i + n >= len) /* the sequence runs past the end */
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}

/* core.now() -> monotonic seconds */
static int l_now(lua_State *L)
{
    lua_pushnumber(L, pmq_now());
    return 1;
}

/* core.poll({fd, ...}, timeout) -> true if any fd is readable */
static int l_poll(lua_State *L)
{
    struct pollfd stack_fds[64], *fds = stack_fds;
    int n, timeout_ms, rc;
    double timeout;
    luaL_checktype(L, 1, LUA_TTABLE);
    timeout = luaL_optnumber(L, 2, 0);
    n = (int)pmq_rawlen(L, 1);
    if (n > 64) /* every client's descriptor, however many (a userdata: the GC frees it) */
        fds = (struct pollfd *)lua_newuserdata(L, (size_t)n * sizeof *fds);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 1, i + 1);
        fds[i].fd = (int)lua_tointeger(L, -1);
        fds[i].events = POLLIN;
        fds[i].revents = 0;
        lua_pop(L, 1);
    }
    if (timeout < 0)
        timeout_ms = -1;
    else if (!(timeout >= 0))
        timeout_ms = 0; /* NaN: (int)NaN is undefined (INT_MIN on x86: a wait for ever) */
    else if (timeout > INT_MAX / 1000)
        timeout_ms = INT_MAX; /* 24.8 days: the caller polls again; a larger one overflows int */
    else
        timeout_ms = (int)(timeout * 1000.0 + 0.999);
    do {
        rc = poll(fds, (nfds_t)n, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    lua_pushboolean(L, rc > 0);
    return 1;
}

/* core.reason(code) -> "not authorized" */
static int l_reason(lua_State *L)
{
    lua_pushstring(L, pmq_reason_name((int)luaL_checkinteger(L, 1)));
    return 1;
}

/* core.valid_utf8(s) -> boolean */
static int l_valid_utf8(lua_State *L)
{
    size_t len;
    const char *str = luaL_checklstring(L, 1, &len);
    lua_pushboolean(L, pmq_valid_utf8((const unsigned char *)str, len));
    return 1;
}

/* core.trace_level(n): 0 = off, 1..7 = paho's MQTTASYNC_TRACE_* levels */
static int l_trace_level(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0 && n <= 7, 1, "trace level 0..7 expected");
    pmq_trace_level((int)n);
    return 0;
}

/* core.trace_take() -> {level, line, level, line, ...}, lost | nil */
static int l_trace_take(lua_State *L)
{
    unsigned long lost = 0;
    pmq_trace_line *l = pmq_trace_take(&lost), *next;
    int i = 0;
    if (!l && !lost)
        return 0;
    lua_newtable(L);
    while (l) {
        int level;
        const char *text = pmq_trace_text(l, &level, &next);
        lua_pushinteger(L, level);
        lua_rawseti(L, -2, ++i);
        lua_pushstring(L, text);
        lua_rawseti(L, -2, ++i);
        pmq_trace_free(l);
        l = next;
    }
    lua_pushinteger(L, (lua_Integer)lost);
    return 2;
}

/* core.probe(host, port, timeout) -> probe: why a TCP connect fails (probe.c);
 * probe:result() -> nil while it runs, then true (TCP connects) or false, cause */
#define PROBE_MT "paho.mqtt.probe"

typedef struct {
    pmq_probe *p;
} probe_box;

static int l_probe(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    lua_Integer port = luaL_checkinteger(L, 2);
    lua_Number timeout = luaL_checknumber(L, 3);
    probe_box *b;
    luaL_argcheck(L, port > 0 && port < 65536, 2, "port 1-65535 expected");
    luaL_argcheck(L, timeout > 0 && timeout <= 60, 3, "0 < timeout <= 60 expected");
    b = lua_newuserdata(L, sizeof *b);
    b->p = NULL;
    luaL_getmetatable(L, PROBE_MT);
    lua_setmetatable(L, -2);
    b->p = pmq_probe_start(host, (int)port, (int)(timeout * 1000));
    if (!b->p)
        return luaL_error(L, "probe: cannot start a thread");
    return 1;
}

static int l_probe_result(lua_State *L)
{
    probe_box *b = luaL_checkudata(L, 1, PROBE_MT);
    char text[256];
    int state;
    if (!b->p)
        return 0;
    state = pmq_probe_result(b->p, text, sizeof text);
    if (state == PMQ_PROBE_RUNNING)
        return 0;
    lua_pushboolean(L, state == PMQ_PROBE_TCP_OK);
    lua_pushstring(L, text);
    return 2;
}

static int l_probe_gc(lua_State *L)
{
    probe_box *b = luaL_checkudata(L, 1, PROBE_MT);
    if (b->p) {
        pmq_probe_release(b->p); /* a thread still running frees it when done */
        b->p = NULL;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* did you mean: the one implementation, for property names (props.c) and
 * option, event and level names (options.lua, through core.closest) */

/* edit distance (Levenshtein), for names shorter than 63 bytes */
static int distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int row[64];
    if (la >= 63 || lb >= 63)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int prev = row[0], cur;
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev + (a[i - 1] != b[j - 1]);
            int del = row[j] + 1, ins = row[j - 1] + 1;
            cur = sub < del ? sub : del;
            cur = cur < ins ? cur : ins;
            prev = row[j];
            row[j] = cur;
        }
    }
    return row[lb];
}

/* the same name but for case, '_' and '-' (keepAlive, keep-alive: keepalive) */
static int same_plain(const char *a, const char *b)
{
    for (;;) {
        while (*a == '_' || *a == '-')
            a++;
        while (*b == '_' || *b == '-')
            b++;
        if (!*a || !*b)
            return !*a && !*b;
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
            return 0;
        a++, b++;
    }
}

const char *pmq_closest(const char *name, const char *const *names, int n)
{
    const char *best = NULL;
    int bestd = 4; /* a hint only within 3 edits */
    size_t len = strlen(name);
    for (int i = 0; i < n; i++) {
        int d = distance(name, names[i]);
        if (same_plain(name, names[i]))
            d = 0;
        else if (len >= 4 && strncmp(names[i], name, len) == 0 && d > 1)
            d = 1; /* a prefix: subscription_id -> subscription_identifier */
        if (d < bestd || (d == bestd && best && strcmp(names[i], best) < 0)) {
            bestd = d;
            best = names[i];
        }
    }
    return best;
}

/* core.closest(name, set) -> the key of set (a table whose string keys are
 * the valid names) closest to name, or nil */
static int l_closest(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *names[256];
    const char *best;
    int n = 0;
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 2) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING && n < 256)
            names[n++] = lua_tostring(L, -1); /* the key stays in the table */
    }
    best = pmq_closest(name, names, n);
    if (best)
        lua_pushstring(L, best);
    else
        lua_pushnil(L);
    return 1;
}

/* core.wake_up() -> up, wakes: whether the anchor handle is connected to
 * wake.c's peer, which wakes paho's receive thread while a connect waits
 * (so the Lua layer's UNSUBSCRIBE wake is not needed), and how many wakes
 * it has written */
static int l_wake_up(lua_State *L)
{
    long n = 0;
    lua_pushboolean(L, pmq_wake_up(&n));
    lua_pushinteger(L, (lua_Integer)n);
    return 2;
}

int pmq_open_util(lua_State *L)
{
    static const luaL_Reg pm[] = {{"result", l_probe_result}, {"__gc", l_probe_gc}, {NULL, NULL}};
    static const luaL_Reg f[] = {{"now", l_now}, {"poll", l_poll}, {"reason", l_reason}, {"probe", l_probe},
                                 {"trace_level", l_trace_level}, {"trace_take", l_trace_take},
                                 {"valid_utf8", l_valid_utf8}, {"closest", l_closest},
                                 {"wake_up", l_wake_up}, {NULL, NULL}};
    MQTTAsync_nameValue *info = MQTTAsync_getVersionInfo();
    luaL_newmetatable(L, PROBE_MT);
    pmq_setfuncs(L, pm);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    pmq_setfuncs(L, f);
    /* PAHO_INFO: every name paho's library reports about its build; PAHO_VERSION
     * and PAHO_BUILD: its "Version" and "Build level", as it says them */
    lua_newtable(L);
    for (; info && info->name; info++) {
        lua_pushstring(L, info->value ? info->value : "");
        lua_setfield(L, -2, info->name);
        if (strcmp(info->name, "Version") == 0) {
            lua_pushstring(L, info->value);
            lua_setfield(L, -3, "PAHO_VERSION");
        } else if (strcmp(info->name, "Build level") == 0) {
            lua_pushstring(L, info->value);
            lua_setfield(L, -3, "PAHO_BUILD");
        }
    }
    lua_setfield(L, -2, "PAHO_INFO");
    return 0;
}
