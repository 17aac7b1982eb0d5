// detect.c - `frcnn detect` (placeholder until the subcommand lands).
#include "cli.h"

#include <stdio.h>

int fr_cli_detect(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "frcnn detect: not implemented yet\n");
    return 1;
}
