// eval.c - `frcnn eval` (placeholder until the subcommand lands).
#include "cli.h"

#include <stdio.h>

int fr_cli_eval(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "frcnn eval: not implemented yet\n");
    return 1;
}
