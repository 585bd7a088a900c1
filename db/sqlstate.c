/* sqlstate.c: maps PostgreSQL's SQLSTATE codes to the project's status. */
#include <string.h>

#include "db.h"

static const struct {
        const char *sqlstate;
        rpc_status status;
} sqlstate_map[] = {
        { "40001", RPC_ABORTED },             /* serialization_failure */
        { "40P01", RPC_ABORTED },             /* deadlock_detected */
        { "55P03", RPC_ABORTED },             /* lock_not_available, lock_timeout */
        { "57014", RPC_DEADLINE_EXCEEDED },   /* query_canceled, statement_timeout */
        { "23505", RPC_ALREADY_EXISTS },      /* unique_violation */
        { "23514", RPC_FAILED_PRECONDITION }, /* check_violation */
        { "23503", RPC_FAILED_PRECONDITION }, /* foreign_key_violation */
        { "22003", RPC_OUT_OF_RANGE },        /* numeric_value_out_of_range */
        { "22P02", RPC_INVALID_ARGUMENT },    /* invalid_text_representation */
        { "22023", RPC_INVALID_ARGUMENT },    /* invalid_parameter_value */
        { "22021", RPC_INVALID_ARGUMENT },    /* character_not_in_repertoire: not UTF-8 */
        { "42704", RPC_NOT_FOUND },           /* undefined_object, e.g. no such prepared gid */
        { "57P01", RPC_UNAVAILABLE },         /* admin_shutdown, pg_terminate_backend */
        { "57P02", RPC_UNAVAILABLE },         /* crash_shutdown */
        { "57P03", RPC_UNAVAILABLE },         /* cannot_connect_now */
};

rpc_status
db_status_from_sqlstate(const char *sqlstate)
{
        if (sqlstate == NULL || strlen(sqlstate) != 5) {
                return RPC_INTERNAL;
        }
        for (size_t i = 0; i < sizeof(sqlstate_map) / sizeof(sqlstate_map[0]); i++) {
                if (strcmp(sqlstate, sqlstate_map[i].sqlstate) == 0) {
                        return sqlstate_map[i].status;
                }
        }
        if (strncmp(sqlstate, "08", 2) == 0) {
                return RPC_UNAVAILABLE; /* class 08: connection exception */
        }
        return RPC_INTERNAL;
}

bool
db_retryable(rpc_status st)
{
        return st == RPC_ABORTED;
}
