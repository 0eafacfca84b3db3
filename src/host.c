/*
 * host.c - what embedding hosts need of a handler coroutine (OpenResty).
 *
 * OpenResty's LuaJIT gives every lua_State two host pointers (exdata,
 * exdata2) and copies the parent's into each new thread (lua_newthread in
 * lj_state.c). lua-nginx-module finds the current request through them
 * (ngx_http_lua_get_req: lua_getexdata), so ngx.log and friends in a thread
 * created during one timer's run would reach that timer's fake request after
 * nginx freed it: the worker crashes (SIGSEGV in ngx_http_lua_module, issue
 * 17). The dispatcher's handler coroutines are pooled and suspended across
 * dispatches, so before each resume it calls adopt_host(co), which gives co
 * the pointers of the thread that resumes it: the same a thread created at
 * that moment would have. Elsewhere adopt_host is not registered.
 */
#include "luapmq.h"

/* OpenResty's lua.h defines HAVE_LUA_EXDATA2 next to lua_setexdata2 (the
 * branch of libluajit2-5.1 in Debian 12 and every OpenResty since 1.19) */
#ifdef HAVE_LUA_EXDATA2
static int l_adopt_host(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    luaL_argcheck(L, co != NULL, 1, "coroutine expected");
    lua_setexdata(co, lua_getexdata(L));
    lua_setexdata2(co, lua_getexdata2(L));
    return 0;
}
#endif

int pmq_open_host(lua_State *L)
{
#ifdef HAVE_LUA_EXDATA2
    lua_pushcfunction(L, l_adopt_host);
    lua_setfield(L, -2, "adopt_host");
#else
    (void)L;
#endif
    return 0;
}
