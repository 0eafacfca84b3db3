/*
 * pmq.h - shared declarations of the C core of paho.mqtt for Lua.
 *
 * This header includes no Lua header on purpose: events.c, the only file
 * whose functions paho calls on its own threads, includes it and nothing from
 * Lua, so no Lua call can ever slip onto a paho thread.
 */
#ifndef PMQ_H
#define PMQ_H

#include <stddef.h>
#include <pthread.h>
#include <MQTTAsync.h>

#if defined(__GNUC__)
#define PMQ_HIDDEN __attribute__((visibility("hidden")))
#else
#define PMQ_HIDDEN
#endif

/* Event types delivered from paho's threads to the owning Lua thread. */
enum {
    PMQ_EV_MESSAGE = 1,  /* a PUBLISH arrived */
    PMQ_EV_OP,           /* an asynchronous request finished */
    PMQ_EV_LOST,         /* connectionLost */
    PMQ_EV_DISCONNECTED, /* the broker sent DISCONNECT (MQTT 5) */
    PMQ_EV_DELIVERED,    /* paho's deliveryComplete, while watched (see watch_dc) */
    PMQ_EV_PUBLISHED     /* publishes that succeeded plainly, by number (see pub_batch) */
};

/* Kinds of asynchronous requests. */
enum {
    PMQ_OP_CONNECT = 1,
    PMQ_OP_SUBSCRIBE,
    PMQ_OP_UNSUBSCRIBE,
    PMQ_OP_PUBLISH,
    PMQ_OP_DISCONNECT
};

/* Why a connection ended, as the binding classifies it. */
enum {
    PMQ_CAUSE_NONE = 0,
    PMQ_CAUSE_KEEPALIVE,
    PMQ_CAUSE_BROKER,
    PMQ_CAUSE_NETWORK,
    PMQ_CAUSE_CLIENT
};

typedef struct pmq_event {
    struct pmq_event *next;
    int type;
    int kind;            /* PMQ_OP_* for PMQ_EV_OP */
    int token;           /* paho token of the request */
    int ok;              /* 1 on success */
    int rc;              /* paho return code (failures) */
    int reason;          /* MQTT reason code */
    int flag;            /* session_present (connect), packet type (failure) */
    int mqtt_version;
    int nqos;            /* granted QoS / reason codes of a SUBACK/UNSUBACK;
                          * PMQ_EV_PUBLISHED: the publish numbers */
    int *qos;
    char *text;          /* failure message, server URI or cause; malloc'd */
    int has_props;
    MQTTProperties props;
    /* PMQ_EV_MESSAGE: topic and payload copied into the event's own block
     * (one malloc), so that paho's message is freed on paho's thread and
     * the Lua thread never takes paho's heap lock for it */
    char *topic;
    int topiclen;
    char *payload;
    int payloadlen;
    int mqos, retained, dup, msgid;
    size_t bytes;        /* what this event counts against the byte limit */
} pmq_event;

struct pmq_ctx;

/* Context of one subscribe or publish request, listed in its client (what
 * paho never answers is freed with the client). Subscribe: a v3 SUBACK's
 * granted list carries no length, so n is how many filters were sent.
 * Publish: n is the binding's own number for the publish, which its events
 * carry instead of paho's token: paho 1.3.12 fails a publish it could not
 * write (MQTTAsync_processCommand) with token 0, and QoS 0 tokens are all 0. */
typedef struct pmq_subop {
    struct pmq_subop *next, *prev;
    struct pmq_ctx *c;
    int n;
    int qos;             /* publish: its QoS */
    int sub;             /* a subscribe's (else a publish's) */
    int held;            /* waits in the outbox, not handed to paho (atomic) */
} pmq_subop;

/* outbox.c: publishes held for the flow-control windows (see there) */
typedef struct pmq_held pmq_held;
typedef struct pmq_outbox {
    pthread_mutex_t mu;          /* the queue and the counts; never held across a paho call */
    pthread_mutex_t send_mu;     /* one sender at a time (keeps the order); before paho's lock */
    int want;                    /* a release was asked for while send_mu was taken (atomic) */
    int open;                    /* connected, as the Lua layer reported: release (atomic) */
    pmq_held *head, *tail;
    int n;                       /* held */
    int peak;                    /* the most held at once */
    size_t bytes;                /* their topics and payloads */
    int inflight, inflight0;     /* QoS 1/2, QoS 0 publishes handed to paho, not completed */
    int inflight2;               /* of inflight, the QoS 2 ones */
    int recv_max;                /* the window for QoS 1/2 */
    int max2;                    /* and for QoS 2 alone */
} pmq_outbox;

/* One client: malloc'd, because paho's threads may use it after Lua has
 * collected the userdata box that points at it. */
typedef struct pmq_ctx {
    MQTTAsync handle;
    int version;                 /* 3, 4 or 5 */
    int ws;                      /* created with a ws:// or wss:// URI */
    /* what the handle was created with, to create it again (rebuild) */
    char *mk_uri, *mk_dir;
    int mk_offline;

    pthread_mutex_t mu;
    pmq_event *head, *tail;
    pmq_event *mine;             /* taken off the queue by the owning thread, not handed out yet */
    size_t count, bytes;         /* events and bytes queued, mine included (atomic) */
    size_t max_count, max_bytes; /* the bound; 0 = unbounded */
    int rfd, wfd;                /* eventfd (rfd == wfd) or pipe */
    int signalled;               /* the fd is readable */
    int closing;                 /* close() started: paho threads stop waiting */
    int active;                  /* paho callbacks running right now */
    pmq_subop *subops;           /* subscribe and publish requests not answered yet */
    pmq_subop *spare;            /* freed contexts kept for reuse (no malloc per publish) */
    int nspare;
    int pub_seq;                 /* the last publish number (owning thread) */
    /* the PMQ_EV_PUBLISHED event at the tail of the queue, still open to
     * more numbers (NULL once any other event follows it or it is popped):
     * publishes that succeed with reason 0 and no properties share one
     * event instead of one each, in their place among the other events */
    pmq_event *pub_batch;
    /* deliveryComplete: paho restores the publishes of its persistence store
     * without any callback of ours, and calls only deliveryComplete as they
     * complete. While watch_dc is set (atomic), each posts one
     * PMQ_EV_DELIVERED, at most one queued at a time (dc_queued, with mu) */
    int watch_dc, dc_queued;
    /* paho code (-1, -2) of a QoS 1/2 publish paho failed while writing it,
     * set on paho's thread at once (atomic): paho 1.3.12 keeps such a
     * publish in flight with its memory freed, and would resend (and, with
     * persistence, save) that freed memory at its next connect, so the
     * next connect must go through a fresh handle (client:damaged) */
    int damaged;
    /* the Lua layer found paho's session damaged another way (client:suspect):
     * like damaged, the handle is retired, not destroyed (retire.c) */
    int suspect;
    int retired;   /* handles of this client retired so far (Lua thread) */
    int waking;    /* a connect of this client counts in wake.c (atomic) */

    pmq_outbox out;
    /* called by every publish completion, on the thread paho calls it on
     * (outbox.c: room in the window); events.c calls nothing above it */
    void (*pub_done)(struct pmq_ctx *c, int qos);

    /* counters, read with the mutex held */
    unsigned long long msgs_in, bytes_in, stalls, overflows, max_depth;
    double stalled_secs;

    /* connection state as paho last reported it */
    int connected;
    double connected_at, lost_at;
    int lost_cause;              /* PMQ_CAUSE_* */
    int lost_reason;             /* MQTT reason code when the broker said it */
    char lost_text[200];
    int keepalive;               /* seconds, as sent in CONNECT (atomic) */

    /* keepalive.c: telling a keepalive timeout from other losses */
    char *ka_id;                 /* the client id, to match paho's trace lines */
    char *secret[2];             /* password, key password: kept out of traces */
    char ssl_err[160];           /* OpenSSL's reason for a failed connect (with mu) */
    unsigned long heard;         /* events from the broker so far (atomic) */
    int ka_fail;                 /* paho logged a keepalive close (atomic) */
    int ka_listed;               /* in keepalive.c's list (owning thread) */
    struct pmq_ctx *ka_next;     /* the list; with the next two under its lock */
    unsigned long ka_seen;
    double ka_heard_at;
} pmq_ctx;

/* clock.c */
PMQ_HIDDEN double pmq_now(void);              /* monotonic seconds */

/* quirks.c: paho workarounds with process-wide state */
PMQ_HIDDEN int  pmq_ws_uri(const char *uri);  /* ws:// or wss:// */
PMQ_HIDDEN int  pmq_ws_acquire(pmq_ctx *c, char *holder, size_t len); /* one WebSocket client at a time */
PMQ_HIDDEN void pmq_ws_release(pmq_ctx *c);   /* its connection ended */
PMQ_HIDDEN void pmq_settle_after_destroy(void); /* before a connect */
PMQ_HIDDEN void pmq_destroyed(void);          /* after MQTTAsync_destroy */

/* wake.c: the anchor handle keeps paho's threads alive and wakes paho's
 * receive thread while a connect waits */
PMQ_HIDDEN void pmq_keep_paho_threads(void);  /* before the first handle */
PMQ_HIDDEN int  pmq_wake_up(long *wakes);     /* the anchor is connected to its peer; wakes so far */
PMQ_HIDDEN void pmq_wake_begin(pmq_ctx *c);   /* before a connect */
PMQ_HIDDEN void pmq_wake_end(pmq_ctx *c);     /* the connect ended (any thread) */

/* queue.c: the event queue, the lower half of the thread boundary */
PMQ_HIDDEN int  pmq_queue_init(pmq_ctx *c);
PMQ_HIDDEN void pmq_queue_close(pmq_ctx *c);  /* wake waiters, mark closing */
PMQ_HIDDEN void pmq_queue_free(pmq_ctx *c);   /* free what is left; after destroy */
PMQ_HIDDEN pmq_event *pmq_queue_pop(pmq_ctx *c);
PMQ_HIDDEN void pmq_queue_push(pmq_ctx *c, pmq_event *e); /* with c->mu held */
PMQ_HIDDEN void pmq_queue_post(pmq_ctx *c, pmq_event *e); /* a control event; takes c->mu */
PMQ_HIDDEN int  pmq_queue_full(pmq_ctx *c, size_t add);   /* with c->mu held */
PMQ_HIDDEN void pmq_queue_wait_space(pmq_ctx *c, size_t add); /* without c->mu: backpressure */
PMQ_HIDDEN void pmq_event_free(pmq_event *e);
PMQ_HIDDEN void pmq_wait_idle(pmq_ctx *c);    /* until no paho callback runs */
/* bracket every paho call made by a binding thread (see queue.c) */
PMQ_HIDDEN void pmq_paho_enter(void);
PMQ_HIDDEN void pmq_paho_leave(void);

PMQ_HIDDEN pmq_subop *pmq_subop_new(struct pmq_ctx *c, int n);
PMQ_HIDDEN void pmq_subop_free(pmq_subop *op);
/* with c->mu held: off the client's list, into the spare list; returns it
 * when it is to be freed (spare list full) */
PMQ_HIDDEN pmq_subop *pmq_subop_unlist(pmq_ctx *c, pmq_subop *op);

/* events.c: the thread boundary, paho's callbacks */
PMQ_HIDDEN void pmq_set_lost(pmq_ctx *c, int cause, int reason, const char *text);

/* retire.c: a damaged handle is left idle, never destroyed (paho's double free) */
PMQ_HIDDEN int  pmq_retire(pmq_ctx *c); /* c->handle: retired, or destroyed if it will not settle (-1) */

/* outbox.c: the outgoing path */
PMQ_HIDDEN int  pmq_out_init(pmq_ctx *c);
PMQ_HIDDEN void pmq_out_free(pmq_ctx *c);    /* after paho's handle is gone */
PMQ_HIDDEN int  pmq_out_publish(pmq_ctx *c, pmq_subop *op, const char *topic, MQTTAsync_message *m,
                                int hold, int *held);
PMQ_HIDDEN void pmq_out_open(pmq_ctx *c, int recv_max, int max2); /* the Lua layer reports a connect */
PMQ_HIDDEN void pmq_out_shut(pmq_ctx *c);    /* before destroying paho's handle */
PMQ_HIDDEN void pmq_out_counts(pmq_ctx *c, int *held, size_t *held_bytes, int *inflight, int *peak);

/* keepalive.c */
PMQ_HIDDEN void pmq_ka_watch(pmq_ctx *c);    /* before connecting with a keepalive */
PMQ_HIDDEN void pmq_ka_unwatch(pmq_ctx *c);  /* before freeing */
/* in connectionLost (events.c), on the thread that closed the link: did
 * paho close it because no PINGRESP came? (keepalive.c set ka_fail from the
 * trace line that came just before). Inline: the thread boundary calls
 * nothing above it */
static inline int pmq_ka_failed(pmq_ctx *c)
{
    return __atomic_exchange_n(&c->ka_fail, 0, __ATOMIC_SEQ_CST);
}

/* trace.c: paho's process-wide trace hook */
typedef struct pmq_trace_line pmq_trace_line;
PMQ_HIDDEN void pmq_trace_init(void);
PMQ_HIDDEN void pmq_trace_listen(void (*fn)(int level, const char *line)); /* keepalive.c */
PMQ_HIDDEN void pmq_trace_protocol(int want);      /* keepalive.c */
PMQ_HIDDEN void pmq_trace_level(int level);        /* mqtt.trace; 0 = off */
PMQ_HIDDEN pmq_trace_line *pmq_trace_take(unsigned long *lost);
PMQ_HIDDEN const char *pmq_trace_text(pmq_trace_line *l, int *level, pmq_trace_line **next);
PMQ_HIDDEN void pmq_trace_free(pmq_trace_line *l);
PMQ_HIDDEN void pmq_trace_secret(const char *s, int add);
PMQ_HIDDEN void pmq_trace_forget(pmq_ctx *c);     /* c->secret: forgotten, freed */

/* paho callbacks; context is the pmq_ctx */
PMQ_HIDDEN int  pmq_on_message(void *ctx, char *topic, int topiclen, MQTTAsync_message *m);
PMQ_HIDDEN void pmq_on_lost(void *ctx, char *cause);
PMQ_HIDDEN void pmq_on_delivered(void *ctx, MQTTAsync_token token);
PMQ_HIDDEN void pmq_on_disconnected(void *ctx, MQTTProperties *props, enum MQTTReasonCodes rc);
PMQ_HIDDEN int  pmq_on_ssl_error(const char *str, size_t len, void *ctx);

/* response callbacks, one set per request kind (v3 and v5) */
#define PMQ_DECLARE_OP(name) \
    PMQ_HIDDEN void pmq_##name##_ok(void *ctx, MQTTAsync_successData *r); \
    PMQ_HIDDEN void pmq_##name##_fail(void *ctx, MQTTAsync_failureData *r); \
    PMQ_HIDDEN void pmq_##name##_ok5(void *ctx, MQTTAsync_successData5 *r); \
    PMQ_HIDDEN void pmq_##name##_fail5(void *ctx, MQTTAsync_failureData5 *r);
PMQ_DECLARE_OP(connect)
PMQ_DECLARE_OP(subscribe)
PMQ_DECLARE_OP(unsubscribe)
PMQ_DECLARE_OP(publish)
PMQ_DECLARE_OP(disconnect)

/* probe.c: a TCP connect to host:port tried on a thread of its own, to say
 * why a connect failed; the result is read without waiting */
typedef struct pmq_probe pmq_probe;
enum { PMQ_PROBE_RUNNING = 0, PMQ_PROBE_TCP_OK = 1, PMQ_PROBE_FAILED = 2 };
PMQ_HIDDEN pmq_probe *pmq_probe_start(const char *host, int port, int timeout_ms);
PMQ_HIDDEN int pmq_probe_result(pmq_probe *p, char *text, size_t size); /* PMQ_PROBE_*; text when done */
PMQ_HIDDEN void pmq_probe_release(pmq_probe *p);

#endif
