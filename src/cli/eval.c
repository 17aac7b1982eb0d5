// eval.c - `frcnn eval`: PASCAL VOC evaluation. Runs a model over a VOC image set writing
// comp4 files (resumable, shardable), or scores existing comp4 files, or merges shards; then
// prints the per-class AP table (VOC07 11-point and VOC2010+ area, as voc_eval.py computes
// them) and optionally writes JSON and precision-recall SVG plots. See usage() and
// src/eval/voc.h for the exact semantics.
#include "cli.h"
#include "core/alloc.h"
#include "core/image.h"
#include "core/log.h"
#include "core/timer.h"
#include "detector/detector.h"
#include "eval/voc.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: frcnn eval --voc DIR [--set test] -m MODEL [--out DIR] [--resume] [--shard K/N]\n"
        "       frcnn eval --voc DIR [--set test] --results DIR\n"
        "       frcnn eval --voc DIR [--set test] --merge --out DIR SHARD_DIR...\n"
        "PASCAL VOC detection evaluation, scored exactly like voc_eval.py (py-faster-rcnn,\n"
        "detectron2): per-class AP with the VOC07 11-point metric and the VOC2010+ area metric,\n"
        "and their means (mAP).\n"
        "\n"
        "Dataset\n"
        "  --voc DIR             the VOC year directory (VOCdevkit/VOC2007): Annotations/<id>.xml,\n"
        "                        ImageSets/Main/<set>.txt, JPEGImages/<id>.jpg\n"
        "  --set NAME            image set (default test)\n"
        "  --classes a,b,...     classes to evaluate, in order (default: the 20 VOC classes,\n"
        "                        or the model's own when none of them is a VOC class)\n"
        "  --bad-boxes MODE      ground-truth boxes with xmin > xmax, ymin > ymax or outside the\n"
        "                        image: keep (default, as voc_eval.py), skip, or clip to <size>\n"
        "\n"
        "Running a model (writes DIR/comp4_det_<set>_<class>.txt and DIR/progress.txt)\n"
        "  -m, --model FILE      weights (.safetensors); COCO class names are mapped onto VOC's\n"
        "                        (airplane, motorcycle, dining table, couch, potted plant, tv)\n"
        "  --config FILE         config JSON overriding the model's metadata\n"
        "  --out DIR             output directory (default results/<basename of --voc>/Main)\n"
        "  --score-threshold T   keep detections scoring above T (default: the model's, 0.05)\n"
        "  --fast                fast mode (Winograd convolutions): faster, APs slightly different\n"
        "  --max-detections N    at most N per image (default: the model's, 100)\n"
        "  --resume              continue the run in --out: images already recorded in\n"
        "                        progress.txt are kept, failed ones retried, partial output of an\n"
        "                        interrupted image dropped; the result equals an uninterrupted run\n"
        "  --shard K/N           process only images K, K+N, K+2N... of the list (1 <= K <= N);\n"
        "                        run each shard into its own --out, then --merge them. A shard\n"
        "                        run is not scored.\n"
        "  Lines are written as detectron2 writes them: '<id> <score %%.3f> <xmin+1> <ymin+1>\n"
        "  <xmax> <ymax>' (%%.1f, 1-based VOC pixels), flushed after every image. Ctrl-C stops\n"
        "  after the current image, keeps what is done and marks the run incomplete (exit 1):\n"
        "  rerun with --resume. A second Ctrl-C quits at once (--resume still works).\n"
        "\n"
        "Scoring existing results\n"
        "  --results DIR         score DIR/comp4_det_<set>_<class>.txt (a missing file scores as\n"
        "                        no detections and is reported); if DIR holds a progress.txt (a\n"
        "                        frcnn eval run) it must be complete and made with the same --set\n"
        "                        and --classes, and the images it failed are left out\n"
        "  --merge               merge the complete shard directories given as arguments into\n"
        "                        --out (identical to an unsharded run) and score them\n"
        "\n"
        "Scoring options\n"
        "  --iou T               overlap threshold (default 0.5)\n"
        "  --iou-rule RULE       voc_eval (default: a match needs IoU > T) or devkit (the MATLAB\n"
        "                        devkit's IoU >= T)\n"
        "  --ties ORDER          order of equal scores. numpy (default): np.argsort's introsort,\n"
        "                        what voc_eval.py gets from numpy <= 1.24, and from later numpy\n"
        "                        where it does not use x86-simd-sort (numpy >= 1.25 on AVX-512\n"
        "                        and >= 2.0 on AVX2 order ties differently). stable: file order\n"
        "                        (MATLAB's sort in the devkit). Ties are common: scores are\n"
        "                        written with 3 decimals.\n"
        "\n"
        "Output\n"
        "  The table (stdout) has per class AP07 and AP10 in percent, npos (non-difficult\n"
        "  objects), dets, TP and FP (detections of difficult objects are neither); then mAP.\n"
        "  A class without non-difficult objects has AP10 nan when it has detections (voc_eval.py\n"
        "  divides by npos = 0) and then mAP10 is nan too.\n"
        "  --json FILE           write {\"07\": {\"<class>\": ap, ..., \"mAP\": m}, \"10\": {...}}, AP in\n"
        "                        [0, 1] as voc_eval.py returns it, NaN as null ('-': stdout)\n"
        "  --plot DIR            write DIR/pr_<class>.svg precision-recall curves\n"
        "  -q, --quiet           no progress display and no warnings\n"
        "  Progress goes to stderr: a bar with images/s and ETA on a terminal, else a line\n"
        "  every 10 s.\n"
        "  --keep-going          failed images or malformed results do not make the exit status 1\n"
        "\n"
        "Input problems: an unreadable or malformed annotation (bad XML, a DOCTYPE/entities, an\n"
        "object without <name> or <bndbox>, a coordinate that is not an integer such as 273.5 -\n"
        "voc_eval.py reads them with int()), an invalid id, or an image that cannot be read or\n"
        "decoded fails that image only: it is reported with its path and left out of the scores,\n"
        "and every listed id is either scored or reported. Duplicate ids in the list are dropped\n"
        "(voc_eval.py would count their objects twice), blank lines skipped, CRLF accepted; an\n"
        "object with an unknown class or no <difficult> (taken as 0) is a warning. Malformed\n"
        "comp4 lines and ids that are not in the list are reported and skipped.\n"
        "\n"
        "Exit status: 0 success, 1 failure (any failed image, results problem, interruption;\n"
        "one-line message last on stderr), 2 bad usage.\n");
}

// Set by the SIGINT handler; the only process-wide state of this command.
static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

typedef struct {
    const char *voc, *set, *model, *config, *out, *results, *json, *plot, *classes;
    int merge, resume, shard_k, shard_n, quiet, keep_going, fast;
    double score_threshold;
    long max_detections;
    fr_voc_score_opts score;
    fr_voc_box_policy boxes;
    char **pos;
    int npos;
} args;

static int bad_usage(const char *fmt, const char *arg) {
    fprintf(stderr, "frcnn eval: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see frcnn eval --help)\n");
    return 2;
}

static int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int parse_long(const char *s, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno) return -1;
    *out = v;
    return 0;
}

static int parse_args(args *a, int argc, char **argv) {
    memset(a, 0, sizeof *a);
    a->set = "test";
    a->score_threshold = -1;
    fr_voc_score_opts_default(&a->score);
    a->boxes = FR_VOC_BOX_KEEP;
    a->pos = argv; // positional arguments are compacted in place
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char **str = NULL;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) return -1;
        if (!strcmp(o, "--merge")) a->merge = 1;
        else if (!strcmp(o, "--resume")) a->resume = 1;
        else if (!strcmp(o, "--quiet") || !strcmp(o, "-q")) a->quiet = 1;
        else if (!strcmp(o, "--keep-going")) a->keep_going = 1;
        else if (!strcmp(o, "--fast")) a->fast = 1;
        else if (o[0] == '-' && o[1]) {
            if (i + 1 >= argc) return bad_usage("option %s needs a value", o);
            const char *v = argv[++i];
            if (!strcmp(o, "--voc")) str = &a->voc;
            else if (!strcmp(o, "--set")) str = &a->set;
            else if (!strcmp(o, "-m") || !strcmp(o, "--model")) str = &a->model;
            else if (!strcmp(o, "--config")) str = &a->config;
            else if (!strcmp(o, "--out")) str = &a->out;
            else if (!strcmp(o, "--results")) str = &a->results;
            else if (!strcmp(o, "--json")) str = &a->json;
            else if (!strcmp(o, "--plot")) str = &a->plot;
            else if (!strcmp(o, "--classes")) str = &a->classes;
            else if (!strcmp(o, "--score-threshold")) {
                if (parse_double(v, &a->score_threshold) || a->score_threshold < 0 ||
                    a->score_threshold > 1)
                    return bad_usage("--score-threshold '%s': want a number in [0, 1]", v);
            } else if (!strcmp(o, "--max-detections")) {
                if (parse_long(v, &a->max_detections) || a->max_detections < 1 ||
                    a->max_detections > 100000)
                    return bad_usage("--max-detections '%s': want an integer in [1, 100000]", v);
            } else if (!strcmp(o, "--iou")) {
                if (parse_double(v, &a->score.iou) || a->score.iou <= 0 || a->score.iou >= 1)
                    return bad_usage("--iou '%s': want a number in (0, 1)", v);
            } else if (!strcmp(o, "--iou-rule")) {
                if (!strcmp(v, "voc_eval")) a->score.iou_ge = 0;
                else if (!strcmp(v, "devkit")) a->score.iou_ge = 1;
                else return bad_usage("--iou-rule '%s': want voc_eval or devkit", v);
            } else if (!strcmp(o, "--ties")) {
                if (!strcmp(v, "numpy")) a->score.stable_ties = 0;
                else if (!strcmp(v, "stable")) a->score.stable_ties = 1;
                else return bad_usage("--ties '%s': want numpy or stable", v);
            } else if (!strcmp(o, "--bad-boxes")) {
                if (!strcmp(v, "keep")) a->boxes = FR_VOC_BOX_KEEP;
                else if (!strcmp(v, "skip")) a->boxes = FR_VOC_BOX_SKIP;
                else if (!strcmp(v, "clip")) a->boxes = FR_VOC_BOX_CLIP;
                else return bad_usage("--bad-boxes '%s': want keep, skip or clip", v);
            } else if (!strcmp(o, "--shard")) {
                char *end;
                long k = strtol(v, &end, 10), n = 0;
                if (*end == '/') n = strtol(end + 1, &end, 10);
                if (*end || k < 1 || n < 1 || k > n || n > 100000)
                    return bad_usage("--shard '%s': want K/N with 1 <= K <= N", v);
                a->shard_k = (int)k;
                a->shard_n = (int)n;
            } else {
                return bad_usage("unknown option %s", o);
            }
            if (str) {
                if (!v[0]) return bad_usage("option %s needs a non-empty value", o);
                *str = v;
            }
        } else {
            a->pos[a->npos++] = argv[i];
        }
    }
    if (!a->voc) return bad_usage("%s is required", "--voc");
    int modes = !!a->model + !!a->results + a->merge;
    if (modes != 1)
        return bad_usage("%s", "give exactly one of -m MODEL, --results DIR, --merge");
    if (a->npos && !a->merge) return bad_usage("unexpected argument '%s'", a->pos[0]);
    if (a->merge && (!a->out || !a->npos))
        return bad_usage("%s", "--merge needs --out DIR and the shard directories");
    if (!a->model && (a->resume || a->shard_n || a->config || a->score_threshold >= 0 ||
                      a->max_detections))
        return bad_usage("%s", "--resume, --shard, --config, --score-threshold and "
                               "--max-detections need -m MODEL");
    if (a->results && a->out) return bad_usage("%s", "--out is not used with --results");
    return 0;
}

// ---------------------------------------------------------------- progress display

typedef struct {
    int tty, quiet;
    double t0, last;
} progress;

static void fmt_eta(char *buf, size_t cap, double s) {
    if (!isfinite(s) || s < 0) snprintf(buf, cap, "--:--");
    else if (s >= 3600) snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else snprintf(buf, cap, "%02d:%02d", (int)(s / 60), (int)s % 60);
}

static void on_progress(void *user, int done, int total, int here) {
    progress *p = user;
    if (p->quiet) return;
    double now = fr_time_ms();
    if (!p->tty && now - p->last < 10000 && done < total) return;
    if (p->tty && now - p->last < 100 && done < total) return;
    p->last = now;
    double rate = here / ((now - p->t0) / 1000.0 + 1e-9);
    char eta[32];
    fmt_eta(eta, sizeof eta, (total - done) / rate);
    if (p->tty) {
        int w = 30, fill = total ? (int)((long)w * done / total) : w;
        char bar[64];
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[w] = 0;
        fprintf(stderr, "\r[%s] %d/%d  %.2f img/s  ETA %s ", bar, done, total, rate, eta);
        if (done == total) fputc('\n', stderr);
    } else {
        fprintf(stderr, "frcnn eval: %d/%d images (%.1f%%), %.2f img/s, ETA %s\n", done, total,
                total ? 100.0 * done / total : 100.0, rate, eta);
    }
    fflush(stderr);
}

// ---------------------------------------------------------------- model callback

typedef struct {
    fr_session *s;
    const fr_config *cfg;
    fr_detect_opts opts;
    int *map; // model class -> evaluation class, -1 when not evaluated
    fr_image_limits lim;
    fr_voc_run_det *buf;
    int cap;
} model_ctx;

static fr_status detect_one(void *user, const char *path, fr_voc_run_out *out, fr_err *err) {
    model_ctx *c = user;
    fr_image img = {0};
    fr_status st = fr_image_load(&img, path, &c->lim, c->cfg->exif, err);
    if (st != FR_OK) return st;
    fr_result res = {0};
    st = fr_detect(c->s, &img, &c->opts, &res, err);
    out->width = img.w;
    out->height = img.h;
    fr_image_free(&img);
    if (st != FR_OK) return st;
    if (res.n > c->cap) {
        fr_voc_run_det *b = fr_realloc(c->buf, (size_t)res.n * sizeof *b);
        if (!b) {
            fr_result_free(&res);
            return fr_fail(err, FR_ERR_NOMEM, "out of memory");
        }
        c->buf = b;
        c->cap = res.n;
    }
    out->n = 0;
    out->dets = c->buf;
    for (int d = 0; d < res.n; d++) {
        const fr_detection *x = &res.dets[d];
        if (x->class_id < 0 || x->class_id >= c->cfg->num_classes || c->map[x->class_id] < 0)
            continue;
        fr_voc_run_det *o = &c->buf[out->n++];
        o->cls = c->map[x->class_id];
        o->score = x->score;
        memcpy(o->box, x->box, sizeof o->box);
    }
    fr_result_free(&res);
    return FR_OK;
}

// ---------------------------------------------------------------- helpers

typedef struct {
    char **v;
    int n;
} names;

static void names_free(names *l) {
    for (int i = 0; i < l->n; i++) fr_free(l->v[i]);
    fr_free(l->v);
    l->v = NULL;
    l->n = 0;
}

// The classes evaluated when --classes is not given: the 20 VOC classes (out->n stays 0), or
// the model's own classes when none of them is a VOC class (a model trained on another
// VOC-layout dataset, such as the bundled shapes demo). 0, or -1 when out of memory.
static int model_classes(const fr_config *cfg, names *out) {
    for (int k = 0; k < cfg->num_classes; k++)
        for (int j = 0; j < FR_VOC_NUM_CLASSES; j++)
            if (!strcmp(fr_voc_class_alias(cfg->classes[k]), fr_voc_classes[j])) return 0;
    if (!(out->v = fr_calloc((size_t)cfg->num_classes, sizeof *out->v))) return -1;
    for (int k = 0; k < cfg->num_classes; k++, out->n++)
        if (!(out->v[k] = fr_strdup(cfg->classes[k]))) {
            names_free(out);
            return -1;
        }
    return 0;
}

// Splits "a,b,c" (empty names and duplicates are errors). 0, or -1 with a message.
static int split_classes(const char *s, names *out, char *why, size_t cap) {
    out->v = NULL;
    out->n = 0;
    int n = 1;
    for (const char *p = s; *p; p++) n += *p == ',';
    if (!(out->v = fr_calloc((size_t)n, sizeof *out->v))) return snprintf(why, cap, "out of memory"), -1;
    const char *b = s;
    for (;;) {
        const char *e = strchr(b, ',');
        size_t l = e ? (size_t)(e - b) : strlen(b);
        if (!l) return snprintf(why, cap, "--classes: empty class name"), -1;
        char *name = fr_malloc(l + 1);
        if (!name) return snprintf(why, cap, "out of memory"), -1;
        memcpy(name, b, l);
        name[l] = 0;
        for (int i = 0; i < out->n; i++)
            if (!strcmp(out->v[i], name)) {
                snprintf(why, cap, "--classes: '%.60s' given twice", name);
                fr_free(name);
                return -1;
            }
        out->v[out->n++] = name;
        if (!e) break;
        b = e + 1;
    }
    return 0;
}

static void warn_dataset(const fr_voc_dataset *ds) {
    const fr_voc_imageset *l = &ds->list;
    if (l->duplicates)
        fprintf(stderr, "frcnn eval: warning: %ld duplicate ids in the image list dropped\n",
                l->duplicates);
    if (l->empty_lines)
        fprintf(stderr, "frcnn eval: warning: %ld blank lines in the image list skipped\n",
                l->empty_lines);
    if (ds->unknown_objects)
        fprintf(stderr, "frcnn eval: warning: %ld objects of classes not evaluated ignored\n",
                ds->unknown_objects);
    if (ds->missing_difficult)
        fprintf(stderr, "frcnn eval: warning: %ld objects without <difficult> (taken as 0)\n",
                ds->missing_difficult);
    if (ds->bad_boxes)
        fprintf(stderr,
                "frcnn eval: warning: %ld objects with xmin > xmax, ymin > ymax or outside the "
                "image (%ld dropped by --bad-boxes)\n",
                ds->bad_boxes, ds->bad_boxes_dropped);
}

// Prints the failed images (the first 20, then a count). Returns how many failed.
static int report_failures(const fr_voc_dataset *ds) {
    int nf = 0;
    for (int i = 0; i < ds->list.num_ids; i++) {
        if (!ds->fail[i]) continue;
        if (nf < 20) fprintf(stderr, "frcnn eval: failed: %s\n", ds->fail[i]);
        nf++;
    }
    if (nf > 20) fprintf(stderr, "frcnn eval: ... and %d more failed images\n", nf - 20);
    return nf;
}

static int write_outputs(const args *a, const fr_voc_dataset *ds, const fr_voc_eval_result *r) {
    fr_voc_print_table(stdout, ds, r);
    fflush(stdout);
    if (a->json) {
        FILE *f = strcmp(a->json, "-") ? fopen(a->json, "w") : stdout;
        if (!f) {
            fprintf(stderr, "frcnn eval: %s: %s\n", a->json, strerror(errno));
            return 1;
        }
        fr_voc_write_json(f, ds, r);
        if (f != stdout ? fclose(f) != 0 : fflush(f) != 0) {
            fprintf(stderr, "frcnn eval: %s: write error\n", a->json);
            return 1;
        }
    }
    if (a->plot) {
        fr_err e = {0};
        if (mkdir(a->plot, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "frcnn eval: %s: %s\n", a->plot, strerror(errno));
            return 1;
        }
        if (fr_voc_write_plots(a->plot, ds, r, &e) != FR_OK) {
            fprintf(stderr, "frcnn eval: %s\n", e.msg);
            return 1;
        }
    }
    return 0;
}

// Scores dir and writes the outputs; returns the exit status.
static int score(const args *a, fr_voc_dataset *ds, const char *dir, const fr_voc_limits *lim) {
    fr_err e = {0};
    fr_voc_eval_result r;
    if (fr_voc_evaluate(ds, dir, &a->score, lim, &r, &e) != FR_OK) {
        fprintf(stderr, "frcnn eval: %s\n", e.msg);
        return 1;
    }
    int rc = write_outputs(a, ds, &r);
    for (int c = 0; c < r.num_classes; c++) {
        const fr_voc_comp4_report *p = &r.rep[c];
        if (!r.has_file[c]) fprintf(stderr, "frcnn eval: %s (scored as no detections)\n", p->first_error);
        else if (p->bad_lines || p->unknown_ids)
            fprintf(stderr, "frcnn eval: %ld malformed lines, %ld unknown ids skipped; first: %s\n",
                    p->bad_lines, p->unknown_ids, p->first_error);
    }
    int nf = report_failures(ds);
    long problems = r.problems;
    fr_voc_eval_result_free(&r);
    if (rc) return rc;
    if (!a->keep_going && (nf || problems)) {
        if (nf)
            fprintf(stderr, "frcnn eval: %d of %d images failed (left out of the scores)\n", nf,
                    ds->list.num_ids);
        else fprintf(stderr, "frcnn eval: %ld problems in the results files\n", problems);
        return 1;
    }
    return 0;
}

// m: the model, loaded by the caller; run_model frees it.
static int run_model(const args *a, fr_voc_dataset *ds, const fr_voc_limits *lim, fr_model *m) {
    fr_err e = {0};
    fr_session *s = NULL;
    model_ctx c = {0};
    int rc = 1;
    char out_default[4096];
    const char *out = a->out;
    if (!out) {
        char vb[256];
        snprintf(vb, sizeof vb, "%s", a->voc);
        size_t l = strlen(vb);
        while (l > 1 && vb[l - 1] == '/') vb[--l] = 0;
        const char *base = strrchr(vb, '/');
        base = base ? base + 1 : vb;
        if (!*base || !strcmp(base, ".") || !strcmp(base, "..")) base = "VOC";
        snprintf(out_default, sizeof out_default, "results/%s/Main", base);
        if (mkdir("results", 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "frcnn eval: results: %s\n", strerror(errno));
            return 1;
        }
        char mid[4200];
        snprintf(mid, sizeof mid, "results/%s", base);
        if (mkdir(mid, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "frcnn eval: %s: %s\n", mid, strerror(errno));
            return 1;
        }
        out = out_default;
    }
    if (fr_session_new(&s, m, &e) != FR_OK) {
        fprintf(stderr, "frcnn eval: %s\n", e.msg);
        goto done;
    }
    c.s = s;
    c.cfg = fr_model_config(m);
    fr_detect_opts_default(&c.opts);
    if (a->score_threshold >= 0) c.opts.score_threshold = (float)a->score_threshold;
    if (a->max_detections) c.opts.max_detections = (int)a->max_detections;
    fr_image_limits_default(&c.lim);
    if (!(c.map = fr_calloc((size_t)c.cfg->num_classes, sizeof *c.map))) {
        fprintf(stderr, "frcnn eval: out of memory\n");
        goto done;
    }
    int mapped = 0;
    for (int k = 0; k < c.cfg->num_classes; k++) {
        const char *name = fr_voc_class_alias(c.cfg->classes[k]);
        c.map[k] = -1;
        for (int j = 0; j < ds->num_classes; j++)
            if (!strcmp(name, ds->classes[j])) c.map[k] = j, mapped++;
    }
    if (!mapped) {
        fprintf(stderr, "frcnn eval: none of the model's %d classes is an evaluated class\n",
                c.cfg->num_classes);
        goto done;
    }
    if (!a->quiet && mapped < ds->num_classes)
        fprintf(stderr, "frcnn eval: warning: the model detects %d of the %d evaluated classes\n",
                mapped, ds->num_classes);
    char model_id[512], opts_id[256];
    struct stat sb;
    const char *mb = strrchr(a->model, '/');
    snprintf(model_id, sizeof model_id, "%s file=%s bytes=%lld config=%s", fr_model_name(m),
             mb ? mb + 1 : a->model, stat(a->model, &sb) ? -1LL : (long long)sb.st_size,
             a->config ? a->config : "-");
    snprintf(opts_id, sizeof opts_id, "score_threshold=%.9g max_detections=%d%s",
             (double)c.opts.score_threshold, c.opts.max_detections, a->fast ? " fast" : "");

    progress pr = {.tty = isatty(STDERR_FILENO), .quiet = a->quiet, .t0 = fr_time_ms()};
    fr_voc_run_opts ro = {.out_dir = out, .resume = a->resume, .shard_k = a->shard_k,
                          .shard_n = a->shard_n, .model_id = model_id, .options_id = opts_id,
                          .stop = &g_stop, .progress = on_progress, .progress_user = &pr};
    fr_voc_run_report rep;
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND; // a second Ctrl-C kills at once
    sigemptyset(&sa.sa_mask);
    g_stop = 0;
    sigaction(SIGINT, &sa, &old);
    fr_status st = fr_voc_run(ds, &ro, detect_one, &c, &rep, &e);
    sigaction(SIGINT, &old, NULL);
    if (st != FR_OK) {
        fprintf(stderr, "frcnn eval: %s\n", e.msg);
        goto done;
    }
    if (!a->quiet && rep.bad_dets)
        fprintf(stderr, "frcnn eval: warning: %ld detections with non-finite values dropped\n",
                rep.bad_dets);
    if (!a->quiet && rep.size_mismatch)
        fprintf(stderr, "frcnn eval: warning: %ld images differ in size from their <size>\n",
                rep.size_mismatch);
    if (rep.interrupted || !rep.complete) {
        fprintf(stderr, "frcnn eval: interrupted after %d of %d images: results in %s are "
                        "incomplete, rerun with --resume\n",
                rep.done, rep.total, out);
        goto done;
    }
    if (a->shard_n > 1) {
        int nf = report_failures(ds);
        printf("shard %d/%d complete: %d images (%d failed) in %s; merge all shards with\n"
               "  frcnn eval --voc %s --set %s --merge --out DIR SHARD_DIR...\n",
               a->shard_k, a->shard_n, rep.total, nf, out, a->voc, a->set);
        rc = nf && !a->keep_going ? 1 : 0;
        if (rc) fprintf(stderr, "frcnn eval: %d images of shard %d/%d failed\n", nf, a->shard_k, a->shard_n);
        goto done;
    }
    rc = score(a, ds, out, lim);
done:
    fr_free(c.map);
    fr_free(c.buf);
    fr_session_free(s);
    fr_model_free(m);
    return rc;
}

int fr_cli_eval(int argc, char **argv) {
    args a;
    int u = parse_args(&a, argc, argv);
    if (u < 0) {
        usage(stdout);
        return 0;
    }
    if (u) return u;
    names cls = {0};
    char why[200];
    if (a.classes && split_classes(a.classes, &cls, why, sizeof why)) {
        names_free(&cls);
        return bad_usage("%s", why);
    }
    fr_model *m = NULL;
    if (a.model) {
        fr_err me = {0};
        if (fr_model_load_ex(&m, a.model, a.config, a.fast ? FR_MODEL_FAST : 0, &me) != FR_OK) {
            names_free(&cls);
            fprintf(stderr, "frcnn eval: %s\n", me.msg);
            return 1;
        }
        if (!a.classes && model_classes(fr_model_config(m), &cls)) {
            fr_model_free(m);
            fprintf(stderr, "frcnn eval: out of memory\n");
            return 1;
        }
    }
    fr_voc_dataset_opts dopt;
    fr_voc_dataset_opts_default(&dopt);
    dopt.boxes = a.boxes;
    fr_voc_dataset ds;
    fr_err e = {0};
    fr_status st = fr_voc_dataset_load(&ds, a.voc, a.set, (const char *const *)cls.v, cls.n,
                                       &dopt, &e);
    names_free(&cls);
    if (st != FR_OK) {
        fprintf(stderr, "frcnn eval: %s\n", e.msg);
        fr_model_free(m);
        return 1;
    }
    if (a.quiet) fr_log_set_level(FR_LOG_ERROR);
    else warn_dataset(&ds);
    int rc = 1;
    if (a.model) {
        rc = run_model(&a, &ds, &dopt.lim, m);
    } else if (a.merge) {
        if (fr_voc_merge(&ds, (const char *const *)a.pos, a.npos, a.out, &e) != FR_OK)
            fprintf(stderr, "frcnn eval: %s\n", e.msg);
        else rc = score(&a, &ds, a.out, &dopt.lim);
    } else {
        int found;
        if (fr_voc_run_apply(&ds, a.results, &found, &e) != FR_OK)
            fprintf(stderr, "frcnn eval: %s\n", e.msg);
        else rc = score(&a, &ds, a.results, &dopt.lim);
    }
    fr_voc_dataset_free(&ds);
    return rc;
}
