/* fuzz_svc.c: the service host's worker state made in-process, for the fuzz targets.
 *
 * services/svc.c is compiled into this file, so that handlers reach their database through
 * the real svc_db and worker_init, on a svc that no svc_main made: no flags, no signals, no
 * listening, no relays. Every symbol of svc.c is defined here, so the fuzz targets never
 * pull svc.o out of the mercato_svc archive.
 */
#include "svc.c"

#include "fuzz_host.h"

svc *
fuzz_svc_new(const svc_def *def, rpc_conf *conf)
{
        svc *s = rpc_xcalloc(1, sizeof(*s));

        s->def = def;
        s->conf = conf;
        /* Any conninfo: the fake libpq connects to anything. */
        s->conninfo = "dbname=fuzz";
        s->mono_conninfo = "dbname=fuzz_monolith";
        pthread_mutex_init(&s->relay_mu, NULL);
        return s;
}

rpc_conf *
fuzz_svc_conf(svc *s)
{
        return s->conf;
}

void *
fuzz_svc_worker(svc *s)
{
        return worker_init(s, 0);
}

rpc_status
fuzz_svc_add_services(svc *s, rpc_server *srv, char *errbuf, size_t errlen)
{
        s->server = srv;
        for (size_t i = 0; i < s->def->n_services; i++) {
                const svc_service *sv = &s->def->services[i];
                rpc_status st = rpc_server_add_service(
                    srv, sv->desc, sv->methods, sv->n_methods, errbuf, errlen);

                if (st != RPC_OK) {
                        return st;
                }
        }
        return RPC_OK;
}

void
fuzz_svc_free(svc *s, void *worker)
{
        if (s == NULL) {
                return;
        }
        worker_fini(s, worker);
        rpc_conf_free(s->conf);
        pthread_mutex_destroy(&s->relay_mu);
        free(s);
}
