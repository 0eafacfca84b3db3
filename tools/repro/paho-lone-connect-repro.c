/* tools/repro/paho-lone-connect-repro.c - raw paho.mqtt.c MQTTAsync (no binding):
 * a client alone in its process takes about 1.1 s to connect to a broker on
 * loopback, and each reconnect about 1 s more.
 *
 *   gcc -std=c99 -O2 -o /tmp/lone tools/repro/paho-lone-connect-repro.c \
 *       -lpaho-mqtt3as -lpthread
 *   mosquitto -p PORT &                 (127.0.0.1, default configuration)
 *   /tmp/lone PORT [K [same]]           K connects (5), each through a new
 *                                       handle, disconnected and destroyed
 *                                       before the next; with "same", all
 *                                       through one handle (a reconnect)
 *
 * Prints each connect's time (MQTTAsync_connect to onSuccess) and the median.
 *
 * Measured (paho 1.3.12, Debian's build and the source build alike,
 * mosquitto 2.0.11, loopback): a new handle per connect takes 0.011 s (the
 * first 0.111 s: the receive thread's 100 ms idle sleep); connects again
 * through the same handle after a disconnect ("same") take 1.0-1.1 s each,
 * which is what a lone client's reconnect (and the binding's Clean Start
 * take-over, clean_start = "first") pays.
 *
 * Cause, seen with strace -f -tt (paho's own trace is written late and
 * misleads): connect() returns EINPROGRESS; the receive thread's next round
 * of Socket_getReadySocket (src/Socket.c, poll variant, lines 537-546) polls
 * the write set with timeout 0, which already shows the socket writable (the
 * TCP connect is complete), and then polls the read set, which asks POLLIN
 * only (Socket.c:300), with the full timeout: 1000 ms after the thread's
 * first round (MQTTAsyncUtils.c:2023). The broker sends nothing before
 * CONNECT, so that poll sleeps the whole second; only then does isReady
 * (Socket.c:357) see the completed connect and MQTTAsync_connecting write
 * CONNECT. A new handle is fast because destroying a process's last handle
 * stops paho's threads, and new ones start with a 10 ms first timeout; but
 * that MQTTAsync_destroy blocks its caller 0.1-0.2 s (waiting for the
 * threads), so connecting through a fresh handle would move most of the
 * stall onto the program's thread (an nginx worker, a game frame): the
 * binding does not do it. A
 * signal does not help (poll's EINTR leaves before the isReady scan). With
 * another connection whose socket gets traffic, the poll returns early (the
 * binding's UNSUBSCRIBE wake uses that); a lone client has no such socket
 * and paho's API offers no wake. What would fix it in paho: poll the read
 * set with timeout 0 when the write poll found work (rc1 > 0), or ask
 * POLLOUT of connect-pending sockets in the read set. Exit status 0 when
 * every connect succeeded.
 */
#include <MQTTAsync.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int done, ok;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void finish(int success)
{
    pthread_mutex_lock(&mu);
    done = 1;
    ok = success;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

static void on_ok(void *ctx, MQTTAsync_successData *r) { (void)ctx; (void)r; finish(1); }
static void on_fail(void *ctx, MQTTAsync_failureData *r) { (void)ctx; (void)r; finish(0); }

static int wait_done(double limit)
{
    struct timespec ts;
    int r;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)limit;
    pthread_mutex_lock(&mu);
    while (!done)
        if (pthread_cond_timedwait(&cv, &mu, &ts) != 0)
            break;
    r = done && ok;
    done = 0;
    pthread_mutex_unlock(&mu);
    return r;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    char uri[64];
    int k = argc > 2 ? atoi(argv[2]) : 5, failed = 0;
    int same = argc > 3 && strcmp(argv[3], "same") == 0;
    MQTTAsync h = NULL;
    double t[64];
    if (argc < 2 || k < 1 || k > 64) {
        fprintf(stderr, "usage: %s PORT [K (1..64)]\n", argv[0]);
        return 2;
    }
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%s", argv[1]);
    for (int i = 0; i < k; i++) {
        MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
        MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
        char id[32];
        double t0;
        snprintf(id, sizeof id, "lone-%d", same ? 0 : i);
        if (!h && MQTTAsync_create(&h, uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL) != MQTTASYNC_SUCCESS)
            return 1;
        o.onSuccess = on_ok;
        o.onFailure = on_fail;
        o.keepAliveInterval = 20;
        pthread_mutex_lock(&mu);
        done = 0; /* nothing left over from the last round */
        pthread_mutex_unlock(&mu);
        t0 = now();
        if (MQTTAsync_connect(h, &o) != MQTTASYNC_SUCCESS || !wait_done(10)) {
            failed++;
            t[i] = -1;
        } else {
            t[i] = now() - t0;
        }
        printf("connect %d: %.3f s\n", i + 1, t[i]);
        MQTTAsync_disconnect(h, &d);
        for (int w = 0; w < 200 && MQTTAsync_isConnected(h); w++) {
            struct timespec ts = {0, 5000000};
            nanosleep(&ts, NULL);
        }
        if (!same)
            MQTTAsync_destroy(&h); /* sets h to NULL */
    }
    if (h)
        MQTTAsync_destroy(&h);
    qsort(t, (size_t)k, sizeof t[0], cmp);
    printf("median connect alone: %.3f s over %d connects, %d failed\n", t[k / 2], k, failed);
    return failed ? 1 : 0;
}
