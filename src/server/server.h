// server.h - the HTTP service behind `frcnn serve` (libmicrohttpd + cJSON).
//
// Routes (CONTRACT.md "HTTP API", docs/api/openapi.yaml): POST /v1/detect, GET /healthz,
// /readyz, /v1/model, /metrics, / (the upload page), /openapi.yaml.
// Life cycle of fr_server_run: bind the listening socket (a port in use is an error at
// once), start the HTTP threads (/healthz answers, /readyz says 503 "loading"), load the
// model in the background, start the workers, then /readyz says 200. On SIGTERM or SIGINT:
// /readyz says 503, new detections get 503 + Retry-After, queued ones get 503, running ones
// finish and are answered, then it returns 0 (within opts.drain_timeout_s). A second signal
// returns at once.
// The model is reached only through fr_engine, so tests can run the HTTP layer with a fake.
// Ownership: the server borrows opts and engine for the duration of fr_server_run.
#ifndef FR_SERVER_H
#define FR_SERVER_H

#include "core/status.h"
#include "detector/detector.h"

#include <stddef.h>

// What the engine tells the server once the model is loaded (owned by the engine, valid
// until unload).
typedef struct {
    const char *name;        // model name, for logs
    int num_classes;         // K
    char *const *classes;    // K labels, for the `classes` option
    const char *model_json;  // the body of GET /v1/model
} fr_engine_info;

// One inference's answer.
typedef struct {
    char *json;          // the 200 body (CONTRACT.md), fr_malloc'd; the server frees it
    size_t len;          // strlen(json)
    int num_detections;
    double ms[5];        // decode, backbone, rpn, roi_head, total (metrics.h fr_stage order)
} fr_engine_result;

typedef struct {
    void *user;
    // Loads the model (called once, from a background thread). Fills info.
    fr_status (*load)(void *user, fr_engine_info *info, fr_err *err);
    // Makes one worker's state (in the worker's thread) and frees it.
    fr_status (*worker_new)(void *user, void **worker, fr_err *err);
    void (*worker_free)(void *user, void *worker);
    // Decodes bytes[0..len) and runs detection. Failures use image.h's codes
    // (FR_ERR_UNSUPPORTED 415, FR_ERR_TOO_LARGE 413, FR_ERR_FORMAT 400, FR_ERR_NOMEM 503).
    fr_status (*detect)(void *user, void *worker, const unsigned char *bytes, size_t len,
                        const fr_detect_opts *opts, fr_engine_result *res, fr_err *err);
    // Releases what load made (called once at the end if load was called).
    void (*unload)(void *user);
} fr_engine;

typedef struct {
    const char *host;            // listen address (IPv4/IPv6 literal or name), "127.0.0.1"
    int port;                    // 0..65535, 8080; 0 = any free port (logged)
    int workers;                 // inference workers, 1
    int queue;                   // requests allowed to wait for a worker, 8
    size_t max_body;             // request body cap in bytes, 100 MB
    int max_connections;         // open TCP connections, 256
    int max_per_ip;              // connections per client IP, 128 (0 = no limit)
    int connection_timeout_s;    // idle connection timeout, 10 s
    double upload_deadline_s;    // whole-body receive deadline, 60 s
    double drain_timeout_s;      // SIGTERM to exit at most, 8 s (< Docker's 10 s)
    int http_threads;            // libmicrohttpd polling threads, 2
    int retry_after_s;           // Retry-After on 503, 1 s
    const char *access_log;      // NULL or "-": stderr; "none": off; else a file (appended)
    size_t worker_stack;         // worker thread stack bytes, 0 = system default
} fr_server_opts;

void fr_server_opts_default(fr_server_opts *o);

// Runs the server until SIGTERM/SIGINT. Returns the process exit status:
// 0 after a clean drain, 1 on failure (message logged: port in use, model load failed),
// FR_SERVER_ABANDONED when the drain deadline passed or a second signal came while workers
// still run (the caller must end the process without running library destructors).
#define FR_SERVER_ABANDONED 3
int fr_server_run(const fr_server_opts *opts, const fr_engine *engine);

// The engine for a real model file (engine.c). config_path may be NULL. threads: OpenMP
// threads per worker (0: the default, every core). The engine's state is freed by
// fr_engine_model_free.
// model_flags: fr_model_load_ex's (FR_MODEL_FAST).
fr_status fr_engine_model_new(fr_engine *eng, const char *model_path, const char *config_path, unsigned model_flags,
                              const fr_image_limits *limits, int threads, fr_err *err);
void fr_engine_model_free(fr_engine *eng);

// `frcnn serve --healthcheck URL`: GET an http:// URL on a numeric host, 0 on a 200 answer
// within timeout_s, else 1 (message on stderr). Needs no curl in the image.
int fr_server_probe(const char *url, double timeout_s);

#endif
