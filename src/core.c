/*
 * core.c - luaopen_paho_mqtt_core: registers each part of the C core.
 */
#include "luapmq.h"

PMQ_EXPORT int luaopen_paho_mqtt_core(lua_State *L);

int luaopen_paho_mqtt_core(lua_State *L)
{
    lua_newtable(L);
    pmq_open_util(L);
    pmq_open_client(L);
    return 1;
}
