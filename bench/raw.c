/*
 * bench/raw.c - the baseline for `make bench`: paho.mqtt.c's MQTTAsync API
 * used directly, the way a careful C program would, with MQTT 5 (the Lua
 * binding's default).
 *
 *   raw throughput URI N SIZE QOS   one publisher and one subscriber client in
 *                                   this process; N messages of SIZE bytes;
 *                                   time from the first publish to the last
 *                                   arrival at the subscriber
 *   raw latency URI M SIZE QOS      publish one message, wait for it to arrive,
 *                                   M times (after a short warm-up); p50/p99
 *   raw connect URI K               create+connect (to CONNACK) K clients one
 *                                   after another, all staying connected; the
 *                                   1st, and the p50 of the 2nd..Kth
 *   raw calls URI N QOS             the time of N MQTTAsync_sendMessage calls
 *                                   alone (bench/costs.lua's counterpart)
 *
 * Each prints one line starting with "RESULT" of key=value fields, the same
 * fields bench/bench.lua prints for the Lua binding. With BROKER_PID set in
 * the environment it also reports the broker's CPU seconds over the measured
 * interval (broker_cpu_s), read from /proc/PID/stat.
 *
 * paho rules kept here: paho runs every callback holding its process-wide
 * mutex, so callbacks only record and signal, and every paho call is made on
 * the main thread. On MQTT 5 paho 1.3.12 holds publishes beyond the broker's
 * Receive Maximum and looks at them again only after up to a second, so QoS
 * 1/2 publishes are kept within that window (the Lua binding does the same).
 * QoS 0 publishes are paced the same way, at most Receive Maximum of them
 * not yet written (their onSuccess): when many are queued at once, paho
 * 1.3.12 stalls in the same way (with 16 KiB payloads, 10,000 messages take
 * ~6 s instead of ~0.7 s). RAW_QOS0_WINDOW=N sets another limit, 0 none.
 */
#define _POSIX_C_SOURCE 200809L
#include <MQTTAsync.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

/* state shared with the callbacks, under mu */
static long received;      /* messages arrived at the subscriber */
static long bad_size;      /* arrivals whose payload had the wrong length */
static long expect_size;
static double last_arrival;
static int inflight;       /* QoS 1/2 publishes not acknowledged yet */
static long pub_done, pub_failed;
static int qos0_window = -1; /* RAW_QOS0_WINDOW: QoS 0 publishes not written yet;
                               * -1: the broker's Receive Maximum; 0: no limit */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_self(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* utime+stime of the broker in seconds, or -1 */
static double cpu_broker(void)
{
    const char *pid = getenv("BROKER_PID");
    char path[64], buf[1024];
    FILE *f;
    size_t n;
    char *p;
    unsigned long long ut, st;
    if (!pid || !*pid)
        return -1;
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "raw: %s failed: %s (%d)\n", what, MQTTAsync_strerror(rc), rc);
    exit(2);
}

/* ------------------------------------------------------------------ */
/* callbacks: record and signal, never call paho                        */

typedef struct {
    volatile int done, ok, rc, reason;
    int recv_max;
} waiter;

static void signal_waiter(waiter *w, int ok, int rc, int reason)
{
    pthread_mutex_lock(&mu);
    w->ok = ok;
    w->rc = rc;
    w->reason = reason;
    w->done = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void on_connect_ok(void *ctx, MQTTAsync_successData5 *r)
{
    waiter *w = ctx;
    int rm = MQTTProperties_getNumericValue(&r->properties, MQTTPROPERTY_CODE_RECEIVE_MAXIMUM);
    w->recv_max = rm > 0 ? rm : 65535;
    signal_waiter(w, 1, 0, r->reasonCode);
}

static void on_fail(void *ctx, MQTTAsync_failureData5 *r)
{
    signal_waiter(ctx, 0, r ? r->code : -1, r ? (int)r->reasonCode : -1);
}

static void on_ok(void *ctx, MQTTAsync_successData5 *r)
{
    signal_waiter(ctx, r->reasonCode < 0x80, 0, r->reasonCode);
}

static void on_pub_ok(void *ctx, MQTTAsync_successData5 *r)
{
    int counted = ctx != NULL; /* QoS 1/2: counted against the window */
    pthread_mutex_lock(&mu);
    pub_done++;
    if (r->reasonCode >= 0x80)
        pub_failed++;
    if (counted) {
        inflight--;
        pthread_cond_broadcast(&cv);
    }
    pthread_mutex_unlock(&mu);
}

static void on_pub_fail(void *ctx, MQTTAsync_failureData5 *r)
{
    (void)r;
    pthread_mutex_lock(&mu);
    pub_done++;
    pub_failed++;
    if (ctx) {
        inflight--;
        pthread_cond_broadcast(&cv);
    }
    pthread_mutex_unlock(&mu);
}

static int on_message(void *ctx, char *topic, int topiclen, MQTTAsync_message *m)
{
    (void)ctx;
    (void)topiclen;
    pthread_mutex_lock(&mu);
    received++;
    if (m->payloadlen != expect_size)
        bad_size++;
    last_arrival = now();
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

static void on_lost(void *ctx, char *cause)
{
    fprintf(stderr, "raw: connection lost (%s): %s\n", (const char *)ctx, cause ? cause : "?");
    exit(3);
}

/* ------------------------------------------------------------------ */

/* wait until w->done or the deadline (absolute, monotonic seconds) */
static int wait_done(waiter *w, double timeout)
{
    double end = now() + timeout;
    pthread_mutex_lock(&mu);
    while (!w->done) {
        struct timespec ts;
        double left = end - now();
        if (left <= 0)
            break;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)left;
        ts.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&cv, &mu, &ts);
    }
    pthread_mutex_unlock(&mu);
    return w->done;
}

/* wait (mu held) until cond or timeout seconds pass; 0 on timeout */
static int cond_wait_for(double timeout)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)timeout;
    ts.tv_nsec += (long)((timeout - (double)(time_t)timeout) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_cond_timedwait(&cv, &mu, &ts) != ETIMEDOUT;
}

static MQTTAsync new_client(const char *uri, const char *id, const char *label)
{
    MQTTAsync h;
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    int rc;
    co.MQTTVersion = MQTTVERSION_5;
    /* paho counts every request not sent yet against this, connected or
     * not (the Lua binding sets the same) */
    co.maxBufferedMessages = INT_MAX / 2;
    rc = MQTTAsync_createWithOptions(&h, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
    if (rc != MQTTASYNC_SUCCESS)
        die("MQTTAsync_create", rc);
    rc = MQTTAsync_setCallbacks(h, (void *)label, on_lost, on_message, NULL);
    if (rc != MQTTASYNC_SUCCESS)
        die("MQTTAsync_setCallbacks", rc);
    return h;
}

static void start_connect(MQTTAsync h, waiter *w)
{
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer5;
    int rc;
    memset(w, 0, sizeof *w);
    o.keepAliveInterval = 60;
    o.cleanstart = 1;
    o.connectTimeout = 10;
    o.onSuccess5 = on_connect_ok;
    o.onFailure5 = on_fail;
    o.context = w;
    rc = MQTTAsync_connect(h, &o);
    if (rc != MQTTASYNC_SUCCESS)
        die("MQTTAsync_connect", rc);
}

static void finish_connect(waiter *w)
{
    if (!wait_done(w, 15) || !w->ok) {
        fprintf(stderr, "raw: connect failed (rc %d, reason 0x%02x)\n", w->rc, (unsigned)w->reason);
        exit(2);
    }
}

static void subscribe(MQTTAsync h, const char *topic, int qos)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    waiter w;
    int rc;
    memset(&w, 0, sizeof w);
    ro.onSuccess5 = on_ok;
    ro.onFailure5 = on_fail;
    ro.context = &w;
    rc = MQTTAsync_subscribe(h, topic, qos, &ro);
    if (rc != MQTTASYNC_SUCCESS)
        die("MQTTAsync_subscribe", rc);
    if (!wait_done(&w, 10) || !w.ok) {
        fprintf(stderr, "raw: subscribe failed (rc %d, reason 0x%02x)\n", w.rc, (unsigned)w.reason);
        exit(2);
    }
}

static void disconnect(MQTTAsync *h)
{
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer5;
    waiter w;
    memset(&w, 0, sizeof w);
    d.timeout = 0;
    d.onSuccess5 = on_ok;
    d.onFailure5 = on_fail;
    d.context = &w;
    if (MQTTAsync_disconnect(*h, &d) == MQTTASYNC_SUCCESS)
        wait_done(&w, 2);
    MQTTAsync_destroy(h);
}

/* one publish; for QoS 1/2 first wait for room in the broker's window */
static void publish(MQTTAsync h, const char *topic, char *payload, int size, int qos, int recv_max)
{
    MQTTAsync_message m = MQTTAsync_message_initializer;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    int rc;
    int paced = qos > 0 || qos0_window != 0;
    if (paced) {
        int limit = qos > 0 || qos0_window < 0 ? recv_max : qos0_window;
        pthread_mutex_lock(&mu);
        while (inflight >= limit)
            if (!cond_wait_for(10) && inflight >= limit) {
                fprintf(stderr, "raw: no PUBACK/PUBCOMP within 10 s\n");
                exit(2);
            }
        inflight++;
        pthread_mutex_unlock(&mu);
    }
    m.payload = payload;
    m.payloadlen = size;
    m.qos = qos;
    ro.onSuccess5 = on_pub_ok;
    ro.onFailure5 = on_pub_fail;
    ro.context = paced ? (void *)1 : NULL;
    rc = MQTTAsync_sendMessage(h, topic, &m, &ro);
    if (rc != MQTTASYNC_SUCCESS)
        die("MQTTAsync_sendMessage", rc);
}

static char *make_payload(int size)
{
    char *p = malloc((size_t)size + 1);
    for (int i = 0; i < size; i++)
        p[i] = (char)('a' + i % 26);
    p[size] = 0;
    return p;
}

/* a publisher and a subscriber on TOPIC at QOS, both connected */
static void setup_pair(const char *uri, const char *tag, int qos, MQTTAsync *pub, MQTTAsync *sub,
                       char *topic, size_t topiclen, int *recv_max)
{
    char id[64];
    waiter wp, ws;
    snprintf(topic, topiclen, "bench/raw/%ld/%s", (long)getpid(), tag);
    snprintf(id, sizeof id, "raw-sub-%ld", (long)getpid());
    *sub = new_client(uri, id, "sub");
    snprintf(id, sizeof id, "raw-pub-%ld", (long)getpid());
    *pub = new_client(uri, id, "pub");
    /* both connects before waiting: paho's receive thread picks up both
     * sockets at once, so the second does not pay its ~1 s poll (see the
     * connect mode, which measures that on purpose) */
    start_connect(*sub, &ws);
    start_connect(*pub, &wp);
    finish_connect(&ws);
    finish_connect(&wp);
    *recv_max = wp.recv_max;
    subscribe(*sub, topic, qos);
}

static int throughput(const char *uri, long n, int size, int qos)
{
    MQTTAsync pub, sub;
    char topic[128];
    char *payload = make_payload(size);
    int recv_max;
    double t0, t1, c0, c1, b0, b1, last_progress;
    long got, prev = -1;

    setup_pair(uri, "tput", qos, &pub, &sub, topic, sizeof topic, &recv_max);
    expect_size = size;

    t0 = now();
    c0 = cpu_self();
    b0 = cpu_broker();
    for (long i = 0; i < n; i++)
        publish(pub, topic, payload, size, qos, recv_max);
    /* wait for the arrivals; give up after 5 s without progress (QoS 0
     * messages may be dropped by a broker whose queue is full) */
    last_progress = now();
    pthread_mutex_lock(&mu);
    while (received < n) {
        if (received != prev) {
            prev = received;
            last_progress = now();
        } else if (now() - last_progress > 5) {
            break;
        }
        cond_wait_for(0.5);
    }
    got = received;
    t1 = got > 0 ? last_arrival : now();
    pthread_mutex_unlock(&mu);
    c1 = cpu_self();
    b1 = cpu_broker();

    printf("RESULT impl=c mode=throughput qos=%d size=%d n=%ld received=%ld bad=%ld elapsed_s=%.4f "
           "msgs_per_s=%.0f cpu_s=%.3f broker_cpu_s=%.3f recv_max=%d\n",
           qos, size, n, got, bad_size, t1 - t0, (double)got / (t1 - t0), c1 - c0,
           b0 >= 0 ? b1 - b0 : -1, recv_max);
    fflush(stdout);
    /* let the last acknowledgements come in before disconnecting */
    pthread_mutex_lock(&mu);
    while (inflight > 0 && cond_wait_for(2))
        ;
    pthread_mutex_unlock(&mu);
    disconnect(&pub);
    disconnect(&sub);
    free(payload);
    return got == n ? 0 : 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, int n, double p)
{
    int i = (int)(p * (n - 1) + 0.5);
    return sorted[i];
}

static int latency(const char *uri, int m, int size, int qos)
{
    MQTTAsync pub, sub;
    char topic[128];
    char *payload = make_payload(size);
    int recv_max, warm = m / 10 < 50 ? m / 10 : 50;
    double *lat = malloc(sizeof(double) * (size_t)m);
    double sum = 0, c0, c1, b0, b1, t_start;

    setup_pair(uri, "lat", qos, &pub, &sub, topic, sizeof topic, &recv_max);
    expect_size = size;
    c0 = cpu_self();
    b0 = cpu_broker();
    t_start = now();
    for (int i = -warm; i < m; i++) {
        long target;
        double t0 = now(), t1;
        pthread_mutex_lock(&mu);
        target = received + 1;
        pthread_mutex_unlock(&mu);
        publish(pub, topic, payload, size, qos, recv_max);
        pthread_mutex_lock(&mu);
        while (received < target)
            if (!cond_wait_for(5) && received < target) {
                fprintf(stderr, "raw: message %d did not arrive within 5 s\n", i);
                exit(2);
            }
        t1 = now();
        pthread_mutex_unlock(&mu);
        if (i >= 0) {
            lat[i] = (t1 - t0) * 1e6;
            sum += lat[i];
        }
    }
    c1 = cpu_self();
    b1 = cpu_broker();
    qsort(lat, (size_t)m, sizeof *lat, cmp_double);
    printf("RESULT impl=c mode=latency qos=%d size=%d n=%d p50_us=%.1f p99_us=%.1f mean_us=%.1f "
           "elapsed_s=%.4f cpu_s=%.3f broker_cpu_s=%.3f\n",
           qos, size, m, pct(lat, m, 0.5), pct(lat, m, 0.99), sum / m, now() - t_start, c1 - c0,
           b0 >= 0 ? b1 - b0 : -1);
    fflush(stdout);
    pthread_mutex_lock(&mu);
    while (inflight > 0 && cond_wait_for(2))
        ;
    pthread_mutex_unlock(&mu);
    disconnect(&pub);
    disconnect(&sub);
    free(payload);
    free(lat);
    return 0;
}

static int connect_times(const char *uri, int k)
{
    MQTTAsync *h = calloc((size_t)k, sizeof *h);
    double *t = calloc((size_t)k, sizeof *t);
    double *rest = calloc((size_t)k, sizeof *rest);
    waiter w;
    for (int i = 0; i < k; i++) {
        char id[64];
        double t0 = now();
        snprintf(id, sizeof id, "raw-conn-%ld-%d", (long)getpid(), i);
        h[i] = new_client(uri, id, "connect");
        start_connect(h[i], &w);
        finish_connect(&w);
        t[i] = (now() - t0) * 1e3;
    }
    for (int i = 1; i < k; i++)
        rest[i - 1] = t[i];
    qsort(rest, (size_t)(k - 1), sizeof *rest, cmp_double);
    printf("RESULT impl=c mode=connect n=%d first_ms=%.2f next_p50_ms=%.2f next_max_ms=%.2f\n", k, t[0],
           pct(rest, k - 1, 0.5), rest[k - 2]);
    fflush(stdout);
    for (int i = k - 1; i >= 0; i--)
        disconnect(&h[i]);
    free(h);
    free(t);
    free(rest);
    return 0;
}

/* the cost of MQTTAsync_sendMessage alone, for bench/costs.lua's
 * "publish call" (a topic nobody subscribes to, no pacing, like costs.lua) */
static int calls(const char *uri, long n, int qos)
{
    MQTTAsync h;
    waiter w;
    char id[64];
    char *payload = make_payload(100);
    double t0, t1;
    snprintf(id, sizeof id, "raw-calls-%ld", (long)getpid());
    h = new_client(uri, id, "calls");
    start_connect(h, &w);
    finish_connect(&w);
    t0 = now();
    for (long i = 0; i < n; i++) {
        MQTTAsync_message m = MQTTAsync_message_initializer;
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        int rc;
        m.payload = payload;
        m.payloadlen = 100;
        m.qos = qos;
        ro.onSuccess5 = on_pub_ok;
        ro.onFailure5 = on_pub_fail;
        rc = MQTTAsync_sendMessage(h, "bench/raw/calls/nobody", &m, &ro);
        if (rc != MQTTASYNC_SUCCESS)
            die("MQTTAsync_sendMessage", rc);
    }
    t1 = now();
    printf("RESULT impl=c mode=calls qos=%d n=%ld us_per_call=%.2f\n", qos, n, (t1 - t0) / (double)n * 1e6);
    fflush(stdout);
    pthread_mutex_lock(&mu);
    while (pub_done < n && cond_wait_for(10))
        ;
    pthread_mutex_unlock(&mu);
    disconnect(&h);
    free(payload);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: raw throughput URI N SIZE QOS\n"
                    "       raw latency URI M SIZE QOS\n"
                    "       raw connect URI K\n"
                    "       raw calls URI N QOS\n"
                    "       raw version\n");
    exit(1);
}

int main(int argc, char **argv)
{
    if (getenv("RAW_QOS0_WINDOW"))
        qos0_window = atoi(getenv("RAW_QOS0_WINDOW"));
    if (argc >= 2 && strcmp(argv[1], "version") == 0) {
        MQTTAsync_nameValue *v = MQTTAsync_getVersionInfo();
        for (; v && v->name; v++)
            printf("%s: %s\n", v->name, v->value);
        return 0;
    }
    if (argc == 6 && strcmp(argv[1], "throughput") == 0)
        return throughput(argv[2], atol(argv[3]), atoi(argv[4]), atoi(argv[5]));
    if (argc == 6 && strcmp(argv[1], "latency") == 0)
        return latency(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    if (argc == 5 && strcmp(argv[1], "calls") == 0)
        return calls(argv[2], atol(argv[3]), atoi(argv[4]));
    if (argc == 4 && strcmp(argv[1], "connect") == 0 && atoi(argv[3]) >= 2)
        return connect_times(argv[2], atoi(argv[3]));
    usage();
    return 1;
}
