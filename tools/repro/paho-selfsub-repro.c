/* tools/repro/paho-selfsub-repro.c - raw paho.mqtt.c MQTTAsync (no binding):
 * a client that receives its own QoS 1 publishes (it is subscribed to the
 * topic it publishes to) is capped at a few hundred msg/s.
 *
 *   gcc -std=c99 -O2 -o /tmp/selfsub tools/repro/paho-selfsub-repro.c \
 *       -lpaho-mqtt3as -lpthread
 *   mosquitto -p PORT &                 (127.0.0.1, default configuration)
 *   /tmp/selfsub PORT [N [WINDOW]]      N messages (6000), WINDOW QoS 1
 *                                       publishes not yet acknowledged (20,
 *                                       mosquitto's Receive Maximum; 0 = send
 *                                       all at once)
 *
 * One client connects, optionally subscribes at QoS 1, and publishes N QoS 1
 * messages of 100 B to one topic, keeping at most WINDOW unacknowledged (the
 * way the Lua binding paces QoS 1). Time runs from the first publish to the
 * last PUBACK and, when the client should receive its own messages, the last
 * arrival. Cases, on MQTT 5 and 3.1.1:
 *   nosub     no subscription
 *   selfsub   subscribed to the topic it publishes to (the slow case)
 *   nolocal   (MQTT 5) the same subscription with No Local = 1: the broker
 *             does not send the client its own messages
 *   othersub  a second client subscribes; the publisher receives nothing
 *   selfsub+nodelay  selfsub with TCP_NODELAY set on paho's socket, by
 *             interposing connect() in this executable (a diagnosis, not a
 *             workaround a binding can use: paho has no socket option or
 *             socket callback, and 1.3.12 never sets TCP_NODELAY)
 *
 * Measured cause (paho 1.3.12, mosquitto 2.0.11, loopback): Nagle's algorithm
 * on paho's socket. With a subscription the client writes two small packets
 * per message from two threads - PUBLISH from the send thread, PUBACK for its
 * own message from the receive thread (MQTTProtocolClient.c:350) - and the
 * second small write waits for the broker's (delayed, ~40 ms) TCP ACK. Exit
 * status 0 when every case delivered everything.
 */
#define _GNU_SOURCE
#include <MQTTAsync.h>

#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CASE_TIMEOUT 40.0 /* seconds, per case */

static int g_nodelay;     /* set TCP_NODELAY in connect() below */

/* paho's connect() call resolves to this one (the executable comes first in
 * the lookup order); only used for the "+nodelay" diagnosis */
int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (!real)
        real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    if (g_nodelay && sa && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return real(fd, sa, len);
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int connected, subscribed, failed;
static long acks, arrived;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void bump(int *flag, long *count)
{
    pthread_mutex_lock(&mu);
    if (flag)
        (*flag)++;
    if (count)
        (*count)++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* waits (bounded) until pred() holds; called with mu held */
static int wait_until(int (*pred)(void *), void *arg, double deadline)
{
    while (!pred(arg) && !failed) {
        double left = deadline - now();
        struct timespec ts;
        if (left <= 0)
            return 0;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (left > 0.05)
            left = 0.05;
        ts.tv_nsec += (long)(left * 1e9);
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&cv, &mu, &ts);
    }
    return pred(arg);
}

static void on_conn(void *c, MQTTAsync_successData *r) { (void)c; (void)r; bump(&connected, NULL); }
static void on_conn5(void *c, MQTTAsync_successData5 *r) { (void)c; (void)r; bump(&connected, NULL); }
static void on_sub(void *c, MQTTAsync_successData *r) { (void)c; (void)r; bump(&subscribed, NULL); }
static void on_sub5(void *c, MQTTAsync_successData5 *r) { (void)c; (void)r; bump(&subscribed, NULL); }
static void on_pub(void *c, MQTTAsync_successData *r) { (void)c; (void)r; bump(NULL, &acks); }
static void on_pub5(void *c, MQTTAsync_successData5 *r) { (void)c; (void)r; bump(NULL, &acks); }
static void on_fail(void *c, MQTTAsync_failureData *r) { (void)c; (void)r; bump(&failed, NULL); }
static void on_fail5(void *c, MQTTAsync_failureData5 *r) { (void)c; (void)r; bump(&failed, NULL); }

static int on_msg(void *c, char *topic, int len, MQTTAsync_message *m)
{
    (void)c; (void)len;
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    bump(NULL, &arrived);
    return 1;
}

static int pred_int(void *p) { return *(int *)p > 0; }

static MQTTAsync make_client(const char *uri, const char *id, int v5, int set_cb)
{
    MQTTAsync c;
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
    MQTTAsync_connectOptions o5 = MQTTAsync_connectOptions_initializer5;
    MQTTAsync_connectOptions *opts = v5 ? &o5 : &o;
    int rc;

    co.MQTTVersion = v5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
    if ((rc = MQTTAsync_createWithOptions(&c, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL, &co)) != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "create: %d\n", rc);
        exit(2);
    }
    if (set_cb)
        MQTTAsync_setCallbacks(c, NULL, NULL, on_msg, NULL);
    if (v5) {
        opts->cleanstart = 1;
        opts->onSuccess5 = on_conn5;
        opts->onFailure5 = on_fail5;
    } else {
        opts->cleansession = 1;
        opts->onSuccess = on_conn;
        opts->onFailure = on_fail;
    }
    opts->keepAliveInterval = 60;
    pthread_mutex_lock(&mu);
    connected = failed = 0;
    pthread_mutex_unlock(&mu);
    if ((rc = MQTTAsync_connect(c, opts)) != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "connect: %d\n", rc);
        exit(2);
    }
    pthread_mutex_lock(&mu);
    if (!wait_until(pred_int, &connected, now() + 5)) {
        pthread_mutex_unlock(&mu);
        fprintf(stderr, "no CONNACK from %s\n", uri);
        exit(2);
    }
    pthread_mutex_unlock(&mu);
    return c;
}

static void subscribe(MQTTAsync c, const char *topic, int v5, int nolocal)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    int rc;
    if (v5) {
        ro.onSuccess5 = on_sub5;
        ro.onFailure5 = on_fail5;
        ro.subscribeOptions.noLocal = (unsigned char)nolocal;
    } else {
        ro.onSuccess = on_sub;
        ro.onFailure = on_fail;
    }
    pthread_mutex_lock(&mu);
    subscribed = 0;
    pthread_mutex_unlock(&mu);
    if ((rc = MQTTAsync_subscribe(c, topic, 1, &ro)) != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "subscribe: %d\n", rc);
        exit(2);
    }
    pthread_mutex_lock(&mu);
    if (!wait_until(pred_int, &subscribed, now() + 5)) {
        pthread_mutex_unlock(&mu);
        fprintf(stderr, "no SUBACK\n");
        exit(2);
    }
    pthread_mutex_unlock(&mu);
}

static void close_client(MQTTAsync *c)
{
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
    d.timeout = 1000;
    MQTTAsync_disconnect(*c, &d);
    for (int i = 0; i < 100 && MQTTAsync_isConnected(*c); i++)
        usleep(10000);
    MQTTAsync_destroy(c);
}

enum { NOSUB, SELFSUB, NOLOCAL, OTHERSUB };
static const char *names[] = {"nosub", "selfsub", "nolocal", "othersub"};

/* returns 1 when everything was acknowledged and arrived */
static int run(int port, int v5, int mode, int nodelay, long n, long window)
{
    char uri[64], topic[64], id[64];
    char payload[100];
    MQTTAsync pub, sub = NULL;
    long want_arrivals;
    double t0, t1, deadline;
    int ok = 1;
    static int seq;

    seq++;
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", port);
    snprintf(topic, sizeof topic, "selfsub/%d/%d", (int)getpid(), seq);
    memset(payload, 'x', sizeof payload);
    g_nodelay = nodelay;

    snprintf(id, sizeof id, "selfsub-pub-%d-%d", (int)getpid(), seq);
    pub = make_client(uri, id, v5, mode == SELFSUB || mode == NOLOCAL);
    if (mode == SELFSUB || mode == NOLOCAL)
        subscribe(pub, topic, v5, mode == NOLOCAL);
    if (mode == OTHERSUB) {
        snprintf(id, sizeof id, "selfsub-sub-%d-%d", (int)getpid(), seq);
        sub = make_client(uri, id, v5, 1);
        subscribe(sub, topic, v5, 0);
    }
    want_arrivals = (mode == NOSUB || mode == NOLOCAL) ? 0 : n;

    pthread_mutex_lock(&mu);
    acks = arrived = 0;
    failed = 0;
    pthread_mutex_unlock(&mu);

    t0 = now();
    deadline = t0 + CASE_TIMEOUT;
    for (long i = 0; i < n && ok; i++) {
        MQTTAsync_message m = MQTTAsync_message_initializer;
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        int rc;
        if (window > 0) {
            pthread_mutex_lock(&mu);
            while (ok && i - acks >= window) {
                struct timespec ts;
                if (now() > deadline || failed) { ok = 0; break; }
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 20000000L;
                ts.tv_sec += ts.tv_nsec / 1000000000L;
                ts.tv_nsec %= 1000000000L;
                pthread_cond_timedwait(&cv, &mu, &ts);
            }
            pthread_mutex_unlock(&mu);
            if (!ok)
                break;
        }
        m.payload = payload;
        m.payloadlen = sizeof payload;
        m.qos = 1;
        if (v5)
            ro.onSuccess5 = on_pub5, ro.onFailure5 = on_fail5;
        else
            ro.onSuccess = on_pub, ro.onFailure = on_fail;
        if ((rc = MQTTAsync_sendMessage(pub, topic, &m, &ro)) != MQTTASYNC_SUCCESS) {
            fprintf(stderr, "sendMessage %ld: %d\n", i, rc);
            ok = 0;
        }
    }
    pthread_mutex_lock(&mu);
    while (ok && (acks < n || arrived < want_arrivals)) {
        struct timespec ts;
        if (now() > deadline || failed) { ok = 0; break; }
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&cv, &mu, &ts);
    }
    t1 = now();
    printf("MQTT %-5s %-16s%s window=%-3ld n=%ld acked=%ld arrived=%ld  %7.3f s  %8.0f msg/s%s\n",
           v5 ? "5" : "3.1.1", names[mode], nodelay ? "+nodelay" : "        ", window, n,
           acks, arrived, t1 - t0, acks / (t1 - t0), ok ? "" : "  INCOMPLETE");
    fflush(stdout);
    pthread_mutex_unlock(&mu);

    close_client(&pub);
    if (sub)
        close_client(&sub);
    return ok;
}

int main(int argc, char **argv)
{
    int port, all = 1;
    long n = 6000, window = 20;

    if (argc < 2 || (port = atoi(argv[1])) <= 0) {
        fprintf(stderr, "usage: %s PORT [N [WINDOW]]   (mosquitto on 127.0.0.1:PORT)\n", argv[0]);
        return 2;
    }
    if (argc > 2)
        n = atol(argv[2]);
    if (argc > 3)
        window = atol(argv[3]);
    if (n < 1 || n > 1000000 || window < 0) {
        fprintf(stderr, "N must be 1..1000000, WINDOW >= 0\n");
        return 2;
    }
    for (int v5 = 1; v5 >= 0; v5--) {
        all &= run(port, v5, NOSUB, 0, n, window);
        all &= run(port, v5, SELFSUB, 0, n, window);
        if (v5)
            all &= run(port, v5, NOLOCAL, 0, n, window);
        all &= run(port, v5, OTHERSUB, 0, n, window);
        all &= run(port, v5, SELFSUB, 1, n, window);
    }
    return all ? 0 : 1;
}
