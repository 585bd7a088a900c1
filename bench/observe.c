/* observe.c: observers that read what orders in flight touch, and the dirty-read judge.
 *
 * A read of key k (a user's balance, a product's stock) that went out at t0 and came back
 * at t1 saw the committed state of some instant in [t0, t1]. Only orders that COMPLETED
 * may have left an effect there, and only those that started before t1, so without dirty
 * reads the value is at least
 *     initial(k) - sum of the effects on k of the COMPLETED orders started before t1.
 * A value below that bound includes the effect of an order that was later CANCELLED: a
 * dirty read. The bound is sound without knowing when an effect committed; a key that an
 * order of unknown outcome touched is not judged from that order's start on.
 *
 * The value judged is the available amount (GetBalance's and GetProduct's available: the
 * total less what TCC tries hold), what a client can spend or order; the total of the same
 * reply is judged apart, against the same bound. Outside tcc nothing is held and the two
 * are one. In tcc a try sets its amount aside at once and only a confirm, after the
 * decision, takes it from the total: a cancelled order's hold may be seen in the available
 * amount (a dirty read: a reader was told less was there than there was), never in the
 * total. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "observe.h"
#include "order.pb-c.h"
#include "product.pb-c.h"
#include "user.pb-c.h"
#include "util.h"

enum { READ_BALANCE = OBSERVE_BALANCE, READ_STOCK = OBSERVE_STOCK, READ_ORDER = OBSERVE_ORDER };
typedef observe_read obs_read;

/* One load client's order in flight. */
typedef struct obs_slot {
        bool active;
        bench_order want;
} obs_slot;

typedef struct obs_thread {
        struct observer *ob;
        int index;
        pthread_t tid;
        bool started;
        obs_read *reads;
        size_t n, cap;
} obs_thread;

struct observer {
        observe_opts o;
        const char *const *metadata;
        rpc_client *user, *product, *order;
        pthread_mutex_t mu;
        obs_slot *slots;
        atomic_bool stop;
        obs_thread *threads;
};

static void
pause_us(int64_t us)
{
        struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000 };

        nanosleep(&ts, NULL);
}

void
observe_on_start(void *arg, const load_order *o)
{
        observer *ob = arg;

        if (ob == NULL || o->client < 0 || o->client >= ob->o.clients) {
                return;
        }
        pthread_mutex_lock(&ob->mu);
        ob->slots[o->client] = (obs_slot) { .active = true, .want = o->want };
        pthread_mutex_unlock(&ob->mu);
}

void
observe_on_end(void *arg, const load_order *o)
{
        observer *ob = arg;

        if (ob == NULL || o->client < 0 || o->client >= ob->o.clients) {
                return;
        }
        pthread_mutex_lock(&ob->mu);
        ob->slots[o->client].active = false;
        pthread_mutex_unlock(&ob->mu);
}

/* An order in flight to look at: half the time one built to fail, where anomalies can
 * show, if there is one. */
static bool
pick(observer *ob, bench_rng *r, bench_order *ret)
{
        int n = ob->o.clients;
        int start = (int) bench_rng_range(r, 0, n - 1);
        bool failing = bench_rng_unit(r) < 0.5;
        bool found = false;

        pthread_mutex_lock(&ob->mu);
        for (int pass = failing ? 0 : 1; pass < 2 && !found; pass++) {
                for (int i = 0; i < n; i++) {
                        const obs_slot *s = &ob->slots[(start + i) % n];
                        if (s->active && (pass == 1 || s->want.kind != BENCH_KIND_OK)) {
                                *ret = s->want;
                                found = true;
                                break;
                        }
                }
        }
        pthread_mutex_unlock(&ob->mu);
        return found;
}

static void
record(obs_thread *t, int kind, int64_t key, int64_t t0, int64_t value)
{
        if (t->n == t->cap) {
                t->cap = t->cap > 0 ? t->cap * 2 : 4096;
                t->reads = rpc_xrealloc(t->reads, t->cap * sizeof(*t->reads));
        }
        t->reads[t->n++] = (obs_read) {
                .kind = kind, .key = key, .t0 = t0, .t1 = bench_now_ns(), .value = value
        };
}

/* A balance or stock reply: its available amount, then its total, over the same span. */
static void
record_pair(obs_thread *t, int kind, int total_kind, int64_t key, int64_t t0, int64_t available,
    int64_t total)
{
        record(t, kind, key, t0, available);
        record(t, total_kind, key, t0, total);
        t->reads[t->n - 1].t1 = t->reads[t->n - 2].t1;
}

static void
read_round(obs_thread *t, const bench_order *want, bench_rng *r)
{
        observer *ob = t->ob;
        rpc_call_opts copts = { .timeout_ms = 2000, .no_retry = true, .metadata = ob->metadata };
        ProtobufCMessage *resp;
        int64_t t0;

        Mercato__User__V1__GetBalanceRequest breq = MERCATO__USER__V1__GET_BALANCE_REQUEST__INIT;
        breq.user_id = want->user_id;
        t0 = bench_now_ns();
        if (rpc_client_call(ob->user, "/mercato.user.v1.UserService/GetBalance", &breq.base,
                &mercato__user__v1__balance__descriptor, &resp, &copts, NULL)
            == RPC_OK) {
                const Mercato__User__V1__Balance *b = (const void *) resp;
                record_pair(t, READ_BALANCE, OBSERVE_BALANCE_TOTAL, want->user_id, t0, b->available,
                    b->balance);
                protobuf_c_message_free_unpacked(resp, NULL);
        }

        Mercato__Product__V1__GetProductRequest preq
            = MERCATO__PRODUCT__V1__GET_PRODUCT_REQUEST__INIT;
        preq.product_id = want->product_id[bench_rng_range(r, 0, (int64_t) want->n_items - 1)];
        t0 = bench_now_ns();
        if (rpc_client_call(ob->product, "/mercato.product.v1.ProductService/GetProduct",
                &preq.base, &mercato__product__v1__get_product_response__descriptor, &resp, &copts,
                NULL)
            == RPC_OK) {
                const Mercato__Product__V1__GetProductResponse *pr = (const void *) resp;
                if (pr->product != NULL) {
                        record_pair(t, READ_STOCK, OBSERVE_STOCK_TOTAL, preq.product_id, t0,
                            pr->product->available, pr->product->stock);
                }
                protobuf_c_message_free_unpacked(resp, NULL);
        }

        Mercato__Order__V1__ListOrdersRequest lreq = MERCATO__ORDER__V1__LIST_ORDERS_REQUEST__INIT;
        lreq.user_id = want->user_id;
        lreq.page_size = 1;
        t0 = bench_now_ns();
        if (rpc_client_call(ob->order, "/mercato.order.v1.OrderService/ListOrders", &lreq.base,
                &mercato__order__v1__list_orders_response__descriptor, &resp, &copts, NULL)
            == RPC_OK) {
                const Mercato__Order__V1__ListOrdersResponse *lr = (const void *) resp;
                if (lr->n_orders > 0) {
                        record(t, READ_ORDER, want->user_id, t0, lr->orders[0]->status);
                }
                protobuf_c_message_free_unpacked(resp, NULL);
        }
}

static void *
observer_main(void *arg)
{
        obs_thread *t = arg;
        observer *ob = t->ob;
        bench_rng r;
        bench_order want;

        bench_rng_init(&r, ob->o.w->seed ^ UINT64_C(0x0b5e7e), (uint64_t) t->index);
        while (!atomic_load(&ob->stop)) {
                if (pick(ob, &r, &want)) {
                        read_round(t, &want, &r);
                }
                pause_us(ob->o.pause_us > 0 ? ob->o.pause_us : 1000);
        }
        return NULL;
}

static void
observer_free(observer *ob)
{
        if (ob->threads != NULL) {
                for (int i = 0; i < ob->o.observers; i++) {
                        free(ob->threads[i].reads);
                }
        }
        free(ob->threads);
        free(ob->slots);
        rpc_client_free(ob->user);
        rpc_client_free(ob->product);
        rpc_client_free(ob->order);
        pthread_mutex_destroy(&ob->mu);
        free(ob);
}

rpc_status
observe_start(const observe_opts *o, observer **ret)
{
        static const char *const mono_md[] = { "dataset", "monolith", NULL };
        observer *ob = rpc_xcalloc(1, sizeof(*ob));
        rpc_client_opts copts = { .breaker_threshold = 1000000 };
        rpc_status st;

        ob->o = *o;
        ob->metadata = o->monolith ? mono_md : NULL;
        pthread_mutex_init(&ob->mu, NULL);
        ob->slots = rpc_xcalloc((size_t) (o->clients > 0 ? o->clients : 1), sizeof(*ob->slots));
        atomic_store(&ob->stop, false);
        st = rpc_client_open(o->user_address, &copts, &ob->user);
        if (st == RPC_OK) {
                st = rpc_client_open(o->product_address, &copts, &ob->product);
        }
        if (st == RPC_OK) {
                st = rpc_client_open(o->order_address, &copts, &ob->order);
        }
        if (st != RPC_OK) {
                observer_free(ob);
                return st;
        }
        ob->threads
            = rpc_xcalloc((size_t) (o->observers > 0 ? o->observers : 1), sizeof(*ob->threads));
        for (int i = 0; i < o->observers; i++) {
                ob->threads[i] = (obs_thread) { .ob = ob, .index = i };
                ob->threads[i].started
                    = pthread_create(&ob->threads[i].tid, NULL, observer_main, &ob->threads[i])
                    == 0;
        }
        *ret = ob;
        return RPC_OK;
}

void
observe_stop(observer *ob)
{
        if (ob == NULL) {
                return;
        }
        atomic_store(&ob->stop, true);
        for (int i = 0; i < ob->o.observers; i++) {
                if (ob->threads[i].started) {
                        pthread_join(ob->threads[i].tid, NULL);
                        ob->threads[i].started = false;
                }
        }
}

/* An order's effect on one key, or the start of an unknown outcome's taint. */
typedef struct effect {
        int kind; /* READ_BALANCE or READ_STOCK */
        int64_t key;
        int64_t start;
        int64_t amount; /* summed over the key's earlier effects after the prefix pass */
        const load_order *order;
} effect;

static int
effect_cmp(const void *a, const void *b)
{
        const effect *x = a, *y = b;

        if (x->kind != y->kind) {
                return x->kind < y->kind ? -1 : 1;
        }
        if (x->key != y->key) {
                return x->key < y->key ? -1 : 1;
        }
        return x->start < y->start ? -1 : x->start > y->start;
}

/* The index of the first effect of (kind, key) and the count of those starting before t. */
static size_t
effects_before(const effect *e, size_t n, int kind, int64_t key, int64_t t, size_t *ret_first)
{
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (e[mid].kind < kind || (e[mid].kind == kind && e[mid].key < key)) {
                        lo = mid + 1;
                } else {
                        hi = mid;
                }
        }
        *ret_first = lo;
        size_t end = lo;
        hi = n;
        while (end < hi) {
                size_t mid = end + (hi - end) / 2;
                if (e[mid].kind == kind && e[mid].key == key && e[mid].start < t) {
                        end = mid + 1;
                } else {
                        hi = mid;
                }
        }
        return end - lo;
}

typedef struct dirty_span {
        int64_t first, last;
} dirty_span;

void
observe_judge(const observe_read *reads, size_t n_reads, const load_result *run,
    const bench_workload *w, observe_result *ret)
{
        size_t cap = run->n_orders * (BENCH_ITEMS_MAX + 1) + 1;
        effect *done = rpc_xcalloc(cap, sizeof(*done));       /* COMPLETED: prefix sums */
        effect *unknown = rpc_xcalloc(cap, sizeof(*unknown)); /* no terminal state known */
        effect *cancelled = rpc_xcalloc(cap, sizeof(*cancelled));
        dirty_span *spans = rpc_xcalloc(run->n_orders + 1, sizeof(*spans));
        size_t n_done = 0, n_unknown = 0, n_cancelled = 0;

        memset(ret, 0, sizeof(*ret));
        for (size_t i = 0; i < run->n_orders; i++) {
                const load_order *o = &run->orders[i];
                effect *list;
                size_t *n;
                if (o->status == MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_COMPLETED) {
                        list = done, n = &n_done;
                } else if (o->status == MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_CANCELLED) {
                        list = cancelled, n = &n_cancelled;
                } else {
                        list = unknown, n = &n_unknown;
                }
                list[(*n)++]
                    = (effect) { READ_BALANCE, o->want.user_id, o->start_ns, o->amount, o };
                for (size_t k = 0; k < o->want.n_items; k++) {
                        list[(*n)++] = (effect) { READ_STOCK, o->want.product_id[k], o->start_ns,
                                o->want.quantity[k], o };
                }
        }
        qsort(done, n_done, sizeof(*done), effect_cmp);
        qsort(unknown, n_unknown, sizeof(*unknown), effect_cmp);
        qsort(cancelled, n_cancelled, sizeof(*cancelled), effect_cmp);
        for (size_t i = 1; i < n_done; i++) {
                if (done[i].kind == done[i - 1].kind && done[i].key == done[i - 1].key) {
                        done[i].amount += done[i - 1].amount;
                }
        }
        for (size_t ri = 0; ri < n_reads; ri++) {
                const obs_read *r = &reads[ri];
                size_t first, n;
                if (r->kind == READ_ORDER) {
                        ret->order_reads++;
                        ret->pending_seen
                            += r->value == MERCATO__ORDER__V1__ORDER_STATUS__ORDER_STATUS_PENDING;
                        continue;
                }
                /* A total is judged as its key's available amount, and counted apart. */
                bool total = r->kind == OBSERVE_BALANCE_TOTAL || r->kind == OBSERVE_STOCK_TOTAL;
                int kind = r->kind == OBSERVE_BALANCE_TOTAL ? READ_BALANCE
                    : r->kind == OBSERVE_STOCK_TOTAL        ? READ_STOCK
                                                            : r->kind;
                if (effects_before(unknown, n_unknown, kind, r->key, r->t1, &first) > 0) {
                        ret->unjudged += !total;
                        continue;
                }
                int64_t initial = w->stock;
                if (kind == READ_BALANCE) {
                        bool poor
                            = r->key > w->normal_users && r->key <= w->normal_users + w->poor_users;
                        initial = poor ? 0 : w->balance;
                }
                n = effects_before(done, n_done, kind, r->key, r->t1, &first);
                int64_t bound = initial - (n > 0 ? done[first + n - 1].amount : 0);
                if (total) {
                        ret->total_reads++;
                        ret->dirty_total += r->value < bound;
                        continue;
                }
                ret->reads++;
                if (r->value >= bound) {
                        continue;
                }
                ret->dirty_reads++;
                if (kind == READ_BALANCE) {
                        ret->dirty_balance++;
                } else {
                        ret->dirty_stock++;
                }
                /* The cancelled orders on this key in flight during the read. */
                n = effects_before(cancelled, n_cancelled, kind, r->key, r->t1, &first);
                for (size_t c = first; c < first + n; c++) {
                        const load_order *o = cancelled[c].order;
                        if (o->end_ns != 0 && o->end_ns < r->t0) {
                                continue;
                        }
                        dirty_span *s = &spans[o - run->orders];
                        int64_t mid = r->t0 + (r->t1 - r->t0) / 2;
                        if (s->first == 0 || mid < s->first) {
                                s->first = mid;
                        }
                        if (mid > s->last) {
                                s->last = mid;
                        }
                }
        }
        double *visible = rpc_xcalloc(run->n_orders + 1, sizeof(*visible));
        for (size_t i = 0; i < run->n_orders; i++) {
                if (spans[i].first != 0) {
                        visible[ret->dirty_orders++]
                            = (double) (spans[i].last - spans[i].first) / 1e6;
                }
        }
        if (ret->dirty_orders > 0) {
                bench_sort(visible, ret->dirty_orders);
                ret->visible_p50_ms = bench_percentile(visible, ret->dirty_orders, 50);
                ret->visible_max_ms = visible[ret->dirty_orders - 1];
        }
        free(visible);
        free(spans);
        free(done);
        free(unknown);
        free(cancelled);
}

void
observe_analyse(observer *ob, const load_result *run, observe_result *ret)
{
        size_t n = 0, k = 0;
        observe_read *all;

        observe_stop(ob);
        for (int i = 0; i < ob->o.observers; i++) {
                n += ob->threads[i].n;
        }
        all = rpc_xcalloc(n + 1, sizeof(*all));
        for (int i = 0; i < ob->o.observers; i++) {
                memcpy(&all[k], ob->threads[i].reads, ob->threads[i].n * sizeof(*all));
                k += ob->threads[i].n;
        }
        observe_judge(all, n, run, ob->o.w, ret);
        free(all);
        observer_free(ob);
}
