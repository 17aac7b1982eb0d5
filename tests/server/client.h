// client.h - a raw-socket HTTP/1.1 client for the server tests (tests/test_server*.c):
// send exactly the bytes a test wants (malformed ones included), read answers with their
// status, headers and body, detect closed connections, and start/stop server children.
// Loopback only. Header-only (static functions), used by tests only.
#ifndef FR_TEST_SERVER_CLIENT_H
#define FR_TEST_SERVER_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline double tc_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void tc_sleep(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

// Connects to 127.0.0.1:port from src_ip (NULL: any). -1 on failure.
static inline int tc_connect_from(const char *src_ip, int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (src_ip) {
        struct sockaddr_in s = {.sin_family = AF_INET};
        inet_pton(AF_INET, src_ip, &s.sin_addr);
        if (bind(fd, (struct sockaddr *)&s, sizeof s) != 0) {
            close(fd);
            return -1;
        }
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}
static inline int tc_connect(int port) { return tc_connect_from(NULL, port); }

// Sends everything; -1 when the peer is gone.
static inline int tc_send(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}
static inline int tc_sends(int fd, const char *s) { return tc_send(fd, s, strlen(s)); }

// A connection with a read buffer (for keep-alive and pipelining).
typedef struct {
    int fd;
    char *buf;
    size_t len, cap;
} tc_conn;

typedef struct {
    int status;       // 0: no answer (closed or reset first)
    char head[8192];  // status line and headers, NUL-terminated
    char *body;       // malloc'd, NUL-terminated
    size_t body_len;
} tc_resp;

static inline void tc_resp_free(tc_resp *r) {
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}

static inline int tc_fill(tc_conn *c, double deadline) {
    if (c->cap - c->len < 65536) {
        size_t cap = c->cap ? c->cap * 2 : 131072;
        char *b = realloc(c->buf, cap);
        if (!b) return -1;
        c->buf = b;
        c->cap = cap;
    }
    for (;;) {
        double left = deadline - tc_now();
        if (left <= 0) return -2;
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -2;
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1; // closed or reset
        c->len += (size_t)n;
        c->buf[c->len] = '\0';
        return 0;
    }
}

// The value of header `name` in r (copied into out), NULL when absent.
static inline const char *tc_header(const tc_resp *r, const char *name, char *out, size_t cap) {
    size_t n = strlen(name);
    for (const char *l = strstr(r->head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
        const char *h = l + 2;
        if (!strncasecmp(h, name, n) && h[n] == ':') {
            const char *v = h + n + 1;
            while (*v == ' ') v++;
            const char *e = strstr(v, "\r\n");
            size_t k = e ? (size_t)(e - v) : strlen(v);
            if (k >= cap) k = cap - 1;
            memcpy(out, v, k);
            out[k] = '\0';
            return out;
        }
    }
    return NULL;
}

// Reads one answer (1xx interim answers are returned too). 0 ok, -1 closed/reset before a
// full answer, -2 timeout.
static inline int tc_read(tc_conn *c, tc_resp *r, double timeout) {
    memset(r, 0, sizeof *r);
    double deadline = tc_now() + timeout;
    char *end;
    while (!c->buf || !(end = strstr(c->buf, "\r\n\r\n"))) {
        int f = tc_fill(c, deadline);
        if (f) return f;
    }
    size_t hl = (size_t)(end - c->buf) + 4;
    size_t keep = hl - 2 < sizeof r->head - 1 ? hl - 2 : sizeof r->head - 1;
    memcpy(r->head, c->buf, keep);
    r->head[keep] = '\0';
    if (sscanf(r->head, "HTTP/%*d.%*d %d", &r->status) != 1) r->status = -1;
    char v[64];
    long long cl = -1;
    if (tc_header(r, "Content-Length", v, sizeof v)) cl = atoll(v);
    if (r->status >= 100 && r->status < 200) cl = 0;
    if (cl < 0) { // read to EOF
        for (;;) {
            int f = tc_fill(c, deadline);
            if (f == -1) break;
            if (f) return f;
        }
        cl = (long long)(c->len - hl);
    }
    while (c->len < hl + (size_t)cl) {
        int f = tc_fill(c, deadline);
        if (f) return f;
    }
    r->body = malloc((size_t)cl + 1);
    memcpy(r->body, c->buf + hl, (size_t)cl);
    r->body[cl] = '\0';
    r->body_len = (size_t)cl;
    memmove(c->buf, c->buf + hl + cl, c->len - hl - (size_t)cl);
    c->len -= hl + (size_t)cl;
    c->buf[c->len] = '\0';
    return 0;
}

static inline void tc_close(tc_conn *c) {
    if (c->fd >= 0) close(c->fd);
    free(c->buf);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

// 1 when the peer closes (EOF or reset) within timeout with no further bytes expected.
static inline int tc_wait_closed(int fd, double timeout) {
    double deadline = tc_now() + timeout;
    char b[4096];
    for (;;) {
        double left = deadline - tc_now();
        if (left <= 0) return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r <= 0) continue;
        ssize_t n = recv(fd, b, sizeof b, 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return 1;
    }
}

// One request on a fresh connection; *closed (may be NULL) says whether the server closed
// the connection after the answer. Returns the status (0: no answer).
static inline int tc_request(int port, const void *raw, size_t n, tc_resp *r, int *closed) {
    tc_conn c = {.fd = tc_connect(port)};
    memset(r, 0, sizeof *r);
    if (c.fd < 0) return 0;
    tc_send(c.fd, raw, n); // the server may answer and close before everything is sent
    tc_read(&c, r, 15);
    if (closed) *closed = tc_wait_closed(c.fd, 3);
    tc_close(&c);
    return r->status;
}
static inline int tc_requests(int port, const char *raw, tc_resp *r, int *closed) {
    return tc_request(port, raw, strlen(raw), r, closed);
}

static inline int tc_get(int port, const char *path, tc_resp *r) {
    char req[1024];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path);
    return tc_requests(port, req, r, NULL);
}

// POST /v1/detect{query} with a raw body of the given type.
static inline int tc_post(int port, const char *query, const char *ctype, const void *body, size_t n,
                   tc_resp *r) {
    char head[1024];
    int hl = snprintf(head, sizeof head,
                      "POST /v1/detect%s HTTP/1.1\r\nHost: t\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      query ? query : "", ctype, n);
    char *all = malloc((size_t)hl + n);
    memcpy(all, head, (size_t)hl);
    memcpy(all + hl, body, n);
    int s = tc_request(port, all, (size_t)hl + n, r, NULL);
    free(all);
    return s;
}

// A multipart/form-data body with an image part and an optional options part.
static inline char *tc_multipart(const void *img, size_t n, const char *options, size_t *len) {
    size_t cap = n + (options ? strlen(options) : 0) + 512;
    char *b = malloc(cap);
    int k = snprintf(b, cap,
                     "--XbOuNdArY42\r\nContent-Disposition: form-data; name=\"image\"; "
                     "filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n");
    memcpy(b + k, img, n);
    size_t p = (size_t)k + n;
    if (options)
        p += (size_t)snprintf(b + p, cap - p,
                              "\r\n--XbOuNdArY42\r\nContent-Disposition: form-data; "
                              "name=\"options\"\r\n\r\n%s",
                              options);
    p += (size_t)snprintf(b + p, cap - p, "\r\n--XbOuNdArY42--\r\n");
    *len = p;
    return b;
}

// The value of a Prometheus sample line `prefix value` in text (0 when absent).
static inline double tc_metric(const char *text, const char *prefix) {
    size_t n = strlen(prefix);
    for (const char *l = text; l && *l;) {
        if (!strncmp(l, prefix, n) && l[n] == ' ') return atof(l + n + 1);
        l = strchr(l, '\n');
        if (l) l++;
    }
    return 0;
}

static inline double tc_get_metric(int port, const char *prefix) {
    tc_resp r;
    double v = -1;
    if (tc_get(port, "/metrics", &r) == 200) v = tc_metric(r.body, prefix);
    tc_resp_free(&r);
    return v;
}

// Polls a metric until it is >= want or timeout seconds pass; its last value. Counters that
// the server bumps after a connection closes, and gauges set by other threads' requests, are
// read this way rather than after a fixed sleep, which a loaded host can outlast.
static inline double tc_wait_metric(int port, const char *prefix, double want, double timeout) {
    double deadline = tc_now() + timeout, v = tc_get_metric(port, prefix);
    while (v < want && tc_now() < deadline) {
        tc_sleep(0.02);
        v = tc_get_metric(port, prefix);
    }
    return v;
}

static inline int tc_healthy(int port) {
    tc_resp r;
    int s = tc_get(port, "/healthz", &r);
    tc_resp_free(&r);
    return s == 200;
}

// Raises the open-file limit to the hard limit (for tests with many connections).
static inline void tc_raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

// Waits for "listening on http://127.0.0.1:PORT" in a server's log file; the port or -1.
static inline int tc_wait_port(const char *log_path, pid_t pid, double timeout) {
    double deadline = tc_now() + timeout;
    while (tc_now() < deadline) {
        FILE *f = fopen(log_path, "r");
        if (f) {
            char line[1024];
            while (fgets(line, sizeof line, f)) {
                const char *p = strstr(line, "listening on http://127.0.0.1:");
                if (p) {
                    fclose(f);
                    return atoi(p + strlen("listening on http://127.0.0.1:"));
                }
            }
            fclose(f);
        }
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (pid > 0 && waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            si.si_pid == pid)
            return -1; // exited (left for tc_wait_exit to reap)
        tc_sleep(0.02);
    }
    return -1;
}

// Waits for a child to exit within timeout: its exit status (128+sig when killed by a
// signal), or -1 on timeout (then it is killed).
static inline int tc_wait_exit(pid_t pid, double timeout, double *took) {
    double t0 = tc_now();
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (took) *took = tc_now() - t0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        if (tc_now() - t0 > timeout) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            if (took) *took = tc_now() - t0;
            return -1;
        }
        tc_sleep(0.01);
    }
}

// Reads a whole file (malloc'd, NUL-terminated; /proc files too); NULL when unreadable.
static inline char *tc_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 65536, n = 0;
    char *b = malloc(cap + 1);
    for (;;) {
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        cap *= 2;
        char *nb = realloc(b, cap + 1);
        if (!nb) break;
        b = nb;
    }
    fclose(f);
    b[n] = '\0';
    if (len) *len = n;
    return b;
}

// Counts lines in a file that contain needle.
static inline int tc_count_lines(const char *path, const char *needle) {
    char *t = tc_slurp(path, NULL);
    if (!t) return -1;
    int n = 0;
    for (char *l = t; *l;) {
        char *e = strchr(l, '\n');
        if (e) *e = '\0';
        if (strstr(l, needle)) n++;
        if (!e) break;
        l = e + 1;
    }
    free(t);
    return n;
}

// Polls tc_count_lines until it is >= want or timeout seconds pass; its last count. For log
// lines written when a request completes, a moment after its answer reached the client.
static inline int tc_wait_lines(const char *path, const char *needle, int want, double timeout) {
    double deadline = tc_now() + timeout;
    int n = tc_count_lines(path, needle);
    while (n < want && tc_now() < deadline) {
        tc_sleep(0.02);
        n = tc_count_lines(path, needle);
    }
    return n;
}

#endif
