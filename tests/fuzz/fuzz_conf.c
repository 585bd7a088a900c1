/* fuzz_conf.c: libFuzzer target: the topology file, `--set` overrides and fault rules.
 *
 * The input is read three ways:
 *   - as a topology file (rpc_conf_parse), then every section's usual keys are read, and
 *     its `faults` and `fault_seed` are parsed as a service would;
 *   - line by line as `--set SECTION.KEY=VALUE` arguments (rpc_conf_set_arg): an accepted
 *     one must read back as set;
 *   - as a fault spec `PATTERN ACTION PROB [ARG]; ...` (rpc_faults_parse): an accepted one
 *     must only decide what a rule may (a known action; fail with a status other than OK;
 *     1..8 copies; a delay of 1 ms to an hour).
 */
#include <stdio.h>
#include <string.h>

#include "rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const probe_methods[] = {
        "/mercato.product.v1.ProductService/GetProduct",
        "/mercato.order.v1.OrderService/PlaceOrder",
        "/mercato.rpc.v1.StandardService/Health",
        "/mercato.event.v1.EventSink/Deliver",
        "",
};

static void
check_faults(const char *spec, uint64_t seed)
{
        rpc_faults *f = NULL;
        char err[512];

        if (rpc_faults_parse(spec, seed, &f, err, sizeof(err)) != RPC_OK) {
                return;
        }
        for (size_t round = 0; round < 4; round++) {
                for (size_t i = 0; i < sizeof(probe_methods) / sizeof(probe_methods[0]); i++) {
                        rpc_fault_decision d = rpc_faults_decide(f, probe_methods[i]);
                        bool ok = d.rule < (int) rpc_faults_count(f);

                        switch (d.action) {
                        case RPC_FAULT_NONE:
                                ok = ok && d.rule == -1;
                                break;
                        case RPC_FAULT_DROP:
                                break;
                        case RPC_FAULT_DELAY:
                                ok = ok && d.arg >= 1 && d.arg <= 3600 * 1000;
                                break;
                        case RPC_FAULT_DUPLICATE:
                                ok = ok && d.arg >= 1 && d.arg <= 8;
                                break;
                        case RPC_FAULT_FAIL:
                                ok = ok && d.status != RPC_OK && d.status <= RPC_STATUS_MAX;
                                break;
                        default:
                                ok = false;
                                break;
                        }
                        if (!ok) {
                                fprintf(stderr,
                                    "fuzz: bad fault decision %d (arg %lld) of rule %d\n",
                                    (int) d.action, (long long) d.arg, d.rule);
                                abort();
                        }
                }
        }
        rpc_faults_free(f);
}

static void
check_conf(const uint8_t *data, size_t size)
{
        static const char *const keys[]
            = { "address", "db", "workers", "faults", "mode", "step.debit" };
        rpc_conf *conf = NULL;
        const char **sections;
        char err[512];

        if (rpc_conf_parse((const char *) data, size, &conf, err, sizeof(err)) != RPC_OK) {
                return;
        }
        size_t n = rpc_conf_sections(conf, &sections);
        for (size_t i = 0; i < n; i++) {
                if (sections[i] == NULL || sections[i][0] == '\0') {
                        fprintf(stderr, "fuzz: an empty section name\n");
                        abort();
                }
                for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
                        const char *v = rpc_conf_get(conf, sections[i], keys[k]);
                        if (v != NULL
                            && (v[0] == ' ' || (v[0] != '\0' && v[strlen(v) - 1] == ' '))) {
                                fprintf(stderr, "fuzz: a value kept its spaces: '%s'\n", v);
                                abort();
                        }
                        (void) rpc_conf_get_int(conf, sections[i], keys[k], -1);
                }
                check_faults(rpc_conf_get(conf, sections[i], "faults"),
                    (uint64_t) rpc_conf_get_int(conf, sections[i], "fault_seed", 1));
        }
        rpc_conf_free(conf);
}

static void
check_set_args(const char *text)
{
        rpc_conf *conf = rpc_conf_new();
        char *copy = rpc_xstrdup(text);
        char *save = NULL;

        for (char *arg = strtok_r(copy, "\n", &save); arg != NULL;
             arg = strtok_r(NULL, "\n", &save)) {
                if (rpc_conf_set_arg(conf, arg) != RPC_OK) {
                        continue;
                }
                /* SECTION is up to the first dot, KEY up to the first '='. */
                char section[256];
                char key[256];
                const char *dot = strchr(arg, '.');
                const char *eq = strchr(arg, '=');
                snprintf(section, sizeof(section), "%.*s", (int) (dot - arg), arg);
                snprintf(key, sizeof(key), "%.*s", (int) (eq - dot - 1), dot + 1);
                const char *v = rpc_conf_get(conf, section, key);
                if (v == NULL || strcmp(v, eq + 1) != 0) {
                        fprintf(stderr, "fuzz: --set %s reads back as '%s'\n", arg,
                            v != NULL ? v : "(none)");
                        abort();
                }
        }
        free(copy);
        rpc_conf_free(conf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *text = rpc_xmalloc(size + 1);

        memcpy(text, data, size);
        text[size] = '\0';
        check_conf(data, size);
        check_set_args(text);
        check_faults(text, size);
        free(text);
        return 0;
}
