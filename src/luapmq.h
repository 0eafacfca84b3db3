/*
 * luapmq.h - declarations shared by the files of the C core that run on the
 * Lua thread (everything except events.c), plus the little compatibility
 * layer that lets one source build for Lua 5.1/LuaJIT, 5.3 and 5.4.
 */
#ifndef LUAPMQ_H
#define LUAPMQ_H

#include "pmq.h"

#include <lua.h>
#include <lauxlib.h>

#ifndef LUA_OK
#define LUA_OK 0
#endif

#if defined(__GNUC__)
#define PMQ_EXPORT __attribute__((visibility("default")))
#else
#define PMQ_EXPORT
#endif

#define PMQ_CLIENT_MT "paho.mqtt.client"

/* --- compatibility, with our own names so nothing clashes with LuaJIT's
 *     or lua-compat-5.3's definitions --- */
#if LUA_VERSION_NUM < 502
#define pmq_rawlen(L, i) lua_objlen(L, i)
static inline void pmq_setfuncs(lua_State *L, const luaL_Reg *l)
{
    for (; l->name; l++) {
        lua_pushcfunction(L, l->func);
        lua_setfield(L, -2, l->name);
    }
}
static inline void *pmq_testudata(lua_State *L, int idx, const char *tname)
{
    void *p = lua_touserdata(L, idx);
    if (p && lua_getmetatable(L, idx)) {
        luaL_getmetatable(L, tname);
        if (!lua_rawequal(L, -1, -2))
            p = NULL;
        lua_pop(L, 2);
        return p;
    }
    return NULL;
}
#define pmq_absindex(L, i) ((i) > 0 || (i) <= LUA_REGISTRYINDEX ? (i) : lua_gettop(L) + (i) + 1)
#else
#define pmq_rawlen(L, i) lua_rawlen(L, i)
#define pmq_setfuncs(L, l) luaL_setfuncs(L, l, 0)
#define pmq_testudata(L, i, t) luaL_testudata(L, i, t)
#define pmq_absindex(L, i) lua_absindex(L, i)
#endif

#if LUA_VERSION_NUM >= 503
#define pmq_isinteger(L, i) lua_isinteger(L, i)
#else
static inline int pmq_isinteger(lua_State *L, int i)
{
    if (lua_type(L, i) == LUA_TNUMBER) {
        lua_Number n = lua_tonumber(L, i);
        return n == (lua_Number)(long long)n;
    }
    return 0;
}
#endif

/* the userdata: a box holding the malloc'd context */
typedef struct {
    pmq_ctx *c;
} pmq_box;

/* the client of a method (argument 1), which must not be closed; raises */
static inline pmq_ctx *pmq_check_open(lua_State *L, const char *fname)
{
    pmq_box *b = luaL_checkudata(L, 1, PMQ_CLIENT_MT);
    if (!b->c)
        luaL_error(L, "%s: the client is closed", fname);
    return b->c;
}

/* a paho call from the Lua thread, announced (pmq_paho_enter, queue.c);
 * needs an int rc_ in scope */
#define PAHO(call) (pmq_paho_enter(), rc_ = (call), pmq_paho_leave(), rc_)

/* client.c */
PMQ_HIDDEN int pmq_open_client(lua_State *L);

/* requests.c: sets the request methods into the table on top */
PMQ_HIDDEN void pmq_open_requests(lua_State *L);

/* host.c */
PMQ_HIDDEN int pmq_open_host(lua_State *L);

/* props.c: options */
PMQ_HIDDEN int pmq_opt_int(lua_State *L, int t, const char *field, int def, int lo, int hi, const char *fname);
PMQ_HIDDEN const char *pmq_opt_str(lua_State *L, int t, const char *k, const char *fname);
PMQ_HIDDEN int pmq_opt_bool(lua_State *L, int t, const char *k, int def);
PMQ_HIDDEN unsigned char *pmq_opt_alpn(lua_State *L, int t, unsigned int *len);
/* props.c: properties */
PMQ_HIDDEN void pmq_props_check(lua_State *L, int idx, const char *fname, int version);
PMQ_HIDDEN void pmq_props_build(lua_State *L, int idx, MQTTProperties *p);
PMQ_HIDDEN void pmq_props_push(lua_State *L, const MQTTProperties *p);

/* util.c */
PMQ_HIDDEN int pmq_open_util(lua_State *L);
PMQ_HIDDEN int pmq_valid_utf8(const unsigned char *s, size_t len);
/* did you mean: the name of names[0..n-1] closest to name (within 3 edits), or NULL */
PMQ_HIDDEN const char *pmq_closest(const char *name, const char *const *names, int n);

/* codes.c: paho codes, reason codes and causes in the contract's words */
PMQ_HIDDEN const char *pmq_reason_name(int code);
PMQ_HIDDEN const char *pmq_cause_name(int cause);
PMQ_HIDDEN int pmq_fail(lua_State *L, pmq_ctx *c, const char *what, int rc);
PMQ_HIDDEN void pmq_open_codes(lua_State *L); /* core.rc: paho return codes by name */
PMQ_HIDDEN int pmq_fail_msg(lua_State *L, const char *code, const char *fmt, ...);
PMQ_HIDDEN void pmq_push_notconnected(lua_State *L, pmq_ctx *c);

#endif
