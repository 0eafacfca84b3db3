/*
 * queue.c - the event queue of each client, the lower half of the thread
 * boundary (events.c, paho's callbacks, is the upper half).
 *
 * paho's threads append events (pmq_queue_push, under the client's mutex)
 * and make the client's descriptor readable; the owning Lua thread takes
 * them (pmq_queue_pop). Also here: the bracket around paho calls that keeps
 * backpressure from deadlocking on paho's lock, and the pool of request
 * contexts (pmq_subop). No Lua header is included, so no Lua call can
 * happen here; this file calls nothing of the binding but the clock.
 *
 * Backpressure: when the queue holds max_count events or max_bytes bytes, the
 * message-arrived callback waits (pmq_queue_wait_space) until the Lua side
 * has dispatched some. paho's receiving thread then stops reading, TCP pushes
 * back to the broker, and nothing is dropped; each such wait is counted in
 * `stalls`. Other events never wait: they are few and bounded by the
 * requests the Lua side made.
 */
#define _GNU_SOURCE
#include "pmq.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/eventfd.h>
#endif

/* ------------------------------------------------------------------ */
/* Backpressure and paho's global lock.
 *
 * paho runs every callback with its one process-wide mutex held, and every
 * paho call locks it too. So a message callback that waits for queue space
 * must not wait while a Lua thread is inside a paho call (say, publish from a
 * handler): that thread would block on paho's mutex and never drain the
 * queue. Threads of this binding announce each paho call (pmq_paho_enter /
 * pmq_paho_leave); a waiting callback then lets its message in over the limit
 * (counted in `overflows`) so the call can go on. These two counters and
 * their condition variable are the only process-wide state of the binding;
 * they exist because paho's lock is process-wide. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_calling; /* binding threads inside a paho call */
static int g_stalled; /* message callbacks waiting for space */

void pmq_paho_enter(void)
{
    __atomic_add_fetch(&g_calling, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&g_stalled, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&g_mu);
        pthread_cond_broadcast(&g_cv);
        pthread_mutex_unlock(&g_mu);
    }
}

void pmq_paho_leave(void)
{
    __atomic_sub_fetch(&g_calling, 1, __ATOMIC_SEQ_CST);
}

static void wake_stalled(void)
{
    if (__atomic_load_n(&g_stalled, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&g_mu);
        pthread_cond_broadcast(&g_cv);
        pthread_mutex_unlock(&g_mu);
    }
}

int pmq_queue_init(pmq_ctx *c)
{
    if (pthread_mutex_init(&c->mu, NULL) != 0)
        return -1;
    c->rfd = c->wfd = -1;
#if defined(__linux__)
    c->rfd = c->wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
#endif
    if (c->rfd < 0) {
        int p[2];
        if (pipe(p) != 0) {
            pthread_mutex_destroy(&c->mu);
            return -1;
        }
        for (int i = 0; i < 2; i++) {
            fcntl(p[i], F_SETFL, fcntl(p[i], F_GETFL) | O_NONBLOCK);
            fcntl(p[i], F_SETFD, FD_CLOEXEC);
        }
        c->rfd = p[0];
        c->wfd = p[1];
    }
    return 0;
}

/* with c->mu held */
static void signal_fd(pmq_ctx *c)
{
    if (!c->signalled) {
        uint64_t one = 1;
        ssize_t n;
        c->signalled = 1;
        do {
            n = write(c->wfd, &one, c->rfd == c->wfd ? sizeof one : 1);
        } while (n < 0 && errno == EINTR);
    }
}

/* with c->mu held */
static void drain_fd(pmq_ctx *c)
{
    if (c->signalled) {
        char buf[64];
        ssize_t n;
        c->signalled = 0;
        /* one read: signal_fd writes once per signalled cycle (an eventfd
         * returns its whole count, a pipe holds that one byte) */
        do {
            n = read(c->rfd, buf, c->rfd == c->wfd ? 8 : sizeof buf);
        } while (n < 0 && errno == EINTR);
    }
}

/* with c->mu held. count and bytes are atomic: the owning thread takes
 * events off its own batch (see pmq_queue_pop) without the mutex */
void pmq_queue_push(pmq_ctx *c, pmq_event *e)
{
    size_t n;
    e->next = NULL;
    if (c->tail)
        c->tail->next = e;
    else
        c->head = e;
    c->tail = e;
    c->pub_batch = e->type == PMQ_EV_PUBLISHED ? e : NULL;
    n = __atomic_add_fetch(&c->count, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&c->bytes, e->bytes, __ATOMIC_SEQ_CST);
    if (e->type == PMQ_EV_MESSAGE || e->type == PMQ_EV_PUBLISHED || (e->type == PMQ_EV_OP && e->ok))
        __atomic_add_fetch(&c->heard, 1, __ATOMIC_RELAXED); /* the broker spoke */
    if (n > c->max_depth)
        c->max_depth = n;
    signal_fd(c);
}

/* On the owning thread. It takes everything queued at once (one lock for
 * a batch, not one per event: paho's receive thread pushes while holding
 * paho's own mutex, which the owning thread needs for every publish) and
 * hands the events out one by one from c->mine. An event counts against
 * the bound until it is handed out. */
pmq_event *pmq_queue_pop(pmq_ctx *c)
{
    pmq_event *e = c->mine;
    if (!e) {
        pthread_mutex_lock(&c->mu);
        e = c->head;
        c->head = c->tail = NULL;
        c->pub_batch = NULL;   /* no longer at the tail of the queue */
        c->dc_queued = 0;      /* a "delivered" taken is as good as handled */
        /* the fd is drained when a pop finds the queue empty, not when it
         * takes the last event: while the owning thread handles those,
         * what paho queues needs no write to the fd (the caller pops
         * again before it waits on the fd) */
        if (!e)
            drain_fd(c);
        pthread_mutex_unlock(&c->mu);
        if (!e)
            return NULL;
    }
    c->mine = e->next;
    e->next = NULL;
    __atomic_sub_fetch(&c->count, 1, __ATOMIC_SEQ_CST);
    __atomic_sub_fetch(&c->bytes, e->bytes, __ATOMIC_SEQ_CST);
    wake_stalled();
    return e;
}

void pmq_event_free(pmq_event *e)
{
    if (!e)
        return;
    if (e->has_props)
        MQTTProperties_free(&e->props);
    free(e->qos);
    free(e->text);
    free(e);
}

void pmq_queue_close(pmq_ctx *c)
{
    pthread_mutex_lock(&c->mu);
    c->closing = 1;
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_lock(&g_mu);
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

void pmq_wait_idle(pmq_ctx *c)
{
    struct timespec ts = {0, 1000000};
    for (;;) {
        int active;
        pthread_mutex_lock(&c->mu);
        active = c->active;
        pthread_mutex_unlock(&c->mu);
        if (!active)
            return;
        nanosleep(&ts, NULL);
    }
}

void pmq_queue_free(pmq_ctx *c)
{
    pmq_event *e = c->head, *next;
    for (; e; e = next) {
        next = e->next;
        pmq_event_free(e);
    }
    c->head = c->tail = NULL;
    for (e = c->mine; e; e = next) {
        next = e->next;
        pmq_event_free(e);
    }
    c->mine = NULL;
    while (c->subops) {
        pmq_subop *op = c->subops;
        c->subops = op->next;
        free(op);
    }
    while (c->spare) {
        pmq_subop *op = c->spare;
        c->spare = op->next;
        free(op);
    }
    if (c->rfd >= 0)
        close(c->rfd);
    if (c->wfd >= 0 && c->wfd != c->rfd)
        close(c->wfd);
    c->rfd = c->wfd = -1;
    pthread_mutex_destroy(&c->mu);
}

/* with c->mu held: is there no room for an event of `add` bytes? */
int pmq_queue_full(pmq_ctx *c, size_t add)
{
    size_t n = __atomic_load_n(&c->count, __ATOMIC_SEQ_CST);
    size_t b = __atomic_load_n(&c->bytes, __ATOMIC_SEQ_CST);
    return n > 0 && ((c->max_count && n >= c->max_count) || (c->max_bytes && b + add > c->max_bytes));
}

/* called without c->mu; returns with it unlocked */
void pmq_queue_wait_space(pmq_ctx *c, size_t add)
{
    double t0 = pmq_now();
    int over = 0;
    pthread_mutex_lock(&c->mu);
    c->stalls++;
    pthread_mutex_unlock(&c->mu);
    __atomic_add_fetch(&g_stalled, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&g_mu);
    for (;;) {
        int full, closing;
        struct timespec ts;
        pthread_mutex_lock(&c->mu);
        full = pmq_queue_full(c, add);
        closing = c->closing;
        pthread_mutex_unlock(&c->mu);
        if (!full || closing)
            break;
        if (__atomic_load_n(&g_calling, __ATOMIC_SEQ_CST) > 0) {
            over = 1;
            break;
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g_cv, &g_mu, &ts);
    }
    pthread_mutex_unlock(&g_mu);
    __atomic_sub_fetch(&g_stalled, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&c->mu);
    c->overflows += (unsigned long long)over;
    c->stalled_secs += pmq_now() - t0;
    pthread_mutex_unlock(&c->mu);
}

/* a control event: queued under the mutex, never waits */
void pmq_queue_post(pmq_ctx *c, pmq_event *e)
{
    pthread_mutex_lock(&c->mu);
    e->bytes = 0; /* control events never count against the bound */
    pmq_queue_push(c, e);
    pthread_mutex_unlock(&c->mu);
}

/* ------------------------------------------------------------------ */
/* request contexts (pmq_subop), pooled per client                     */

/* at most this many freed contexts are kept per client for reuse */
#define PMQ_SPARE_MAX 256

/* with c->mu held: take a request's context off the client's list and
 * keep it for reuse; returns it when it is to be freed (spare list full) */
pmq_subop *pmq_subop_unlist(pmq_ctx *c, pmq_subop *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        c->subops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    if (c->nspare < PMQ_SPARE_MAX) {
        op->next = c->spare;
        c->spare = op;
        c->nspare++;
        return NULL;
    }
    return op;
}

pmq_subop *pmq_subop_new(pmq_ctx *c, int n)
{
    pmq_subop *op;
    pthread_mutex_lock(&c->mu);
    op = c->spare;
    if (op) {
        c->spare = op->next;
        c->nspare--;
    }
    else if ((op = malloc(sizeof *op)) == NULL) {
        pthread_mutex_unlock(&c->mu);
        return NULL;
    }
    op->c = c;
    op->n = n;
    op->qos = 0;
    op->sub = 0;
    op->held = 0;
    op->prev = NULL;
    op->next = c->subops;
    if (c->subops)
        c->subops->prev = op;
    c->subops = op;
    pthread_mutex_unlock(&c->mu);
    return op;
}

void pmq_subop_free(pmq_subop *op)
{
    pmq_ctx *c = op->c;
    pthread_mutex_lock(&c->mu);
    op = pmq_subop_unlist(c, op);
    pthread_mutex_unlock(&c->mu);
    free(op);
}

