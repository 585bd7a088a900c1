/* bench.h: the subcommands of mercato-bench, each a main of its own. */
#ifndef MERCATO_BENCH_H
#define MERCATO_BENCH_H

/* `mercato-bench rpc ...`: round trips to Health over tcp, ipc and inproc against a raw TCP
 * ping-pong baseline. argv[0] is "rpc". Returns the process exit code. */
int bench_rpc_main(int argc, char **argv);

/* `mercato-bench compare ...`: saga, 2pc and monolith side by side (compare.c). */
int bench_compare_main(int argc, char **argv);

/* `mercato-bench sweep ...`: throughput against the number of clients (compare.c). */
int bench_sweep_main(int argc, char **argv);

/* `mercato-bench replay ...`: a mode's SQL without services (replay.h). */
int bench_replay_main(int argc, char **argv);

/* `mercato-bench chaos ...`: the fault scenarios in each mode (chaos.c). */
int bench_chaos_main(int argc, char **argv);

#endif
