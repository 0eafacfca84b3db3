/*
 * probe.c - why a TCP connection to host:port fails, found out on a thread
 * of its own, for the messages of connect failures.
 *
 * paho.mqtt.c 1.3.12 reports a refused port, an unknown host and an
 * unreachable network alike, as rc -1 ("TCP/TLS connect failure", or no
 * text at all for a host it cannot resolve: Socket_new in Socket.c logs the
 * getaddrinfo or connect errno at trace level and returns SOCKET_ERROR), so
 * after such a failure the binding tries the same host:port once itself.
 * getaddrinfo and connect may block, so the probe runs on a detached thread
 * of its own; like events.c, this file includes no Lua header, and the Lua
 * side (util.c) only reads the result.
 */
#define _GNU_SOURCE
#include "pmq.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

struct pmq_probe {
    pthread_mutex_t mu;
    int refs;   /* the thread's and the caller's */
    int state;  /* PMQ_PROBE_RUNNING, _TCP_OK, _FAILED */
    int timeout_ms;
    char port[8];
    char text[200];
    char host[]; /* NUL-terminated */
};

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void release(pmq_probe *p)
{
    int last;
    pthread_mutex_lock(&p->mu);
    last = --p->refs == 0;
    pthread_mutex_unlock(&p->mu);
    if (last) {
        pthread_mutex_destroy(&p->mu);
        free(p);
    }
}

/* one connect with a deadline: 0 when it connected, else an errno
 * (ETIMEDOUT when the deadline passed) */
static int try_connect(const struct addrinfo *ai, double deadline)
{
    int err = 0;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return errno;
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        err = errno;
    } else if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        err = errno;
        while (err == EINPROGRESS || err == EINTR) {
            struct pollfd pfd = { fd, POLLOUT, 0 };
            int left = (int)(deadline - mono_ms());
            int n;
            if (left <= 0) {
                err = ETIMEDOUT;
                break;
            }
            n = poll(&pfd, 1, left);
            if (n < 0) {
                err = errno == EINTR ? EINPROGRESS : errno;
            } else if (n == 0) {
                err = ETIMEDOUT;
            } else {
                socklen_t len = sizeof err;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                    err = errno;
            }
        }
    }
    close(fd);
    return err;
}

static const char *cause_of(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return "connection refused (nothing listens on that port, or a firewall rejects the connection)";
    case ETIMEDOUT:
        return NULL; /* said with the time waited */
    case ENETUNREACH:
        return "network unreachable (no route to that network)";
    case EHOSTUNREACH:
        return "host unreachable (no route to the host, or a firewall rejects the connection)";
    default:
        return strerror(err);
    }
}

static void *run(void *arg)
{
    pmq_probe *p = arg;
    struct addrinfo hints, *res = NULL, *ai;
    int rc, err = 0, state = PMQ_PROBE_FAILED;
    double deadline = mono_ms() + p->timeout_ms;
    char text[sizeof p->text];

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(p->host, p->port, &hints, &res);
    if (rc != 0) {
        snprintf(text, sizeof text, "host not found: cannot resolve '%s' (%s)", p->host,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    } else {
        /* the first address that connects wins; else the first address's error */
        for (ai = res; ai; ai = ai->ai_next) {
            int e = try_connect(ai, deadline);
            /* ECONNRESET: something listens, took the connection and reset
             * it at once; for what to say that is a TCP connect that works */
            if (e == 0 || e == ECONNRESET) {
                state = PMQ_PROBE_TCP_OK;
                break;
            }
            if (!err)
                err = e;
            if (mono_ms() >= deadline)
                break;
        }
        freeaddrinfo(res);
        if (state == PMQ_PROBE_TCP_OK)
            text[0] = 0;
        else if (err == ETIMEDOUT)
            snprintf(text, sizeof text,
                     "no answer within %g s (timed out: the host is down, or a firewall drops the packets)",
                     p->timeout_ms / 1000.0);
        else
            snprintf(text, sizeof text, "%s", cause_of(err));
    }
    pthread_mutex_lock(&p->mu);
    memcpy(p->text, text, sizeof text);
    p->state = state;
    pthread_mutex_unlock(&p->mu);
    release(p);
    return NULL;
}

pmq_probe *pmq_probe_start(const char *host, int port, int timeout_ms)
{
    size_t hlen = strlen(host);
    pthread_t t;
    pthread_attr_t attr;
    int rc;
    pmq_probe *p = calloc(1, sizeof *p + hlen + 1);
    if (!p)
        return NULL;
    memcpy(p->host, host, hlen + 1);
    snprintf(p->port, sizeof p->port, "%d", port);
    p->timeout_ms = timeout_ms;
    p->state = PMQ_PROBE_RUNNING;
    p->refs = 2;
    pthread_mutex_init(&p->mu, NULL);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&t, &attr, run, p);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    return p;
}

int pmq_probe_result(pmq_probe *p, char *text, size_t size)
{
    int state;
    pthread_mutex_lock(&p->mu);
    state = p->state;
    if (state != PMQ_PROBE_RUNNING && size > 0)
        snprintf(text, size, "%s", p->text);
    pthread_mutex_unlock(&p->mu);
    return state;
}

void pmq_probe_release(pmq_probe *p)
{
    release(p);
}
