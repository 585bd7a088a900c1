/* main.c: the mercato command-line client: global options, command lookup, help. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define DEFAULT_TIMEOUT_MS 10000

void
cli_error(rpc_status st, const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "mercato: %s: ", rpc_status_name(st));
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

int
cli_usage_error(const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "mercato: %s: ", rpc_status_name(RPC_INVALID_ARGUMENT));
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return CLI_EXIT_USAGE;
}

void
cli_conf_missing(const cli *c, const char *section, const char *key, char *buf, size_t len)
{
        if (c->conf_error != NULL) {
                snprintf(buf, len, "cannot read the topology file: %s", c->conf_error);
        } else {
                snprintf(buf, len, "no %s for [%s] in %s", key, section,
                    c->conf_path != NULL ? c->conf_path : rpc_conf_default_path());
        }
}

bool
cli_parse_i64(const char *s, int64_t min, int64_t max, int64_t *ret)
{
        char *end;
        long long v;

        if (s == NULL || (*s != '-' && (*s < '0' || *s > '9'))) {
                return false;
        }
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
                return false;
        }
        *ret = v;
        return true;
}

int
cli_opt_i64(const cli_args *a, int i, const char *name, int64_t min, int64_t max, int64_t *ret)
{
        if (a->opt[i] == NULL) {
                return CLI_EXIT_OK;
        }
        if (!cli_parse_i64(a->opt[i], min, max, ret)) {
                return cli_usage_error("--%s must be an integer in %lld..%lld, not '%s'", name,
                    (long long) min, (long long) max, a->opt[i]);
        }
        return CLI_EXIT_OK;
}

static const char global_options_help[]
    = "Global options (before or after the command):\n"
      "  --conf FILE       topology file with each service's address (default:\n"
      "                    $MERCATO_CONF, else deploy/local.conf)\n"
      "  --json            print replies as JSON, as `mercato call` does\n"
      "  --timeout MS      deadline of each call in milliseconds (default 10000)\n"
      "  --dataset NAME    split (each service's own database; the default) or monolith\n"
      "                    (the shared monolith database)\n"
      "  -h, --help        help; `mercato COMMAND --help` for one command\n";

static void
print_command_line(FILE *out, const cli_command *cmd)
{
        char head[64];

        snprintf(head, sizeof(head), "%s%s%s", cmd->group, cmd->name != NULL ? " " : "",
            cmd->name != NULL ? cmd->name : "");
        fprintf(out, "  %-22s %s\n", head, cmd->summary);
}

static void
global_usage(FILE *out)
{
        fprintf(out,
            "usage: mercato [--conf FILE] [--json] [--timeout MS] [--dataset split|monolith]\n"
            "               COMMAND [ARGS...]\n"
            "\n"
            "The command-line client of mercato's services: it reads each service's\n"
            "address from the topology file and calls it over nng.\n"
            "\n"
            "Commands:\n");
        for (size_t i = 0; i < cli_n_commands; i++) {
                print_command_line(out, &cli_commands[i]);
        }
        fprintf(out, "\n%s\n", global_options_help);
        fprintf(out,
            "Exit status: 0 success, 1 the server answered with an error status, 2 usage\n"
            "error (bad arguments or JSON), 3 a service could not be reached.\n");
}

static void
group_usage(FILE *out, const char *group)
{
        fprintf(out, "usage: mercato %s COMMAND [ARGS...]\n\nCommands:\n", group);
        for (size_t i = 0; i < cli_n_commands; i++) {
                if (strcmp(cli_commands[i].group, group) == 0) {
                        print_command_line(out, &cli_commands[i]);
                }
        }
        fprintf(out, "\n`mercato %s COMMAND --help` tells more.\n", group);
}

static void
command_usage(FILE *out, const cli_command *cmd)
{
        const cli_opt *o;

        fprintf(out, "usage: mercato %s%s%s%s%s%s\n\n%s\n", cmd->group,
            cmd->name != NULL ? " " : "", cmd->name != NULL ? cmd->name : "",
            cmd->synopsis[0] != '\0' ? " " : "", cmd->synopsis,
            cmd->opts != NULL ? " [OPTIONS]" : "", cmd->summary);
        if (cmd->help != NULL) {
                fprintf(out, "\n%s", cmd->help);
        }
        if (cmd->opts != NULL) {
                fprintf(out, "\nOptions:\n");
                for (o = cmd->opts; o->name != NULL; o++) {
                        char head[64];
                        snprintf(head, sizeof(head), "--%s%s%s", o->name, o->arg != NULL ? " " : "",
                            o->arg != NULL ? o->arg : "");
                        fprintf(out, "  %-22s %s\n", head, o->help);
                }
        }
        fprintf(out, "\n%s", global_options_help);
}

/* If argv[*i] is a global option, applies it (consuming its value) and sets *matched. */
static int
global_option(cli *c, int argc, char **argv, int *i, bool *matched)
{
        static const char *const with_value[] = { "conf", "timeout", "dataset" };
        const char *arg = argv[*i];
        const char *value = NULL;
        char name[32];
        const char *eq;

        *matched = false;
        if (strncmp(arg, "--", 2) != 0) {
                return CLI_EXIT_OK;
        }
        eq = strchr(arg, '=');
        snprintf(name, sizeof(name), "%.*s",
            (int) (eq != NULL ? eq - arg - 2 : (long) strlen(arg) - 2), arg + 2);
        if (strcmp(name, "json") == 0) {
                if (eq != NULL) {
                        return cli_usage_error("--json takes no value");
                }
                c->json = true;
                *matched = true;
                return CLI_EXIT_OK;
        }
        for (size_t k = 0; k < sizeof(with_value) / sizeof(with_value[0]); k++) {
                if (strcmp(name, with_value[k]) != 0) {
                        continue;
                }
                if (eq != NULL) {
                        value = eq + 1;
                } else if (*i + 1 < argc) {
                        value = argv[++*i];
                } else {
                        return cli_usage_error("--%s needs a value", name);
                }
                *matched = true;
                if (k == 0) {
                        c->conf_path = value;
                } else if (k == 1) {
                        if (!cli_parse_i64(value, 1, 3600 * 1000, &c->timeout_ms)) {
                                return cli_usage_error(
                                    "--timeout must be 1..3600000 ms, not '%s'", value);
                        }
                } else if (strcmp(value, "monolith") == 0 || strcmp(value, "split") == 0) {
                        c->monolith = strcmp(value, "monolith") == 0;
                        c->dataset = value;
                } else {
                        return cli_usage_error(
                            "--dataset must be split or monolith, not '%s'", value);
                }
                return CLI_EXIT_OK;
        }
        return CLI_EXIT_OK;
}

static bool
is_help(const char *arg)
{
        return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

/* An argument that looks like an option, as opposed to "-" or a negative number. */
static bool
is_option(const char *arg)
{
        return arg[0] == '-' && arg[1] != '\0' && !(arg[1] >= '0' && arg[1] <= '9');
}

/* Parses a command's arguments (and any global options among them). Returns -1 when it
 * printed the command's help, else an exit code. */
static int
parse_command_args(cli *c, const cli_command *cmd, int argc, char **argv, cli_args *a)
{
        bool only_positional = false;

        memset(a, 0, sizeof(*a));
        a->pos = rpc_xcalloc((size_t) argc + 1, sizeof(char *));
        for (int i = 0; i < argc; i++) {
                const char *arg = argv[i];
                bool matched;
                int rc;

                if (only_positional || !is_option(arg)) {
                        a->pos[a->n++] = argv[i];
                        continue;
                }
                if (strcmp(arg, "--") == 0) {
                        only_positional = true;
                        continue;
                }
                if (is_help(arg)) {
                        command_usage(stdout, cmd);
                        return -1;
                }
                const char *eq = strchr(arg, '=');
                size_t nlen = eq != NULL ? (size_t) (eq - arg) - 2 : strlen(arg) - 2;
                int found = -1;
                /* The command's own options first: seed has a --dataset of its own. */
                for (int k = 0;
                     strncmp(arg, "--", 2) == 0 && cmd->opts != NULL && cmd->opts[k].name != NULL;
                     k++) {
                        if (strlen(cmd->opts[k].name) == nlen
                            && strncmp(cmd->opts[k].name, arg + 2, nlen) == 0) {
                                found = k;
                                break;
                        }
                }
                if (found < 0) {
                        rc = global_option(c, argc, argv, &i, &matched);
                        if (rc != CLI_EXIT_OK) {
                                return rc;
                        }
                        if (matched) {
                                continue;
                        }
                        return cli_usage_error("unknown option '%s' (see mercato %s%s%s --help)",
                            arg, cmd->group, cmd->name != NULL ? " " : "",
                            cmd->name != NULL ? cmd->name : "");
                }
                if (cmd->opts[found].arg == NULL) {
                        if (eq != NULL) {
                                return cli_usage_error(
                                    "--%s takes no value", cmd->opts[found].name);
                        }
                        a->opt[found] = "";
                } else if (eq != NULL) {
                        a->opt[found] = eq + 1;
                } else if (i + 1 < argc) {
                        a->opt[found] = argv[++i];
                } else {
                        return cli_usage_error(
                            "--%s needs a value (%s)", cmd->opts[found].name, cmd->opts[found].arg);
                }
        }
        if (a->n < cmd->min_args || (cmd->max_args >= 0 && a->n > cmd->max_args)) {
                fprintf(stderr, "usage: mercato %s%s%s %s\n", cmd->group,
                    cmd->name != NULL ? " " : "", cmd->name != NULL ? cmd->name : "",
                    cmd->synopsis);
                return cli_usage_error(
                    "%s arguments (see --help)", a->n < cmd->min_args ? "missing" : "too many");
        }
        return CLI_EXIT_OK;
}

static bool
group_exists(const char *group)
{
        for (size_t i = 0; i < cli_n_commands; i++) {
                if (strcmp(cli_commands[i].group, group) == 0) {
                        return true;
                }
        }
        return false;
}

static const cli_command *
find_command(const char *group, const char *name)
{
        for (size_t i = 0; i < cli_n_commands; i++) {
                const cli_command *cmd = &cli_commands[i];
                if (strcmp(cmd->group, group) == 0
                    && (cmd->name == NULL || (name != NULL && strcmp(cmd->name, name) == 0))) {
                        return cmd;
                }
        }
        return NULL;
}

static bool
has_subcommands(const char *group)
{
        const cli_command *cmd = find_command(group, NULL);
        return cmd == NULL || cmd->name != NULL;
}

/* `mercato help [GROUP [NAME]]` */
static int
help(int argc, char **argv)
{
        const cli_command *cmd;

        if (argc == 0) {
                global_usage(stdout);
                return CLI_EXIT_OK;
        }
        if (!group_exists(argv[0])) {
                return cli_usage_error("unknown command '%s'", argv[0]);
        }
        if (has_subcommands(argv[0]) && argc == 1) {
                group_usage(stdout, argv[0]);
                return CLI_EXIT_OK;
        }
        cmd = find_command(argv[0], argc > 1 ? argv[1] : NULL);
        if (cmd == NULL) {
                return cli_usage_error("unknown command '%s %s'", argv[0], argv[1]);
        }
        command_usage(stdout, cmd);
        return CLI_EXIT_OK;
}

static int
run(cli *c, int argc, char **argv)
{
        const cli_command *cmd;
        cli_args a;
        char err[512];
        int i = 1;
        int rc;

        for (; i < argc && is_option(argv[i]); i++) {
                bool matched;
                if (is_help(argv[i])) {
                        global_usage(stdout);
                        return CLI_EXIT_OK;
                }
                rc = global_option(c, argc, argv, &i, &matched);
                if (rc != CLI_EXIT_OK) {
                        return rc;
                }
                if (!matched) {
                        fprintf(stderr, "usage: mercato [OPTIONS] COMMAND [ARGS...]\n");
                        return cli_usage_error("unknown option '%s' (see mercato --help)", argv[i]);
                }
        }
        if (i == argc) {
                global_usage(stderr);
                return CLI_EXIT_USAGE;
        }
        const char *group = argv[i++];
        if (strcmp(group, "help") == 0) {
                return help(argc - i, argv + i);
        }
        if (!group_exists(group)) {
                fprintf(stderr, "usage: mercato [OPTIONS] COMMAND [ARGS...]\n");
                return cli_usage_error("unknown command '%s' (see mercato --help)", group);
        }
        if (has_subcommands(group)) {
                if (i == argc || is_option(argv[i])) {
                        if (i < argc && is_help(argv[i])) {
                                group_usage(stdout, group);
                                return CLI_EXIT_OK;
                        }
                        group_usage(stderr, group);
                        return CLI_EXIT_USAGE;
                }
                cmd = find_command(group, argv[i]);
                if (cmd == NULL) {
                        group_usage(stderr, group);
                        return cli_usage_error("unknown command '%s %s'", group, argv[i]);
                }
                i++;
        } else {
                cmd = find_command(group, NULL);
        }
        rc = parse_command_args(c, cmd, argc - i, argv + i, &a);
        if (rc != CLI_EXIT_OK) {
                free(a.pos);
                return rc < 0 ? CLI_EXIT_OK : rc;
        }
        const char *path = c->conf_path != NULL ? c->conf_path : rpc_conf_default_path();
        if (rpc_conf_load(path, &c->conf, err, sizeof(err)) != RPC_OK) {
                /* Reported when a command needs it, after its own arguments are checked. */
                c->conf = rpc_conf_new();
                c->conf_error = rpc_xstrdup(err);
        }
        rc = cmd->run(c, &a);
        free(a.pos);
        return rc;
}

int
main(int argc, char **argv)
{
        cli c = { .timeout_ms = DEFAULT_TIMEOUT_MS };
        int rc;

        /* Before any thread exists: health calls services from threads of its own. */
        json_object_seed(0);
        rc = run(&c, argc, argv);
        rpc_conf_free(c.conf);
        free(c.conf_error);
        if (fflush(stdout) != 0 && rc == CLI_EXIT_OK) {
                rc = CLI_EXIT_SERVER;
        }
        return rc;
}
