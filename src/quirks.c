/*
 * quirks.c - paho workarounds that need process-wide state, each with its
 * evidence. (retire.c is the other workaround file: a damaged handle is
 * retired, not destroyed.)
 *
 *  - one WebSocket connection at a time (the thread boundary releases the
 *    slot on paho's threads when a connection ends);
 *  - connects wait 50 ms after a handle was destroyed.
 * (The anchor handle, which keeps paho's threads alive and wakes its
 * receive thread while a connect waits, is in wake.c.)
 *
 * A leaf: no Lua header, nothing of the binding called but the clock, so
 * every layer can use it, paho's threads included.
 */
#include "pmq.h"

#include <stdio.h>
#include <strings.h>
#include <time.h>

/* paho.mqtt.c keeps its WebSocket receive state in process-wide variables
 * (WebSocket.c: in_frames, frame_buffer), not per connection. When two
 * WebSocket connections receive at once, one reads the other's bytes: both
 * stall, and every later WebSocket connect in the process times out. So the
 * binding lets one client at a time hold a WebSocket connection (from its
 * connect until the connection ends); what paho requires, hence global. */
static pthread_mutex_t ws_mu = PTHREAD_MUTEX_INITIALIZER;
static pmq_ctx *ws_owner;

int pmq_ws_uri(const char *u)
{
    return u && (strncasecmp(u, "ws://", 5) == 0 || strncasecmp(u, "wss://", 6) == 0);
}

/* takes the WebSocket slot for c, or leaves in buf who holds it; 1 = taken */
int pmq_ws_acquire(pmq_ctx *c, char *buf, size_t len)
{
    int ok;
    pthread_mutex_lock(&ws_mu);
    ok = ws_owner == NULL || ws_owner == c;
    if (ok)
        ws_owner = c;
    else
        snprintf(buf, len, "%s", ws_owner->ka_id ? ws_owner->ka_id : "");
    pthread_mutex_unlock(&ws_mu);
    return ok;
}

void pmq_ws_release(pmq_ctx *c)
{
    pthread_mutex_lock(&ws_mu);
    if (ws_owner == c)
        ws_owner = NULL;
    pthread_mutex_unlock(&ws_mu);
}

/* paho 1.3.12: a connect made within a few milliseconds of destroying a
 * handle sometimes fails at once with "socket error" (its receive thread
 * seems to act on a poll() result for the destroyed handle's socket, whose
 * descriptor the new socket reuses). Connects wait until 50 ms have passed
 * since the last destroy in the process. Milliseconds, monotonic. */
static long long last_destroy_ms;

void pmq_settle_after_destroy(void)
{
    long long last = __atomic_load_n(&last_destroy_ms, __ATOMIC_RELAXED);
    double left = (double)last / 1000.0 + 0.05 - pmq_now();
    if (last > 0 && left > 0) {
        struct timespec ts = {0, (long)(left * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* a handle was destroyed just now */
void pmq_destroyed(void)
{
    __atomic_store_n(&last_destroy_ms, (long long)(pmq_now() * 1000.0), __ATOMIC_RELAXED);
}
