/* main.c: mercato-bench's entry point: dispatches to its subcommands. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

static const struct {
        const char *name;
        int (*main)(int argc, char **argv);
        const char *summary;
} subcommands[] = {
        { "compare", bench_compare_main,
            "the five modes (saga, 2pc, monolith, orchestration, tcc) on identical data, with "
            "the SQL-replay ceiling" },
        { "sweep", bench_sweep_main, "throughput against the number of clients, per mode" },
        { "rpc", bench_rpc_main, "round trips to Health over tcp, ipc and inproc vs raw TCP" },
        { "replay", bench_replay_main,
            "a mode's SQL straight through libpq: the database's ceiling" },
        { "chaos", bench_chaos_main, "fault scenarios in each mode: lost orders, invariants" },
};

static void
usage(FILE *out)
{
        fprintf(out, "usage: mercato-bench SUBCOMMAND [OPTIONS]\n\nsubcommands:\n");
        for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
                fprintf(out, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
        }
        fprintf(out, "\n'mercato-bench SUBCOMMAND --help' describes its options.\n");
}

int
main(int argc, char **argv)
{
        if (argc < 2) {
                usage(stderr);
                return 2;
        }
        if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0
            || strcmp(argv[1], "help") == 0) {
                usage(stdout);
                return 0;
        }
        for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
                if (strcmp(argv[1], subcommands[i].name) == 0) {
                        return subcommands[i].main(argc - 1, argv + 1);
                }
        }
        fprintf(stderr, "mercato-bench: unknown subcommand '%s'\n\n", argv[1]);
        usage(stderr);
        return 2;
}
