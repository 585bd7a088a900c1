/* svc.c: the service host: flags over the topology file, migrations, workers with connections. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "svc.h"
#include "tpc.h"
#include "txn.h"

struct svc {
        const svc_def *def;
        rpc_conf *conf;
        const char *conninfo;
        const char *mono_conninfo;
        rpc_server *server;
        rpc_faults *faults;
        void *data;
        pthread_mutex_t relay_mu; /* guards relays: handlers wake them while they stop */
        txn_relay *relays[2];     /* by svc_dataset; NULL when not running */
};

typedef struct svc_worker {
        svc *s;
        db_conn *db[2]; /* by svc_dataset */
} svc_worker;

const rpc_conf *
svc_conf(const svc *s)
{
        return s->conf;
}

const char *
svc_db_conninfo(const svc *s)
{
        return s->conninfo;
}

const char *
svc_name(const svc *s)
{
        return s->def->name;
}

void
svc_set_data(svc *s, void *data)
{
        s->data = data;
}

void *
svc_data(const svc *s)
{
        return s->data;
}

svc *
svc_of_call(rpc_call *call)
{
        svc_worker *w = rpc_call_worker(call);
        return w != NULL ? w->s : NULL;
}

svc_step_result
svc_step(const rpc_conf *conf, const char *service, const char *step)
{
        char key[128];
        const char *v;

        snprintf(key, sizeof(key), "step.%s", step);
        v = conf != NULL ? rpc_conf_get(conf, service, key) : NULL;
        if (v == NULL) {
                return SVC_STEP_OK;
        }
        if (strcmp(v, "fail") == 0) {
                return SVC_STEP_FAIL;
        }
        if (strcmp(v, "timeout") == 0) {
                return SVC_STEP_TIMEOUT;
        }
        return SVC_STEP_OK;
}

const char *
svc_tpc_step_vote(rpc_call *call, const char *service, const char *step, const char *fail_reason)
{
        svc *s = svc_of_call(call);
        const rpc_conf *conf = s != NULL ? svc_conf(s) : NULL;

        switch (svc_step(conf, service, step)) {
        case SVC_STEP_FAIL:
                return fail_reason;
        case SVC_STEP_TIMEOUT:
                txn_tpc_sleep_past_timeout(conf);
                return NULL;
        case SVC_STEP_OK:
        default:
                return NULL;
        }
}

svc_dataset
svc_call_dataset(const rpc_call *call)
{
        const char *ds = rpc_call_metadata(call, SVC_DATASET_KEY);
        return ds != NULL && strcmp(ds, SVC_DATASET_MONOLITH) == 0 ? SVC_DATASET_MONO
                                                                   : SVC_DATASET_SPLIT;
}

static const char *
dataset_conninfo(const svc *s, svc_dataset ds)
{
        return ds == SVC_DATASET_MONO ? s->mono_conninfo : s->conninfo;
}

rpc_status
svc_connect(svc *s, svc_dataset ds, db_conn **ret_conn, char *errbuf, size_t errlen)
{
        const char *conninfo = dataset_conninfo(s, ds);
        const svc_def *d = s->def;

        if (conninfo == NULL) {
                snprintf(errbuf, errlen, "no %s database configured",
                    ds == SVC_DATASET_MONO ? "monolith" : d->name);
                return RPC_UNAVAILABLE;
        }
        if (ds == SVC_DATASET_MONO && d->monolith_stmts != NULL) {
                return db_connect(
                    conninfo, d->monolith_stmts, d->n_monolith_stmts, ret_conn, errbuf, errlen);
        }
        return db_connect(conninfo, d->stmts, d->n_stmts, ret_conn, errbuf, errlen);
}

db_conn *
svc_db_dataset(rpc_call *call, svc_dataset ds)
{
        svc_worker *w = rpc_call_worker(call);
        char err[512];

        if (w == NULL) {
                rpc_call_set_message(call, "no database outside a worker");
                return NULL;
        }
        if (w->db[ds] == NULL) {
                if (svc_connect(w->s, ds, &w->db[ds], err, sizeof(err)) != RPC_OK) {
                        w->db[ds] = NULL;
                        rpc_call_set_message(call, "database unavailable: %s", err);
                        return NULL;
                }
                return w->db[ds];
        }
        if (db_ensure(w->db[ds]) != RPC_OK) {
                rpc_call_set_message(call, "database unavailable: %s", db_errmsg(w->db[ds]));
                return NULL;
        }
        return w->db[ds];
}

db_conn *
svc_db(rpc_call *call)
{
        return svc_db_dataset(call, svc_call_dataset(call));
}

static void *
worker_init(void *arg, int index)
{
        svc *s = arg;
        svc_worker *w = rpc_xcalloc(1, sizeof(*w));
        char err[512];

        w->s = s;
        if (s->def->needs_db) {
                /* A database that is down now is retried on the first call. */
                if (svc_connect(s, SVC_DATASET_SPLIT, &w->db[SVC_DATASET_SPLIT], err, sizeof(err))
                    != RPC_OK) {
                        fprintf(stderr, "mercato-%s: worker %d: %s (will retry)\n", s->def->name,
                            index, err);
                        w->db[SVC_DATASET_SPLIT] = NULL;
                }
        }
        return w;
}

static void
worker_fini(void *arg, void *state)
{
        svc_worker *w = state;

        (void) arg;
        if (w != NULL) {
                db_close(w->db[SVC_DATASET_SPLIT]);
                db_close(w->db[SVC_DATASET_MONO]);
                free(w);
        }
}

void
svc_relay_wake(svc *s, svc_dataset ds)
{
        if (s == NULL || (ds != SVC_DATASET_SPLIT && ds != SVC_DATASET_MONO)) {
                return;
        }
        pthread_mutex_lock(&s->relay_mu);
        txn_relay_wake(s->relays[ds]);
        pthread_mutex_unlock(&s->relay_mu);
}

/* Starts the outbox relay of each configured dataset, if the service has one. */
static rpc_status
relays_start(svc *s)
{
        static const char *const mono_metadata[] = { SVC_DATASET_KEY, SVC_DATASET_MONOLITH, NULL };
        const svc_def *d = s->def;

        if (d->relay_source == NULL) {
                return RPC_OK;
        }
        for (int ds = SVC_DATASET_SPLIT; ds <= SVC_DATASET_MONO; ds++) {
                txn_relay_opts o = {
                        .conninfo = dataset_conninfo(s, (svc_dataset) ds),
                        .source = d->relay_source,
                        .conf = s->conf,
                        .metadata = ds == SVC_DATASET_MONO ? mono_metadata : NULL,
                        .max_attempts
                        = (int) rpc_conf_get_int(s->conf, d->name, "relay_max_attempts", 0),
                        .poll_ms = rpc_conf_get_int(s->conf, d->name, "relay_poll_ms", 0),
                        .batch = (int) rpc_conf_get_int(s->conf, d->name, "relay_batch", 0),
                        .parallel = (int) rpc_conf_get_int(s->conf, d->name, "relay_parallel", 0),
                        .lease_ms = rpc_conf_get_int(s->conf, d->name, "relay_lease_ms", 0),
                };
                txn_relay *r = NULL;

                if (o.conninfo == NULL) {
                        continue;
                }
                if (txn_relay_start(&o, &r) != RPC_OK) {
                        fprintf(stderr,
                            "mercato-%s: cannot start the relay: bad relay_* "
                            "settings\n",
                            d->name);
                        return RPC_INVALID_ARGUMENT;
                }
                pthread_mutex_lock(&s->relay_mu);
                s->relays[ds] = r;
                pthread_mutex_unlock(&s->relay_mu);
        }
        return RPC_OK;
}

/* Stops the relays. A handler's svc_relay_wake after this finds none. */
static void
relays_stop(svc *s)
{
        for (int ds = SVC_DATASET_SPLIT; ds <= SVC_DATASET_MONO; ds++) {
                txn_relay *r;

                pthread_mutex_lock(&s->relay_mu);
                r = s->relays[ds];
                s->relays[ds] = NULL;
                pthread_mutex_unlock(&s->relay_mu);
                txn_relay_stop(r);
        }
}

static void
usage(const svc_def *def, FILE *out)
{
        fprintf(out,
            "usage: mercato-%s [--conf FILE] [--set SECTION.KEY=VALUE]... [--listen URL]\n"
            "       [--db CONNINFO] [--workers N] [--faults SPEC] [--fault-seed N]\n"
            "       [--migrate] [--help]\n"
            "\n"
            "Serves the %s service. Settings come from the topology file (default\n"
            "$MERCATO_CONF or deploy/local.conf), section [%s]; flags override it.\n"
            "  --migrate   apply the database migrations and exit\n"
            "  --faults    fault rules: 'PATTERN ACTION PROBABILITY [ARG]; ...'\n",
            def->name, def->name, def->name);
}

/* Applies a dataset's migrations over a connection of its own, retrying while the database
 * starts. */
static rpc_status
migrate(svc *s, svc_dataset ds)
{
        const svc_def *d = s->def;
        const db_migration_set *sets = d->migrations;
        size_t n_sets = d->n_migrations;
        db_conn *conn = NULL;
        char err[512];
        rpc_status st = RPC_UNAVAILABLE;

        if (ds == SVC_DATASET_MONO && d->monolith_migrations != NULL) {
                sets = d->monolith_migrations;
                n_sets = d->n_monolith_migrations;
        }
        if (n_sets == 0) {
                return RPC_OK;
        }
        for (int attempt = 0; attempt < 50; attempt++) {
                st = db_connect(dataset_conninfo(s, ds), NULL, 0, &conn, err, sizeof(err));
                if (st == RPC_OK) {
                        break;
                }
                usleep(200 * 1000);
        }
        if (st != RPC_OK) {
                fprintf(stderr, "mercato-%s: cannot connect to the database: %s\n", d->name, err);
                return st;
        }
        st = db_migrate(conn, sets, n_sets, err, sizeof(err));
        if (st != RPC_OK) {
                fprintf(stderr, "mercato-%s: migration failed: %s\n", d->name, err);
        }
        db_close(conn);
        return st;
}

int
svc_main(const svc_def *def, int argc, char **argv)
{
        static const struct option longopts[] = {
                { "conf", required_argument, NULL, 'c' },
                { "set", required_argument, NULL, 's' },
                { "listen", required_argument, NULL, 'l' },
                { "db", required_argument, NULL, 'd' },
                { "workers", required_argument, NULL, 'w' },
                { "faults", required_argument, NULL, 'f' },
                { "fault-seed", required_argument, NULL, 'S' },
                { "migrate", no_argument, NULL, 'm' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        svc s = { .def = def, .relay_mu = PTHREAD_MUTEX_INITIALIZER };
        const char *conf_path = NULL;
        char **sets = rpc_xcalloc((size_t) argc + 1, sizeof(char *));
        int n_sets = 0;
        bool only_migrate = false;
        char err[512];
        sigset_t stop_signals;
        int opt;
        int code = 1;

        /* Block the stop signals before any thread exists, so every thread inherits the
         * mask and the main thread alone takes them, with sigwait. */
        sigemptyset(&stop_signals);
        sigaddset(&stop_signals, SIGTERM);
        sigaddset(&stop_signals, SIGINT);
        pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
        signal(SIGPIPE, SIG_IGN);

        while ((opt = getopt_long(argc, argv, "c:s:l:d:w:f:S:mh", longopts, NULL)) != -1) {
                char buf[1024];
                switch (opt) {
                case 'c':
                        conf_path = optarg;
                        break;
                case 's':
                        sets[n_sets++] = rpc_xstrdup(optarg);
                        break;
                case 'l':
                case 'd':
                case 'w':
                case 'f':
                case 'S':
                        snprintf(buf, sizeof(buf), "%s.%s=%s", def->name,
                            opt == 'l'       ? "address"
                                : opt == 'd' ? "db"
                                : opt == 'w' ? "workers"
                                : opt == 'f' ? "faults"
                                             : "fault_seed",
                            optarg);
                        sets[n_sets++] = rpc_xstrdup(buf);
                        break;
                case 'm':
                        only_migrate = true;
                        break;
                case 'h':
                        usage(def, stdout);
                        code = 0;
                        goto out;
                default:
                        usage(def, stderr);
                        code = 2;
                        goto out;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "mercato-%s: unexpected argument '%s'\n", def->name, argv[optind]);
                code = 2;
                goto out;
        }
        if (rpc_conf_load(
                conf_path != NULL ? conf_path : rpc_conf_default_path(), &s.conf, err, sizeof(err))
            != RPC_OK) {
                if (conf_path != NULL) {
                        fprintf(stderr, "mercato-%s: %s\n", def->name, err);
                        code = 2;
                        goto out;
                }
                s.conf = rpc_conf_new();
        }
        for (int i = 0; i < n_sets; i++) {
                if (rpc_conf_set_arg(s.conf, sets[i]) != RPC_OK) {
                        fprintf(stderr, "mercato-%s: malformed setting '%s'\n", def->name, sets[i]);
                        code = 2;
                        goto out;
                }
        }
        s.conninfo = rpc_conf_get(s.conf, def->name, "db");
        if (def->needs_db && s.conninfo == NULL) {
                fprintf(stderr, "mercato-%s: no database: set [%s] db in the topology file\n",
                    def->name, def->name);
                code = 2;
                goto out;
        }
        s.mono_conninfo = rpc_conf_get(s.conf, "monolith", "db");
        if (def->needs_db && migrate(&s, SVC_DATASET_SPLIT) != RPC_OK) {
                goto out;
        }
        if (def->needs_db && s.mono_conninfo != NULL && migrate(&s, SVC_DATASET_MONO) != RPC_OK) {
                goto out;
        }
        if (only_migrate) {
                code = 0;
                goto out;
        }
        const char *address = rpc_conf_get(s.conf, def->name, "address");
        if (address == NULL) {
                fprintf(stderr, "mercato-%s: no address: set [%s] address\n", def->name, def->name);
                code = 2;
                goto out;
        }
        if (rpc_faults_parse(rpc_conf_get(s.conf, def->name, "faults"),
                (uint64_t) rpc_conf_get_int(s.conf, def->name, "fault_seed", 1), &s.faults, err,
                sizeof(err))
            != RPC_OK) {
                fprintf(stderr, "mercato-%s: %s\n", def->name, err);
                code = 2;
                goto out;
        }
        rpc_server_opts opts = {
                .name = def->name,
                .workers = (int) rpc_conf_get_int(s.conf, def->name, "workers", 4),
                .reserved = (int) rpc_conf_get_int(s.conf, def->name, "reserved_workers", 0),
                .contexts = (int) rpc_conf_get_int(s.conf, def->name, "contexts", 0),
                .recv_max = (size_t) rpc_conf_get_int(s.conf, def->name, "recv_max", 0),
                .worker_init = worker_init,
                .worker_fini = worker_fini,
                .arg = &s,
                .faults = s.faults,
        };
        if (opts.workers < 1 || opts.workers > 256) {
                fprintf(stderr, "mercato-%s: workers must be 1..256\n", def->name);
                code = 2;
                goto out;
        }
        if (opts.reserved < -1 || opts.reserved > 64) {
                fprintf(stderr, "mercato-%s: reserved_workers must be -1..64\n", def->name);
                code = 2;
                goto out;
        }
        if (rpc_server_new(&opts, &s.server) != RPC_OK) {
                fprintf(stderr, "mercato-%s: cannot create the server\n", def->name);
                goto out;
        }
        for (size_t i = 0; i < def->n_services; i++) {
                const svc_service *sv = &def->services[i];
                if (rpc_server_add_service(
                        s.server, sv->desc, sv->methods, sv->n_methods, err, sizeof(err))
                    != RPC_OK) {
                        fprintf(stderr, "mercato-%s: method table: %s\n", def->name, err);
                        goto out;
                }
        }
        if (rpc_server_listen(s.server, address, err, sizeof(err)) != RPC_OK) {
                fprintf(stderr, "mercato-%s: %s\n", def->name, err);
                goto out;
        }
        if (rpc_server_start(s.server) != RPC_OK) {
                fprintf(stderr, "mercato-%s: cannot start the server\n", def->name);
                goto out;
        }
        if (relays_start(&s) != RPC_OK) {
                relays_stop(&s);
                rpc_server_stop(s.server);
                goto out;
        }
        if (def->start != NULL && def->start(&s) != RPC_OK) {
                fprintf(stderr, "mercato-%s: start-up failed\n", def->name);
                relays_stop(&s);
                rpc_server_stop(s.server);
                goto out;
        }
        fprintf(stderr, "mercato-%s: serving on %s with %d workers\n", def->name, address,
            opts.workers);
        int sig = 0;
        sigwait(&stop_signals, &sig);
        fprintf(stderr, "mercato-%s: stopping on signal %d\n", def->name, sig);
        relays_stop(&s);
        if (def->stop != NULL) {
                def->stop(&s);
        }
        rpc_server_stop(s.server);
        code = 0;
out:
        rpc_server_free(s.server);
        rpc_faults_free(s.faults);
        rpc_conf_free(s.conf);
        for (int i = 0; i < n_sets; i++) {
                free(sets[i]);
        }
        free(sets);
        return code;
}
