/*
 * outbox.c - the outgoing path: publishes held for the flow-control windows,
 * handed to paho as room appears, on paho's own threads, without Lua.
 *
 * Why hold at all: paho 1.3.12 holds publishes beyond the broker's Receive
 * Maximum and looks at them again only after up to a second; given thousands
 * of QoS 0 sends it walks its whole command list on each new one; and on
 * MQTT 3.1.1, given thousands of publishes at once, it wrote malformed packets
 * when the socket filled up (see the windows in docs/threads-and-backpressure.md).
 * So the client hands paho at most `recv_max` QoS 1/2 publishes not yet
 * acknowledged (the broker's Receive Maximum, or the Lua layer's 3.1.1
 * window) and PMQ_QOS0_WINDOW QoS 0 ones not yet written; the rest wait here,
 * in order.
 *
 * Who sends: the Lua thread (publish) while there is room and nothing waits;
 * otherwise whoever sees room appear: paho's thread, in the completion
 * callback of an earlier publish (events.c calls c->pub_done), or the Lua
 * thread when the window opens (connect). One sender at a time (send_mu)
 * keeps the order. paho runs its callbacks with its process-wide lock held,
 * and a Lua thread inside paho waits for that lock, so a callback only ever
 * tries send_mu (trylock) and leaves a request (want) for the holder, which
 * looks again after letting go. Lock order: send_mu, then paho's lock; mu
 * (the queue and counts) is never held across a paho call.
 *
 * The window is open while connected (set by the Lua layer at the connect it
 * reports, closed at once on paho's thread when the connection ends); closed,
 * publishes wait here and nothing is released (a handle being destroyed is
 * never called).
 */
#include "pmq.h"

#include <stdlib.h>
#include <string.h>

#define PMQ_QOS0_WINDOW 64 /* QoS 0 publishes handed to paho and not yet written, at most */

struct pmq_held {
    struct pmq_held *next;
    pmq_subop *op;          /* its context: number and QoS */
    MQTTAsync_message m;    /* payload points into this block */
    int has_props;
    size_t bytes;           /* topic + payload */
    char *topic;            /* into this block */
};

static void out_done(pmq_ctx *c, int qos);

int pmq_out_init(pmq_ctx *c)
{
    pmq_outbox *o = &c->out;
    memset(o, 0, sizeof *o);
    o->recv_max = 65535;
    o->max2 = 65535;
    if (pthread_mutex_init(&o->mu, NULL) != 0)
        return -1;
    if (pthread_mutex_init(&o->send_mu, NULL) != 0) {
        pthread_mutex_destroy(&o->mu);
        return -1;
    }
    c->pub_done = out_done;
    return 0;
}

static void held_free(pmq_held *h)
{
    if (h->has_props)
        MQTTProperties_free(&h->m.properties);
    free(h);
}

/* after paho's handle is gone: what still waits is freed (the Lua layer
 * ends those publishes itself, "closed") */
void pmq_out_free(pmq_ctx *c)
{
    pmq_outbox *o = &c->out;
    pmq_held *h = o->head, *next;
    for (; h; h = next) {
        next = h->next;
        pmq_subop_free(h->op);
        held_free(h);
    }
    o->head = o->tail = NULL;
    o->n = 0;
    c->pub_done = NULL;
    pthread_mutex_destroy(&o->send_mu);
    pthread_mutex_destroy(&o->mu);
}

/* hand one publish to paho; send_mu held (keeps the order) */
static int send_now(pmq_ctx *c, pmq_subop *op, const char *topic, MQTTAsync_message *m)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    int rc;
    ro.context = op;
    if (c->version == 5) {
        ro.onSuccess5 = pmq_publish_ok5;
        ro.onFailure5 = pmq_publish_fail5;
    } else {
        ro.onSuccess = pmq_publish_ok;
        ro.onFailure = pmq_publish_fail;
    }
    pmq_paho_enter();
    rc = MQTTAsync_sendMessage(c->handle, topic, m, &ro);
    pmq_paho_leave();
    return rc;
}

static int has_room(pmq_outbox *o, int qos)
{
    if (qos == 0)
        return o->inflight0 < PMQ_QOS0_WINDOW;
    return o->inflight < o->recv_max && (qos == 1 || o->inflight2 < o->max2);
}

static void count(pmq_outbox *o, int qos, int d)
{
    if (qos == 0) {
        o->inflight0 += d;
    } else {
        o->inflight += d;
        if (qos == 2)
            o->inflight2 += d;
    }
}

/* what fails to be handed over fails as paho would have failed it */
static void release_failed(pmq_ctx *c, pmq_subop *op, int rc)
{
    if (c->version == 5) {
        MQTTAsync_failureData5 f = MQTTAsync_failureData5_initializer;
        f.code = rc;
        f.message = "the client could not hand the held publish to paho";
        pmq_publish_fail5(op, &f);
    } else {
        MQTTAsync_failureData f;
        memset(&f, 0, sizeof f);
        f.code = rc;
        f.message = "the client could not hand the held publish to paho";
        pmq_publish_fail(op, &f);
    }
}

/* send_mu held: hand over what waits while the window is open and has room */
static void release(pmq_ctx *c)
{
    pmq_outbox *o = &c->out;
    for (;;) {
        pmq_held *h;
        int rc;
        pthread_mutex_lock(&o->mu);
        h = o->head;
        if (!h || !__atomic_load_n(&o->open, __ATOMIC_SEQ_CST) || !has_room(o, h->op->qos)) {
            pthread_mutex_unlock(&o->mu);
            return;
        }
        o->head = h->next;
        __atomic_store_n(&h->op->held, 0, __ATOMIC_SEQ_CST);
        if (!o->head)
            o->tail = NULL;
        o->n--;
        o->bytes -= h->bytes;
        count(o, h->op->qos, 1);
        pthread_mutex_unlock(&o->mu);
        rc = send_now(c, h->op, h->topic, &h->m);
        if (rc != MQTTASYNC_SUCCESS)
            release_failed(c, h->op, rc); /* its callback runs out_done */
        held_free(h);
    }
}

/* release, by whoever can take send_mu now; a thread that cannot leaves the
 * request to the holder */
static void kick(pmq_ctx *c)
{
    pmq_outbox *o = &c->out;
    __atomic_store_n(&o->want, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&o->want, __ATOMIC_SEQ_CST) && pthread_mutex_trylock(&o->send_mu) == 0) {
        __atomic_store_n(&o->want, 0, __ATOMIC_SEQ_CST);
        release(c);
        pthread_mutex_unlock(&o->send_mu);
    }
}

/* c->pub_done: a publish handed to paho completed (any thread) */
static void out_done(pmq_ctx *c, int qos)
{
    pmq_outbox *o = &c->out;
    int waiting;
    pthread_mutex_lock(&o->mu);
    count(o, qos, -1);
    waiting = o->head != NULL;
    pthread_mutex_unlock(&o->mu);
    if (waiting)
        kick(c);
}

/* the Lua thread's publish: hand it to paho now, or keep it (hold: always,
 * as the Lua layer asks while a fresh session is being made). *held says
 * which; the return value is paho's code for a publish handed over now */
int pmq_out_publish(pmq_ctx *c, pmq_subop *op, const char *topic, MQTTAsync_message *m, int hold, int *held)
{
    pmq_outbox *o = &c->out;
    int rc;
    *held = 0;
    pthread_mutex_lock(&o->send_mu);
    pthread_mutex_lock(&o->mu);
    if (hold || o->head || (__atomic_load_n(&o->open, __ATOMIC_SEQ_CST) && !has_room(o, op->qos))) {
        size_t tl = strlen(topic), pl = (size_t)m->payloadlen;
        pmq_held *h;
        pthread_mutex_unlock(&o->mu);
        h = malloc(sizeof *h + tl + 1 + pl);
        if (!h) {
            pthread_mutex_unlock(&o->send_mu);
            return MQTTASYNC_FAILURE;
        }
        h->next = NULL;
        h->op = op;
        __atomic_store_n(&op->held, 1, __ATOMIC_SEQ_CST);
        h->m = *m;
        h->topic = (char *)(h + 1);
        memcpy(h->topic, topic, tl + 1);
        h->m.payload = h->topic + tl + 1;
        if (pl)
            memcpy(h->m.payload, m->payload, pl);
        h->has_props = m->properties.count > 0;
        h->m.properties = h->has_props ? MQTTProperties_copy(&m->properties)
                                       : (MQTTProperties)MQTTProperties_initializer;
        h->bytes = tl + pl;
        pthread_mutex_lock(&o->mu);
        if (o->tail)
            o->tail->next = h;
        else
            o->head = h;
        o->tail = h;
        o->n++;
        if (o->n > o->peak)
            o->peak = o->n;
        o->bytes += h->bytes;
        pthread_mutex_unlock(&o->mu);
        *held = 1;
        /* room may have appeared meanwhile (and hold aside, it waits in order) */
        __atomic_store_n(&o->want, 1, __ATOMIC_SEQ_CST);
        rc = MQTTASYNC_SUCCESS;
    } else {
        count(o, op->qos, 1);
        pthread_mutex_unlock(&o->mu);
        rc = send_now(c, op, topic, m);
        if (rc != MQTTASYNC_SUCCESS) { /* paho calls back only for what it took */
            pthread_mutex_lock(&o->mu);
            count(o, op->qos, -1);
            pthread_mutex_unlock(&o->mu);
        }
    }
    pthread_mutex_unlock(&o->send_mu);
    /* a callback may have found send_mu taken meanwhile: its request is ours */
    if (__atomic_load_n(&o->want, __ATOMIC_SEQ_CST))
        kick(c);
    return rc;
}

/* the Lua layer reports a connect: open the window and hand over what fits */
void pmq_out_open(pmq_ctx *c, int recv_max, int max2)
{
    pmq_outbox *o = &c->out;
    pthread_mutex_lock(&o->mu);
    o->recv_max = recv_max > 0 ? recv_max : 65535;
    o->max2 = max2 > 0 ? max2 : 65535;
    pthread_mutex_unlock(&o->mu);
    /* not if the connection has ended meanwhile (pmq_set_lost, under c->mu,
     * closed the window already): the next connect opens it */
    pthread_mutex_lock(&c->mu);
    if (__atomic_load_n(&c->connected, __ATOMIC_RELAXED))
        __atomic_store_n(&o->open, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&c->mu);
    kick(c);
}

/* close the window and wait for a release under way (before destroying paho's handle) */
void pmq_out_shut(pmq_ctx *c)
{
    pmq_outbox *o = &c->out;
    __atomic_store_n(&o->open, 0, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&o->send_mu);
    pthread_mutex_unlock(&o->send_mu);
}

void pmq_out_counts(pmq_ctx *c, int *held, size_t *held_bytes, int *inflight, int *peak)
{
    pmq_outbox *o = &c->out;
    pthread_mutex_lock(&o->mu);
    *held = o->n;
    *peak = o->peak;
    *held_bytes = o->bytes;
    *inflight = o->inflight + o->inflight0;
    pthread_mutex_unlock(&o->mu);
}
