// internal.h - state shared by the server's files (http.c, server.c, accesslog.c, page.c).
// Not part of the public API: src/cli uses server.h only.
#ifndef FR_SERVER_INTERNAL_H
#define FR_SERVER_INTERNAL_H

#include "server/metrics.h"
#include "server/queue.h"
#include "server/request.h"
#include "server/server.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct MHD_Daemon;

// The access log: one JSON line per request, written with one write(2) (atomic for
// O_APPEND files and pipes under PIPE_BUF); write errors are counted, never fatal (P6).
typedef struct {
    int fd;         // -1: off
    int owned;      // close on fr_accesslog_close
    atomic_long errors;
} fr_accesslog;

typedef struct {
    uint64_t id;
    const char *remote;
    const char *method;
    const char *path;
    int status;          // 0 when no answer was sent
    const char *outcome; // "ok", "client_abort", "timeout", "error", "shutdown"
    size_t bytes_in, bytes_out;
    double ms;           // first byte to completion
    double queue_ms;     // waiting for a worker (-1: not queued)
    int detections;      // -1: not a detection
    const char *error;   // error message or NULL
} fr_access_entry;

fr_status fr_accesslog_open(fr_accesslog *log, const char *spec, fr_err *err);
void fr_accesslog_write(fr_accesslog *log, const fr_access_entry *e);
void fr_accesslog_close(fr_accesslog *log);

// Embedded assets (page.c).
const char *fr_page_html(size_t *len);
const char *fr_page_openapi(size_t *len);

typedef struct {
    fr_server_opts opts;
    const fr_engine *eng;
    fr_engine_info info;          // valid once `ready` or `draining` after a load
    fr_metrics *metrics;
    fr_accesslog log;
    struct MHD_Daemon *daemon;
    int listen_fd;
    int port;                     // the bound port
    _Atomic(fr_queue *) queue;    // set once the workers run
    atomic_int ready;             // model loaded and workers running
    atomic_int draining;          // a signal came
    atomic_long open_conns;       // TCP connections (MHD notify callback)
    atomic_long active;           // requests started and not completed
    atomic_long pending;          // requests admitted to the queue and not completed
    atomic_ullong next_id;        // request ids
} fr_server;

// Monotonic seconds (CLOCK_MONOTONIC: deadlines survive clock jumps, catalogue P7).
double fr_server_now(void);

// http.c: starts libmicrohttpd on srv->listen_fd; stops it (all requests completed first).
fr_status fr_http_start(fr_server *srv, fr_err *err);
void fr_http_stop(fr_server *srv);
// The queue callbacks that run a request's job and resume its connection.
void fr_http_queue_fns(fr_server *srv, fr_queue_fns *fns);

#endif
