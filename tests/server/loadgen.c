// loadgen.c - the load generator of `make loadtest` (tools/loadtest.sh): N clients, each on
// its own keep-alive connection to 127.0.0.1, POST one image to /v1/detect for S seconds
// (a request still running at the end is waited for). Prints the answers by status with
// p50/p99 latency, and a final machine-readable line:
//   COUNTS 200=N 503=N other=N errors=N
// errors are connection failures, resets and timeouts (each client then reconnects).
// usage: loadgen PORT CLIENTS SECONDS IMAGE [BACKOFF_MS]
#include "client.h"

#include <pthread.h>

typedef struct {
    double *v;
    size_t n, cap;
} series;

static void push(series *s, double x) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        double *v = realloc(s->v, cap * sizeof *v);
        if (!v) return;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = x;
}

typedef struct {
    int port;
    const char *req;
    size_t req_len;
    double end;
    int backoff_ms;
    series ok, busy; // latencies (ms) of 200 and 503 answers
    long other, errors, connects;
} client;

static void *run(void *arg) {
    client *c = arg;
    tc_conn conn = {.fd = -1};
    while (tc_now() < c->end) {
        if (conn.fd < 0) {
            conn.fd = tc_connect(c->port);
            c->connects++;
            if (conn.fd < 0) {
                c->errors++;
                tc_sleep(0.01);
                continue;
            }
        }
        double t0 = tc_now();
        tc_resp r;
        if (tc_send(conn.fd, c->req, c->req_len) || tc_read(&conn, &r, 120) != 0) {
            c->errors++;
            tc_close(&conn);
            conn.fd = -1;
            continue;
        }
        double ms = (tc_now() - t0) * 1000.0;
        int status = r.status;
        if (status == 200) push(&c->ok, ms);
        else if (status == 503) push(&c->busy, ms);
        else c->other++;
        char v[32];
        if (tc_header(&r, "Connection", v, sizeof v) && !strcasecmp(v, "close")) {
            tc_close(&conn);
            conn.fd = -1;
        }
        tc_resp_free(&r);
        if (status == 503 && c->backoff_ms) tc_sleep(c->backoff_ms / 1000.0);
    }
    tc_close(&conn);
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *name, series *all) {
    if (!all->n) {
        printf("  %s: 0 answers\n", name);
        return;
    }
    qsort(all->v, all->n, sizeof *all->v, cmp);
    size_t i99 = (size_t)((double)all->n * 0.99);
    if (i99 >= all->n) i99 = all->n - 1;
    printf("  %s: %zu answers, latency p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", name, all->n,
           all->v[all->n / 2], all->v[i99], all->v[all->n - 1]);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: loadgen PORT CLIENTS SECONDS IMAGE [BACKOFF_MS]\n");
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[2]);
    double seconds = atof(argv[3]);
    int backoff = argc > 5 ? atoi(argv[5]) : 0;
    size_t img_len;
    char *img = tc_slurp(argv[4], &img_len);
    if (!img || n < 1 || n > 4096 || port <= 0) {
        fprintf(stderr, "loadgen: bad arguments or unreadable image '%s'\n", argv[4]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    tc_raise_nofile();
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                      "application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
                      img_len);
    char *req = malloc((size_t)hl + img_len);
    memcpy(req, head, (size_t)hl);
    memcpy(req + hl, img, img_len);
    client *cs = calloc((size_t)n, sizeof *cs);
    pthread_t *t = calloc((size_t)n, sizeof *t);
    double t0 = tc_now();
    for (int i = 0; i < n; i++) {
        cs[i] = (client){.port = port, .req = req, .req_len = (size_t)hl + img_len,
                         .end = t0 + seconds, .backoff_ms = backoff};
        pthread_create(&t[i], NULL, run, &cs[i]);
    }
    series ok = {0}, busy = {0};
    long other = 0, errors = 0, connects = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        for (size_t k = 0; k < cs[i].ok.n; k++) push(&ok, cs[i].ok.v[k]);
        for (size_t k = 0; k < cs[i].busy.n; k++) push(&busy, cs[i].busy.v[k]);
        other += cs[i].other;
        errors += cs[i].errors;
        connects += cs[i].connects;
        free(cs[i].ok.v);
        free(cs[i].busy.v);
    }
    double took = tc_now() - t0;
    printf("loadgen: %d clients, %.1f s, %zu-byte image, %ld connections\n", n, took, img_len,
           connects);
    report("200", &ok);
    report("503", &busy);
    printf("  other statuses: %ld, errors (reset, refused, timeout): %ld\n", other, errors);
    printf("  throughput: %.2f answers/s (%.2f/s of 200)\n",
           (double)(ok.n + busy.n + (size_t)other) / took, (double)ok.n / took);
    printf("COUNTS 200=%zu 503=%zu other=%ld errors=%ld\n", ok.n, busy.n, other, errors);
    free(ok.v);
    free(busy.v);
    free(cs);
    free(t);
    free(req);
    free(img);
    return 0;
}
