// test_server.c - `frcnn serve` end to end: the real binary ($BUILD/frcnn, default build)
// with the small test model (tests/data/r101_narrow.safetensors) on 127.0.0.1, posting real
// photos. Checks the answer against the contract and `frcnn detect`, the options, the image
// error mapping with the real decoder (catalogue I1, I2, I5, I7, I8, I17), admission with a
// real model (H17), SIGTERM during inference (P2), SIGTERM as PID 1 (P1), port in use (P8),
// a missing model (W1), usage errors and --healthcheck. The HTTP layer's own rows are in
// test_server_http.c (fake engine).
#include "harness.h"
#include "server/client.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <pthread.h>

static const char *k_model = "tests/data/r101_narrow.safetensors";
static const char *k_photo = "/usr/share/darknet/data/dog.jpg"; // Debian darknet (test deps)
static char g_bin[256];
static int g_seq;

typedef struct {
    pid_t pid;
    int port;
    char log[128], access[128];
} srv;

// Runs argv (NULL-terminated) with stdout+stderr to a log file.
static pid_t spawn(char *const argv[], const char *log) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static void paths(srv *s) {
    mkdir("build", 0755);
    mkdir("build/tests", 0755);
    mkdir("build/tests/tmp", 0755);
    snprintf(s->log, sizeof s->log, "build/tests/tmp/server_%d_%d.log", (int)getpid(), g_seq);
    snprintf(s->access, sizeof s->access, "build/tests/tmp/server_%d_%d.access", (int)getpid(), g_seq++);
}

static int wait_ready(int port) {
    for (int i = 0; i < 1000; i++) {
        tc_resp r;
        int st = tc_get(port, "/readyz", &r);
        tc_resp_free(&r);
        if (st == 200) return 0;
        tc_sleep(0.02);
    }
    return -1;
}

// build/frcnn serve -m MODEL --port 0 --access-log FILE [extra...]
static int start(srv *s, const char *extra1, const char *extra2) {
    memset(s, 0, sizeof *s);
    paths(s);
    char *argv[16] = {g_bin, "serve", "-m", (char *)k_model, "--port", "0", "--access-log", s->access, NULL};
    int n = 8;
    if (extra1) argv[n++] = (char *)extra1;
    if (extra2) argv[n++] = (char *)extra2;
    argv[n] = NULL;
    s->pid = spawn(argv, s->log);
    s->port = tc_wait_port(s->log, s->pid, 20);
    if (s->port <= 0 || wait_ready(s->port)) return -1;
    return 0;
}

static cJSON *post_json(int port, const char *query, const char *ctype, const void *b, size_t n, int *status) {
    tc_resp r;
    *status = tc_post(port, query, ctype, b, n, &r);
    cJSON *j = cJSON_Parse(r.body ? r.body : "");
    tc_resp_free(&r);
    return j;
}

static cJSON *dets_of(cJSON *j) { return cJSON_GetObjectItemCaseSensitive(j, "detections"); }

// The contract's fields, boxes inside the image, scores sorted; labels among `classes`.
static int valid_answer(cJSON *j, int w, int h, cJSON *classes) {
    cJSON *d = dets_of(j), *t = cJSON_GetObjectItemCaseSensitive(j, "timing_ms");
    cJSON *jw = cJSON_GetObjectItemCaseSensitive(j, "width"), *jh = cJSON_GetObjectItemCaseSensitive(j, "height");
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "model")) || !cJSON_IsArray(d) || !cJSON_IsObject(t)) return 0;
    if (!cJSON_IsNumber(jw) || !cJSON_IsNumber(jh) || jw->valueint != w || jh->valueint != h) return 0;
    const char *stages[] = {"decode", "backbone", "rpn", "roi_head", "total"};
    for (int i = 0; i < 5; i++)
        if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(t, stages[i]))) return 0;
    double prev = 2;
    cJSON *x;
    cJSON_ArrayForEach(x, d) {
        cJSON *id = cJSON_GetObjectItemCaseSensitive(x, "class_id"), *lab = cJSON_GetObjectItemCaseSensitive(x, "label");
        cJSON *sc = cJSON_GetObjectItemCaseSensitive(x, "score"), *box = cJSON_GetObjectItemCaseSensitive(x, "box");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(lab) || !cJSON_IsNumber(sc) || cJSON_GetArraySize(box) != 4) return 0;
        cJSON *want = cJSON_GetArrayItem(classes, id->valueint);
        if (!want || strcmp(want->valuestring, lab->valuestring)) return 0;
        if (sc->valuedouble > prev || sc->valuedouble < 0) return 0;
        prev = sc->valuedouble;
        double b[4];
        for (int k = 0; k < 4; k++) b[k] = cJSON_GetArrayItem(box, k)->valuedouble;
        if (!(b[0] >= -0.01 && b[0] <= b[2] && b[2] <= w + 0.01 && b[1] >= -0.01 && b[1] <= b[3] && b[3] <= h + 0.01)) return 0;
    }
    return 1;
}

static int same_det(cJSON *a, cJSON *b) {
    if (strcmp(cJSON_GetObjectItemCaseSensitive(a, "label")->valuestring, cJSON_GetObjectItemCaseSensitive(b, "label")->valuestring)) return 0;
    if (fabs(cJSON_GetObjectItemCaseSensitive(a, "score")->valuedouble - cJSON_GetObjectItemCaseSensitive(b, "score")->valuedouble) > 1e-6) return 0;
    for (int k = 0; k < 4; k++)
        if (fabs(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(a, "box"), k)->valuedouble -
                 cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(b, "box"), k)->valuedouble) > 1e-3)
            return 0;
    return 1;
}

static srv g; // the shared server
static cJSON *g_classes;
static cJSON *g_default; // the answer for the photo with default options
static long g_ok;        // 200 answers to /v1/detect seen by this test

static void load_photo(char **b, size_t *n) {
    *b = tc_slurp(k_photo, n);
}

TEST(test_model_and_photo) {
    tc_resp r;
    CHECK(tc_get(g.port, "/v1/model", &r) == 200);
    cJSON *m = cJSON_Parse(r.body ? r.body : "");
    tc_resp_free(&r);
    g_classes = cJSON_DetachItemFromObjectCaseSensitive(m, "classes");
    CHECK(cJSON_IsArray(g_classes) && cJSON_GetArraySize(g_classes) == cJSON_GetObjectItemCaseSensitive(m, "num_classes")->valueint);
    CHECK(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(m, "config")));
    cJSON_Delete(m);
    char *b;
    size_t n;
    load_photo(&b, &n);
    CHECKF(b != NULL, "%s missing (tools/deps.sh test installs darknet)", k_photo);
    if (!b || !g_classes) return;
    int st;
    g_default = post_json(g.port, NULL, "image/jpeg", b, n, &st);
    CHECK(st == 200 && valid_answer(g_default, 768, 576, g_classes));
    g_ok += st == 200;
    CHECK(cJSON_GetArraySize(dets_of(g_default)) > 0);
    // the same photo through multipart gives the same detections
    size_t mn;
    char *mp = tc_multipart(b, n, NULL, &mn);
    cJSON *j = post_json(g.port, NULL, "multipart/form-data; boundary=XbOuNdArY42", mp, mn, &st);
    g_ok += st == 200;
    int same = st == 200 && cJSON_GetArraySize(dets_of(j)) == cJSON_GetArraySize(dets_of(g_default));
    for (int i = 0; same && i < cJSON_GetArraySize(dets_of(j)); i++)
        same = same_det(cJSON_GetArrayItem(dets_of(j), i), cJSON_GetArrayItem(dets_of(g_default), i));
    CHECK(same);
    cJSON_Delete(j);
    free(mp);
    free(b);
    // `frcnn detect` prints the same detections (CONTRACT.md: same shape as the HTTP answer)
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s detect -m %s %s 2>/dev/null", g_bin, k_model, k_photo);
    FILE *p = popen(cmd, "r");
    static char line[1 << 20];
    size_t got = p ? fread(line, 1, sizeof line - 1, p) : 0;
    line[got] = '\0';
    if (p) pclose(p);
    cJSON *cli = cJSON_Parse(line);
    same = cli && cJSON_GetArraySize(dets_of(cli)) == cJSON_GetArraySize(dets_of(g_default));
    for (int i = 0; same && i < cJSON_GetArraySize(dets_of(cli)); i++)
        same = same_det(cJSON_GetArrayItem(dets_of(cli), i), cJSON_GetArrayItem(dets_of(g_default), i));
    CHECKF(same, "frcnn detect and the server disagree");
    cJSON_Delete(cli);
}

TEST(test_options) {
    if (!g_default) return;
    char *b;
    size_t n;
    load_photo(&b, &n);
    if (!b) return;
    cJSON *def = dets_of(g_default);
    double top = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(def, 0), "score")->valuedouble;
    double thr = top > 0.1 ? top * 0.8 : 0.05;
    // a higher threshold keeps exactly the default detections at or above it (multipart)
    char opts[128];
    snprintf(opts, sizeof opts, "{\"score_threshold\": %.6f}", thr);
    size_t mn;
    char *mp = tc_multipart(b, n, opts, &mn);
    int st;
    cJSON *j = post_json(g.port, NULL, "multipart/form-data; boundary=XbOuNdArY42", mp, mn, &st);
    g_ok += st == 200;
    int k = 0;
    cJSON *x;
    cJSON_ArrayForEach(x, def) k += cJSON_GetObjectItemCaseSensitive(x, "score")->valuedouble >= thr;
    CHECKF(st == 200 && cJSON_GetArraySize(dets_of(j)) == k, "%d detections, %d expected", cJSON_GetArraySize(dets_of(j)), k);
    for (int i = 0; st == 200 && i < k && i < cJSON_GetArraySize(dets_of(j)); i++)
        CHECK(same_det(cJSON_GetArrayItem(dets_of(j), i), cJSON_GetArrayItem(def, i)));
    cJSON_Delete(j);
    free(mp);
    // max_detections and classes in the query: the top ones of that class
    const char *label = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(def, 0), "label")->valuestring;
    char q[256];
    snprintf(q, sizeof q, "?max_detections=2&classes=%s", label);
    for (char *c = q; *c; c++)
        if (*c == ' ') *c = '+';
    j = post_json(g.port, q, "image/jpeg", b, n, &st);
    g_ok += st == 200;
    CHECK(st == 200 && cJSON_GetArraySize(dets_of(j)) >= 1 && cJSON_GetArraySize(dets_of(j)) <= 2);
    cJSON_ArrayForEach(x, dets_of(j)) CHECK(!strcmp(cJSON_GetObjectItemCaseSensitive(x, "label")->valuestring, label));
    if (st == 200) CHECK(same_det(cJSON_GetArrayItem(dets_of(j), 0), cJSON_GetArrayItem(def, 0)));
    cJSON_Delete(j);
    free(b);
}

static uint32_t crc32_of(const unsigned char *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return c ^ 0xffffffffu;
}

static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

TEST(test_image_rows) {
    int st;
    tc_resp r;
    // I5: a 1x1 JPEG; a PNG
    size_t n;
    char *b = tc_slurp("tests/data/images/one.jpg", &n);
    cJSON *j = post_json(g.port, NULL, "image/jpeg", b, n, &st);
    g_ok += st == 200;
    CHECK(st == 200 && valid_answer(j, 1, 1, g_classes));
    cJSON_Delete(j);
    free(b);
    b = tc_slurp("tests/data/images/tiny.png", &n);
    j = post_json(g.port, NULL, "image/png", b, n, &st);
    g_ok += st == 200;
    CHECK(st == 200 && valid_answer(j, 33, 25, g_classes));
    cJSON_Delete(j);
    free(b);
    // I1 / I17: text and GIF are unsupported (415), also when labelled image/jpeg
    CHECK(tc_post(g.port, NULL, "image/jpeg", "hello world", 11, &r) == 415);
    tc_resp_free(&r);
    const unsigned char gif[] = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff,
                                 0x21, 0xf9, 4, 1, 0, 0, 0, 0, 0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 1, 0, 0x3b};
    CHECK(tc_post(g.port, NULL, "image/jpeg", gif, sizeof gif, &r) == 415);
    tc_resp_free(&r);
    // I2: truncated JPEGs
    char *photo;
    load_photo(&photo, &n);
    if (photo) {
        size_t cuts[] = {100, 1000, 5000, 20000, n - 1000};
        for (int i = 0; i < 5; i++) {
            int s = tc_post(g.port, NULL, "image/jpeg", photo, cuts[i], &r);
            CHECKF(s == 400, "prefix %zu -> %d", cuts[i], s);
            tc_resp_free(&r);
        }
        free(photo);
    }
    // I7: a PNG header claiming 30000x30000, rejected before any pixel is decoded
    unsigned char png[8 + 25 + 12] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char *ih = png + 8;
    put32(ih, 13);
    memcpy(ih + 4, "IHDR", 4);
    put32(ih + 8, 30000);
    put32(ih + 12, 30000);
    ih[16] = 8;
    ih[17] = 2;
    put32(ih + 21, crc32_of(ih + 4, 17));
    unsigned char *ie = png + 33;
    put32(ie, 0);
    memcpy(ie + 4, "IEND", 4);
    put32(ie + 8, crc32_of(ie + 4, 4));
    int s7 = tc_post(g.port, NULL, "image/png", png, sizeof png, &r);
    CHECKF(s7 == 413, "I7 -> %d: %s", s7, r.body ? r.body : "");
    tc_resp_free(&r);
    // I8: a JPEG header claiming 8000x8000
    unsigned char jpg[2 + 69 + 19 + 2] = {0xff, 0xd8};
    unsigned char *q = jpg + 2;
    q[0] = 0xff, q[1] = 0xdb, q[2] = 0, q[3] = 67, q[4] = 0; // DQT, table 0, all ones
    memset(q + 5, 1, 64);
    q += 69;
    const unsigned char sof[19] = {0xff, 0xc0, 0, 17, 8, 0x1f, 0x40, 0x1f, 0x40, 3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0};
    memcpy(q, sof, 19);
    q += 19;
    q[0] = 0xff, q[1] = 0xd9;
    int s8 = tc_post(g.port, NULL, "image/jpeg", jpg, sizeof jpg, &r);
    CHECKF(s8 == 413, "I8 -> %d: %s", s8, r.body ? r.body : "");
    tc_resp_free(&r);
    CHECK(tc_healthy(g.port));
}

typedef struct {
    int port;
    int status;
    int retry;
} job;

static void *post_photo(void *arg) {
    job *jb = arg;
    size_t n;
    char *b = tc_slurp(k_photo, &n);
    tc_resp r;
    jb->status = b ? tc_post(jb->port, NULL, "image/jpeg", b, n, &r) : -1;
    char v[16];
    jb->retry = tc_header(&r, "Retry-After", v, sizeof v) != NULL;
    tc_resp_free(&r);
    free(b);
    return NULL;
}

TEST(test_admission_and_drain) {
    // H17 with the real model: 1 worker, 1 waiting; a third concurrent request gets 503.
    // Every detection is made 1.5 s slower (test hook) so the three requests overlap
    // whatever the machine's speed.
    srv s;
    setenv("FRCNN_TEST_DETECT_DELAY_MS", "1500", 1);
    int started = start(&s, "--queue", "1");
    unsetenv("FRCNN_TEST_DETECT_DELAY_MS");
    CHECK(started == 0);
    if (s.port <= 0) return;
    job jobs[3] = {{s.port, 0, 0}, {s.port, 0, 0}, {s.port, 0, 0}};
    pthread_t t[3];
    // each starts once the one before it is running, waiting, or answered 503 (the queue
    // is full): polled rather than slept for, so a loaded host cannot reorder them
    const char *busy_total = "frcnn_http_requests_total{route=\"/v1/detect\",code=\"503\"}";
    for (int i = 0; i < 3; i++) {
        pthread_create(&t[i], NULL, post_photo, &jobs[i]);
        if (i == 0) CHECK(tc_wait_metric(s.port, "frcnn_inflight", 1, 10) == 1);
        if (i == 1) CHECK(tc_wait_metric(s.port, "frcnn_queue_depth", 1, 10) == 1);
        if (i == 2) CHECK(tc_wait_metric(s.port, busy_total, 1, 10) == 1);
    }
    // P2: SIGTERM while one runs and one waits: the running one is answered 200, the
    // waiting one 503, and the process exits 0 before the drain deadline (8 s)
    double t0 = tc_now();
    kill(s.pid, SIGTERM);
    int rc = tc_wait_exit(s.pid, 15, NULL);
    double took = tc_now() - t0;
    int ok = 0, busy = 0, retry = 0;
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        ok += jobs[i].status == 200;
        busy += jobs[i].status == 503;
        retry += jobs[i].status == 503 && jobs[i].retry;
    }
    CHECKF(ok == 1 && busy == 2 && retry == 2, "statuses %d %d %d", jobs[0].status, jobs[1].status, jobs[2].status);
    CHECKF(rc == 0 && took < 8, "exit %d after %.2f s", rc, took);
    CHECK(tc_count_lines(s.log, "drained; exiting") == 1);
}

TEST(test_pid1) {
    // P1: idle SIGTERM as PID 1 of a new PID namespace: exit 0 within 1 s
    srv s;
    memset(&s, 0, sizeof s);
    paths(&s);
    char *argv[] = {"/usr/bin/unshare", "--pid", "--fork", "--mount-proc", "--kill-child", g_bin, "serve", "-m", (char *)k_model,
                    "--port", "0", "--access-log", "none", NULL};
    s.pid = spawn(argv, s.log);
    s.port = tc_wait_port(s.log, s.pid, 20);
    CHECKF(s.port > 0, "unshare --pid --fork --mount-proc failed (see %s)", s.log);
    if (s.port <= 0) {
        tc_wait_exit(s.pid, 1, NULL);
        return;
    }
    CHECK(wait_ready(s.port) == 0);
    // the server is unshare's child, PID 1 in its namespace
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)s.pid, (int)s.pid);
    char *kids = tc_slurp(path, NULL);
    pid_t server = kids ? (pid_t)atoi(kids) : 0;
    free(kids);
    char status[64];
    snprintf(status, sizeof status, "/proc/%d/status", (int)server);
    CHECKF(server > 0 && tc_count_lines(status, "NSpid:") == 1, "unshare %d, server %d (%s)", (int)s.pid, (int)server, path);
    char *st = tc_slurp(status, NULL);
    CHECK(st && strstr(st, "NSpid:") && strstr(strstr(st, "NSpid:"), "\t1\n"));
    free(st);
    double took;
    if (server > 0) kill(server, SIGTERM);
    int rc = tc_wait_exit(s.pid, 5, &took);
    CHECKF(rc == 0 && took < 1.0, "exit %d after %.2f s", rc, took);
}

TEST(test_process_errors) {
    srv s;
    memset(&s, 0, sizeof s);
    // P8: port in use
    paths(&s);
    char port[16];
    snprintf(port, sizeof port, "%d", g.port);
    char *a1[] = {g_bin, "serve", "-m", (char *)k_model, "--port", port, NULL};
    pid_t pid = spawn(a1, s.log);
    double took;
    CHECK(tc_wait_exit(pid, 5, &took) == 1 && took < 3);
    CHECK(tc_count_lines(s.log, "Address already in use") == 1);
    // W1: a missing model: exit 1 naming the file (the port is bound first, then released)
    paths(&s);
    char *a2[] = {g_bin, "serve", "-m", "tests/data/no_such_model.safetensors", "--port", "0", NULL};
    pid = spawn(a2, s.log);
    CHECK(tc_wait_exit(pid, 10, NULL) == 1);
    CHECK(tc_count_lines(s.log, "no_such_model.safetensors") >= 1);
    // usage errors exit 2; --help exits 0 and documents the defaults
    const char *bad[][4] = {{"serve", NULL}, {"serve", "--port", "70000", NULL}, {"serve", "--workers", "0", NULL},
                            {"serve", "--max-body", "12x", NULL}, {"serve", "--bogus", NULL}, {"serve", "-m", NULL}};
    for (int i = 0; i < 6; i++) {
        char *a[8] = {g_bin};
        for (int k = 0; bad[i][k]; k++) a[k + 1] = (char *)bad[i][k];
        paths(&s);
        pid = spawn(a, s.log);
        int rc = tc_wait_exit(pid, 5, NULL);
        CHECKF(rc == 2, "case %d: exit %d", i, rc);
    }
    paths(&s);
    char *a3[] = {g_bin, "serve", "--help", NULL};
    pid = spawn(a3, s.log);
    CHECK(tc_wait_exit(pid, 5, NULL) == 0);
    CHECK(tc_count_lines(s.log, "default 100M") == 1 && tc_count_lines(s.log, "--drain-timeout") >= 1);
    // --healthcheck: 0 against the server, 1 against a closed port
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", g.port);
    char *a4[] = {g_bin, "serve", "--healthcheck", url, NULL};
    paths(&s);
    CHECK(tc_wait_exit(spawn(a4, s.log), 5, NULL) == 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/nope", g.port);
    paths(&s);
    CHECK(tc_wait_exit(spawn(a4, s.log), 5, NULL) == 1);
    int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    bind(probe, (struct sockaddr *)&a, sizeof a);
    socklen_t al = sizeof a;
    getsockname(probe, (struct sockaddr *)&a, &al);
    close(probe);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", ntohs(a.sin_port));
    paths(&s);
    CHECK(tc_wait_exit(spawn(a4, s.log), 5, NULL) == 1);
}

TEST(test_counters) {
    // the server counted what this test saw; one access-log line per request
    double ok = tc_get_metric(g.port, "frcnn_http_requests_total{route=\"/v1/detect\",code=\"200\"}");
    double inf = tc_get_metric(g.port, "frcnn_stage_seconds_count{stage=\"total\"}");
    CHECKF(ok == g_ok && inf == g_ok, "server 200s %g, inferences %g, client 200s %ld", ok, inf, g_ok);
    CHECK(tc_get_metric(g.port, "frcnn_http_requests_aborted_total{route=\"/v1/detect\"}") == 0);
    int lines = tc_wait_lines(g.access, "\"path\":\"/v1/detect\",\"status\":200", (int)g_ok, 3);
    CHECKF(lines == g_ok, "%d access-log lines for 200 answers", lines);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const char *b = getenv("BUILD");
    snprintf(g_bin, sizeof g_bin, "%s/frcnn", b && *b ? b : "build");
    if (start(&g, NULL, NULL) != 0) {
        fprintf(stderr, "test_server: %s serve did not start (see %s)\n", g_bin, g.log);
        if (g.pid > 0) tc_wait_exit(g.pid, 1, NULL);
        h_failed++;
        return harness_done(__FILE__);
    }
    RUN(test_model_and_photo);
    RUN(test_options);
    RUN(test_image_rows);
    RUN(test_process_errors);
    RUN(test_counters);
    h_cur = "shared server exit";
    h_cur_failed = 0;
    double took;
    int rc = tc_wait_exit((kill(g.pid, SIGTERM), g.pid), 10, &took);
    CHECKF(rc == 0, "exit status %d after SIGTERM (log %s)", rc, g.log);
    if (h_cur_failed) h_failed++;
    else h_passed++;
    RUN(test_admission_and_drain);
    RUN(test_pid1);
    cJSON_Delete(g_classes);
    cJSON_Delete(g_default);
    return harness_done(__FILE__);
}
