// bench.c - `frcnn bench`: per-stage time and GFLOP/s of the network beside cblas_sgemm alone
// on exactly the same GEMM shapes, measured in the same run.
#include "cli.h"
#include "core/alloc.h"
#include "core/ops.h"
#include "core/timer.h"
#include "detector/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ST_STEM, ST_RES2, ST_RES3, ST_RES4, ST_COUNT };
static const char *stage_names[ST_COUNT] = {"stem", "res2", "res3", "res4"};

typedef struct {
    int m, n, k, stage;
} shape_t;

typedef struct {
    shape_t *v;
    int n, cap, stage;
} shapes_t;

static void record(int m, int n, int k, void *user) {
    shapes_t *s = user;
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 256;
        shape_t *v = fr_realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) return;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (shape_t){m, n, k, s->stage};
}

static void usage(FILE *f) {
    fprintf(f, "usage: frcnn bench -m MODEL [--size HxW]... [--runs N]\n"
               "Times the backbone stages (stem, res2..res4) on an H x W input and cblas_sgemm alone\n"
               "on the same GEMM shapes in the same run; prints a table per size.\n"
               "  -m, --model FILE  weights\n"
               "  --size HxW        network input size (default 800x1333 and 600x1000)\n"
               "  --runs N          timed runs, the best is reported (default 3)\n");
}

static double run_backbone(fr_session *s, fr_tensor *in, shapes_t *rec, double stage_ms[ST_COUNT]) {
    const fr_model *m = s->m;
    double t0 = fr_time_ms();
    fr_tensor cur;
    fr_tensor s1 = {s->buf[0], 1, fr_conv_out(&m->bb.stem, in->h), fr_conv_out(&m->bb.stem, in->w), m->bb.stem.cout};
    if (rec) rec->stage = ST_STEM;
    fr_conv_forward(&m->bb.stem, in, &s1, NULL, 1, s->scratch);
    fr_tensor p = {s->buf[1], 1, fr_maxpool_out(s1.h), fr_maxpool_out(s1.w), s1.c};
    fr_maxpool3x3s2(&s1, &p);
    double t = fr_time_ms();
    stage_ms[ST_STEM] = t - t0;
    cur = p;
    for (int i = 0; i < 3; i++) {
        if (rec) rec->stage = ST_RES2 + i;
        double a = fr_time_ms();
        fr_stage_forward(&m->bb.res[i], &cur, s->buf, s->scratch, 0, &cur);
        stage_ms[ST_RES2 + i] = fr_time_ms() - a;
    }
    return fr_time_ms() - t0;
}

static int bench_size(fr_session *s, int h, int w, int runs) {
    const fr_model *m = s->m;
    if ((size_t)h * w > (size_t)m->cfg.min_size * m->cfg.max_size || h > m->cfg.max_size || w > m->cfg.max_size) {
        fprintf(stderr, "frcnn bench: %dx%d is larger than the model's plan (%d x %d)\n", h, w, m->cfg.min_size,
                m->cfg.max_size);
        return 1;
    }
    fr_tensor in = {s->input, 1, h, w, 3};
    unsigned long r = 1;
    for (size_t i = 0; i < (size_t)h * w * 3; i++) {
        r = r * 6364136223846793005UL + 1;
        in.data[i] = (float)((r >> 40) % 256) - 128.0f;
    }
    shapes_t rec = {0};
    double ms[ST_COUNT], best[ST_COUNT], best_total = 1e30;
    fr_ops_set_gemm_hook(record, &rec);
    run_backbone(s, &in, &rec, ms); // warm-up, records the GEMM shapes
    fr_ops_set_gemm_hook(NULL, NULL);
    for (int i = 0; i < ST_COUNT; i++) best[i] = 1e30;
    for (int k = 0; k < runs; k++) {
        double t = run_backbone(s, &in, NULL, ms);
        if (t < best_total) best_total = t;
        for (int i = 0; i < ST_COUNT; i++)
            if (ms[i] < best[i]) best[i] = ms[i];
    }
    // cblas_sgemm alone on the same shapes
    size_t amax = 0, bmax = 0, cmax = 0;
    double gflop[ST_COUNT] = {0}, sg[ST_COUNT];
    for (int i = 0; i < rec.n; i++) {
        shape_t *q = &rec.v[i];
        amax = (size_t)q->m * q->k > amax ? (size_t)q->m * q->k : amax;
        bmax = (size_t)q->n * q->k > bmax ? (size_t)q->n * q->k : bmax;
        cmax = (size_t)q->m * q->n > cmax ? (size_t)q->m * q->n : cmax;
        gflop[q->stage] += 2.0 * q->m * q->n * q->k / 1e9;
    }
    float *A = fr_aligned_alloc(amax * 4), *B = fr_aligned_alloc(bmax * 4), *C = fr_aligned_alloc(cmax * 4);
    if (!A || !B || !C) {
        fprintf(stderr, "frcnn bench: out of memory\n");
        fr_free(A), fr_free(B), fr_free(C), fr_free(rec.v);
        return 1;
    }
    for (size_t i = 0; i < amax; i++) A[i] = (float)(i % 97) * 0.01f;
    for (size_t i = 0; i < bmax; i++) B[i] = (float)(i % 89) * 0.01f;
    for (int i = 0; i < ST_COUNT; i++) sg[i] = 1e30;
    for (int k = 0; k < runs; k++) {
        double t[ST_COUNT] = {0};
        for (int i = 0; i < rec.n; i++) {
            shape_t *q = &rec.v[i];
            double a = fr_time_ms();
            fr_gemm_nt(q->m, q->n, q->k, A, B, 0.0f, C);
            t[q->stage] += fr_time_ms() - a;
        }
        for (int i = 0; i < ST_COUNT; i++)
            if (t[i] < sg[i]) sg[i] = t[i];
    }
    printf("\nbackbone %dx%d (HxW), %d GEMMs, best of %d runs\n", h, w, rec.n, runs);
    printf("%-8s %9s %10s %9s %12s %11s %9s\n", "stage", "GFLOP", "time ms", "GFLOP/s", "sgemm ms", "sgemm GF/s",
           "% sgemm");
    double tg = 0, ts = 0, tt = 0;
    for (int i = 0; i < ST_COUNT; i++) {
        printf("%-8s %9.2f %10.1f %9.1f %12.1f %11.1f %8.1f%%\n", stage_names[i], gflop[i], best[i],
               gflop[i] / best[i] * 1e3, sg[i], gflop[i] / sg[i] * 1e3, 100 * sg[i] / best[i]);
        tg += gflop[i];
        ts += sg[i];
        tt += best[i];
    }
    printf("%-8s %9.2f %10.1f %9.1f %12.1f %11.1f %8.1f%%\n", "total", tg, tt, tg / tt * 1e3, ts, tg / ts * 1e3,
           100 * ts / tt);
    fr_free(A), fr_free(B), fr_free(C), fr_free(rec.v);
    return 0;
}

int fr_cli_bench(int argc, char **argv) {
    const char *model = NULL;
    int runs = 3, nsizes = 0, hs[8], ws[8];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000) {
                fprintf(stderr, "frcnn bench: --runs must be 1..1000\n");
                return 2;
            }
            runs = (int)v;
        } else if (!strcmp(argv[i], "--size") && i + 1 < argc && nsizes < 8) {
            int h, w;
            char x;
            if (sscanf(argv[++i], "%d%c%d", &h, &x, &w) != 3 || x != 'x' || h < 32 || w < 32 || h > 8192 ||
                w > 8192) {
                fprintf(stderr, "frcnn bench: --size must be HxW, 32..8192\n");
                return 2;
            }
            hs[nsizes] = h;
            ws[nsizes++] = w;
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
    if (!nsizes) {
        hs[0] = 800, ws[0] = 1333, hs[1] = 600, ws[1] = 1000;
        nsizes = 2;
    }
    fr_model *m;
    fr_err e = {0};
    double t0 = fr_time_ms();
    if (fr_model_load(&m, model, NULL, &e)) {
        fprintf(stderr, "frcnn bench: %s\n", e.msg);
        return 1;
    }
    printf("model %s: %.1f MB of weights loaded in %.0f ms\n", m->cfg.name, m->weight_bytes / 1e6, fr_time_ms() - t0);
    fr_session *s;
    if (fr_session_new(&s, m, &e)) {
        fprintf(stderr, "frcnn bench: %s\n", e.msg);
        fr_model_free(m);
        return 1;
    }
    printf("session arena: %.1f MB (planned once for %dx%d inputs)\n", s->arena.cap / 1e6, m->cfg.min_size,
           m->cfg.max_size);
    int rc = 0;
    for (int i = 0; i < nsizes && !rc; i++) rc = bench_size(s, hs[i], ws[i], runs);
    fr_session_free(s);
    fr_model_free(m);
    return rc;
}
