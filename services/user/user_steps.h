/* user_steps.h: the user service's transactions in the order flow: saga steps, 2pc branch.
 *
 * Each is a whole local transaction (or a 2pc branch's body) over a connection and the
 * decoded event or request, with no RPC in sight: the service's EventSink and Participant
 * call them, and so does the SQL replay (mercato-bench replay). See events.c for the
 * saga's NOTES and tpc.c for Quote. */
#ifndef MERCATO_USER_STEPS_H
#define MERCATO_USER_STEPS_H

#include <stdbool.h>
#include <stddef.h>

#include "db.h"
#include "event.pb-c.h"
#include "events_tx.h"
#include "svc.h"
#include "tpc.h"
#include "txn.h"

/* stock.reserved, behind barrier key "debit:<order>" of consumer "user:saga": uses the
 * coupon (if any) and debits total - discount -> balance.debited, or balance.rejected
 * (coupon_invalid, insufficient_balance). coupon_sw and debit_sw are the step switches
 * user.coupon and user.debit (SVC_STEP_OK outside the service): fail rejects, timeout
 * returns UNAVAILABLE with nothing done. *ret_duplicate: the key was taken. */
rpc_status user_saga_debit(db_conn *db, const Mercato__Event__V1__SagaOrder *so,
    svc_step_result coupon_sw, svc_step_result debit_sw, bool *ret_duplicate) RPC_WARN_UNUSED;

/* payment.declined (tell_product: -> balance.refunded with so's reason) and order.cancelled
 * (no event), behind "refund:<order>", taking "debit:<order>" too: refunds the debit and
 * restores the coupon, if there are any. */
rpc_status user_saga_refund(db_conn *db, const Mercato__Event__V1__SagaOrder *so, bool tell_product,
    bool *ret_duplicate) RPC_WARN_UNUSED;

/* The orchestrated saga's commands (SagaParticipant/Run): "debit" (the coupon and the
 * debit; out->discount is what the coupon gave) and its compensation "refund", the
 * transactions above, with the outcome recorded for a repeated command instead of an event
 * (events_orch_consume). */
rpc_status user_orch_debit(db_conn *db, const Mercato__Event__V1__SagaOrder *so,
    svc_step_result coupon_sw, svc_step_result debit_sw, txn_outcome *out,
    bool *ret_duplicate) RPC_WARN_UNUSED;
rpc_status user_orch_refund(db_conn *db, const Mercato__Event__V1__SagaOrder *so, txn_outcome *out,
    bool *ret_duplicate) RPC_WARN_UNUSED;

/* A TCC phase (SagaParticipant/Run "try", "confirm", "cancel", mode tcc) on the order's user:
 * the try holds the coupon (coupon_invalid when it cannot) and freezes total less its
 * discount (insufficient_balance when too little is available), with the switches as for
 * debit; the confirm spends both (the ledger's debit, the coupon used), the cancel frees
 * them. One transaction behind the key "<phase>:<order>" of user:tcc; *out (the try's
 * discount) and *ret_duplicate as events_tcc_consume gives them. */
rpc_status user_tcc(db_conn *db, const Mercato__Event__V1__SagaOrder *so, events_tcc_phase phase,
    svc_step_result coupon_sw, svc_step_result debit_sw, txn_outcome *out,
    bool *ret_duplicate) RPC_WARN_UNUSED;

/* The 2pc branch (a txn_tpc_branch_fn): uses the coupon (no vote, coupon_invalid, when it
 * no longer gives the agreed discount) and debits the amount (insufficient_balance). */
rpc_status user_tpc_branch(db_conn *db, const txn_tpc_request *req, txn_tpc_vote *vote, char *err,
    size_t errlen) RPC_WARN_UNUSED;

/* Quote (a txn_tpc_branch_fn, read-only): the user and the coupon exist (else NOT_FOUND),
 * the coupon is held unused (else a "no", coupon_invalid), and the discount on total. */
rpc_status user_tpc_quote(db_conn *db, const txn_tpc_request *req, txn_tpc_vote *vote, char *err,
    size_t errlen) RPC_WARN_UNUSED;

#endif
