// cli.h - running the built frcnn binary from a test: the binary ($FRCNN, else $BUILD/frcnn,
// else build/frcnn), a scratch directory under build/, stdout/stderr captured to files.
//
// Usage: main calls cli_begin("name") (0 on success; on failure it has counted one failed
// test and the caller returns harness_done), the tests call frcnn(args), and main ends with
// cli_end() (removes the scratch directory unless a test failed, to leave it for a look).
#ifndef FR_TEST_CLI_H
#define FR_TEST_CLI_H

#include "core/alloc.h"
#include "eval/voc_internal.h"
#include "harness.h"

#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_tmp[256], g_out[300], g_err[300];
static const char *g_bin;

// Runs frcnn with args (NULL-terminated, without the program); stdout and stderr go to files.
// Returns the exit status (-1 if it did not exit normally).
static int frcnn(const char *const *args) {
    const char *argv[64] = {g_bin};
    int n = 1;
    for (; args[n - 1] && n < 63; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    fflush(NULL); // else the child's freopen writes the parent's buffered output a second time
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(g_out, "w", stdout) || !freopen(g_err, "w", stderr)) _exit(126);
        execv(g_bin, (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// The whole file, NUL-terminated (fr_free it); NULL if it cannot be read.
static char *slurp(const char *p) {
    char *b = NULL;
    size_t n;
    fr_err e = {0};
    fr_voc_read_file(p, 1 << 24, &b, &n, &e);
    return b;
}

// The last line of stderr starts with prefix (e.g. "frcnn bench: ") and contains needle. noinline:
// inlined, GCC 12 reports a false -Wdangling-pointer on b.
__attribute__((unused, noinline)) static int last_err_is(const char *prefix, const char *needle) {
    char *b = slurp(g_err);
    if (!b) return 0;
    size_t n = strlen(b);
    while (n && b[n - 1] == '\n') b[--n] = 0;
    const char *nl = strrchr(b, '\n');
    size_t at = nl ? (size_t)(nl - b) + 1 : 0; // the last line is b + at
    int ok = strncmp(b + at, prefix, strlen(prefix)) == 0 && strstr(b + at, needle) != NULL;
    if (!ok) fprintf(stderr, "  last stderr line: '%s' (want '%s%s')\n", b + at, prefix, needle);
    fr_free(b);
    return ok;
}

// frcnn eval's error line: the last line of stderr, the only error line for exit status 1 and 2.
__attribute__((unused)) static int last_err_has(const char *needle) { return last_err_is("frcnn eval: ", needle); }

static int cli_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static int cli_begin(const char *name) {
    fr_alloc_init();
    const char *b = getenv("FRCNN");
    static char bin[300];
    if (!b || !*b) {
        const char *d = getenv("BUILD");
        snprintf(bin, sizeof bin, "%s/frcnn", d && *d ? d : "build");
        b = bin;
    }
    g_bin = b;
    if (access(g_bin, X_OK) != 0) {
        fprintf(stderr, "  FAIL: %s is not built\n", g_bin);
        h_failed++;
        return -1;
    }
    mkdir("build", 0777);
    snprintf(g_tmp, sizeof g_tmp, "build/tmp_%s_XXXXXX", name);
    if (!mkdtemp(g_tmp)) {
        fprintf(stderr, "  FAIL: mkdtemp %s\n", g_tmp);
        h_failed++;
        return -1;
    }
    snprintf(g_out, sizeof g_out, "%s/stdout", g_tmp);
    snprintf(g_err, sizeof g_err, "%s/stderr", g_tmp);
    return 0;
}

static void cli_end(void) {
    if (!h_failed) nftw(g_tmp, cli_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
