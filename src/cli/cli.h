// cli.h - the subcommands of build/frcnn. Each returns the process exit status:
// 0 success, 1 failure (one-line message on stderr), 2 bad usage.
#ifndef FR_CLI_H
#define FR_CLI_H

int fr_cli_detect(int argc, char **argv);
int fr_cli_serve(int argc, char **argv);
int fr_cli_eval(int argc, char **argv);
int fr_cli_bench(int argc, char **argv);
int fr_cli_info(int argc, char **argv);

#endif
