// run.c - running a detector over a VOC set with crash-safe progress: resume, shards, merge
// (voc.h fr_voc_run / fr_voc_run_apply / fr_voc_merge).
//
// out_dir/progress.txt is the journal: a header naming the run (set, a hash of the image
// list and of the classes, shard, model, options), then one record per processed image,
// written only after that image's comp4 lines are flushed:
//   ok <id> <number of detections>
//   failed <id> <message>
// and "done" once the shard is complete. Resuming drops comp4 lines of images without an "ok"
// record (an image being written when the process died) and retries failed images, so no
// image is lost or repeated. Finished comp4 files are rewritten in image-list order, which
// makes resumed, sharded+merged and plain runs byte-identical. Lines are flushed to the
// kernel per image (a killed process loses nothing); there is no fsync per image.
#include "core/alloc.h"
#include "core/log.h"
#include "voc.h"
#include "voc_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROGRESS "progress.txt"
#define LOCKFILE ".frcnn-eval.lock" // flock'ed while a process writes the directory
#define PROGRESS_CAP ((size_t)1 << 31)

enum { ST_NONE, ST_OK, ST_FAILED };

typedef struct {
    char set[160];
    char list[48];    // "<count> <hash>"
    char classes[48]; // "<count> <hash>"
    int k, n;         // shard
    char model[300];
    char options[600];
} hdr;

static uint64_t fnv(uint64_t h, const char *s) {
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (h ^ '\n') * 1099511628211ull;
}

// Copies s into dst (cap bytes) with control characters turned into spaces.
static void clean(char *dst, size_t cap, const char *s) {
    size_t j = 0;
    for (; s && *s && j + 1 < cap; s++) dst[j++] = ((unsigned char)*s < 0x20) ? ' ' : *s;
    dst[j] = 0;
}

static void hdr_make(hdr *h, const fr_voc_dataset *ds, int k, int n, const char *model,
                     const char *options) {
    memset(h, 0, sizeof *h);
    clean(h->set, sizeof h->set, ds->set);
    uint64_t a = 1469598103934665603ull, b = a;
    for (int i = 0; i < ds->list.num_ids; i++) a = fnv(a, ds->list.ids[i]);
    for (int c = 0; c < ds->num_classes; c++) b = fnv(b, ds->classes[c]);
    snprintf(h->list, sizeof h->list, "%d %016llx", ds->list.num_ids, (unsigned long long)a);
    snprintf(h->classes, sizeof h->classes, "%d %016llx", ds->num_classes, (unsigned long long)b);
    h->k = k;
    h->n = n;
    clean(h->model, sizeof h->model, model ? model : "-");
    clean(h->options, sizeof h->options, options ? options : "-");
}

static int hdr_text(char *buf, size_t cap, const hdr *h) {
    int n = snprintf(buf, cap,
                     "# frcnn eval progress 1\n# set %s\n# list %s\n# classes %s\n# shard %d %d\n"
                     "# model %s\n# options %s\n",
                     h->set, h->list, h->classes, h->k, h->n, h->model, h->options);
    return (n < 0 || (size_t)n >= cap) ? -1 : n;
}

// Names the first header field that differs between a (found) and b (expected), or NULL.
static const char *hdr_diff(const hdr *a, const hdr *b, int check_shard, int check_run) {
    if (strcmp(a->set, b->set)) return "image set";
    if (strcmp(a->list, b->list)) return "image list (ids or their order)";
    if (strcmp(a->classes, b->classes)) return "class list";
    if (check_shard && (a->k != b->k || a->n != b->n)) return "shard";
    if (check_run && strcmp(a->model, b->model)) return "model";
    if (check_run && strcmp(a->options, b->options)) return "options";
    return NULL;
}

typedef struct {
    hdr h;
    int has_hdr;
    int done;             // "done" record present
    unsigned char *state; // per list index: ST_*
    int *ndets;           // per list index (ok records)
    char **msgs;          // per list index (failed records); owned
} journal;

static void journal_free(journal *j, int n) {
    if (j->msgs)
        for (int i = 0; i < n; i++) fr_free(j->msgs[i]);
    fr_free(j->msgs);
    fr_free(j->state);
    fr_free(j->ndets);
    memset(j, 0, sizeof *j);
}

static fr_status journal_alloc(journal *j, int n, fr_err *err) {
    memset(j, 0, sizeof *j);
    j->state = fr_calloc((size_t)n + 1, 1);
    j->ndets = fr_calloc((size_t)n + 1, sizeof *j->ndets);
    j->msgs = fr_calloc((size_t)n + 1, sizeof *j->msgs);
    if (!j->state || !j->ndets || !j->msgs) {
        journal_free(j, 0);
        return fr_fail(err, FR_ERR_NOMEM, "out of memory (progress)");
    }
    return FR_OK;
}

static int get_str(const char *line, const char *key, char *dst, size_t cap) {
    size_t kl = strlen(key);
    if (strncmp(line, key, kl)) return 0;
    clean(dst, cap, line + kl);
    return 1;
}

// Reads path into j (allocated by the caller for ds's list). Only complete lines count.
static fr_status journal_load(journal *j, const char *path, const fr_voc_dataset *ds,
                              fr_err *err) {
    char *buf;
    size_t len;
    fr_status st = fr_voc_read_file(path, PROGRESS_CAP, &buf, &len, err);
    if (st != FR_OK) return st;
    int fields = 0;
    long lineno = 0;
    for (size_t b = 0; b < len;) {
        char *nl = memchr(buf + b, '\n', len - b);
        if (!nl) break; // a torn last line: the image it describes is redone
        *nl = 0;
        char *line = buf + b;
        b = (size_t)(nl - buf) + 1;
        lineno++;
        if (strlen(line) != (size_t)(nl - line)) goto corrupt;
        if (lineno == 1) {
            if (strcmp(line, "# frcnn eval progress 1")) goto corrupt;
            continue;
        }
        if (line[0] == '#') {
            hdr *h = &j->h;
            fields += get_str(line, "# set ", h->set, sizeof h->set);
            fields += get_str(line, "# list ", h->list, sizeof h->list);
            fields += get_str(line, "# classes ", h->classes, sizeof h->classes);
            fields += get_str(line, "# model ", h->model, sizeof h->model);
            fields += get_str(line, "# options ", h->options, sizeof h->options);
            if (!strncmp(line, "# shard ", 8)) {
                if (sscanf(line + 8, "%d %d", &h->k, &h->n) != 2) goto corrupt;
                fields++;
            }
            continue;
        }
        if (!strcmp(line, "done")) {
            j->done = 1;
            continue;
        }
        int ok = !strncmp(line, "ok ", 3), failed = !strncmp(line, "failed ", 7);
        if (!ok && !failed) goto corrupt;
        char *id = line + (ok ? 3 : 7);
        char *sp = strchr(id, ' ');
        if (!sp) goto corrupt;
        int idx = fr_voc_idmap_get(ds->list.map, id, (size_t)(sp - id));
        if (idx < 0) {
            fr_free(buf);
            return fr_fail(err, FR_ERR_INVALID, "%s:%ld: id not in the image list", path, lineno);
        }
        j->state[idx] = ok ? ST_OK : ST_FAILED;
        fr_free(j->msgs[idx]);
        j->msgs[idx] = NULL;
        if (ok) {
            long v;
            if (fr_voc_parse_int(sp + 1, strlen(sp + 1), &v) || v < 0) goto corrupt;
            j->ndets[idx] = (int)v;
        } else if (!(j->msgs[idx] = fr_strdup(sp + 1))) {
            fr_free(buf);
            return fr_fail(err, FR_ERR_NOMEM, "out of memory (progress)");
        }
    }
    fr_free(buf);
    if (fields != 6 || j->h.n < 1 || j->h.k < 1 || j->h.k > j->h.n)
        return fr_fail(err, FR_ERR_INVALID, "%s: incomplete header", path);
    j->has_hdr = 1;
    return FR_OK;
corrupt:
    fr_free(buf);
    return fr_fail(err, FR_ERR_INVALID, "%s:%ld: not a progress record", path, lineno);
}

// Writes path atomically (path.tmp, then rename).
static fr_status write_atomic(const char *path, const char *data, size_t len, fr_err *err) {
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return fr_fail(err, FR_ERR_INVALID, "path too long: %s", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return fr_fail(err, FR_ERR_IO, "%s: %s", tmp, strerror(errno));
    size_t w = len ? fwrite(data, 1, len, f) : 0;
    int bad = w != len;
    bad |= fflush(f) != 0;
    bad |= fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return fr_fail(err, FR_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    return FR_OK;
}

// The journal text: header, one record per image with a state (list order), optional "done".
static fr_status journal_text(const journal *j, const hdr *h, int n, const char *const *ids,
                              int done, fr_voc_buf *out, fr_err *err) {
    char line[8192];
    int l = hdr_text(line, sizeof line, h);
    if (l < 0 || fr_voc_buf_add(out, line, (size_t)l)) goto nomem;
    for (int i = 0; i < n; i++) {
        if (j->state[i] == ST_NONE) continue;
        if (j->state[i] == ST_OK) l = snprintf(line, sizeof line, "ok %s %d\n", ids[i], j->ndets[i]);
        else l = snprintf(line, sizeof line, "failed %s %.7000s\n", ids[i], j->msgs[i] ? j->msgs[i] : "?");
        if (l < 0 || (size_t)l >= sizeof line || fr_voc_buf_add(out, line, (size_t)l)) goto nomem;
    }
    if (done && fr_voc_buf_add(out, "done\n", 5)) goto nomem;
    return FR_OK;
nomem:
    return fr_fail(err, FR_ERR_NOMEM, "out of memory (progress)");
}

// Reads the comp4 lines of in[0..nin-1] (missing files skipped, a torn last line dropped),
// keeps those of images with keep[i] != 0, and writes them to out in list order (stable).
typedef struct {
    int idx, file;
    size_t off, len;
} lref;

static fr_status rewrite_sorted(const fr_voc_dataset *ds, const char *const *in, int nin,
                                const char *out, const unsigned char *keep, fr_err *err) {
    fr_status st = FR_OK;
    int n = ds->list.num_ids;
    char **bufs = fr_calloc((size_t)nin + 1, sizeof *bufs);
    int *count = fr_calloc((size_t)n + 2, sizeof *count);
    lref *refs = NULL, *sorted = NULL;
    size_t nref = 0, cap = 0;
    fr_voc_buf text = {0};
    if (!bufs || !count) goto nomem;
    for (int f = 0; f < nin; f++) {
        if (access(in[f], F_OK) != 0) continue;
        size_t len;
        if ((st = fr_voc_read_file(in[f], (size_t)1 << 34, &bufs[f], &len, err)) != FR_OK)
            goto done;
        for (size_t b = 0; b < len;) {
            char *nl = memchr(bufs[f] + b, '\n', len - b);
            if (!nl) break;
            size_t e = (size_t)(nl - bufs[f]), s = b;
            b = e + 1;
            size_t t = s;
            while (t < e && bufs[f][t] != ' ' && bufs[f][t] != '\t') t++;
            int idx = fr_voc_idmap_get(ds->list.map, bufs[f] + s, t - s);
            if (idx < 0 || !keep[idx]) continue;
            if (nref == cap) {
                size_t nc = cap ? cap * 2 : 1024;
                lref *r = fr_realloc(refs, nc * sizeof *r);
                if (!r) goto nomem;
                refs = r;
                cap = nc;
            }
            refs[nref++] = (lref){idx, f, s, b - s};
            count[idx + 1]++;
        }
    }
    for (int i = 0; i < n; i++) count[i + 1] += count[i];
    sorted = fr_malloc((nref + 1) * sizeof *sorted);
    if (!sorted) goto nomem;
    for (size_t r = 0; r < nref; r++) sorted[count[refs[r].idx]++] = refs[r];
    if (fr_voc_buf_add(&text, "", 0)) goto nomem;
    for (size_t r = 0; r < nref; r++)
        if (fr_voc_buf_add(&text, bufs[sorted[r].file] + sorted[r].off, sorted[r].len)) goto nomem;
    st = write_atomic(out, text.p, text.n, err);
    goto done;
nomem:
    st = fr_fail(err, FR_ERR_NOMEM, "out of memory (rewriting %s)", out);
done:
    if (bufs)
        for (int f = 0; f < nin; f++) fr_free(bufs[f]);
    fr_free(bufs);
    fr_free(count);
    fr_free(refs);
    fr_free(sorted);
    fr_voc_buf_free(&text);
    return st;
}

static fr_status ensure_dir(const char *dir, fr_err *err) {
    struct stat sb;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return fr_fail(err, FR_ERR_IO, "%s: %s", dir, strerror(errno));
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return fr_fail(err, FR_ERR_IO, "%s: not a directory", dir);
    return FR_OK;
}

// Takes the directory's lock (released by close or at exit): one writer per directory, so two
// processes given the same --out cannot interleave their lines. Returns the fd, or -1.
static int lock_dir(const char *dir, fr_err *err) {
    char p[4096];
    if (fr_voc_join(p, sizeof p, dir, LOCKFILE)) {
        fr_fail(err, FR_ERR_INVALID, "path too long: %s", dir);
        return -1;
    }
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) {
        fr_fail(err, FR_ERR_IO, "%s: %s", p, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            fr_fail(err, FR_ERR_INVALID, "another frcnn eval is writing %s", dir);
        else fr_fail(err, FR_ERR_IO, "%s: lock: %s", p, strerror(e));
        return -1;
    }
    return fd;
}

// The canonical comp4 files and the "done" journal for the images marked ST_OK in j.
static fr_status finish(const fr_voc_dataset *ds, const char *const *in_dirs, int nin,
                        const char *out_dir, const journal *j, const hdr *h, fr_err *err) {
    fr_status st = FR_OK;
    int n = ds->list.num_ids;
    unsigned char *keep = fr_calloc((size_t)n + 1, 1);
    char **in = fr_calloc((size_t)nin + 1, sizeof *in);
    fr_voc_buf text = {0};
    char out[4096], prog[4096];
    if (!keep || !in) {
        st = fr_fail(err, FR_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) keep[i] = j->state[i] == ST_OK;
    for (int f = 0; f < nin; f++)
        if (!(in[f] = fr_malloc(4096))) {
            st = fr_fail(err, FR_ERR_NOMEM, "out of memory");
            goto done;
        }
    for (int c = 0; c < ds->num_classes; c++) {
        for (int f = 0; f < nin; f++)
            if (fr_voc_comp4_path(in[f], 4096, in_dirs[f], ds->set, ds->classes[c])) goto toolong;
        if (fr_voc_comp4_path(out, sizeof out, out_dir, ds->set, ds->classes[c])) goto toolong;
        st = rewrite_sorted(ds, (const char *const *)in, nin, out, keep, err);
        if (st != FR_OK) goto done;
    }
    if (fr_voc_join(prog, sizeof prog, out_dir, PROGRESS)) goto toolong;
    if ((st = journal_text(j, h, n, (const char *const *)ds->list.ids, 1, &text, err)) != FR_OK)
        goto done;
    st = write_atomic(prog, text.p, text.n, err);
    goto done;
toolong:
    st = fr_fail(err, FR_ERR_INVALID, "path too long under %s", out_dir);
done:
    if (in)
        for (int f = 0; f < nin; f++) fr_free(in[f]);
    fr_free(in);
    fr_free(keep);
    fr_voc_buf_free(&text);
    return st;
}

// Copies msg into a single line prefixed with path (unless it already names it).
static void failure_line(char *dst, size_t cap, const char *path, const char *msg) {
    fr_voc_buf b = {0};
    int named = !strncmp(msg, path, strlen(path));
    if ((named || (!fr_voc_buf_add(&b, path, strlen(path)) && !fr_voc_buf_add(&b, ": ", 2))) &&
        !fr_voc_buf_add(&b, msg, strlen(msg)))
        clean(dst, cap, b.p);
    else
        clean(dst, cap, msg);
    fr_voc_buf_free(&b);
}

fr_status fr_voc_run(fr_voc_dataset *ds, const fr_voc_run_opts *o, fr_voc_detect_fn det,
                     void *det_user, fr_voc_run_report *rep, fr_err *err) {
    memset(rep, 0, sizeof *rep);
    int n = ds->list.num_ids, K = ds->num_classes;
    int sk = o->shard_n ? o->shard_k : 1, sn = o->shard_n ? o->shard_n : 1;
    if (sn < 1 || sk < 1 || sk > sn)
        return fr_fail(err, FR_ERR_INVALID, "bad shard %d/%d (want 1 <= K <= N)", sk, sn);
    fr_status st = ensure_dir(o->out_dir, err);
    if (st != FR_OK) return st;
    int lockfd = lock_dir(o->out_dir, err);
    if (lockfd < 0) return err ? err->status : FR_ERR_IO;
    char prog[4096], path[4096];
    if (fr_voc_join(prog, sizeof prog, o->out_dir, PROGRESS)) {
        close(lockfd);
        return fr_fail(err, FR_ERR_INVALID, "path too long: %s", o->out_dir);
    }
    hdr h;
    hdr_make(&h, ds, sk, sn, o->model_id, o->options_id);
    journal j;
    if ((st = journal_alloc(&j, n, err)) != FR_OK) {
        close(lockfd);
        return st;
    }
    FILE **files = fr_calloc((size_t)K + 1, sizeof *files);
    unsigned char *touched = fr_calloc((size_t)K + 1, 1);
    fr_voc_buf text = {0};
    FILE *pf = NULL;
    if (!files || !touched) goto nomem;

    if (access(prog, F_OK) == 0) {
        if (!o->resume) {
            st = fr_fail(err, FR_ERR_INVALID,
                         "%s holds a run (progress.txt): use --resume to continue it, or "
                         "another --out directory",
                         o->out_dir);
            goto done;
        }
        if ((st = journal_load(&j, prog, ds, err)) != FR_OK) goto done;
        const char *d = hdr_diff(&j.h, &h, 1, 1);
        if (d) {
            st = fr_fail(err, FR_ERR_INVALID,
                         "%s holds a run with a different %s: refusing to resume it", o->out_dir,
                         d);
            goto done;
        }
        for (int i = 0; i < n; i++) // failed images are retried
            if (j.state[i] == ST_FAILED) {
                j.state[i] = ST_NONE;
                fr_free(j.msgs[i]);
                j.msgs[i] = NULL;
            }
        // drop the lines of images without an ok record, then rewrite the journal
        const char *dir = o->out_dir;
        unsigned char *keep = j.state; // ST_OK == 1, everything else 0
        for (int c = 0; c < K; c++) {
            if (fr_voc_comp4_path(path, sizeof path, dir, ds->set, ds->classes[c])) goto toolong;
            const char *in[1] = {path};
            if (access(path, F_OK) == 0 &&
                (st = rewrite_sorted(ds, in, 1, path, keep, err)) != FR_OK)
                goto done;
        }
    } else {
        for (int c = 0; c < K; c++) {
            if (fr_voc_comp4_path(path, sizeof path, o->out_dir, ds->set, ds->classes[c]))
                goto toolong;
            if (access(path, F_OK) == 0) {
                st = fr_fail(err, FR_ERR_INVALID,
                             "%s holds comp4 files without a progress.txt (not a frcnn eval "
                             "run): choose another --out directory",
                             o->out_dir);
                goto done;
            }
        }
    }
    if ((st = journal_text(&j, &h, n, (const char *const *)ds->list.ids, 0, &text, err)) != FR_OK)
        goto done;
    if ((st = write_atomic(prog, text.p, text.n, err)) != FR_OK) goto done;
    for (int c = 0; c < K; c++) {
        if (fr_voc_comp4_path(path, sizeof path, o->out_dir, ds->set, ds->classes[c])) goto toolong;
        if (!(files[c] = fopen(path, "ab"))) {
            st = fr_fail(err, FR_ERR_IO, "%s: %s", path, strerror(errno));
            goto done;
        }
    }
    if (!(pf = fopen(prog, "ab"))) {
        st = fr_fail(err, FR_ERR_IO, "%s: %s", prog, strerror(errno));
        goto done;
    }

    for (int i = 0; i < n; i++)
        if (i % sn == sk - 1 && !ds->fail[i]) {
            rep->total++;
            rep->skipped += j.state[i] == ST_OK;
        }
    rep->ok = rep->done = rep->skipped;
    int here = 0;
    for (int i = 0; i < n; i++) {
        if (i % sn != sk - 1 || ds->fail[i] || j.state[i] == ST_OK) continue;
        if (o->stop && *o->stop) {
            rep->interrupted = 1;
            break;
        }
        if (fr_voc_image_path(ds, i, path, sizeof path)) goto toolong;
        fr_voc_run_out out = {0};
        fr_err e = {0};
        fr_status dst = det(det_user, path, &out, &e);
        if (dst == FR_ERR_NOMEM) {
            st = fr_fail(err, FR_ERR_NOMEM, "%s: %s", path, e.msg);
            goto done;
        }
        char line[1400];
        if (dst != FR_OK) {
            char msg[1100];
            failure_line(msg, sizeof msg, path, e.msg[0] ? e.msg : fr_status_name(dst));
            if ((st = fr_voc_dataset_fail(ds, i, msg, err)) != FR_OK) goto done;
            if (!(j.msgs[i] = fr_strdup(msg))) goto nomem;
            j.state[i] = ST_FAILED;
            fprintf(pf, "failed %s %s\n", ds->list.ids[i], msg);
            rep->failed++;
        } else {
            if (ds->width[i] > 0 && (out.width != ds->width[i] || out.height != ds->height[i])) {
                if (rep->size_mismatch++ < 5)
                    fr_log(FR_LOG_WARN, "%s: image is %dx%d but <size> says %dx%d (using the image)",
                           path, out.width, out.height, ds->width[i], ds->height[i]);
            }
            int nd = 0;
            for (int d = 0; d < out.n; d++) {
                const fr_voc_run_det *dt = &out.dets[d];
                int ok = dt->cls >= 0 && dt->cls < K && isfinite(dt->score);
                for (int q = 0; q < 4; q++) ok = ok && isfinite(dt->box[q]);
                if (!ok) {
                    rep->bad_dets++;
                    continue;
                }
                int l = fr_voc_comp4_format(line, sizeof line, ds->list.ids[i], dt->score, dt->box);
                if (l < 0 || (size_t)l >= sizeof line) goto toolong;
                fputs(line, files[dt->cls]);
                touched[dt->cls] = 1;
                nd++;
            }
            for (int c = 0; c < K; c++) {
                if (!touched[c]) continue;
                touched[c] = 0;
                if (fflush(files[c]) != 0 || ferror(files[c])) {
                    st = fr_fail(err, FR_ERR_IO, "writing comp4 files in %s: %s", o->out_dir,
                                 strerror(errno));
                    goto done;
                }
            }
            j.state[i] = ST_OK;
            j.ndets[i] = nd;
            fprintf(pf, "ok %s %d\n", ds->list.ids[i], nd);
            rep->ok++;
        }
        if (fflush(pf) != 0 || ferror(pf)) {
            st = fr_fail(err, FR_ERR_IO, "%s: %s", prog, strerror(errno));
            goto done;
        }
        rep->done++;
        here++;
        if (o->progress) o->progress(o->progress_user, rep->done, rep->total, here);
    }
    rep->complete = rep->done == rep->total;
    if (!rep->complete) {
        fprintf(pf, "# interrupted after %d of %d images\n", rep->done, rep->total);
        fflush(pf);
    }
    for (int c = 0; c < K; c++) {
        if (fclose(files[c]) != 0 && st == FR_OK)
            st = fr_fail(err, FR_ERR_IO, "closing comp4 files in %s", o->out_dir);
        files[c] = NULL;
    }
    fclose(pf);
    pf = NULL;
    if (st != FR_OK) goto done;
    if (rep->complete) {
        const char *dirs[1] = {o->out_dir};
        st = finish(ds, dirs, 1, o->out_dir, &j, &h, err);
    }
    goto done;
toolong:
    st = fr_fail(err, FR_ERR_INVALID, "path too long under %s", o->out_dir);
    goto done;
nomem:
    st = fr_fail(err, FR_ERR_NOMEM, "out of memory (run)");
done:
    if (files)
        for (int c = 0; c < K; c++)
            if (files[c]) fclose(files[c]);
    if (pf) fclose(pf);
    fr_free(files);
    fr_free(touched);
    fr_voc_buf_free(&text);
    journal_free(&j, n);
    close(lockfd);
    return st;
}

// Checks that every usable id of shard (k, n) has a record in j.
static fr_status check_coverage(const fr_voc_dataset *ds, const journal *j, int k, int sn,
                                const char *where, fr_err *err) {
    for (int i = 0; i < ds->list.num_ids; i++)
        if (i % sn == k - 1 && !ds->fail[i] && j->state[i] == ST_NONE)
            return fr_fail(err, FR_ERR_INVALID, "%s: image %s was not processed", where,
                           ds->list.ids[i]);
    return FR_OK;
}

static fr_status apply_failures(fr_voc_dataset *ds, const journal *j, fr_err *err) {
    for (int i = 0; i < ds->list.num_ids; i++)
        if (j->state[i] == ST_FAILED) {
            fr_status st = fr_voc_dataset_fail(ds, i, j->msgs[i] ? j->msgs[i] : "failed", err);
            if (st != FR_OK) return st;
        }
    return FR_OK;
}

fr_status fr_voc_run_apply(fr_voc_dataset *ds, const char *dir, int *found, fr_err *err) {
    *found = 0;
    char prog[4096];
    if (fr_voc_join(prog, sizeof prog, dir, PROGRESS))
        return fr_fail(err, FR_ERR_INVALID, "path too long: %s", dir);
    if (access(prog, F_OK) != 0) return FR_OK;
    *found = 1;
    journal j;
    int n = ds->list.num_ids;
    fr_status st = journal_alloc(&j, n, err);
    if (st != FR_OK) return st;
    if ((st = journal_load(&j, prog, ds, err)) != FR_OK) goto done;
    hdr h;
    hdr_make(&h, ds, 1, 1, NULL, NULL);
    const char *d = hdr_diff(&j.h, &h, 0, 0);
    if (d) {
        st = fr_fail(err, FR_ERR_INVALID, "%s: the run was made with a different %s", dir, d);
        goto done;
    }
    if (j.h.n != 1) {
        st = fr_fail(err, FR_ERR_INVALID,
                     "%s is shard %d/%d of a run: merge the shards first (frcnn eval --merge)",
                     dir, j.h.k, j.h.n);
        goto done;
    }
    if (!j.done) {
        st = fr_fail(err, FR_ERR_INVALID, "%s: the run is incomplete: finish it with --resume",
                     dir);
        goto done;
    }
    if ((st = check_coverage(ds, &j, 1, 1, dir, err)) != FR_OK) goto done;
    st = apply_failures(ds, &j, err);
done:
    journal_free(&j, n);
    return st;
}

fr_status fr_voc_merge(fr_voc_dataset *ds, const char *const *dirs, int nd, const char *out_dir,
                       fr_err *err) {
    if (nd < 1) return fr_fail(err, FR_ERR_INVALID, "no shard directories to merge");
    int n = ds->list.num_ids;
    journal all, one;
    fr_status st = journal_alloc(&all, n, err);
    if (st != FR_OK) return st;
    if ((st = journal_alloc(&one, n, err)) != FR_OK) {
        journal_free(&all, n);
        return st;
    }
    int lockfd = -1;
    int *seen = fr_calloc((size_t)nd + 1, sizeof *seen);
    if (!seen) {
        st = fr_fail(err, FR_ERR_NOMEM, "out of memory");
        goto done;
    }
    hdr expect;
    hdr_make(&expect, ds, 1, 1, NULL, NULL);
    char prog[4096];
    char out_real[PATH_MAX], in_real[PATH_MAX];
    if ((st = ensure_dir(out_dir, err)) != FR_OK) goto done;
    if ((lockfd = lock_dir(out_dir, err)) < 0) {
        st = err ? err->status : FR_ERR_IO;
        goto done;
    }
    if (!realpath(out_dir, out_real)) {
        st = fr_fail(err, FR_ERR_IO, "%s: %s", out_dir, strerror(errno));
        goto done;
    }
    for (int s = 0; s < nd; s++) {
        if (realpath(dirs[s], in_real) && !strcmp(in_real, out_real)) {
            st = fr_fail(err, FR_ERR_INVALID, "--out %s is one of the shard directories", out_dir);
            goto done;
        }
        if (fr_voc_join(prog, sizeof prog, dirs[s], PROGRESS)) {
            st = fr_fail(err, FR_ERR_INVALID, "path too long: %s", dirs[s]);
            goto done;
        }
        journal_free(&one, n);
        if ((st = journal_alloc(&one, n, err)) != FR_OK) goto done;
        if (access(prog, F_OK) != 0) {
            st = fr_fail(err, FR_ERR_INVALID, "%s: no progress.txt (not a frcnn eval shard)",
                         dirs[s]);
            goto done;
        }
        if ((st = journal_load(&one, prog, ds, err)) != FR_OK) goto done;
        const char *d = hdr_diff(&one.h, &expect, 0, 0);
        if (!d && s > 0) d = hdr_diff(&one.h, &all.h, 0, 1);
        if (d) {
            st = fr_fail(err, FR_ERR_INVALID, "%s: made with a different %s than %s", dirs[s], d,
                         s ? dirs[0] : "this --voc/--set");
            goto done;
        }
        if (one.h.n != nd) {
            st = fr_fail(err, FR_ERR_INVALID, "%s is shard %d/%d but %d directories were given",
                         dirs[s], one.h.k, one.h.n, nd);
            goto done;
        }
        if (seen[one.h.k - 1]++) {
            st = fr_fail(err, FR_ERR_INVALID, "%s: shard %d/%d given twice", dirs[s], one.h.k,
                         one.h.n);
            goto done;
        }
        if (!one.done) {
            st = fr_fail(err, FR_ERR_INVALID, "%s: shard %d/%d is incomplete: finish it with "
                                              "--resume",
                         dirs[s], one.h.k, one.h.n);
            goto done;
        }
        if ((st = check_coverage(ds, &one, one.h.k, one.h.n, dirs[s], err)) != FR_OK) goto done;
        if (s == 0) all.h = one.h;
        for (int i = 0; i < n; i++) {
            if (one.state[i] == ST_NONE) continue;
            if (i % nd != one.h.k - 1) {
                st = fr_fail(err, FR_ERR_INVALID, "%s: image %s does not belong to shard %d",
                             dirs[s], ds->list.ids[i], one.h.k);
                goto done;
            }
            all.state[i] = one.state[i];
            all.ndets[i] = one.ndets[i];
            all.msgs[i] = one.msgs[i];
            one.msgs[i] = NULL;
        }
    }
    all.h.k = all.h.n = 1;
    if ((st = finish(ds, dirs, nd, out_dir, &all, &all.h, err)) != FR_OK) goto done;
    st = apply_failures(ds, &all, err);
done:
    if (lockfd >= 0) close(lockfd);
    fr_free(seen);
    journal_free(&one, n);
    journal_free(&all, n);
    return st;
}
