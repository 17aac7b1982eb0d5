// metrics.c - request counters, latency histograms, stage summaries and the Prometheus
// text rendering (see metrics.h). One mutex guards everything: updates are a few adds.
#include "metrics.h"

#include "core/alloc.h"

#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define N_STATUS 600
// Latency buckets in seconds: from a health probe to a large image on a busy CPU.
static const double k_buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                   0.5,   1,     2.5,  5,     10,   30,  60};
#define N_BUCKETS (sizeof k_buckets / sizeof k_buckets[0])

struct fr_metrics {
    pthread_mutex_t mu;
    long requests[FR_ROUTE_COUNT][N_STATUS];
    long aborted[FR_ROUTE_COUNT];
    long hist[FR_ROUTE_COUNT][N_BUCKETS]; // non-cumulative; rendered cumulative
    long hist_count[FR_ROUTE_COUNT];
    double hist_sum[FR_ROUTE_COUNT];
    double stage_sum[FR_STAGE_COUNT]; // seconds
    long inferences;
    long detections;
};

static const char *k_routes[FR_ROUTE_COUNT] = {
    "/", "/openapi.yaml", "/healthz", "/readyz", "/v1/model", "/metrics", "/v1/detect", "other"};
static const char *k_stages[FR_STAGE_COUNT] = {"decode", "backbone", "rpn", "roi_head",
                                               "total"};

fr_route fr_route_lookup(const char *path) {
    if (!path) return FR_ROUTE_OTHER;
    for (int r = 0; r < FR_ROUTE_OTHER; r++)
        if (!strcmp(path, k_routes[r])) return (fr_route)r;
    return FR_ROUTE_OTHER;
}

const char *fr_route_name(fr_route r) {
    return (unsigned)r < FR_ROUTE_COUNT ? k_routes[r] : "other";
}

fr_metrics *fr_metrics_new(void) {
    fr_metrics *m = fr_calloc(1, sizeof *m);
    if (!m) return NULL;
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

void fr_metrics_free(fr_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    fr_free(m);
}

void fr_metrics_request(fr_metrics *m, fr_route r, int status, double seconds) {
    if ((unsigned)r >= FR_ROUTE_COUNT) r = FR_ROUTE_OTHER;
    if (status < 100 || status >= N_STATUS) status = 0;
    if (!(seconds >= 0)) seconds = 0;
    size_t b = 0;
    while (b < N_BUCKETS && seconds > k_buckets[b]) b++;
    pthread_mutex_lock(&m->mu);
    m->requests[r][status]++;
    if (b < N_BUCKETS) m->hist[r][b]++;
    m->hist_count[r]++;
    m->hist_sum[r] += seconds;
    pthread_mutex_unlock(&m->mu);
}

void fr_metrics_aborted(fr_metrics *m, fr_route r) {
    if ((unsigned)r >= FR_ROUTE_COUNT) r = FR_ROUTE_OTHER;
    pthread_mutex_lock(&m->mu);
    m->aborted[r]++;
    pthread_mutex_unlock(&m->mu);
}

void fr_metrics_inference(fr_metrics *m, const double ms[FR_STAGE_COUNT], int detections) {
    pthread_mutex_lock(&m->mu);
    for (int s = 0; s < FR_STAGE_COUNT; s++)
        if (ms[s] >= 0) m->stage_sum[s] += ms[s] / 1000.0;
    m->inferences++;
    if (detections > 0) m->detections += detections;
    pthread_mutex_unlock(&m->mu);
}

long fr_metrics_count(fr_metrics *m, fr_route r, int status) {
    if ((unsigned)r >= FR_ROUTE_COUNT || status < 0 || status >= N_STATUS) return 0;
    pthread_mutex_lock(&m->mu);
    long v = m->requests[r][status];
    pthread_mutex_unlock(&m->mu);
    return v;
}

long fr_metrics_aborted_count(fr_metrics *m, fr_route r) {
    if ((unsigned)r >= FR_ROUTE_COUNT) return 0;
    pthread_mutex_lock(&m->mu);
    long v = m->aborted[r];
    pthread_mutex_unlock(&m->mu);
    return v;
}

// A growable text buffer; on OOM it sets failed and ignores further writes.
typedef struct {
    char *p;
    size_t len, cap;
    int failed;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n + 1;
        char *q = fr_realloc(b->p, cap);
        if (!q) {
            b->failed = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

// Process gauges from /proc/self (-1 when unreadable).
static void proc_stats(long *rss_bytes, long *fds, long *threads) {
    *rss_bytes = *fds = *threads = -1;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        long size, rss;
        if (fscanf(f, "%ld %ld", &size, &rss) == 2) *rss_bytes = rss * sysconf(_SC_PAGESIZE);
        fclose(f);
    }
    f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "Threads:", 8)) sscanf(line + 8, "%ld", threads);
        fclose(f);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') n++;
        closedir(d);
        *fds = n - 1; // the directory stream itself
    }
}

char *fr_metrics_render(fr_metrics *m, const fr_metrics_gauges *g, size_t *len) {
    sbuf b = {fr_malloc(16384), 0, 16384, 0};
    if (!b.p) return NULL;
    b.p[0] = '\0';
    pthread_mutex_lock(&m->mu);
    sb_printf(&b, "# HELP frcnn_http_requests_total HTTP requests answered, by route and "
                  "status code.\n# TYPE frcnn_http_requests_total counter\n");
    for (int r = 0; r < FR_ROUTE_COUNT; r++)
        for (int s = 0; s < N_STATUS; s++)
            if (m->requests[r][s])
                sb_printf(&b, "frcnn_http_requests_total{route=\"%s\",code=\"%d\"} %ld\n",
                          k_routes[r], s, m->requests[r][s]);
    sb_printf(&b, "# HELP frcnn_http_requests_aborted_total Requests that ended without an "
                  "answer (client gone, timeout, shutdown).\n"
                  "# TYPE frcnn_http_requests_aborted_total counter\n");
    for (int r = 0; r < FR_ROUTE_COUNT; r++)
        if (m->aborted[r])
            sb_printf(&b, "frcnn_http_requests_aborted_total{route=\"%s\"} %ld\n", k_routes[r],
                      m->aborted[r]);
    sb_printf(&b, "# HELP frcnn_http_request_duration_seconds Time from the first byte of a "
                  "request to its answer.\n"
                  "# TYPE frcnn_http_request_duration_seconds histogram\n");
    for (int r = 0; r < FR_ROUTE_COUNT; r++) {
        if (!m->hist_count[r]) continue;
        long cum = 0;
        for (size_t i = 0; i < N_BUCKETS; i++) {
            cum += m->hist[r][i];
            sb_printf(&b,
                      "frcnn_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %ld\n",
                      k_routes[r], k_buckets[i], cum);
        }
        sb_printf(&b,
                  "frcnn_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %ld\n"
                  "frcnn_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
                  "frcnn_http_request_duration_seconds_count{route=\"%s\"} %ld\n",
                  k_routes[r], m->hist_count[r], k_routes[r], m->hist_sum[r], k_routes[r],
                  m->hist_count[r]);
    }
    sb_printf(&b, "# HELP frcnn_stage_seconds Inference time per stage.\n"
                  "# TYPE frcnn_stage_seconds summary\n");
    for (int s = 0; s < FR_STAGE_COUNT; s++)
        sb_printf(&b,
                  "frcnn_stage_seconds_sum{stage=\"%s\"} %.6f\n"
                  "frcnn_stage_seconds_count{stage=\"%s\"} %ld\n",
                  k_stages[s], m->stage_sum[s], k_stages[s], m->inferences);
    sb_printf(&b, "# HELP frcnn_detections_total Detections returned.\n"
                  "# TYPE frcnn_detections_total counter\nfrcnn_detections_total %ld\n",
              m->detections);
    pthread_mutex_unlock(&m->mu);

    long rss, fds, threads;
    proc_stats(&rss, &fds, &threads);
    sb_printf(&b,
              "# HELP frcnn_ready 1 when the model is loaded and the server is not draining.\n"
              "# TYPE frcnn_ready gauge\nfrcnn_ready %d\n"
              "# HELP frcnn_draining 1 after SIGTERM/SIGINT.\n"
              "# TYPE frcnn_draining gauge\nfrcnn_draining %d\n"
              "# HELP frcnn_workers Inference workers.\n"
              "# TYPE frcnn_workers gauge\nfrcnn_workers %d\n"
              "# HELP frcnn_queue_capacity Requests allowed to wait for a worker.\n"
              "# TYPE frcnn_queue_capacity gauge\nfrcnn_queue_capacity %d\n"
              "# HELP frcnn_queue_depth Requests waiting for a worker.\n"
              "# TYPE frcnn_queue_depth gauge\nfrcnn_queue_depth %d\n"
              "# HELP frcnn_inflight Requests being run by a worker.\n"
              "# TYPE frcnn_inflight gauge\nfrcnn_inflight %d\n"
              "# HELP frcnn_http_open_connections TCP connections open.\n"
              "# TYPE frcnn_http_open_connections gauge\nfrcnn_http_open_connections %ld\n"
              "# HELP frcnn_http_active_requests Requests being received, run or answered.\n"
              "# TYPE frcnn_http_active_requests gauge\nfrcnn_http_active_requests %ld\n"
              "# HELP frcnn_access_log_errors_total Access-log lines that could not be "
              "written.\n"
              "# TYPE frcnn_access_log_errors_total counter\nfrcnn_access_log_errors_total "
              "%ld\n",
              g->ready, g->draining, g->workers, g->queue_capacity, g->queue_depth,
              g->inflight, g->open_connections, g->active_requests, g->log_errors);
    sb_printf(&b,
              "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
              "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %ld\n"
              "# HELP process_open_fds Number of open file descriptors.\n"
              "# TYPE process_open_fds gauge\nprocess_open_fds %ld\n"
              "# HELP process_threads Number of OS threads in the process.\n"
              "# TYPE process_threads gauge\nprocess_threads %ld\n",
              rss, fds, threads);
    if (b.failed) {
        fr_free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
