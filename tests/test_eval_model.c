// test_eval_model.c - `frcnn eval -m MODEL` end to end with the real detector and image
// decoder (tests/data/voc/voc_eval_test.safetensors, a tiny seeded model): failed images listed
// with their paths (missing, truncated JPEG, size != <size>), refusing to overwrite a run,
// resume, options mismatch, shards + merge byte-identical to one run, and Ctrl-C (SIGINT)
// flushing a run marked incomplete that --resume completes identically.
#include "core/alloc.h"
#include "eval/voc_internal.h"
#include "cli.h"
#include "harness.h"

#include <ftw.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define V "tests/data/voc/VOC2007"
#define M "tests/data/voc/voc_eval_test.safetensors"

// 1 when the comp4 files of the given classes and progress.txt are byte-identical in a and b.
static int same_run(const char *a, const char *b, const char *set, const char *const *cls, int n) {
    int same = 1;
    for (int c = 0; c <= n; c++) {
        char pa[400], pb[400];
        if (c < n) {
            snprintf(pa, sizeof pa, "%s/comp4_det_%s_%s.txt", a, set, cls[c]);
            snprintf(pb, sizeof pb, "%s/comp4_det_%s_%s.txt", b, set, cls[c]);
        } else {
            snprintf(pa, sizeof pa, "%s/progress.txt", a);
            snprintf(pb, sizeof pb, "%s/progress.txt", b);
        }
        char *x = slurp(pa), *y = slurp(pb);
        int eq = x && y && !strcmp(x, y);
        if (!eq) fprintf(stderr, "  differ: %s %s\n", pa, pb);
        same &= eq;
        fr_free(x);
        fr_free(y);
    }
    return same;
}

static long count(const char *file, const char *prefix) {
    char *b = slurp(file);
    long k = 0;
    for (char *s = b; s && *s;) {
        k += !strncmp(s, prefix, strlen(prefix));
        s = strchr(s, '\n');
        if (s) s++;
    }
    fr_free(b);
    return k;
}

TEST(test_model_runs) {
    // the real detector and image decoder on the V-row dataset: a missing JPEG (V6), a JPEG
    // whose size differs from <size> (V7), a truncated JPEG (V9); resume, shards and merge
    setenv("OMP_NUM_THREADS", "1", 1);
    const char *cls[] = {"dog", "person"};
    char one[300], sh1[300], sh2[300], mg[300], prog[400], tab1[4096] = "";
    snprintf(one, sizeof one, "%s/m_one", g_tmp);
    snprintf(sh1, sizeof sh1, "%s/m_sh1", g_tmp);
    snprintf(sh2, sizeof sh2, "%s/m_sh2", g_tmp);
    snprintf(mg, sizeof mg, "%s/m_merged", g_tmp);
    snprintf(prog, sizeof prog, "%s/progress.txt", one);
    const char *a[] = {"eval", "-m", M, "--voc", V, "--out", one, "--classes", "dog,person", NULL};
    CHECK(frcnn(a) == 1);
    CHECK(last_err_has("18 of 25 images failed"));
    char *err = slurp(g_err);
    CHECK(err && strstr(err, "failed: " V "/JPEGImages/nojpeg.jpg: "));
    CHECK(err && strstr(err, "failed: " V "/JPEGImages/corruptjpeg.jpg: "));
    CHECK(err && strstr(err, "1 images differ in size from their <size>"));
    fr_free(err);
    CHECK(count(prog, "ok ") == 7 && count(prog, "failed ") == 2 && count(prog, "done") == 1);
    char *t = slurp(g_out);
    if (t) snprintf(tab1, sizeof tab1, "%s", t);
    fr_free(t);
    CHECK(strstr(tab1, "25 listed, 7 scored, 18 failed") != NULL);
    CHECK(frcnn(a) == 1 && last_err_has("--resume")); // the directory holds a run
    const char *r[] = {"eval", "-m", M, "--voc", V, "--out", one, "--classes", "dog,person",
                       "--resume", "--keep-going", NULL};
    CHECK(frcnn(r) == 0); // the two failed images are retried, and fail again
    CHECK(count(prog, "ok ") == 7 && count(prog, "failed ") == 2);
    const char *o[] = {"eval", "-m", M, "--voc", V, "--out", one, "--classes", "dog,person",
                       "--resume", "--score-threshold", "0.5", NULL};
    CHECK(frcnn(o) == 1 && last_err_has("different options"));
    const char *s1[] = {"eval", "-m", M, "--voc", V, "--out", sh1, "--classes", "dog,person",
                        "--shard", "1/2", "-q", NULL};
    const char *s2[] = {"eval", "-m", M, "--voc", V, "--out", sh2, "--classes", "dog,person",
                        "--shard", "2/2", "-q", NULL};
    CHECK(frcnn(s1) == 1 && last_err_has("of shard 1/2 failed")); // corruptjpeg is in shard 1
    CHECK(frcnn(s2) == 1 && last_err_has("of shard 2/2 failed"));
    const char *m[] = {"eval", "--voc", V, "--classes", "dog,person", "--merge", "--out", mg, sh2,
                       sh1, NULL};
    CHECK(frcnn(m) == 1 && last_err_has("18 of 25 images failed"));
    CHECK(same_run(one, mg, "test", cls, 2));
    t = slurp(g_out);
    CHECK(t && !strcmp(t, tab1)); // the same table
    fr_free(t);
    const char *nm[] = {"eval", "--voc", V, "-m", "build/no/such/model.safetensors", "--out", mg,
                        NULL};
    CHECK(frcnn(nm) == 1 && last_err_has("model.safetensors"));
    const char *u[] = {"eval", "-m", M, "--voc", V, "--out", mg, "--classes", "unicorn", NULL};
    CHECK(frcnn(u) == 1 && last_err_has("none of the model's 20 classes"));
}

TEST(test_model_sigint) {
    // Ctrl-C: the image in progress completes, the run is marked incomplete (exit 1), and
    // --resume finishes it with files identical to an uninterrupted run
    setenv("OMP_NUM_THREADS", "1", 1);
    char set[300], p[500], ref[300], out[300], prog[400];
    snprintf(set, sizeof set, "%s/sigset", g_tmp);
    snprintf(ref, sizeof ref, "%s/sig_ref", g_tmp);
    snprintf(out, sizeof out, "%s/sig_out", g_tmp);
    snprintf(prog, sizeof prog, "%s/progress.txt", out);
    const char *sub[] = {"", "/Annotations", "/ImageSets", "/ImageSets/Main", "/JPEGImages"};
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s%s", set, sub[i]);
        mkdir(p, 0777);
    }
    char *img = slurp("tests/data/det_small.png");
    size_t img_n = 0;
    {
        FILE *f = fopen("tests/data/det_small.png", "rb");
        if (f) {
            fseek(f, 0, SEEK_END);
            img_n = (size_t)ftell(f);
            fclose(f);
        }
    }
    snprintf(p, sizeof p, "%s/ImageSets/Main/test.txt", set);
    FILE *list = fopen(p, "w");
    for (int i = 0; i < 40 && list && img; i++) {
        fprintf(list, "%04d\n", i);
        snprintf(p, sizeof p, "%s/Annotations/%04d.xml", set, i);
        FILE *f = fopen(p, "w");
        fprintf(f, "<annotation><object><name>%s</name><difficult>0</difficult><bndbox><xmin>%d"
                   "</xmin><ymin>5</ymin><xmax>60</xmax><ymax>50</ymax></bndbox></object>"
                   "</annotation>\n",
                i % 3 ? "dog" : "person", 1 + i % 20);
        fclose(f);
        snprintf(p, sizeof p, "%s/JPEGImages/%04d.jpg", set, i); // a PNG: decoded by content
        f = fopen(p, "wb");
        fwrite(img, 1, img_n, f);
        fclose(f);
    }
    if (list) fclose(list);
    fr_free(img);
    const char *a[] = {"eval", "-m", M, "--voc", set, "--out", ref, "-q", NULL};
    CHECK(frcnn(a) == 0);
    const char *argv[] = {g_bin, "eval", "-m", M, "--voc", set, "--out", out, NULL};
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(g_out, "w", stdout) || !freopen(g_err, "w", stderr)) _exit(126);
        execv(g_bin, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 20000 && count(prog, "ok ") < 2; i++) usleep(2000);
    kill(pid, SIGINT);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    CHECK(last_err_has("incomplete, rerun with --resume"));
    long done = count(prog, "ok ");
    CHECK(done >= 2 && done < 40 && count(prog, "# interrupted") == 1);
    const char *b[] = {"eval", "--voc", set, "--results", out, NULL};
    CHECK(frcnn(b) == 1 && last_err_has("incomplete"));
    const char *c[] = {"eval", "-m", M, "--voc", set, "--out", out, "--resume", "-q", NULL};
    CHECK(frcnn(c) == 0);
    const char *const *cls = (const char *const[]){"aeroplane", "bicycle", "bird", "boat", "bottle",
        "bus", "car", "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
        "pottedplant", "sheep", "sofa", "train", "tvmonitor"};
    CHECK(same_run(ref, out, "test", cls, 20));
}

int main(void) {
    if (cli_begin("eval_model")) return harness_done(__FILE__);
    RUN(test_model_runs);
    RUN(test_model_sigint);
    cli_end();
    return harness_done(__FILE__);
}
