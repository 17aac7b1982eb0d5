// server.c - fr_server_run: listening socket, signals, background model load, drain and
// shutdown (the life cycle in server.h). The HTTP side is in http.c.
//
// Signals: OpenBLAS starts its threads before main, with signals unblocked, so blocking
// SIGTERM and using sigwait cannot work; a handler writes the signal number to a self-pipe
// and the main thread polls it. The pipe's write end is this program's one global besides
// the log callback and test hooks: a signal handler has no other way to reach it.
// This also makes the process correct as PID 1 (explicit handlers, not default actions).
#include "internal.h"

#include "core/alloc.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int g_signal_fd = -1; // write end of the self-pipe, for the signal handler only

void fr_server_opts_default(fr_server_opts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->workers = 1;
    o->queue = 8;
    o->max_body = (size_t)100 * 1000 * 1000;
    o->max_connections = 256;
    o->max_per_ip = 128;
    o->connection_timeout_s = 10;
    o->upload_deadline_s = 60;
    o->drain_timeout_s = 8;
    o->http_threads = 2;
    o->retry_after_s = 1;
    o->access_log = NULL;
    o->worker_stack = 0;
}

double fr_server_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void on_signal(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (g_signal_fd >= 0) {
        ssize_t w = write(g_signal_fd, &b, 1);
        (void)w; // a full pipe already holds a wake-up
    }
    errno = saved;
}

static fr_status check_opts(const fr_server_opts *o, fr_err *err) {
    if (!o->host || !*o->host) return fr_fail(err, FR_ERR_INVALID, "--host is empty");
    if (o->port < 0 || o->port > 65535)
        return fr_fail(err, FR_ERR_INVALID, "--port must be in [0, 65535]");
    if (o->workers < 1 || o->workers > 256)
        return fr_fail(err, FR_ERR_INVALID, "--workers must be in [1, 256]");
    if (o->queue < 1 || o->queue > 65536)
        return fr_fail(err, FR_ERR_INVALID, "--queue must be in [1, 65536]");
    if (o->max_body < 1) return fr_fail(err, FR_ERR_INVALID, "--max-body must be positive");
    if (o->max_connections < 1 || o->max_connections > 65536)
        return fr_fail(err, FR_ERR_INVALID, "--max-connections must be in [1, 65536]");
    if (o->max_per_ip < 0 || o->max_per_ip > 65536)
        return fr_fail(err, FR_ERR_INVALID, "--max-connections-per-ip must be in [0, 65536]");
    if (o->connection_timeout_s < 1 || o->connection_timeout_s > 3600)
        return fr_fail(err, FR_ERR_INVALID, "--connection-timeout must be in [1, 3600] s");
    if (!(o->upload_deadline_s > 0 && o->upload_deadline_s <= 86400))
        return fr_fail(err, FR_ERR_INVALID, "--upload-deadline must be in (0, 86400] s");
    if (!(o->drain_timeout_s >= 0 && o->drain_timeout_s <= 3600))
        return fr_fail(err, FR_ERR_INVALID, "--drain-timeout must be in [0, 3600] s");
    if (o->http_threads < 1 || o->http_threads > 64)
        return fr_fail(err, FR_ERR_INVALID, "--http-threads must be in [1, 64]");
    if (o->retry_after_s < 0 || o->retry_after_s > 3600)
        return fr_fail(err, FR_ERR_INVALID, "--retry-after must be in [0, 3600] s");
    return FR_OK;
}

// Binds and listens; a port in use is reported here (catalogue P8).
static fr_status listen_on(fr_server *srv, fr_err *err) {
    const char *host = srv->opts.host;
    char port[16];
    snprintf(port, sizeof port, "%d", srv->opts.port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai)
        return fr_fail(err, FR_ERR_IO, "cannot resolve --host '%s': %s", host, gai_strerror(gai));
    int fd = -1, last = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            last = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 511) == 0) break;
        last = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return fr_fail(err, FR_ERR_IO, "cannot listen on %s:%d: %s", host, srv->opts.port,
                       strerror(last));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    srv->port = srv->opts.port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            srv->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    srv->listen_fd = fd;
    return FR_OK;
}

typedef struct {
    fr_server *srv;
    int wake_fd;
    pthread_t tid;
    atomic_int done;
    fr_status status;
    fr_err err;
    int loaded; // engine->load succeeded (unload needed)
} loader;

static void *load_main(void *arg) {
    loader *L = arg;
    fr_server *srv = L->srv;
    double t0 = fr_server_now();
    fr_status s = srv->eng->load(srv->eng->user, &srv->info, &L->err);
    if (!s) {
        L->loaded = 1;
        fr_queue_fns fns;
        fr_http_queue_fns(srv, &fns);
        fr_queue *q = NULL;
        s = fr_queue_new(&q, srv->opts.workers, srv->opts.queue, srv->opts.worker_stack, &fns,
                         &L->err);
        if (!s) {
            atomic_store(&srv->queue, q);
            atomic_store(&srv->ready, 1);
            fr_log(FR_LOG_INFO, "model '%s' ready (%d classes, %d worker(s)) in %.1f s",
                   srv->info.name ? srv->info.name : "?", srv->info.num_classes,
                   srv->opts.workers, fr_server_now() - t0);
        }
    }
    L->status = s;
    atomic_store(&L->done, 1);
    unsigned char b = 'L';
    ssize_t w = write(L->wake_fd, &b, 1);
    (void)w;
    return NULL;
}

// Waits up to `seconds` for a byte on fd; returns the byte, 0 on timeout.
static int wait_byte(int fd, double seconds) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int ms = seconds <= 0 ? 0 : (int)(seconds * 1000.0 + 0.5);
    int r = poll(&p, 1, ms);
    if (r <= 0) return 0;
    unsigned char b;
    return read(fd, &b, 1) == 1 ? b : 0;
}

int fr_server_run(const fr_server_opts *opts, const fr_engine *engine) {
    fr_err err = {0};
    if (check_opts(opts, &err)) {
        fr_log(FR_LOG_ERROR, "%s", err.msg);
        return 1;
    }
    // Heap, not stack: if the drain is abandoned, worker threads still use it.
    fr_server *srv = fr_calloc(1, sizeof *srv);
    loader *L = fr_calloc(1, sizeof *L);
    int pipefd[2] = {-1, -1};
    if (!srv || !L || pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) != 0) {
        fr_log(FR_LOG_ERROR, "out of resources starting the server");
        fr_free(srv);
        fr_free(L);
        return 1;
    }
    srv->opts = *opts;
    srv->eng = engine;
    srv->listen_fd = -1;
    int rc = 1, load_started = 0;
    struct sigaction sa, old_term, old_int, old_pipe;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, &old_pipe); // catalogue P4
    g_signal_fd = pipefd[1];
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);

    if (!(srv->metrics = fr_metrics_new())) {
        fr_log(FR_LOG_ERROR, "out of memory");
        goto done;
    }
    if (fr_accesslog_open(&srv->log, opts->access_log, &err) || listen_on(srv, &err) ||
        fr_http_start(srv, &err)) {
        fr_log(FR_LOG_ERROR, "%s", err.msg);
        goto done;
    }
    int v6 = strchr(opts->host, ':') != NULL;
    fr_log(FR_LOG_INFO, "listening on http://%s%s%s:%d (workers %d, queue %d)", v6 ? "[" : "",
           opts->host, v6 ? "]" : "", srv->port, opts->workers, opts->queue);

    L->srv = srv;
    L->wake_fd = pipefd[1];
    if (pthread_create(&L->tid, NULL, load_main, L) != 0) {
        fr_log(FR_LOG_ERROR, "cannot start the model loader thread");
        goto done;
    }
    load_started = 1;

    // Serve until a signal, or until the load fails.
    int sig = 0;
    for (;;) {
        int b = wait_byte(pipefd[0], 1.0);
        if (b == SIGTERM || b == SIGINT) {
            sig = b;
            break;
        }
        if (atomic_load(&L->done) && L->status) {
            fr_log(FR_LOG_ERROR, "%s", L->err.msg);
            goto done;
        }
    }

    // Drain (catalogue P1-P3).
    fr_log(FR_LOG_INFO, "%s: draining (deadline %g s)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
           opts->drain_timeout_s);
    atomic_store(&srv->draining, 1);
    double deadline = fr_server_now() + opts->drain_timeout_s;
    int closed = 0;
    for (;;) {
        if (!closed && atomic_load(&L->done)) {
            fr_queue *q = atomic_load(&srv->queue);
            if (q) fr_queue_close(q); // waiting requests are answered 503
            closed = 1;
        }
        if (closed && atomic_load(&srv->pending) == 0) break;
        double left = deadline - fr_server_now();
        if (left <= 0) break;
        int b = wait_byte(pipefd[0], left < 0.02 ? left : 0.02);
        if (b == SIGTERM || b == SIGINT) {
            fr_log(FR_LOG_WARN, "second signal: exiting now");
            rc = FR_SERVER_ABANDONED;
            goto abandon;
        }
    }
    if (!closed || atomic_load(&srv->pending) > 0) {
        // Requests still running (or the model still loading): their threads use srv.
        int waiting = 0, running = 0;
        fr_queue *q = atomic_load(&srv->queue);
        if (q) fr_queue_stats(q, &waiting, &running);
        if (closed && running == 0) {
            // only answers still being sent to slow readers: a clean stop closes them
        } else {
            fr_log(FR_LOG_WARN, "drain deadline passed with %d request(s) running; exiting",
                   running);
            rc = FR_SERVER_ABANDONED;
            goto abandon;
        }
    }
    rc = 0;
    fr_log(FR_LOG_INFO, "drained; exiting");

done:
    if (load_started) pthread_join(L->tid, NULL);
    fr_http_stop(srv);
    fr_queue_free(atomic_load(&srv->queue));
    if (L->loaded && engine->unload) engine->unload(engine->user);
    if (srv->listen_fd >= 0) close(srv->listen_fd);
    fr_accesslog_close(&srv->log);
    fr_metrics_free(srv->metrics);
    fr_free(srv);
    fr_free(L);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    g_signal_fd = -1;
    close(pipefd[0]);
    close(pipefd[1]);
    return rc;

abandon:
    // Leave everything in place: worker threads may still be inside the engine.
    return rc;
}
