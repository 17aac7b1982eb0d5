// metrics.h - the server's counters and their Prometheus text exposition (GET /metrics).
//
// Requests are counted by route (a fixed set, so unknown paths cannot blow up the label
// space) and status code, with a latency histogram per route; inference stage times are a
// summary per stage. All update functions are thread-safe. Gauges (queue depth, in-flight,
// connections, process RSS/fds/threads) are sampled by the caller at render time.
// Ownership: fr_metrics_new allocates, fr_metrics_free releases; rendered text is fr_malloc'd.
#ifndef FR_SERVER_METRICS_H
#define FR_SERVER_METRICS_H

#include <stddef.h>

typedef enum {
    FR_ROUTE_ROOT,    // GET /
    FR_ROUTE_OPENAPI, // GET /openapi.yaml
    FR_ROUTE_HEALTHZ, // GET /healthz
    FR_ROUTE_READYZ,  // GET /readyz
    FR_ROUTE_MODEL,   // GET /v1/model
    FR_ROUTE_METRICS, // GET /metrics
    FR_ROUTE_DETECT,  // POST /v1/detect
    FR_ROUTE_OTHER,   // anything else (404)
    FR_ROUTE_COUNT
} fr_route;

// The route of a request path (query string excluded); FR_ROUTE_OTHER when unknown.
fr_route fr_route_lookup(const char *path);
// The path of a route ("/v1/detect"; "other" for FR_ROUTE_OTHER).
const char *fr_route_name(fr_route r);

typedef enum {
    FR_STAGE_DECODE,
    FR_STAGE_BACKBONE,
    FR_STAGE_RPN,
    FR_STAGE_ROI_HEAD,
    FR_STAGE_TOTAL,
    FR_STAGE_COUNT
} fr_stage;

typedef struct fr_metrics fr_metrics;

// Sampled values shown next to the counters.
typedef struct {
    int ready;            // 1 when /readyz answers 200
    int draining;         // 1 after SIGTERM/SIGINT
    int workers;          // inference workers
    int queue_capacity;   // waiting jobs allowed
    int queue_depth;      // jobs waiting
    int inflight;         // jobs running in a worker
    long open_connections; // TCP connections open now
    long active_requests; // requests between their first byte and completion
    long log_errors;      // access-log lines that could not be written
} fr_metrics_gauges;

fr_metrics *fr_metrics_new(void); // NULL on OOM
void fr_metrics_free(fr_metrics *m);

// One answered request: route, HTTP status (100..599, others counted as 0), seconds spent.
void fr_metrics_request(fr_metrics *m, fr_route r, int status, double seconds);
// A request that ended without an answer (client gone, timeout, shutdown).
void fr_metrics_aborted(fr_metrics *m, fr_route r);
// One inference: stage times in milliseconds (indexed by fr_stage) and detections returned.
void fr_metrics_inference(fr_metrics *m, const double ms[FR_STAGE_COUNT], int detections);

// Answered requests for a route and status so far (tests, loadtest cross-checks).
long fr_metrics_count(fr_metrics *m, fr_route r, int status);
long fr_metrics_aborted_count(fr_metrics *m, fr_route r);

// The Prometheus text format (version 0.0.4). Returns a fr_malloc'd NUL-terminated string
// and its length in *len, NULL on OOM. Process gauges are read from /proc/self.
char *fr_metrics_render(fr_metrics *m, const fr_metrics_gauges *g, size_t *len);

#endif
