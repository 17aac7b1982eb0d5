// info.c - `frcnn info` (placeholder until the subcommand lands).
#include "cli.h"

#include <stdio.h>

int fr_cli_info(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "frcnn info: not implemented yet\n");
    return 1;
}
