/* tcc.c: PlaceOrder as TCC: every participant tries, then all confirm or each cancels.
 *
 * NOTES
 *
 * The order service is the coordinator, and the orchestrator of orch.c drives it: the same
 * claims, recovery thread, deadline, backoff and crash rules, and the same log (orch_tx.c:
 * orch_saga, one row per transaction, orch_step, one per branch), read with these words.
 * Each command is /mercato.txn.v1.SagaParticipant/Run with action try, confirm or cancel,
 * behind the barrier key "<action>:<order>" of the participant's TCC consumer (product:tcc,
 * user:tcc, payment:tcc). The branches, and what each phase does there:
 *
 *                       try (sets aside)            confirm (spends)      cancel (gives up)
 *   1 reserve  product  stock held (available =     stock and held less,  held less,
 *                       stock - held), 'tried'      'sold'                'released'
 *   2 debit    user     coupon held, balance        balance and frozen    frozen less,
 *                       frozen (available =         less, ledger debit,   coupon free
 *                       balance - frozen)           coupon used
 *   3 capture  payment  payment 'authorized'        'captured'            'voided'
 *
 * Transaction states (orch_saga.state):
 *
 *   forward --every try held--> confirming --every confirm done--> completed
 *      |
 *      +--a "no", an error, or the deadline--> backward --every cancel done--> cancelled
 *
 * Branch states (orch_step.state): pending -> sent (trying) -> done (tried) or refused;
 * then done -> confirming -> confirmed, or sent/done -> compensating (cancelling) ->
 * compensated (cancelled). A refused try set nothing aside and gets no cancel; a try left
 * sent may have run, so it is cancelled, and a try that comes after its cancel is refused
 * ("compensated") and sets nothing aside.
 *
 * The decision is the commit of forward -> confirming, made only when every branch is done
 * and the deadline holds. From there on the transaction only goes forward: the deadline no
 * longer counts, and a confirm is sent again with backoff until it is done (never given
 * up; after [order] orch_stuck_after sends the transaction shows as stuck). Before the
 * decision, a "no" (out_of_stock, coupon_invalid, insufficient_balance, payment_declined),
 * an error answer (participant_error) or the deadline (timeout) turns it backward, and
 * each branch that may have tried is cancelled, the last first, until done. The end and the
 * order's COMPLETED (with order.completed) or CANCELLED are one transaction.
 *
 * What a reader sees meanwhile: between a try and its confirm or cancel, the totals (stock,
 * balance) are untouched and the available amounts are lower; GetProduct and GetBalance
 * report both.
 *
 * Crash rules (kill the order service anywhere; recovery at start-up and every
 * saga_scan_ms re-drives from the log):
 *   - before the decision commits: a try left sent is sent again (a repeat is answered as
 *     the first), or cancelled if the deadline passed meanwhile;
 *   - after it: the confirms still to do are sent, a confirm left confirming again;
 *   - backward: the cancels still to do are sent, a cancel left compensating again;
 *   - the end: the transaction and the order end together, or neither.
 * Crash points, for tests ([order] orch_crash_at): sent:<branch> and answered:<branch> (a
 * try), decide (before the decision commits), confirm:<branch> (its confirm recorded sent,
 * not yet out), undo:<branch> (its cancel likewise) and finish, with <branch> reserve, debit
 * or capture.
 */
#include "modes.h"
#include "saga_priv.h"

static rpc_status
tcc_place(rpc_call *call, const order_request *r, Mercato__Order__V1__PlaceOrderResponse *resp)
{
        return order_orch_place(call, r, ORDER_MODE_TCC, resp);
}

/* The orchestrator's start and stop (orch.c) run the coordinator for both modes. */
const order_mode_ops order_tcc_ops = {
        .mode = ORDER_MODE_TCC,
        .place = tcc_place,
};
