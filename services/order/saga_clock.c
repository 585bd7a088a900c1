/* saga_clock.c: the saga's clock: PlaceOrder reply waiters, their timer, and the deadline scan.
 *
 * NOTES
 *
 * Waiters. A PlaceOrder in saga mode defers its reply (RPC_DEFERRED) and leaves a waiter
 * here: its call, its order as created (to answer PENDING with), and the monotonic time at
 * which it must answer anyway (the call's deadline less a margin). States of a waiter:
 *
 *   UNARMED  added before the order's transaction commits; only an end of the order takes it
 *            (none can happen before the commit), so a failed commit takes it back
 *   ARMED    the order is committed: an end of the order or the timer takes it
 *   GONE     taken off the list and answered, exactly once, by whoever took it
 *
 * Every transition happens under the one mutex, and whoever unlinks a waiter is the only
 * one to answer its call; the answer itself (order_msg, rpc_call_finish) runs outside the
 * lock. Waiters live in memory only: after a restart they are gone (their clients got an
 * error or PENDING), and the saga goes on from the databases.
 *
 * At most max_waiters calls wait at once ([order] saga_max_waiters, default half the
 * server's contexts): a deferred call holds a context, and the events that end its saga
 * reach this same server. Were every context held by a waiting PlaceOrder, no event could
 * come in and every saga would wait for its deadline. A call beyond the limit is answered
 * PENDING at once, and its client asks GetOrder.
 *
 * The timer is one thread waiting on a condition variable until the earliest armed
 * waiter's time; adding or arming a waiter signals it. No polling.
 *
 * The deadline scan is another thread, since it talks to the database: it cancels the
 * PENDING saga orders older than the saga deadline ([order] saga_timeout_ms), each in a
 * transaction of its own through order_saga_cancel (the first end of an order wins). It
 * scans at start-up (orders left by an earlier run: crash recovery), then when the next
 * deadline it knows of comes: the oldest pending order's, which the scan reads, or a new
 * order's (saga_deadline_note), and at the latest every saga_scan_ms, the modest poll that
 * picks up what it cannot know (its own transactions that failed, the database's clock).
 * Each pass handles at most SCAN_BATCH orders, and goes again at once if there were more.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "saga_priv.h"

/* Orders one scan pass looks at. */
#define SCAN_BATCH 64

typedef struct saga_waiter {
        rpc_call *call;
        int64_t order_id;
        int64_t until_ms; /* monotonic */
        bool armed;
        order_rec pending; /* owned copy */
        struct saga_waiter *next;
} saga_waiter;

static struct {
        pthread_mutex_t mu;
        pthread_cond_t timer_cv; /* the timer waits here */
        pthread_cond_t scan_cv;  /* the scan waits here */
        bool running;            /* the threads exist */
        bool stopping;
        saga_waiter *waiters;
        int64_t scan_at_ms; /* monotonic: the next scan */
        pthread_t timer;
        pthread_t scanner;
        svc *s;
        int64_t timeout_ms;
        int64_t scan_ms;
        int max_waiters;
} clk = {
        .mu = PTHREAD_MUTEX_INITIALIZER,
};

static void
cond_init_monotonic(pthread_cond_t *cv)
{
        pthread_condattr_t attr;

        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(cv, &attr);
        pthread_condattr_destroy(&attr);
}

/* Waits on cv (with clk.mu held) until the monotonic time at_ms; INT64_MAX: no time. */
static void
wait_until(pthread_cond_t *cv, int64_t at_ms)
{
        struct timespec ts;

        if (at_ms == INT64_MAX) {
                pthread_cond_wait(cv, &clk.mu);
                return;
        }
        ts.tv_sec = (time_t) (at_ms / 1000);
        ts.tv_nsec = (long) (at_ms % 1000) * 1000000L;
        (void) pthread_cond_timedwait(cv, &clk.mu, &ts);
}

static void
rec_copy(order_rec *dst, const order_rec *src)
{
        *dst = *src;
        dst->reason = rpc_xstrdup(src->reason != NULL ? src->reason : "");
        dst->items = rpc_xcalloc(src->n_items > 0 ? src->n_items : 1, sizeof(*dst->items));
        if (src->n_items > 0) {
                memcpy(dst->items, src->items, src->n_items * sizeof(*dst->items));
        }
}

static void
waiter_free(saga_waiter *w)
{
        order_rec_fini(&w->pending);
        free(w);
}

/* Answers a waiter that the caller unlinked, OK with rec, and frees it. */
static void
waiter_answer(saga_waiter *w, const order_rec *rec)
{
        Mercato__Order__V1__PlaceOrderResponse *resp
            = (Mercato__Order__V1__PlaceOrderResponse *) rpc_call_response(w->call);

        resp->order = order_msg(w->call, rec, NULL);
        rpc_call_finish(w->call, RPC_OK);
        waiter_free(w);
}

/* Answers a list of unlinked waiters with their orders PENDING. */
static void
answer_pending(saga_waiter *list)
{
        while (list != NULL) {
                saga_waiter *w = list;
                list = w->next;
                waiter_answer(w, &w->pending);
        }
}

/* Unlinks the waiter of call (clk.mu held); NULL if it is not there. */
static saga_waiter *
unlink_call(rpc_call *call)
{
        for (saga_waiter **pp = &clk.waiters; *pp != NULL; pp = &(*pp)->next) {
                saga_waiter *w = *pp;
                if (w->call == call) {
                        *pp = w->next;
                        return w;
                }
        }
        return NULL;
}

bool
saga_waiter_add(rpc_call *call, const order_rec *pending, int64_t until_mono_ms, bool armed)
{
        saga_waiter *w;
        int n = 0;

        pthread_mutex_lock(&clk.mu);
        for (w = clk.waiters; w != NULL && n < clk.max_waiters; w = w->next) {
                n++;
        }
        if (!clk.running || clk.stopping || n >= clk.max_waiters) {
                pthread_mutex_unlock(&clk.mu);
                return false;
        }
        w = rpc_xcalloc(1, sizeof(*w));
        w->call = call;
        w->order_id = pending->order_id;
        w->until_ms = until_mono_ms;
        w->armed = armed;
        rec_copy(&w->pending, pending);
        w->next = clk.waiters;
        clk.waiters = w;
        if (armed) {
                pthread_cond_signal(&clk.timer_cv);
        }
        pthread_mutex_unlock(&clk.mu);
        return true;
}

bool
saga_waiter_arm(rpc_call *call)
{
        bool found = false;

        pthread_mutex_lock(&clk.mu);
        for (saga_waiter *w = clk.waiters; w != NULL; w = w->next) {
                if (w->call == call) {
                        w->armed = true;
                        found = true;
                        pthread_cond_signal(&clk.timer_cv);
                        break;
                }
        }
        pthread_mutex_unlock(&clk.mu);
        return found;
}

bool
saga_waiter_take(rpc_call *call)
{
        saga_waiter *w;

        pthread_mutex_lock(&clk.mu);
        w = unlink_call(call);
        pthread_mutex_unlock(&clk.mu);
        if (w == NULL) {
                return false;
        }
        waiter_free(w);
        return true;
}

void
saga_waiters_finish(const order_rec *rec)
{
        saga_waiter *taken = NULL;

        pthread_mutex_lock(&clk.mu);
        for (saga_waiter **pp = &clk.waiters; *pp != NULL;) {
                saga_waiter *w = *pp;
                if (w->order_id == rec->order_id) {
                        *pp = w->next;
                        w->next = taken;
                        taken = w;
                } else {
                        pp = &w->next;
                }
        }
        pthread_mutex_unlock(&clk.mu);
        while (taken != NULL) {
                saga_waiter *w = taken;
                taken = w->next;
                waiter_answer(w, rec);
        }
}

void
saga_deadline_note(int64_t deadline_mono_ms)
{
        pthread_mutex_lock(&clk.mu);
        if (clk.running && !clk.stopping && deadline_mono_ms < clk.scan_at_ms) {
                clk.scan_at_ms = deadline_mono_ms;
                pthread_cond_signal(&clk.scan_cv);
        }
        pthread_mutex_unlock(&clk.mu);
}

/* The timer: answers armed waiters whose time is up, PENDING. */
static void *
timer_main(void *arg)
{
        (void) arg;
        pthread_mutex_lock(&clk.mu);
        while (!clk.stopping) {
                int64_t now = rpc_now_mono_ms();
                int64_t next = INT64_MAX;
                saga_waiter *due = NULL;

                for (saga_waiter **pp = &clk.waiters; *pp != NULL;) {
                        saga_waiter *w = *pp;
                        if (w->armed && w->until_ms <= now) {
                                *pp = w->next;
                                w->next = due;
                                due = w;
                                continue;
                        }
                        if (w->armed && w->until_ms < next) {
                                next = w->until_ms;
                        }
                        pp = &w->next;
                }
                if (due != NULL) {
                        pthread_mutex_unlock(&clk.mu);
                        answer_pending(due);
                        pthread_mutex_lock(&clk.mu);
                        continue;
                }
                wait_until(&clk.timer_cv, next);
        }
        pthread_mutex_unlock(&clk.mu);
        return NULL;
}

static bool
clock_stopping(void)
{
        bool stopping;

        pthread_mutex_lock(&clk.mu);
        stopping = clk.stopping;
        pthread_mutex_unlock(&clk.mu);
        return stopping;
}

/* One scan pass: cancels the overdue saga orders it finds. Returns the milliseconds until
 * the next known deadline (0: there may be more overdue right now), or -1 when the database
 * could not be read. */
static int64_t
scan_pass(db_conn **db)
{
        order_due due[SCAN_BATCH];
        int64_t next = INT64_MAX;
        size_t n = 0;
        char err[256];

        if (*db == NULL) {
                if (svc_connect(clk.s, SVC_DATASET_SPLIT, db, err, sizeof(err)) != RPC_OK) {
                        *db = NULL;
                        return -1;
                }
        } else if (db_ensure(*db) != RPC_OK) {
                return -1;
        }
        if (order_store_pending_due(*db, ORDER_MODE_SAGA, clk.timeout_ms, SCAN_BATCH, due, &n)
            != RPC_OK) {
                return -1;
        }
        for (size_t i = 0; i < n; i++) {
                order_saga_outcome end;

                if (due[i].due_in_ms > 0) {
                        if (due[i].due_in_ms < next) {
                                next = due[i].due_in_ms;
                        }
                        continue;
                }
                if (order_saga_cancel(clk.s, *db, due[i].order_id, SAGA_REASON_TIMEOUT, true, &end)
                    != RPC_OK) {
                        fprintf(stderr, "mercato-order: saga deadline of order %lld: %s\n",
                            (long long) due[i].order_id, db_errmsg(*db));
                        return -1;
                }
                if (clock_stopping()) {
                        break;
                }
        }
        return n == SCAN_BATCH && next == INT64_MAX ? 0 : next;
}

/* The deadline scan. */
static void *
scanner_main(void *arg)
{
        db_conn *db = NULL;

        (void) arg;
        pthread_mutex_lock(&clk.mu);
        while (!clk.stopping) {
                int64_t now = rpc_now_mono_ms();
                int64_t next;

                if (now < clk.scan_at_ms) {
                        wait_until(&clk.scan_cv, clk.scan_at_ms);
                        continue;
                }
                /* A deadline noted during the pass lowers this again. */
                clk.scan_at_ms = INT64_MAX;
                pthread_mutex_unlock(&clk.mu);
                next = scan_pass(&db);
                pthread_mutex_lock(&clk.mu);
                if (next < 0 || next > clk.scan_ms) {
                        next = clk.scan_ms;
                }
                now = rpc_now_mono_ms();
                if (now + next < clk.scan_at_ms) {
                        clk.scan_at_ms = now + next;
                }
        }
        pthread_mutex_unlock(&clk.mu);
        db_close(db);
        return NULL;
}

rpc_status
saga_clock_start(svc *s, int64_t timeout_ms, int64_t scan_ms)
{
        pthread_mutex_lock(&clk.mu);
        if (clk.running || clk.stopping) {
                pthread_mutex_unlock(&clk.mu);
                return RPC_FAILED_PRECONDITION; /* once per process */
        }
        cond_init_monotonic(&clk.timer_cv);
        cond_init_monotonic(&clk.scan_cv);
        clk.s = s;
        clk.timeout_ms = timeout_ms;
        clk.scan_ms = scan_ms;
        {
                const rpc_conf *conf = svc_conf(s);
                int64_t workers = rpc_conf_get_int(conf, "order", "workers", 4);
                int64_t contexts = rpc_conf_get_int(conf, "order", "contexts", 0);
                int64_t max = rpc_conf_get_int(conf, "order", "saga_max_waiters", 0);
                if (contexts <= 0) {
                        contexts = 8 * workers; /* the server's default */
                }
                if (max <= 0 || max > contexts - 1) {
                        max = contexts / 2;
                }
                clk.max_waiters = max > 0 ? (int) max : 1;
        }
        clk.stopping = false;
        clk.scan_at_ms = rpc_now_mono_ms(); /* at once: orders an earlier run left */
        if (pthread_create(&clk.timer, NULL, timer_main, NULL) != 0) {
                pthread_mutex_unlock(&clk.mu);
                return RPC_RESOURCE_EXHAUSTED;
        }
        if (pthread_create(&clk.scanner, NULL, scanner_main, NULL) != 0) {
                clk.stopping = true;
                pthread_cond_signal(&clk.timer_cv);
                pthread_mutex_unlock(&clk.mu);
                pthread_join(clk.timer, NULL);
                return RPC_RESOURCE_EXHAUSTED;
        }
        clk.running = true;
        pthread_mutex_unlock(&clk.mu);
        return RPC_OK;
}

void
saga_clock_stop(void)
{
        saga_waiter *left;

        pthread_mutex_lock(&clk.mu);
        if (!clk.running) {
                pthread_mutex_unlock(&clk.mu);
                return;
        }
        clk.stopping = true;
        pthread_cond_signal(&clk.timer_cv);
        pthread_cond_signal(&clk.scan_cv);
        pthread_mutex_unlock(&clk.mu);
        pthread_join(clk.timer, NULL);
        pthread_join(clk.scanner, NULL);
        pthread_mutex_lock(&clk.mu);
        clk.running = false;
        left = clk.waiters;
        clk.waiters = NULL;
        pthread_mutex_unlock(&clk.mu);
        /* The condition variables stay: a handler that runs until the server stops may
         * still look at the clock, and finds it stopped. */
        answer_pending(left);
}
