/*
 * keepalive.c - telling a keepalive timeout apart from other losses.
 *
 * paho.mqtt.c 1.3.12 reports every lost connection with a NULL cause. The
 * only place it says "keepalive" is a PROTOCOL-level trace line, logged on
 * the thread that closes the link just before it calls connectionLost:
 *
 *   PINGRESP not received in keepalive interval for client <id> on socket <n>, disconnecting
 *
 * Forwarding PROTOCOL-level lines formats a line for every packet (about 5%
 * of QoS 0 throughput with Debian's paho), so the binding does not leave it
 * on. A keepalive close needs silence from the broker: paho sends PINGREQ
 * after `keepalive` seconds without traffic and gives up when no PINGRESP
 * came 1.5 x keepalive later. A watchdog thread turns the forwarding on only
 * while some connected client has heard nothing from its broker (no message,
 * no acknowledgement, no PINGRESP) for 1.2 x its keepalive, and off again as
 * soon as every client has. A busy client therefore never pays for it; an
 * idle one pays for a few trace lines per keepalive period.
 *
 * Locks: ka_mu is taken last. The trace callback runs with paho's log mutex
 * (and maybe its main mutex) held and takes ka_mu; nothing here calls paho
 * or takes a client's mutex while holding ka_mu. Fields a paho thread writes
 * and the watchdog reads (heard, connected, ka_fail) are atomics.
 *
 * The only global state is what paho's process-wide trace hook needs: the
 * list of clients that use a keepalive, and the watchdog thread.
 */
#include "pmq.h"

#include <string.h>
#include <time.h>

static pthread_mutex_t ka_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ka_cv = PTHREAD_COND_INITIALIZER;
static pmq_ctx *ka_list;                 /* clients with a keepalive, by ka_next */
static pthread_once_t ka_once = PTHREAD_ONCE_INIT;
static int ka_started;

#define TICK_NS 100000000L               /* the watchdog looks every 0.1 s */
#define SUSPECT 1.2                      /* x keepalive of silence: start listening */

static const char KA_LINE[] = "PINGRESP not received in keepalive interval for client ";
static const char PINGRESP[] = " <- PINGRESP";

/* does `line` name client `id` right before `end` ("... <id><end>")? */
static int names_before(const char *line, size_t len, const char *id, size_t idlen, size_t endlen)
{
    if (len < idlen + endlen + 1)
        return 0;
    return line[len - endlen - idlen - 1] == ' ' && memcmp(line + len - endlen - idlen, id, idlen) == 0;
}

/* every line of paho's trace hook (trace.c's listener, from start()); on
 * paho's threads, with paho's log mutex held */
static void ka_trace(int level, const char *line)
{
    const char *p;
    size_t len;
    pmq_ctx *c;
    if (level != MQTTASYNC_TRACE_PROTOCOL || !line)
        return;
    len = strlen(line);
    if (len > sizeof PINGRESP - 1 && memcmp(line + len - (sizeof PINGRESP - 1), PINGRESP, sizeof PINGRESP - 1) == 0) {
        /* "<time> <socket> <id> <- PINGRESP": the broker answered */
        double now = pmq_now();
        pthread_mutex_lock(&ka_mu);
        for (c = ka_list; c; c = c->ka_next)
            if (names_before(line, len, c->ka_id, strlen(c->ka_id), sizeof PINGRESP - 1))
                c->ka_heard_at = now;
        pthread_mutex_unlock(&ka_mu);
        return;
    }
    p = strstr(line, KA_LINE);
    if (p) {
        const char *id = p + sizeof KA_LINE - 1;
        const char *end = strstr(id, " on socket ");
        size_t idlen = end ? (size_t)(end - id) : strlen(id);
        pthread_mutex_lock(&ka_mu);
        for (c = ka_list; c; c = c->ka_next)
            if (strlen(c->ka_id) == idlen && memcmp(c->ka_id, id, idlen) == 0)
                __atomic_store_n(&c->ka_fail, 1, __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&ka_mu);
    }
}

static void *watchdog(void *arg)
{
    int tracing = 0;
    (void)arg;
    for (;;) {
        int need = 0;
        double now;
        struct timespec ts;
        pmq_ctx *c;
        pthread_mutex_lock(&ka_mu);
        while (!ka_list)
            pthread_cond_wait(&ka_cv, &ka_mu);
        now = pmq_now();
        for (c = ka_list; c; c = c->ka_next) {
            unsigned long heard = __atomic_load_n(&c->heard, __ATOMIC_RELAXED);
            int ka = __atomic_load_n(&c->keepalive, __ATOMIC_RELAXED);
            if (heard != c->ka_seen) {
                c->ka_seen = heard;
                c->ka_heard_at = now;
            }
            if (ka > 0 && __atomic_load_n(&c->connected, __ATOMIC_RELAXED) &&
                now - c->ka_heard_at >= SUSPECT * ka)
                need = 1;
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += TICK_NS;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ka_cv, &ka_mu, &ts);
        pthread_mutex_unlock(&ka_mu);
        /* outside ka_mu: paho may take its log mutex here */
        if (need != tracing) {
            pmq_trace_protocol(need);
            tracing = need;
        }
    }
    return NULL;
}

static void start(void)
{
    pthread_t t;
    pthread_attr_t a;
    pmq_trace_listen(ka_trace);
    pmq_trace_init();
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 64 * 1024);
    ka_started = pthread_create(&t, &a, watchdog, NULL) == 0;
    pthread_attr_destroy(&a);
}

/* from the owning thread, before a connect with a keepalive */
void pmq_ka_watch(pmq_ctx *c)
{
    __atomic_store_n(&c->ka_fail, 0, __ATOMIC_SEQ_CST);
    if (c->ka_listed || !c->ka_id)
        return;
    pthread_once(&ka_once, start);
    pthread_mutex_lock(&ka_mu);
    c->ka_heard_at = pmq_now();
    c->ka_seen = __atomic_load_n(&c->heard, __ATOMIC_RELAXED);
    c->ka_next = ka_list;
    ka_list = c;
    c->ka_listed = 1;
    pthread_cond_signal(&ka_cv);
    pthread_mutex_unlock(&ka_mu);
}

/* from the owning thread, before the client is freed */
void pmq_ka_unwatch(pmq_ctx *c)
{
    pmq_ctx **p;
    if (!c->ka_listed)
        return;
    pthread_mutex_lock(&ka_mu);
    for (p = &ka_list; *p; p = &(*p)->ka_next)
        if (*p == c) {
            *p = c->ka_next;
            break;
        }
    c->ka_listed = 0;
    pthread_mutex_unlock(&ka_mu);
}

/* whether the watchdog runs (for stats) */
int pmq_ka_active(void)
{
    return ka_started;
}
