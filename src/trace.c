/*
 * trace.c - paho's process-wide trace hook, shared by two users:
 *
 *  - keepalive.c, which needs paho's PROTOCOL-level lines only while a
 *    client may be about to time out (see there);
 *  - mqtt.trace(level, handler), which forwards paho's lines to Lua. The
 *    hook runs on paho's threads, so lines are queued here (bounded) and
 *    the Lua layer drains the queue when it dispatches. Passwords the
 *    clients connect with are replaced by "*****" before a line is queued.
 *
 * No Lua header here: this code runs on paho's threads. paho's trace level
 * is process-wide, so the level set is the most detailed either user wants.
 *
 * keepalive.c sits above this file (it turns PROTOCOL lines on and off
 * through pmq_trace_protocol); the hook reaches it only through the listener
 * it registers (pmq_trace_listen), so this file calls nothing above it.
 */
#include "pmq.h"

#include <stdlib.h>
#include <string.h>

#define QUEUE_MAX 2000          /* lines kept for Lua; older ones are dropped */
#define SECRETS_MAX 64

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t tr_mu = PTHREAD_MUTEX_INITIALIZER;
/* serializes level changes; paho is called with it held but not tr_mu,
 * which the hook takes while paho holds its log mutex */
static pthread_mutex_t ap_mu = PTHREAD_MUTEX_INITIALIZER;
static int user_level;          /* 0 = off, else MQTTASYNC_TRACE_* (with tr_mu) */
static int ka_wants;            /* keepalive.c wants PROTOCOL lines (with tr_mu) */
static int applied;             /* the level paho has now (with ap_mu) */

typedef struct line {
    struct line *next;
    int level;
    char text[1];
} line;
static line *head, *tail;
static size_t queued;
static unsigned long dropped;

static char *secrets[SECRETS_MAX];

/* keepalive.c's reader of every line, set once before it needs lines */
static void (*listener)(int level, const char *line);

/* with ap_mu, without tr_mu: set the level paho should trace at */
static void apply(void)
{
    int want = MQTTASYNC_TRACE_FATAL;
    pthread_mutex_lock(&tr_mu);
    if (ka_wants)
        want = MQTTASYNC_TRACE_PROTOCOL;
    if (user_level && user_level < want)
        want = user_level;
    pthread_mutex_unlock(&tr_mu);
    if (want != applied) {
        applied = want;
        MQTTAsync_setTraceLevel((enum MQTTASYNC_TRACE_LEVELS)want);
    }
}

/* with tr_mu: a copy of `text` with every secret replaced by "*****" */
static line *redacted(int level, const char *text)
{
    size_t n = strlen(text), cap = n + 1;
    line *l;
    for (int i = 0; i < SECRETS_MAX; i++)
        if (secrets[i] && strstr(text, secrets[i]))
            cap += 5 * (n / strlen(secrets[i]) + 1);
    l = malloc(sizeof *l + cap);
    if (!l)
        return NULL;
    l->next = NULL;
    l->level = level;
    memcpy(l->text, text, n + 1);
    for (int i = 0; i < SECRETS_MAX; i++) {
        char *p;
        size_t sl;
        if (!secrets[i])
            continue;
        sl = strlen(secrets[i]);
        while ((p = strstr(l->text, secrets[i])) != NULL) {
            size_t rest = strlen(p + sl);
            memmove(p + 5, p + sl, rest + 1);
            memcpy(p, "*****", 5);
        }
    }
    return l;
}

static void hook(enum MQTTASYNC_TRACE_LEVELS level, char *text)
{
    void (*fn)(int, const char *) = __atomic_load_n(&listener, __ATOMIC_SEQ_CST);
    if (!text)
        return;
    if (fn)
        fn((int)level, text);
    pthread_mutex_lock(&tr_mu);
    if (user_level && (int)level >= user_level) {
        line *l = redacted((int)level, text);
        if (l) {
            if (queued >= QUEUE_MAX) {
                line *old = head;
                head = old->next;
                if (!head)
                    tail = NULL;
                free(old);
                queued--;
                dropped++;
            }
            if (tail)
                tail->next = l;
            else
                head = l;
            tail = l;
            queued++;
        }
    }
    pthread_mutex_unlock(&tr_mu);
}

static void install(void)
{
    pthread_mutex_lock(&ap_mu);
    applied = MQTTASYNC_TRACE_FATAL;
    MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_FATAL);
    pthread_mutex_unlock(&ap_mu);
    MQTTAsync_setTraceCallback(hook);
}

void pmq_trace_init(void)
{
    pthread_once(&once, install);
}

/* keepalive.c: every line the hook gets goes to fn too, on paho's threads,
 * with paho's log mutex held */
void pmq_trace_listen(void (*fn)(int level, const char *line))
{
    __atomic_store_n(&listener, fn, __ATOMIC_SEQ_CST);
}

/* keepalive.c's watchdog: PROTOCOL lines wanted or not. Not with ka_mu. */
void pmq_trace_protocol(int want)
{
    pmq_trace_init();
    pthread_mutex_lock(&ap_mu);
    pthread_mutex_lock(&tr_mu);
    ka_wants = want;
    pthread_mutex_unlock(&tr_mu);
    apply();
    pthread_mutex_unlock(&ap_mu);
}

/* mqtt.trace: 0 turns forwarding off and drops what is queued */
void pmq_trace_level(int level)
{
    pmq_trace_init();
    pthread_mutex_lock(&ap_mu);
    pthread_mutex_lock(&tr_mu);
    user_level = level;
    if (!level) {
        while (head) {
            line *l = head;
            head = l->next;
            free(l);
        }
        tail = NULL;
        queued = 0;
    }
    pthread_mutex_unlock(&tr_mu);
    apply();
    pthread_mutex_unlock(&ap_mu);
}

/* takes the queued lines (oldest first), to free with pmq_trace_free */
pmq_trace_line *pmq_trace_take(unsigned long *lost)
{
    line *l;
    pthread_mutex_lock(&tr_mu);
    l = head;
    head = tail = NULL;
    queued = 0;
    *lost = dropped;
    dropped = 0;
    pthread_mutex_unlock(&tr_mu);
    return (pmq_trace_line *)l;
}

const char *pmq_trace_text(pmq_trace_line *l, int *level, pmq_trace_line **next)
{
    line *x = (line *)l;
    *level = x->level;
    *next = (pmq_trace_line *)x->next;
    return x->text;
}

void pmq_trace_free(pmq_trace_line *l)
{
    free(l);
}

/* passwords to keep out of trace lines (a client connecting with one) */
void pmq_trace_secret(const char *s, int add)
{
    if (!s || !*s)
        return;
    pthread_mutex_lock(&tr_mu);
    for (int i = 0; i < SECRETS_MAX; i++) {
        if (add && !secrets[i]) {
            secrets[i] = strdup(s);
            break;
        }
        if (!add && secrets[i] && strcmp(secrets[i], s) == 0) {
            free(secrets[i]);
            secrets[i] = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&tr_mu);
}

/* a client's secrets (c->secret: password, key password) are no longer
 * kept out of trace lines, and freed: its next connect, its close */
void pmq_trace_forget(pmq_ctx *c)
{
    for (int i = 0; i < 2; i++) {
        if (c->secret[i]) {
            pmq_trace_secret(c->secret[i], 0);
            free(c->secret[i]);
            c->secret[i] = NULL;
        }
    }
}
