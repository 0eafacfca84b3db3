/*
 * client.c - the client object of the C core (paho.mqtt.core).
 *
 * A thin wrapper over one MQTTAsync handle: its life (new, close, rebuild,
 * __gc), the events the Lua layer pulls with client:next() on the thread
 * that owns the client, and its state (fd, stats, pending...). The requests
 * (connect, subscribe, publish...) are requests.c's; they return paho's
 * token at once, and their completions, arriving messages and connection
 * changes come back as events. Option checking with friendly messages lives
 * in the Lua layer (lua/paho/mqtt.lua); the C core still checks every type
 * it reads, so a direct call with bad arguments raises instead of crashing.
 */
#include "luapmq.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* core.new{uris = {...}, id = "", version = 5, persist_dir = nil,
 *          offline_queue = 0, queue_max = 0, queue_max_bytes = 0} */
/* paho's handle, from what l_new saved in c */
static int create_handle(pmq_ctx *c)
{
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    int rc, rc_;
    co.MQTTVersion = c->version == 5 ? MQTTVERSION_5 : c->version == 4 ? MQTTVERSION_3_1_1 : MQTTVERSION_3_1;
    co.sendWhileDisconnected = c->mk_offline > 0;
    co.allowDisconnectedSendAtAnyTime = c->mk_offline > 0;
    /* paho counts every unsent request against this, connected or not, and
     * refused publishes while connected when more than offline_queue were
     * unsent (-12, with a broker of Receive Maximum 65535): the Lua layer
     * counts the offline queue itself (publish in mqtt.lua) */
    co.maxBufferedMessages = INT_MAX / 2;
    rc = PAHO(MQTTAsync_createWithOptions(&c->handle, c->mk_uri, c->ka_id,
                                          c->mk_dir ? MQTTCLIENT_PERSISTENCE_DEFAULT : MQTTCLIENT_PERSISTENCE_NONE,
                                          (void *)c->mk_dir, &co));
    if (rc != MQTTASYNC_SUCCESS)
        return rc;
    (void)PAHO(MQTTAsync_setCallbacks(c->handle, c, pmq_on_lost, pmq_on_message, pmq_on_delivered));
    if (c->version == 5)
        (void)PAHO(MQTTAsync_setDisconnected(c->handle, c, pmq_on_disconnected));
    return MQTTASYNC_SUCCESS;
}

static int l_new(lua_State *L)
{
    const char *fname = "client";
    const char *id, *dir;
    int version, offline, rc;
    pmq_ctx *c;
    pmq_box *b;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "uris");
    if (lua_type(L, -1) != LUA_TTABLE || pmq_rawlen(L, -1) < 1)
        luaL_error(L, "bad option 'uris' to client (non-empty list expected)");
    lua_rawgeti(L, -1, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "bad option 'uris' to client (list of strings expected)");
    lua_pop(L, 2);
    id = pmq_opt_str(L, 1, "id", fname);
    dir = pmq_opt_str(L, 1, "persist_dir", fname);
    version = pmq_opt_int(L, 1, "version", 5, 3, 5, fname);
    offline = pmq_opt_int(L, 1, "offline_queue", 0, 0, INT_MAX, fname);

    b = lua_newuserdata(L, sizeof *b);
    b->c = NULL;
    luaL_getmetatable(L, PMQ_CLIENT_MT);
    lua_setmetatable(L, -2);

    c = calloc(1, sizeof *c);
    if (!c)
        return luaL_error(L, "client: out of memory");
    if (pmq_queue_init(c) != 0) {
        free(c);
        return luaL_error(L, "client: cannot create the event descriptor");
    }
    if (pmq_out_init(c) != 0) {
        pmq_queue_free(c);
        free(c);
        return luaL_error(L, "client: cannot create the outbox's locks");
    }
    c->version = version;
    c->ka_id = strdup(id ? id : "");
    c->max_count = (size_t)pmq_opt_int(L, 1, "queue_max", 0, 0, INT_MAX, fname);
    c->max_bytes = (size_t)pmq_opt_int(L, 1, "queue_max_bytes", 0, 0, INT_MAX, fname);
    b->c = c;

    pmq_keep_paho_threads();

    lua_getfield(L, 1, "uris");
    lua_rawgeti(L, -1, 1);
    c->ws = pmq_ws_uri(lua_tostring(L, -1));
    c->mk_uri = strdup(lua_tostring(L, -1));
    lua_pop(L, 2);
    c->mk_dir = dir ? strdup(dir) : NULL;
    c->mk_offline = offline;
    if (!c->mk_uri || (dir && !c->mk_dir) || !c->ka_id)
        return luaL_error(L, "client: out of memory");
    rc = create_handle(c);
    if (rc != MQTTASYNC_SUCCESS) {
        c->handle = NULL;
        return pmq_fail(L, c, "client", rc);
    }
    return 1;
}


/* destroy fails the pending requests (their callbacks run here, on this
 * thread) and waits for any callback of this client in flight; it sets
 * c->handle to NULL */
static void destroy_handle(pmq_ctx *c)
{
    pmq_wake_end(c); /* a connect pending on this handle ends with it */
    if (__atomic_load_n(&c->damaged, __ATOMIC_SEQ_CST) || c->suspect) {
        /* paho would free the damaged publish a second time (retire.c) */
        if (pmq_retire(c) == 0)
            c->retired++;
        return;
    }
    pmq_paho_enter();
    MQTTAsync_destroy(&c->handle);
    pmq_paho_leave();
    pmq_destroyed(); /* quirks.c: the next connect waits a little */
}

/* close(timeout): disconnect if needed and free everything; idempotent */
static void close_client(pmq_box *b, int timeout_ms)
{
    pmq_ctx *c = b->c;
    int rc_;
    if (!c)
        return;
    b->c = NULL;
    pmq_queue_close(c); /* a paho thread waiting for queue space gives up */
    pmq_out_shut(c);    /* nothing held is handed over from now on */
    if (c->handle) {
        if (PAHO(MQTTAsync_isConnected(c->handle))) {
            MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
            d.timeout = timeout_ms;
            if (PAHO(MQTTAsync_disconnect(c->handle, &d)) == MQTTASYNC_SUCCESS) {
                /* give paho up to timeout + 1 s to send DISCONNECT */
                struct timespec ts = {0, 2000000};
                double end = pmq_now() + timeout_ms / 1000.0 + 1.0;
                while (pmq_now() < end && PAHO(MQTTAsync_isConnected(c->handle)))
                    nanosleep(&ts, NULL);
            }
        }
        destroy_handle(c);
    }
    pmq_wait_idle(c);
    pmq_ws_release(c);
    pmq_ka_unwatch(c);
    pmq_trace_forget(c);
    pmq_out_free(c);
    pmq_queue_free(c);
    free(c->ka_id);
    free(c->mk_uri);
    free(c->mk_dir);
    free(c);
}

static int l_close(lua_State *L)
{
    pmq_box *b = luaL_checkudata(L, 1, PMQ_CLIENT_MT);
    lua_Number t = luaL_optnumber(L, 2, 0);
    if (!(t >= 0 && t <= 3600)) /* NaN too */
        return luaL_error(L, "bad argument #1 to close (timeout out of range 0..3600)");
    close_client(b, (int)(t * 1000));
    return 0;
}

/* client:rebuild() -> true | nil, message, code: retire paho's handle
 * (retire.c: destroying it would free the failed publish twice) and
 * create it again with the same id, URI and persistence directory. paho
 * 1.3.12 keeps a publish whose first write failed in its in-flight list
 * after freeing its topic and payload, and resends that freed memory after
 * every reconnect (the broker closes the connection: "malformed packet"),
 * for ever; a fresh handle starts clean (restoring what paho persisted, if
 * the client has a persistence directory). Pending requests fail. */
static int l_rebuild(lua_State *L)
{
    pmq_ctx *c = pmq_check_open(L, "rebuild");
    int rc;
    pmq_out_shut(c); /* what waits in the outbox stays, for the new handle */
    if (c->handle)
        destroy_handle(c);
    pthread_mutex_lock(&c->mu);
    __atomic_store_n(&c->connected, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&c->mu);
    pmq_ws_release(c);
    __atomic_store_n(&c->damaged, 0, __ATOMIC_SEQ_CST); /* after destroy's callbacks */
    c->suspect = 0;
    rc = create_handle(c);
    if (rc != MQTTASYNC_SUCCESS) {
        c->handle = NULL;
        return pmq_fail(L, c, "rebuild", rc);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_gc(lua_State *L)
{
    pmq_box *b = luaL_checkudata(L, 1, PMQ_CLIENT_MT);
    close_client(b, 0);
    return 0;
}

static int l_closed(lua_State *L)
{
    pmq_box *b = luaL_checkudata(L, 1, PMQ_CLIENT_MT);
    lua_pushboolean(L, b->c == NULL);
    return 1;
}

static int l_tostring(lua_State *L)
{
    pmq_box *b = luaL_checkudata(L, 1, PMQ_CLIENT_MT);
    lua_pushfstring(L, "paho.mqtt.core client (%p%s)", (void *)b, b->c ? "" : ", closed");
    return 1;
}

/* ------------------------------------------------------------------ */
/* events                                                              */

static const char *op_names[] = {"", "connect", "subscribe", "unsubscribe", "publish", "disconnect"};

static void push_codes(lua_State *L, pmq_event *e)
{
    lua_createtable(L, e->nqos, 0);
    for (int i = 0; i < e->nqos; i++) {
        lua_pushinteger(L, e->qos[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void set_props(lua_State *L, pmq_event *e)
{
    if (e->has_props) { /* set only when there are some */
        pmq_props_push(L, &e->props);
        lua_setfield(L, -2, "properties");
    }
}

static void push_message(lua_State *L, pmq_event *e)
{
    lua_createtable(L, 0, 8);
    lua_pushlstring(L, e->topic, (size_t)e->topiclen);
    lua_setfield(L, -2, "topic");
    lua_pushlstring(L, e->payload, (size_t)e->payloadlen);
    lua_setfield(L, -2, "payload");
    set_int(L, "qos", e->mqos);
    lua_pushboolean(L, e->retained);
    lua_setfield(L, -2, "retain");
    lua_pushboolean(L, e->dup);
    lua_setfield(L, -2, "dup");
    set_int(L, "id", e->msgid);
    set_props(L, e);
}

/* client:next([buf]) -> nil | name, record: the next event, as its name
 * and a record with named fields:
 *   "message",      msg: topic, payload, qos, retain, dup, id[, properties]
 *   "op",           {kind, token, ok, rc, reason, text[, session_present]
 *                    [, codes][, packet][, properties]}: a request completed
 *                    (kind "connect", "subscribe", "unsubscribe", "publish",
 *                    "disconnect"); session_present for a connect, codes
 *                    (the granted QoS or reason codes) for a subscribe or
 *                    unsubscribe, packet (the MQTT packet type) for a
 *                    failure that names one
 *   "lost",         {cause, message}: the connection ended
 *   "disconnected", {reason, message[, properties]}: the broker's DISCONNECT
 *   "delivered"     (no record; while watch_restored is on)
 *   "published",    buf: publishes that succeeded with reason 0 and no
 *                   properties, batched, their numbers in buf[1..buf.n]
 *                   (buf is the table given as argument, reused by the
 *                   caller, or a new one) */
static int l_next(lua_State *L)
{
    pmq_ctx *c = pmq_check_open(L, "next");
    pmq_event *e = pmq_queue_pop(c);
    int n = 2;
    if (!e)
        return 0;
    switch (e->type) {
    case PMQ_EV_MESSAGE:
        lua_pushliteral(L, "message");
        push_message(L, e);
        break;
    case PMQ_EV_OP:
        lua_pushliteral(L, "op");
        lua_createtable(L, 0, 8);
        set_str(L, "kind", op_names[e->kind]);
        set_int(L, "token", e->token);
        lua_pushboolean(L, e->ok);
        lua_setfield(L, -2, "ok");
        set_int(L, "rc", e->rc);
        set_int(L, "reason", e->reason);
        if (e->text)
            set_str(L, "text", e->text);
        if (e->kind == PMQ_OP_CONNECT) {
            lua_pushboolean(L, e->flag);
            lua_setfield(L, -2, "session_present");
        } else if (e->nqos > 0) {
            push_codes(L, e);
            lua_setfield(L, -2, "codes");
        } else if (e->flag) {
            set_int(L, "packet", e->flag); /* packet type of a failure */
        }
        set_props(L, e);
        break;
    case PMQ_EV_LOST:
        lua_pushliteral(L, "lost");
        lua_createtable(L, 0, 2);
        set_str(L, "cause", pmq_cause_name(e->reason));
        set_str(L, "message", e->text ? e->text : "");
        break;
    case PMQ_EV_DELIVERED:
        lua_pushliteral(L, "delivered");
        n = 1;
        break;
    case PMQ_EV_PUBLISHED:
        lua_pushliteral(L, "published");
        if (lua_istable(L, 2))
            lua_pushvalue(L, 2);
        else
            lua_createtable(L, e->nqos, 1);
        for (int i = 0; i < e->nqos; i++) {
            lua_pushinteger(L, e->qos[i]);
            lua_rawseti(L, -2, i + 1);
        }
        set_int(L, "n", e->nqos);
        break;
    case PMQ_EV_DISCONNECTED:
        lua_pushliteral(L, "disconnected");
        lua_createtable(L, 0, 3);
        set_int(L, "reason", e->reason);
        set_str(L, "message", e->text ? e->text : "");
        set_props(L, e);
        break;
    }
    pmq_event_free(e);
    return n;
}

static int l_fd(lua_State *L)
{
    pmq_ctx *c = pmq_check_open(L, "fd");
    lua_pushinteger(L, c->rfd);
    return 1;
}

/* client:watch_restored(on): post a "delivered" event as paho completes
 * QoS 1/2 publishes (its deliveryComplete), which is the only sign paho
 * gives of the publishes it restored from its persistence store */
static int l_watch_restored(lua_State *L)
{
    pmq_ctx *c = pmq_check_open(L, "watch_restored");
    luaL_checkany(L, 2);
    __atomic_store_n(&c->watch_dc, lua_toboolean(L, 2), __ATOMIC_RELAXED);
    return 0;
}

/* client:damaged() -> code | nil: the paho code of a QoS 1/2 publish paho
 * failed while writing it, since the handle was made (see pmq_ctx.damaged);
 * set on paho's thread, so a connect made before the Lua side has handled
 * that failure's event still sees it */
static int l_damaged(lua_State *L)
{
    pmq_ctx *c = pmq_check_open(L, "damaged");
    int code = __atomic_load_n(&c->damaged, __ATOMIC_SEQ_CST);
    if (!code)
        return 0;
    lua_pushinteger(L, code);
    return 1;
}

/* client:suspect(): the Lua layer found paho's session damaged (a resend
 * of freed memory, a restored publish lost): the handle is retired, not
 * destroyed, at the next rebuild or close (retire.c) */
static int l_suspect(lua_State *L)
{
    pmq_ctx *c = pmq_check_open(L, "suspect");
    c->suspect = 1;
    return 0;
}

/* client:retired() -> n: this client's paho handles retired (retire.c) */
static int l_retired(lua_State *L)
{
    pmq_ctx *c = pmq_check_open(L, "retired");
    lua_pushinteger(L, c->retired);
    return 1;
}

/* client:pending() -> n: the publishes paho has not completed yet (queued or
 * in flight), the restored ones included (MQTTAsync_getPendingTokens) */
static int l_pending(lua_State *L)
{
    pmq_ctx *c = pmq_check_open(L, "pending");
    MQTTAsync_token *toks = NULL;
    int rc, rc_, n = 0;
    if (!c->handle) { /* a rebuild failed */
        lua_pushinteger(L, 0);
        return 1;
    }
    rc = PAHO(MQTTAsync_getPendingTokens(c->handle, &toks));
    if (rc != MQTTASYNC_SUCCESS)
        return pmq_fail(L, c, "pending", rc);
    if (toks) {
        while (toks[n] != -1)
            n++;
        MQTTAsync_free(toks);
    }
    lua_pushinteger(L, n);
    return 1;
}

static int l_is_connected(lua_State *L)
{
    pmq_ctx *c = pmq_check_open(L, "is_connected");
    int rc_;
    lua_pushboolean(L, PAHO(MQTTAsync_isConnected(c->handle)));
    return 1;
}

/* client:not_connected() -> the "not connected: ..." message */
static int l_not_connected(lua_State *L)
{
    pmq_push_notconnected(L, pmq_check_open(L, "not_connected"));
    return 1;
}

#define SETNUM(name, v) (lua_pushnumber(L, (lua_Number)(v)), lua_setfield(L, -2, name))
#define SETINT(name, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, name))

static int l_stats(lua_State *L)
{
    pmq_ctx *c = pmq_check_open(L, "stats");
    double now = pmq_now();
    lua_createtable(L, 0, 16);
    pthread_mutex_lock(&c->mu);
    SETINT("messages_in", c->msgs_in);
    SETINT("bytes_in", c->bytes_in);
    SETINT("queued", __atomic_load_n(&c->count, __ATOMIC_SEQ_CST));
    SETINT("queued_bytes", __atomic_load_n(&c->bytes, __ATOMIC_SEQ_CST));
    SETINT("queue_max", c->max_count);
    SETINT("queue_max_bytes", c->max_bytes);
    SETINT("queue_peak", c->max_depth);
    SETINT("stalls", c->stalls);
    SETNUM("stalled_seconds", c->stalled_secs);
    SETINT("overflows", c->overflows);
    SETINT("keepalive", c->keepalive);
    if (c->connected)
        SETNUM("connected_since", now - c->connected_at);
    if (c->lost_cause != PMQ_CAUSE_NONE) {
        SETNUM("last_loss", now - c->lost_at);
        lua_pushstring(L, pmq_cause_name(c->lost_cause));
        lua_setfield(L, -2, "loss_cause");
        lua_pushstring(L, c->lost_text);
        lua_setfield(L, -2, "loss_message");
    }
    pthread_mutex_unlock(&c->mu);
    return 1;
}

int pmq_open_client(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"next", l_next},
        {"fd", l_fd},
        {"is_connected", l_is_connected},
        {"watch_restored", l_watch_restored},
        {"pending", l_pending},
        {"damaged", l_damaged},
        {"suspect", l_suspect},
        {"retired", l_retired},
        {"not_connected", l_not_connected},
        {"stats", l_stats},
        {"close", l_close},
        {"rebuild", l_rebuild},
        {"closed", l_closed},
        {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__gc", l_gc},
        {"__tostring", l_tostring},
#if LUA_VERSION_NUM >= 504
        {"__close", l_gc},
#endif
        {NULL, NULL}};
    luaL_newmetatable(L, PMQ_CLIENT_MT);
    pmq_setfuncs(L, meta);
    lua_newtable(L);
    pmq_setfuncs(L, methods);
    pmq_open_requests(L); /* connect, subscribe, publish...: requests.c */
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "new");
    return 0;
}
