/* commands.c: the client's commands: each builds a JSON request, calls, and prints the reply. */
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cart.pb-c.h"
#include "check.h"
#include "cli.h"
#include "dataplatform.pb-c.h"
#include "event.pb-c.h"
#include "json.h"
#include "order.pb-c.h"
#include "payment.pb-c.h"
#include "product.pb-c.h"
#include "txn.pb-c.h"
#include "user.pb-c.h"

/*
 * Services and methods
 */

/* A topology section and the service it serves besides the standard one. */
typedef struct service_entry {
        const char *section;
        const ProtobufCServiceDescriptor *desc;
} service_entry;

static const service_entry service_table[] = {
        { "product", &mercato__product__v1__product_service__descriptor },
        { "cart", &mercato__cart__v1__cart_service__descriptor },
        { "user", &mercato__user__v1__user_service__descriptor },
        { "order", &mercato__order__v1__order_service__descriptor },
        { "payment", &mercato__payment__v1__payment_service__descriptor },
        { "dataplatform", &mercato__dataplatform__v1__data_platform_service__descriptor },
};

/* Every service a full method name may name. */
static const ProtobufCServiceDescriptor *const all_services[] = {
        &mercato__product__v1__product_service__descriptor,
        &mercato__cart__v1__cart_service__descriptor,
        &mercato__user__v1__user_service__descriptor,
        &mercato__order__v1__order_service__descriptor,
        &mercato__payment__v1__payment_service__descriptor,
        &mercato__dataplatform__v1__data_platform_service__descriptor,
        &mercato__rpc__v1__standard_service__descriptor,
        &mercato__event__v1__event_sink__descriptor,
        &mercato__txn__v1__participant__descriptor,
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static const ProtobufCServiceDescriptor *
section_service(const char *section)
{
        for (size_t i = 0; i < N_ELEMS(service_table); i++) {
                if (strcmp(service_table[i].section, section) == 0) {
                        return service_table[i].desc;
                }
        }
        return NULL;
}

static void
list_methods(const ProtobufCServiceDescriptor *sd, char *buf, size_t len)
{
        size_t o = strlen(buf);

        for (unsigned i = 0; i < sd->n_methods && o < len; i++) {
                int n = snprintf(buf + o, len - o, "%s%s", o > 0 ? ", " : "", sd->methods[i].name);
                o += n > 0 ? (size_t) n : 0;
        }
}

/* Finds a method by short name (in the section's service, then the standard service) or by
 * full name "/pkg.Service/Method" (in any known service). */
static int
resolve_method(const char *section, const char *method, const ProtobufCServiceDescriptor **ret_sd,
    unsigned *ret_index)
{
        const ProtobufCServiceDescriptor *own = section_service(section);
        const ProtobufCServiceDescriptor *std = &mercato__rpc__v1__standard_service__descriptor;
        const ProtobufCMethodDescriptor *m;
        char names[512] = "";

        if (method[0] == '/') {
                const char *slash = strchr(method + 1, '/');
                if (slash == NULL || slash[1] == '\0') {
                        return cli_usage_error("malformed method name '%s': want "
                                               "/package.Service/Method",
                            method);
                }
                size_t n = (size_t) (slash - method - 1);
                for (size_t i = 0; i < N_ELEMS(all_services); i++) {
                        const ProtobufCServiceDescriptor *sd = all_services[i];
                        if (strlen(sd->name) != n || strncmp(sd->name, method + 1, n) != 0) {
                                continue;
                        }
                        m = protobuf_c_service_descriptor_get_method_by_name(sd, slash + 1);
                        if (m == NULL) {
                                list_methods(sd, names, sizeof(names));
                                return cli_usage_error("no method '%s' in %s (it has: %s)",
                                    slash + 1, sd->name, names);
                        }
                        *ret_sd = sd;
                        *ret_index = (unsigned) (m - sd->methods);
                        return CLI_EXIT_OK;
                }
                return cli_usage_error(
                    "unknown service '%.*s' in '%s'", (int) n, method + 1, method);
        }
        if (own != NULL && (m = protobuf_c_service_descriptor_get_method_by_name(own, method))) {
                *ret_sd = own;
                *ret_index = (unsigned) (m - own->methods);
                return CLI_EXIT_OK;
        }
        if ((m = protobuf_c_service_descriptor_get_method_by_name(std, method)) != NULL) {
                *ret_sd = std;
                *ret_index = (unsigned) (m - std->methods);
                return CLI_EXIT_OK;
        }
        if (own != NULL) {
                list_methods(own, names, sizeof(names));
        }
        list_methods(std, names, sizeof(names));
        return cli_usage_error("no method '%s' for %s (short names: %s; or a full name "
                               "/package.Service/Method)",
            method, section, names);
}

static const char *
section_address(cli *c, const char *section)
{
        return rpc_conf_get(c->conf, section, "address");
}

/* The outcome of one call. */
typedef struct call_result {
        rpc_status status;
        char message[256];
        json_t *reply; /* on OK */
} call_result;

/* Calls method index of sd on the section's address with a JSON request (borrowed); fills
 * *res and returns an exit code. Prints nothing. */
static int
call_json(cli *c, const char *section, const ProtobufCServiceDescriptor *sd, unsigned index,
    const json_t *req, bool idempotent, bool monolith, call_result *res)
{
        static const char *const mono_md[] = { "dataset", "monolith", NULL };
        static const uint8_t empty[1];
        const ProtobufCMethodDescriptor *md = &sd->methods[index];
        const char *address = section_address(c, section);
        ProtobufCMessage *msg = NULL;
        ProtobufCMessage *out;
        rpc_client *client = NULL;
        uint8_t *payload;
        uint8_t *reply = NULL;
        size_t len;
        size_t reply_len = 0;
        char method[256];
        rpc_error rerr = { 0 };
        rpc_status st;

        memset(res, 0, sizeof(*res));
        if (address == NULL) {
                res->status = RPC_INVALID_ARGUMENT;
                cli_conf_missing(c, section, "address", res->message, sizeof(res->message));
                return CLI_EXIT_USAGE;
        }
        if (cli_json_to_message(md->input, req, &msg, res->message, sizeof(res->message))
            != RPC_OK) {
                res->status = RPC_INVALID_ARGUMENT;
                return CLI_EXIT_USAGE;
        }
        payload = rpc_pack(msg, &len);
        protobuf_c_message_free_unpacked(msg, NULL);
        /* A read is tried twice at most: a peer that is down is reported soon. */
        rpc_client_opts copts = { .timeout_ms = c->timeout_ms, .max_attempts = 2 };
        if (rpc_client_open(address, &copts, &client) != RPC_OK) {
                free(payload);
                res->status = RPC_INVALID_ARGUMENT;
                snprintf(res->message, sizeof(res->message), "bad address '%s' for [%s]", address,
                    section);
                return CLI_EXIT_USAGE;
        }
        rpc_method_fullname(sd, index, method, sizeof(method));
        rpc_call_opts opts = {
                .timeout_ms = c->timeout_ms,
                .idempotent = idempotent,
                .no_retry = !idempotent,
                .metadata = monolith ? mono_md : NULL,
        };
        st = rpc_client_call_raw(client, method, payload, len, &opts, &reply, &reply_len, &rerr);
        free(payload);
        rpc_client_free(client);
        res->status = st;
        if (st != RPC_OK) {
                snprintf(res->message, sizeof(res->message), "%s", rerr.message);
                return rerr.transport ? CLI_EXIT_UNREACHABLE : CLI_EXIT_SERVER;
        }
        out = protobuf_c_message_unpack(md->output, NULL, reply_len, reply != NULL ? reply : empty);
        free(reply);
        if (out == NULL) {
                res->status = RPC_INTERNAL;
                snprintf(res->message, sizeof(res->message), "the reply is not a valid %s",
                    md->output->name);
                return CLI_EXIT_SERVER;
        }
        res->reply = cli_json_from_message(out);
        protobuf_c_message_free_unpacked(out, NULL);
        return CLI_EXIT_OK;
}

/* Calls a method by short name on a section, printing any error; on success *ret_reply
 * owns the reply. Takes the reference of req. */
static int
invoke(cli *c, const char *section, const char *method, json_t *req, bool idempotent, bool monolith,
    json_t **ret_reply)
{
        const ProtobufCServiceDescriptor *sd;
        unsigned index;
        call_result res;
        int rc;

        rc = resolve_method(section, method, &sd, &index);
        if (rc == CLI_EXIT_OK) {
                rc = call_json(
                    c, section, sd, index, req, idempotent, monolith || c->monolith, &res);
                if (rc != CLI_EXIT_OK) {
                        cli_error(res.status, "%s", res.message);
                } else {
                        *ret_reply = res.reply;
                }
        }
        json_decref(req);
        return rc;
}

void
cli_print_json(const json_t *json)
{
        char *s = cli_json_dump(json);

        if (s != NULL) {
                fputs(s, stdout);
                fputc('\n', stdout);
                free(s);
        }
}

/*
 * Reading replies and printing them for people
 */

static int64_t
jint(const json_t *obj, const char *key)
{
        const json_t *v = json_object_get(obj, key);

        if (json_is_integer(v)) {
                return json_integer_value(v);
        }
        if (json_is_string(v)) {
                return strtoll(json_string_value(v), NULL, 10);
        }
        return 0;
}

static double
jreal(const json_t *obj, const char *key)
{
        const json_t *v = json_object_get(obj, key);

        return json_is_number(v) ? json_number_value(v) : 0.0;
}

static const char *
jstr(const json_t *obj, const char *key)
{
        const char *s = json_string_value(json_object_get(obj, key));

        return s != NULL ? s : "";
}

static const json_t *
jobj(const json_t *obj, const char *key)
{
        return json_object_get(obj, key);
}

/* An enum value's name without its type's prefix: "ORDER_STATUS_COMPLETED" -> "COMPLETED". */
static const char *
enum_short(const json_t *obj, const char *key, const char *prefix)
{
        const char *s = jstr(obj, key);
        size_t n = strlen(prefix);

        return strncmp(s, prefix, n) == 0 ? s + n : s;
}

static const char *
mode_name(const json_t *order)
{
        const char *m = enum_short(order, "mode", "MODE_");

        if (strcmp(m, "SAGA") == 0) {
                return "saga";
        }
        if (strcmp(m, "TWO_PC") == 0) {
                return "2pc";
        }
        if (strcmp(m, "MONOLITH") == 0) {
                return "monolith";
        }
        if (strcmp(m, "ORCHESTRATION") == 0) {
                return "orchestration";
        }
        if (strcmp(m, "TCC") == 0) {
                return "tcc";
        }
        return m[0] != '\0' ? m : "-";
}

/* "2025-01-31 12:00:00" (UTC) or "-" for 0. */
static const char *
fmt_time(int64_t ms, char buf[32])
{
        struct tm tm;
        time_t t = (time_t) (ms / 1000);

        if (ms <= 0 || gmtime_r(&t, &tm) == NULL) {
                return "-";
        }
        strftime(buf, 32, "%Y-%m-%d %H:%M:%S", &tm);
        return buf;
}

static const char *
fmt_duration(int64_t ms, char buf[32])
{
        if (ms < 1000) {
                snprintf(buf, 32, "%lldms", (long long) ms);
        } else if (ms < 60 * 1000) {
                snprintf(buf, 32, "%.1fs", (double) ms / 1000.0);
        } else if (ms < 3600 * 1000) {
                snprintf(buf, 32, "%lldm%02llds", (long long) (ms / 60000),
                    (long long) (ms / 1000 % 60));
        } else if (ms < 86400LL * 1000) {
                snprintf(buf, 32, "%lldh%02lldm", (long long) (ms / 3600000),
                    (long long) (ms / 60000 % 60));
        } else {
                snprintf(buf, 32, "%lldd%02lldh", (long long) (ms / 86400000),
                    (long long) (ms / 3600000 % 24));
        }
        return buf;
}

/* A table printed with aligned columns; a header starting with '>' is right-aligned. */
#define TABLE_MAX_COLS 10

typedef struct table {
        int ncols;
        const char *head[TABLE_MAX_COLS];
        bool right[TABLE_MAX_COLS];
        char **cells; /* rows * ncols */
        size_t rows;
        size_t cap;
} table;

static void
table_init(table *t, const char *const *heads)
{
        memset(t, 0, sizeof(*t));
        for (; heads[t->ncols] != NULL && t->ncols < TABLE_MAX_COLS; t->ncols++) {
                const char *h = heads[t->ncols];
                t->right[t->ncols] = h[0] == '>';
                t->head[t->ncols] = h[0] == '>' ? h + 1 : h;
        }
}

/* Adds a row from a printf format whose output separates the cells with tabs. */
static void table_row(table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
table_row(table *t, const char *fmt, ...)
{
        char *line = NULL;
        char *p;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&line, fmt, ap) < 0) {
                abort();
        }
        va_end(ap);
        if (t->rows == t->cap) {
                t->cap = t->cap > 0 ? 2 * t->cap : 16;
                t->cells = rpc_xrealloc(t->cells, t->cap * (size_t) t->ncols * sizeof(char *));
        }
        p = line;
        for (int i = 0; i < t->ncols; i++) {
                char *tab = p != NULL ? strchr(p, '\t') : NULL;
                if (tab != NULL) {
                        *tab = '\0';
                }
                t->cells[t->rows * (size_t) t->ncols + (size_t) i]
                    = rpc_xstrdup(p != NULL ? p : "");
                p = tab != NULL ? tab + 1 : NULL;
        }
        t->rows++;
        free(line);
}

static void
table_free(table *t)
{
        for (size_t k = 0; k < t->rows * (size_t) t->ncols; k++) {
                free(t->cells[k]);
        }
        free(t->cells);
        t->cells = NULL;
        t->rows = 0;
        t->cap = 0;
}

/* Prints the table, or `empty` alone when it has no rows; frees it. */
static void
table_print(table *t, const char *empty)
{
        size_t width[TABLE_MAX_COLS];

        if (t->rows == 0) {
                if (empty != NULL) {
                        printf("%s\n", empty);
                }
                table_free(t);
                return;
        }
        for (int i = 0; i < t->ncols; i++) {
                width[i] = strlen(t->head[i]);
                for (size_t r = 0; r < t->rows; r++) {
                        size_t n = strlen(t->cells[r * (size_t) t->ncols + (size_t) i]);
                        width[i] = n > width[i] ? n : width[i];
                }
        }
        for (size_t r = 0; r <= t->rows; r++) {
                for (int i = 0; i < t->ncols; i++) {
                        const char *s = r == 0 ? t->head[i]
                                               : t->cells[(r - 1) * (size_t) t->ncols + (size_t) i];
                        bool last = i == t->ncols - 1;
                        if (t->right[i]) {
                                printf("%*s", (int) width[i], s);
                        } else if (last) {
                                printf("%s", s);
                        } else {
                                printf("%-*s", (int) width[i], s);
                        }
                        printf(last ? "\n" : "  ");
                }
        }
        table_free(t);
}

/* A "label  value" line of a record. */
static void kv(const char *label, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
kv(const char *label, const char *fmt, ...)
{
        va_list ap;

        printf("%-11s", label);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
}

/* Runs a call that prints its reply as JSON (--json) or with the given printer. */
static int
call_and_print(cli *c, const char *section, const char *method, json_t *req, bool idempotent,
    bool monolith, void (*print)(const json_t *reply))
{
        json_t *reply = NULL;
        int rc = invoke(c, section, method, req, idempotent, monolith, &reply);

        if (rc != CLI_EXIT_OK) {
                return rc;
        }
        if (c->json) {
                cli_print_json(reply);
        } else {
                print(reply);
        }
        json_decref(reply);
        return CLI_EXIT_OK;
}

/* Parses positional argument i as an id (any int64: the server judges its range). */
static int
arg_i64(const cli_args *a, int i, const char *what, int64_t *ret)
{
        if (!cli_parse_i64(a->pos[i], INT64_MIN, INT64_MAX, ret)) {
                return cli_usage_error("%s must be an integer, not '%s'", what, a->pos[i]);
        }
        return CLI_EXIT_OK;
}

#define TRY(expr)                                                                                  \
        do {                                                                                       \
                int rc_ = (expr);                                                                  \
                if (rc_ != CLI_EXIT_OK) {                                                          \
                        return rc_;                                                                \
                }                                                                                  \
        } while (0)

/*
 * health
 */

/* One Health call, run on a thread of its own. */
typedef struct health_job {
        cli *c;
        const char *name;
        pthread_t thread;
        bool joined;
        int rc;
        call_result res;
} health_job;

static void *
health_thread(void *arg)
{
        health_job *j = arg;
        json_t *req = json_object();

        j->rc = call_json(j->c, j->name, &mercato__rpc__v1__standard_service__descriptor, 0, req,
            false, false, &j->res);
        json_decref(req);
        return NULL;
}

static int
cmd_health(cli *c, const cli_args *a)
{
        health_job *jobs;
        const char **names;
        size_t n = 0;
        const char **sections;
        size_t n_sections = rpc_conf_sections(c->conf, &sections);
        int worst = CLI_EXIT_OK;
        json_t *all = json_array();
        table t;
        char b1[32];

        names = rpc_xcalloc(n_sections + (size_t) a->n + 1, sizeof(char *));
        if (a->n > 0) {
                for (int i = 0; i < a->n; i++) {
                        if (section_address(c, a->pos[i]) == NULL) {
                                char why[512];
                                cli_conf_missing(c, a->pos[i], "address", why, sizeof(why));
                                free(names);
                                json_decref(all);
                                return cli_usage_error("%s", why);
                        }
                        names[n++] = a->pos[i];
                }
        } else {
                for (size_t i = 0; i < n_sections; i++) {
                        if (strcmp(sections[i], "defaults") != 0
                            && section_address(c, sections[i]) != NULL) {
                                names[n++] = sections[i];
                        }
                }
        }
        if (n == 0) {
                free(names);
                json_decref(all);
                if (c->conf_error != NULL) {
                        return cli_usage_error("cannot read the topology file: %s", c->conf_error);
                }
                return cli_usage_error("no service with an address in the topology file");
        }
        /* One thread per service, so that services that do not answer cost one wait, not
         * one each. */
        jobs = rpc_xcalloc(n, sizeof(*jobs));
        for (size_t i = 0; i < n; i++) {
                jobs[i].c = c;
                jobs[i].name = names[i];
                if (pthread_create(&jobs[i].thread, NULL, health_thread, &jobs[i]) != 0) {
                        health_thread(&jobs[i]);
                        jobs[i].joined = true;
                }
        }
        table_init(&t,
            (const char *const[]) { "SERVICE", "ADDRESS", "STATUS", ">UPTIME", ">WORKERS", NULL });
        for (size_t i = 0; i < n; i++) {
                const char *address = section_address(c, names[i]);
                json_t *entry = json_pack("{s:s, s:s}", "service", names[i], "address", address);
                call_result res;
                int rc;
                if (!jobs[i].joined) {
                        pthread_join(jobs[i].thread, NULL);
                }
                res = jobs[i].res;
                rc = jobs[i].rc;
                if (rc == CLI_EXIT_OK) {
                        const char *status = jstr(res.reply, "status");
                        if (strcmp(status, "SERVING") != 0) {
                                rc = CLI_EXIT_SERVER;
                        }
                        table_row(&t, "%s\t%s\t%s\t%s\t%lld", names[i], address, status,
                            fmt_duration(jint(res.reply, "uptime_ms"), b1),
                            (long long) jint(res.reply, "workers"));
                        json_object_set_new(entry, "health", res.reply);
                } else {
                        table_row(&t, "%s\t%s\t%s\t-\t-", names[i], address,
                            rc == CLI_EXIT_UNREACHABLE ? "UNREACHABLE"
                                                       : rpc_status_name(res.status));
                        json_object_set_new(entry, "health", json_null());
                        json_object_set_new(entry, "error",
                            json_pack("{s:s, s:s}", "code", rpc_status_name(res.status), "message",
                                res.message));
                        if (!c->json) {
                                cli_error(res.status, "%s: %s", names[i], res.message);
                        }
                }
                json_array_append_new(all, entry);
                /* The codes rank by number: unreachable beats usage beats a bad status. */
                worst = rc > worst ? rc : worst;
        }
        if (c->json) {
                cli_print_json(all);
                table_free(&t);
        } else {
                table_print(&t, NULL);
        }
        json_decref(all);
        free(jobs);
        free(names);
        return worst;
}

/*
 * product
 */

static void
print_products(const json_t *reply)
{
        const json_t *products = jobj(reply, "products");
        size_t i;
        table t;

        table_init(&t, (const char *const[]) { ">ID", "NAME", ">PRICE", ">STOCK", NULL });
        for (i = 0; i < json_array_size(products); i++) {
                const json_t *p = json_array_get(products, i);
                table_row(&t, "%lld\t%s\t%lld\t%lld", (long long) jint(p, "id"), jstr(p, "name"),
                    (long long) jint(p, "price"), (long long) jint(p, "stock"));
        }
        table_print(&t, "(no products)");
        if (jint(reply, "next_after_id") != 0) {
                printf("next page: --after %lld\n", (long long) jint(reply, "next_after_id"));
        }
}

static const cli_opt product_list_opts[] = {
        { "page-size", "N", "products per page, up to 100 (default 20)" },
        { "after", "ID", "list the products after this id (the previous page's cursor)" },
        { NULL, NULL, NULL },
};

static int
cmd_product_list(cli *c, const cli_args *a)
{
        int64_t page_size = 0, after = 0;

        TRY(cli_opt_i64(a, 0, "page-size", INT32_MIN, INT32_MAX, &page_size));
        TRY(cli_opt_i64(a, 1, "after", INT64_MIN, INT64_MAX, &after));
        return call_and_print(c, "product", "ListProducts",
            json_pack(
                "{s:I, s:I}", "page_size", (json_int_t) page_size, "after_id", (json_int_t) after),
            true, false, print_products);
}

static void
print_product(const json_t *reply)
{
        const json_t *p = jobj(reply, "product");

        kv("product", "%lld", (long long) jint(p, "id"));
        kv("name", "%s", jstr(p, "name"));
        kv("price", "%lld", (long long) jint(p, "price"));
        kv("stock", "%lld", (long long) jint(p, "stock"));
}

static int
cmd_product_get(cli *c, const cli_args *a)
{
        int64_t id;

        TRY(arg_i64(a, 0, "ID", &id));
        return call_and_print(c, "product", "GetProduct",
            json_pack("{s:I}", "product_id", (json_int_t) id), true, false, print_product);
}

static void
print_top(const json_t *reply)
{
        const json_t *products = jobj(reply, "products");
        size_t i;
        table t;

        table_init(&t,
            (const char *const[]) { ">RANK", ">ID", "NAME", ">PRICE", ">STOCK", ">SOLD", NULL });
        for (i = 0; i < json_array_size(products); i++) {
                const json_t *tp = json_array_get(products, i);
                const json_t *p = jobj(tp, "product");
                table_row(&t, "%zu\t%lld\t%s\t%lld\t%lld\t%lld", i + 1, (long long) jint(p, "id"),
                    jstr(p, "name"), (long long) jint(p, "price"), (long long) jint(p, "stock"),
                    (long long) jint(tp, "quantity_sold"));
        }
        table_print(&t, "(no sales in the period)");
}

static const cli_opt product_top_opts[] = {
        { "limit", "N", "how many products, up to 100 (default 5)" },
        { "days", "N", "count the sales of the last N days (default 3)" },
        { NULL, NULL, NULL },
};

static int
cmd_product_top(cli *c, const cli_args *a)
{
        int64_t limit = 0, days = 0;

        TRY(cli_opt_i64(a, 0, "limit", INT32_MIN, INT32_MAX, &limit));
        TRY(cli_opt_i64(a, 1, "days", INT32_MIN, INT32_MAX, &days));
        return call_and_print(c, "product", "TopProducts",
            json_pack("{s:I, s:I}", "limit", (json_int_t) limit, "days", (json_int_t) days), true,
            false, print_top);
}

/*
 * cart
 */

static void
print_cart(const json_t *reply)
{
        const json_t *items = jobj(reply, "items");
        size_t i;
        table t;
        char b1[32];
        char empty[64];

        printf("cart of user %lld\n", (long long) jint(reply, "user_id"));
        table_init(&t, (const char *const[]) { ">PRODUCT", ">QUANTITY", "ADDED (UTC)", NULL });
        for (i = 0; i < json_array_size(items); i++) {
                const json_t *it = json_array_get(items, i);
                table_row(&t, "%lld\t%lld\t%s", (long long) jint(it, "product_id"),
                    (long long) jint(it, "quantity"), fmt_time(jint(it, "added_at_ms"), b1));
        }
        snprintf(empty, sizeof(empty), "(empty)");
        table_print(&t, empty);
}

static int
cmd_cart_list(cli *c, const cli_args *a)
{
        int64_t user;

        TRY(arg_i64(a, 0, "USER", &user));
        return call_and_print(c, "cart", "ListCart",
            json_pack("{s:I}", "user_id", (json_int_t) user), true, false, print_cart);
}

static int
cmd_cart_add(cli *c, const cli_args *a)
{
        int64_t user, product, qty;

        TRY(arg_i64(a, 0, "USER", &user));
        TRY(arg_i64(a, 1, "PRODUCT", &product));
        TRY(arg_i64(a, 2, "QTY", &qty));
        return call_and_print(c, "cart", "AddToCart",
            json_pack("{s:I, s:I, s:I}", "user_id", (json_int_t) user, "product_id",
                (json_int_t) product, "quantity", (json_int_t) qty),
            false, false, print_cart);
}

static int
cmd_cart_remove(cli *c, const cli_args *a)
{
        int64_t user, product;

        TRY(arg_i64(a, 0, "USER", &user));
        TRY(arg_i64(a, 1, "PRODUCT", &product));
        return call_and_print(c, "cart", "RemoveFromCart",
            json_pack(
                "{s:I, s:I}", "user_id", (json_int_t) user, "product_id", (json_int_t) product),
            false, false, print_cart);
}

/*
 * balance and coupons
 */

static void
print_balance(const json_t *reply)
{
        kv("user", "%lld", (long long) jint(reply, "user_id"));
        kv("balance", "%lld", (long long) jint(reply, "balance"));
        if (json_object_get(reply, "ledger_id") != NULL) {
                kv("ledger id", "%lld", (long long) jint(reply, "ledger_id"));
        }
}

static int
cmd_balance_get(cli *c, const cli_args *a)
{
        int64_t user;

        TRY(arg_i64(a, 0, "USER", &user));
        return call_and_print(c, "user", "GetBalance",
            json_pack("{s:I}", "user_id", (json_int_t) user), true, false, print_balance);
}

static int
cmd_balance_charge(cli *c, const cli_args *a)
{
        int64_t user, amount;

        TRY(arg_i64(a, 0, "USER", &user));
        TRY(arg_i64(a, 1, "AMOUNT", &amount));
        return call_and_print(c, "user", "ChargeBalance",
            json_pack("{s:I, s:I}", "user_id", (json_int_t) user, "amount", (json_int_t) amount),
            false, false, print_balance);
}

static const char *
coupon_value(const json_t *coupon, char buf[32])
{
        const char *kind = enum_short(coupon, "kind", "DISCOUNT_KIND_");

        if (strcmp(kind, "PERCENT") == 0) {
                snprintf(buf, 32, "%lld%%", (long long) jint(coupon, "value"));
        } else {
                snprintf(buf, 32, "%lld", (long long) jint(coupon, "value"));
        }
        return buf;
}

static void
print_user_coupon(const json_t *uc)
{
        const json_t *cp = jobj(uc, "coupon");
        char b1[32];
        char b2[32];

        kv("user", "%lld", (long long) jint(uc, "user_id"));
        kv("coupon", "%lld (%s)", (long long) jint(cp, "coupon_id"), jstr(cp, "name"));
        kv("discount", "%s %s", enum_short(cp, "kind", "DISCOUNT_KIND_"), coupon_value(cp, b1));
        kv("issued", "%lld of %lld", (long long) jint(cp, "issued"),
            (long long) jint(cp, "quantity"));
        kv("issued at", "%s", fmt_time(jint(uc, "issued_at_ms"), b2));
        if (json_is_true(jobj(uc, "used"))) {
                kv("used", "by order %lld", (long long) jint(uc, "used_order_id"));
        } else {
                kv("used", "no");
        }
}

static int
cmd_coupon_issue(cli *c, const cli_args *a)
{
        int64_t user, coupon;

        TRY(arg_i64(a, 0, "USER", &user));
        TRY(arg_i64(a, 1, "COUPON", &coupon));
        return call_and_print(c, "user", "IssueCoupon",
            json_pack("{s:I, s:I}", "user_id", (json_int_t) user, "coupon_id", (json_int_t) coupon),
            false, false, print_user_coupon);
}

static void
print_coupons(const json_t *reply)
{
        size_t i;
        table t;
        char b1[32];
        char b2[32];
        char b3[32];

        table_init(&t,
            (const char *const[]) {
                ">COUPON", "NAME", "KIND", ">VALUE", "USED", "ISSUED AT (UTC)", NULL });
        for (i = 0; i < json_array_size(jobj(reply, "coupons")); i++) {
                const json_t *uc = json_array_get(jobj(reply, "coupons"), i);
                const json_t *cp = jobj(uc, "coupon");
                if (json_is_true(jobj(uc, "used"))) {
                        snprintf(
                            b2, sizeof(b2), "order %lld", (long long) jint(uc, "used_order_id"));
                } else {
                        snprintf(b2, sizeof(b2), "no");
                }
                table_row(&t, "%lld\t%s\t%s\t%s\t%s\t%s", (long long) jint(cp, "coupon_id"),
                    jstr(cp, "name"), enum_short(cp, "kind", "DISCOUNT_KIND_"),
                    coupon_value(cp, b1), b2, fmt_time(jint(uc, "issued_at_ms"), b3));
        }
        table_print(&t, "(no coupons)");
}

static int
cmd_coupon_list(cli *c, const cli_args *a)
{
        int64_t user;

        TRY(arg_i64(a, 0, "USER", &user));
        return call_and_print(c, "user", "ListCoupons",
            json_pack("{s:I}", "user_id", (json_int_t) user), true, false, print_coupons);
}

/*
 * orders and payments
 */

static void
print_order_record(const json_t *o)
{
        size_t i;
        char b1[32];

        kv("order", "%lld", (long long) jint(o, "order_id"));
        kv("status", "%s", enum_short(o, "status", "ORDER_STATUS_"));
        if (jstr(o, "reason")[0] != '\0') {
                kv("reason", "%s", jstr(o, "reason"));
        }
        if (json_is_object(jobj(o, "failure"))) {
                const json_t *f = jobj(o, "failure");
                kv("failure", "%s: %s: %s", jstr(f, "branch"), jstr(f, "status"),
                    jstr(f, "message"));
        }
        kv("mode", "%s", mode_name(o));
        kv("user", "%lld", (long long) jint(o, "user_id"));
        for (i = 0; i < json_array_size(jobj(o, "items")); i++) {
                const json_t *it = json_array_get(jobj(o, "items"), i);
                kv(i == 0 ? "items" : "", "product %lld x %lld @ %lld",
                    (long long) jint(it, "product_id"), (long long) jint(it, "quantity"),
                    (long long) jint(it, "unit_price"));
        }
        kv("total", "%lld", (long long) jint(o, "total"));
        if (jint(o, "coupon_id") != 0) {
                kv("coupon", "%lld", (long long) jint(o, "coupon_id"));
        }
        kv("discount", "%lld", (long long) jint(o, "discount"));
        kv("amount", "%lld", (long long) jint(o, "amount"));
        kv("created", "%s", fmt_time(jint(o, "created_at_ms"), b1));
        kv("updated", "%s", fmt_time(jint(o, "updated_at_ms"), b1));
}

static void
print_place_order(const json_t *reply)
{
        print_order_record(jobj(reply, "order"));
}

static const cli_opt order_place_opts[] = {
        { "coupon", "ID", "use this coupon (the user must hold it)" },
        { "mode", "MODE",
            "saga, 2pc, monolith, orchestration or tcc (default: the order service's mode);\n"
            "                         monolith also selects the monolith dataset" },
        { NULL, NULL, NULL },
};

static int
cmd_order_place(cli *c, const cli_args *a)
{
        static const struct {
                const char *name;
                const char *value;
        } modes[] = {
                { "saga", "MODE_SAGA" },
                { "2pc", "MODE_TWO_PC" },
                { "monolith", "MODE_MONOLITH" },
                { "orchestration", "MODE_ORCHESTRATION" },
                { "tcc", "MODE_TCC" },
        };
        int64_t user, coupon = 0;
        const char *mode = "MODE_UNSPECIFIED";
        bool monolith = false;
        json_t *items;

        TRY(arg_i64(a, 0, "USER", &user));
        TRY(cli_opt_i64(a, 0, "coupon", INT64_MIN, INT64_MAX, &coupon));
        if (a->opt[1] != NULL) {
                size_t k = 0;
                for (; k < N_ELEMS(modes); k++) {
                        if (strcmp(a->opt[1], modes[k].name) == 0) {
                                break;
                        }
                }
                if (k == N_ELEMS(modes)) {
                        return cli_usage_error(
                            "--mode must be saga, 2pc, monolith, orchestration or tcc, not '%s'",
                            a->opt[1]);
                }
                mode = modes[k].value;
                monolith = strcmp(modes[k].name, "monolith") == 0;
        }
        items = json_array();
        for (int i = 1; i < a->n; i++) {
                char buf[64];
                char *colon;
                int64_t product, qty;
                snprintf(buf, sizeof(buf), "%s", a->pos[i]);
                colon = strchr(buf, ':');
                if (colon != NULL) {
                        *colon = '\0';
                }
                if (colon == NULL || !cli_parse_i64(buf, INT64_MIN, INT64_MAX, &product)
                    || !cli_parse_i64(colon + 1, INT64_MIN, INT64_MAX, &qty)) {
                        json_decref(items);
                        return cli_usage_error("an item is PRODUCT:QTY, not '%s'", a->pos[i]);
                }
                json_array_append_new(items,
                    json_pack("{s:I, s:I}", "product_id", (json_int_t) product, "quantity",
                        (json_int_t) qty));
        }
        return call_and_print(c, "order", "PlaceOrder",
            json_pack("{s:I, s:o, s:I, s:s}", "user_id", (json_int_t) user, "items", items,
                "coupon_id", (json_int_t) coupon, "mode", mode),
            false, monolith, print_place_order);
}

static int
cmd_order_get(cli *c, const cli_args *a)
{
        int64_t id;

        TRY(arg_i64(a, 0, "ID", &id));
        return call_and_print(c, "order", "GetOrder",
            json_pack("{s:I}", "order_id", (json_int_t) id), true, false, print_order_record);
}

static void
print_orders(const json_t *reply)
{
        size_t i;
        table t;
        char b1[32];

        table_init(&t,
            (const char *const[]) { ">ORDER", "STATUS", "MODE", ">ITEMS", ">TOTAL", ">DISCOUNT",
                ">AMOUNT", "CREATED (UTC)", "REASON", NULL });
        for (i = 0; i < json_array_size(jobj(reply, "orders")); i++) {
                const json_t *o = json_array_get(jobj(reply, "orders"), i);
                table_row(&t, "%lld\t%s\t%s\t%zu\t%lld\t%lld\t%lld\t%s\t%s",
                    (long long) jint(o, "order_id"), enum_short(o, "status", "ORDER_STATUS_"),
                    mode_name(o), json_array_size(jobj(o, "items")), (long long) jint(o, "total"),
                    (long long) jint(o, "discount"), (long long) jint(o, "amount"),
                    fmt_time(jint(o, "created_at_ms"), b1), jstr(o, "reason"));
        }
        table_print(&t, "(no orders)");
        if (jint(reply, "next_before_id") != 0) {
                printf("next page: --before %lld\n", (long long) jint(reply, "next_before_id"));
        }
}

static const cli_opt order_list_opts[] = {
        { "page-size", "N", "orders per page, up to 100 (default 20)" },
        { "before", "ID", "list the orders older than this id (the previous page's cursor)" },
        { NULL, NULL, NULL },
};

static int
cmd_order_list(cli *c, const cli_args *a)
{
        int64_t user, page_size = 0, before = 0;

        TRY(arg_i64(a, 0, "USER", &user));
        TRY(cli_opt_i64(a, 0, "page-size", INT32_MIN, INT32_MAX, &page_size));
        TRY(cli_opt_i64(a, 1, "before", INT64_MIN, INT64_MAX, &before));
        return call_and_print(c, "order", "ListOrders",
            json_pack("{s:I, s:I, s:I}", "user_id", (json_int_t) user, "page_size",
                (json_int_t) page_size, "before_id", (json_int_t) before),
            true, false, print_orders);
}

static void
print_payment(const json_t *p)
{
        char b1[32];

        kv("payment", "%lld", (long long) jint(p, "payment_id"));
        kv("order", "%lld", (long long) jint(p, "order_id"));
        kv("user", "%lld", (long long) jint(p, "user_id"));
        kv("amount", "%lld", (long long) jint(p, "amount"));
        kv("status", "%s", enum_short(p, "status", "PAYMENT_STATUS_"));
        kv("created", "%s", fmt_time(jint(p, "created_at_ms"), b1));
        kv("updated", "%s", fmt_time(jint(p, "updated_at_ms"), b1));
}

static int
cmd_payment_get(cli *c, const cli_args *a)
{
        int64_t order;

        TRY(arg_i64(a, 0, "ORDER", &order));
        return call_and_print(c, "payment", "GetPayment",
            json_pack("{s:I}", "order_id", (json_int_t) order), true, false, print_payment);
}

/*
 * data platform
 */

static void
print_received(const json_t *reply)
{
        size_t i;
        table t;
        char b1[32];

        table_init(&t,
            (const char *const[]) {
                ">ORDER", ">USER", ">AMOUNT", "RECEIVED (UTC)", "EVENT", NULL });
        for (i = 0; i < json_array_size(jobj(reply, "received")); i++) {
                const json_t *r = json_array_get(jobj(reply, "received"), i);
                table_row(&t, "%lld\t%lld\t%lld\t%s\t%s", (long long) jint(r, "order_id"),
                    (long long) jint(r, "user_id"), (long long) jint(r, "amount"),
                    fmt_time(jint(r, "received_at_ms"), b1), jstr(r, "event_id"));
        }
        table_print(&t, "(nothing received)");
        if (jint(reply, "next_after_order_id") != 0) {
                printf("next page: --after %lld\n", (long long) jint(reply, "next_after_order_id"));
        }
}

static const cli_opt dp_list_opts[] = {
        { "order", "ID", "only this order's record" },
        { "page-size", "N", "records per page, up to 100 (default 20)" },
        { "after", "ORDER", "list the records after this order id (the previous page's cursor)" },
        { NULL, NULL, NULL },
};

static int
cmd_dp_list(cli *c, const cli_args *a)
{
        int64_t order = 0, page_size = 0, after = 0;

        TRY(cli_opt_i64(a, 0, "order", INT64_MIN, INT64_MAX, &order));
        TRY(cli_opt_i64(a, 1, "page-size", INT32_MIN, INT32_MAX, &page_size));
        TRY(cli_opt_i64(a, 2, "after", INT64_MIN, INT64_MAX, &after));
        return call_and_print(c, "dataplatform", "ListReceived",
            json_pack("{s:I, s:I, s:I}", "page_size", (json_int_t) page_size, "after_order_id",
                (json_int_t) after, "order_id", (json_int_t) order),
            true, false, print_received);
}

static void
print_dp_stats(const json_t *reply)
{
        kv("received", "%lld", (long long) jint(reply, "received"));
        kv("duplicates", "%lld", (long long) jint(reply, "duplicates"));
}

static int
cmd_dp_stats(cli *c, const cli_args *a)
{
        (void) a;
        return call_and_print(c, "dataplatform",
            "/mercato.dataplatform.v1.DataPlatformService/Stats", json_object(), true, false,
            print_dp_stats);
}

/*
 * stats, methods, call
 */

static void
print_stats(const json_t *reply)
{
        size_t i;
        table t;
        char b1[32];

        table_init(&t,
            (const char *const[]) {
                "METHOD", ">CALLS", ">ERRORS", ">P50 MS", ">P99 MS", ">MAX MS", ">MEAN MS", NULL });
        for (i = 0; i < json_array_size(jobj(reply, "methods")); i++) {
                const json_t *m = json_array_get(jobj(reply, "methods"), i);
                table_row(&t, "%s\t%lld\t%lld\t%.2f\t%.2f\t%.2f\t%.2f", jstr(m, "name"),
                    (long long) jint(m, "calls"), (long long) jint(m, "errors"), jreal(m, "p50_ms"),
                    jreal(m, "p99_ms"), jreal(m, "max_ms"), jreal(m, "mean_ms"));
        }
        table_print(&t, "(no methods)");
        printf("uptime %s, bad requests %lld, faults injected %lld, heap in use %.1f MiB\n",
            fmt_duration(jint(reply, "uptime_ms"), b1), (long long) jint(reply, "bad_requests"),
            (long long) jint(reply, "faults_injected"),
            (double) jint(reply, "heap_in_use_bytes") / (1024.0 * 1024.0));

        const json_t *peers = jobj(reply, "peers");
        if (json_array_size(peers) == 0) {
                return;
        }
        table_init(&t,
            (const char *const[]) { "PEER", "BREAKER", ">OPENS", ">REJECTED", ">ATTEMPTS",
                ">PEER FAILURES", ">IN A ROW", NULL });
        for (i = 0; i < json_array_size(peers); i++) {
                const json_t *p = json_array_get(peers, i);
                table_row(&t, "%s\t%s\t%lld\t%lld\t%lld\t%lld\t%lld", jstr(p, "url"),
                    jstr(p, "breaker"), (long long) jint(p, "breaker_opens"),
                    (long long) jint(p, "rejected"), (long long) jint(p, "attempts"),
                    (long long) jint(p, "peer_failures"),
                    (long long) jint(p, "consecutive_failures"));
        }
        printf("\n");
        table_print(&t, "");
}

static int
cmd_stats(cli *c, const cli_args *a)
{
        return call_and_print(c, a->pos[0], "/mercato.rpc.v1.StandardService/Stats", json_object(),
            true, false, print_stats);
}

static void
print_methods(const json_t *reply)
{
        size_t i;
        table t;

        table_init(&t, (const char *const[]) { "METHOD", "INPUT", "OUTPUT", "IDEMPOTENT", NULL });
        for (i = 0; i < json_array_size(jobj(reply, "methods")); i++) {
                const json_t *m = json_array_get(jobj(reply, "methods"), i);
                table_row(&t, "%s\t%s\t%s\t%s", jstr(m, "name"), jstr(m, "input_type"),
                    jstr(m, "output_type"), json_is_true(jobj(m, "idempotent")) ? "yes" : "no");
        }
        table_print(&t, "(no methods)");
}

static int
cmd_methods(cli *c, const cli_args *a)
{
        return call_and_print(c, a->pos[0], "/mercato.rpc.v1.StandardService/ListMethods",
            json_object(), true, false, print_methods);
}

static const cli_opt call_opts[] = {
        { "idempotent", NULL, "let the client retry the call while the peer is unavailable" },
        { NULL, NULL, NULL },
};

/* Reads all of stdin into a string. */
static char *
read_stdin(void)
{
        size_t cap = 4096, len = 0;
        char *buf = rpc_xmalloc(cap);
        size_t n;

        while ((n = fread(buf + len, 1, cap - len - 1, stdin)) > 0) {
                len += n;
                if (cap - len - 1 == 0) {
                        cap *= 2;
                        buf = rpc_xrealloc(buf, cap);
                }
        }
        buf[len] = '\0';
        return buf;
}

static int
cmd_call(cli *c, const cli_args *a)
{
        const ProtobufCServiceDescriptor *sd;
        unsigned index;
        json_error_t jerr;
        json_t *req;
        call_result res;
        char *text = NULL;
        int rc;

        if (section_address(c, a->pos[0]) == NULL) {
                char why[512];
                cli_conf_missing(c, a->pos[0], "address", why, sizeof(why));
                return cli_usage_error("%s", why);
        }
        TRY(resolve_method(a->pos[0], a->pos[1], &sd, &index));
        if (a->n > 2 && strcmp(a->pos[2], "-") == 0) {
                text = read_stdin();
        }
        req = json_loads(
            a->n > 2 ? (text != NULL ? text : a->pos[2]) : "{}", JSON_REJECT_DUPLICATES, &jerr);
        free(text);
        if (req == NULL) {
                return cli_usage_error(
                    "bad JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        }
        rc = call_json(c, a->pos[0], sd, index, req, a->opt[0] != NULL, c->monolith, &res);
        json_decref(req);
        if (rc != CLI_EXIT_OK) {
                cli_error(res.status, "%s", res.message);
                return rc;
        }
        cli_print_json(res.reply);
        json_decref(res.reply);
        return CLI_EXIT_OK;
}

/*
 * The table
 */

static const char call_help[]
    = "SERVICE is a topology section (product, cart, user, order, payment, dataplatform).\n"
      "METHOD is a short name (GetProduct; the service's own methods, then Health,\n"
      "ListMethods, Stats) or a full name (/mercato.product.v1.ProductService/GetProduct),\n"
      "which may also name the standard methods and /mercato.event.v1.EventSink/Deliver.\n"
      "JSON is the request message (default {}; - reads it from stdin): keys are the proto\n"
      "field names or their lowerCamelCase forms; 64-bit integers as numbers or strings;\n"
      "enums by name or number; bytes in base64. An unknown key or a wrong type is a usage\n"
      "error. The reply prints as JSON with every field, defaults included.\n"
      "\n"
      "Example: mercato call order PlaceOrder \\\n"
      "           '{\"user_id\": 1, \"items\": [{\"product_id\": 2, \"quantity\": 1}],\n"
      "             \"mode\": \"MODE_MONOLITH\"}'\n";

static const char health_help[]
    = "Calls Health on each named service (default: every section of the topology with an\n"
      "address) and prints service, address, status, uptime and workers. Exits 0 only if\n"
      "every one answers SERVING (3 if one cannot be reached).\n";

static const char dataset_note[]
    = "With --dataset monolith it reads the shared monolith database, where orders placed\n"
      "with --mode monolith leave their effects.\n";

const cli_command cli_commands[] = {
        { "health", NULL, "[SERVICE...]", "ask services for their health", health_help, NULL, 0, -1,
            cmd_health },
        { "product", "list", "", "list the catalogue, a page at a time", dataset_note,
            product_list_opts, 0, 0, cmd_product_list },
        { "product", "get", "ID", "show one product", dataset_note, NULL, 1, 1, cmd_product_get },
        { "product", "top", "", "the best sellers of the last days", NULL, product_top_opts, 0, 0,
            cmd_product_top },
        { "cart", "list", "USER", "show a user's cart", dataset_note, NULL, 1, 1, cmd_cart_list },
        { "cart", "add", "USER PRODUCT QTY", "add QTY of a product to a user's cart", NULL, NULL, 3,
            3, cmd_cart_add },
        { "cart", "remove", "USER PRODUCT", "remove a product from a user's cart", NULL, NULL, 2, 2,
            cmd_cart_remove },
        { "balance", "get", "USER", "show a user's balance", dataset_note, NULL, 1, 1,
            cmd_balance_get },
        { "balance", "charge", "USER AMOUNT", "add AMOUNT to a user's balance", NULL, NULL, 2, 2,
            cmd_balance_charge },
        { "coupon", "issue", "USER COUPON", "issue a coupon to a user (first come, limited)", NULL,
            NULL, 2, 2, cmd_coupon_issue },
        { "coupon", "list", "USER", "list a user's coupons", NULL, NULL, 1, 1, cmd_coupon_list },
        { "order", "place", "USER PRODUCT:QTY [PRODUCT:QTY...]", "place an order",
            "Prints the order as it ended: COMPLETED, or CANCELLED with the reason (out of\n"
            "stock, insufficient balance, ...). In saga mode it may still be PENDING when the\n"
            "deadline comes; `mercato order get` tells the rest.\n",
            order_place_opts, 2, -1, cmd_order_place },
        { "order", "get", "ID", "show an order", dataset_note, NULL, 1, 1, cmd_order_get },
        { "order", "list", "USER", "list a user's orders, newest first", dataset_note,
            order_list_opts, 1, 1, cmd_order_list },
        { "payment", "get", "ORDER", "show the payment of an order", dataset_note, NULL, 1, 1,
            cmd_payment_get },
        { "dataplatform", "list", "", "list the completed orders the data platform received", NULL,
            dp_list_opts, 0, 0, cmd_dp_list },
        { "dataplatform", "stats", "", "count what the data platform received", NULL, NULL, 0, 0,
            cmd_dp_stats },
        { "stats", NULL, "SERVICE",
            "per-method calls and latencies of a service, and its peers' breakers", NULL, NULL, 1,
            1, cmd_stats },
        { "methods", NULL, "SERVICE", "the methods a service serves", NULL, NULL, 1, 1,
            cmd_methods },
        { "call", NULL, "SERVICE METHOD ['JSON']", "call any method with a JSON request", call_help,
            call_opts, 2, 3, cmd_call },
        { "seed", NULL, "", "load deterministic data straight into the databases", cli_seed_help,
            cli_seed_opts, 0, 0, cli_seed_run },
        { "check", NULL, "", "verify the consistency invariants across every database",
            cli_check_help, cli_check_opts, 0, 0, cli_check_run },
        { "txn", "list", "", "what is in flight: 2pc transactions, sagas and their steps",
            cli_txn_help, NULL, 0, 0, cli_txn_list_run },
        { "txn", "show", "GID|ORDER",
            "one transaction: a gid's branches, an order's saga and events", cli_txn_help, NULL, 1,
            1, cli_txn_show_run },
        { "txn", "resolve", "GID commit|rollback | ORDER retry",
            "finish an in-doubt 2pc by hand, or drive a saga now", cli_txn_help, NULL, 2, 2,
            cli_txn_resolve_run },
};

const size_t cli_n_commands = N_ELEMS(cli_commands);
