// log.c - see log.h. The callback is the one global besides test hooks.
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

static fr_log_fn g_fn;
static void *g_user;
static fr_log_level g_min = FR_LOG_INFO;

void fr_log_set(fr_log_fn fn, void *user) {
    g_fn = fn;
    g_user = user;
}
void fr_log_set_level(fr_log_level min) { g_min = min; }

void fr_log(fr_log_level level, const char *fmt, ...) {
    if (level < g_min) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (g_fn) {
        g_fn(level, buf, g_user);
        return;
    }
    static const char *names[] = {"debug", "info", "warn", "error"};
    fprintf(stderr, "frcnn: %s: %s\n", names[level], buf);
}
