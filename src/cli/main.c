// main.c - build/frcnn: dispatches to one subcommand (cli.h).
#include "cli.h"
#include "core/alloc.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} cmds[] = {
    {"detect", fr_cli_detect, "detect objects in images, print JSON"},
    {"serve", fr_cli_serve, "serve the HTTP API"},
    {"eval", fr_cli_eval, "PASCAL VOC evaluation (run a model, or score comp4 files)"},
    {"bench", fr_cli_bench, "time each stage against cblas_sgemm"},
    {"info", fr_cli_info, "print a model's configuration and tensors"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: frcnn <command> [options]   (frcnn <command> --help)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %-7s %s\n", cmds[i].name, cmds[i].help);
}

int main(int argc, char **argv) {
    fr_alloc_init();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "frcnn: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
