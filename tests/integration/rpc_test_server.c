/* rpc_test_server.c: serves the test EchoService with the RPC runtime, for integration and interop tests. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "echo_service.h"
#include "rpc.h"

#define MAX_LISTEN 16

static void
usage(FILE *out)
{
        fprintf(out,
            "usage: rpc_test_server --listen URL [--listen URL ...] [--workers N]\n"
            "                       [--recv-max BYTES] [--faults SPEC] [--fault-seed N]\n"
            "prints \"ready\" once it serves; SIGTERM or SIGINT stops it.\n");
}

static bool
parse_int(const char *s, long long min, long long *ret)
{
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 0);
        if (errno != 0 || end == s || *end != '\0' || v < min) {
                return false;
        }
        *ret = v;
        return true;
}

int
main(int argc, char **argv)
{
        static const struct option longopts[] = {
                { "listen", required_argument, NULL, 'l' },
                { "workers", required_argument, NULL, 'w' },
                { "recv-max", required_argument, NULL, 'r' },
                { "faults", required_argument, NULL, 'f' },
                { "fault-seed", required_argument, NULL, 's' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        const char *urls[MAX_LISTEN];
        int n_urls = 0;
        long long workers = 2, recv_max = 0, seed = 1;
        const char *spec = NULL;
        rpc_faults *faults = NULL;
        rpc_server *srv = NULL;
        char err[256] = "";
        sigset_t sigs;
        int opt, sig;

        while ((opt = getopt_long(argc, argv, "l:w:r:f:s:h", longopts, NULL)) != -1) {
                switch (opt) {
                case 'l':
                        if (n_urls == MAX_LISTEN) {
                                fprintf(stderr, "rpc_test_server: too many --listen\n");
                                return 2;
                        }
                        urls[n_urls++] = optarg;
                        break;
                case 'w':
                        if (!parse_int(optarg, 1, &workers)) {
                                fprintf(stderr, "rpc_test_server: bad --workers: %s\n", optarg);
                                return 2;
                        }
                        break;
                case 'r':
                        if (!parse_int(optarg, 1, &recv_max)) {
                                fprintf(stderr, "rpc_test_server: bad --recv-max: %s\n", optarg);
                                return 2;
                        }
                        break;
                case 'f':
                        spec = optarg;
                        break;
                case 's':
                        if (!parse_int(optarg, 0, &seed)) {
                                fprintf(stderr, "rpc_test_server: bad --fault-seed: %s\n", optarg);
                                return 2;
                        }
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (n_urls == 0 || optind != argc) {
                usage(stderr);
                return 2;
        }

        /* Blocked before any thread starts, so that every thread inherits the mask and
         * sigwait below is the only taker. */
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGINT);
        pthread_sigmask(SIG_BLOCK, &sigs, NULL);

        if (rpc_faults_parse(spec, (uint64_t) seed, &faults, err, sizeof(err)) != RPC_OK) {
                fprintf(stderr, "rpc_test_server: bad --faults: %s\n", err);
                return 2;
        }

        rpc_server_opts opts = {
                .name = "rpc_test_server",
                .workers = (int) workers,
                .recv_max = (size_t) recv_max,
                .faults = faults,
        };
        rpc_status st = rpc_server_new(&opts, &srv);
        if (st != RPC_OK) {
                fprintf(
                    stderr, "rpc_test_server: cannot create the server: %s\n", rpc_status_name(st));
                rpc_faults_free(faults);
                return 1;
        }
        if (echo_service_add(srv, err, sizeof(err)) != RPC_OK) {
                fprintf(stderr, "rpc_test_server: cannot add EchoService: %s\n", err);
                goto fail;
        }
        for (int i = 0; i < n_urls; i++) {
                if (rpc_server_listen(srv, urls[i], err, sizeof(err)) != RPC_OK) {
                        fprintf(stderr, "rpc_test_server: cannot listen on %s: %s\n", urls[i], err);
                        goto fail;
                }
        }
        st = rpc_server_start(srv);
        if (st != RPC_OK) {
                fprintf(stderr, "rpc_test_server: cannot start: %s\n", rpc_status_name(st));
                goto fail;
        }

        printf("ready\n");
        fflush(stdout);

        do {
                if (sigwait(&sigs, &sig) != 0) {
                        sig = 0;
                }
        } while (sig != SIGTERM && sig != SIGINT);

        rpc_server_stop(srv);
        echo_service_wait_idle();
        rpc_server_free(srv);
        rpc_faults_free(faults);
        echo_service_reset();
        return 0;

fail:
        rpc_server_free(srv);
        rpc_faults_free(faults);
        return 1;
}
