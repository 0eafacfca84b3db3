/*
 * events.c - the thread boundary.
 *
 * Every function here that paho calls runs on one of paho's threads. They
 * only copy what they are given into memory the binding owns, append it to the
 * client's queue and make the client's descriptor readable (queue.c, the
 * lower half of the boundary, with the backpressure). No Lua header is
 * included, so no Lua call can happen here, and nothing above is called:
 * completions reach the outbox through the pub_done pointer it sets.
 */
#define _GNU_SOURCE
#include "pmq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* with c->mu held */
void pmq_set_lost(pmq_ctx *c, int cause, int reason, const char *text)
{
    __atomic_store_n(&c->connected, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&c->out.open, 0, __ATOMIC_SEQ_CST); /* outbox.c: hold from now on */
    pmq_ws_release(c);
    c->lost_at = pmq_now();
    c->lost_cause = cause;
    c->lost_reason = reason;
    snprintf(c->lost_text, sizeof c->lost_text, "%s", text ? text : "");
}

static char *dupstr(const char *s)
{
    size_t n;
    char *d;
    if (!s)
        return NULL;
    n = strlen(s);
    d = malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    return d;
}

/* ------------------------------------------------------------------ */
/* connection callbacks                                                */

int pmq_on_message(void *vctx, char *topic, int topiclen, MQTTAsync_message *m)
{
    pmq_ctx *c = vctx;
    size_t tlen = (size_t)(topiclen > 0 ? topiclen : (int)strlen(topic));
    size_t plen = (size_t)(m->payloadlen > 0 ? m->payloadlen : 0);
    /* the event, the topic (NUL-terminated) and the payload in one block */
    pmq_event *e = malloc(sizeof *e + tlen + 1 + plen);
    if (!e)
        return 0; /* paho keeps the message and offers it again */
    memset(e, 0, sizeof *e);
    e->type = PMQ_EV_MESSAGE;
    e->topic = (char *)(e + 1);
    memcpy(e->topic, topic, tlen);
    e->topic[tlen] = 0;
    e->topiclen = (int)tlen;
    e->payload = e->topic + tlen + 1;
    if (plen)
        memcpy(e->payload, m->payload, plen);
    e->payloadlen = (int)plen;
    e->mqos = m->qos;
    e->retained = m->retained;
    e->dup = m->dup;
    e->msgid = m->msgid;
    e->bytes = sizeof *e + tlen + plen;

    pthread_mutex_lock(&c->mu);
    c->active++;
    if (!c->closing && pmq_queue_full(c, e->bytes)) {
        pthread_mutex_unlock(&c->mu);
        pmq_queue_wait_space(c, e->bytes);
        pthread_mutex_lock(&c->mu);
    }
    if (c->closing) {
        /* The client is going away: leave the message with paho. */
        c->active--;
        pthread_mutex_unlock(&c->mu);
        free(e);
        return 0;
    }
    if (m->properties.count > 0) {
        /* the properties move to the event (paho's allocation, freed with
         * MQTTProperties_free); the message keeps none to free */
        e->props = m->properties;
        e->has_props = 1;
        memset(&m->properties, 0, sizeof m->properties);
    }
    c->msgs_in++;
    c->bytes_in += (unsigned long long)plen;
    pmq_queue_push(c, e);
    c->active--;
    pthread_mutex_unlock(&c->mu);
    /* ours now: free paho's copy here, on paho's thread */
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

void pmq_on_lost(void *vctx, char *cause)
{
    pmq_ctx *c = vctx;
    pmq_event *e = calloc(1, sizeof *e);
    int why = pmq_ka_failed(c) ? PMQ_CAUSE_KEEPALIVE : PMQ_CAUSE_NETWORK;
    char text[160];
    pthread_mutex_lock(&c->mu);
    c->active++;
    /* paho passes NULL; keep a cause a person can act on */
    if (why == PMQ_CAUSE_KEEPALIVE) {
        int ka = __atomic_load_n(&c->keepalive, __ATOMIC_RELAXED);
        snprintf(text, sizeof text, "no PINGRESP within %g s of a PINGREQ (keepalive %d s): "
                 "the broker or the link stopped answering", 1.5 * ka, ka);
    }
    else
        snprintf(text, sizeof text, "%s", cause ? cause : "the connection was closed or failed");
    pmq_set_lost(c, why, 0, text);
    if (e) {
        e->type = PMQ_EV_LOST;
        e->reason = why;
        e->text = dupstr(c->lost_text);
        pmq_queue_push(c, e);
    }
    c->active--;
    pthread_mutex_unlock(&c->mu);
}

/* deliveryComplete (paho's receive thread): only while the Lua side
 * watches for restored publishes (client:watch_restored), and only one event
 * queued at a time: the Lua side only needs to know that some completed */
void pmq_on_delivered(void *vctx, MQTTAsync_token token)
{
    pmq_ctx *c = vctx;
    pmq_event *e;
    (void)token;
    if (!__atomic_load_n(&c->watch_dc, __ATOMIC_RELAXED))
        return;
    pthread_mutex_lock(&c->mu);
    if (!c->dc_queued && !c->closing && (e = calloc(1, sizeof *e)) != NULL) {
        e->type = PMQ_EV_DELIVERED;
        c->dc_queued = 1;
        pmq_queue_push(c, e);
    }
    pthread_mutex_unlock(&c->mu);
}

/* paho holds its own mutex here: never call paho from this function */
void pmq_on_disconnected(void *vctx, MQTTProperties *props, enum MQTTReasonCodes rc)
{
    pmq_ctx *c = vctx;
    pmq_event *e = calloc(1, sizeof *e);
    char text[160];
    const char *name = MQTTReasonCode_toString(rc);
    pthread_mutex_lock(&c->mu);
    c->active++;
    snprintf(text, sizeof text, "the broker sent DISCONNECT 0x%02X %s", (unsigned)rc,
             name ? name : "unknown reason");
    pmq_set_lost(c, PMQ_CAUSE_BROKER, (int)rc, text);
    if (e) {
        e->type = PMQ_EV_DISCONNECTED;
        e->reason = (int)rc;
        e->text = dupstr(text);
        if (props && props->count > 0) {
            e->props = MQTTProperties_copy(props);
            e->has_props = 1;
        }
        pmq_queue_push(c, e);
    }
    c->active--;
    pthread_mutex_unlock(&c->mu);
}

/* ------------------------------------------------------------------ */
/* response callbacks                                                  */

static pmq_event *op_event(int kind, int ok, int token)
{
    pmq_event *e = calloc(1, sizeof *e);
    if (e) {
        e->type = PMQ_EV_OP;
        e->kind = kind;
        e->ok = ok;
        e->token = token;
    }
    return e;
}

static void copy_props(pmq_event *e, MQTTProperties *p)
{
    if (p && p->count > 0) {
        e->props = MQTTProperties_copy(p);
        e->has_props = 1;
    }
}

static void copy_codes(pmq_event *e, int n, const int *v)
{
    if (n <= 0)
        return;
    e->qos = malloc(sizeof(int) * (size_t)n);
    if (e->qos) {
        memcpy(e->qos, v, sizeof(int) * (size_t)n);
        e->nqos = n;
    }
}

/* a failed connect: add OpenSSL's reason (pmq_on_ssl_error) when there is one */
static void add_tls_reason(pmq_ctx *c, pmq_event *e)
{
    char buf[400];
    pthread_mutex_lock(&c->mu);
    if (c->ssl_err[0]) {
        snprintf(buf, sizeof buf, "%s (TLS: %s)", e->text ? e->text : "TLS failure", c->ssl_err);
        free(e->text);
        e->text = dupstr(buf);
        c->ssl_err[0] = 0;
    }
    pthread_mutex_unlock(&c->mu);
}

static void fail3t(pmq_ctx *c, int kind, MQTTAsync_failureData *r, int token)
{
    pmq_event *e = op_event(kind, 0, token);
    if (!e)
        return;
    if (r) {
        e->rc = r->code;
        e->text = dupstr(r->message);
    }
    if (kind == PMQ_OP_CONNECT)
        add_tls_reason(c, e);
    pmq_queue_post(c, e);
}

static void fail5t(pmq_ctx *c, int kind, MQTTAsync_failureData5 *r, int token)
{
    pmq_event *e = op_event(kind, 0, token);
    if (!e)
        return;
    if (r) {
        e->rc = r->code;
        e->reason = (int)r->reasonCode;
        e->text = dupstr(r->message);
        e->flag = r->packet_type;
        copy_props(e, &r->properties);
    }
    if (kind == PMQ_OP_CONNECT)
        add_tls_reason(c, e);
    pmq_queue_post(c, e);
}

static void fail3(pmq_ctx *c, int kind, MQTTAsync_failureData *r)
{
    fail3t(c, kind, r, r ? r->token : 0);
}

static void fail5(pmq_ctx *c, int kind, MQTTAsync_failureData5 *r)
{
    fail5t(c, kind, r, r ? r->token : 0);
}

static void connect_ok(pmq_ctx *c, pmq_event *e, const char *uri, int version, int sp)
{
    e->flag = sp;
    e->mqtt_version = version;
    e->text = dupstr(uri);
    pthread_mutex_lock(&c->mu);
    __atomic_store_n(&c->connected, 1, __ATOMIC_RELAXED);
    c->connected_at = pmq_now();
    pthread_mutex_unlock(&c->mu);
}

void pmq_connect_ok(void *vctx, MQTTAsync_successData *r)
{
    pmq_ctx *c = vctx;
    pmq_wake_end(c); /* wake.c: the connect ended */
    pmq_event *e = op_event(PMQ_OP_CONNECT, 1, r ? r->token : 0);
    if (!e)
        return;
    if (r)
        connect_ok(c, e, r->alt.connect.serverURI, r->alt.connect.MQTTVersion,
                   r->alt.connect.sessionPresent);
    pmq_queue_post(c, e);
}

void pmq_connect_ok5(void *vctx, MQTTAsync_successData5 *r)
{
    pmq_ctx *c = vctx;
    pmq_wake_end(c); /* wake.c: the connect ended */
    pmq_event *e = op_event(PMQ_OP_CONNECT, 1, r ? r->token : 0);
    if (!e)
        return;
    if (r) {
        connect_ok(c, e, r->alt.connect.serverURI, r->alt.connect.MQTTVersion,
                   r->alt.connect.sessionPresent);
        e->reason = (int)r->reasonCode;
        copy_props(e, &r->properties);
    }
    pmq_queue_post(c, e);
}

/* OpenSSL's reasons, which paho's failure report leaves out: paho calls
 * this (on its thread) with each line of OpenSSL's error queue */
int pmq_on_ssl_error(const char *str, size_t len, void *u)
{
    pmq_ctx *c = u;
    const char *p = str, *end = str + len;
    size_t n;
    /* "<thread>:error:<code>:SSL routines:<function>:<reason>:<file>:<line>:"
     * keep "<reason>" when the line has that shape, else the whole line */
    int colons = 0;
    for (const char *q = str; q < end; q++) {
        if (*q == ':' && ++colons == 5) {
            p = q + 1;
            break;
        }
    }
    n = 0;
    while (p + n < end && p[n] != ':' && p[n] != '\n')
        n++;
    if (colons < 5) {
        p = str;
        n = len;
        while (n > 0 && (str[n - 1] == '\n' || str[n - 1] == ' '))
            n--;
    }
    pthread_mutex_lock(&c->mu);
    if (!c->ssl_err[0]) { /* the first reason is the root cause */
        if (n >= sizeof c->ssl_err)
            n = sizeof c->ssl_err - 1;
        memcpy(c->ssl_err, p, n);
        c->ssl_err[n] = 0;
    }
    pthread_mutex_unlock(&c->mu);
    return 0;
}

void pmq_connect_fail(void *vctx, MQTTAsync_failureData *r)
{
    pmq_ws_release(vctx); /* the connect ended */
    pmq_wake_end(vctx);
    fail3(vctx, PMQ_OP_CONNECT, r);
}

void pmq_connect_fail5(void *vctx, MQTTAsync_failureData5 *r)
{
    pmq_ws_release(vctx); /* the connect ended */
    pmq_wake_end(vctx);
    fail5(vctx, PMQ_OP_CONNECT, r);
}

/* Subscribe: the granted QoS list of a v3 SUBACK carries no length, so the
 * v3 callbacks get a pmq_subop that remembers how many filters were sent. */
void pmq_subscribe_ok(void *vop, MQTTAsync_successData *r)
{
    pmq_subop *op = vop;
    pmq_event *e = op_event(PMQ_OP_SUBSCRIBE, 1, r ? r->token : 0);
    if (e && r) {
        if (op->n > 1)
            copy_codes(e, op->n, r->alt.qosList);
        else
            copy_codes(e, 1, &r->alt.qos);
    }
    if (e)
        pmq_queue_post(op->c, e);
    pmq_subop_free(op);
}

void pmq_subscribe_fail(void *vop, MQTTAsync_failureData *r)
{
    pmq_subop *op = vop;
    fail3(op->c, PMQ_OP_SUBSCRIBE, r);
    pmq_subop_free(op);
}

static void codes5(pmq_event *e, MQTTAsync_successData5 *r, int count, enum MQTTReasonCodes *codes)
{
    int one = (int)r->reasonCode;
    e->reason = (int)r->reasonCode;
    if (count > 1 && codes) { /* paho fills the array only for several */
        e->qos = malloc(sizeof(int) * (size_t)count);
        if (e->qos) {
            for (int i = 0; i < count; i++)
                e->qos[i] = (int)codes[i];
            e->nqos = count;
        }
    } else {
        copy_codes(e, 1, &one);
    }
    copy_props(e, &r->properties);
}

void pmq_subscribe_ok5(void *vop, MQTTAsync_successData5 *r)
{
    pmq_subop *op = vop;
    pmq_event *e = op_event(PMQ_OP_SUBSCRIBE, 1, r ? r->token : 0);
    if (e && r)
        codes5(e, r, r->alt.sub.reasonCodeCount, r->alt.sub.reasonCodes);
    if (e)
        pmq_queue_post(op->c, e);
    pmq_subop_free(op);
}

void pmq_subscribe_fail5(void *vop, MQTTAsync_failureData5 *r)
{
    pmq_subop *op = vop;
    fail5(op->c, PMQ_OP_SUBSCRIBE, r);
    pmq_subop_free(op);
}

void pmq_unsubscribe_ok(void *vctx, MQTTAsync_successData *r)
{
    pmq_event *e = op_event(PMQ_OP_UNSUBSCRIBE, 1, r ? r->token : 0);
    if (e)
        pmq_queue_post(vctx, e);
}

void pmq_unsubscribe_ok5(void *vctx, MQTTAsync_successData5 *r)
{
    pmq_event *e = op_event(PMQ_OP_UNSUBSCRIBE, 1, r ? r->token : 0);
    if (!e)
        return;
    if (r)
        codes5(e, r, r->alt.unsub.reasonCodeCount, r->alt.unsub.reasonCodes);
    pmq_queue_post(vctx, e);
}

void pmq_unsubscribe_fail(void *vctx, MQTTAsync_failureData *r)
{
    fail3(vctx, PMQ_OP_UNSUBSCRIBE, r);
}

void pmq_unsubscribe_fail5(void *vctx, MQTTAsync_failureData5 *r)
{
    fail5(vctx, PMQ_OP_UNSUBSCRIBE, r);
}

/* publish: the context is a pmq_subop whose n is the publish's number */

/* a publish that succeeded plainly (reason 0, no properties): its number
 * joins the open PMQ_EV_PUBLISHED event at the tail of the queue, or starts
 * one (of PMQ_BATCH numbers at most); its context goes back to the spare
 * list under the same lock */
#define PMQ_BATCH 64
static void pub_done(pmq_subop *op)
{
    if (op->c->pub_done)
        op->c->pub_done(op->c, op->qos);
}

static void published(pmq_subop *op)
{
    pmq_ctx *c = op->c;
    pmq_event *fresh = NULL;
    pub_done(op);
    pthread_mutex_lock(&c->mu);
    for (;;) {
        pmq_event *e = c->pub_batch;
        if (e && e->nqos < PMQ_BATCH) {
            e->qos[e->nqos++] = op->n;
            __atomic_add_fetch(&c->heard, 1, __ATOMIC_RELAXED); /* the broker spoke */
            break;
        }
        if (fresh) {
            fresh->qos[fresh->nqos++] = op->n;
            pmq_queue_push(c, fresh); /* counts as heard */
            fresh = NULL;
            break;
        }
        /* a new event, allocated without the lock; then look again (another
         * completion may have started one meanwhile) */
        pthread_mutex_unlock(&c->mu);
        fresh = calloc(1, sizeof *fresh);
        if (fresh && (fresh->qos = malloc(sizeof(int) * PMQ_BATCH)) == NULL) {
            free(fresh);
            fresh = NULL;
        }
        if (!fresh) {
            /* out of memory: the single event of before, if it fits */
            pmq_event *e1 = op_event(PMQ_OP_PUBLISH, 1, op->n);
            if (e1)
                pmq_queue_post(c, e1);
            pmq_subop_free(op);
            return;
        }
        fresh->type = PMQ_EV_PUBLISHED;
        pthread_mutex_lock(&c->mu);
    }
    op = pmq_subop_unlist(c, op);
    pthread_mutex_unlock(&c->mu);
    free(op);
    pmq_event_free(fresh); /* not needed after all (NULL when used) */
}

void pmq_publish_ok(void *vop, MQTTAsync_successData *r)
{
    (void)r;
    published(vop);
}

void pmq_publish_ok5(void *vop, MQTTAsync_successData5 *r)
{
    pmq_subop *op = vop;
    pmq_event *e;
    if (!r || (r->reasonCode == MQTTREASONCODE_SUCCESS && r->properties.count == 0)) {
        published(op);
        return;
    }
    pub_done(op);
    e = op_event(PMQ_OP_PUBLISH, 1, op->n);
    if (e) {
        e->reason = (int)r->reasonCode;
        copy_props(e, &r->properties);
        pmq_queue_post(op->c, e);
    }
    pmq_subop_free(op);
}

/* see pmq_ctx.damaged: -1 (writing failed) and -2 (writing paho's store
 * failed) take the same path in paho's MQTTAsync_processCommand */
static void note_damage(pmq_subop *op, int code)
{
    if (op->qos > 0 && (code == MQTTASYNC_FAILURE || code == MQTTASYNC_PERSISTENCE_ERROR))
        __atomic_store_n(&op->c->damaged, code, __ATOMIC_SEQ_CST);
}

void pmq_publish_fail(void *vop, MQTTAsync_failureData *r)
{
    pmq_subop *op = vop;
    pub_done(op);
    if (r)
        note_damage(op, r->code);
    fail3t(op->c, PMQ_OP_PUBLISH, r, op->n);
    pmq_subop_free(op);
}

void pmq_publish_fail5(void *vop, MQTTAsync_failureData5 *r)
{
    pmq_subop *op = vop;
    pub_done(op);
    if (r)
        note_damage(op, r->code);
    fail5t(op->c, PMQ_OP_PUBLISH, r, op->n);
    pmq_subop_free(op);
}

static void disconnect_done(pmq_ctx *c, int ok, int token)
{
    pmq_event *e = op_event(PMQ_OP_DISCONNECT, ok, token);
    pthread_mutex_lock(&c->mu);
    if (c->connected || c->lost_cause == PMQ_CAUSE_NONE)
        pmq_set_lost(c, PMQ_CAUSE_CLIENT, 0, "disconnected by the client");
    pthread_mutex_unlock(&c->mu);
    if (e)
        pmq_queue_post(c, e);
}

void pmq_disconnect_ok(void *vctx, MQTTAsync_successData *r)
{
    disconnect_done(vctx, 1, r ? r->token : 0);
}

void pmq_disconnect_ok5(void *vctx, MQTTAsync_successData5 *r)
{
    disconnect_done(vctx, 1, r ? r->token : 0);
}

void pmq_disconnect_fail(void *vctx, MQTTAsync_failureData *r)
{
    disconnect_done(vctx, 0, r ? r->token : 0);
}

void pmq_disconnect_fail5(void *vctx, MQTTAsync_failureData5 *r)
{
    disconnect_done(vctx, 0, r ? r->token : 0);
}

