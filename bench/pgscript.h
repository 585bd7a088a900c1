/* pgscript.h: what a mode sends PostgreSQL for its orders, written as pgbench scripts.
 *
 * A recorder installs the db module's trace (db_set_trace) while the replay places a few
 * orders, and keeps, per database, every transaction in the order it ended: its prepared
 * statements with their parameters, its commands, and how it ended. It then writes one
 * pgbench script per database that issues the same statements in the same transactions,
 * with the values that must differ from one order to the next (ids, keys, GIDs) drawn
 * afresh on each run of the script. See the NOTES of pgscript.c. */
#ifndef MERCATO_BENCH_PGSCRIPT_H
#define MERCATO_BENCH_PGSCRIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc.h"

typedef struct pgscript pgscript;

/* A new recorder; pgscript_record starts and stops the trace. */
pgscript *pgscript_new(void);
void pgscript_free(pgscript *ps);

/* Installs the trace (on) or removes it (off). Only one recorder can trace at a time. The
 * calls made on the thread that turned it on are that thread's bookkeeping (the replay's
 * drain), not the mode's, and are not recorded. */
void pgscript_record(pgscript *ps, bool on);

/* The databases seen, in the order they were first seen. */
size_t pgscript_databases(const pgscript *ps);
const char *pgscript_database(const pgscript *ps, size_t i);

/* The statements and transactions recorded on database i (idle polls left out). */
void pgscript_counts(
    const pgscript *ps, size_t i, uint64_t *ret_statements, uint64_t *ret_transactions);

/* Writes database i's script to path: `orders` is how many orders the recording covers, so
 * that one run of the script is that many orders. Returns OK, or INTERNAL with err set. */
rpc_status pgscript_write(const pgscript *ps, size_t i, const char *path, uint64_t orders,
    char *err, size_t errlen) RPC_WARN_UNUSED;

/* The pgbench options a script needs besides -f: its variables' starting values. */
#define PGSCRIPT_PGBENCH_ARGS "-n -M simple -D prepared=0 -D it=0 -D m_c=:"

#endif
