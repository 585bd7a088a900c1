/* payment_steps.h: the payment service's transactions in the order flow: saga steps, 2pc branch.
 *
 * Each is a whole local transaction (or a 2pc branch's body) over a connection and the
 * decoded event or request, with no RPC in sight: the service's EventSink and Participant
 * call them, and so does the SQL replay (mercato-bench replay). See events.c's NOTES. */
#ifndef MERCATO_PAYMENT_STEPS_H
#define MERCATO_PAYMENT_STEPS_H

#include <stdbool.h>
#include <stddef.h>

#include "db.h"
#include "event.pb-c.h"
#include "events_tx.h"
#include "svc.h"
#include "tpc.h"
#include "txn.h"

/* balance.debited, behind barrier key "capture:<order>" of consumer "payment:saga":
 * captures the amount -> payment.captured, or payment.declined. sw is the step switch
 * payment.capture (SVC_STEP_OK outside the service): fail declines, timeout returns
 * UNAVAILABLE with nothing done. *ret_duplicate: the key was taken, nothing changed. */
rpc_status payment_saga_capture(db_conn *db, const Mercato__Event__V1__SagaOrder *so,
    svc_step_result sw, bool *ret_duplicate) RPC_WARN_UNUSED;

/* order.cancelled, behind "refund:<order>", taking "capture:<order>" too: refunds the
 * payment, if there is one; no event. */
rpc_status payment_saga_refund(
    db_conn *db, const Mercato__Event__V1__SagaOrder *so, bool *ret_duplicate) RPC_WARN_UNUSED;

/* The orchestrated saga's commands (SagaParticipant/Run): "capture" and its compensation
 * "refund", the transactions above, with the outcome recorded for a repeated command
 * instead of an event (events_orch_consume). */
rpc_status payment_orch_capture(db_conn *db, const Mercato__Event__V1__SagaOrder *so,
    svc_step_result sw, txn_outcome *out, bool *ret_duplicate) RPC_WARN_UNUSED;
rpc_status payment_orch_refund(db_conn *db, const Mercato__Event__V1__SagaOrder *so,
    txn_outcome *out, bool *ret_duplicate) RPC_WARN_UNUSED;

/* A TCC phase (SagaParticipant/Run "try", "confirm", "cancel", mode tcc) on the order's
 * payment: the try authorises the amount (payment_declined for a declining user, and sw as
 * for capture), the confirm captures it, the cancel voids it. One transaction behind the
 * key "<phase>:<order>" of payment:tcc; *out and *ret_duplicate as events_tcc_consume gives
 * them. */
rpc_status payment_tcc(db_conn *db, const Mercato__Event__V1__SagaOrder *so, events_tcc_phase phase,
    svc_step_result sw, txn_outcome *out, bool *ret_duplicate) RPC_WARN_UNUSED;

/* The 2pc branch (a txn_tpc_branch_fn): captures the amount; votes no with
 * payment_declined. */
rpc_status payment_tpc_branch(db_conn *db, const txn_tpc_request *req, txn_tpc_vote *vote,
    char *err, size_t errlen) RPC_WARN_UNUSED;

#endif
