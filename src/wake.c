/*
 * wake.c - a paho workaround with its evidence: the anchor handle, which
 * keeps paho's threads alive, and wakes paho's receive thread while a
 * connect waits.
 *
 * Evidence (paho.mqtt.c 1.3.12; tools/repro/paho-lone-connect-repro.c):
 * after its first round, MQTTAsync_receiveThread polls its sockets' read
 * set with a 1000 ms timeout (MQTTAsyncUtils.c:2023, Socket.c:545), asking
 * POLLIN only of a socket whose TCP connect is in progress. The broker
 * sends nothing before CONNECT, so the poll sleeps its whole second before
 * isReady (Socket.c:348) sees the completed connect and paho writes
 * CONNECT: a connect (and every reconnect) of a client that is alone in its
 * process took 1.0-1.1 s on loopback. Any socket of paho's that becomes
 * readable ends that poll early, and the isReady scan after it finds the
 * connected socket.
 *
 * So the process's anchor handle (one, never destroyed: when paho's last
 * handle goes, paho stops its threads, which takes up to 1.1 s, and would
 * on every close of a program's only client) is connected to a peer of
 * ours on loopback: a listening socket on 127.0.0.1, port chosen by the
 * kernel, and one thread, which accepts the anchor's connection, checks
 * its CONNECT, answers CONNACK, and, while a connect of the process is
 * pending (pmq_wake_begin .. pmq_wake_end), writes a PINGRESP (2 bytes,
 * which paho reads and ignores: MQTTProtocol_handlePingresps) to it every
 * 10 ms, at most for WAKE_MAX_S after the last connect began. The anchor
 * has no keepalive, so it sends nothing after its CONNECT. If the peer
 * cannot be set up, the anchor stays idle and connects pay paho's wait.
 *
 * What would let it go: paho polling the read set with timeout 0 when the
 * write poll found work, or asking POLLOUT of connect-pending sockets in
 * the read set (Socket.c:300).
 *
 * A leaf: no Lua header; called by client.c, requests.c and, on paho's
 * threads, by events.c (pmq_wake_end).
 */
#include "pmq.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WAKE_ID "paho.mqtt.lua.wake"
#define WAKE_EVERY_NS 10000000L /* 10 ms between PINGRESPs */
#define WAKE_MAX_S 30.0         /* a connect still pending then pays paho's wait */

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int pending;        /* connects begun and not ended (mu) */
static double until;       /* wake no later than this (mu) */
static int up;             /* the anchor is connected to the peer (atomic) */
static long wakes;         /* PINGRESPs written (atomic) */
static MQTTAsync anchor;

/* whether needle occurs in the n bytes at hay */
static int contains(const unsigned char *hay, int n, const char *needle)
{
    int k = (int)strlen(needle);
    for (int i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, (size_t)k) == 0)
            return 1;
    return 0;
}

/* reads one packet's bytes (fixed header, remaining length, body) into buf;
 * returns its length, or -1 (closed, too long, or nothing within 2 s) */
static int read_packet(int fd, unsigned char *buf, int cap)
{
    int n = 0, need = 2;
    for (int rounds = 0; n < need && rounds < 64; rounds++) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t k;
        if (poll(&p, 1, 2000) <= 0)
            return -1;
        k = recv(fd, buf + n, (size_t)(cap - n), 0);
        if (k <= 0)
            return -1;
        n += (int)k;
        /* the remaining length: up to 4 bytes, 7 bits each */
        need = 0;
        for (int i = 1, mult = 1, len = 0; i < n && i <= 4; i++, mult *= 128) {
            len += (buf[i] & 127) * mult;
            if (!(buf[i] & 128)) {
                need = i + 1 + len;
                break;
            }
        }
        if (need == 0)
            need = n + 1;
        if (need > cap)
            return -1;
    }
    return n >= need ? n : -1;
}

static void *peer(void *arg)
{
    int lfd = (int)(intptr_t)arg, fd = -1;
    static const unsigned char connack[4] = {0x20, 0x02, 0x00, 0x00};
    static const unsigned char pingresp[2] = {0xd0, 0x00};
    unsigned char buf[256];
    /* the anchor's connection: a CONNECT with our client id (a stranger
     * that connected to the port first is closed) */
    for (int tries = 0; tries < 4 && fd < 0; tries++) {
        struct pollfd p = {lfd, POLLIN, 0};
        int n;
        if (poll(&p, 1, 5000) <= 0)
            break;
        fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            continue;
        (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
        n = read_packet(fd, buf, (int)sizeof buf);
        if (n < 0 || (buf[0] & 0xf0) != 0x10 || !contains(buf, n, WAKE_ID)) {
            close(fd);
            fd = -1;
        }
    }
    close(lfd);
    if (fd < 0 || send(fd, connack, sizeof connack, MSG_NOSIGNAL) != (ssize_t)sizeof connack) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    __atomic_store_n(&up, 1, __ATOMIC_RELEASE);
    pthread_mutex_lock(&mu);
    for (;;) {
        struct timespec ts;
        ssize_t sent;
        while (pending == 0 || pmq_now() > until)
            pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
        /* never blocks: paho reads them, and while its receive thread
         * waits (the event queue's backpressure) a full buffer just skips */
        sent = send(fd, pingresp, sizeof pingresp, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            break;
        if (sent > 0)
            __atomic_add_fetch(&wakes, 1, __ATOMIC_RELAXED);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += WAKE_EVERY_NS;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&mu);
        while (pending > 0 && pthread_cond_timedwait(&cv, &mu, &ts) == 0)
            ; /* a begin or an end: wait out the 10 ms all the same */
    }
    __atomic_store_n(&up, 0, __ATOMIC_RELEASE);
    close(fd);
    return NULL;
}

static void start(void)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    pthread_condattr_t ca;
    pthread_attr_t ta;
    pthread_t t;
    char uri[64];
    int lfd, one = 1;
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;

    /* the condition variable's timed wait counts on the monotonic clock */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_destroy(&cv);
    pthread_cond_init(&cv, &ca);
    pthread_condattr_destroy(&ca);

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 4) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) != 0) {
        if (lfd >= 0)
            close(lfd);
        /* no peer: an idle anchor still keeps paho's threads */
        MQTTAsync_create(&anchor, "tcp://127.0.0.1:1", WAKE_ID, MQTTCLIENT_PERSISTENCE_NONE, NULL);
        return;
    }
    (void)setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", (int)ntohs(a.sin_port));
    if (MQTTAsync_create(&anchor, uri, WAKE_ID, MQTTCLIENT_PERSISTENCE_NONE, NULL) != MQTTASYNC_SUCCESS) {
        close(lfd);
        return;
    }
    pthread_attr_init(&ta);
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &ta, peer, (void *)(intptr_t)lfd) != 0) {
        pthread_attr_destroy(&ta);
        close(lfd);
        return;
    }
    pthread_attr_destroy(&ta);
    o.keepAliveInterval = 0; /* it sends nothing after CONNECT */
    o.cleansession = 1;
    o.connectTimeout = 5;
    o.MQTTVersion = MQTTVERSION_3_1_1;
    (void)MQTTAsync_connect(anchor, &o);
}

void pmq_keep_paho_threads(void)
{
    pthread_once(&once, start);
}

int pmq_wake_up(long *n)
{
    if (n)
        *n = __atomic_load_n(&wakes, __ATOMIC_RELAXED);
    return __atomic_load_n(&up, __ATOMIC_ACQUIRE);
}

void pmq_wake_begin(pmq_ctx *c)
{
    if (__atomic_exchange_n(&c->waking, 1, __ATOMIC_ACQ_REL))
        return; /* this client's earlier connect still counts */
    pthread_mutex_lock(&mu);
    pending++;
    until = pmq_now() + WAKE_MAX_S;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

void pmq_wake_end(pmq_ctx *c)
{
    if (!__atomic_exchange_n(&c->waking, 0, __ATOMIC_ACQ_REL))
        return;
    pthread_mutex_lock(&mu);
    pending--;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}
