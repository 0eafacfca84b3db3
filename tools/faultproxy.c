/*
 * faultproxy - a loopback TCP proxy that injects faults, for the specs.
 *
 *   faultproxy <target_port> <portfile> [max_seconds]
 *
 * Listens on 127.0.0.1 on a free port, writes that port to <portfile>
 * (through a temporary name and rename(), so a reader never sees a partial
 * file) and forwards every accepted connection to 127.0.0.1:<target_port>.
 * Commands, one per line on stdin, apply to all current and future
 * connections:
 *
 *   pass          forward normally
 *   stall         forward nothing in either direction, keep the sockets open
 *                 (a half-open link as the client sees it); data stays buffered
 *   delay <ms>    forward each chunk <ms> milliseconds after it arrived, in order
 *   reset         close every current connection with RST (SO_LINGER {1,0});
 *                 the mode goes back to pass for later connections
 *   halfclose     shutdown(SHUT_WR) towards the client on current connections;
 *                 what the broker sends afterwards is dropped
 *   refuse        close new connections at once (with RST)
 *   accept        accept new connections again
 *   quit          exit
 *
 * EOF on stdin or max_seconds (default 600) also makes it exit. It prints
 * nothing but errors, to stderr. One thread, poll(); memory per connection
 * is bounded (a direction stops reading past BUF_LIMIT bytes buffered).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 256
#define BUF_LIMIT (4L * 1024 * 1024)
#define READ_SIZE 16384
#define LINE_MAX_LEN 256

enum mode { MODE_PASS, MODE_STALL, MODE_DELAY };

struct chunk {
    struct chunk *next;
    long long at;   /* ms (monotonic) when it was read */
    size_t len, off;
    char data[];
};

struct dir {            /* one direction: read from `from`, written to `to` */
    struct chunk *head, *tail;
    long bytes;         /* buffered, not yet written */
    int eof;            /* `from` sent EOF */
    long long eof_at;   /* when */
    int shut;           /* `to` was shut down for writing (or must not be written) */
};

struct conn {
    int cfd, sfd;       /* client side, server side */
    int connecting;     /* sfd's connect() is in progress */
    int chup, shup;     /* POLLHUP/POLLERR seen while stalled: left out of poll */
    struct dir up;      /* client -> server */
    struct dir down;    /* server -> client */
};

static struct conn *conns[MAX_CONNS];
static int nconns;
static enum mode mode = MODE_PASS;
static long delay_ms;
static int refusing;
static struct sockaddr_in target;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void close_rst(int fd)
{
    struct linger lg;
    if (fd < 0)
        return;
    lg.l_onoff = 1;
    lg.l_linger = 0;
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static void dir_free(struct dir *d)
{
    struct chunk *c = d->head, *n;
    for (; c; c = n) {
        n = c->next;
        free(c);
    }
    d->head = d->tail = NULL;
    d->bytes = 0;
}

/* when the head of d (or its EOF) may go out; LLONG_MAX: nothing to send */
static long long dir_due(const struct dir *d)
{
    long long at;
    if (d->shut)
        return LLONG_MAX;
    if (d->head)
        at = d->head->at;
    else if (d->eof)
        at = d->eof_at;
    else
        return LLONG_MAX;
    return mode == MODE_DELAY ? at + delay_ms : at;
}

static void conn_remove(int i, int abortive)
{
    struct conn *c = conns[i];
    if (abortive) {
        close_rst(c->cfd);
        close_rst(c->sfd);
    } else {
        close(c->cfd);
        if (c->sfd >= 0)
            close(c->sfd);
    }
    dir_free(&c->up);
    dir_free(&c->down);
    free(c);
    conns[i] = conns[--nconns];
    conns[nconns] = NULL;
}

static void close_all(int abortive)
{
    while (nconns > 0)
        conn_remove(nconns - 1, abortive);
}

/* reads what `from` has into d; returns -1 on a socket error */
static int dir_read(int from, struct dir *d)
{
    char buf[READ_SIZE];
    while (d->bytes < BUF_LIMIT && !d->eof) {
        ssize_t n = recv(from, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        if (n == 0) {
            d->eof = 1;
            d->eof_at = now_ms();
            return 0;
        }
        if (d->shut)        /* nobody to give it to (halfclose): drop it */
            continue;
        {
            struct chunk *c = malloc(sizeof *c + (size_t)n);
            if (!c) {
                fprintf(stderr, "faultproxy: out of memory\n");
                return -1;
            }
            c->next = NULL;
            c->at = now_ms();
            c->len = (size_t)n;
            c->off = 0;
            memcpy(c->data, buf, (size_t)n);
            if (d->tail)
                d->tail->next = c;
            else
                d->head = c;
            d->tail = c;
            d->bytes += n;
        }
    }
    return 0;
}

/* writes the chunks of d that are due to `to`; -1 on a socket error */
static int dir_write(int to, struct dir *d, long long now)
{
    while (d->head && dir_due(d) <= now) {
        struct chunk *c = d->head;
        ssize_t n = send(to, c->data + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        c->off += (size_t)n;
        d->bytes -= n;
        if (c->off == c->len) {
            d->head = c->next;
            if (!d->head)
                d->tail = NULL;
            free(c);
        }
    }
    if (!d->head && d->eof && !d->shut && dir_due(d) <= now) {
        (void)shutdown(to, SHUT_WR);
        d->shut = 1;
    }
    return 0;
}

static void on_accept(int lfd)
{
    for (;;) {
        struct conn *c;
        int cfd = accept(lfd, NULL, NULL), sfd;
        if (cfd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                fprintf(stderr, "faultproxy: accept: %s\n", strerror(errno));
            return;
        }
        if (refusing || nconns >= MAX_CONNS) {
            if (!refusing)
                fprintf(stderr, "faultproxy: too many connections, closing one\n");
            close_rst(cfd);
            continue;
        }
        if (set_nonblock(cfd) < 0) {
            close(cfd);
            continue;
        }
        nodelay(cfd);
        sfd = socket(AF_INET, SOCK_STREAM, 0);
        if (sfd < 0 || set_nonblock(sfd) < 0) {
            fprintf(stderr, "faultproxy: socket: %s\n", strerror(errno));
            if (sfd >= 0)
                close(sfd);
            close_rst(cfd);
            continue;
        }
        nodelay(sfd);
        c = calloc(1, sizeof *c);
        if (!c) {
            fprintf(stderr, "faultproxy: out of memory\n");
            close(sfd);
            close_rst(cfd);
            continue;
        }
        c->cfd = cfd;
        c->sfd = sfd;
        if (connect(sfd, (struct sockaddr *)&target, sizeof target) < 0) {
            if (errno != EINPROGRESS && errno != EINTR) {
                /* the target is not there: the client sees a reset */
                close(sfd);
                close_rst(cfd);
                free(c);
                continue;
            }
            c->connecting = 1;
        }
        conns[nconns++] = c;
    }
}

static int command(const char *line)
{
    char word[32];
    long ms;
    int i;
    if (sscanf(line, "%31s", word) != 1)
        return 0;
    if (strcmp(word, "pass") == 0) {
        mode = MODE_PASS;
    } else if (strcmp(word, "stall") == 0) {
        mode = MODE_STALL;
    } else if (strcmp(word, "delay") == 0) {
        if (sscanf(line, "%*s %ld", &ms) != 1 || ms < 0 || ms > 3600000) {
            fprintf(stderr, "faultproxy: usage: delay <ms>\n");
            return 0;
        }
        delay_ms = ms;
        mode = MODE_DELAY;
    } else if (strcmp(word, "reset") == 0) {
        close_all(1);
        mode = MODE_PASS;
    } else if (strcmp(word, "halfclose") == 0) {
        for (i = 0; i < nconns; i++) {
            struct conn *c = conns[i];
            if (!c->down.shut) {
                (void)shutdown(c->cfd, SHUT_WR);
                c->down.shut = 1;
                dir_free(&c->down);
            }
        }
    } else if (strcmp(word, "refuse") == 0) {
        refusing = 1;
    } else if (strcmp(word, "accept") == 0) {
        refusing = 0;
    } else if (strcmp(word, "quit") == 0) {
        return 1;
    } else {
        fprintf(stderr, "faultproxy: unknown command '%s'\n", word);
    }
    return 0;
}

/* reads stdin; returns 1 when it is time to exit (quit or EOF) */
static int on_stdin(void)
{
    static char line[LINE_MAX_LEN];
    static size_t len;
    static int skipping;    /* the current line was too long */
    char buf[512];
    ssize_t n;
    size_t i;
    do
        n = read(STDIN_FILENO, buf, sizeof buf);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (n <= 0)
        return 1;
    for (i = 0; i < (size_t)n; i++) {
        if (buf[i] == '\n') {
            line[len] = '\0';
            if (!skipping && command(line))
                return 1;
            len = 0;
            skipping = 0;
        } else if (len + 1 < sizeof line) {
            line[len++] = buf[i];
        } else {
            if (!skipping)
                fprintf(stderr, "faultproxy: command line too long\n");
            skipping = 1;
        }
    }
    return 0;
}

static int write_portfile(const char *path, int port)
{
    char tmp[4096];
    FILE *f;
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return -1;
    f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0) {
        remove(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        remove(tmp);
        return -1;
    }
    return 0;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    static struct pollfd pfd[2 + 2 * MAX_CONNS];
    struct sockaddr_in addr;
    socklen_t alen = sizeof addr;
    long port, max_seconds = 600;
    long long deadline;
    int lfd, one = 1, i;
    struct sigaction sa;

    if (argc < 3 || argc > 4 || parse_long(argv[1], 1, 65535, &port) < 0 ||
        (argc == 4 && parse_long(argv[3], 1, 86400L * 365, &max_seconds) < 0)) {
        fprintf(stderr, "usage: faultproxy <target_port> <portfile> [max_seconds]\n");
        return 2;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    memset(&target, 0, sizeof target);
    target.sin_family = AF_INET;
    target.sin_port = htons((unsigned short)port);
    target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0) {
        perror("faultproxy: socket");
        return 1;
    }
    (void)setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = 0;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 128) < 0 ||
        set_nonblock(lfd) < 0 || getsockname(lfd, (struct sockaddr *)&addr, &alen) < 0) {
        perror("faultproxy: listen");
        return 1;
    }
    if (write_portfile(argv[2], ntohs(addr.sin_port)) < 0) {
        fprintf(stderr, "faultproxy: cannot write %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    deadline = now_ms() + (long long)max_seconds * 1000;

    for (;;) {
        long long now = now_ms(), next = deadline;
        int n = 0, timeout, r;

        if (now >= deadline)
            break;
        pfd[n].fd = STDIN_FILENO;
        pfd[n++].events = POLLIN;
        pfd[n].fd = lfd;
        pfd[n++].events = POLLIN;
        for (i = 0; i < nconns; i++) {
            struct conn *c = conns[i];
            short ce = 0, se = 0;
            if (c->connecting) {
                se = POLLOUT;
            } else if (mode != MODE_STALL) {
                long long due;
                if (!c->up.eof && c->up.bytes < BUF_LIMIT)
                    ce |= POLLIN;
                if (!c->down.eof && c->down.bytes < BUF_LIMIT)
                    se |= POLLIN;
                due = dir_due(&c->down);
                if (due <= now)
                    ce |= POLLOUT;
                else if (due < next)
                    next = due;
                due = dir_due(&c->up);
                if (due <= now)
                    se |= POLLOUT;
                else if (due < next)
                    next = due;
            }
            /* a socket that hung up and that we do not read or write would
             * make poll() return at once, again and again: leave it out */
            pfd[n].fd = (c->chup && !ce) ? -1 : c->cfd;
            pfd[n].events = ce;
            pfd[n].revents = 0;
            n++;
            pfd[n].fd = (c->shup && !se) ? -1 : c->sfd;
            pfd[n].events = se;
            pfd[n].revents = 0;
            n++;
        }
        timeout = next - now > INT_MAX ? INT_MAX : (int)(next - now);
        r = poll(pfd, (nfds_t)n, timeout);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            perror("faultproxy: poll");
            break;
        }
        now = now_ms();
        /* connections first: pfd indexes match conns[] as it was */
        for (i = nconns - 1; i >= 0; i--) {
            struct conn *c = conns[i];
            short cr = pfd[2 + 2 * i].revents, sr = pfd[3 + 2 * i].revents;
            int fail = 0;
            if (c->connecting) {
                int err = 0;
                socklen_t elen = sizeof err;
                if (!sr)
                    continue;
                if (getsockopt(c->sfd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err) {
                    conn_remove(i, 1);  /* the target refused: reset the client */
                    continue;
                }
                c->connecting = 0;
                continue;
            }
            if ((cr | sr) & POLLNVAL) {
                conn_remove(i, 1);
                continue;
            }
            if (mode == MODE_STALL) {
                /* keep the link as it is; look at it again after the stall */
                if (cr & (POLLHUP | POLLERR))
                    c->chup = 1;
                if (sr & (POLLHUP | POLLERR))
                    c->shup = 1;
                continue;
            }
            if ((cr & POLLERR) || (sr & POLLERR)) {
                conn_remove(i, 1);
                continue;
            }
            if (cr & POLLHUP)
                c->chup = 1;
            if (sr & POLLHUP)
                c->shup = 1;
            if ((cr & (POLLIN | POLLHUP)) && (pfd[2 + 2 * i].events & POLLIN))
                fail |= dir_read(c->cfd, &c->up);
            if ((sr & (POLLIN | POLLHUP)) && (pfd[3 + 2 * i].events & POLLIN))
                fail |= dir_read(c->sfd, &c->down);
            if (!fail)
                fail |= dir_write(c->sfd, &c->up, now);
            if (!fail)
                fail |= dir_write(c->cfd, &c->down, now);
            if (fail) {
                conn_remove(i, 1);  /* pass a reset on as a reset */
                continue;
            }
            if (c->up.eof && c->up.shut && c->down.eof && c->down.shut)
                conn_remove(i, 0);
        }
        if ((pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) && on_stdin())
            break;
        if (pfd[1].revents & POLLIN)
            on_accept(lfd);
    }
    close_all(0);
    close(lfd);
    return 0;
}
