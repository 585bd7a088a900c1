/* db_priv.h: what the files of the db module share with each other, and nobody else. */
#ifndef MERCATO_DB_PRIV_H
#define MERCATO_DB_PRIV_H

#include <stddef.h>

#include "db.h"

/* Takes ownership of a result and turns it into a status. On OK, hands the result to
 * *ret_res (or clears it when ret_res is NULL). On failure clears it and records the
 * SQLSTATE and message on the connection: a lost connection is UNAVAILABLE, a server error
 * is mapped by db_status_from_sqlstate, and anything else is INTERNAL. */
rpc_status db_take_result(db_conn *conn, PGresult *res, PGresult **ret_res) RPC_WARN_UNUSED;

/* Records a failure found by the module itself (no SQLSTATE) and returns st. */
rpc_status db_fail(db_conn *conn, rpc_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4))) RPC_WARN_UNUSED;

/* Formats into a caller's error buffer. Accepts a NULL buffer or a zero length. */
void db_errbuf_printf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
