/*
 * requests.c - the client's requests to paho: connect, subscribe,
 * unsubscribe, publish (with the outbox's methods), disconnect.
 *
 * Each checks its arguments (raising on a bad one, before anything is
 * allocated), converts them (options and properties: props.c), hands the
 * request to paho and returns paho's token (a publish: its own number) at
 * once; the completion comes back as an event (events.c) that client:next()
 * (client.c) hands to the Lua layer. A refusal from paho is the
 * (nil, message, code) triple of codes.c.
 */
#include "luapmq.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* connect                                                             */

/* client:connect(o): o is the option table the Lua layer normalised:
 * keepalive, clean (boolean), session_expiry, username, password,
 * will = {topic, payload, qos, retain, properties}, timeout, properties,
 * uris = {...}, tls = {...}, http_proxy.  Returns true once the request is
 * queued; the CONNACK comes back as an "op" event of kind "connect". */
static int l_connect(lua_State *L)
{
    const char *fname = "connect";
    pmq_ctx *c = pmq_check_open(L, fname);
    MQTTAsync_connectOptions o5 = MQTTAsync_connectOptions_initializer5;
    MQTTAsync_connectOptions o3 = MQTTAsync_connectOptions_initializer;
    MQTTAsync_connectOptions *o = c->version == 5 ? &o5 : &o3;
    MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    MQTTProperties cprops = MQTTProperties_initializer, wprops = MQTTProperties_initializer;
    int rc, rc_, clean, expiry, nuris = 0, has_will = 0, ws;
    char holder[128];
    const char **uris = NULL;
    const char *pw;
    size_t pwlen = 0;

    luaL_checktype(L, 2, LUA_TTABLE);
    o->keepAliveInterval = pmq_opt_int(L, 2, "keepalive", 60, 0, 65535, fname);
    o->connectTimeout = pmq_opt_int(L, 2, "timeout", 10, 1, 3600, fname);
    clean = pmq_opt_bool(L, 2, "clean", 1);
    lua_getfield(L, 2, "session_expiry");
    expiry = 0;
    if (!lua_isnil(L, -1)) {
        lua_Number v;
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "bad option 'session_expiry' to connect (number expected, got %s)", luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
        if (!(v >= 0 && v <= 4294967295.0)) /* NaN too */
            luaL_error(L, "bad option 'session_expiry' to connect (0..4294967295 expected)");
        if (c->version != 5 && v != 0)
            luaL_error(L, "bad option 'session_expiry' to connect (MQTT 5 only; this client uses version %d)",
                       c->version);
        expiry = v > 0;
    }
    lua_pop(L, 1);

    o->username = pmq_opt_str(L, 2, "username", fname);
    lua_getfield(L, 2, "password");
    pw = NULL;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "bad option 'password' to connect (string expected, got %s)", luaL_typename(L, -1));
        pw = lua_tolstring(L, -1, &pwlen);
    }
    lua_pop(L, 1);

    lua_getfield(L, 2, "properties");
    pmq_props_check(L, -1, fname, c->version);
    lua_getfield(L, 2, "will");
    if (!lua_isnil(L, -1)) {
        int w = lua_gettop(L);
        size_t plen = 0;
        if (lua_type(L, w) != LUA_TTABLE)
            luaL_error(L, "bad option 'will' to connect (table expected, got %s)", luaL_typename(L, w));
        will.topicName = pmq_opt_str(L, w, "topic", "connect (will)");
        if (!will.topicName || !*will.topicName)
            luaL_error(L, "bad option 'will.topic' to connect (non-empty string expected)");
        if (strpbrk(will.topicName, "+#"))
            luaL_error(L, "bad option 'will.topic' to connect (wildcards are not allowed in a topic name)");
        lua_getfield(L, w, "payload");
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "bad option 'will.payload' to connect (string expected, got %s)",
                           luaL_typename(L, -1));
            will.payload.data = lua_tolstring(L, -1, &plen);
        }
        lua_pop(L, 1);
        will.payload.len = (int)plen;
        if (!will.payload.data)
            will.payload.data = "";
        will.qos = pmq_opt_int(L, w, "qos", 0, 0, 2, "connect (will)");
        will.retained = pmq_opt_bool(L, w, "retain", 0);
        lua_getfield(L, w, "properties");
        pmq_props_check(L, -1, "connect (will)", c->version);
        lua_pop(L, 1);
        has_will = 1;
    }
    lua_getfield(L, 2, "uris");
    if (lua_type(L, -1) == LUA_TTABLE) {
        nuris = (int)pmq_rawlen(L, -1);
        for (int i = 1; i <= nuris; i++) {
            lua_rawgeti(L, -1, i);
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "bad option 'uris' to connect (list of strings expected)");
            lua_pop(L, 1);
        }
    }
    lua_getfield(L, 2, "tls");
    if (!lua_isnil(L, -1)) {
        int t = lua_gettop(L);
        if (lua_type(L, t) != LUA_TTABLE)
            luaL_error(L, "bad option 'tls' to connect (table expected, got %s)", luaL_typename(L, t));
        ssl.trustStore = pmq_opt_str(L, t, "ca_file", "connect (tls)");
        ssl.CApath = pmq_opt_str(L, t, "ca_path", "connect (tls)");
        ssl.keyStore = pmq_opt_str(L, t, "cert_file", "connect (tls)");
        ssl.privateKey = pmq_opt_str(L, t, "key_file", "connect (tls)");
        ssl.privateKeyPassword = pmq_opt_str(L, t, "key_password", "connect (tls)");
        /* without a password OpenSSL would prompt on the terminal for an
         * encrypted key and block; an empty one makes it fail instead */
        if (!ssl.privateKeyPassword && ssl.privateKey)
            ssl.privateKeyPassword = "";
        ssl.enabledCipherSuites = pmq_opt_str(L, t, "ciphers", "connect (tls)");
        ssl.enableServerCertAuth = pmq_opt_bool(L, t, "verify", 1);
        ssl.verify = ssl.enableServerCertAuth;
        ssl.protos = pmq_opt_alpn(L, t, &ssl.protos_len);
        ssl.ssl_error_cb = pmq_on_ssl_error;
        ssl.ssl_error_context = c;
        o->ssl = &ssl;
        pthread_mutex_lock(&c->mu);
        c->ssl_err[0] = 0;
        pthread_mutex_unlock(&c->mu);
    }
    o->httpProxy = pmq_opt_str(L, 2, "http_proxy", fname);
    /* paho 1.3.12 strips "http://" from httpProxy but not from httpsProxy
     * (the one it uses for TLS), and then looks the scheme up as a host */
    o->httpsProxy = o->httpProxy;
    if (o->httpsProxy && strncmp(o->httpsProxy, "http://", 7) == 0)
        o->httpsProxy += 7;

    /* everything is checked: from here on nothing raises */
    if (nuris > 0) {
        uris = malloc(sizeof(char *) * (size_t)nuris);
        if (!uris)
            return luaL_error(L, "connect: out of memory");
        lua_getfield(L, 2, "uris");
        for (int i = 1; i <= nuris; i++) {
            lua_rawgeti(L, -1, i);
            uris[i - 1] = lua_tostring(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        o->serverURIs = (char *const *)uris;
        o->serverURIcount = nuris;
    }
    if (pw) {
        o->binarypwd.data = pw;
        o->binarypwd.len = (int)pwlen;
    }
    if (has_will) {
        if (c->version == 5) {
            lua_getfield(L, 2, "will");
            lua_getfield(L, -1, "properties");
            pmq_props_build(L, -1, &wprops);
            lua_pop(L, 2);
            o->willProperties = &wprops;
        }
        o->will = &will;
    }
    if (c->version == 5) {
        lua_getfield(L, 2, "properties");
        pmq_props_build(L, -1, &cprops);
        lua_pop(L, 1);
        if (expiry > 0) {
            lua_getfield(L, 2, "session_expiry");
            MQTTProperty p;
            memset(&p, 0, sizeof p);
            p.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
            p.value.integer4 = (unsigned int)lua_tonumber(L, -1);
            lua_pop(L, 1);
            MQTTProperties_add(&cprops, &p);
        }
        o->connectProperties = &cprops;
        o->cleanstart = clean;
        o->onSuccess5 = pmq_connect_ok5;
        o->onFailure5 = pmq_connect_fail5;
    } else {
        o->cleansession = clean;
        o->onSuccess = pmq_connect_ok;
        o->onFailure = pmq_connect_fail;
    }
    o->MQTTVersion = c->version == 5 ? MQTTVERSION_5 : c->version == 4 ? MQTTVERSION_3_1_1 : MQTTVERSION_3_1;
    o->automaticReconnect = 0;
    o->context = c;
    __atomic_store_n(&c->keepalive, o->keepAliveInterval, __ATOMIC_RELAXED);
    if (o->keepAliveInterval > 0)
        pmq_ka_watch(c);

    /* keep this connect's secrets out of mqtt.trace */
    pmq_trace_forget(c);
    if (pw && pwlen > 0 && !memchr(pw, 0, pwlen))
        c->secret[0] = strdup(pw);
    if (o->ssl && o->ssl->privateKeyPassword && *o->ssl->privateKeyPassword)
        c->secret[1] = strdup(o->ssl->privateKeyPassword);
    for (int i = 0; i < 2; i++)
        pmq_trace_secret(c->secret[i], 1);

    ws = nuris > 0 ? 0 : c->ws;
    for (int i = 0; i < nuris; i++)
        ws = ws || pmq_ws_uri(uris[i]);
    if (ws && !pmq_ws_acquire(c, holder, sizeof holder)) {
        MQTTProperties_free(&cprops);
        MQTTProperties_free(&wprops);
        free(uris);
        lua_pushnil(L);
        lua_pushfstring(L, "connect: client '%s' of this process holds a WebSocket connection, and "
                        "paho.mqtt.c keeps WebSocket receive state per process, so two at once "
                        "corrupt each other: disconnect or close that client first", holder);
        lua_pushliteral(L, "busy");
        return 3;
    }
    pmq_settle_after_destroy();
    pmq_wake_begin(c); /* wake.c: paho's receive thread is woken till it ends */
    rc = PAHO(MQTTAsync_connect(c->handle, o));
    MQTTProperties_free(&cprops);
    MQTTProperties_free(&wprops);
    free(uris);
    if (rc != MQTTASYNC_SUCCESS) {
        pmq_ws_release(c);
        pmq_wake_end(c);
        return pmq_fail(L, c, "connect", rc);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* ------------------------------------------------------------------ */
/* subscribe / unsubscribe                                             */

/* checks a filter: non-empty, valid wildcards; raises */
static void check_filter(lua_State *L, const char *f, size_t len, const char *fname)
{
    if (len == 0)
        luaL_error(L, "bad topic filter to %s (empty string)", fname);
    if (memchr(f, 0, len))
        luaL_error(L, "bad topic filter to %s (contains a zero byte)", fname);
    if (len > 65535)
        luaL_error(L, "bad topic filter to %s (longer than 65535 bytes)", fname);
    if (!pmq_valid_utf8((const unsigned char *)f, len))
        luaL_error(L, "bad topic filter to %s (not valid UTF-8)", fname);
    for (size_t i = 0; i < len; i++) {
        if (f[i] == '#' && (i != len - 1 || (i > 0 && f[i - 1] != '/')))
            luaL_error(L, "bad topic filter '%s' to %s ('#' must be last and follow '/')", f, fname);
        if (f[i] == '+' && ((i > 0 && f[i - 1] != '/') || (i + 1 < len && f[i + 1] != '/')))
            luaL_error(L, "bad topic filter '%s' to %s ('+' must fill a whole level)", f, fname);
    }
}

/* client:subscribe({filter, ...}, {{qos=, no_local=, retain_as_published=,
 *                   retain_handling=}, ...}, properties) -> token */
static int l_subscribe(lua_State *L)
{
    const char *fname = "subscribe";
    pmq_ctx *c = pmq_check_open(L, fname);
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    int n, rc, rc_;
    char **topics;
    int *qos;
    MQTTSubscribe_options *so;
    pmq_subop *op;

    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    n = (int)pmq_rawlen(L, 2);
    if (n < 1)
        return luaL_error(L, "bad argument #1 to subscribe (at least one topic filter expected)");
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *f;
        lua_rawgeti(L, 2, i);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "bad topic filter to subscribe (string expected, got %s)", luaL_typename(L, -1));
        f = lua_tolstring(L, -1, &len);
        check_filter(L, f, len, fname);
        lua_pop(L, 1);
        lua_rawgeti(L, 3, i);
        if (lua_type(L, -1) != LUA_TTABLE)
            luaL_error(L, "bad subscription options to subscribe (table expected)");
        pmq_opt_int(L, lua_gettop(L), "qos", 0, 0, 2, fname);
        pmq_opt_int(L, lua_gettop(L), "retain_handling", 0, 0, 2, fname);
        lua_pop(L, 1);
    }
    pmq_props_check(L, 4, fname, c->version);

    op = pmq_subop_new(c, n);
    topics = malloc(sizeof(char *) * (size_t)n);
    qos = malloc(sizeof(int) * (size_t)n);
    so = calloc((size_t)n, sizeof *so);
    if (!op || !topics || !qos || !so) {
        if (op)
            pmq_subop_free(op);
        free(topics);
        free(qos);
        free(so);
        return luaL_error(L, "subscribe: out of memory");
    }
    for (int i = 1; i <= n; i++) {
        MQTTSubscribe_options init = MQTTSubscribe_options_initializer;
        int t;
        lua_rawgeti(L, 2, i);
        topics[i - 1] = (char *)lua_tostring(L, -1);
        lua_pop(L, 1); /* the list keeps the string alive */
        lua_rawgeti(L, 3, i);
        t = lua_gettop(L);
        qos[i - 1] = pmq_opt_int(L, t, "qos", 0, 0, 2, fname);
        so[i - 1] = init;
        so[i - 1].noLocal = (unsigned char)pmq_opt_bool(L, t, "no_local", 0);
        so[i - 1].retainAsPublished = (unsigned char)pmq_opt_bool(L, t, "retain_as_published", 0);
        so[i - 1].retainHandling = (unsigned char)pmq_opt_int(L, t, "retain_handling", 0, 0, 2, fname);
        lua_pop(L, 1);
    }
    op->sub = 1;
    ro.context = op;
    if (c->version == 5) {
        ro.onSuccess5 = pmq_subscribe_ok5;
        ro.onFailure5 = pmq_subscribe_fail5;
        pmq_props_build(L, 4, &ro.properties);
        ro.subscribeOptions = so[0];
        if (n > 1) {
            ro.subscribeOptionsCount = n;
            ro.subscribeOptionsList = so;
        }
    } else {
        ro.onSuccess = pmq_subscribe_ok;
        ro.onFailure = pmq_subscribe_fail;
    }
    rc = PAHO(MQTTAsync_subscribeMany(c->handle, n, topics, qos, &ro));
    MQTTProperties_free(&ro.properties);
    free(topics);
    free(qos);
    free(so);
    if (rc != MQTTASYNC_SUCCESS) {
        pmq_subop_free(op);
        return pmq_fail(L, c, "subscribe", rc);
    }
    lua_pushinteger(L, ro.token);
    return 1;
}

/* client:unsubscribe({filter, ...}, properties) -> token */
static int l_unsubscribe(lua_State *L)
{
    const char *fname = "unsubscribe";
    pmq_ctx *c = pmq_check_open(L, fname);
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    int n, rc, rc_;
    char **topics;

    luaL_checktype(L, 2, LUA_TTABLE);
    n = (int)pmq_rawlen(L, 2);
    if (n < 1)
        return luaL_error(L, "bad argument #1 to unsubscribe (at least one topic filter expected)");
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *f;
        lua_rawgeti(L, 2, i);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "bad topic filter to unsubscribe (string expected, got %s)", luaL_typename(L, -1));
        f = lua_tolstring(L, -1, &len);
        check_filter(L, f, len, fname);
        lua_pop(L, 1);
    }
    pmq_props_check(L, 3, fname, c->version);
    topics = malloc(sizeof(char *) * (size_t)n);
    if (!topics)
        return luaL_error(L, "unsubscribe: out of memory");
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        topics[i - 1] = (char *)lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    ro.context = c;
    if (c->version == 5) {
        ro.onSuccess5 = pmq_unsubscribe_ok5;
        ro.onFailure5 = pmq_unsubscribe_fail5;
        pmq_props_build(L, 3, &ro.properties);
    } else {
        ro.onSuccess = pmq_unsubscribe_ok;
        ro.onFailure = pmq_unsubscribe_fail;
    }
    rc = PAHO(MQTTAsync_unsubscribeMany(c->handle, n, topics, &ro));
    MQTTProperties_free(&ro.properties);
    free(topics);
    if (rc != MQTTASYNC_SUCCESS)
        return pmq_fail(L, c, "unsubscribe", rc);
    lua_pushinteger(L, ro.token);
    return 1;
}

/* ------------------------------------------------------------------ */
/* publish: the hot path                                               */

/* Checks the arguments of publish(topic, payload, qos, retain, properties)
 * at stack indexes 2..6 and raises on the first problem. paho checks UTF-8
 * itself when the message is handed over, so only a check without sending
 * (check_utf8) needs to do it here. */
static void check_publish_args(lua_State *L, pmq_ctx *c, int check_utf8)
{
    const char *fname = "publish";
    size_t tlen, plen = 0;
    const char *topic = luaL_checklstring(L, 2, &tlen);
    lua_Integer qos;
    int has_props = !lua_isnoneornil(L, 6);

    if (!lua_isnoneornil(L, 3))
        luaL_checklstring(L, 3, &plen);
    qos = luaL_optinteger(L, 4, 0);
    if (qos < 0 || qos > 2)
        luaL_error(L, "bad argument 'qos' to publish (0, 1 or 2 expected, got %d)", (int)qos);
    if (plen > 268435455)
        luaL_error(L, "bad argument 'payload' to publish (longer than MQTT's 256 MiB limit)");
    if (memchr(topic, 0, tlen))
        luaL_error(L, "bad argument 'topic' to publish (contains a zero byte)");
    if (memchr(topic, '+', tlen) || memchr(topic, '#', tlen))
        luaL_error(L, "bad argument 'topic' to publish (wildcards '+' and '#' are not allowed in a topic name: '%s')", topic);
    if (tlen > 65535)
        luaL_error(L, "bad argument 'topic' to publish (longer than 65535 bytes)");
    if (check_utf8 && !pmq_valid_utf8((const unsigned char *)topic, tlen))
        luaL_error(L, "bad argument 'topic' to publish (not valid UTF-8)");
    if (has_props)
        pmq_props_check(L, 6, fname, c->version);
    if (tlen == 0) {
        int alias = 0;
        if (has_props) {
            lua_getfield(L, 6, "topic_alias");
            alias = !lua_isnil(L, -1);
            lua_pop(L, 1);
        }
        if (!alias)
            luaL_error(L, "bad argument 'topic' to publish (empty topic; only allowed with properties.topic_alias)");
    }
}

/* client:check_publish(topic, payload, qos, retain, properties): the checks
 * of publish without sending, for publishes the Lua layer holds back */
static int l_check_publish(lua_State *L)
{
    check_publish_args(L, pmq_check_open(L, "publish"), 1);
    return 0;
}

/* client:packet_size(topic, payload, qos, properties) -> the bytes of the
 * PUBLISH packet as it goes on the wire: fixed header, topic, packet id,
 * properties (with their length) and payload; to hold a publish against the
 * broker's Maximum Packet Size before sending it */
static int l_packet_size(lua_State *L)
{
    pmq_ctx *c = pmq_check_open(L, "publish");
    size_t tlen, plen = 0;
    lua_Integer qos;
    double rem;
    luaL_checklstring(L, 2, &tlen);
    if (!lua_isnoneornil(L, 3))
        luaL_checklstring(L, 3, &plen);
    qos = luaL_optinteger(L, 4, 0);
    rem = 2.0 + (double)tlen + (qos > 0 ? 2 : 0) + (double)plen;
    if (c->version == 5) {
        if (!lua_isnoneornil(L, 5)) {
            MQTTProperties p = MQTTProperties_initializer;
            pmq_props_check(L, 5, "publish", 5); /* raises before anything is allocated */
            pmq_props_build(L, 5, &p);
            /* MQTTProperties_len is not exported by libpaho-mqtt3as: its length field, and that length's own bytes */
            rem += p.length + (p.length < 128 ? 1 : p.length < 16384 ? 2 : p.length < 2097152 ? 3 : 4);
            MQTTProperties_free(&p);
        } else {
            rem += 1; /* a property length of 0 */
        }
    }
    lua_pushnumber(L, 1 + (rem < 128 ? 1 : rem < 16384 ? 2 : rem < 2097152 ? 3 : 4) + rem);
    return 1;
}

/* client:publish(topic, payload, qos, retain, properties) -> token */
static int l_publish(lua_State *L)
{
    pmq_ctx *c = pmq_check_open(L, "publish");
    MQTTAsync_message m = MQTTAsync_message_initializer;
    pmq_subop *op;
    int op_n, held;
    size_t plen = 0;
    const char *topic, *payload = NULL;
    int rc, has_props = !lua_isnoneornil(L, 6), hold = lua_toboolean(L, 7);

    check_publish_args(L, c, 1); /* it may be held (outbox.c): checked now */
    topic = lua_tostring(L, 2);
    if (!lua_isnoneornil(L, 3))
        payload = lua_tolstring(L, 3, &plen);
    m.qos = (int)luaL_optinteger(L, 4, 0);
    m.payload = (void *)(payload ? payload : "");
    m.payloadlen = (int)plen;
    m.retained = lua_toboolean(L, 5);
    /* the events name the publish by its own number (see pmq_subop),
     * negative so that it never meets a paho token (subscribe,
     * unsubscribe: positive) in the Lua layer's table of pending requests */
    if (++c->pub_seq <= 0)
        c->pub_seq = 1;
    op_n = -c->pub_seq;
    op = pmq_subop_new(c, op_n);
    if (!op)
        return luaL_error(L, "publish: out of memory");
    op->qos = m.qos;
    if (c->version == 5 && has_props)
        pmq_props_build(L, 6, &m.properties);
    /* sent now, or held for the windows (outbox.c) */
    rc = pmq_out_publish(c, op, topic, &m, hold, &held);
    if (has_props)
        MQTTProperties_free(&m.properties);
    if (rc != MQTTASYNC_SUCCESS) {
        pmq_subop_free(op); /* paho calls back only for what it took */
        if (rc == MQTTASYNC_BAD_UTF8_STRING)
            return luaL_error(L, "bad argument 'topic' to publish (not valid UTF-8)");
        return pmq_fail(L, c, "publish", rc);
    }
    lua_pushinteger(L, op_n);
    lua_pushboolean(L, held);
    return 2;
}

/* client:open_window(recv_max[, max2]): the Lua layer reports a connect;
 * the outbox hands paho what waits, as far as the window allows: at most
 * recv_max QoS 1/2 publishes in flight, of them at most max2 (default
 * recv_max) QoS 2 ones */
static int l_open_window(lua_State *L)
{
    pmq_ctx *c = pmq_check_open(L, "open_window");
    lua_Integer n = luaL_checkinteger(L, 2);
    lua_Integer n2 = luaL_optinteger(L, 3, n);
    luaL_argcheck(L, n >= 1 && n <= 65535, 2, "1..65535 expected");
    luaL_argcheck(L, n2 >= 1 && n2 <= 65535, 3, "1..65535 expected");
    pmq_out_open(c, (int)n, (int)n2);
    return 0;
}

/* client:outbox() -> held, held_bytes, handed (publishes handed to paho
 * and not completed), held_peak (the most held at once) */
static int l_outbox(lua_State *L)
{
    pmq_ctx *c = pmq_check_open(L, "outbox");
    int held, handed, peak;
    size_t bytes;
    pmq_out_counts(c, &held, &bytes, &handed, &peak);
    lua_pushinteger(L, held);
    lua_pushinteger(L, (lua_Integer)bytes);
    lua_pushinteger(L, handed);
    lua_pushinteger(L, peak);
    return 4;
}

/* ------------------------------------------------------------------ */
/* disconnect                                                          */

/* client:disconnect(timeout_s, reason, session_expiry, properties) -> true */
static int l_disconnect(lua_State *L)
{
    const char *fname = "disconnect";
    pmq_ctx *c = pmq_check_open(L, fname);
    MQTTAsync_disconnectOptions d5 = MQTTAsync_disconnectOptions_initializer5;
    MQTTAsync_disconnectOptions d3 = MQTTAsync_disconnectOptions_initializer;
    MQTTAsync_disconnectOptions *d = c->version == 5 ? &d5 : &d3;
    lua_Number t = luaL_optnumber(L, 2, 0);
    lua_Integer reason = luaL_optinteger(L, 3, 0);
    int rc, rc_;
    if (!(t >= 0 && t <= 3600)) /* NaN too */
        return luaL_error(L, "bad option 'timeout' to disconnect (0..3600 seconds expected)");
    if (reason < 0 || reason > 255)
        return luaL_error(L, "bad option 'reason' to disconnect (reason code 0..255 expected)");
    if (c->version != 5 && reason != 0)
        return luaL_error(L, "bad option 'reason' to disconnect (MQTT 5 only)");
    if (!lua_isnoneornil(L, 4)) {
        lua_Number v = luaL_checknumber(L, 4);
        if (!(v >= 0 && v <= 4294967295.0)) /* NaN too */
            return luaL_error(L, "bad option 'session_expiry' to disconnect (0..4294967295 expected)");
        if (c->version != 5)
            return luaL_error(L, "bad option 'session_expiry' to disconnect (MQTT 5 only)");
    }
    pmq_props_check(L, 5, fname, c->version);
    d->timeout = (int)(t * 1000);
    d->context = c;
    if (c->version == 5) {
        d->reasonCode = (enum MQTTReasonCodes)reason;
        d->onSuccess5 = pmq_disconnect_ok5;
        d->onFailure5 = pmq_disconnect_fail5;
        pmq_props_build(L, 5, &d->properties);
        if (!lua_isnoneornil(L, 4)) {
            MQTTProperty p;
            memset(&p, 0, sizeof p);
            p.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
            p.value.integer4 = (unsigned int)lua_tonumber(L, 4);
            MQTTProperties_add(&d->properties, &p);
        }
    } else {
        d->onSuccess = pmq_disconnect_ok;
        d->onFailure = pmq_disconnect_fail;
    }
    rc = PAHO(MQTTAsync_disconnect(c->handle, d));
    MQTTProperties_free(&d->properties);
    if (rc != MQTTASYNC_SUCCESS)
        return pmq_fail(L, c, "disconnect", rc);
    lua_pushboolean(L, 1);
    return 1;
}

/* the request methods, into the table on top of the stack (client.c's __index) */
void pmq_open_requests(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"connect", l_connect},
        {"subscribe", l_subscribe},
        {"unsubscribe", l_unsubscribe},
        {"publish", l_publish},
        {"open_window", l_open_window},
        {"outbox", l_outbox},
        {"check_publish", l_check_publish},
        {"packet_size", l_packet_size},
        {"disconnect", l_disconnect},
        {NULL, NULL}};
    pmq_setfuncs(L, methods);
}
