/* events_tx.h: what the event consumers' transactions share: limits, saga keys and events. */
#ifndef MERCATO_EVENTS_TX_H
#define MERCATO_EVENTS_TX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "event.pb-c.h"
#include "rpc.h"
#include "txn.h"

/* The limits of every consumer: an event id's length in bytes, the lines of an order, a
 * line's quantity, a time in Unix ms (9999-12-31T23:59:59.999Z) and a saga reason. */
#define EVENTS_ID_MAX 64
#define EVENTS_ITEMS_MAX 100
#define EVENTS_QUANTITY_MAX INT64_C(1000000000000)
#define EVENTS_TIME_MAX_MS INT64_C(253402300799999)
#define EVENTS_REASON_MAX 64

/* Writes the barrier key of a saga action on an order, "<action>:<order_id>", into buf. */
void events_saga_key(char *buf, size_t len, const char *action, int64_t order_id);

/* Runs apply(db, arg) once per saga action on an order: in one transaction behind the
 * barrier key "<action>:<order_id>" of consumer (txn_consume; *ret_duplicate, may be
 * NULL, says the key was taken and nothing ran). */
rpc_status events_saga_consume(db_conn *db, const char *consumer, const char *action,
    int64_t order_id, rpc_status (*apply)(db_conn *db, void *arg), void *arg,
    bool *ret_duplicate) RPC_WARN_UNUSED;

/* In a compensation's open transaction: takes the key of the action it undoes, so that the
 * action, if it comes later, does nothing. OK whether the key was free (the action never
 * ran: nothing to undo, and now it never will) or taken (it ran, or was refused: undo what
 * it left). */
rpc_status events_saga_fence(
    db_conn *db, const char *consumer, const char *action, int64_t order_id) RPC_WARN_UNUSED;

/* In the open transaction: adds a saga event about so's order from source. With a NULL
 * reason the event is so itself; else it names so's order, user, coupon and total, and the
 * reason. Returns txn_outbox_add's status. */
rpc_status events_saga_emit(db_conn *db, const char *source, const char *topic,
    const Mercato__Event__V1__SagaOrder *so, const char *reason) RPC_WARN_UNUSED;

/*
 * The orchestrated saga (mode orchestration): the order service sends each step as a
 * command (SagaParticipant/Run) instead of an event. A participant runs the very same
 * transaction behind the very same barrier key, but ends it by recording its outcome for a
 * repeated command (txn_saga_outcome) instead of adding the next event.
 */

/* The end of a forward saga action, in its open transaction: with orch NULL (choreography)
 * the next event, topic from source with reason (events_saga_emit); else the outcome, reason
 * ("" or NULL for done) and discount, recorded under (consumer, "<action>:<order>") and
 * copied into *orch. */
rpc_status events_saga_step_end(db_conn *db, const char *source, const char *consumer,
    const char *action, const Mercato__Event__V1__SagaOrder *so, const char *topic,
    const char *reason, int64_t discount, txn_outcome *orch) RPC_WARN_UNUSED;

/* An orchestrated command: events_saga_consume, where apply ends with events_saga_step_end
 * (a step) or records nothing (a compensation: *out is done). For a repeated command
 * (*ret_duplicate) *out is the first one's outcome; a step's key taken with no outcome was
 * taken by its compensation: refused, reason "compensated". */
rpc_status events_orch_consume(db_conn *db, const char *consumer, const char *action,
    int64_t order_id, rpc_status (*apply)(db_conn *db, void *arg), void *arg, bool compensation,
    txn_outcome *out, bool *ret_duplicate) RPC_WARN_UNUSED;

/*
 * TCC (mode tcc): the order service sends each participant a try, then a confirm to every
 * one or a cancel to each that may have tried. Each phase is one local transaction behind
 * the barrier key "<phase>:<order>" of the participant's TCC consumer: a repeat does
 * nothing and is answered as the first was; a cancel takes the try's key too, so that a try
 * that comes after its cancel is refused ("compensated") and holds nothing.
 */

typedef enum events_tcc_phase {
        EVENTS_TCC_TRY = 0,     /* set the resources aside, or refuse */
        EVENTS_TCC_CONFIRM = 1, /* spend what the try set aside */
        EVENTS_TCC_CANCEL = 2,  /* give up what the try set aside, if it ran */
} events_tcc_phase;

/* A participant's side of one phase, in the open transaction (after a savepoint, for the
 * try). A try sets *ret_reason for a business "no" (its writes are then rolled back to the
 * savepoint) and *ret_discount for what it gave; a confirm or cancel ignores both. */
typedef rpc_status (*events_tcc_fn)(
    db_conn *db, void *arg, events_tcc_phase phase, const char **ret_reason, int64_t *ret_discount);

/* Runs phase of a TCC transaction on order_id behind its barrier key of consumer, with
 * apply, and fills *out (a try's outcome; done for a confirm or cancel) and *ret_duplicate
 * as events_orch_consume does. */
rpc_status events_tcc_consume(db_conn *db, const char *consumer, events_tcc_phase phase,
    int64_t order_id, events_tcc_fn apply, void *arg, txn_outcome *out,
    bool *ret_duplicate) RPC_WARN_UNUSED;

/* "try", "confirm", "cancel". */
const char *events_tcc_phase_name(events_tcc_phase phase);

/* The reason of a step that came after its compensation. */
#define EVENTS_REASON_COMPENSATED "compensated"

#endif
