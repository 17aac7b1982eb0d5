// detect.c - `frcnn detect`: run the detector on images, print one JSON object per image.
#include "cli.h"
#include "core/alloc.h"
#include "core/draw.h"
#include "core/image.h"
#include "core/timer.h"
#include "detector/detector.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: frcnn detect -m MODEL [options] IMAGE|DIR...\n"
            "Detects objects in JPEG/PNG images and prints one JSON object per image (one per line):\n"
            "  {\"image\", \"model\", \"width\", \"height\", \"detections\": [{\"class_id\", \"label\", \"score\",\n"
            "   \"box\": [x1, y1, x2, y2]}], \"timing_ms\"}  (boxes in original-image pixels)\n"
            "A directory means its *.jpg, *.jpeg and *.png files, sorted by name.\n"
            "  -m, --model FILE         weights (.safetensors)\n"
            "  --config FILE            config JSON overriding the model's metadata\n"
            "  --fast                   fast mode: Winograd convolutions, about 1.3x faster on\n"
            "                           full-size models, boxes and scores slightly different\n"
            "  --score-threshold T      keep detections scoring above T (0..1; default: the model's)\n"
            "  --max-detections N       at most N per image (default: the model's)\n"
            "  --classes a,b,...        only these class names\n"
            "  --list FILE              read image paths from FILE, one per line\n"
            "  --draw OUT.png           write the image with labelled boxes (with several images,\n"
            "                           OUT must be a directory: OUT/<name>.png)\n"
            "  --quiet                  no progress on stderr\n"
            "Exit status: 0 all images done, 1 any image failed (an error object is printed for it), 2 usage.\n");
}

typedef struct {
    char **v;
    int n, cap;
} strlist;

static int push(strlist *l, const char *s) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        char **v = fr_realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = fr_strdup(s))) return -1;
    l->n++;
    return 0;
}

static void strlist_free(strlist *l) {
    for (int i = 0; i < l->n; i++) fr_free(l->v[i]);
    fr_free(l->v);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_image_name(const char *n) {
    const char *d = strrchr(n, '.');
    return d && (!strcasecmp(d, ".jpg") || !strcasecmp(d, ".jpeg") || !strcasecmp(d, ".png"));
}

static int add_path(strlist *l, const char *p) {
    struct stat sb;
    if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(p);
        if (!d) return push(l, p); // reported as an error later
        int first = l->n;
        struct dirent *e;
        while ((e = readdir(d)))
            if (is_image_name(e->d_name)) {
                char buf[4096];
                snprintf(buf, sizeof buf, "%s/%s", p, e->d_name);
                if (push(l, buf)) {
                    closedir(d);
                    return -1;
                }
            }
        closedir(d);
        qsort(l->v + first, (size_t)(l->n - first), sizeof(char *), cmp_str);
        return 0;
    }
    return push(l, p);
}

// Draws the detections on img and writes it as PNG.
static fr_status draw_result(fr_image *img, const fr_result *r, const fr_config *cfg, const char *path, fr_err *e) {
    float *boxes = fr_malloc(((size_t)r->n * 4 + 1) * sizeof(float));
    float *scores = fr_malloc(((size_t)r->n + 1) * sizeof(float));
    const char **labels = fr_malloc(((size_t)r->n + 1) * sizeof(char *));
    fr_status st = FR_OK;
    if (!boxes || !scores || !labels) st = fr_fail(e, FR_ERR_NOMEM, "out of memory");
    else {
        for (int i = 0; i < r->n; i++) {
            memcpy(boxes + 4 * i, r->dets[i].box, 4 * sizeof(float));
            scores[i] = r->dets[i].score;
            labels[i] = cfg->classes[r->dets[i].class_id];
        }
        fr_draw_boxes(img, boxes, labels, scores, r->n);
        st = fr_image_write_png(path, img, e);
    }
    fr_free(boxes);
    fr_free(scores);
    fr_free(labels);
    return st;
}

static void print_error(const char *img, const char *msg) {
    // JSON-escape the few characters a path or message may hold
    printf("{\"image\": \"");
    for (const char *p = img; *p; p++) {
        if (*p == '"' || *p == '\\') putchar('\\');
        if ((unsigned char)*p >= 0x20) putchar(*p);
    }
    printf("\", \"error\": {\"message\": \"");
    for (const char *p = msg; *p; p++) {
        if (*p == '"' || *p == '\\') putchar('\\');
        if ((unsigned char)*p >= 0x20) putchar(*p);
    }
    printf("\"}}\n");
}

int fr_cli_detect(int argc, char **argv) {
    const char *model = NULL, *config = NULL, *draw = NULL, *classes = NULL, *list = NULL;
    float thr = -1;
    int maxdet = 0, quiet = 0, rc = 0, fast = 0;
    strlist imgs = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        char *end;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            strlist_free(&imgs);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model = argv[++i];
        else if (!strcmp(a, "--config") && has) config = argv[++i];
        else if (!strcmp(a, "--draw") && has) draw = argv[++i];
        else if (!strcmp(a, "--classes") && has) classes = argv[++i];
        else if (!strcmp(a, "--list") && has) list = argv[++i];
        else if (!strcmp(a, "--quiet")) quiet = 1;
        else if (!strcmp(a, "--fast")) fast = 1;
        else if (!strcmp(a, "--score-threshold") && has) {
            double v = strtod(argv[++i], &end);
            if (*end || !(v >= 0 && v <= 1)) {
                fprintf(stderr, "frcnn detect: --score-threshold must be a number in [0, 1]\n");
                strlist_free(&imgs);
                return 2;
            }
            thr = (float)v;
        } else if (!strcmp(a, "--max-detections") && has) {
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 100000) {
                fprintf(stderr, "frcnn detect: --max-detections must be an integer in [1, 100000]\n");
                strlist_free(&imgs);
                return 2;
            }
            maxdet = (int)v;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "frcnn detect: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            strlist_free(&imgs);
            return 2;
        } else if (add_path(&imgs, a)) {
            fprintf(stderr, "frcnn detect: out of memory\n");
            strlist_free(&imgs);
            return 1;
        }
    }
    if (list) {
        FILE *f = fopen(list, "r");
        if (!f) {
            fprintf(stderr, "frcnn detect: %s: %s\n", list, strerror(errno));
            strlist_free(&imgs);
            return 1;
        }
        char line[4096];
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = 0;
            if (line[0] && push(&imgs, line)) break;
        }
        fclose(f);
    }
    if (!model || imgs.n == 0) {
        usage(stderr);
        strlist_free(&imgs);
        return 2;
    }
    fr_model *m = NULL;
    fr_session *s = NULL;
    unsigned char *mask = NULL;
    fr_err e = {0};
    if (fr_model_load_ex(&m, model, config, fast ? FR_MODEL_FAST : 0, &e) || fr_session_new(&s, m, &e)) {
        fprintf(stderr, "frcnn detect: %s\n", e.msg);
        rc = 1;
        goto done;
    }
    const fr_config *cfg = fr_model_config(m);
    fr_detect_opts opts;
    fr_detect_opts_default(&opts);
    opts.score_threshold = thr;
    opts.max_detections = maxdet;
    if (classes) {
        mask = fr_calloc((size_t)cfg->num_classes, 1);
        if (!mask) {
            fprintf(stderr, "frcnn detect: out of memory\n");
            rc = 1;
            goto done;
        }
        const char *p = classes;
        while (*p) {
            size_t n = strcspn(p, ",");
            int found = 0;
            for (int k = 0; k < cfg->num_classes; k++)
                if (strlen(cfg->classes[k]) == n && !strncmp(cfg->classes[k], p, n)) mask[k] = found = 1;
            if (!found) {
                fprintf(stderr, "frcnn detect: --classes: unknown class '%.*s'\n", (int)n, p);
                rc = 2;
                goto done;
            }
            p += n + (p[n] == ',');
        }
        opts.class_mask = mask;
    }
    int draw_dir = 0;
    if (draw && imgs.n > 1) {
        struct stat sb;
        if (stat(draw, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            fprintf(stderr, "frcnn detect: --draw %s: with several images it must be an existing directory\n", draw);
            rc = 2;
            goto done;
        }
        draw_dir = 1;
    }
    fr_image_limits lim;
    fr_image_limits_default(&lim);
    int progress = !quiet && imgs.n > 1;
    double t_start = fr_time_ms();
    for (int i = 0; i < imgs.n; i++) {
        fr_image img = {0};
        fr_result r = {0};
        double t0 = fr_time_ms();
        if (fr_image_load(&img, imgs.v[i], &lim, cfg->exif, &e)) {
            print_error(imgs.v[i], e.msg);
            rc = 1;
            continue;
        }
        double t_dec = fr_time_ms() - t0;
        if (fr_detect(s, &img, &opts, &r, &e)) {
            print_error(imgs.v[i], e.msg);
            fr_image_free(&img);
            rc = 1;
            continue;
        }
        r.ms_decode = t_dec;
        r.ms_total += t_dec;
        char *js = fr_result_to_json(m, &r);
        if (!js) {
            print_error(imgs.v[i], "out of memory");
            rc = 1;
        } else {
            // prepend the image path as the first key
            printf("{\"image\": \"");
            for (const char *p = imgs.v[i]; *p; p++) {
                if (*p == '"' || *p == '\\') putchar('\\');
                if ((unsigned char)*p >= 0x20) putchar(*p);
            }
            printf("\", %s\n", js + 1);
            fflush(stdout);
            fr_free(js);
        }
        if (draw) {
            char out[4096];
            if (draw_dir) {
                const char *b = strrchr(imgs.v[i], '/');
                b = b ? b + 1 : imgs.v[i];
                snprintf(out, sizeof out, "%s/%.*s.png", draw, (int)(strrchr(b, '.') ? strrchr(b, '.') - b : (long)strlen(b)), b);
            } else snprintf(out, sizeof out, "%s", draw);
            if (draw_result(&img, &r, cfg, out, &e)) {
                fprintf(stderr, "frcnn detect: --draw %s: %s\n", out, e.msg);
                rc = 1;
            }
        }
        fr_result_free(&r);
        fr_image_free(&img);
        if (progress) {
            double el = (fr_time_ms() - t_start) / 1e3;
            fprintf(stderr, "\r[%d/%d] %.2f images/s, ETA %.0f s   ", i + 1, imgs.n, (i + 1) / el,
                    el / (i + 1) * (imgs.n - i - 1));
        }
    }
    if (progress) fputc('\n', stderr);
done:
    fr_free(mask);
    fr_session_free(s);
    fr_model_free(m);
    strlist_free(&imgs);
    return rc;
}
