/* tools/repro/paho-ws-repro.c - raw paho.mqtt.c (no binding): do two WebSocket
 * connections in one process corrupt each other?
 *
 *   cc -o paho-ws-repro tools/repro/paho-ws-repro.c -lpaho-mqtt3as
 *   ./paho-ws-repro ws://127.0.0.1:PORT/mqtt 50          two clients
 *   ./paho-ws-repro ws://127.0.0.1:PORT/mqtt 50 single   one client
 *
 * Two clients: client 0 sends N x 64 KiB QoS 1 to client 1, client 1 sends
 * N x 10 B to client 0; then a third client connects. With paho 1.3.11/12
 * (WebSocket.c keeps in_frames/frame_buffer in process-wide variables)
 * PUBACKs and messages go missing and the third connect ends in "TCP connect
 * timeout"; one client alone sending itself 64 KiB messages is fine.
 * Exit status 0 when everything arrived and the third client connected. */
#define _DEFAULT_SOURCE
#include <MQTTAsync.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static volatile int conn[2], acks[2], arrived[2];
static int msgarr(void *ctx, char *t, int tl, MQTTAsync_message *m) {
  (void)tl; arrived[(long)ctx]++; MQTTAsync_freeMessage(&m); MQTTAsync_free(t); return 1; }
static void onconn(void *ctx, MQTTAsync_successData *r) { (void)r; conn[(long)ctx] = 1; }
static void onfail(void *ctx, MQTTAsync_failureData *r) { fprintf(stderr, "connect %ld failed: %s\n", (long)ctx, r && r->message ? r->message : "?"); conn[(long)ctx] = -1; }
static void onack(void *ctx, MQTTAsync_successData *r) { (void)r; acks[(long)ctx]++; }
int main(int argc, char **argv) {
  const char *uri = argv[1]; int n = argc > 2 ? atoi(argv[2]) : 50; int single = argc > 3;
  MQTTAsync c[2];
  size_t big = 65536; char *payload = malloc(big); memset(payload, 'x', big);
  for (long i = 0; i < (single ? 1 : 2); i++) {
    char id[32]; snprintf(id, sizeof id, "wsr%ld-%d", i, getpid());
    MQTTAsync_create(&c[i], uri, id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
    MQTTAsync_setCallbacks(c[i], (void *)i, NULL, msgarr, NULL);
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
    o.MQTTVersion = 4; o.onSuccess = onconn; o.onFailure = onfail; o.context = (void *)i; o.keepAliveInterval = 30;
    MQTTAsync_connect(c[i], &o);
    for (int k = 0; k < 500 && !conn[i]; k++) usleep(10000);
    if (conn[i] != 1) { printf("client %ld did not connect\n", i); return 2; }
    MQTTAsync_responseOptions so = MQTTAsync_responseOptions_initializer;
    char t[32]; snprintf(t, sizeof t, "wsr/%ld/%d", i, getpid());
    MQTTAsync_subscribe(c[i], t, 1, &so);
  }
  usleep(300000);
  for (int k = 0; k < n; k++) for (long i = 0; i < 2; i++) {
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = onack; ro.context = (void *)i;
    char t[32]; snprintf(t, sizeof t, "wsr/%ld/%d", single ? 0 : 1 - i, getpid()); if (single && i == 1) { acks[1]++; arrived[1]++; continue; }
    /* client 0 sends 64 KiB to client 1, client 1 sends 10 B to client 0 */
    MQTTAsync_send(c[single ? 0 : i], t, i == 0 ? (int)big : 10, payload, 1, 0, &ro);
  }
  for (int k = 0; k < 1000 && (acks[0] + acks[1] < 2 * n || arrived[0] + arrived[1] < 2 * n); k++) usleep(10000);
  printf("acks %d/%d %d/%d arrived %d %d (of %d each)\n", acks[0], n, acks[1], n, arrived[0], arrived[1], n);
  /* can a third ws client still connect? */
  MQTTAsync d; MQTTAsync_create(&d, uri, "wsr-third", MQTTCLIENT_PERSISTENCE_NONE, NULL);
  MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
  o.MQTTVersion = 4; o.onSuccess = onconn; o.onFailure = onfail; o.context = (void *)0; o.connectTimeout = 5;
  for (long i = 0; i < (single ? 1 : 2); i++) { MQTTAsync_disconnectOptions dd = MQTTAsync_disconnectOptions_initializer; MQTTAsync_disconnect(c[i], &dd); }
  usleep(500000);
  conn[0] = 0; MQTTAsync_connect(d, &o);
  for (int k = 0; k < 700 && !conn[0]; k++) usleep(10000);
  printf("third client connect: %s\n", conn[0] == 1 ? "ok" : "FAILED");
  return (acks[0] == n && acks[1] == n && arrived[0] == n && arrived[1] == n && conn[0] == 1) ? 0 : 1;
}
