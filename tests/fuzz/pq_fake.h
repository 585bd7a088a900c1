/* pq_fake.h: libpq's network side replaced for the fuzz targets, with results the input scripts.
 *
 * The fuzz targets link with -Wl,--wrap for each libpq function that talks to a server
 * (PQconnectdb, PQexecPrepared, PQexec, PQtransactionStatus, ...). Everything above libpq
 * is the real code: the handlers, the stores, txn/ and db/conn.c. The results are real
 * PGresults made with PQmakeEmptyPGresult, PQsetResultAttrs and PQsetvalue, read by libpq's
 * own PQgetvalue and friends.
 *
 * Each statement or command run takes its outcome from the script, a byte string:
 *
 *     outcome  < 0xc0         OK; a statement then reads a row-count byte and its cells
 *              0xc0 .. 0xef   an error with a SQLSTATE from a fixed list (40001, 23505, ...)
 *              0xf0 .. 0xff   the connection is lost
 *     rows     < 0xf0: rows % 4;  else (rows - 0xf0) * 16 (so past a 100-row page)
 *     cell     < 0x80 its decimal value; 0x80 .. 0xbf a word from a fixed list (statuses,
 *              booleans, int64 limits, ...); 0xc0 .. 0xdf NULL; 0xe0 .. 0xff a string of
 *              the next byte % 64 raw bytes
 *
 * Every result has PQ_FAKE_COLUMNS columns. An exhausted script answers OK, one row, every
 * cell "1". ROLLBACK never fails and reads nothing. The fake keeps each connection's
 * transaction state as PostgreSQL would (BEGIN, an error inside, COMMIT of a failed
 * transaction answering ROLLBACK, PREPARE TRANSACTION), so db/conn.c sees what it would see.
 */
#ifndef MERCATO_PQ_FAKE_H
#define MERCATO_PQ_FAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PQ_FAKE_COLUMNS 16

/* Sets the script the next statements read; the bytes must outlive their use. */
void pq_fake_script(const uint8_t *data, size_t len);

/* The number of connections open now that are inside a transaction block; 0 between two
 * requests unless a handler left a transaction open. Lost connections do not count. */
int pq_fake_open_transactions(void);

#endif
