/* events_common.h: what the services' EventSinks share: payload checks and saga helpers. */
#ifndef MERCATO_EVENTS_COMMON_H
#define MERCATO_EVENTS_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "event.pb-c.h"
#include "events_tx.h"
#include "rpc.h"
#include "txn.pb-c.h"

#define EVENTS_TOPIC_ORDER_COMPLETED "order.completed"

/* Checks an event's id: 1..EVENTS_ID_MAX bytes. Returns OK, or INVALID_ARGUMENT with the
 * call's message set. */
rpc_status events_check_id(rpc_call *call, const char *event_id) RPC_WARN_UNUSED;

/* Unpacks and checks an order.completed payload, by the same rules in every consumer: an
 * order, a user, an amount >= 0, 0..EVENTS_ITEMS_MAX lines of a product and a quantity of
 * 1..EVENTS_QUANTITY_MAX, a completion time in range. On success *ret_msg is the
 * OrderCompleted, which the caller frees (RPC_PB_CLEANUP). Returns OK, or INVALID_ARGUMENT
 * with the call's message set. */
rpc_status events_order_completed(rpc_call *call, const Mercato__Event__V1__Event *req,
    ProtobufCMessage **ret_msg) RPC_WARN_UNUSED;

/* What a consumer does with a checked order.completed, in one transaction on db. */
typedef rpc_status (*events_completed_fn)(db_conn *db, const Mercato__Event__V1__Event *ev,
    const Mercato__Event__V1__OrderCompleted *oc, bool *ret_duplicate);

/* Delivers an order.completed: unpacks and checks its payload (events_order_completed), then
 * runs apply on the call's database. UNAVAILABLE without a database; apply's failure
 * becomes the call's error, with the database's message. */
rpc_status events_deliver_order_completed(rpc_call *call, const Mercato__Event__V1__Event *req,
    events_completed_fn apply, bool *ret_duplicate) RPC_WARN_UNUSED;

/* The whole Deliver of a sink that takes order.completed alone (cart, data platform): the
 * event id, the topic, then events_deliver_order_completed; sets resp->duplicate. */
rpc_status events_sink_order_completed(rpc_call *call, const Mercato__Event__V1__Event *req,
    events_completed_fn apply, Mercato__Event__V1__DeliverAck *resp) RPC_WARN_UNUSED;

/* For a saga step: refuses the monolith dataset (FAILED_PRECONDITION), then unpacks the
 * SagaOrder payload (INVALID_ARGUMENT), with the call's message set. On success *ret_msg is
 * the SagaOrder, which the caller frees (RPC_PB_CLEANUP). Checks no field. */
rpc_status events_saga_order(rpc_call *call, const Mercato__Event__V1__Event *req,
    ProtobufCMessage **ret_msg) RPC_WARN_UNUSED;

/* Checks the fields every saga step reads of a SagaOrder: an order and a user > 0, and, when
 * `with_reason`, a reason of 1..EVENTS_REASON_MAX bytes (the steps that carry a failure on).
 * Returns OK, or INVALID_ARGUMENT with the call's message set. */
rpc_status events_check_saga_order(
    rpc_call *call, const Mercato__Event__V1__SagaOrder *so, bool with_reason) RPC_WARN_UNUSED;

/* The method count of SagaParticipant (Run), served by product, user and payment. */
#define EVENTS_N_COMMAND_METHODS 1

/* What a participant runs for an orchestrator's command: its step (forward) or the step's
 * compensation, on a SagaOrder the caller checked for presence only; *out and
 * *ret_duplicate as events_orch_consume gives them. */
typedef rpc_status (*events_command_fn)(rpc_call *call, const Mercato__Event__V1__SagaOrder *so,
    bool forward, txn_outcome *out, bool *ret_duplicate);

/* What a participant runs for a TCC coordinator's command (actions "try", "confirm",
 * "cancel"): the phase on a SagaOrder the caller checked for presence only. */
typedef rpc_status (*events_tcc_run_fn)(rpc_call *call, const Mercato__Event__V1__SagaOrder *so,
    events_tcc_phase phase, txn_outcome *out, bool *ret_duplicate);

/* The call's status after a participant ran TCC phase with status st on db: OK, or st with
 * the call's message set (UNAVAILABLE: switch, a step switch's name, does not answer;
 * FAILED_PRECONDITION: a confirm with nothing tried; else the database's message). */
rpc_status events_tcc_status(rpc_call *call, db_conn *db, rpc_status st, const char *sw_name,
    events_tcc_phase phase) RPC_WARN_UNUSED;

/* The whole SagaParticipant/Run of a participant whose saga step is the action `step` and
 * its compensation `undo`, and whose TCC phases are run by tcc: refuses the monolith
 * dataset (FAILED_PRECONDITION), a command without an order and any other action
 * (INVALID_ARGUMENT, naming the five), then runs it and fills the reply from its outcome, in
 * the call's arena. */
rpc_status events_command_run(rpc_call *call, const Mercato__Txn__V1__SagaCommand *req,
    const char *step, const char *undo, events_command_fn run, events_tcc_run_fn tcc,
    Mercato__Txn__V1__SagaCommandReply *resp) RPC_WARN_UNUSED;

#endif
