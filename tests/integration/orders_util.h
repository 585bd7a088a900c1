/* orders_util.h: helpers shared by the user, payment and order service tests. */
#ifndef MERCATO_ORDERS_UTIL_H
#define MERCATO_ORDERS_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "harness.h"
#include "rpc.h"

/* Metadata that picks the monolith dataset. */
extern const char *const ou_mono_md[];

/* A fingerprint of every table of a database (mercato_migrations and the tables named in
 * skip, a NULL-terminated list that may be NULL, left out): each table's rows, sorted, as
 * md5. malloc'd; compare with strcmp to prove nothing changed. */
char *ou_checksum(const char *conninfo, const char *const *skip);

/* Fingerprints of every database of a cluster (each service's and the monolith), in one
 * malloc'd string. */
char *ou_cluster_checksum(const harness_cluster *c);

/* The first column of the first row as a malloc'd string ("" if none or NULL). Test code
 * only: the SQL is a literal. */
char *ou_sql_str(const char *conninfo, const char *sql);

/* Runs a query built with printf. */
int64_t ou_i64f(const char *conninfo, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ou_sqlf(const char *conninfo, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Calls a method with no retries and a 15 s timeout, on the monolith dataset if mono.
 * *ret_resp (may be NULL) gets the reply; the error message goes into msg (may be NULL). */
rpc_status ou_call(rpc_client *cl, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *desc, ProtobufCMessage **ret_resp, bool mono, char *msg,
    size_t msglen);

/* Waits (up to 30 s) until the outbox of a database is drained: every event delivered or
 * dead-lettered. Returns false on timeout. */
bool ou_wait_outbox_drained(const char *conninfo);

/* Runs fn(arg + i * size) on n threads started together, and joins them. */
void ou_run_threads(int n, void *(*fn)(void *), void *args, size_t size);

#endif
