// test_eval_run.c - running a detector over a VOC set (src/eval/run.c) with a fake detector:
// every listed id ends scored or failed (V6, V7, V11), resume after SIGKILL and after a
// SIGINT/stop (V10) gives byte-identical comp4 files, a crash between writing an image's
// lines and its progress record loses and repeats nothing, shards merged equal one run,
// mismatched resumes/merges are refused, and scores read back equal the run's.
#include "core/alloc.h"
#include "eval/voc.h"
#include "eval/voc_internal.h"
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_tmp[256];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void rm_rf(const char *p) { nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static void path(char *buf, size_t cap, const char *a, const char *b) {
    snprintf(buf, cap, "%s/%s", a, b);
}

// ---------------------------------------------------------------- the fake detector

typedef struct {
    int calls, kill_at, stop_at, sigint_at;
    volatile sig_atomic_t *stop;
    int nclasses;
    fr_voc_run_det dets[8];
} fake;

// "Decodes" a JPEG: SOI, a SOF0 marker for the size, EOI at the end; dets from a path hash.
static fr_status fake_detect(void *user, const char *p, fr_voc_run_out *out, fr_err *err) {
    fake *f = user;
    f->calls++;
    if (f->kill_at == f->calls) raise(SIGKILL);
    if (f->sigint_at == f->calls) raise(SIGINT);
    if (f->stop_at == f->calls) *f->stop = 1;
    char *b;
    size_t n;
    fr_status st = fr_voc_read_file(p, 1 << 20, &b, &n, err);
    if (st != FR_OK) return st;
    unsigned char *u = (unsigned char *)b;
    int w = 0, h = 0;
    for (size_t i = 2; i + 8 < n; i++)
        if (u[i] == 0xff && u[i + 1] == 0xc0) {
            h = u[i + 5] << 8 | u[i + 6];
            w = u[i + 7] << 8 | u[i + 8];
            break;
        }
    int ok = n > 4 && u[0] == 0xff && u[1] == 0xd8 && u[n - 2] == 0xff && u[n - 1] == 0xd9 && w;
    fr_free(b);
    if (!ok) return fr_fail(err, FR_ERR_FORMAT, "%s: truncated or corrupt JPEG", p);
    uint32_t hsh = 2166136261u;
    for (const char *s = strrchr(p, '/'); *s; s++) hsh = (hsh ^ (unsigned char)*s) * 16777619u;
    out->width = w;
    out->height = h;
    out->n = (int)(hsh % 7);
    out->dets = f->dets;
    for (int d = 0; d < out->n; d++) {
        uint32_t x = hsh * (uint32_t)(d + 3) * 2654435761u;
        fr_voc_run_det *o = &f->dets[d];
        o->cls = (int)(x % (uint32_t)f->nclasses);
        o->score = (float)((x >> 8) % 10) / 10.0f + 0.05f; // many ties
        o->box[0] = (float)((x >> 4) % 50);
        o->box[1] = (float)((x >> 9) % 40) + 0.25f;
        o->box[2] = o->box[0] + 10.5f + (float)((x >> 13) % 40);
        o->box[3] = o->box[1] + 12.0f + (float)((x >> 17) % 30);
    }
    if (out->n > 2) out->dets[2].score = NAN; // dropped and counted
    return FR_OK;
}

// ---------------------------------------------------------------- fixtures

// A synthetic VOC tree with n images (annotations, JPEG copies of a tiny test image).
static void make_set(const char *root, int n) {
    char p[600], q[700];
    mkdir(root, 0777);
    path(p, sizeof p, root, "Annotations");
    mkdir(p, 0777);
    path(p, sizeof p, root, "ImageSets");
    mkdir(p, 0777);
    path(p, sizeof p, root, "ImageSets/Main");
    mkdir(p, 0777);
    path(p, sizeof p, root, "JPEGImages");
    mkdir(p, 0777);
    char *jpg;
    size_t jn;
    fr_err e = {0};
    CHECK(fr_voc_read_file("tests/data/voc/VOC2007/JPEGImages/good1.jpg", 1 << 20, &jpg, &jn, &e) ==
          FR_OK);
    path(p, sizeof p, root, "ImageSets/Main/test.txt");
    FILE *list = fopen(p, "w");
    for (int i = 0; i < n; i++) {
        fprintf(list, "%06d\n", i * 7 + 1);
        snprintf(q, sizeof q, "%s/Annotations/%06d.xml", root, i * 7 + 1);
        FILE *f = fopen(q, "w");
        fprintf(f, "<annotation><size><width>100</width><height>80</height></size>");
        for (int k = 0; k < i % 4; k++)
            fprintf(f,
                    "<object><name>%s</name><difficult>%d</difficult><bndbox><xmin>%d</xmin>"
                    "<ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax></bndbox></object>",
                    fr_voc_classes[(i + k) % 20], (i + k) % 5 == 0, 1 + (i * 3 + k) % 50,
                    1 + k * 5, 30 + (i * 3 + k) % 50, 30 + k * 10);
        fprintf(f, "</annotation>\n");
        fclose(f);
        snprintf(q, sizeof q, "%s/JPEGImages/%06d.jpg", root, i * 7 + 1);
        f = fopen(q, "wb");
        if (jpg) fwrite(jpg, 1, jn, f);
        fclose(f);
    }
    fclose(list);
    fr_free(jpg);
}

static int load(fr_voc_dataset *ds, const char *root, const char *set) {
    fr_err e = {0};
    int st = fr_voc_dataset_load(ds, root, set, NULL, 0, NULL, &e);
    CHECKF(st == FR_OK, "%s", e.msg);
    return st;
}

static fr_status run(fr_voc_dataset *ds, const char *out, int resume, int k, int n, fake *f,
                     const char *model, volatile sig_atomic_t *stop, fr_voc_run_report *rep,
                     fr_err *e) {
    fr_voc_run_opts o = {.out_dir = out, .resume = resume, .shard_k = k, .shard_n = n,
                         .model_id = model, .options_id = "t=0.05", .stop = stop};
    f->nclasses = ds->num_classes;
    return fr_voc_run(ds, &o, fake_detect, f, rep, e);
}

// 1 when every comp4 file and progress.txt of a and b are byte-identical.
static int same_dirs(const fr_voc_dataset *ds, const char *a, const char *b) {
    int same = 1;
    for (int c = 0; c <= ds->num_classes; c++) {
        char pa[700], pb[700];
        if (c < ds->num_classes) {
            fr_voc_comp4_path(pa, sizeof pa, a, ds->set, ds->classes[c]);
            fr_voc_comp4_path(pb, sizeof pb, b, ds->set, ds->classes[c]);
        } else {
            path(pa, sizeof pa, a, "progress.txt");
            path(pb, sizeof pb, b, "progress.txt");
        }
        char *x = NULL, *y = NULL;
        size_t nx = 0, ny = 0;
        fr_err e = {0};
        int rx = fr_voc_read_file(pa, 1 << 26, &x, &nx, &e);
        int ry = fr_voc_read_file(pb, 1 << 26, &y, &ny, &e);
        int eq = rx == FR_OK && ry == FR_OK && nx == ny && !memcmp(x, y, nx);
        if (!eq) fprintf(stderr, "  differ: %s %s\n", pa, pb);
        same &= eq;
        fr_free(x);
        fr_free(y);
    }
    return same;
}

static long count_lines(const char *p, const char *prefix) {
    char *b;
    size_t n;
    fr_err e = {0};
    if (fr_voc_read_file(p, 1 << 26, &b, &n, &e) != FR_OK) return -1;
    long k = 0;
    for (char *s = b; s && *s;) {
        if (!strncmp(s, prefix, strlen(prefix))) k++;
        s = strchr(s, '\n');
        if (s) s++;
    }
    fr_free(b);
    return k;
}

// ---------------------------------------------------------------- tests

TEST(test_every_id_accounted) {
    // V6 (missing JPEG), V7 (JPEG size != <size>), V9 (corrupt JPEG), V11 (nothing lost)
    fr_voc_dataset ds;
    if (load(&ds, "tests/data/voc/VOC2007", "test")) return;
    char out[300];
    path(out, sizeof out, g_tmp, "v_rows");
    fake f = {0};
    fr_voc_run_report rep;
    fr_err e = {0};
    int ann_failed = fr_voc_dataset_failed_count(&ds);
    CHECK(ds.list.num_ids == 25 && ann_failed == 16);
    CHECKF(run(&ds, out, 0, 0, 0, &f, "m", NULL, &rep, &e) == FR_OK, "%s", e.msg);
    CHECK(rep.complete && !rep.interrupted && rep.total == 9 && rep.done == 9);
    CHECK(rep.ok == 7 && rep.failed == 2 && rep.size_mismatch == 1 && rep.bad_dets > 0);
    int failed = fr_voc_dataset_failed_count(&ds);
    CHECK(failed == ann_failed + 2);
    char prog[400];
    path(prog, sizeof prog, out, "progress.txt");
    long ok = count_lines(prog, "ok "), nf = count_lines(prog, "failed ");
    CHECK(ok == 7 && nf == 2 && count_lines(prog, "done") == 1);
    CHECK(ok + failed == ds.list.num_ids); // scored + failed = listed
    for (int i = 0; i < ds.list.num_ids; i++) {
        const char *id = ds.list.ids[i];
        if (!strcmp(id, "nojpeg") || !strcmp(id, "corruptjpeg"))
            CHECKF(ds.fail[i] && strstr(ds.fail[i], "JPEGImages/") != NULL, "%s: %s", id,
                   ds.fail[i] ? ds.fail[i] : "(ok)");
        if (!strcmp(id, "unclosed"))
            CHECK(ds.fail[i] && strstr(ds.fail[i], "Annotations/unclosed.xml: line") != NULL);
        if (!strcmp(id, "../etc/passwd")) CHECK(ds.fail[i] && strstr(ds.fail[i], "separator"));
        if (!strcmp(id, "good1")) CHECK(ds.fail[i] == NULL);
    }
    // scoring the run's output directly, and via --results (run_apply) on a fresh dataset
    fr_voc_eval_result r1, r2;
    CHECK(fr_voc_evaluate(&ds, out, NULL, NULL, &r1, &e) == FR_OK);
    CHECK(r1.images_scored + r1.images_failed == r1.images_listed && r1.problems == 0);
    fr_voc_dataset ds2;
    int found = 0;
    if (!load(&ds2, "tests/data/voc/VOC2007", "test")) {
        CHECK(fr_voc_run_apply(&ds2, out, &found, &e) == FR_OK && found);
        CHECK(fr_voc_dataset_failed_count(&ds2) == failed);
        CHECK(fr_voc_evaluate(&ds2, out, NULL, NULL, &r2, &e) == FR_OK);
        for (int c = 0; c < r1.num_classes; c++)
            CHECK(memcmp(&r1.cls[c].ap07, &r2.cls[c].ap07, sizeof(double)) == 0 &&
                  memcmp(&r1.cls[c].ap10, &r2.cls[c].ap10, sizeof(double)) == 0);
        fr_voc_eval_result_free(&r2);
        fr_voc_dataset_free(&ds2);
    }
    fr_voc_eval_result_free(&r1);
    // a second run without --resume is refused; with it nothing is redone but the failures
    CHECK(run(&ds, out, 0, 0, 0, &f, "m", NULL, &rep, &e) == FR_ERR_INVALID);
    CHECK(strstr(e.msg, "--resume") != NULL);
    fr_voc_dataset_free(&ds);
    if (load(&ds, "tests/data/voc/VOC2007", "test")) return;
    f.calls = 0;
    CHECKF(run(&ds, out, 1, 0, 0, &f, "m", NULL, &rep, &e) == FR_OK, "%s", e.msg);
    CHECK(rep.skipped == 7 && f.calls == 2 && rep.failed == 2 && rep.complete);
    CHECK(run(&ds, out, 1, 0, 0, &f, "other model", NULL, &rep, &e) == FR_ERR_INVALID);
    CHECK(strstr(e.msg, "different model") != NULL);
    fr_voc_dataset_free(&ds);
}

TEST(test_resume_after_kill) {
    char root[300], ref[300], out[300];
    path(root, sizeof root, g_tmp, "set");
    path(ref, sizeof ref, g_tmp, "ref");
    path(out, sizeof out, g_tmp, "killed");
    make_set(root, 60);
    fr_voc_dataset ds;
    if (load(&ds, root, "test")) return;
    fake f = {0};
    fr_voc_run_report rep;
    fr_err e = {0};
    CHECKF(run(&ds, ref, 0, 0, 0, &f, "m", NULL, &rep, &e) == FR_OK, "%s", e.msg);
    CHECK(rep.complete && rep.ok == 60);
    for (int kill_at = 1; kill_at <= 41; kill_at += 20) {
        rm_rf(out);
        pid_t pid = fork();
        if (pid == 0) {
            fake fk = {.kill_at = kill_at};
            fr_voc_run_report r;
            fr_err e2 = {0};
            run(&ds, out, 0, 0, 0, &fk, "m", NULL, &r, &e2);
            _exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        char prog[400];
        path(prog, sizeof prog, out, "progress.txt");
        CHECK(count_lines(prog, "ok ") == kill_at - 1 && count_lines(prog, "done") == 0);
        // the crash window: lines of the next image flushed, its record torn
        char c4[500];
        fr_voc_comp4_path(c4, sizeof c4, out, "test", "dog");
        FILE *fc = fopen(c4, "ab");
        fprintf(fc, "%s 0.999 1.0 1.0 5.0 5.0\n%s 0.5 1.0", ds.list.ids[kill_at - 1],
                ds.list.ids[kill_at - 1]);
        fclose(fc);
        FILE *fp = fopen(prog, "ab");
        fprintf(fp, "ok %s", ds.list.ids[kill_at - 1]);
        fclose(fp);
        CHECK(run(&ds, out, 0, 0, 0, &f, "m", NULL, &rep, &e) == FR_ERR_INVALID); // needs resume
        int found;
        CHECK(fr_voc_run_apply(&ds, out, &found, &e) == FR_ERR_INVALID);
        CHECK(strstr(e.msg, "incomplete") != NULL);
        f.calls = 0;
        CHECKF(run(&ds, out, 1, 0, 0, &f, "m", NULL, &rep, &e) == FR_OK, "%s", e.msg);
        CHECK(rep.complete && rep.skipped == kill_at - 1 && f.calls == 61 - kill_at);
        CHECKF(same_dirs(&ds, ref, out), "kill at %d", kill_at);
    }
    fr_voc_dataset_free(&ds);
}

static volatile sig_atomic_t g_flag;
static void on_int(int s) {
    (void)s;
    g_flag = 1;
}

TEST(test_interrupt_and_resume) {
    char root[300], ref[300], out[300], prog[400];
    path(root, sizeof root, g_tmp, "set");
    path(ref, sizeof ref, g_tmp, "ref");
    path(out, sizeof out, g_tmp, "stopped");
    fr_voc_dataset ds;
    if (load(&ds, root, "test")) return;
    // stop flag raised during image 5: it completes, the run stops and says so
    volatile sig_atomic_t stop = 0;
    fake f = {.stop_at = 5, .stop = &stop};
    fr_voc_run_report rep;
    fr_err e = {0};
    CHECK(run(&ds, out, 0, 0, 0, &f, "m", &stop, &rep, &e) == FR_OK);
    CHECK(rep.interrupted && !rep.complete && rep.done == 5 && rep.total == 60);
    path(prog, sizeof prog, out, "progress.txt");
    CHECK(count_lines(prog, "ok ") == 5 && count_lines(prog, "# interrupted") == 1);
    stop = 0;
    f.stop_at = 0;
    CHECK(run(&ds, out, 1, 0, 0, &f, "m", &stop, &rep, &e) == FR_OK && rep.complete);
    CHECK(same_dirs(&ds, ref, out));
    // a real SIGINT in a child with a flag-setting handler, as frcnn eval installs
    rm_rf(out);
    pid_t pid = fork();
    if (pid == 0) {
        struct sigaction sa = {0};
        sa.sa_handler = on_int;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        fake fk = {.sigint_at = 9};
        fr_voc_run_report r;
        fr_err e2 = {0};
        fr_status s = run(&ds, out, 0, 0, 0, &fk, "m", &g_flag, &r, &e2);
        _exit(s == FR_OK && r.interrupted && r.done == 9 ? 3 : 4);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 3);
    CHECK(count_lines(prog, "ok ") == 9 && count_lines(prog, "# interrupted") == 1);
    CHECK(run(&ds, out, 1, 0, 0, &f, "m", NULL, &rep, &e) == FR_OK && rep.skipped == 9);
    CHECK(same_dirs(&ds, ref, out));
    fr_voc_dataset_free(&ds);
}

TEST(test_shards_and_merge) {
    char root[300], ref[300], sh[3][300], merged[300];
    path(root, sizeof root, g_tmp, "set");
    path(ref, sizeof ref, g_tmp, "ref");
    path(merged, sizeof merged, g_tmp, "merged");
    fr_voc_dataset ds;
    if (load(&ds, root, "test")) return;
    fake f = {0};
    fr_voc_run_report rep;
    fr_err e = {0};
    int total = 0;
    for (int k = 0; k < 3; k++) {
        char name[32];
        snprintf(name, sizeof name, "shard%d", k + 1);
        path(sh[k], sizeof sh[k], g_tmp, name);
        CHECKF(run(&ds, sh[k], 0, k + 1, 3, &f, "m", NULL, &rep, &e) == FR_OK, "%s", e.msg);
        CHECK(rep.complete && rep.total == 20);
        total += rep.total;
    }
    CHECK(total == 60);
    const char *dirs[3] = {sh[2], sh[0], sh[1]}; // any order
    CHECKF(fr_voc_merge(&ds, dirs, 3, merged, &e) == FR_OK, "%s", e.msg);
    CHECK(same_dirs(&ds, ref, merged));
    fr_voc_eval_result a, b;
    CHECK(fr_voc_evaluate(&ds, ref, NULL, NULL, &a, &e) == FR_OK);
    CHECK(fr_voc_evaluate(&ds, merged, NULL, NULL, &b, &e) == FR_OK);
    CHECK(memcmp(&a.map07, &b.map07, sizeof(double)) == 0 &&
          memcmp(&a.map10, &b.map10, sizeof(double)) == 0);
    fr_voc_eval_result_free(&a);
    fr_voc_eval_result_free(&b);
    // refusals
    const char *two[2] = {sh[0], sh[1]};
    CHECK(fr_voc_merge(&ds, two, 2, merged, &e) == FR_ERR_INVALID &&
          strstr(e.msg, "directories were given") != NULL);
    const char *dup[3] = {sh[0], sh[0], sh[1]};
    CHECK(fr_voc_merge(&ds, dup, 3, merged, &e) == FR_ERR_INVALID && strstr(e.msg, "twice"));
    const char *self[3] = {sh[0], sh[1], merged};
    CHECK(fr_voc_merge(&ds, self, 3, sh[1], &e) == FR_ERR_INVALID);
    int found;
    CHECK(fr_voc_run_apply(&ds, sh[0], &found, &e) == FR_ERR_INVALID && strstr(e.msg, "merge"));
    // a shard from another model, and an incomplete shard
    char other[300];
    path(other, sizeof other, g_tmp, "other");
    CHECK(run(&ds, other, 0, 2, 3, &f, "another model", NULL, &rep, &e) == FR_OK);
    const char *mixed[3] = {sh[0], other, sh[2]};
    CHECK(fr_voc_merge(&ds, mixed, 3, merged, &e) == FR_ERR_INVALID && strstr(e.msg, "model"));
    rm_rf(other);
    volatile sig_atomic_t stop = 0;
    fake fs = {.stop_at = 3, .stop = &stop};
    CHECK(run(&ds, other, 0, 2, 3, &fs, "m", &stop, &rep, &e) == FR_OK && rep.interrupted);
    CHECK(fr_voc_merge(&ds, mixed, 3, merged, &e) == FR_ERR_INVALID && strstr(e.msg, "incomplete"));
    // a run over another list is refused by merge and by --results
    fr_voc_dataset ds2;
    if (!load(&ds2, "tests/data/voc/VOC2007", "good")) {
        CHECK(fr_voc_merge(&ds2, dirs, 3, merged, &e) == FR_ERR_INVALID && strstr(e.msg, "image list"));
        CHECK(fr_voc_run_apply(&ds2, ref, &found, &e) == FR_ERR_INVALID);
        fr_voc_dataset_free(&ds2);
    }
    fr_voc_dataset_free(&ds);
}

TEST(test_foreign_out_dir) {
    char out[300], c4[500];
    path(out, sizeof out, g_tmp, "foreign");
    mkdir(out, 0777);
    fr_voc_dataset ds;
    if (load(&ds, "tests/data/voc/VOC2007", "good")) return;
    fr_voc_comp4_path(c4, sizeof c4, out, "good", "dog");
    FILE *f = fopen(c4, "w");
    fputs("good1 0.5 1 1 2 2\n", f);
    fclose(f);
    fake fk = {0};
    fr_voc_run_report rep;
    fr_err e = {0};
    CHECK(run(&ds, out, 1, 0, 0, &fk, "m", NULL, &rep, &e) == FR_ERR_INVALID);
    CHECK(strstr(e.msg, "without a progress.txt") != NULL && fk.calls == 0);
    CHECK(run(&ds, out, 0, 4, 3, &fk, "m", NULL, &rep, &e) == FR_ERR_INVALID);
    // one writer per directory: a second process (here another lock holder) is refused
    char busy[300], lock[400];
    path(busy, sizeof busy, g_tmp, "busy");
    mkdir(busy, 0777);
    path(lock, sizeof lock, busy, ".frcnn-eval.lock");
    int fd = open(lock, O_RDWR | O_CREAT, 0666);
    CHECK(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0);
    CHECK(run(&ds, busy, 0, 0, 0, &fk, "m", NULL, &rep, &e) == FR_ERR_INVALID);
    CHECK(strstr(e.msg, "another frcnn eval") != NULL && fk.calls == 0);
    close(fd);
    CHECK(run(&ds, busy, 0, 0, 0, &fk, "m", NULL, &rep, &e) == FR_OK && rep.complete);
    fr_voc_dataset_free(&ds);
}

int main(void) {
    fr_alloc_init();
    mkdir("build", 0777);
    snprintf(g_tmp, sizeof g_tmp, "build/tmp_eval_run_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_every_id_accounted);
    RUN(test_resume_after_kill);
    RUN(test_interrupt_and_resume);
    RUN(test_shards_and_merge);
    RUN(test_foreign_out_dir);
    if (!h_failed) rm_rf(g_tmp);
    return harness_done(__FILE__);
}
