/* cli.h: what the mercato client's files share: the command table, arguments, exit codes. */
#ifndef MERCATO_CLI_H
#define MERCATO_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "rpc.h"

/* Exit codes. */
enum {
        CLI_EXIT_OK = 0,          /* success */
        CLI_EXIT_SERVER = 1,      /* the server answered with an error status */
        CLI_EXIT_USAGE = 2,       /* bad arguments or bad JSON */
        CLI_EXIT_UNREACHABLE = 3, /* the service could not be reached, or never answered */
};

/* The global settings of one run. */
typedef struct cli {
        const char *conf_path; /* the topology file */
        rpc_conf *conf;        /* loaded before a command runs; empty if unreadable */
        char *conf_error;      /* why the topology file could not be read, or NULL */
        bool json;             /* --json: print replies as JSON */
        int64_t timeout_ms;    /* --timeout: per call */
        bool monolith;         /* --dataset monolith */
        const char *dataset;   /* the --dataset given, or NULL */
} cli;

/* An option of a command: "--name ARG" (arg names the value) or a flag (arg NULL). */
typedef struct cli_opt {
        const char *name;
        const char *arg;
        const char *help;
} cli_opt;

#define CLI_MAX_OPTS 12

/* The arguments of a command after parsing: positionals, and for each entry of the
 * command's option list its value ("" for a flag that was given), or NULL when absent. */
typedef struct cli_args {
        int n;
        char **pos;
        const char *opt[CLI_MAX_OPTS];
} cli_args;

typedef struct cli_command {
        const char *group;    /* "order", or the whole name of a one-word command */
        const char *name;     /* "place"; NULL for a one-word command */
        const char *synopsis; /* the arguments: "USER PRODUCT:QTY [PRODUCT:QTY...]" */
        const char *summary;  /* one line */
        const char *help;     /* more, or NULL */
        const cli_opt *opts;  /* terminated by an entry with a NULL name; may be NULL */
        int min_args;
        int max_args; /* -1: any number */
        int (*run)(cli *c, const cli_args *a);
} cli_command;

/* The commands, in the order help lists them. */
extern const cli_command cli_commands[];
extern const size_t cli_n_commands;

/* Prints "mercato: STATUS_NAME: message" on stderr. */
void cli_error(rpc_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints a usage error (as INVALID_ARGUMENT) and returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Says why section.key is missing: the topology file could not be read, or lacks it. */
void cli_conf_missing(const cli *c, const char *section, const char *key, char *buf, size_t len);

/* Parses a whole decimal integer in [min, max]. */
bool cli_parse_i64(const char *s, int64_t min, int64_t max, int64_t *ret);

/* Reads option i of a command as an integer in [min, max] into *ret (left alone when the
 * option is absent); name is for the message. Returns CLI_EXIT_OK or, after saying why,
 * CLI_EXIT_USAGE. */
int cli_opt_i64(const cli_args *a, int i, const char *name, int64_t min, int64_t max, int64_t *ret);

/* Prints a JSON value as `mercato call` does. */
void cli_print_json(const json_t *json);

/* `mercato seed` (seed.c). */
int cli_seed_run(cli *c, const cli_args *a);
extern const cli_opt cli_seed_opts[];
extern const char cli_seed_help[];

/* `mercato txn list|show|resolve` (txn.c). */
int cli_txn_list_run(cli *c, const cli_args *a);
int cli_txn_show_run(cli *c, const cli_args *a);
int cli_txn_resolve_run(cli *c, const cli_args *a);
extern const char cli_txn_help[];

#endif
