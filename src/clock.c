/*
 * clock.c - the binding's clock: monotonic seconds (pmq_now).
 *
 * A leaf: calls nothing of the binding, includes no Lua header, so every
 * layer can use it, paho's threads included.
 */
#include "pmq.h"

#include <time.h>

double pmq_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
