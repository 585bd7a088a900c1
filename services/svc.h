/* svc.h: the host every service runs in: flags, the topology file, signals, workers, database. */
#ifndef MERCATO_SVC_H
#define MERCATO_SVC_H

#include "db.h"
#include "rpc.h"

typedef struct svc svc;

/* One protobuf service a process serves, with its method table. */
typedef struct svc_service {
        const ProtobufCServiceDescriptor *desc;
        const rpc_method *methods;
        size_t n_methods;
} svc_service;

typedef struct svc_def {
        const char *name;            /* the topology section: "product" */
        const svc_service *services; /* served beside the standard methods */
        size_t n_services;
        const db_stmt_table *stmts; /* prepared on every worker's connection */
        size_t n_stmts;
        const db_migration_set *migrations; /* applied at start-up, in order */
        size_t n_migrations;
        /* For the monolith dataset: what its connection prepares and migrates. NULL means
         * the same as above. The order service, which runs a whole order in one local
         * transaction there, lists every store. */
        const db_stmt_table *monolith_stmts;
        size_t n_monolith_stmts;
        const db_migration_set *monolith_migrations;
        size_t n_monolith_migrations;
        bool needs_db; /* false: no database at all */
        /* The source whose outbox this service drains (txn_outbox.source), or NULL for no
         * relay. When set, a relay runs on each dataset, started after the server starts
         * and stopped before it stops; the monolith one delivers with "dataset: monolith". */
        const char *relay_source;
        /* Optional hooks, run after the server is listening and before it stops. */
        rpc_status (*start)(svc *s);
        void (*stop)(svc *s);
} svc_def;

/* Runs a service: parses flags, reads the topology file, migrates, serves until SIGTERM or
 * SIGINT, then stops gracefully. Returns the process exit code.
 *
 * Flags: --conf FILE, --set SECTION.KEY=VALUE (repeatable), --listen URL, --db CONNINFO,
 * --workers N, --faults SPEC, --fault-seed N, --migrate (migrate and exit), --help. */
int svc_main(const svc_def *def, int argc, char **argv);

/* The configuration, after flags; valid while the service runs. */
const rpc_conf *svc_conf(const svc *s);

/* This service's database conninfo, or NULL. */
const char *svc_db_conninfo(const svc *s);

/* The service's name. */
const char *svc_name(const svc *s);

/*
 * Step switches
 *
 * Tests force a step of the order flow to fail or hang, in every mode, from the topology:
 *
 *     [user]
 *     step.debit = fail          # or: timeout, ok (the default)
 *
 * The step names are those of the order flow: order.create, product.reserve, user.coupon,
 * user.debit, payment.capture, order.complete. "fail" is the step's business failure (its
 * cancel reason); "timeout" means the step does not answer before its deadline. The switch
 * is read by whoever runs the step: the service itself (saga, 2pc), or the order service
 * for the monolith mode, which reads the same topology file.
 */
typedef enum svc_step_result {
        SVC_STEP_OK = 0,      /* run the step */
        SVC_STEP_FAIL = 1,    /* fail it, as a business failure */
        SVC_STEP_TIMEOUT = 2, /* do not answer in time */
} svc_step_result;

/* The switch of `step` ("debit") of `service` ("user"), from conf; OK when unset or
 * unknown. */
svc_step_result svc_step(const rpc_conf *conf, const char *service, const char *step);

/* A 2pc participant's vote under the switch of `step` of `service`, for the call's
 * service: `fail_reason` when it is set to fail; NULL (vote yes) otherwise, after sleeping
 * past the coordinator's deadline when it is set to time out. */
const char *svc_tpc_step_vote(
    rpc_call *call, const char *service, const char *step, const char *fail_reason);

/* Opaque per-service state that hooks and handlers share. */
void svc_set_data(svc *s, void *data);
void *svc_data(const svc *s);

/* The service a call belongs to (set as the server's worker argument). */
svc *svc_of_call(rpc_call *call);

/*
 * Datasets
 *
 * Every service serves two datasets: its own database ("split", used by the saga and 2pc
 * modes) and the shared monolith database, where the monolith mode runs a whole order as
 * one local transaction. A call picks the monolith dataset with the metadata entry
 * "dataset: monolith"; anything else means the service's own database.
 */
#define SVC_DATASET_KEY "dataset"
#define SVC_DATASET_MONOLITH "monolith"

typedef enum svc_dataset {
        SVC_DATASET_SPLIT = 0, /* the service's own database */
        SVC_DATASET_MONO = 1,  /* the shared monolith database */
} svc_dataset;

/* The dataset a call asks for. */
svc_dataset svc_call_dataset(const rpc_call *call);

/* The worker's connection to the call's dataset, made sure to be up. Returns NULL, with
 * the reason set as the call's message, when that database cannot be reached; the handler
 * then returns RPC_UNAVAILABLE. */
db_conn *svc_db(rpc_call *call);

/* The worker's connection to a given dataset. */
db_conn *svc_db_dataset(rpc_call *call, svc_dataset ds);

/* Wakes the dataset's relay after a commit that added events to the outbox, so that it
 * delivers now rather than at its next poll. Safe from any thread, also while the service
 * stops. Accepts NULL and a service without a relay. Inside a handler, s is
 * svc_of_call(call). */
void svc_relay_wake(svc *s, svc_dataset ds);

/* Opens a fresh connection to a dataset with the service's statements, for threads of the
 * service's own (relays, recovery). The caller closes it. */
rpc_status svc_connect(
    svc *s, svc_dataset ds, db_conn **ret_conn, char *errbuf, size_t errlen) RPC_WARN_UNUSED;

#endif
