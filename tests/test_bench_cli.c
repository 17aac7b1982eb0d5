// test_bench_cli.c - `frcnn bench` on the narrow test model: its JSON (what make bench's
// comparison reads), the exact-mode time measured beside --fast, and its refusals.
#include "cli.h"

#include <cJSON.h>

#define MODEL "tests/data/r101_narrow.safetensors"

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

// Runs bench with --json and returns the first setting's object (the whole document in *doc).
static const cJSON *bench_json(int fast, cJSON **doc) {
    char js[320];
    snprintf(js, sizeof js, "%s/b.json", g_tmp);
    const char *a[] = {"bench", "-m", MODEL, "--setting", "128x160/20", "--runs", "2", "--json", js,
                       fast ? "--fast" : NULL, NULL};
    *doc = NULL;
    int rc = frcnn(a);
    CHECKF(rc == 0, "frcnn bench%s exited %d", fast ? " --fast" : "", rc);
    char *b = slurp(js);
    CHECK(b != NULL);
    if (!b) return NULL;
    *doc = cJSON_Parse(b);
    fr_free(b);
    CHECK(*doc != NULL);
    const cJSON *s = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(*doc, "settings"), 0);
    CHECK(cJSON_IsObject(s));
    return s;
}

TEST(test_json_exact) {
    cJSON *doc;
    const cJSON *s = bench_json(0, &doc);
    if (s) {
        CHECK(num(doc, "runs") == 2);
        CHECK(num(s, "total_ms") > 0);
        CHECK(num(s, "sgemm_ms") > 0);
        CHECK(num(s, "gemm_in_pipeline_ms") > 0 && num(s, "gemm_in_pipeline_ms") <= num(s, "total_ms"));
        CHECK(num(s, "peak_rss_mb") > 0);
        CHECK(num(s, "gflop") > 0);
        CHECK(cJSON_GetObjectItemCaseSensitive(s, "exact_ms_interleaved") == NULL); // --fast only
        CHECK(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(s, "stages")));
    }
    cJSON_Delete(doc);
    char *out = slurp(g_out);
    CHECK(out && strstr(out, "the sgemm-only time"));
    fr_free(out);
}

TEST(test_json_fast_has_exact) {
    cJSON *doc;
    const cJSON *s = bench_json(1, &doc);
    if (s) {
        CHECK(num(s, "total_ms") > 0);
        CHECK(num(s, "exact_ms_interleaved") > 0);
        CHECK(num(s, "sgemm_ms") > 0);
    }
    cJSON_Delete(doc);
    char *out = slurp(g_out);
    CHECK(out && strstr(out, "exact mode in the same runs"));
    fr_free(out);
}

TEST(test_refusals) {
    const char *runs0[] = {"bench", "-m", MODEL, "--runs", "0", NULL};
    CHECK(frcnn(runs0) == 2);
    CHECK(last_err_is("frcnn bench: ", "--runs must be 1..1000"));
    const char *small[] = {"bench", "-m", MODEL, "--setting", "16x16/10", NULL};
    CHECK(frcnn(small) == 2);
    CHECK(last_err_is("frcnn bench: ", "--setting must be HxW/P"));
    const char *junk[] = {"bench", "-m", MODEL, "--setting", "100x200/", NULL};
    CHECK(frcnn(junk) == 2);
    const char *nomodel[] = {"bench", NULL};
    CHECK(frcnn(nomodel) == 2);
    const char *missing[] = {"bench", "-m", "tests/data/no_such_model.safetensors", "--setting", "128x160/20", NULL};
    CHECK(frcnn(missing) == 1);
    CHECK(last_err_is("frcnn bench: ", "no_such_model.safetensors"));
    const char *badjson[] = {"bench", "-m", MODEL, "--setting", "128x160/20", "--json", "/nonexistent/dir/b.json",
                             NULL};
    CHECK(frcnn(badjson) == 1);
    CHECK(last_err_is("frcnn bench: ", "cannot write /nonexistent/dir/b.json"));
}

int main(void) {
    if (cli_begin("bench_cli")) return harness_done(__FILE__);
    RUN(test_json_exact);
    RUN(test_json_fast_has_exact);
    RUN(test_refusals);
    cli_end();
    return harness_done(__FILE__);
}
