/* outbox.c: the txn statements, and adding events to the outbox inside the caller's transaction. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "txn_priv.h"

/* The largest packed payload an event may carry: a Deliver call must fit the subscriber's
 * request limit (1 MiB by default) with its envelope. */
#define TXN_PAYLOAD_MAX (512 * 1024)

/*
 * Every statement of the module. The relay's are explained in the NOTES of relay.c.
 */
static const db_stmt txn_stmt_list[] = {
        /* Every txn table but the coordinator's epoch, which must never go back. */
        { TXN_STMT_RESET,
            "TRUNCATE txn_outbox, txn_delivery, txn_dead_letters, txn_barrier, txn_saga_outcome,"
            " txn_tpc_marker, txn_tpc_log RESTART IDENTITY",
            0 },
        { TXN_STMT_OUTBOX_ADD,
            "INSERT INTO txn_outbox (source, topic, aggregate_id, payload) "
            "VALUES ($1, $2, $3, $4) RETURNING event_id",
            4 },
        { TXN_STMT_COUNTS,
            "SELECT (SELECT count(*) FROM txn_outbox WHERE delivered_at IS NULL), "
            "(SELECT count(*) FROM txn_dead_letters)",
            0 },
        { TXN_STMT_BARRIER_ENTER,
            "INSERT INTO txn_barrier (consumer, key) VALUES ($1, $2) ON CONFLICT DO NOTHING", 2 },
        /* $1 consumer, $2 key, $3 reason, $4 discount */
        { TXN_STMT_OUTCOME_RECORD,
            "INSERT INTO txn_saga_outcome (consumer, key, reason, discount) VALUES ($1, $2, $3, "
            "$4)",
            4 },
        /* $1 consumer, $2 key */
        { TXN_STMT_OUTCOME_GET,
            "SELECT reason, discount FROM txn_saga_outcome WHERE consumer = $1 AND key = $2", 2 },
        /* $1 source */
        { TXN_STMT_UNFANNED_TOPICS,
            "SELECT DISTINCT topic FROM txn_outbox WHERE source = $1 AND NOT fanned_out", 1 },
        /* $1 source, $2 topic, $3 subscribers (distinct, space-separated, may be ""),
         * $4 limit. Creates the delivery rows of up to $4 events of the topic and counts
         * them as pending on the event; an event with no subscriber is finished at once. */
        { TXN_STMT_FANOUT,
            "WITH ev AS (SELECT event_id, seq FROM txn_outbox "
            "            WHERE source = $1 AND topic = $2 AND NOT fanned_out "
            "            ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED), "
            "subs AS (SELECT s FROM unnest(string_to_array($3, ' ')) AS s WHERE s <> ''), "
            "ins AS (INSERT INTO txn_delivery (event_id, subscriber, source, seq) "
            "        SELECT ev.event_id, subs.s, $1, ev.seq FROM ev CROSS JOIN subs "
            "        ON CONFLICT DO NOTHING) "
            "UPDATE txn_outbox o SET fanned_out = true, "
            "  pending = (SELECT count(*) FROM subs), "
            "  delivered_at = CASE WHEN (SELECT count(*) FROM subs) = 0 THEN now() END "
            "FROM ev WHERE o.event_id = ev.event_id",
            4 },
        /* $1 source */
        { TXN_STMT_PENDING_SUBSCRIBERS,
            "SELECT DISTINCT subscriber FROM txn_delivery WHERE source = $1 AND state = 'pending'",
            1 },
        /* $1 source, $2 subscriber, $3 limit, $4 lease ms. Claims the due rows that no other
         * relay is claiming right now, counts the attempt, and pushes next_attempt_at to
         * the end of the lease. */
        { TXN_STMT_CLAIM,
            "WITH c AS (SELECT event_id FROM txn_delivery "
            "           WHERE source = $1 AND subscriber = $2 AND state = 'pending' "
            "             AND next_attempt_at <= now() "
            "           ORDER BY next_attempt_at, seq LIMIT $3 FOR UPDATE SKIP LOCKED) "
            "UPDATE txn_delivery d SET attempts = d.attempts + 1, "
            "  next_attempt_at = clock_timestamp() + $4::bigint * interval '1 millisecond', "
            "  lease = gen_random_uuid() "
            "FROM c, txn_outbox o "
            "WHERE d.event_id = c.event_id AND d.subscriber = $2 AND o.event_id = d.event_id "
            "RETURNING d.event_id, d.lease, d.attempts, o.seq, o.topic, o.aggregate_id, "
            "  o.payload, (extract(epoch FROM o.created_at) * 1000)::bigint, o.source",
            4 },
        /* $1 event, $2 subscriber. The subscriber acked: whoever holds the claim, the row is
         * done, and the event is finished when it was its last pending row. The outbox
         * row's update serializes concurrent acks of one event on its row lock. */
        { TXN_STMT_DONE,
            "WITH d AS (UPDATE txn_delivery SET state = 'done', finished_at = now(), "
            "             lease = NULL, last_error = NULL "
            "           WHERE event_id = $1::uuid AND subscriber = $2 AND state = 'pending' "
            "           RETURNING event_id) "
            "UPDATE txn_outbox o SET pending = o.pending - 1, "
            "  delivered_at = CASE WHEN o.pending = 1 THEN now() ELSE o.delivered_at END "
            "FROM d WHERE o.event_id = d.event_id",
            2 },
        /* $1 event, $2 subscriber, $3 lease, $4 delay ms, $5 error. Only the holder of the
         * claim schedules the retry. */
        { TXN_STMT_RETRY,
            "UPDATE txn_delivery SET "
            "  next_attempt_at = clock_timestamp() + $4::bigint * interval '1 millisecond', "
            "  last_error = $5, lease = NULL "
            "WHERE event_id = $1::uuid AND subscriber = $2 AND lease = $3::uuid "
            "  AND state = 'pending'",
            5 },
        /* $1 event, $2 subscriber, $3 lease, $4 delay ms. Gives a claimed row back without
         * counting the attempt, which was never made. */
        { TXN_STMT_RELEASE,
            "UPDATE txn_delivery SET attempts = attempts - 1, "
            "  next_attempt_at = clock_timestamp() + $4::bigint * interval '1 millisecond', "
            "  lease = NULL "
            "WHERE event_id = $1::uuid AND subscriber = $2 AND lease = $3::uuid "
            "  AND state = 'pending'",
            4 },
        /* $1 event, $2 subscriber, $3 lease, $4 error. The last attempt failed: the row is
         * dead, a dead letter records it, and it no longer counts as pending. */
        { TXN_STMT_DEAD,
            "WITH d AS (UPDATE txn_delivery SET state = 'dead', finished_at = now(), "
            "             last_error = $4, lease = NULL "
            "           WHERE event_id = $1::uuid AND subscriber = $2 AND lease = $3::uuid "
            "             AND state = 'pending' "
            "           RETURNING event_id, subscriber, attempts), "
            "dl AS (INSERT INTO txn_dead_letters "
            "         (event_id, subscriber, source, topic, attempts, last_error) "
            "       SELECT d.event_id, d.subscriber, x.source, x.topic, d.attempts, $4 "
            "       FROM d JOIN txn_outbox x ON x.event_id = d.event_id "
            "       ON CONFLICT DO NOTHING) "
            "UPDATE txn_outbox o SET pending = o.pending - 1, "
            "  delivered_at = CASE WHEN o.pending = 1 THEN now() ELSE o.delivered_at END "
            "FROM d WHERE o.event_id = d.event_id",
            4 },
        /* $1 source, $2 subscriber: milliseconds until its next pending row is due (<= 0:
         * now), NULL if it has none. */
        { TXN_STMT_NEXT_DUE,
            "SELECT (extract(epoch FROM min(next_attempt_at) - clock_timestamp()) * 1000)::bigint "
            "FROM txn_delivery WHERE source = $1 AND subscriber = $2 AND state = 'pending'",
            2 },
};

const db_stmt_table txn_stmts = {
        .stmts = txn_stmt_list,
        .n = sizeof(txn_stmt_list) / sizeof(txn_stmt_list[0]),
};

bool
txn_valid_name(const char *s, size_t max)
{
        return s != NULL && s[0] != '\0' && strnlen(s, max + 1) <= max;
}

/* Writes bytes as bytea's hex input form, "\x0a1b...", into a fresh string. */
static char *
bytea_hex(const uint8_t *buf, size_t len)
{
        static const char digits[] = "0123456789abcdef";
        char *out = rpc_xmalloc(2 * len + 3);

        out[0] = '\\';
        out[1] = 'x';
        for (size_t i = 0; i < len; i++) {
                out[2 + 2 * i] = digits[buf[i] >> 4];
                out[3 + 2 * i] = digits[buf[i] & 0xf];
        }
        out[2 + 2 * len] = '\0';
        return out;
}

rpc_status
txn_outbox_add(db_conn *db, const char *source, const char *topic, int64_t aggregate_id,
    const ProtobufCMessage *payload, char *ret_event_id)
{
        RPC_CLEANUP(rpc_freep) uint8_t *packed = NULL;
        RPC_CLEANUP(rpc_freep) char *hex = NULL;
        DB_RES_CLEANUP PGresult *res = NULL;
        size_t len = 0;
        db_params p;
        rpc_status st;

        if (!txn_valid_name(source, TXN_NAME_MAX) || !txn_valid_name(topic, TXN_NAME_MAX)) {
                return RPC_INVALID_ARGUMENT;
        }
        if (!db_in_transaction(db)) {
                return RPC_FAILED_PRECONDITION;
        }
        if (payload != NULL) {
                packed = rpc_pack(payload, &len);
        }
        if (len > TXN_PAYLOAD_MAX) {
                return RPC_RESOURCE_EXHAUSTED;
        }
        hex = bytea_hex(packed, len);

        db_params_init(&p);
        db_params_str(&p, source);
        db_params_str(&p, topic);
        db_params_i64(&p, aggregate_id);
        db_params_str(&p, hex);
        st = db_exec(db, TXN_STMT_OUTBOX_ADD, &p, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (db_rows(res) != 1) {
                return RPC_INTERNAL;
        }
        if (ret_event_id != NULL) {
                snprintf(ret_event_id, TXN_EVENT_ID_LEN, "%s", db_get_str(res, 0, 0));
        }
        return RPC_OK;
}

rpc_status
txn_reset(db_conn *db)
{
        return db_exec(db, TXN_STMT_RESET, NULL, NULL);
}

rpc_status
txn_outbox_counts(db_conn *db, int64_t *ret_pending, int64_t *ret_dead)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        rpc_status st;

        st = db_exec(db, TXN_STMT_COUNTS, NULL, &res);
        if (st != RPC_OK) {
                return st;
        }
        if (db_rows(res) != 1) {
                return RPC_INTERNAL;
        }
        if (ret_pending != NULL) {
                *ret_pending = db_get_i64(res, 0, 0);
        }
        if (ret_dead != NULL) {
                *ret_dead = db_get_i64(res, 0, 1);
        }
        return RPC_OK;
}
