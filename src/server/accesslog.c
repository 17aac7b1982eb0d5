// accesslog.c - one JSON line per request (stderr, a file, or off); see internal.h.
// A line is built in a fixed buffer (strings escaped and cut) and written with one write(2)
// so lines from different threads never interleave; a failed write (disk full) is counted.
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

fr_status fr_accesslog_open(fr_accesslog *log, const char *spec, fr_err *err) {
    log->fd = -1;
    log->owned = 0;
    atomic_init(&log->errors, 0);
    if (!spec || !strcmp(spec, "-")) {
        log->fd = 2;
        return FR_OK;
    }
    if (!strcmp(spec, "none")) return FR_OK;
    int fd = open(spec, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return fr_fail(err, FR_ERR_IO, "cannot open access log '%s': %s", spec, strerror(errno));
    log->fd = fd;
    log->owned = 1;
    return FR_OK;
}

void fr_accesslog_close(fr_accesslog *log) {
    if (log->owned && log->fd >= 0) close(log->fd);
    log->fd = -1;
    log->owned = 0;
}

// Appends s as a JSON string (quoted, escaped, at most max input bytes).
static size_t put_str(char *buf, size_t pos, size_t cap, const char *s, size_t max) {
    static const char hex[] = "0123456789abcdef";
    if (pos + 2 >= cap) return pos;
    buf[pos++] = '"';
    for (size_t i = 0; s && s[i] && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (pos + 8 >= cap) break;
        if (c == '"' || c == '\\') {
            buf[pos++] = '\\';
            buf[pos++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) { // control and non-ASCII bytes: \u00XX
            memcpy(buf + pos, "\\u00", 4);
            buf[pos + 4] = hex[c >> 4];
            buf[pos + 5] = hex[c & 15];
            pos += 6;
        } else {
            buf[pos++] = (char)c;
        }
    }
    buf[pos++] = '"';
    return pos;
}

static size_t put_fmt(char *buf, size_t pos, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t put_fmt(char *buf, size_t pos, size_t cap, const char *fmt, ...) {
    if (pos >= cap) return pos;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + pos, cap - pos, fmt, ap);
    va_end(ap);
    if (n < 0) return pos;
    return (size_t)n < cap - pos ? pos + (size_t)n : cap - 1;
}

void fr_accesslog_write(fr_accesslog *log, const fr_access_entry *e) {
    if (log->fd < 0) return;
    char buf[2048];
    const size_t cap = sizeof buf - 2; // room for "}\n"
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t p = put_fmt(buf, 0, cap,
                       "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"id\":%llu,\"remote\":",
                       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                       tm.tm_sec, ts.tv_nsec / 1000000, (unsigned long long)e->id);
    p = put_str(buf, p, cap, e->remote, 64);
    p = put_fmt(buf, p, cap, ",\"method\":");
    p = put_str(buf, p, cap, e->method, 16);
    p = put_fmt(buf, p, cap, ",\"path\":");
    p = put_str(buf, p, cap, e->path, 256);
    p = put_fmt(buf, p, cap, ",\"status\":%d,\"outcome\":", e->status);
    p = put_str(buf, p, cap, e->outcome, 32);
    p = put_fmt(buf, p, cap, ",\"bytes_in\":%zu,\"bytes_out\":%zu,\"ms\":%.3f", e->bytes_in,
                e->bytes_out, e->ms);
    if (e->queue_ms >= 0) p = put_fmt(buf, p, cap, ",\"queue_ms\":%.3f", e->queue_ms);
    if (e->detections >= 0) p = put_fmt(buf, p, cap, ",\"detections\":%d", e->detections);
    if (e->error) {
        p = put_fmt(buf, p, cap, ",\"error\":");
        p = put_str(buf, p, cap, e->error, 512);
    }
    buf[p++] = '}';
    buf[p++] = '\n';
    ssize_t w;
    do {
        w = write(log->fd, buf, p);
    } while (w < 0 && errno == EINTR);
    if (w != (ssize_t)p) atomic_fetch_add(&log->errors, 1);
}
