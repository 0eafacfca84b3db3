/*
 * retire.c - a paho workaround: a handle whose session paho damaged is
 * retired (left idle, never destroyed) instead of destroyed.
 *
 * paho.mqtt.c 1.3.12 (and 1.3.13: eclipse-paho/paho.mqtt.c#1621, #1622,
 * #1532): when the send thread writes a new QoS 1/2 PUBLISH on a connection
 * that has just broken, MQTTAsync_processCommand (MQTTAsyncUtils.c:1530-1585)
 * fails the publish (-1, or -2 for a failed store write) and frees the
 * command's topic and payload (MQTTAsync_freeCommand1, :1041-1050), which
 * MQTTProtocol_startPublish (MQTTProtocolClient.c:177-185) had already put
 * into the session's outbound list. The list still points at them, so
 * MQTTAsync_destroy frees them a second time (MQTTProtocol_freeClient ->
 * MQTTProtocol_emptyMessageList). tools/repro/paho-resend-repro.c built with
 * -fsanitize=address against paho built from source ("recover" mode, which
 * destroys the damaged handle): "attempting double-free" in
 * MQTTProtocol_emptyMessageList <- MQTTAsync_destroy, the region freed
 * before by MQTTAsync_freeCommand1 (1 run in 6). Debian's paho, built with
 * paho's heap tracking, usually ignores the second free (it no longer knows
 * the pointer) unless the memory was handed out again meanwhile; paho built
 * for speed corrupts the heap (CI: "munmap_chunk(): invalid pointer", SIGSEGV
 * in the fault spec).
 *
 * So a damaged handle is never destroyed: its callbacks are pointed away from
 * the client (which may be freed after this) and it stays, idle and
 * disconnected, in paho's list of handles until the process ends. paho's
 * threads do not touch an idle handle's session (no connect, no automatic
 * reconnect: the binding never asks for them). Each costs the few KiB of its
 * session; it happens only after a write met a dead connection.
 *
 * Can go when paho frees a failed publish once (NULL the command's topic and
 * payload when the message is in the outbound list): then destroy again.
 */
#include "pmq.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* paho requires a message-arrived callback; an idle handle gets no messages */
static int retired_arrived(void *ctx, char *topic, int len, MQTTAsync_message *m)
{
    (void)ctx;
    (void)len;
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

/* *h is set to NULL. Returns 0 when retired, -1 when the handle would not
 * settle (a connect or disconnect still in progress after ~2 s): it is then
 * destroyed after all, the only way to be sure paho calls nothing of ours */
static int retire_handle(MQTTAsync *h)
{
    struct timespec ts = {0, 2000000};
    int rc = MQTTASYNC_FAILURE;
    for (int i = 0; i < 1000; i++) {
        /* fails while paho still connects or disconnects the handle */
        pmq_paho_enter();
        rc = MQTTAsync_setCallbacks(*h, NULL, NULL, retired_arrived, NULL);
        pmq_paho_leave();
        if (rc == MQTTASYNC_SUCCESS)
            break;
        nanosleep(&ts, NULL);
    }
    if (rc != MQTTASYNC_SUCCESS) {
        pmq_paho_enter();
        MQTTAsync_destroy(h);
        pmq_paho_leave();
        return -1;
    }
    pmq_paho_enter();
    (void)MQTTAsync_setDisconnected(*h, NULL, NULL);
    pmq_paho_leave();
    *h = NULL;
    return 0;
}

/* a retired handle calls nothing back: its publishes and subscribes (those
 * handed to it, not those waiting in the outbox) fail as MQTTAsync_destroy
 * would have failed them (MQTTAsync_freeResponses, MQTTAsync_freeCommands:
 * MQTTASYNC_OPERATION_INCOMPLETE) */
static void fail_handed(pmq_ctx *c)
{
    pmq_subop *op, **v;
    size_t n = 0, i = 0;
    pthread_mutex_lock(&c->mu);
    for (op = c->subops; op; op = op->next)
        if (!__atomic_load_n(&op->held, __ATOMIC_SEQ_CST))
            n++;
    v = n ? malloc(n * sizeof *v) : NULL;
    if (v)
        for (op = c->subops; op && i < n; op = op->next)
            if (!__atomic_load_n(&op->held, __ATOMIC_SEQ_CST))
                v[i++] = op;
    pthread_mutex_unlock(&c->mu);
    for (size_t k = 0; k < i; k++) {
        MQTTAsync_failureData5 f5 = MQTTAsync_failureData5_initializer;
        MQTTAsync_failureData f;
        memset(&f, 0, sizeof f);
        f.code = f5.code = MQTTASYNC_OPERATION_INCOMPLETE;
        if (v[k]->sub) {
            if (c->version == 5)
                pmq_subscribe_fail5(v[k], &f5);
            else
                pmq_subscribe_fail(v[k], &f);
        } else {
            if (c->version == 5)
                pmq_publish_fail5(v[k], &f5);
            else
                pmq_publish_fail(v[k], &f);
        }
    }
    free(v);
}

/* retire c's handle (c->handle becomes NULL) and fail what it had */
int pmq_retire(pmq_ctx *c)
{
    if (retire_handle(&c->handle) != 0)
        return -1;
    fail_handed(c);
    return 0;
}
