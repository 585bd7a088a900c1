/* product_steps.h: the product service's transactions in the order flow: saga steps, 2pc branch.
 *
 * Each is a whole local transaction (or a 2pc branch's body) over a connection and the
 * decoded event or request, with no RPC in sight: the service's EventSink and Participant
 * call them, and so does the SQL replay (mercato-bench replay), which runs the very same
 * statements in the very same transactions. See events.c for the saga's NOTES. */
#ifndef MERCATO_PRODUCT_STEPS_H
#define MERCATO_PRODUCT_STEPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "event.pb-c.h"
#include "events_tx.h"
#include "svc.h"
#include "tpc.h"
#include "txn.h"

/* order.created, behind barrier key "reserve:<order>" of consumer "product:saga": reserves
 * every item or none -> stock.reserved, or stock.rejected (out_of_stock). sw is the step
 * switch product.reserve (SVC_STEP_OK outside the service): fail rejects, timeout returns
 * UNAVAILABLE with nothing done. so's items are checked by the caller (1..100, distinct
 * products, quantities 1..10^12). *ret_duplicate: the key was taken, nothing changed. */
rpc_status product_saga_reserve(db_conn *db, const Mercato__Event__V1__SagaOrder *so,
    svc_step_result sw, bool *ret_duplicate) RPC_WARN_UNUSED;

/* balance.rejected, balance.refunded (tell_order: -> stock.released with so's reason) and
 * order.cancelled (no event), behind "release:<order>", taking "reserve:<order>" too:
 * releases what the order holds, if anything. */
rpc_status product_saga_release(db_conn *db, const Mercato__Event__V1__SagaOrder *so,
    bool tell_order, bool *ret_duplicate) RPC_WARN_UNUSED;

/* The orchestrated saga's command "reserve" (SagaParticipant/Run): product_saga_reserve's
 * transaction, ending with its outcome recorded for a repeated command instead of an
 * event; *out says what it did, or did the first time (events_orch_consume). */
rpc_status product_orch_reserve(db_conn *db, const Mercato__Event__V1__SagaOrder *so,
    svc_step_result sw, txn_outcome *out, bool *ret_duplicate) RPC_WARN_UNUSED;

/* The command "release", the compensation of "reserve": product_saga_release, telling
 * nobody. */
rpc_status product_orch_release(db_conn *db, const Mercato__Event__V1__SagaOrder *so,
    txn_outcome *out, bool *ret_duplicate) RPC_WARN_UNUSED;

/* A TCC phase (SagaParticipant/Run "try", "confirm", "cancel", mode tcc) on the order's
 * items: the try holds their stock (products.held, reservations 'tried'; out_of_stock when
 * one lacks it, and sw as for reserve), the confirm takes it from stock ('sold'), the cancel
 * frees it ('released'). One transaction behind the key "<phase>:<order>" of product:tcc;
 * *out and *ret_duplicate as events_tcc_consume gives them. */
rpc_status product_tcc(db_conn *db, const Mercato__Event__V1__SagaOrder *so, events_tcc_phase phase,
    svc_step_result sw, txn_outcome *out, bool *ret_duplicate) RPC_WARN_UNUSED;

/* order.completed, behind the event id of consumer "product:order.completed": a saga
 * order's reservation is sold, and the sales of the day it completed grow (its completion
 * time, else the event's creation time, else now). oc is checked by the caller
 * (events_order_completed's rules). */
rpc_status product_order_completed(db_conn *db, const char *event_id,
    const Mercato__Event__V1__OrderCompleted *oc, int64_t event_created_at_ms,
    bool *ret_duplicate) RPC_WARN_UNUSED;

/* The 2pc branch (a txn_tpc_branch_fn): reserves every item, all or nothing, and marks the
 * reservations sold; votes no with out_of_stock. */
rpc_status product_tpc_branch(db_conn *db, const txn_tpc_request *req, txn_tpc_vote *vote,
    char *err, size_t errlen) RPC_WARN_UNUSED;

#endif
