/* check.h: `mercato check`: the cross-database consistency checker (check.c). */
#ifndef MERCATO_CHECK_H
#define MERCATO_CHECK_H

#include "cli.h"

/* Runs `mercato check`: connects straight to every database of the chosen datasets, checks
 * every invariant (docs/consistency.md), prints one line per invariant and returns the exit
 * code: CLI_EXIT_OK when all pass, CLI_EXIT_SERVER (1) on any FAIL or a database error,
 * CLI_EXIT_USAGE, or CLI_EXIT_UNREACHABLE when a database cannot be reached. With
 * --record-baseline FILE it writes the baseline instead and checks nothing. */
int cli_check_run(cli *c, const cli_args *a);

/* Its options (terminated by a NULL name) and its help text. */
extern const cli_opt cli_check_opts[];
extern const char cli_check_help[];

#endif
