/* fuzz_host.h: mercato's services hosted in-process for the fuzz targets: frames in, replies out.
 *
 * A host is one service as its main.c wires it (svc_def, method tables, statement tables),
 * with an rpc_server that is never started and never listens, and one worker's state as
 * svc.c makes it, over the fake libpq of pq_fake.h. fuzz_host_call runs a request frame on
 * the calling thread through the server's own call path: the same functions a request read
 * off the socket goes through (envelope decode, the inline check, method lookup, fault
 * rules, deadline, payload unpack, the handler, the reply encoding).
 */
#ifndef MERCATO_FUZZ_HOST_H
#define MERCATO_FUZZ_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "rpc.h"
#include "svc.h"

/* svc.c, compiled into fuzz_svc.c: a service without flags, signals or relays. */
svc *fuzz_svc_new(const svc_def *def, rpc_conf *conf);
rpc_conf *fuzz_svc_conf(svc *s);
/* One worker's state (its connections) as the server's worker_init makes it. */
void *fuzz_svc_worker(svc *s);
/* Registers the def's services on srv, as svc_main does. */
rpc_status fuzz_svc_add_services(svc *s, rpc_server *srv, char *errbuf, size_t errlen);
void fuzz_svc_free(svc *s, void *worker);

/* server.c, compiled into fuzz_server.c. */
/* Sorts the methods and readies their statistics, as rpc_server_start does, without the
 * workers and the contexts. */
void fuzz_server_ready(rpc_server *srv);
/* Runs one received frame as the context callback and a worker would, then the copies a
 * duplicate fault made. Returns the reply frame to free, or NULL when none was sent (a
 * drop fault). */
uint8_t *fuzz_server_dispatch(
    rpc_server *srv, const uint8_t *frame, size_t len, void *worker, size_t *ret_len);
/* The registered methods, sorted: full name, input and output types. */
size_t fuzz_server_n_methods(const rpc_server *srv);
const char *fuzz_server_method(const rpc_server *srv, size_t i,
    const ProtobufCMessageDescriptor **ret_input, const ProtobufCMessageDescriptor **ret_output);

typedef struct fuzz_host {
        const svc_def *def;
        svc *svc;
        rpc_server *srv;
        void *worker;
} fuzz_host;

/* The six services, as their main.c wire them: 0 product, 1 cart, 2 user, 3 payment,
 * 4 dataplatform, 5 order. Without migrations: nothing is migrated. */
#define FUZZ_N_SERVICES 6
const svc_def *fuzz_service(size_t i);

/* A host for a service, with fault rules (borrowed, may be NULL) and a request size limit
 * (0: the server's default). Aborts on failure: the wiring is fixed. */
fuzz_host *fuzz_host_new(const svc_def *def, rpc_faults *faults, size_t recv_max);
void fuzz_host_free(fuzz_host *h);

/* One method of one host. */
typedef struct fuzz_method {
        fuzz_host *host;
        const char *name; /* "/mercato.product.v1.ProductService/GetProduct" */
        const ProtobufCMessageDescriptor *input;
        const ProtobufCMessageDescriptor *output;
} fuzz_method;

/* Hosts every service once (without fault rules) and returns every method of every host,
 * the standard ones included: in the order of fuzz_service, then by full name. The table
 * lives as long as the process. */
size_t fuzz_methods_all(const fuzz_method **ret_methods);

/* Runs a request frame; see fuzz_server_dispatch. */
uint8_t *fuzz_host_call(fuzz_host *h, const uint8_t *frame, size_t len, size_t *ret_len);

/* Checks a reply frame as a client would read it: strict decoding, a known status, and for
 * OK a payload that unpacks strictly as output. Aborts with what is wrong. */
void fuzz_check_reply(
    const char *method, const ProtobufCMessageDescriptor *output, const uint8_t *frame, size_t len);

#endif
