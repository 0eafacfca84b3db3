/*
 * core.c - luaopen_paho_mqtt_core: registers each part of the C core.
 */
#define _GNU_SOURCE
#include <dlfcn.h>

#include "luapmq.h"

PMQ_EXPORT int luaopen_paho_mqtt_core(lua_State *L);

/* paho's threads live as long as the process (quirks.c keeps an idle handle
 * so they are not stopped and restarted on every close). When the Lua state
 * closes, Lua dlcloses this module and with it libpaho; the threads would
 * then run unmapped code. Pin this module, and so libpaho, for good. */
static const char in_this_module = 0;

static void pin_self(void)
{
    Dl_info info;
    if (dladdr((const void *)&in_this_module, &info) && info.dli_fname)
        (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

int luaopen_paho_mqtt_core(lua_State *L)
{
    pin_self();
    lua_newtable(L);
    pmq_open_codes(L);
    pmq_open_util(L);
    pmq_open_client(L);
    pmq_open_host(L);
    return 1;
}
