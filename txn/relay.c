/* relay.c: the outbox relay: fans events out to subscribers and delivers them over RPC. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "event.pb-c.h"
#include "txn_priv.h"

/*
 * NOTES
 *
 * A relay drains the outbox of one source in one database. One thread fans events out;
 * each subscriber then has a delivery thread of its own, with its own connection and its
 * own RPC client, so a dead or slow subscriber holds up nobody but itself. The delivery
 * thread claims a batch, makes its calls up to `parallel` at once (it and parallel - 1
 * call threads take them in turn), then records each outcome on its connection. A
 * subscriber's consumer commits one transaction per event, so calls in flight at once let
 * PostgreSQL flush those commits together instead of one after another.
 *
 * States of an event (txn_outbox):
 *   NEW        fanned_out = false: committed by its writer, subscribers not yet known
 *   FANNED     fanned_out = true, pending > 0: one txn_delivery row per subscriber
 *   FINISHED   pending = 0, delivered_at set: every subscriber acked or was dead-lettered
 *
 * States of a delivery (txn_delivery, one row per event and subscriber):
 *   DUE        state 'pending', lease NULL, next_attempt_at <= now
 *   WAITING    state 'pending', lease NULL, next_attempt_at > now (backing off)
 *   CLAIMED    state 'pending', lease set, next_attempt_at = the end of the lease
 *   DONE       state 'done': the subscriber replied OK to Deliver
 *   DEAD       state 'dead', plus a txn_dead_letters row: max_attempts calls failed
 *
 * Transitions (each one statement, so each its own short transaction):
 *   NEW -> FANNED       txn_fanout locks NEW events FOR UPDATE SKIP LOCKED, inserts their
 *                       delivery rows (the subscribers of the topic in [topics] of the
 *                       topology, else the built-in defaults) and sets pending to their
 *                       number. An event with no subscriber goes straight to FINISHED.
 *   DUE -> CLAIMED      txn_claim locks up to `batch` due rows of one subscriber FOR UPDATE
 *                       SKIP LOCKED, counts the attempt, sets a fresh lease token and pushes
 *                       next_attempt_at to now + lease_ms. It commits before the call: the
 *                       subscriber is called outside any transaction.
 *   CLAIMED -> DONE     the subscriber acked. The same statement decrements the event's
 *                       pending; the last one finishes the event (the outbox row's lock
 *                       serializes concurrent acks of one event).
 *   CLAIMED -> WAITING  the call failed, attempts < max_attempts: next_attempt_at = now +
 *                       exponential backoff with jitter, and last_error is kept.
 *   CLAIMED -> DEAD     the call failed and attempts = max_attempts.
 *   CLAIMED -> DUE or WAITING   release: a claimed row that was not tried (the relay is
 *                       stopping, the lease runs short, or the subscriber is unreachable)
 *                       goes back with its attempt uncounted.
 *   WAITING and DEAD and release need the claim's lease token; a relay whose lease was taken
 *   over writes nothing. DONE does not: an ack is true whoever received it.
 *
 * Crash rules:
 *   - A crash of the relay, its process or the database inside a fan-out or a claim rolls
 *     that statement back; nothing is half done.
 *   - A crash after a claim leaves the row CLAIMED; when the lease runs out it is DUE again
 *     and any relay claims it. The attempt stays counted, so an event that kills its relay
 *     every time ends up dead-lettered too.
 *   - A crash after the ack and before DONE is written redelivers the event after the
 *     lease. Delivery is at least once: consumers deduplicate on the event id with the
 *     insert-first barrier (txn_barrier_enter), and the call carries the event id as its
 *     idempotency key, so the RPC client may retry it.
 *   - A relay never starts a call that could outlive its lease: it stops a batch when less
 *     than call_timeout_ms + LEASE_MARGIN_MS of the lease is left and releases the rest.
 *     Together with SKIP LOCKED (two claims never take the same row) and the lease (a
 *     claimed row is not due before the lease ends), two live relays never deliver one
 *     event to one subscriber at the same time.
 *
 * Durability: the relay's own sessions commit with synchronous_commit off. Every row it
 * writes (a fan-out, a claim, DONE, a retry, a dead letter) is bookkeeping that a crash may
 * roll back without losing an event: a lost fan-out is fanned out again, a lost DONE is a
 * redelivery that the consumer's barrier absorbs, a lost retry or dead letter is one more
 * attempt. What must survive a crash, the event itself and each consumer's effects, is
 * written by its writer's own synchronous commits. PostgreSQL keeps the order: a later
 * synchronous commit flushes every earlier asynchronous one. So a hop of the saga waits
 * for one WAL flush (the consumer's), not three.
 *
 * Ordering: none is promised between events. Within a batch the calls start in seq
 * (insertion) order, up to `parallel` at once, so first attempts roughly follow the
 * outbox and two calls may overlap, and a retried event is
 * overtaken by later ones: a poisonous event or a dead subscriber must not block the rest.
 * Consumers must not depend on order; the barrier absorbs duplicates.
 *
 * Why no committed event is ever skipped: neither step keeps a position. The fan-out takes
 * every event of the source with fanned_out = false, and the claim every pending row that
 * is due, whatever their ids or seq. An event that commits late with a lower seq than
 * events already delivered (sequence values are taken at insert, and transactions commit
 * in another order) is simply found by the next pass, where a high-water mark on seq would
 * have stepped over it for good. SKIP LOCKED passes over a row only while another relay's
 * one-statement fan-out or claim holds it; the fan-out then commits, and a claim leaves a
 * lease that ends unless the row is finished. A wake sets a flag that is tested before
 * every sleep, so a wake during a pass causes one more pass, never a lost one; the poll
 * (poll_ms) picks up what other processes committed and what a crash left behind; and a
 * delivery thread goes on at once while its batches come back full.
 */

#define TXN_DELIVER_METHOD "/mercato.event.v1.EventSink/Deliver"

/* A claimed row is not called when less than the call's timeout plus this is left of its
 * lease, so that no call outlives the lease. */
#define LEASE_MARGIN_MS 1000

/* The shortest sleep of a delivery thread whose rows are due but held by another relay's
 * claim for a moment. */
#define MIN_WAIT_MS 5

/* Subscribers one relay serves at most; more would be a topology error. */
#define MAX_SUBSCRIBERS 64

/* The subscriber list of a topic, space-separated. */
#define SUBS_MAX 1024

/* Subscriptions used when the topology's [topics] does not name the topic: the order flow's
 * events, the saga's chain included (see proto/event.proto, SagaOrder). */
static const struct {
        const char *topic;
        const char *subscribers;
} default_topics[] = {
        { "order.completed", "dataplatform cart product" },
        { "order.created", "product" },
        { "stock.reserved", "user" },
        { "stock.rejected", "order" },
        { "balance.debited", "payment" },
        { "balance.rejected", "product" },
        { "payment.captured", "order" },
        { "payment.declined", "user" },
        { "balance.refunded", "product" },
        { "stock.released", "order" },
        { "order.cancelled", "product user payment" },
};

typedef struct relay_sub relay_sub;
typedef struct relay_item relay_item;

/* One call of a batch: its item, and what became of it. */
typedef struct relay_call {
        relay_item *it;
        bool tried; /* false: not started (stopping, lease short, unreachable): release */
        rpc_status st;
        char err[320];
} relay_call;

struct txn_relay {
        char *conninfo;
        char *source;
        const rpc_conf *conf; /* borrowed */
        char **metadata;      /* key, value, ..., NULL; owned */
        int max_attempts;
        int batch;
        int parallel;
        int64_t poll_ms;
        int64_t call_timeout_ms;
        int64_t backoff_initial_ms;
        int64_t backoff_max_ms;
        int64_t lease_ms;
        rpc_status (*deliver)(void *arg, const char *subscriber,
            const Mercato__Event__V1__Event *ev, char *err, size_t errlen);
        void *deliver_arg;

        pthread_mutex_t mu; /* guards what follows, and every relay_sub's kicked */
        pthread_cond_t cv;  /* the fan-out thread waits here */
        bool woken;         /* txn_relay_wake since the fan-out thread's last pass */
        bool stopping;
        relay_sub *subs; /* appended by the fan-out thread only */
        int n_subs;

        pthread_t thread; /* the fan-out thread */
        db_conn *db;      /* the fan-out thread's connection */
};

/* One subscriber: a delivery thread with its connection and its client. */
struct relay_sub {
        txn_relay *r;
        char *name;
        rpc_client *client;   /* NULL when the topology has no address for it */
        char client_err[128]; /* why client is NULL */
        pthread_t thread;
        pthread_cond_t cv; /* with r->mu */
        bool kicked;       /* work may be due: claim now */
        db_conn *db;
        uint64_t rng; /* for the jitter */
        relay_sub *next;

        /* The batch in flight, shared with the subscriber's call threads (jmu). */
        pthread_mutex_t jmu;
        pthread_cond_t jcv; /* call threads wait for a batch here */
        pthread_cond_t dcv; /* the delivery thread waits for the batch's end here */
        relay_call *calls;  /* the batch's calls; NULL between batches */
        int n_calls, next_call, done_calls;
        int64_t last_start; /* no call starts later (the lease) */
        bool unreachable;   /* a call found the subscriber unreachable: start no more */
        bool jstop;
        pthread_t *helpers; /* parallel - 1 call threads */
        int n_helpers;
};

/* One claimed delivery, copied out of the claim's result. */
struct relay_item {
        char event_id[TXN_EVENT_ID_LEN];
        char lease[TXN_EVENT_ID_LEN];
        int attempts; /* this attempt included */
        int64_t seq;
        char *topic;
        int64_t aggregate_id;
        uint8_t *payload;
        size_t payload_len;
        int64_t created_at_ms;
        char *source;
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

static struct timespec
monotonic_after(int64_t ms)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t) (ms / 1000);
        ts.tv_nsec += (long) (ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }
        return ts;
}

static bool
relay_stopping(txn_relay *r)
{
        bool stopping;

        pthread_mutex_lock(&r->mu);
        stopping = r->stopping;
        pthread_mutex_unlock(&r->mu);
        return stopping;
}

/* Sleeps up to ms, until *flag is set or the relay stops; clears *flag. */
static void
relay_wait(txn_relay *r, pthread_cond_t *cv, bool *flag, int64_t ms)
{
        struct timespec until = monotonic_after(ms);

        pthread_mutex_lock(&r->mu);
        while (!r->stopping && !*flag) {
                if (pthread_cond_timedwait(cv, &r->mu, &until) == ETIMEDOUT) {
                        break;
                }
        }
        *flag = false;
        pthread_mutex_unlock(&r->mu);
}

/* Connects, or makes sure the connection is still up. */
static rpc_status
relay_db(txn_relay *r, db_conn **db)
{
        char err[256];

        if (*db == NULL) {
                if (db_connect(r->conninfo, &txn_stmts, 1, db, err, sizeof(err)) != RPC_OK) {
                        *db = NULL;
                        return RPC_UNAVAILABLE;
                }
                return RPC_OK;
        }
        return db_ensure(*db);
}

/* Appends keyword='value' to buf, quoting as libpq's conninfo wants. */
static void
conninfo_add(char *buf, size_t len, const char *keyword, const char *value)
{
        size_t off = strlen(buf);

        off += (size_t) snprintf(
            buf + off, len > off ? len - off : 0, "%s%s='", off > 0 ? " " : "", keyword);
        for (const char *p = value; *p != '\0' && off + 3 < len; p++) {
                if (*p == '\'' || *p == '\\') {
                        buf[off++] = '\\';
                }
                buf[off++] = *p;
        }
        if (off + 2 < len) {
                buf[off++] = '\'';
                buf[off] = '\0';
        }
}

/* The relay's own conninfo: the one given, with synchronous_commit off for its sessions
 * (see NOTES: every relay write may be lost in a crash without losing an event). NULL if
 * the conninfo does not parse; db_connect then reports why. */
static char *
relay_conninfo(const char *conninfo)
{
        PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
        size_t len = strlen(conninfo) * 2 + 128;
        char *buf;
        const char *extra = "-c synchronous_commit=off";
        bool had_options = false;

        if (opts == NULL) {
                return rpc_xstrdup(conninfo);
        }
        buf = rpc_xcalloc(1, len);
        for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
                if (o->val == NULL) {
                        continue;
                }
                if (strcmp(o->keyword, "options") == 0) {
                        char joined[1024];
                        snprintf(joined, sizeof(joined), "%s %s", o->val, extra);
                        conninfo_add(buf, len, o->keyword, joined);
                        had_options = true;
                } else {
                        conninfo_add(buf, len, o->keyword, o->val);
                }
        }
        if (!had_options) {
                conninfo_add(buf, len, "options", extra);
        }
        PQconninfoFree(opts);
        return buf;
}

static const char *
conf_get(const txn_relay *r, const char *section, const char *key)
{
        return r->conf != NULL ? rpc_conf_get(r->conf, section, key) : NULL;
}

/* The subscribers of a topic: distinct names, space-separated, into buf ("" for none). */
static void
topic_subscribers(const txn_relay *r, const char *topic, char *buf, size_t len)
{
        const char *list = conf_get(r, "topics", topic);
        size_t used = 0;

        buf[0] = '\0';
        if (list == NULL) {
                for (size_t i = 0; i < sizeof(default_topics) / sizeof(default_topics[0]); i++) {
                        if (strcmp(default_topics[i].topic, topic) == 0) {
                                list = default_topics[i].subscribers;
                        }
                }
        }
        if (list == NULL) {
                return;
        }
        for (const char *p = list; *p != '\0';) {
                size_t n = strcspn(p, " \t,");
                bool seen = false;

                if (n > 0 && n <= TXN_NAME_MAX) {
                        /* the names so far are whole words between spaces */
                        for (const char *q = buf; *q != '\0';) {
                                size_t m = strcspn(q, " ");
                                if (m == n && memcmp(q, p, n) == 0) {
                                        seen = true;
                                }
                                q += m + (q[m] == ' ');
                        }
                        if (!seen && used + (used > 0) + n < len) {
                                if (used > 0) {
                                        buf[used++] = ' ';
                                }
                                memcpy(buf + used, p, n);
                                used += n;
                                buf[used] = '\0';
                        }
                }
                p += n;
                p += strspn(p, " \t,");
        }
}

/*
 * Delivery threads
 */

/* The delay before the next attempt after `attempts` failed ones: exponential from
 * backoff_initial_ms, capped at backoff_max_ms, with "equal jitter" (half of it fixed, half
 * random), so that it still grows and retries of many events spread out. */
static int64_t
relay_backoff_ms(const txn_relay *r, int attempts, uint64_t *rng)
{
        int64_t base = r->backoff_initial_ms;

        for (int i = 1; i < attempts && base < r->backoff_max_ms; i++) {
                base *= 2;
        }
        if (base > r->backoff_max_ms) {
                base = r->backoff_max_ms;
        }
        return base - base / 2 + (int64_t) (rpc_rand_next(rng) % (uint64_t) (base / 2 + 1));
}

static void
item_fini(relay_item *it)
{
        free(it->topic);
        free(it->payload);
        free(it->source);
}

static int
item_cmp(const void *a, const void *b)
{
        const relay_item *x = a;
        const relay_item *y = b;

        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Copies row i of a claim's result (see txn_claim for the columns). */
static void
item_from_row(relay_item *it, const PGresult *res, int i)
{
        const char *payload = db_get_str(res, i, 6);
        unsigned char *raw;
        size_t len = 0;

        snprintf(it->event_id, sizeof(it->event_id), "%s", db_get_str(res, i, 0));
        snprintf(it->lease, sizeof(it->lease), "%s", db_get_str(res, i, 1));
        it->attempts = (int) db_get_i64(res, i, 2);
        it->seq = db_get_i64(res, i, 3);
        it->topic = rpc_xstrdup(db_get_str(res, i, 4));
        it->aggregate_id = db_get_i64(res, i, 5);
        raw = PQunescapeBytea((const unsigned char *) payload, &len);
        if (raw == NULL) {
                abort(); /* out of memory, as rpc_xmalloc would */
        }
        it->payload = rpc_xmalloc(len > 0 ? len : 1);
        memcpy(it->payload, raw, len);
        it->payload_len = len;
        PQfreemem(raw);
        it->created_at_ms = db_get_i64(res, i, 7);
        it->source = rpc_xstrdup(db_get_str(res, i, 8));
}

/* Calls the subscriber's Deliver. OK only when it acked. */
static rpc_status
sub_deliver(relay_sub *sub, const relay_item *it, char *err, size_t errlen)
{
        const txn_relay *r = sub->r;
        Mercato__Event__V1__Event ev = MERCATO__EVENT__V1__EVENT__INIT;
        ProtobufCMessage *ack = NULL;
        rpc_error e = { 0 };
        rpc_status st;

        ev.event_id = (char *) it->event_id;
        ev.topic = it->topic;
        ev.aggregate_id = it->aggregate_id;
        ev.payload.data = it->payload;
        ev.payload.len = it->payload_len;
        ev.created_at_ms = it->created_at_ms;
        ev.source = it->source;
        if (r->deliver != NULL) {
                return r->deliver(r->deliver_arg, sub->name, &ev, err, errlen);
        }
        if (sub->client == NULL) {
                snprintf(err, errlen, "%s", sub->client_err);
                return RPC_FAILED_PRECONDITION;
        }
        rpc_call_opts co = {
                .timeout_ms = r->call_timeout_ms,
                .idempotency_key = it->event_id,
                .metadata = (const char *const *) r->metadata,
        };
        st = rpc_client_call(sub->client, TXN_DELIVER_METHOD, &ev.base,
            &mercato__event__v1__deliver_ack__descriptor, &ack, &co, &e);
        if (ack != NULL) {
                protobuf_c_message_free_unpacked(ack, NULL);
        }
        if (st != RPC_OK) {
                snprintf(err, errlen, "%s: %s", rpc_status_name(st), e.message);
        }
        return st;
}

/* Runs a statement about one claimed row: event, subscriber, then the extra parameters.
 * A failure is left alone: the lease runs out and the row is claimed again. */
static void
sub_mark(relay_sub *sub, const char *stmt, const relay_item *it, const char *lease,
    const int64_t *delay_ms, const char *error)
{
        db_params p;
        int64_t rows = 0;

        db_params_init(&p);
        db_params_str(&p, it->event_id);
        db_params_str(&p, sub->name);
        if (lease != NULL) {
                db_params_str(&p, lease);
        }
        if (delay_ms != NULL) {
                db_params_i64(&p, *delay_ms);
        }
        if (error != NULL) {
                db_params_str(&p, error);
        }
        if (db_exec_count(sub->db, stmt, &p, &rows) != RPC_OK) {
                return; /* the lease runs out and the row is claimed again */
        }
}

/* Takes the batch's next call and runs it, or marks it not tried. Called with jmu held;
 * returns false when the batch has no call left to take. */
static bool
sub_call_next(relay_sub *sub)
{
        relay_call *c;
        bool go;

        if (sub->calls == NULL || sub->next_call >= sub->n_calls) {
                return false;
        }
        c = &sub->calls[sub->next_call++];
        go = !sub->unreachable && !relay_stopping(sub->r) && rpc_now_mono_ms() <= sub->last_start;
        pthread_mutex_unlock(&sub->jmu);
        if (go) {
                c->tried = true;
                c->st = sub_deliver(sub, c->it, c->err, sizeof(c->err));
        }
        pthread_mutex_lock(&sub->jmu);
        if (go && (c->st == RPC_UNAVAILABLE || c->st == RPC_DEADLINE_EXCEEDED)) {
                /* The subscriber is unreachable: the rest would only time out too. */
                sub->unreachable = true;
        }
        if (++sub->done_calls == sub->n_calls) {
                pthread_cond_signal(&sub->dcv);
        }
        return true;
}

/* A call thread: runs calls of whatever batch is in flight, until the subscriber stops. */
static void *
sub_helper(void *arg)
{
        relay_sub *sub = arg;

        pthread_mutex_lock(&sub->jmu);
        while (!sub->jstop) {
                if (!sub_call_next(sub)) {
                        pthread_cond_wait(&sub->jcv, &sub->jmu);
                }
        }
        pthread_mutex_unlock(&sub->jmu);
        return NULL;
}

/* Runs the n calls of a batch, up to `parallel` at once (the delivery thread is one of the
 * callers), and returns when every call has ended or was left untried. The results are
 * in sub->calls, in the batch's order. */
static void
sub_call_batch(relay_sub *sub, relay_item *items, int n, int64_t last_start)
{
        relay_call *calls = rpc_xcalloc((size_t) n, sizeof(*calls));

        for (int i = 0; i < n; i++) {
                calls[i].it = &items[i];
        }
        pthread_mutex_lock(&sub->jmu);
        sub->calls = calls;
        sub->n_calls = n;
        sub->next_call = 0;
        sub->done_calls = 0;
        sub->last_start = last_start;
        sub->unreachable = false;
        if (n > 1) {
                pthread_cond_broadcast(&sub->jcv);
        }
        while (sub_call_next(sub)) { }
        while (sub->done_calls < sub->n_calls) {
                pthread_cond_wait(&sub->dcv, &sub->jmu);
        }
        pthread_mutex_unlock(&sub->jmu);
}

/* One claim and its calls. Returns the number of rows claimed, or -1 if the claim failed. */
static int
sub_pass(relay_sub *sub)
{
        txn_relay *r = sub->r;
        DB_RES_CLEANUP PGresult *res = NULL;
        int64_t claimed_at = rpc_now_mono_ms();
        /* No call starts later than this, so that none outlives the lease. */
        int64_t last_start = claimed_at + r->lease_ms - r->call_timeout_ms - LEASE_MARGIN_MS;
        relay_item *items;
        db_params p;
        int n;

        db_params_init(&p);
        db_params_str(&p, r->source);
        db_params_str(&p, sub->name);
        db_params_i64(&p, r->batch);
        db_params_i64(&p, r->lease_ms);
        if (db_exec(sub->db, TXN_STMT_CLAIM, &p, &res) != RPC_OK) {
                return -1;
        }
        n = db_rows(res);
        if (n == 0) {
                return 0;
        }
        items = rpc_xcalloc((size_t) n, sizeof(*items));
        for (int i = 0; i < n; i++) {
                item_from_row(&items[i], res, i);
        }
        PQclear(res);
        res = NULL;
        qsort(items, (size_t) n, sizeof(*items), item_cmp);

        sub_call_batch(sub, items, n, last_start);
        for (int i = 0; i < n; i++) {
                relay_call *c = &sub->calls[i];
                int64_t delay;

                if (!c->tried) {
                        /* Not started: back with its attempt uncounted, at once when the
                         * relay stops or the lease ran short, after the backoff of the
                         * failure when the subscriber is unreachable. */
                        delay = sub->unreachable ? relay_backoff_ms(r, c->it->attempts, &sub->rng)
                                                 : 0;
                        sub_mark(sub, TXN_STMT_RELEASE, c->it, c->it->lease, &delay, NULL);
                        continue;
                }
                if (c->st == RPC_OK) {
                        sub_mark(sub, TXN_STMT_DONE, c->it, NULL, NULL, NULL);
                        continue;
                }
                delay = relay_backoff_ms(r, c->it->attempts, &sub->rng);
                if (c->it->attempts >= r->max_attempts) {
                        sub_mark(sub, TXN_STMT_DEAD, c->it, c->it->lease, NULL, c->err);
                } else {
                        sub_mark(sub, TXN_STMT_RETRY, c->it, c->it->lease, &delay, c->err);
                }
        }
        pthread_mutex_lock(&sub->jmu);
        relay_call *done = sub->calls;
        sub->calls = NULL;
        pthread_mutex_unlock(&sub->jmu);
        free(done);
        for (int i = 0; i < n; i++) {
                item_fini(&items[i]);
        }
        free(items);
        return n;
}

/* Milliseconds until the subscriber's next pending row is due; false if it has none. */
static bool
sub_next_due(relay_sub *sub, int64_t *ret_ms)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;

        db_params_init(&p);
        db_params_str(&p, sub->r->source);
        db_params_str(&p, sub->name);
        if (db_exec(sub->db, TXN_STMT_NEXT_DUE, &p, &res) != RPC_OK || db_rows(res) != 1
            || db_is_null(res, 0, 0)) {
                return false;
        }
        *ret_ms = db_get_i64(res, 0, 0);
        return true;
}

static void *
sub_thread(void *arg)
{
        relay_sub *sub = arg;
        txn_relay *r = sub->r;

        sub->helpers = rpc_xcalloc((size_t) r->parallel, sizeof(*sub->helpers));
        for (int i = 0; i + 1 < r->parallel; i++) {
                if (pthread_create(&sub->helpers[sub->n_helpers], NULL, sub_helper, sub) != 0) {
                        break; /* fewer calls at once, still correct */
                }
                sub->n_helpers++;
        }
        while (!relay_stopping(r)) {
                int64_t wait_ms = r->poll_ms;
                int64_t due_ms;

                if (relay_db(r, &sub->db) == RPC_OK) {
                        int n = sub_pass(sub);
                        if (n >= r->batch) {
                                continue; /* there may be more right now */
                        }
                        if (n >= 0 && sub_next_due(sub, &due_ms) && due_ms < wait_ms) {
                                wait_ms = due_ms > MIN_WAIT_MS ? due_ms : MIN_WAIT_MS;
                        }
                }
                relay_wait(r, &sub->cv, &sub->kicked, wait_ms);
        }
        pthread_mutex_lock(&sub->jmu);
        sub->jstop = true;
        pthread_cond_broadcast(&sub->jcv);
        pthread_mutex_unlock(&sub->jmu);
        for (int i = 0; i < sub->n_helpers; i++) {
                pthread_join(sub->helpers[i], NULL);
        }
        free(sub->helpers);
        sub->helpers = NULL;
        db_close(sub->db);
        sub->db = NULL;
        return NULL;
}

static void
sub_free(relay_sub *sub)
{
        rpc_client_free(sub->client);
        pthread_cond_destroy(&sub->cv);
        pthread_cond_destroy(&sub->jcv);
        pthread_cond_destroy(&sub->dcv);
        pthread_mutex_destroy(&sub->jmu);
        free(sub->name);
        free(sub);
}

/* Finds a subscriber's delivery thread, starting it on first sight. NULL if it cannot. */
static relay_sub *
relay_sub_get(txn_relay *r, const char *name)
{
        relay_sub *sub;
        const char *address;

        for (sub = r->subs; sub != NULL; sub = sub->next) {
                if (strcmp(sub->name, name) == 0) {
                        return sub;
                }
        }
        if (r->n_subs >= MAX_SUBSCRIBERS || !txn_valid_name(name, TXN_NAME_MAX)) {
                return NULL;
        }
        sub = rpc_xcalloc(1, sizeof(*sub));
        sub->r = r;
        sub->name = rpc_xstrdup(name);
        sub->rng = (uint64_t) rpc_now_mono_us() ^ (uint64_t) (uintptr_t) sub;
        cond_init_monotonic(&sub->cv);
        pthread_mutex_init(&sub->jmu, NULL);
        pthread_cond_init(&sub->jcv, NULL);
        pthread_cond_init(&sub->dcv, NULL);
        address = conf_get(r, name, "address");
        if (r->deliver == NULL && address == NULL) {
                snprintf(sub->client_err, sizeof(sub->client_err),
                    "no address for subscriber %s in the topology", name);
        } else if (r->deliver == NULL) {
                rpc_client_opts co = { .timeout_ms = r->call_timeout_ms };
                if (rpc_client_open(address, &co, &sub->client) != RPC_OK) {
                        sub->client = NULL;
                        snprintf(sub->client_err, sizeof(sub->client_err),
                            "bad address for subscriber %s", name);
                }
        }
        if (pthread_create(&sub->thread, NULL, sub_thread, sub) != 0) {
                sub_free(sub);
                return NULL;
        }
        pthread_mutex_lock(&r->mu);
        sub->next = r->subs;
        r->subs = sub;
        r->n_subs++;
        pthread_mutex_unlock(&r->mu);
        return sub;
}

/*
 * The fan-out thread
 */

/* NEW -> FANNED for every topic that has new events. */
static void
sub_kick(txn_relay *r, relay_sub *sub)
{
        pthread_mutex_lock(&r->mu);
        sub->kicked = true;
        pthread_cond_signal(&sub->cv);
        pthread_mutex_unlock(&r->mu);
}

/* Fans out every new event, and kicks the subscribers of the topics that had some. */
static void
relay_fanout(txn_relay *r)
{
        DB_RES_CLEANUP PGresult *topics = NULL;
        db_params p;

        db_params_init(&p);
        db_params_str(&p, r->source);
        if (db_exec(r->db, TXN_STMT_UNFANNED_TOPICS, &p, &topics) != RPC_OK) {
                return;
        }
        for (int i = 0; i < db_rows(topics); i++) {
                const char *topic = db_get_str(topics, i, 0);
                int64_t limit = (int64_t) r->batch * 4;
                char subs[SUBS_MAX];
                int64_t rows = 0, fanned = 0;

                topic_subscribers(r, topic, subs, sizeof(subs));
                do {
                        db_params_init(&p);
                        db_params_str(&p, r->source);
                        db_params_str(&p, topic);
                        db_params_str(&p, subs);
                        db_params_i64(&p, limit);
                        if (db_exec_count(r->db, TXN_STMT_FANOUT, &p, &rows) != RPC_OK) {
                                return;
                        }
                        fanned += rows;
                } while (rows >= limit && !relay_stopping(r));
                char *save = NULL;
                for (char *name = fanned > 0 ? strtok_r(subs, " ", &save) : NULL; name != NULL;
                     name = strtok_r(NULL, " ", &save)) {
                        relay_sub *sub = relay_sub_get(r, name);
                        if (sub != NULL) {
                                sub_kick(r, sub);
                        }
                }
        }
}

static void
relay_kick_subscribers(txn_relay *r)
{
        DB_RES_CLEANUP PGresult *res = NULL;
        db_params p;

        db_params_init(&p);
        db_params_str(&p, r->source);
        if (db_exec(r->db, TXN_STMT_PENDING_SUBSCRIBERS, &p, &res) != RPC_OK) {
                return;
        }
        for (int i = 0; i < db_rows(res); i++) {
                relay_sub *sub = relay_sub_get(r, db_get_str(res, i, 0));
                if (sub != NULL) {
                        sub_kick(r, sub);
                }
        }
}

static void *
relay_thread(void *arg)
{
        txn_relay *r = arg;

        int64_t last_look = 0;

        while (!relay_stopping(r)) {
                if (relay_db(r, &r->db) == RPC_OK) {
                        relay_fanout(r);
                        /* A wake means a commit of this process, and the fan-out kicked
                         * whom it concerns. At least once a poll period it also looks for
                         * work it did not make: rows that a crash or another relay left,
                         * for subscribers that may have no delivery thread yet. */
                        if (rpc_now_mono_ms() - last_look >= r->poll_ms) {
                                relay_kick_subscribers(r);
                                last_look = rpc_now_mono_ms();
                        }
                }
                relay_wait(r, &r->cv, &r->woken, r->poll_ms);
        }
        db_close(r->db);
        r->db = NULL;
        return NULL;
}

/*
 * Life cycle
 */

static void
relay_free(txn_relay *r)
{
        if (r->metadata != NULL) {
                for (char **m = r->metadata; *m != NULL; m++) {
                        free(*m);
                }
                free(r->metadata);
        }
        pthread_cond_destroy(&r->cv);
        pthread_mutex_destroy(&r->mu);
        free(r->conninfo);
        free(r->source);
        free(r);
}

rpc_status
txn_relay_start(const txn_relay_opts *opts, txn_relay **ret)
{
        txn_relay *r;
        size_t n_md = 0;

        if (opts == NULL || ret == NULL || opts->conninfo == NULL
            || !txn_valid_name(opts->source, TXN_NAME_MAX) || opts->max_attempts < 0
            || opts->poll_ms < 0 || opts->batch < 0 || opts->batch > 10000
            || opts->call_timeout_ms < 0 || opts->backoff_initial_ms < 0 || opts->backoff_max_ms < 0
            || opts->lease_ms < 0) {
                return RPC_INVALID_ARGUMENT;
        }
        r = rpc_xcalloc(1, sizeof(*r));
        r->conninfo = relay_conninfo(opts->conninfo);
        r->source = rpc_xstrdup(opts->source);
        r->conf = opts->conf;
        r->deliver = opts->deliver;
        r->deliver_arg = opts->deliver_arg;
        r->max_attempts = opts->max_attempts > 0 ? opts->max_attempts : 10;
        r->poll_ms = opts->poll_ms > 0 ? opts->poll_ms : 500;
        r->batch = opts->batch > 0 ? opts->batch : 64;
        r->parallel = opts->parallel > 0 ? (opts->parallel < 64 ? opts->parallel : 64) : 4;
        r->call_timeout_ms = opts->call_timeout_ms > 0 ? opts->call_timeout_ms : 2000;
        r->backoff_initial_ms = opts->backoff_initial_ms > 0 ? opts->backoff_initial_ms : 100;
        r->backoff_max_ms = opts->backoff_max_ms > 0 ? opts->backoff_max_ms : 60000;
        if (r->backoff_max_ms < r->backoff_initial_ms) {
                r->backoff_max_ms = r->backoff_initial_ms;
        }
        r->lease_ms = opts->lease_ms > 0 ? opts->lease_ms : 30000;
        if (r->lease_ms < 2 * r->call_timeout_ms + LEASE_MARGIN_MS) {
                r->lease_ms = 2 * r->call_timeout_ms + LEASE_MARGIN_MS;
        }
        if (opts->metadata != NULL) {
                while (opts->metadata[2 * n_md] != NULL && opts->metadata[2 * n_md + 1] != NULL) {
                        n_md++;
                }
                r->metadata = rpc_xcalloc(2 * n_md + 1, sizeof(char *));
                for (size_t i = 0; i < 2 * n_md; i++) {
                        r->metadata[i] = rpc_xstrdup(opts->metadata[i]);
                }
        }
        pthread_mutex_init(&r->mu, NULL);
        cond_init_monotonic(&r->cv);
        if (pthread_create(&r->thread, NULL, relay_thread, r) != 0) {
                relay_free(r);
                return RPC_RESOURCE_EXHAUSTED;
        }
        *ret = r;
        return RPC_OK;
}

void
txn_relay_wake(txn_relay *r)
{
        if (r == NULL) {
                return;
        }
        pthread_mutex_lock(&r->mu);
        r->woken = true;
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
}

void
txn_relay_stop(txn_relay *r)
{
        relay_sub *sub;

        if (r == NULL) {
                return;
        }
        pthread_mutex_lock(&r->mu);
        r->stopping = true;
        pthread_cond_signal(&r->cv);
        for (sub = r->subs; sub != NULL; sub = sub->next) {
                pthread_cond_signal(&sub->cv);
        }
        pthread_mutex_unlock(&r->mu);
        /* The fan-out thread starts delivery threads; once it is gone the list is final. A
         * delivery thread started after the signals above sees stopping at its first turn. */
        pthread_join(r->thread, NULL);
        while ((sub = r->subs) != NULL) {
                r->subs = sub->next;
                pthread_join(sub->thread, NULL);
                sub_free(sub);
        }
        relay_free(r);
}
