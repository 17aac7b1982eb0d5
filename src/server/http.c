// http.c - the libmicrohttpd side of the server: routes, per-request state, admission to
// the worker queue, responses, the access log and metrics (see server.h for the life cycle).
//
// A POST /v1/detect goes through these states:
//   first call  - route/method, draining/ready, framing guard (catalogue H8), Content-Type,
//                 Content-Length cap (H5: 413 before any body byte, so no 100 Continue),
//                 query options, queue-full peek when the client sent Expect: 100-continue
//                 (H17): any failure is answered at once and the connection is closed after
//                 the answer;
//   upload      - bytes appended under the body cap (H6) and the upload deadline (H14);
//   end of body - empty body (H3), multipart (M rows), JSON options (J rows), then a queue
//                 slot is reserved (503 + Retry-After when full), the connection suspended
//                 and the job submitted;
//   resumed     - a worker (or the drain) filled the answer: it is queued.
// The completed callback writes the access-log line and frees the request state.
#include "internal.h"

#include "core/alloc.h"
#include "core/log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

typedef enum { RQ_START, RQ_RECEIVING, RQ_WAITING } rq_state;

typedef struct {
    fr_server *srv;
    struct MHD_Connection *conn;
    uint64_t id;
    fr_route route;
    rq_state state;
    double t_start, t_queued;
    char method[16], path[256], remote[64];
    fr_body body;
    fr_body_kind kind;
    char boundary[FR_REQ_BOUNDARY_MAX + 1];
    fr_req_opts opts;
    const unsigned char *img; // the image bytes inside body
    size_t img_len;
    size_t bytes_in; // body bytes received
    int admitted;    // counted in srv->pending
    int responded;   // a response was queued
    int status;      // its status
    size_t bytes_out;
    int close_after; // answer with Connection: close (body left unread)
    int fail_status; // the body is being discarded; answer this at its end
    size_t discarded; // body bytes discarded since
    char err[512];   // the error message sent, for the access log
    // Written by a worker (or the drain) before it resumes the connection.
    atomic_int job_done;
    int job_status;
    char *job_json;
    size_t job_len;
    int job_dets;
    double queue_ms;
} fr_req;

static const char k_json[] = "application/json";

// ---------------------------------------------------------------------------------------
// Responses

static enum MHD_Result queue(fr_req *rq, int status, char *body, size_t len, int owned,
                             const char *ctype, const char *allow) {
    fr_server *srv = rq->srv;
    struct MHD_Response *r =
        owned ? MHD_create_response_from_buffer_with_free_callback(len, body, fr_free)
              : MHD_create_response_from_buffer(len, body, MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (owned) fr_free(body);
        return MHD_NO;
    }
    char id[32], retry[16];
    snprintf(id, sizeof id, "%llu", (unsigned long long)rq->id);
    snprintf(retry, sizeof retry, "%d", srv->opts.retry_after_s);
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Request-Id", id);
    if (rq->route != FR_ROUTE_ROOT && rq->route != FR_ROUTE_OPENAPI)
        MHD_add_response_header(r, "Cache-Control", "no-store");
    if (rq->route == FR_ROUTE_ROOT && status == 200)
        MHD_add_response_header(r, "Content-Security-Policy",
                                "default-src 'none'; script-src 'unsafe-inline'; style-src "
                                "'unsafe-inline'; img-src blob: data:; connect-src 'self'; "
                                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    if (status == 503) MHD_add_response_header(r, "Retry-After", retry);
    if (allow) MHD_add_response_header(r, "Allow", allow);
    if (rq->close_after || atomic_load(&srv->draining))
        MHD_add_response_header(r, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(rq->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    if (ret != MHD_YES) return ret; // e.g. not allowed in this state: the connection closes
    rq->responded = 1;
    rq->status = status;
    rq->bytes_out = len;
    fr_metrics_request(srv->metrics, rq->route, status, fr_server_now() - rq->t_start);
    return ret;
}

// {"error": {"code": N, "message": "..."}} (CONTRACT.md).
static enum MHD_Result queue_error(fr_req *rq, int status, const char *msg, const char *allow) {
    snprintf(rq->err, sizeof rq->err, "%s", msg);
    cJSON *root = cJSON_CreateObject(), *e = root ? cJSON_AddObjectToObject(root, "error") : NULL;
    char *body = NULL;
    if (e && cJSON_AddNumberToObject(e, "code", status) && cJSON_AddStringToObject(e, "message", msg))
        body = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!body) { // out of memory: a fixed answer
        static const char oom[] = "{\"error\": {\"code\": 503, \"message\": \"out of memory\"}}";
        return queue(rq, 503, (char *)oom, sizeof oom - 1, 0, k_json, NULL);
    }
    return queue(rq, status, body, strlen(body), 1, k_json, allow);
}

static enum MHD_Result queue_static(fr_req *rq, int status, const char *text, const char *ctype) {
    return queue(rq, status, (char *)text, strlen(text), 0, ctype, NULL);
}

// ---------------------------------------------------------------------------------------
// Helpers

static int is_ready(fr_server *srv) {
    return atomic_load(&srv->ready) && !atomic_load(&srv->draining);
}

static enum MHD_Result queue_not_ready(fr_req *rq) {
    fr_server *srv = rq->srv;
    return queue_error(rq, 503,
                       atomic_load(&srv->draining) ? "server is shutting down"
                                                   : "model is loading",
                       NULL);
}

typedef struct {
    int n_cl, n_te;
    const char *cl;
    char te[128];
} framing;

static enum MHD_Result on_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value) {
    (void)kind;
    framing *f = cls;
    if (!key) return MHD_YES;
    if (!strcasecmp(key, "Content-Length")) {
        f->n_cl++;
        f->cl = value;
    } else if (!strcasecmp(key, "Transfer-Encoding")) {
        size_t n = strlen(f->te);
        snprintf(f->te + n, sizeof f->te - n, "%s%s", f->n_te ? "," : "", value ? value : "");
        f->n_te++;
    }
    return MHD_YES;
}

// The request-smuggling guard (catalogue H8): 0 when the framing is sound, else the status
// (400 or 501) with a message.
static int check_framing(struct MHD_Connection *c, size_t max_body, char *msg, size_t cap,
                         long long *content_length) {
    framing f = {0};
    *content_length = -1;
    MHD_get_connection_values(c, MHD_HEADER_KIND, on_header, &f);
    if (f.n_cl > 1) return snprintf(msg, cap, "more than one Content-Length header"), 400;
    if (f.n_cl && f.n_te)
        return snprintf(msg, cap, "both Content-Length and Transfer-Encoding"), 400;
    if (f.n_te) {
        // the codings, comma separated; only "chunked" alone is supported
        int n = 0, chunked_last = 0, other = 0;
        char *save = NULL;
        for (char *t = strtok_r(f.te, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            while (*t == ' ' || *t == '\t') t++;
            size_t l = strlen(t);
            while (l && (t[l - 1] == ' ' || t[l - 1] == '\t')) t[--l] = '\0';
            n++;
            chunked_last = !strcasecmp(t, "chunked");
            if (!chunked_last) other = 1;
        }
        if (chunked_last && n == 1) return 0;
        if (chunked_last && other)
            return snprintf(msg, cap, "Transfer-Encoding other than chunked is not supported"),
                   501;
        return snprintf(msg, cap, "invalid Transfer-Encoding"), 400;
    }
    if (f.n_cl) {
        const char *p = f.cl ? f.cl : "";
        unsigned long long v = 0;
        int digits = 0, over = 0;
        for (; *p >= '0' && *p <= '9'; p++, digits++) {
            if (v > (~0ULL - 9) / 10) over = 1;
            else v = v * 10 + (unsigned)(*p - '0');
        }
        if (!digits || *p) return snprintf(msg, cap, "invalid Content-Length"), 400;
        if (over || v > max_body)
            return snprintf(msg, cap, "body of %s bytes is over the limit of %zu bytes",
                            over ? "too many" : f.cl, max_body),
                   413;
        *content_length = (long long)v;
    }
    return 0;
}

static enum MHD_Result on_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value) {
    (void)kind;
    fr_req *rq = cls;
    fr_err err = {0};
    fr_server *srv = rq->srv;
    fr_status s = fr_req_opts_query(&rq->opts, key ? key : "", value, srv->info.classes,
                                    srv->info.num_classes, &err);
    if (s) {
        rq->job_status = fr_req_http_status(s); // reused as "query failed" until admission
        snprintf(rq->err, sizeof rq->err, "%s", err.msg);
        return MHD_NO;
    }
    return MHD_YES;
}

// ---------------------------------------------------------------------------------------
// POST /v1/detect

static enum MHD_Result detect_start(fr_req *rq, struct MHD_Connection *c) {
    fr_server *srv = rq->srv;
    char msg[256];
    // From here on an early answer leaves the body unread: close afterwards.
    rq->close_after = 1;
    if (!is_ready(srv)) return queue_not_ready(rq);
    long long cl;
    int st = check_framing(c, srv->opts.max_body, msg, sizeof msg, &cl);
    if (st) return queue_error(rq, st, msg, NULL);
    fr_err err = {0};
    fr_status s = fr_req_content_type(
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
        &rq->kind, rq->boundary, &err);
    if (s) return queue_error(rq, fr_req_http_status(s), err.msg, NULL);
    if (cl == 0) return queue_error(rq, 400, "empty body", NULL);
    rq->job_status = 0;
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, on_query, rq);
    if (rq->job_status) return queue_error(rq, rq->job_status, rq->err, NULL);
    // A full queue is answered before the body only when the client waits for "100
    // Continue" (then nothing is in flight and the connection stays clean). Otherwise the
    // body is read and admission is decided at its end: answering early would make the
    // server close while the client still sends, and the client may then see a reset
    // instead of the 503 (and lose its keep-alive connection).
    const char *expect = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
    if (expect && !strcasecmp(expect, "100-continue")) {
        fr_queue *q = atomic_load(&srv->queue);
        int waiting = 0;
        fr_queue_stats(q, &waiting, NULL);
        if (waiting >= srv->opts.queue) return queue_error(rq, 503, "server is busy", NULL);
    }
    fr_body_init(&rq->body, srv->opts.max_body);
    if (cl > 0) { // one allocation for bodies up to 4 MB, doubling after
        s = fr_body_reserve(&rq->body, (size_t)cl < (4u << 20) ? (size_t)cl : (4u << 20), &err);
        if (s) return queue_error(rq, fr_req_http_status(s), err.msg, NULL);
    }
    rq->state = RQ_RECEIVING;
    rq->close_after = 0;
    return MHD_YES;
}

// libmicrohttpd 0.9.75 cannot queue an answer while a body is still arriving: an upload
// over the cap is discarded up to another cap's worth and answered 413 at its end (H6),
// dropped beyond that; an upload past its deadline is dropped (H14).
static enum MHD_Result detect_data(fr_req *rq, const char *data, size_t *size) {
    fr_server *srv = rq->srv;
    size_t n = *size;
    *size = 0;
    rq->bytes_in += n;
    if (fr_server_now() - rq->t_start > srv->opts.upload_deadline_s) {
        snprintf(rq->err, sizeof rq->err, "upload took longer than %g s; connection dropped",
                 srv->opts.upload_deadline_s);
        return MHD_NO;
    }
    if (rq->fail_status) {
        rq->discarded += n;
        if (rq->discarded <= srv->opts.max_body) return MHD_YES;
        snprintf(rq->err, sizeof rq->err, "body over twice the limit of %zu bytes; connection "
                 "dropped", srv->opts.max_body);
        return MHD_NO;
    }
    fr_err err = {0};
    fr_status s = fr_body_append(&rq->body, data, n, &err);
    if (s) {
        fr_body_free(&rq->body);
        rq->fail_status = fr_req_http_status(s);
        snprintf(rq->err, sizeof rq->err, "%s", err.msg);
    }
    return MHD_YES;
}

static enum MHD_Result detect_end(fr_req *rq, struct MHD_Connection *c) {
    fr_server *srv = rq->srv;
    fr_err err = {0};
    if (rq->fail_status) {
        char msg[sizeof rq->err];
        memcpy(msg, rq->err, sizeof msg);
        rq->close_after = 1;
        return queue_error(rq, rq->fail_status, msg, NULL);
    }
    if (!rq->body.len) return queue_error(rq, 400, "empty body", NULL);
    if (rq->kind == FR_BODY_MULTIPART) {
        fr_multipart mp;
        fr_status s = fr_multipart_parse(rq->body.data, rq->body.len, rq->boundary, &mp, &err);
        if (!s && mp.options)
            s = fr_req_opts_json(&rq->opts, mp.options, mp.options_len, srv->info.classes,
                                 srv->info.num_classes, &err);
        if (s) return queue_error(rq, fr_req_http_status(s), err.msg, NULL);
        rq->img = mp.image;
        rq->img_len = mp.image_len;
    } else {
        rq->img = rq->body.data;
        rq->img_len = rq->body.len;
    }
    fr_queue *q = atomic_load(&srv->queue);
    // Counted before the reservation, so the drain never sees 0 pending while a reserved
    // request is on its way to the queue.
    atomic_fetch_add(&srv->pending, 1);
    fr_queue_admit a = fr_queue_reserve(q);
    if (a != FR_QUEUE_OK) {
        atomic_fetch_sub(&srv->pending, 1);
        return queue_error(rq, 503, a == FR_QUEUE_FULL ? "server is busy" : "server is shutting down",
                           NULL);
    }
    rq->admitted = 1;
    rq->state = RQ_WAITING;
    rq->t_queued = fr_server_now();
    // Suspend before the job is visible, so a worker's resume always follows it.
    MHD_suspend_connection(c);
    fr_queue_submit(q, rq);
    return MHD_YES;
}

static enum MHD_Result detect_answer(fr_req *rq) {
    if (!atomic_load_explicit(&rq->job_done, memory_order_acquire)) return MHD_YES;
    if (rq->job_status == 200) {
        char *body = rq->job_json;
        rq->job_json = NULL;
        return queue(rq, 200, body, rq->job_len, 1, k_json, NULL);
    }
    char msg[sizeof rq->err];
    memcpy(msg, rq->err, sizeof msg);
    return queue_error(rq, rq->job_status, msg, NULL);
}

// Worker side: runs in a queue worker thread.
static void job_finish(fr_req *rq) {
    fr_body_free(&rq->body); // the bytes are no longer needed; free before answering
    struct MHD_Connection *c = rq->conn;
    atomic_store_explicit(&rq->job_done, 1, memory_order_release);
    MHD_resume_connection(c); // rq may be freed from here on
}

static void job_run(void *user, void *state, void *job) {
    fr_server *srv = user;
    fr_req *rq = job;
    rq->queue_ms = (fr_server_now() - rq->t_queued) * 1000.0;
    fr_detect_opts d;
    fr_req_opts_to_detect(&rq->opts, &d);
    fr_engine_result res;
    memset(&res, 0, sizeof res);
    fr_err err = {0};
    fr_status s = srv->eng->detect(srv->eng->user, state, rq->img, rq->img_len, &d, &res, &err);
    if (!s && !res.json) s = fr_fail(&err, FR_ERR_INTERNAL, "engine returned no answer");
    if (!s) {
        rq->job_status = 200;
        rq->job_json = res.json;
        rq->job_len = res.len;
        rq->job_dets = res.num_detections;
        fr_metrics_inference(srv->metrics, res.ms, res.num_detections);
    } else {
        fr_free(res.json);
        rq->job_status = fr_req_http_status(s);
        snprintf(rq->err, sizeof rq->err, "%s", err.msg[0] ? err.msg : fr_status_name(s));
    }
    job_finish(rq);
}

static void job_drop(void *user, void *job) {
    (void)user;
    fr_req *rq = job;
    rq->job_status = 503;
    snprintf(rq->err, sizeof rq->err, "server is shutting down");
    job_finish(rq);
}

static fr_status job_worker_init(void *user, int index, void **state, fr_err *err) {
    (void)index;
    fr_server *srv = user;
    return srv->eng->worker_new(srv->eng->user, state, err);
}

static void job_worker_free(void *user, void *state) {
    fr_server *srv = user;
    srv->eng->worker_free(srv->eng->user, state);
}

void fr_http_queue_fns(fr_server *srv, fr_queue_fns *fns) {
    fns->user = srv;
    fns->worker_init = job_worker_init;
    fns->worker_free = job_worker_free;
    fns->run = job_run;
    fns->drop = job_drop;
}

// ---------------------------------------------------------------------------------------
// GET routes

static enum MHD_Result get_route(fr_req *rq) {
    fr_server *srv = rq->srv;
    size_t len;
    const char *text;
    switch (rq->route) {
    case FR_ROUTE_ROOT:
        text = fr_page_html(&len);
        return queue(rq, 200, (char *)text, len, 0, "text/html; charset=utf-8", NULL);
    case FR_ROUTE_OPENAPI:
        text = fr_page_openapi(&len);
        return queue(rq, 200, (char *)text, len, 0, "application/yaml", NULL);
    case FR_ROUTE_HEALTHZ: return queue_static(rq, 200, "{\"status\": \"ok\"}", k_json);
    case FR_ROUTE_READYZ:
        if (!is_ready(srv)) return queue_not_ready(rq);
        return queue_static(rq, 200, "{\"status\": \"ready\"}", k_json);
    case FR_ROUTE_MODEL:
        if (!atomic_load(&srv->ready)) return queue_not_ready(rq);
        return queue_static(rq, 200, srv->info.model_json, k_json);
    case FR_ROUTE_METRICS: {
        fr_metrics_gauges g = {0};
        fr_queue *q = atomic_load(&srv->queue);
        g.ready = is_ready(srv);
        g.draining = atomic_load(&srv->draining);
        g.workers = srv->opts.workers;
        g.queue_capacity = srv->opts.queue;
        if (q) fr_queue_stats(q, &g.queue_depth, &g.inflight);
        g.open_connections = atomic_load(&srv->open_conns);
        g.active_requests = atomic_load(&srv->active);
        g.log_errors = atomic_load(&srv->log.errors);
        char *body = fr_metrics_render(srv->metrics, &g, &len);
        if (!body) return queue_error(rq, 503, "out of memory", NULL);
        return queue(rq, 200, body, len, 1, "text/plain; version=0.0.4; charset=utf-8", NULL);
    }
    default: return queue_error(rq, 404, "not found", NULL);
    }
}

// ---------------------------------------------------------------------------------------
// libmicrohttpd callbacks

static void fill_remote(fr_req *rq, struct MHD_Connection *c) {
    snprintf(rq->remote, sizeof rq->remote, "?");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, rq->remote,
                  sizeof rq->remote);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, rq->remote,
                  sizeof rq->remote);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size,
                                  void **con_cls) {
    (void)version;
    fr_server *srv = cls;
    fr_req *rq = *con_cls;
    if (!rq) {
        rq = fr_calloc(1, sizeof *rq);
        if (!rq) return MHD_NO; // out of memory: drop the connection
        *con_cls = rq;
        rq->srv = srv;
        rq->conn = c;
        rq->t_start = fr_server_now();
        rq->id = atomic_fetch_add(&srv->next_id, 1) + 1;
        rq->route = fr_route_lookup(url);
        rq->queue_ms = -1;
        rq->job_dets = -1;
        snprintf(rq->method, sizeof rq->method, "%s", method ? method : "");
        snprintf(rq->path, sizeof rq->path, "%s", url ? url : "");
        fr_req_opts_init(&rq->opts);
        fill_remote(rq, c);
        atomic_fetch_add(&srv->active, 1);

        int is_get = !strcmp(rq->method, "GET") || !strcmp(rq->method, "HEAD");
        int is_post = !strcmp(rq->method, "POST");
        // a request with a body answered before reading it: close the connection after
        rq->close_after = !is_get;
        if (rq->route == FR_ROUTE_OTHER) return queue_error(rq, 404, "not found", NULL);
        if (rq->route == FR_ROUTE_DETECT) {
            if (!is_post) return queue_error(rq, 405, "method not allowed", "POST");
            return detect_start(rq, c);
        }
        if (!is_get) return queue_error(rq, 405, "method not allowed", "GET, HEAD");
        // GET routes answer once the (normally empty) body has been read
        return MHD_YES;
    }
    if (rq->responded) { // answered early: ignore the rest of the body
        *upload_size = 0;
        return MHD_YES;
    }
    if (rq->route != FR_ROUTE_DETECT) {
        if (*upload_size) { // GET with a body: ignored
            *upload_size = 0;
            return MHD_YES;
        }
        return get_route(rq);
    }
    if (rq->state == RQ_RECEIVING && *upload_size) return detect_data(rq, upload_data, upload_size);
    if (rq->state == RQ_RECEIVING) return detect_end(rq, c);
    return detect_answer(rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)c;
    fr_server *srv = cls;
    fr_req *rq = *con_cls;
    if (!rq) return;
    *con_cls = NULL;
    const char *outcome = "ok";
    switch (toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK: outcome = "ok"; break;
    case MHD_REQUEST_TERMINATED_WITH_ERROR: outcome = "error"; break;
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED: outcome = "timeout"; break;
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN: outcome = "shutdown"; break;
    case MHD_REQUEST_TERMINATED_READ_ERROR: outcome = "read_error"; break;
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT: outcome = "client_abort"; break;
    }
    if (!rq->responded) fr_metrics_aborted(srv->metrics, rq->route);
    fr_access_entry e = {
        .id = rq->id,
        .remote = rq->remote,
        .method = rq->method,
        .path = rq->path,
        .status = rq->responded ? rq->status : 0,
        .outcome = outcome,
        .bytes_in = rq->bytes_in,
        .bytes_out = rq->bytes_out,
        .ms = (fr_server_now() - rq->t_start) * 1000.0,
        .queue_ms = rq->queue_ms,
        .detections = rq->status == 200 ? rq->job_dets : -1,
        .error = rq->err[0] ? rq->err : NULL,
    };
    fr_accesslog_write(&srv->log, &e);
    if (rq->admitted) atomic_fetch_sub(&srv->pending, 1);
    atomic_fetch_sub(&srv->active, 1);
    fr_body_free(&rq->body);
    fr_req_opts_free(&rq->opts);
    fr_free(rq->job_json);
    fr_free(rq);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    (void)c;
    (void)socket_context;
    fr_server *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) atomic_fetch_add(&srv->open_conns, 1);
    else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) atomic_fetch_sub(&srv->open_conns, 1);
}

// Percent-decoding of the path and query, in place, except %00: a NUL would cut the string
// ("/%00" must not become "/"), so it stays literal and fails as an unknown path or value.
static size_t on_unescape(void *cls, struct MHD_Connection *c, char *s) {
    (void)cls;
    (void)c;
    char *w = s;
    for (const char *r = s; *r;) {
        if (r[0] == '%' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2]) &&
            !(r[1] == '0' && r[2] == '0')) {
            char hex[3] = {r[1], r[2], 0};
            *w++ = (char)strtol(hex, NULL, 16);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = '\0';
    fr_log(FR_LOG_DEBUG, "libmicrohttpd: %s", buf);
}

fr_status fr_http_start(fr_server *srv, fr_err *err) {
    const fr_server_opts *o = &srv->opts;
    struct MHD_OptionItem extra[] = {
        {o->http_threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END,
         (intptr_t)o->http_threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,
        MHD_OPTION_LISTEN_SOCKET, srv->listen_fd,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, srv, MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)o->max_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->connection_timeout_s,
        MHD_OPTION_STRICT_FOR_CLIENT, (int)1, MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, srv,
        MHD_OPTION_ARRAY, extra, MHD_OPTION_END);
    if (!srv->daemon) return fr_fail(err, FR_ERR_IO, "cannot start the HTTP server");
    return FR_OK;
}

void fr_http_stop(fr_server *srv) {
    if (!srv->daemon) return;
    MHD_stop_daemon(srv->daemon);
    srv->daemon = NULL;
    srv->listen_fd = -1; // closed by libmicrohttpd
}
