/*
 * codes.c - what paho's return codes, MQTT reason codes and the binding's
 * loss causes mean, in the contract's words (docs/api.md, API-CONTRACT.md):
 * the (nil, message, code) failure triple, the "not connected: ..." message,
 * reason and cause names.
 *
 * A paho return code given back by a request (synchronously) becomes the
 * binding's (nil, message, code) failure triple in pmq_fail. A request that
 * fails later, in its completion, is named by lua/paho/mqtt/errors.lua,
 * which needs the client's state to say why (a -11 after close() is
 * "closed", after a lost session "disconnected"); it reads paho's codes by
 * name from core.rc (pmq_open_codes), never as bare numbers.
 */
#include "luapmq.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    int code;
    const char *name;
} reasons[] = {
    {0x00, "success"},
    {0x01, "granted qos 1"},
    {0x02, "granted qos 2"},
    {0x04, "disconnect with will message"},
    {0x10, "no matching subscribers"},
    {0x11, "no subscription existed"},
    {0x18, "continue authentication"},
    {0x19, "re-authenticate"},
    {0x80, "unspecified error"},
    {0x81, "malformed packet"},
    {0x82, "protocol error"},
    {0x83, "implementation specific error"},
    {0x84, "unsupported protocol version"},
    {0x85, "client identifier not valid"},
    {0x86, "bad user name or password"},
    {0x87, "not authorized"},
    {0x88, "server unavailable"},
    {0x89, "server busy"},
    {0x8A, "banned"},
    {0x8B, "server shutting down"},
    {0x8C, "bad authentication method"},
    {0x8D, "keep alive timeout"},
    {0x8E, "session taken over"},
    {0x8F, "topic filter invalid"},
    {0x90, "topic name invalid"},
    {0x91, "packet identifier in use"},
    {0x92, "packet identifier not found"},
    {0x93, "receive maximum exceeded"},
    {0x94, "topic alias invalid"},
    {0x95, "packet too large"},
    {0x96, "message rate too high"},
    {0x97, "quota exceeded"},
    {0x98, "administrative action"},
    {0x99, "payload format invalid"},
    {0x9A, "retain not supported"},
    {0x9B, "qos not supported"},
    {0x9C, "use another server"},
    {0x9D, "server moved"},
    {0x9E, "shared subscriptions not supported"},
    {0x9F, "connection rate exceeded"},
    {0xA0, "maximum connect time"},
    {0xA1, "subscription identifiers not supported"},
    {0xA2, "wildcard subscriptions not supported"},
    {-1, NULL}};

const char *pmq_reason_name(int code)
{
    for (int i = 0; reasons[i].name; i++)
        if (reasons[i].code == code)
            return reasons[i].name;
    return "unknown reason code";
}

const char *pmq_cause_name(int cause)
{
    switch (cause) {
    case PMQ_CAUSE_KEEPALIVE: return "keepalive";
    case PMQ_CAUSE_BROKER: return "broker";
    case PMQ_CAUSE_NETWORK: return "network";
    case PMQ_CAUSE_CLIENT: return "client";
    default: return NULL;
    }
}

int pmq_fail_msg(lua_State *L, const char *code, const char *fmt, ...)
{
    va_list ap;
    char buf[512];
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    lua_pushnil(L);
    lua_pushstring(L, buf);
    lua_pushstring(L, code);
    return 3;
}

/* "not connected: connection lost 3.2 s ago (network: ...)" */
void pmq_push_notconnected(lua_State *L, pmq_ctx *c)
{
    char buf[400], text[sizeof c->lost_text];
    double ago;
    int cause;
    pthread_mutex_lock(&c->mu);
    cause = c->lost_cause;
    ago = pmq_now() - c->lost_at;
    memcpy(text, c->lost_text, sizeof text);
    pthread_mutex_unlock(&c->mu);
    if (cause == PMQ_CAUSE_NONE)
        snprintf(buf, sizeof buf, "not connected: the client has not connected yet");
    else if (cause == PMQ_CAUSE_CLIENT)
        snprintf(buf, sizeof buf, "not connected: disconnected by the client %.1f s ago", ago);
    else
        snprintf(buf, sizeof buf, "not connected: connection lost %.1f s ago (%s: %s)", ago,
                 pmq_cause_name(cause), text);
    lua_pushstring(L, buf);
}

int pmq_fail(lua_State *L, pmq_ctx *c, const char *what, int rc)
{
    const char *code = "error";
    const char *text = MQTTAsync_strerror(rc);
    switch (rc) {
    case MQTTASYNC_DISCONNECTED:
        lua_pushnil(L);
        pmq_push_notconnected(L, c);
        lua_pushfstring(L, "%s: %s", what, lua_tostring(L, -1));
        lua_remove(L, -2);
        lua_pushstring(L, "not_connected");
        return 3;
    case MQTTASYNC_MAX_MESSAGES_INFLIGHT:
    case MQTTASYNC_MAX_BUFFERED_MESSAGES:
    case MQTTASYNC_MAX_BUFFERED:
        code = "queue_full";
        break;
    case MQTTASYNC_OPERATION_INCOMPLETE:
        code = "closed";
        break;
    default:
        break;
    }
    return pmq_fail_msg(L, code, "%s: %s (paho code %d)", what, text ? text : "failed", rc);
}


/* core.rc: paho's return codes by name, so that the Lua layer's mapping of
 * completion failures (lua/paho/mqtt/errors.lua) names them instead of
 * repeating paho's numbers */
void pmq_open_codes(lua_State *L)
{
    static const struct {
        const char *name;
        int rc;
    } rcs[] = {
        {"SUCCESS", MQTTASYNC_SUCCESS},
        {"FAILURE", MQTTASYNC_FAILURE},
        {"PERSISTENCE_ERROR", MQTTASYNC_PERSISTENCE_ERROR},
        {"DISCONNECTED", MQTTASYNC_DISCONNECTED},
        {"MAX_MESSAGES_INFLIGHT", MQTTASYNC_MAX_MESSAGES_INFLIGHT},
        {"BAD_UTF8_STRING", MQTTASYNC_BAD_UTF8_STRING},
        {"NULL_PARAMETER", MQTTASYNC_NULL_PARAMETER},
        {"TOPICNAME_TRUNCATED", MQTTASYNC_TOPICNAME_TRUNCATED},
        {"BAD_STRUCTURE", MQTTASYNC_BAD_STRUCTURE},
        {"BAD_QOS", MQTTASYNC_BAD_QOS},
        {"NO_MORE_MSGIDS", MQTTASYNC_NO_MORE_MSGIDS},
        {"OPERATION_INCOMPLETE", MQTTASYNC_OPERATION_INCOMPLETE},
        {"MAX_BUFFERED_MESSAGES", MQTTASYNC_MAX_BUFFERED_MESSAGES},
        {"SSL_NOT_SUPPORTED", MQTTASYNC_SSL_NOT_SUPPORTED},
        {"BAD_PROTOCOL", MQTTASYNC_BAD_PROTOCOL},
        {"BAD_MQTT_OPTION", MQTTASYNC_BAD_MQTT_OPTION},
        {"WRONG_MQTT_VERSION", MQTTASYNC_WRONG_MQTT_VERSION},
        {"ZERO_LEN_WILL_TOPIC", MQTTASYNC_0_LEN_WILL_TOPIC},
        {"COMMAND_IGNORED", MQTTASYNC_COMMAND_IGNORED},
        {"MAX_BUFFERED", MQTTASYNC_MAX_BUFFERED},
    };
    lua_createtable(L, 0, (int)(sizeof rcs / sizeof rcs[0]));
    for (size_t i = 0; i < sizeof rcs / sizeof rcs[0]; i++) {
        lua_pushinteger(L, rcs[i].rc);
        lua_setfield(L, -2, rcs[i].name);
    }
    lua_setfield(L, -2, "rc");
}
