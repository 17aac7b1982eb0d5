// bench.c - `frcnn bench`: per-stage time and GFLOP/s of the whole pipeline beside
// cblas_sgemm alone on exactly the same GEMM shapes, measured in the same run, the two
// interleaved (under --fast, exact mode too).
#include "cli.h"
#include "core/alloc.h"
#include "core/gemm.h"
#include "core/ops.h"
#include "core/timer.h"
#include "detector/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

typedef struct {
    int m, n, k, stage;
} shape_t;

typedef struct {
    fr_session *s;
    int record;                        // 1: append shapes (warm-up run)
    shape_t *v;
    int n, cap, oom;
    double gemm_ms[FR_STAGE_COUNT];    // GEMM time inside the pipeline, per stage
} prof_t;

static int cur_stage(const fr_session *s) {
    return s->stage == FR_STAGE_STEM ? FR_STAGE_STEM + s->bb_part : s->stage;
}

static void hook(int m, int n, int k, double ms, void *user) {
    prof_t *p = user;
    int st = cur_stage(p->s);
    p->gemm_ms[st] += ms;
    if (!p->record) return;
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 256;
        shape_t *v = fr_realloc(p->v, (size_t)cap * sizeof *v);
        if (!v) {
            p->oom = 1;
            return;
        }
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = (shape_t){m, n, k, st};
}

static void usage(FILE *f) {
    fprintf(f, "usage: frcnn bench -m MODEL [--image IMG] [--setting HxW/P]... [--runs N] [--json FILE] [--fast]\n"
               "Times every stage of detection on an H x W network input with P proposals, and\n"
               "cblas_sgemm alone on the same GEMM shapes in the same run (interleaved, best of each);\n"
               "prints a table per setting. With --fast, exact mode runs interleaved as well.\n"
               "  -m, --model FILE    weights\n"
               "  --image IMG         photo to run on, stretched to W x H (default darknet's dog.jpg)\n"
               "  --setting HxW/P     default 800x1333/1000 and 600x1000/300\n"
               "  --runs N            timed runs, the best is reported (default 3)\n"
               "  --json FILE         also write the figures as JSON\n"
               "  --fast              fast mode (Winograd F(4x4, 3x3) for the 3x3 stride-1 convolutions)\n");
}

// Bilinear stretch of img to w x h (only to give the bench an input of exactly that size).
static int stretch(const fr_image *in, int w, int h, fr_image *out) {
    out->w = w;
    out->h = h;
    out->rgb = fr_malloc((size_t)w * h * 3);
    if (!out->rgb) return -1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int sx = (int)((x + 0.5) * in->w / w), sy = (int)((y + 0.5) * in->h / h);
            memcpy(out->rgb + ((size_t)y * w + x) * 3, in->rgb + ((size_t)sy * in->w + sx) * 3, 3);
        }
    return 0;
}

// Peak resident memory since the last reset_peak_rss() (VmHWM), in MB; falls back to the
// process-wide ru_maxrss where /proc is unavailable.
static double peak_rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    if (f) fclose(f);
    if (kb < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kb = ru.ru_maxrss;
    }
    return kb / 1024.0;
}

static void reset_peak_rss(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

// The model with the setting's config cj; FR_MODEL_FAST in flags adds the Winograd weights.
static fr_status load_setting(fr_model **m, const char *path, const char *cj, unsigned flags, fr_err *e) {
    fr_st_file f;
    fr_status st = fr_st_open(&f, path, e);
    if (st) return st;
    st = fr_model_load_st(m, &f, cj, strlen(cj), e);
    fr_st_close(&f);
    if (!st && (flags & FR_MODEL_FAST) && fr_model_make_fast(*m)) st = fr_fail(e, FR_ERR_NOMEM, "out of memory (fast mode)");
    return st;
}

static int bench_setting(const char *path, const char *base_json, const fr_image *photo, int H, int W, int P,
                         int runs, unsigned flags, FILE *js, int first) {
    fr_config cfg;
    char *cj = NULL;
    fr_err e = {0};
    if (fr_config_parse(&cfg, base_json, strlen(base_json), &e) == FR_OK) {
        cfg.min_size = H < W ? H : W;
        cfg.max_size = H < W ? W : H;
        cfg.post_nms_topk = P;
        cj = fr_config_to_json(&cfg);
        fr_config_free(&cfg);
    }
    fr_model *m = NULL, *xm = NULL; // xm, xs: exact mode beside --fast
    fr_session *s = NULL, *xs = NULL;
    fr_image img = {0};
    prof_t p = {0};
    float *A = NULL, *B = NULL, *C = NULL;
    int rc = 1;
    // Peak RSS counts from here: loading (file image + folded weights), the session and the
    // runs, as a server process would hold them; not the sgemm-only buffers below.
    reset_peak_rss();
    double t0 = fr_time_ms();
    if (!cj) {
        fprintf(stderr, "frcnn bench: out of memory\n");
        goto done;
    }
    if (load_setting(&m, path, cj, flags, &e) || fr_session_new(&s, m, &e)) {
        fprintf(stderr, "frcnn bench: %s\n", e.msg);
        goto done;
    }
    double load_ms = fr_time_ms() - t0;
    if (stretch(photo, W, H, &img)) goto done;
    p.s = s;
    fr_result r = {0};
    p.record = 1;
    fr_ops_set_gemm_hook(hook, &p);
    if (fr_detect(s, &img, NULL, &r, &e)) { // warm-up, records the GEMM shapes
        fprintf(stderr, "frcnn bench: %s\n", e.msg);
        fr_ops_set_gemm_hook(NULL, NULL);
        goto done;
    }
    int nprop = r.num_proposals, ndet = r.n;
    fr_result_free(&r);
    p.record = 0;
    // Timed runs: ours, then cblas_sgemm alone on the same shapes, interleaved (ours 0, sgemm 0,
    // ours 1, ...) so that both bests come from the same stretch of time on a shared host; under
    // --fast, exact mode (its own model and session, loaded after the peak RSS was read) runs
    // between them too, for an exact / fast ratio measured the same way.
    double best[FR_STAGE_COUNT], best_gemm[FR_STAGE_COUNT], best_total = 1e30, best_gemm_total = 0;
    double best_exact = 1e30, rss = 0;
    double gflop[FR_STAGE_COUNT] = {0}, sg[FR_STAGE_COUNT];
    for (int i = 0; i < FR_STAGE_COUNT; i++) best[i] = best_gemm[i] = sg[i] = 1e30;
    size_t amax = 1, bmax = 1, cmax = 1;
    for (int i = 0; i < p.n; i++) {
        shape_t *q = &p.v[i];
        if ((size_t)q->m * q->k > amax) amax = (size_t)q->m * q->k;
        if ((size_t)q->n * q->k > bmax) bmax = (size_t)q->n * q->k;
        if ((size_t)q->m * q->n > cmax) cmax = (size_t)q->m * q->n;
        gflop[q->stage] += 2.0 * q->m * q->n * q->k / 1e9;
    }
    fr_ops_set_gemm_hook(NULL, NULL);
    for (int k = 0; k < runs; k++) {
        memset(p.gemm_ms, 0, sizeof p.gemm_ms);
        fr_ops_set_gemm_hook(hook, &p); // on for our timed runs only
        double a = fr_time_ms();
        fr_status st = fr_detect(s, &img, NULL, &r, &e);
        double t = fr_time_ms() - a;
        fr_ops_set_gemm_hook(NULL, NULL);
        fr_result_free(&r);
        if (st) {
            fprintf(stderr, "frcnn bench: %s\n", e.msg);
            goto done;
        }
        if (t < best_total) {
            best_total = t;
            best_gemm_total = 0;
            for (int i = 0; i < FR_STAGE_COUNT; i++) best_gemm_total += p.gemm_ms[i];
        }
        for (int i = 0; i < FR_STAGE_COUNT; i++) {
            if (s->ms[i] < best[i]) best[i] = s->ms[i];
            if (p.gemm_ms[i] < best_gemm[i]) best_gemm[i] = p.gemm_ms[i];
        }
        if (k == 0) { // peak RSS: loading and a whole run, before the buffers below exist
            rss = peak_rss_mb();
            A = fr_aligned_alloc(amax * 4), B = fr_aligned_alloc(bmax * 4), C = fr_aligned_alloc(cmax * 4);
            if (!A || !B || !C || p.oom) {
                fprintf(stderr, "frcnn bench: out of memory\n");
                goto done;
            }
            for (size_t i = 0; i < amax; i++) A[i] = (float)(i % 97) * 0.01f;
            for (size_t i = 0; i < bmax; i++) B[i] = (float)(i % 89) * 0.01f;
            if ((flags & FR_MODEL_FAST) &&
                (load_setting(&xm, path, cj, 0, &e) || fr_session_new(&xs, xm, &e) || fr_detect(xs, &img, NULL, &r, &e))) {
                fprintf(stderr, "frcnn bench: exact mode beside --fast: %s\n", e.msg);
                goto done;
            }
            fr_result_free(&r);
        }
        if (xs) { // exact mode (without the GEMM hook, which attributes to our session's stages)
            a = fr_time_ms();
            st = fr_detect(xs, &img, NULL, &r, &e);
            t = fr_time_ms() - a;
            fr_result_free(&r);
            if (st) {
                fprintf(stderr, "frcnn bench: %s\n", e.msg);
                goto done;
            }
            if (t < best_exact) best_exact = t;
        }
        double tsg[FR_STAGE_COUNT] = {0};
        for (int i = 0; i < p.n; i++) {
            shape_t *q = &p.v[i];
            a = fr_time_ms();
            fr_gemm_nt(q->m, q->n, q->k, A, B, 0.0f, C);
            tsg[q->stage] += fr_time_ms() - a;
        }
        for (int i = 0; i < FR_STAGE_COUNT; i++)
            if (tsg[i] < sg[i]) sg[i] = tsg[i];
    }
    printf("\nsetting %dx%d/%d: network input %dx%d (HxW), %d proposals, %d detections, %d GEMMs, best of %d\n", H, W,
           P, H, W, nprop, ndet, p.n, runs);
    printf("%-12s %8s %10s %9s %10s %11s %10s %9s\n", "stage", "GFLOP", "time ms", "GFLOP/s", "gemm ms", "non-gemm ms",
           "sgemm ms", "% sgemm");
    double tg = 0, ts = 0, tt = 0, tng = 0;
    for (int i = 0; i < FR_STAGE_COUNT; i++) {
        double ng = best[i] - (best_gemm[i] < 1e29 ? best_gemm[i] : 0);
        double sgi = sg[i] < 1e29 ? sg[i] : 0;
        printf("%-12s %8.2f %10.1f %9.1f %10.1f %11.1f %10.1f %8.1f%%\n", fr_stage_names[i], gflop[i], best[i],
               best[i] > 0 ? gflop[i] / best[i] * 1e3 : 0, best_gemm[i] < 1e29 ? best_gemm[i] : 0, ng, sgi,
               best[i] > 0 ? 100 * sgi / best[i] : 0);
        tg += gflop[i];
        ts += sgi;
        tt += best[i];
        tng += ng;
    }
    printf("%-12s %8.2f %10.1f %9.1f %10.1f %11.1f %10.1f %8.1f%%\n", "total", tg, best_total, tg / best_total * 1e3,
           best_gemm_total, tng, ts, 100 * ts / best_total);
    if (fr_gemm_enabled())
        printf("(convolutions on the built-in GEMM: its time includes gathering the im2col rows into its packed\n"
               " blocks and the bias/residual/ReLU applied before its stores; the sgemm-only column is cblas_sgemm\n"
               " on the full GEMMs, while ours leaves out the products with padding zeros of convolutions on small\n"
               " maps such as res5's 7x7: GFLOP and GFLOP/s count the full GEMMs)\n");
    printf("end to end %.0f ms = %.3fx the sgemm-only time (%.0f ms); non-GEMM work %.1f%% of the total;\n"
           "peak RSS %.0f MB; model load %.0f ms (%.1f MB of weights); session arena %.0f MB\n",
           best_total, best_total / ts, ts, 100 * tng / tt, rss, load_ms, m->weight_bytes / 1e6, s->arena.cap / 1e6);
    if (xs)
        printf("exact mode in the same runs (its own model, interleaved): %.0f ms = %.2fx the fast-mode time\n", best_exact,
               best_exact / best_total);
    if (js) {
        fprintf(js, "%s{\"name\": \"%dx%d/%d\", \"input\": [%d, %d], \"proposals\": %d, \"detections\": %d, "
                    "\"total_ms\": %.3f, \"sgemm_ms\": %.3f, \"gemm_in_pipeline_ms\": %.3f, \"gflop\": %.3f, "
                    "\"peak_rss_mb\": %.1f, \"load_ms\": %.1f, ",
                first ? "" : ", ", H, W, P, H, W, nprop, ndet, best_total, ts, best_gemm_total, tg, rss, load_ms);
        if (xs) fprintf(js, "\"exact_ms_interleaved\": %.3f, ", best_exact);
        fprintf(js, "\"stages\": {");
        for (int i = 0; i < FR_STAGE_COUNT; i++)
            fprintf(js, "%s\"%s\": {\"ms\": %.3f, \"gflop\": %.3f, \"sgemm_ms\": %.3f}", i ? ", " : "",
                    fr_stage_names[i], best[i], gflop[i], sg[i] < 1e29 ? sg[i] : 0);
        fprintf(js, "}}");
    }
    rc = 0;
done:
    fr_free(A), fr_free(B), fr_free(C), fr_free(p.v), fr_free(cj);
    fr_image_free(&img);
    fr_session_free(s);
    fr_model_free(m);
    fr_session_free(xs);
    fr_model_free(xm);
    return rc;
}

int fr_cli_bench(int argc, char **argv) {
    const char *model = NULL, *image = "/usr/share/darknet/data/dog.jpg", *json = NULL;
    int runs = 3, ns = 0, hs[8], ws[8], ps[8];
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--image") && i + 1 < argc) image = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--fast")) flags = FR_MODEL_FAST;
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000) {
                fprintf(stderr, "frcnn bench: --runs must be 1..1000\n");
                return 2;
            }
            runs = (int)v;
        } else if ((!strcmp(argv[i], "--setting") || !strcmp(argv[i], "--size")) && i + 1 < argc && ns < 8) {
            int h, w, pn = 1000, got;
            char x, sl;
            got = sscanf(argv[++i], "%d%c%d%c%d", &h, &x, &w, &sl, &pn);
            if ((got != 3 && got != 5) || x != 'x' || (got == 5 && sl != '/') || h < 32 || w < 32 || h > 4096 ||
                w > 4096 || pn < 1 || pn > 100000) {
                fprintf(stderr, "frcnn bench: --setting must be HxW/P (sides 32..4096, P 1..100000)\n");
                return 2;
            }
            hs[ns] = h, ws[ns] = w, ps[ns++] = pn;
        } else {
            fprintf(stderr, "frcnn bench: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!model) {
        usage(stderr);
        return 2;
    }
    if (!ns) {
        hs[0] = 800, ws[0] = 1333, ps[0] = 1000;
        hs[1] = 600, ws[1] = 1000, ps[1] = 300;
        ns = 2;
    }
    fr_err e = {0};
    fr_model *m = NULL;
    fr_image photo = {0};
    fr_image_limits lim;
    fr_image_limits_default(&lim);
    double t0 = fr_time_ms();
    // exact mode here: this load gives the config and the file's load time; each setting loads its
    // own copy (with the Winograd weights under --fast)
    if (fr_model_load(&m, model, NULL, &e)) {
        fprintf(stderr, "frcnn bench: %s\n", e.msg);
        return 1;
    }
    printf("model %s%s: %.1f MB of folded weights, file read + load %.0f ms\n", m->cfg.name,
           flags & FR_MODEL_FAST ? " (fast mode: Winograd weights made per setting)" : "", m->weight_bytes / 1e6,
           fr_time_ms() - t0);
    int rc = 0;
    FILE *js = NULL;
    if (fr_image_load(&photo, image, &lim, 1, &e)) {
        fprintf(stderr, "frcnn bench: %s\n", e.msg);
        rc = 1;
    } else if (json && !(js = fopen(json, "w"))) {
        fprintf(stderr, "frcnn bench: cannot write %s\n", json);
        rc = 1;
    }
    if (js) fprintf(js, "{\"model\": \"%s\", \"runs\": %d, \"settings\": [", m->cfg.name, runs);
    char *base = fr_config_to_json(&m->cfg);
    fr_model_free(m); // each setting loads its own copy: peak RSS counts one model
    m = NULL;
    if (!base) rc = 1;
    for (int i = 0; i < ns && !rc; i++) rc = bench_setting(model, base, &photo, hs[i], ws[i], ps[i], runs, flags, js, i == 0);
    fr_free(base);
    if (js) {
        fprintf(js, "]}\n");
        if (fclose(js)) rc = 1;
    }
    fr_image_free(&photo);
    fr_model_free(m);
    return rc;
}
