/* migrate.c: applies numbered migrations once each, in order, under an advisory lock. */

/*
 * NOTES
 *
 * Every step runs in its own transaction that first takes one advisory lock, so concurrent
 * migrators (several workers or instances of a service starting at once) queue up:
 *
 *   bootstrap   BEGIN; lock; CREATE TABLE IF NOT EXISTS mercato_migrations; COMMIT
 *   migration   BEGIN; lock; already recorded? -> ROLLBACK, skip
 *                            else run its SQL; record it; COMMIT
 *
 * The lock is transaction-scoped (pg_advisory_xact_lock), so it goes with the transaction
 * whatever happens, a crash of the migrator included. A migration and its record commit
 * together or not at all: after a failure or a crash it is simply applied on the next run.
 * The SQL of a migration may hold several statements; it runs over the simple query
 * protocol inside the open transaction, so it must not hold COMMIT, ROLLBACK or commands
 * that refuse to run in a transaction block (CREATE INDEX CONCURRENTLY, VACUUM).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "db_priv.h"

/* The advisory lock key: "mercato" in ASCII, read as a big-endian integer. */
#define MIGRATE_LOCK_SQL "SELECT pg_advisory_xact_lock(30792314429469807)"

#define MIGRATE_TABLE_SQL                                                                          \
        "CREATE TABLE IF NOT EXISTS mercato_migrations ("                                          \
        " component text NOT NULL,"                                                                \
        " version integer NOT NULL,"                                                               \
        " name text NOT NULL,"                                                                     \
        " applied_at timestamptz NOT NULL DEFAULT now(),"                                          \
        " PRIMARY KEY (component, version))"

#define MIGRATE_FIND_SQL "SELECT 1 FROM mercato_migrations WHERE component = $1 AND version = $2"

#define MIGRATE_RECORD_SQL                                                                         \
        "INSERT INTO mercato_migrations (component, version, name) VALUES ($1, $2, $3)"

/* Runs one statement with text parameters. */
static rpc_status
migrate_query(db_conn *c, const char *sql, int n, const char *const *values, PGresult **ret_res)
{
        return db_take_result(
            c, PQexecParams(db_pg(c), sql, n, NULL, values, NULL, NULL, 0), ret_res);
}

static rpc_status
migrate_bootstrap(db_conn *c)
{
        rpc_status st;

        st = db_begin(c);
        if (st != RPC_OK) {
                return st;
        }
        st = migrate_query(c, MIGRATE_LOCK_SQL, 0, NULL, NULL);
        if (st == RPC_OK) {
                st = migrate_query(c, MIGRATE_TABLE_SQL, 0, NULL, NULL);
        }
        if (st == RPC_OK) {
                return db_commit(c);
        }
        db_rollback(c);
        return st;
}

/* Applies one migration unless it is recorded already. */
static rpc_status
migrate_one(db_conn *c, const char *component, const db_migration *m)
{
        char version[16];
        const char *values[3];
        PGresult *res = NULL;
        rpc_status st;
        bool applied;

        snprintf(version, sizeof(version), "%d", m->version);
        values[0] = component;
        values[1] = version;
        values[2] = m->name;

        st = db_begin(c);
        if (st != RPC_OK) {
                return st;
        }
        st = migrate_query(c, MIGRATE_LOCK_SQL, 0, NULL, NULL);
        if (st != RPC_OK) {
                goto fail;
        }
        st = migrate_query(c, MIGRATE_FIND_SQL, 2, values, &res);
        if (st != RPC_OK) {
                goto fail;
        }
        applied = PQntuples(res) > 0;
        PQclear(res);
        if (applied) {
                db_rollback(c);
                return RPC_OK;
        }

        /* the simple query protocol, for several statements in one string */
        st = db_take_result(c, PQexec(db_pg(c), m->sql), NULL);
        if (st != RPC_OK) {
                goto fail;
        }
        if (!db_in_transaction(c)) {
                st = db_fail(c, RPC_INTERNAL, "the migration ended its transaction itself");
                goto fail;
        }
        st = migrate_query(c, MIGRATE_RECORD_SQL, 3, values, NULL);
        if (st != RPC_OK) {
                goto fail;
        }
        return db_commit(c);

fail:
        db_rollback(c);
        return st;
}

static int
migration_cmp(const void *a, const void *b)
{
        const db_migration *x = *(const db_migration *const *) a;
        const db_migration *y = *(const db_migration *const *) b;

        return (x->version > y->version) - (x->version < y->version);
}

/* Checks a set and returns its migrations sorted by version, or NULL with errbuf filled. */
static const db_migration **
migrate_sorted(const db_migration_set *set, char *errbuf, size_t errlen)
{
        const db_migration **sorted;

        if (set->component == NULL || set->component[0] == '\0'
            || (set->migrations == NULL && set->n > 0)) {
                db_errbuf_printf(errbuf, errlen, "malformed migration set");
                return NULL;
        }
        sorted = rpc_xcalloc(set->n > 0 ? set->n : 1, sizeof(*sorted));
        for (size_t i = 0; i < set->n; i++) {
                const db_migration *m = &set->migrations[i];

                if (m->name == NULL || m->sql == NULL) {
                        db_errbuf_printf(
                            errbuf, errlen, "migration %s #%zu: no name or sql", set->component, i);
                        free(sorted);
                        return NULL;
                }
                sorted[i] = m;
        }
        qsort(sorted, set->n, sizeof(*sorted), migration_cmp);
        for (size_t i = 1; i < set->n; i++) {
                if (sorted[i]->version == sorted[i - 1]->version) {
                        db_errbuf_printf(errbuf, errlen, "migration %s: version %d twice (%s, %s)",
                            set->component, sorted[i]->version, sorted[i - 1]->name,
                            sorted[i]->name);
                        free(sorted);
                        return NULL;
                }
        }
        return sorted;
}

rpc_status
db_migrate(db_conn *c, const db_migration_set *sets, size_t n_sets, char *errbuf, size_t errlen)
{
        rpc_status st;

        if (sets == NULL && n_sets > 0) {
                db_errbuf_printf(errbuf, errlen, "db_migrate: no sets");
                return RPC_INVALID_ARGUMENT;
        }
        for (size_t s = 0; s < n_sets; s++) {
                const db_migration **sorted = migrate_sorted(&sets[s], errbuf, errlen);

                if (sorted == NULL) {
                        return RPC_INVALID_ARGUMENT;
                }
                free(sorted);
        }

        st = migrate_bootstrap(c);
        if (st != RPC_OK) {
                db_errbuf_printf(errbuf, errlen, "creating mercato_migrations: %s", db_errmsg(c));
                return st;
        }
        for (size_t s = 0; s < n_sets; s++) {
                const db_migration **sorted = migrate_sorted(&sets[s], errbuf, errlen);

                for (size_t i = 0; sorted != NULL && i < sets[s].n; i++) {
                        st = migrate_one(c, sets[s].component, sorted[i]);
                        if (st != RPC_OK) {
                                db_errbuf_printf(errbuf, errlen, "migration %s/%s: %s",
                                    sets[s].component, sorted[i]->name, db_errmsg(c));
                                free(sorted);
                                return st;
                        }
                }
                free(sorted);
        }
        return RPC_OK;
}
