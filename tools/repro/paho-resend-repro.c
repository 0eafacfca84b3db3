/* tools/repro/paho-resend-repro.c - raw paho.mqtt.c MQTTAsync (no binding): is a
 * QoS 1 publish whose first write fails, because the connection has just
 * been cut, resent intact after the reconnect?
 *
 *   cc -pthread -o paho-resend-repro tools/repro/paho-resend-repro.c -lpaho-mqtt3as
 *   mosquitto -c m.conf &      (listener PORT 127.0.0.1, log_type all)
 *   ./paho-resend-repro PORT 4 mem         MQTT 3.1.1, state in memory
 *   ./paho-resend-repro PORT 5 /tmp/dir    MQTT 5 (Session Expiry 300),
 *                                          MQTTCLIENT_PERSISTENCE_DEFAULT
 *   ./paho-resend-repro PORT 5 mem recover the workaround (see below)
 *
 * A publisher (Clean Session/Start off, automatic reconnect, sends while
 * disconnected buffered up to 200, 20 in flight while connected) sends N x 100 B QoS 1
 * messages through a TCP proxy in this process, which resets both sides
 * (RST) after N/5; a subscriber connected straight to the broker counts the
 * distinct messages. paho 1.3.12: when the send thread writes a new PUBLISH
 * on the dead socket, MQTTAsync_processCommand gets SOCKET_ERROR, calls the
 * publish's onFailure with -1 and frees the command's topic and payload, but
 * MQTTProtocol_startPublish had already put the message into the session's
 * outbound list pointing at that same topic and payload. After every
 * reconnect paho resends it from freed memory: the proxy shows a PUBLISH with
 * a garbage topic, mosquitto logs "disconnected due to malformed packet" (or
 * "out of memory"), and each new connection poisons one more message. Same
 * on MQTT 3.1.1 and 5, in memory and with persistence.
 *
 * "recover": after a publish fails with -1, destroy the client and create it
 * again (same id, same persistence directory); in memory, publish again what
 * was not acknowledged. Exit status 0 when everything arrived and the
 * publisher connected at most 3 times. N: env N (5000). */
#define _DEFAULT_SOURCE
#include <MQTTAsync.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXN 100000
static int bport, lsock, version, recover;
static const char *dir;
static volatile int cut_now, conns, broker_closed, garbage, pub_up, poisoned, sub_ok, acks, distinct, lost;
static unsigned char acked[MAXN], seen[MAXN];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static MQTTAsync pub;

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

/* proxy; checks the topic of each PUBLISH the publisher sends */
static unsigned char pb[1 << 20]; static size_t pl;
static void check(const unsigned char *b, size_t n) {
  if (pl + n > sizeof pb) pl = 0;
  memcpy(pb + pl, b, n); pl += n;
  size_t off = 0;
  for (;;) {
    size_t rl = 0, mul = 1, i = 1;
    for (;; i++) { if (off + i >= pl) goto out; rl += (pb[off + i] & 127) * mul; mul *= 128; if (!(pb[off + i] & 128) || i == 4) break; }
    if (pl - off < i + 1 + rl) break;
    const unsigned char *p = pb + off + i + 1;
    if ((pb[off] >> 4) == 3 && !((p[0] << 8 | p[1]) == 8 && !memcmp(p + 2, "resend/t", 8))) {
      if (garbage++ < 3) {
        printf("proxy: PUBLISH with a bad topic, mid %d, remaining length %zu:", (pb[off] & 6) ? p[2 + (p[0] << 8 | p[1])] << 8 | p[3 + (p[0] << 8 | p[1])] : 0, rl);
        for (size_t k = 0; k < 16 && k < rl; k++) printf(" %02x", p[k]);
        printf("\n");
      }
    }
    off += i + 1 + rl;
  }
out:
  memmove(pb, pb + off, pl - off); pl -= off;
}
static void rst(int fd) { struct linger l = {1, 0}; setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l); close(fd); }
static void *proxy(void *arg) {
  (void)arg;
  for (;;) {
    int c = accept(lsock, NULL, NULL), u = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(bport), .sin_addr.s_addr = htonl(0x7f000001)};
    if (c < 0 || connect(u, (void *)&a, sizeof a) < 0) { close(c); close(u); continue; }
    conns++; pl = 0;
    struct pollfd pf[2] = {{c, POLLIN, 0}, {u, POLLIN, 0}};
    unsigned char b[65536];
    for (;;) {
      if (cut_now) { cut_now = 0; rst(c); rst(u); break; }
      if (poll(pf, 2, 20) <= 0) continue;
      if (pf[0].revents) { ssize_t n = read(c, b, sizeof b); if (n <= 0) { close(c); rst(u); break; } check(b, n); if (write(u, b, n) != n) { close(c); close(u); break; } }
      if (pf[1].revents) { ssize_t n = read(u, b, sizeof b); if (n <= 0) { broker_closed++; close(u); rst(c); break; } if (write(c, b, n) != n) { close(c); close(u); break; } }
    }
  }
  return NULL;
}

static int sub_msg(void *ctx, char *t, int tl, MQTTAsync_message *m) {
  (void)ctx; (void)tl;
  int s = atoi(m->payload);
  pthread_mutex_lock(&mu); if (s >= 0 && s < MAXN && !seen[s]) { seen[s] = 1; distinct++; } pthread_mutex_unlock(&mu);
  MQTTAsync_freeMessage(&m); MQTTAsync_free(t); return 1;
}
static void sub_conn(void *ctx, MQTTAsync_successData *r) {
  (void)r; MQTTAsync_responseOptions so = MQTTAsync_responseOptions_initializer;
  if (MQTTAsync_subscribe(*(MQTTAsync *)ctx, "resend/t", 1, &so) == MQTTASYNC_SUCCESS) sub_ok = 1;
}
static int pub_msg(void *c, char *t, int tl, MQTTAsync_message *m) { (void)c; (void)tl; MQTTAsync_freeMessage(&m); MQTTAsync_free(t); return 1; }
static void on_lost(void *ctx, char *cause) { (void)ctx; (void)cause; pub_up = 0; lost++; }
static void on_up(void *ctx, char *cause) { (void)ctx; (void)cause; pub_up = 1; }
static void ok(long s) { pthread_mutex_lock(&mu); if (!acked[s]) { acked[s] = 1; acks++; } pthread_mutex_unlock(&mu); }
static void fail(long s, int code) {
  if (code == MQTTASYNC_FAILURE) { printf("publish %ld failed with -1 (its first write hit the dead socket)\n", s); poisoned = 1; }
}
static void ok4(void *c, MQTTAsync_successData *r) { (void)r; ok((long)c); }
static void ok5(void *c, MQTTAsync_successData5 *r) { (void)r; ok((long)c); }
static void fail4(void *c, MQTTAsync_failureData *r) { fail((long)c, r ? r->code : 0); }
static void fail5(void *c, MQTTAsync_failureData5 *r) { fail((long)c, r ? r->code : 0); }

static void start_pub(const char *uri, const char *id) {
  MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
  co.MQTTVersion = version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
  co.sendWhileDisconnected = 1; co.allowDisconnectedSendAtAnyTime = 1; co.maxBufferedMessages = 1 << 20;
  MQTTAsync_createWithOptions(&pub, uri, id, dir ? MQTTCLIENT_PERSISTENCE_DEFAULT : MQTTCLIENT_PERSISTENCE_NONE, (void *)dir, &co);
  MQTTAsync_setCallbacks(pub, NULL, on_lost, pub_msg, NULL);
  MQTTAsync_setConnected(pub, NULL, on_up);
  MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer, o5 = MQTTAsync_connectOptions_initializer5;
  static MQTTProperties cp = MQTTProperties_initializer;
  if (version == 5) {
    o = o5; o.cleanstart = 0;
    MQTTProperty p = {.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL, .value.integer4 = 300};
    if (!cp.count) MQTTProperties_add(&cp, &p);
    o.connectProperties = &cp;
  } else { o.MQTTVersion = MQTTVERSION_3_1_1; o.cleansession = 0; }
  o.keepAliveInterval = 20; o.automaticReconnect = 1; o.minRetryInterval = 1; o.maxRetryInterval = 2;
  MQTTAsync_connect(pub, &o);
  for (int k = 0; k < 500 && !pub_up; k++) usleep(10000);
}

static int publish(long s) {
  char payload[100];
  memset(payload, 'x', sizeof payload); payload[snprintf(payload, sizeof payload, "%ld ", s)] = ' ';
  MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
  ro.context = (void *)s;
  if (version == 5) { ro.onSuccess5 = ok5; ro.onFailure5 = fail5; } else { ro.onSuccess = ok4; ro.onFailure = fail4; }
  MQTTAsync_message m = MQTTAsync_message_initializer;
  m.payload = payload; m.payloadlen = sizeof payload; m.qos = 1;
  return MQTTAsync_sendMessage(pub, "resend/t", &m, &ro);
}

int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: %s BROKER_PORT 4|5 mem|DIR [recover]\n", argv[0]); return 2; }
  bport = atoi(argv[1]); version = atoi(argv[2]); dir = strcmp(argv[3], "mem") ? argv[3] : NULL; recover = argc > 4;
  int n = getenv("N") ? atoi(getenv("N")) : 5000, recoveries = 0;
  if (n > MAXN) n = MAXN;
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)}; socklen_t al = sizeof a;
  lsock = socket(AF_INET, SOCK_STREAM, 0);
  if (bind(lsock, (void *)&a, sizeof a) || listen(lsock, 4) || getsockname(lsock, (void *)&a, &al)) { perror("proxy"); return 2; }
  pthread_t th; pthread_create(&th, NULL, proxy, NULL);
  char uri[64], suri[64], id[32], sid[32];
  snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", ntohs(a.sin_port));
  snprintf(suri, sizeof suri, "tcp://127.0.0.1:%d", bport);
  snprintf(id, sizeof id, "rrp-%d", getpid()); snprintf(sid, sizeof sid, "rrs-%d", getpid());

  MQTTAsync sub; MQTTAsync_create(&sub, suri, sid, MQTTCLIENT_PERSISTENCE_NONE, NULL);
  MQTTAsync_setCallbacks(sub, NULL, NULL, sub_msg, NULL);
  MQTTAsync_connectOptions so = MQTTAsync_connectOptions_initializer;
  so.cleansession = 1; so.onSuccess = sub_conn; so.context = &sub;
  MQTTAsync_connect(sub, &so);
  for (int k = 0; k < 500 && !sub_ok; k++) usleep(10000);
  usleep(200000);
  start_pub(uri, id);
  if (!sub_ok || !pub_up) { printf("could not connect to 127.0.0.1:%d\n", bport); return 2; }

  double t0 = now(); long sent = 0;
  while ((sent < n || acks < sent) && now() - t0 < 45) {
    if (poisoned && recover) {
      poisoned = 0; recoveries++;
      printf("recover: destroy the client and create it again\n");
      MQTTAsync_destroy(&pub); pub_up = 0;
      start_pub(uri, id);
      if (!dir) /* in memory: what paho had is gone; publish again what was not acknowledged */
        for (long s = 0; s < sent; s++) if (!acked[s]) publish(s);
      continue;
    }
    if (sent >= n || sent - acks >= (pub_up ? 20 : 200)) { usleep(1000); continue; }
    if (publish(sent) != MQTTASYNC_SUCCESS) { usleep(1000); continue; }
    if (++sent == n / 5) cut_now = 1;
  }
  for (double t1 = now(); distinct < n && now() - t1 < 10; ) usleep(10000);
  usleep(300000);
  printf("MQTT %d, %s%s: sent %ld, acknowledged %d, arrived %d; connections %d (broker closed %d), "
         "PUBLISH with a bad topic %d, recoveries %d, %.1f s\n", version, dir ? "persistence " : "in memory",
         dir ? dir : "", sent, acks, distinct, conns, broker_closed, garbage, recoveries, now() - t0);
  int rc = distinct == n && conns <= 3 && !garbage ? 0 : 1;
  MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer; d.timeout = 500;
  MQTTAsync_disconnect(pub, &d); MQTTAsync_disconnect(sub, &d); usleep(600000);
  MQTTAsync_destroy(&pub); MQTTAsync_destroy(&sub);
  return rc;
}
