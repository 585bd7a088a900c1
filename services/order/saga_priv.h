/* saga_priv.h: what the order service's saga files share: topics, ends of an order, waiters. */
#ifndef MERCATO_ORDER_SAGA_PRIV_H
#define MERCATO_ORDER_SAGA_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "modes.h"
#include "reply.h"

/* The outbox source of the order service (its relay drains it). */
#define SAGA_SOURCE "order"

/* The saga's topics (proto/event.proto, SagaOrder, says who sends what to whom). */
#define SAGA_TOPIC_ORDER_CREATED "order.created"
#define SAGA_TOPIC_STOCK_REJECTED "stock.rejected"
#define SAGA_TOPIC_STOCK_RELEASED "stock.released"
#define SAGA_TOPIC_PAYMENT_CAPTURED "payment.captured"
#define SAGA_TOPIC_ORDER_CANCELLED "order.cancelled"
#define SAGA_TOPIC_ORDER_COMPLETED "order.completed"

/* The cancel reason of a saga that passed its deadline. */
#define SAGA_REASON_TIMEOUT "timeout"

/* The saga deadline when the topology names none ([order] saga_timeout_ms), and how often
 * the deadline scan looks at the database at least ([order] saga_scan_ms). */
#define SAGA_TIMEOUT_MS_DEFAULT 10000
#define SAGA_SCAN_MS_DEFAULT 1000

/* EventSink of the order service (events.c). */
#define ORDER_N_EVENT_METHODS 1
extern const rpc_method order_event_methods[ORDER_N_EVENT_METHODS];

/*
 * The ends of a saga order (saga.c)
 *
 * Each is one local transaction on the order's database. It first enters the barrier key
 * "terminal:<order>" of consumer "order:saga": only one end per order ever commits, so a
 * duplicate event, or a cancel that races a completion, finds the key taken and changes
 * nothing; the row's conditional update (WHERE status = 'PENDING') agrees. After the commit
 * it wakes the relay and answers the order's waiters.
 */

/* PENDING -> COMPLETED with the discount the user step gave, and order.completed into the
 * outbox. NOT_FOUND for an unknown order; else a database status. */
rpc_status order_saga_complete(svc *s, db_conn *db, int64_t order_id, int64_t discount,
    order_saga_outcome *ret_end) RPC_WARN_UNUSED;

/* PENDING -> CANCELLED with reason; with compensate, also order.cancelled into the outbox,
 * which every participant consumes as the compensation of its step (done or not). */
rpc_status order_saga_cancel(svc *s, db_conn *db, int64_t order_id, const char *reason,
    bool compensate, order_saga_outcome *ret_end) RPC_WARN_UNUSED;

/* Before a saga order (choreographed or orchestrated) is created: prices the lines through
 * the product service and sums the total, with the call's error set on failure. */
rpc_status order_saga_price(
    rpc_call *call, const order_request *r, order_line *lines, int64_t *ret_total) RPC_WARN_UNUSED;

/* Checks that the user exists, through the user service: an unknown user is bad input
 * (NOT_FOUND), refused before anything is written. */
rpc_status order_saga_check_user(rpc_call *call, int64_t user_id) RPC_WARN_UNUSED;

/* The configured saga deadline and deadline scan period ([order] saga_timeout_ms and
 * saga_scan_ms, checked at start), in ms. The orchestrated saga uses both too. */
int64_t order_saga_timeout_ms(void);
int64_t order_saga_scan_ms(void);

/* The monotonic time by which a PlaceOrder that waits for its saga answers: a little before
 * the call's deadline, or past the saga's deadline when the call has none. */
int64_t order_saga_answer_by(const rpc_call *call);

/* A client of the topology's service name, with calls of timeout_ms; NULL when the
 * topology names no address for it or the client cannot be opened. */
rpc_client *order_saga_open_peer(const rpc_conf *conf, const char *name, int64_t timeout_ms);

/* PlaceOrder driven by the orchestrator (orch.c), for mode orchestration or tcc: creates
 * the order with its log, drives it until it is terminal or the call must answer, and
 * answers with the order as it is then. */
rpc_status order_orch_place(rpc_call *call, const order_request *r, order_mode mode,
    Mercato__Order__V1__PlaceOrderResponse *resp) RPC_WARN_UNUSED;

/*
 * The clock (saga_clock.c): the reply waiters, their timer, and the deadline scan.
 *
 * A waiter is a deferred PlaceOrder call waiting for its order to end. It is registered
 * before the transaction that creates the order commits, unarmed: only the order's end can
 * take it then, and the timer leaves it alone, so a failed commit can take it back. Once
 * armed, the timer answers it with the order PENDING when its time is up.
 */

/* Starts the timer and the scan threads. s is kept for the scan's connection and wakes. */
rpc_status saga_clock_start(svc *s, int64_t timeout_ms, int64_t scan_ms) RPC_WARN_UNUSED;

/* Stops both threads and answers every waiter left with its order PENDING. Waiters added
 * afterwards are refused. Safe to call when not started. */
void saga_clock_stop(void);

/* Registers call (a PlaceOrder that will return RPC_DEFERRED) as a waiter of its order,
 * pending = the order as created (copied), answered PENDING at until_mono_ms once armed.
 * False when the clock is stopped, or when saga_max_waiters calls wait already: the caller
 * answers itself. */
bool saga_waiter_add(rpc_call *call, const order_rec *pending, int64_t until_mono_ms, bool armed);

/* Arms the waiter of call. False if it is gone: an end of the order answered it. */
bool saga_waiter_arm(rpc_call *call);

/* Takes back the waiter of call, which the caller answers. False if it is gone. */
bool saga_waiter_take(rpc_call *call);

/* Answers every waiter of rec's order (armed or not) OK with rec. */
void saga_waiters_finish(const order_rec *rec);

/* A saga deadline (monotonic ms) that the scan must not miss by much. */
void saga_deadline_note(int64_t deadline_mono_ms);

#endif
