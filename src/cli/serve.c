// serve.c - `frcnn serve` (placeholder until the subcommand lands).
#include "cli.h"

#include <stdio.h>

int fr_cli_serve(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "frcnn serve: not implemented yet\n");
    return 1;
}
