// serve.c - `frcnn serve`: options, the model engine, and the HTTP server (src/server).
// `frcnn serve --healthcheck [URL]` is the probe for Docker's HEALTHCHECK (no curl needed).
#include "cli.h"
#include "core/log.h"
#include "server/server.h"

#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: frcnn serve -m MODEL [options]\n"
            "       frcnn serve --healthcheck [URL]\n"
            "\n"
            "Serves the HTTP API: POST /v1/detect (raw image/jpeg, image/png,\n"
            "application/octet-stream body, or multipart/form-data with an `image` part and an\n"
            "optional `options` JSON part; query: score_threshold, max_detections, classes),\n"
            "GET /healthz, /readyz, /v1/model, /metrics (Prometheus), /openapi.yaml and / (a page\n"
            "to try it). SIGTERM/SIGINT: /readyz turns 503, new requests get 503, running ones\n"
            "finish, exit 0 within --drain-timeout. One JSON access-log line per request.\n"
            "\n"
            "  -m, --model FILE             weights (.safetensors) with their frcnn.config\n"
            "      --config FILE            JSON configuration overriding the model's own\n"
            "      --fast                   fast mode: Winograd convolutions, about 1.3x faster on\n"
            "                               full-size models, boxes and scores slightly different\n"
            "      --host ADDR              listen address (default 127.0.0.1; 0.0.0.0 or :: for all)\n"
            "      --port N                 TCP port (default 8080; 0 = any free port, logged)\n"
            "      --workers N              inference workers (default 1, using every core)\n"
            "      --threads N              compute threads per worker (default: cores / workers)\n"
            "      --queue N                requests allowed to wait for a worker (default 8);\n"
            "                               beyond that: 503 with Retry-After at once\n"
            "      --max-body SIZE          request body cap, bytes or K/M/G (default 100M)\n"
            "      --max-pixels N           decoded image cap, width x height (default 40000000)\n"
            "      --max-side N             image side cap in pixels (default 16384)\n"
            "      --max-connections N      open TCP connections (default 256)\n"
            "      --max-connections-per-ip N  per client address (default 128; 0 = no limit;\n"
            "                               raise it behind a proxy or ingress)\n"
            "      --connection-timeout SEC idle connection timeout: headers, body or answer\n"
            "                               stalled this long close it (default 10)\n"
            "      --upload-deadline SEC    time allowed for a whole request body (default 60)\n"
            "      --drain-timeout SEC      on SIGTERM/SIGINT, time allowed for running requests\n"
            "                               (default 8, under Docker's 10 s stop grace period)\n"
            "      --http-threads N         HTTP event threads (default 2)\n"
            "      --retry-after SEC        Retry-After of 503 answers (default 1)\n"
            "      --access-log FILE        JSON lines: FILE (appended), - (stderr, default), none\n"
            "      --log-level LEVEL        debug, info (default), warn, error\n"
            "      --healthcheck [URL]      GET URL (default http://127.0.0.1:8080/healthz) and\n"
            "                               exit 0 on a 200 answer within 3 s, else 1\n"
            "  -h, --help                   this text\n"
            "\n"
            "Limits not bounded by these options: a client that keeps sending header bytes\n"
            "slower than the idle timeout is bounded only by the connection limits\n"
            "(libmicrohttpd 0.9.75 has no total header deadline).\n"
            "Exit status: 0 after a clean shutdown, 1 on failure (port in use, model not\n"
            "loadable), 2 on bad usage.\n");
}

static int parse_long(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "frcnn serve: %s must be an integer in [%ld, %ld], got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_seconds(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "frcnn serve: %s must be seconds in [%g, %g], got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

// Bytes with an optional K, M or G suffix (powers of 1000).
static int parse_size(const char *opt, const char *s, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned long long mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1000ULL, end++;
    else if (*end == 'M' || *end == 'm') mul = 1000000ULL, end++;
    else if (*end == 'G' || *end == 'g') mul = 1000000000ULL, end++;
    if (!*s || s[0] == '-' || *end || errno || v == 0 || v > (8ULL << 30) / mul) {
        fprintf(stderr, "frcnn serve: %s must be a size in bytes (K, M, G suffixes) up to 8G, got '%s'\n", opt, s);
        return -1;
    }
    *out = (size_t)(v * mul);
    return 0;
}

int fr_cli_serve(int argc, char **argv) {
    fr_server_opts o;
    fr_server_opts_default(&o);
    fr_image_limits lim;
    fr_image_limits_default(&lim);
    const char *model = NULL, *config = NULL, *probe = NULL;
    int do_probe = 0, fast = 0;
    long threads = 0, v;
    double d;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char opt[64];
        const char *val = NULL;
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        if (eq && (size_t)(eq - a) < sizeof opt) {
            memcpy(opt, a, (size_t)(eq - a));
            opt[eq - a] = '\0';
            val = eq + 1;
            a = opt;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--fast") && !val) {
            fast = 1;
            continue;
        }
        if (!strcmp(a, "--healthcheck")) {
            do_probe = 1;
            if (val) probe = val;
            else if (i + 1 < argc && argv[i + 1][0] != '-') probe = argv[++i];
            continue;
        }
        if (a[0] != '-') {
            fprintf(stderr, "frcnn serve: unexpected argument '%s'\n", a);
            return 2;
        }
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "frcnn serve: %s needs a value\n", a);
                return 2;
            }
            val = argv[++i];
        }
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = val;
        else if (!strcmp(a, "--config")) config = val;
        else if (!strcmp(a, "--host")) o.host = val;
        else if (!strcmp(a, "--port")) {
            if (parse_long(a, val, 0, 65535, &v)) return 2;
            o.port = (int)v;
        } else if (!strcmp(a, "--workers")) {
            if (parse_long(a, val, 1, 256, &v)) return 2;
            o.workers = (int)v;
        } else if (!strcmp(a, "--threads")) {
            if (parse_long(a, val, 1, 1024, &threads)) return 2;
        } else if (!strcmp(a, "--queue")) {
            if (parse_long(a, val, 1, 65536, &v)) return 2;
            o.queue = (int)v;
        } else if (!strcmp(a, "--max-body")) {
            if (parse_size(a, val, &o.max_body)) return 2;
        } else if (!strcmp(a, "--max-pixels")) {
            if (parse_long(a, val, 1, 1000000000L, &v)) return 2;
            lim.max_pixels = v;
        } else if (!strcmp(a, "--max-side")) {
            if (parse_long(a, val, 1, 1 << 20, &v)) return 2;
            lim.max_side = (int)v;
        } else if (!strcmp(a, "--max-connections")) {
            if (parse_long(a, val, 1, 65536, &v)) return 2;
            o.max_connections = (int)v;
        } else if (!strcmp(a, "--max-connections-per-ip")) {
            if (parse_long(a, val, 0, 65536, &v)) return 2;
            o.max_per_ip = (int)v;
        } else if (!strcmp(a, "--connection-timeout")) {
            if (parse_long(a, val, 1, 3600, &v)) return 2;
            o.connection_timeout_s = (int)v;
        } else if (!strcmp(a, "--upload-deadline")) {
            if (parse_seconds(a, val, 0.001, 86400, &d)) return 2;
            o.upload_deadline_s = d;
        } else if (!strcmp(a, "--drain-timeout")) {
            if (parse_seconds(a, val, 0, 3600, &d)) return 2;
            o.drain_timeout_s = d;
        } else if (!strcmp(a, "--http-threads")) {
            if (parse_long(a, val, 1, 64, &v)) return 2;
            o.http_threads = (int)v;
        } else if (!strcmp(a, "--retry-after")) {
            if (parse_long(a, val, 0, 3600, &v)) return 2;
            o.retry_after_s = (int)v;
        } else if (!strcmp(a, "--access-log")) {
            o.access_log = val;
        } else if (!strcmp(a, "--log-level")) {
            if (!strcmp(val, "debug")) fr_log_set_level(FR_LOG_DEBUG);
            else if (!strcmp(val, "info")) fr_log_set_level(FR_LOG_INFO);
            else if (!strcmp(val, "warn")) fr_log_set_level(FR_LOG_WARN);
            else if (!strcmp(val, "error")) fr_log_set_level(FR_LOG_ERROR);
            else {
                fprintf(stderr, "frcnn serve: --log-level must be debug, info, warn or error\n");
                return 2;
            }
        } else {
            fprintf(stderr, "frcnn serve: unknown option '%s' (frcnn serve --help)\n", a);
            return 2;
        }
    }
    if (do_probe) return fr_server_probe(probe ? probe : "http://127.0.0.1:8080/healthz", 3.0);
    if (!model) {
        fprintf(stderr, "frcnn serve: -m MODEL is required (frcnn serve --help)\n");
        return 2;
    }
    lim.max_bytes = o.max_body;

    // One worker uses every core; several split them (BLAS and OpenMP threads per worker).
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    if (!threads && o.workers > 1) threads = cores / o.workers > 0 ? cores / o.workers : 1;
    if (threads) openblas_set_num_threads((int)threads);

    // Request bodies and decoded images are large and short-lived: a fixed mmap threshold
    // returns them to the system when freed (glibc's adaptive threshold would keep them in
    // per-thread arenas, and RSS would creep up under load).
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);

    fr_engine eng;
    fr_err err = {0};
    if (fr_engine_model_new(&eng, model, config, fast ? FR_MODEL_FAST : 0, &lim, (int)threads, &err)) {
        fprintf(stderr, "frcnn serve: %s\n", err.msg);
        return 1;
    }
    int rc = fr_server_run(&o, &eng);
    if (rc == FR_SERVER_ABANDONED) {
        // Workers are still inside the model: leave at once, without running library
        // destructors under them (the one place frcnn ends the process itself).
        fflush(NULL);
        _exit(0);
    }
    fr_engine_model_free(&eng);
    return rc;
}
