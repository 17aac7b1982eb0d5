// engine.c - the server's engine for a real model file: fr_model_load once, one
// fr_session per worker, fr_image_decode + fr_detect + fr_result_to_json per request.
#include "server.h"

#include "core/alloc.h"
#include "core/log.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    char *model_path;
    char *config_path; // NULL: the model's own config
    unsigned model_flags; // fr_model_load_ex's
    fr_image_limits limits;
    int threads;       // compute threads per worker, 0 = the library default
    fr_model *model;
    char *model_json;
    int test_delay_ms; // test hook: FRCNN_TEST_DETECT_DELAY_MS makes every detection this much slower
} engine_state;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

// {"name", "num_classes", "classes", "config"} for GET /v1/model.
static char *model_json(const fr_model *m) {
    const fr_config *cfg = fr_model_config(m);
    char *cfg_text = fr_config_to_json(cfg);
    cJSON *root = cJSON_CreateObject();
    cJSON *cfg_json = cfg_text ? cJSON_Parse(cfg_text) : NULL;
    fr_free(cfg_text);
    char *out = NULL;
    if (root && cfg_json && cJSON_AddStringToObject(root, "name", fr_model_name(m)) &&
        cJSON_AddNumberToObject(root, "num_classes", cfg->num_classes)) {
        cJSON *cl = cJSON_AddArrayToObject(root, "classes");
        int ok = cl != NULL;
        for (int i = 0; ok && i < cfg->num_classes; i++) {
            cJSON *s = cJSON_CreateString(cfg->classes[i]);
            ok = s && cJSON_AddItemToArray(cl, s);
            if (!ok) cJSON_Delete(s);
        }
        if (ok && cJSON_AddItemToObject(root, "config", cfg_json)) {
            cfg_json = NULL;
            out = cJSON_PrintUnformatted(root);
        }
    }
    cJSON_Delete(cfg_json);
    cJSON_Delete(root);
    return out;
}

static fr_status eng_load(void *user, fr_engine_info *info, fr_err *err) {
    engine_state *e = user;
    fr_status s = fr_model_load_ex(&e->model, e->model_path, e->config_path, e->model_flags, err);
    if (s) return s;
    e->model_json = model_json(e->model);
    if (!e->model_json) {
        fr_model_free(e->model);
        e->model = NULL;
        return fr_fail(err, FR_ERR_NOMEM, "out of memory describing the model");
    }
    const fr_config *cfg = fr_model_config(e->model);
    info->name = fr_model_name(e->model);
    info->num_classes = cfg->num_classes;
    info->classes = cfg->classes;
    info->model_json = e->model_json;
    return FR_OK;
}

static void eng_unload(void *user) {
    engine_state *e = user;
    fr_model_free(e->model);
    e->model = NULL;
    fr_free(e->model_json);
    e->model_json = NULL;
}

static fr_status eng_worker_new(void *user, void **worker, fr_err *err) {
    engine_state *e = user;
#ifdef _OPENMP
    if (e->threads > 0) omp_set_num_threads(e->threads); // this worker thread's team size
#endif
    fr_session *s = NULL;
    fr_status st = fr_session_new(&s, e->model, err);
    *worker = s;
    return st;
}

static void eng_worker_free(void *user, void *worker) {
    (void)user;
    fr_session_free(worker);
}

static fr_status eng_detect(void *user, void *worker, const unsigned char *bytes, size_t len,
                            const fr_detect_opts *opts, fr_engine_result *res, fr_err *err) {
    engine_state *e = user;
    const fr_config *cfg = fr_model_config(e->model);
    fr_image img;
    memset(&img, 0, sizeof img);
    double t0 = now_ms();
    fr_status s = fr_image_decode(&img, bytes, len, &e->limits, cfg->exif, err);
    if (s) return s;
    double dec = now_ms() - t0;
    fr_result r;
    memset(&r, 0, sizeof r);
    if (e->test_delay_ms) {
        struct timespec d = {e->test_delay_ms / 1000, (e->test_delay_ms % 1000) * 1000000L};
        nanosleep(&d, NULL);
    }
    s = fr_detect(worker, &img, opts, &r, err);
    fr_image_free(&img);
    if (s) {
        fr_result_free(&r);
        return s;
    }
    // fr_detect starts from decoded pixels: decoding is timed here and part of "total".
    r.ms_decode = dec;
    r.ms_total += dec;
    res->json = fr_result_to_json(e->model, &r);
    res->num_detections = r.n;
    res->ms[0] = r.ms_decode;
    res->ms[1] = r.ms_backbone;
    res->ms[2] = r.ms_rpn;
    res->ms[3] = r.ms_roi_head;
    res->ms[4] = r.ms_total;
    fr_result_free(&r);
    if (!res->json) return fr_fail(err, FR_ERR_NOMEM, "out of memory writing the answer");
    res->len = strlen(res->json);
    return FR_OK;
}

fr_status fr_engine_model_new(fr_engine *eng, const char *model_path, const char *config_path, unsigned model_flags,
                              const fr_image_limits *limits, int threads, fr_err *err) {
    memset(eng, 0, sizeof *eng);
    engine_state *e = fr_calloc(1, sizeof *e);
    if (!e) return fr_fail(err, FR_ERR_NOMEM, "out of memory");
    e->model_path = fr_strdup(model_path);
    e->config_path = config_path ? fr_strdup(config_path) : NULL;
    e->model_flags = model_flags;
    if (!e->model_path || (config_path && !e->config_path)) {
        fr_free(e->model_path);
        fr_free(e->config_path);
        fr_free(e);
        return fr_fail(err, FR_ERR_NOMEM, "out of memory");
    }
    e->limits = *limits;
    e->threads = threads;
    const char *delay = getenv("FRCNN_TEST_DETECT_DELAY_MS"); // test hook (tests/test_server.c)
    if (delay) {
        long v = strtol(delay, NULL, 10);
        e->test_delay_ms = v > 0 && v < 60000 ? (int)v : 0;
    }
    eng->user = e;
    eng->load = eng_load;
    eng->unload = eng_unload;
    eng->worker_new = eng_worker_new;
    eng->worker_free = eng_worker_free;
    eng->detect = eng_detect;
    return FR_OK;
}

void fr_engine_model_free(fr_engine *eng) {
    engine_state *e = eng->user;
    if (e) {
        eng_unload(e);
        fr_free(e->model_path);
        fr_free(e->config_path);
        fr_free(e);
    }
    eng->user = NULL;
}
