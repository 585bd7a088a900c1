/* txn_priv.h: what the files of the txn module share with each other, and nobody else. */
#ifndef MERCATO_TXN_PRIV_H
#define MERCATO_TXN_PRIV_H

#include <stdbool.h>
#include <stddef.h>

#include "txn.h"

/* The statement names of txn_stmts (outbox.c), used by the relay and the barrier. */
#define TXN_STMT_OUTBOX_ADD "txn_outbox_add"
#define TXN_STMT_COUNTS "txn_counts"
#define TXN_STMT_RESET "txn_reset"
#define TXN_STMT_BARRIER_ENTER "txn_barrier_enter"
#define TXN_STMT_OUTCOME_RECORD "txn_outcome_record"
#define TXN_STMT_OUTCOME_GET "txn_outcome_get"
#define TXN_STMT_UNFANNED_TOPICS "txn_unfanned_topics"
#define TXN_STMT_FANOUT "txn_fanout"
#define TXN_STMT_PENDING_SUBSCRIBERS "txn_pending_subscribers"
#define TXN_STMT_CLAIM "txn_claim"
#define TXN_STMT_DONE "txn_delivery_done"
#define TXN_STMT_RETRY "txn_delivery_retry"
#define TXN_STMT_RELEASE "txn_delivery_release"
#define TXN_STMT_DEAD "txn_delivery_dead"
#define TXN_STMT_NEXT_DUE "txn_next_due_ms"

/* True if s is a non-empty string of at most max bytes. */
bool txn_valid_name(const char *s, size_t max);

#endif
