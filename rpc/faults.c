/* faults.c: seeded, per-method fault rules: drop, delay, duplicate or fail a request. */
#include <errno.h>
#include <fnmatch.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "rpc.h"

typedef struct fault_rule {
        char *pattern; /* fnmatch glob over the full method name */
        rpc_fault_action action;
        double probability;    /* 0..1 */
        int64_t arg;           /* delay ms, or extra copies */
        rpc_status status;     /* for FAIL */
        _Atomic uint64_t seen; /* requests matched so far: the n of the decision */
} fault_rule;

struct rpc_faults {
        uint64_t seed;
        size_t n;
        fault_rule *rules;
        _Atomic uint64_t fired;
};

static const struct {
        const char *name;
        rpc_fault_action action;
} action_names[] = {
        { "drop", RPC_FAULT_DROP },
        { "delay", RPC_FAULT_DELAY },
        { "duplicate", RPC_FAULT_DUPLICATE },
        { "dup", RPC_FAULT_DUPLICATE },
        { "fail", RPC_FAULT_FAIL },
};

static rpc_status
parse_rule(char *text, fault_rule *r, char *errbuf, size_t errlen)
{
        char *tok[5] = { 0 };
        int n = 0;
        char *save = NULL;
        char *end = NULL;

        for (char *t = strtok_r(text, " \t:", &save); t != NULL;
             t = strtok_r(NULL, " \t:", &save)) {
                if (n == 4) {
                        snprintf(errbuf, errlen, "fault rule has too many fields: '%s'", tok[0]);
                        return RPC_INVALID_ARGUMENT;
                }
                tok[n++] = t;
        }
        if (n < 3) {
                snprintf(errbuf, errlen,
                    "fault rule needs PATTERN ACTION PROBABILITY [ARG], got %d field(s)", n);
                return RPC_INVALID_ARGUMENT;
        }
        r->action = RPC_FAULT_NONE;
        for (size_t i = 0; i < sizeof(action_names) / sizeof(action_names[0]); i++) {
                if (strcmp(tok[1], action_names[i].name) == 0) {
                        r->action = action_names[i].action;
                }
        }
        if (r->action == RPC_FAULT_NONE) {
                snprintf(errbuf, errlen, "unknown fault action '%s' (drop, delay, duplicate, fail)",
                    tok[1]);
                return RPC_INVALID_ARGUMENT;
        }
        errno = 0;
        r->probability = strtod(tok[2], &end);
        if (errno != 0 || *end != '\0' || !(r->probability >= 0.0 && r->probability <= 1.0)) {
                snprintf(
                    errbuf, errlen, "fault probability '%s' is not a number in [0, 1]", tok[2]);
                return RPC_INVALID_ARGUMENT;
        }
        r->status = RPC_UNAVAILABLE;
        r->arg = r->action == RPC_FAULT_DUPLICATE ? 1 : 0;
        if (r->action == RPC_FAULT_FAIL) {
                if (tok[3] != NULL && !rpc_status_from_name(tok[3], &r->status)) {
                        snprintf(errbuf, errlen, "unknown status '%s' in fail rule", tok[3]);
                        return RPC_INVALID_ARGUMENT;
                }
                if (r->status == RPC_OK) {
                        snprintf(errbuf, errlen, "a fail rule cannot fail with OK");
                        return RPC_INVALID_ARGUMENT;
                }
        } else if (tok[3] != NULL) {
                errno = 0;
                long long v = strtoll(tok[3], &end, 10);
                if (errno != 0 || *end != '\0' || v < 0 || v > 3600 * 1000) {
                        snprintf(
                            errbuf, errlen, "fault argument '%s' is not a count or ms", tok[3]);
                        return RPC_INVALID_ARGUMENT;
                }
                r->arg = v;
        }
        if (r->action == RPC_FAULT_DELAY && r->arg == 0) {
                snprintf(errbuf, errlen, "a delay rule needs its milliseconds");
                return RPC_INVALID_ARGUMENT;
        }
        if (r->action == RPC_FAULT_DUPLICATE && (r->arg < 1 || r->arg > 8)) {
                snprintf(errbuf, errlen, "a duplicate rule makes 1 to 8 extra copies");
                return RPC_INVALID_ARGUMENT;
        }
        r->pattern = rpc_xstrdup(tok[0]);
        return RPC_OK;
}

rpc_status
rpc_faults_parse(
    const char *spec, uint64_t seed, rpc_faults **ret_faults, char *errbuf, size_t errlen)
{
        rpc_faults *f = rpc_xcalloc(1, sizeof(*f));
        char *copy = rpc_xstrdup(spec != NULL ? spec : "");
        char *save = NULL;

        f->seed = seed;
        for (char *r = strtok_r(copy, ";\n", &save); r != NULL; r = strtok_r(NULL, ";\n", &save)) {
                if (strspn(r, " \t") == strlen(r)) {
                        continue;
                }
                f->rules = rpc_xrealloc(f->rules, (f->n + 1) * sizeof(*f->rules));
                memset(&f->rules[f->n], 0, sizeof(f->rules[0]));
                rpc_status st = parse_rule(r, &f->rules[f->n], errbuf, errlen);
                if (st != RPC_OK) {
                        free(copy);
                        rpc_faults_free(f);
                        return st;
                }
                f->n++;
        }
        free(copy);
        *ret_faults = f;
        return RPC_OK;
}

/* A uniform draw in [0, 1) that depends only on the seed, the rule and the match count. */
static double
draw(uint64_t seed, size_t rule, uint64_t n)
{
        uint64_t s
            = seed ^ ((uint64_t) (rule + 1) * 0xd1b54a32d192ed03ULL) ^ (n * 0x9e3779b97f4a7c15ULL);
        return (double) (rpc_rand_next(&s) >> 11) / 9007199254740992.0;
}

rpc_fault_decision
rpc_faults_decide(rpc_faults *f, const char *method)
{
        rpc_fault_decision d = { .action = RPC_FAULT_NONE, .rule = -1 };

        if (f == NULL) {
                return d;
        }
        for (size_t i = 0; i < f->n; i++) {
                fault_rule *r = &f->rules[i];
                if (fnmatch(r->pattern, method, 0) != 0) {
                        continue;
                }
                uint64_t n = atomic_fetch_add(&r->seen, 1);
                if (draw(f->seed, i, n) < r->probability) {
                        d.action = r->action;
                        d.arg = r->arg;
                        d.status = r->status;
                        d.rule = (int) i;
                        atomic_fetch_add(&f->fired, 1);
                        return d;
                }
        }
        return d;
}

size_t
rpc_faults_count(const rpc_faults *f)
{
        return f != NULL ? f->n : 0;
}

uint64_t
rpc_faults_fired(const rpc_faults *f)
{
        return f != NULL ? atomic_load(&((rpc_faults *) f)->fired) : 0;
}

void
rpc_faults_free(rpc_faults *f)
{
        if (f == NULL) {
                return;
        }
        for (size_t i = 0; i < f->n; i++) {
                free(f->rules[i].pattern);
        }
        free(f->rules);
        free(f);
}
