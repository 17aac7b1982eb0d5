// bench.c - `frcnn bench` (placeholder until the subcommand lands).
#include "cli.h"

#include <stdio.h>

int fr_cli_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "frcnn bench: not implemented yet\n");
    return 1;
}
