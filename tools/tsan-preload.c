/*
 * tsan-preload.c - preloaded after the ThreadSanitizer runtime by `make tsan`.
 *
 * The interpreter is not instrumented, so the TSan runtime reaches it through
 * LD_PRELOAD, and everything the specs start inherits that variable: sh (for
 * io.popen and os.execute), mosquitto, id, mktemp... Shells crash at start-up
 * with the TSan runtime preloaded (a NULL interceptor called from dash's
 * main), so the variable has to go before the first child is started. It
 * cannot go at start-up either: with LD_PRELOAD changed before the
 * instrumented core is loaded, dlopen of the core fails with "libtsan.so.2:
 * cannot allocate memory in static TLS block". So this shim wraps dlopen and
 * drops LD_PRELOAD from the environment right after the core
 * (.../paho/mqtt/core.so) has been loaded. Nothing else.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

void *dlopen(const char *file, int mode)
{
    static void *(*real)(const char *, int);
    void *h;
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "dlopen");
    if (!real)
        return NULL;
    h = real(file, mode);
    if (h && file && strstr(file, "/paho/mqtt/core.so"))
        unsetenv("LD_PRELOAD");
    return h;
}
