/* txn.h: the transaction layer: the transactional outbox, its relay, the insert-first barrier. */
#ifndef MERCATO_TXN_H
#define MERCATO_TXN_H

#include <stdbool.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "db.h"
#include "event.pb-c.h"
#include "rpc.h"

/*
 * Tables and statements
 *
 * Every table is named txn_*, so that the monolith database, which holds the tables of
 * every service and the outbox of every service, never sees a clash:
 *   txn_outbox        the events, one row each, kept after delivery for auditing
 *   txn_delivery      one row per (event, subscriber): attempts, next attempt, last error
 *   txn_dead_letters  (event, subscriber) pairs that gave up after max_attempts
 *   txn_barrier       the consumers' insert-first barrier (inbox): (consumer, key)
 *   txn_saga_outcome  how an orchestrated saga's action behind a barrier key ended
 */

/* The migrations of component "txn". A service that writes or consumes events lists it in
 * its migration sets (both datasets). */
extern const db_migration_set txn_migrations;

/* The statements, all named txn_*. Prepare them on every connection that calls the
 * functions below (list txn_stmts in the service's statement tables). */
extern const db_stmt_table txn_stmts;

/* The longest source, topic, consumer or barrier key accepted, in bytes. */
#define TXN_NAME_MAX 64
#define TXN_KEY_MAX 200

/* The size of a buffer that holds an event id (a UUID as text and its NUL). */
#define TXN_EVENT_ID_LEN 40

/*
 * Outbox
 */

/* Inside the caller's open transaction: adds an event to the outbox. The payload (may be
 * NULL for none) is packed now. ret_event_id may be NULL, else it is a char[40] buffer that
 * receives the generated id (a UUID as text) on success. Returns INVALID_ARGUMENT for an
 * empty or over-long source or topic, FAILED_PRECONDITION when no transaction is open, or
 * the mapped database status (the caller rolls back). The event becomes visible to relays
 * when the caller commits; call txn_relay_wake (or svc_relay_wake) after that commit. */
rpc_status txn_outbox_add(db_conn *db, const char *source, const char *topic, int64_t aggregate_id,
    const ProtobufCMessage *payload, char *ret_event_id) RPC_WARN_UNUSED;

/* Counts the events not yet finished (some subscriber neither acked nor dead-lettered), of
 * every source, and the dead letters. For the checker and the bench. Either pointer may be
 * NULL. */
rpc_status txn_outbox_counts(db_conn *db, int64_t *ret_pending, int64_t *ret_dead) RPC_WARN_UNUSED;

/* Empties every txn table (outbox, deliveries, dead letters, barrier, 2pc markers and log)
 * but the coordinator's epoch: for seeding only, never while services run. */
rpc_status txn_reset(db_conn *db) RPC_WARN_UNUSED;

/*
 * Barrier
 */

/* Inside the caller's open transaction: the insert-first barrier. Inserts (consumer, key)
 * and checks the affected-row count: OK when the pair is new (the caller goes on and
 * commits, which makes the pair permanent), ALREADY_EXISTS when it was seen before (the
 * caller rolls back and acks as a duplicate). A concurrent entry with the same pair waits
 * for the first transaction and then gets ALREADY_EXISTS if that one committed. Returns
 * INVALID_ARGUMENT for an empty or over-long consumer or key, FAILED_PRECONDITION when no
 * transaction is open, or the mapped database status. */
rpc_status txn_barrier_enter(db_conn *db, const char *consumer, const char *key) RPC_WARN_UNUSED;

/* One delivery to a consumer, as one transaction behind the barrier: begins, enters
 * (consumer, key), calls apply(db, arg) inside the open transaction and commits. A pair
 * seen before is rolled back and reported as a duplicate (*ret_duplicate = true) without
 * calling apply. apply returns OK to commit, or any status to roll back; it may take
 * further barrier keys or savepoints, and must not commit or roll back itself. The whole
 * attempt is retried, up to 3 attempts in all, while it fails with a retryable status
 * (db_retryable: ABORTED). Returns OK (and sets *ret_duplicate), or the status of the last
 * attempt (apply's, the barrier's or the database's), rolled back; the caller reads
 * db_errmsg for the detail. */
rpc_status txn_consume(db_conn *db, const char *consumer, const char *key,
    rpc_status (*apply)(db_conn *db, void *arg), void *arg, bool *ret_duplicate) RPC_WARN_UNUSED;

/* The outcome of an orchestrated saga's action, kept with its barrier key
 * (txn_saga_outcome) so that a repeated command is answered as the first one was. */
typedef struct txn_outcome {
        bool found;       /* a row exists; false: the key was taken by a compensation */
        char reason[65];  /* "" for done, else the business "no" */
        int64_t discount; /* what the user step gave */
} txn_outcome;

/* Inside the caller's open transaction, after txn_barrier_enter took (consumer, key):
 * records how the action ended. INVALID_ARGUMENT for a reason over 64 bytes. */
rpc_status txn_outcome_record(db_conn *db, const char *consumer, const char *key,
    const char *reason, int64_t discount) RPC_WARN_UNUSED;

/* Reads the outcome recorded for (consumer, key); found is false when there is none. */
rpc_status txn_outcome_get(
    db_conn *db, const char *consumer, const char *key, txn_outcome *ret) RPC_WARN_UNUSED;

/*
 * Relay
 *
 * Drains the outbox of one source in one database: fans each event out to the subscribers
 * of its topic, and delivers it to each over RPC (/mercato.event.v1.EventSink/Deliver),
 * with retries, backoff and dead-lettering per (event, subscriber). Several relays may
 * drain one database at once; they never deliver one event to one subscriber at the same
 * time. See the NOTES at the top of relay.c.
 */
typedef struct txn_relay txn_relay;

typedef struct txn_relay_opts {
        const char *conninfo;        /* the database whose outbox it drains (copied) */
        const char *source;          /* only events with this source (copied) */
        const rpc_conf *conf;        /* topology, borrowed for the relay's life: [topics]
                                        TOPIC = svc1 svc2 ..., and [svc] address */
        const char *const *metadata; /* key, value, ..., NULL: passed on every Deliver call,
                                        e.g. {"dataset", "monolith", NULL}; copied; may be NULL */
        int max_attempts;            /* then dead-letter; 0 means 10 */
        int64_t poll_ms;             /* fallback poll; 0 means 500 */
        int batch;                   /* events claimed at once; 0 means 64 */
        int parallel;                /* calls of one batch in flight at once, per
                                        subscriber; 0 means 4 */
        int64_t call_timeout_ms;     /* per Deliver call, client retries included; 0: 2000 */
        int64_t backoff_initial_ms;  /* delay before the first retry; 0 means 100 */
        int64_t backoff_max_ms;      /* the cap of the exponential backoff; 0 means 60000 */
        int64_t lease_ms;            /* how long a claim holds a delivery; 0 means 30000;
                                        raised to at least 2 x call_timeout_ms + 1000 */
        /* Delivers in process instead of calling the subscriber's Deliver (NULL, the normal
         * case: over RPC). Called on one of the subscriber's delivery threads (up to
         * `parallel` at once, so it must be thread-safe) with the event the
         * call would carry; OK is an ack, any other status a failed attempt (err says why).
         * The SQL replay (mercato-bench replay) uses it to leave out the hop, and only it. */
        rpc_status (*deliver)(void *arg, const char *subscriber,
            const Mercato__Event__V1__Event *ev, char *err, size_t errlen);
        void *deliver_arg;
} txn_relay_opts;

/* Starts a relay's threads. It connects in the background and keeps retrying while the
 * database is down, so only bad options fail it (INVALID_ARGUMENT). *ret is set only on
 * success. */
rpc_status txn_relay_start(const txn_relay_opts *opts, txn_relay **ret) RPC_WARN_UNUSED;

/* After a commit that added events: deliver now rather than at the next poll. Cheap,
 * never blocks on the database, safe from any thread. Accepts NULL. */
void txn_relay_wake(txn_relay *r);

/* Stops the relay: joins its threads (a delivery in flight finishes first) and frees it.
 * Deliveries it had claimed and not finished are retried, by any relay, once their lease
 * runs out. Accepts NULL. */
void txn_relay_stop(txn_relay *r);

#endif
