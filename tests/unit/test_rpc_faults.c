/* test_rpc_faults.c: fault specs: parsing, seeded decisions, probabilities and method patterns. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rpc.h"

#define ECHO "/mercato.test.v1.EchoService/Echo"
#define COUNT "/mercato.test.v1.EchoService/Count"
#define GET "/mercato.product.v1.ProductService/GetProduct"

static rpc_faults *
parse_ok(const char *spec, uint64_t seed)
{
        rpc_faults *f = NULL;
        char err[256] = "";

        if (rpc_faults_parse(spec, seed, &f, err, sizeof(err)) != RPC_OK) {
                fail_msg("'%s' refused: %s", spec != NULL ? spec : "(null)", err);
        }
        assert_non_null(f);
        return f;
}

/* Each malformed spec is refused with a reason, and no set is returned. */
static void
test_rpc_faults_parse_errors(void **state)
{
        static const char *const bad[] = {
                "*",                         /* no action */
                "* drop",                    /* no probability */
                "* explode 0.5",             /* unknown action */
                "* drop 1.5",                /* probability above 1 */
                "* drop -0.1",               /* probability below 0 */
                "* drop half",               /* not a number */
                "* drop 0.5x",               /* trailing garbage */
                "* fail 1.0 NO_SUCH_STATUS", /* unknown status */
                "* fail 1.0 OK",             /* failing with OK is no failure */
                "* delay 1.0",               /* a delay needs its milliseconds */
                "* delay 1.0 soon",          /* not a number */
                "* delay 1.0 -5",            /* negative */
                "* duplicate 1.0 0",         /* zero extra copies */
                "* delay 1.0 5 6",           /* too many fields */
                "* drop 0.1; * bogus 1",     /* a good rule then a bad one */
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                rpc_faults *f = (rpc_faults *) 0x1;
                char err[256] = "";

                if (rpc_faults_parse(bad[i], 1, &f, err, sizeof(err)) != RPC_INVALID_ARGUMENT) {
                        fail_msg("'%s' was accepted", bad[i]);
                }
                assert_ptr_equal(f, (rpc_faults *) 0x1);
                if (err[0] == '\0') {
                        fail_msg("'%s' refused without a reason", bad[i]);
                }
        }
}

/* Empty specs make an empty set; rules split on ';', fields on spaces or ':'; arguments
 * default as documented. */
static void
test_rpc_faults_parse_accepts(void **state)
{
        rpc_faults *f = parse_ok(NULL, 1);
        assert_int_equal(rpc_faults_count(f), 0);
        assert_int_equal(rpc_faults_decide(f, ECHO).action, RPC_FAULT_NONE);
        assert_int_equal(rpc_faults_decide(f, ECHO).rule, -1);
        rpc_faults_free(f);

        f = parse_ok("", 1);
        assert_int_equal(rpc_faults_count(f), 0);
        rpc_faults_free(f);

        f = parse_ok(
            " *Echo drop 1.0 ;; *Count:duplicate:1.0 ; *Get* fail 1 ; *Sleep* delay 0.5 100 ", 1);
        assert_int_equal(rpc_faults_count(f), 4);
        rpc_fault_decision d = rpc_faults_decide(f, COUNT);
        assert_int_equal(d.action, RPC_FAULT_DUPLICATE);
        assert_int_equal(d.arg, 1); /* one extra copy by default */
        assert_int_equal(d.rule, 1);
        d = rpc_faults_decide(f, GET);
        assert_int_equal(d.action, RPC_FAULT_FAIL);
        assert_int_equal(d.status, RPC_UNAVAILABLE); /* the default */
        assert_int_equal(d.rule, 2);
        rpc_faults_free(f);

        f = parse_ok("*Echo:fail:1.0:aborted", 1);
        d = rpc_faults_decide(f, ECHO);
        assert_int_equal(d.action, RPC_FAULT_FAIL);
        assert_int_equal(d.status, RPC_ABORTED);
        rpc_faults_free(f);

        f = parse_ok("*Echo delay 1 250;*Count duplicate 1 3", 1);
        d = rpc_faults_decide(f, ECHO);
        assert_int_equal(d.action, RPC_FAULT_DELAY);
        assert_int_equal(d.arg, 250);
        d = rpc_faults_decide(f, COUNT);
        assert_int_equal(d.action, RPC_FAULT_DUPLICATE);
        assert_int_equal(d.arg, 3);
        rpc_faults_free(f);
}

#define DRAWS 10000

static void
sequence(const char *spec, uint64_t seed, int *out, int n)
{
        rpc_faults *f = parse_ok(spec, seed);

        for (int i = 0; i < n; i++) {
                rpc_fault_decision d = rpc_faults_decide(f, ECHO);

                out[i] = d.action == RPC_FAULT_NONE ? -1 : d.rule * 16 + (int) d.action;
        }
        rpc_faults_free(f);
}

#define MIXED "*Echo fail 0.3 ABORTED; *Echo drop 0.3; *Echo delay 0.3 5"

/* The same seed gives the same decisions; another seed gives others. */
static void
test_rpc_faults_seed_determinism(void **state)
{
        static int a[DRAWS], b[DRAWS], c[DRAWS];
        int differ = 0;

        sequence(MIXED, 12345, a, DRAWS);
        sequence(MIXED, 12345, b, DRAWS);
        assert_memory_equal(a, b, sizeof(a));

        sequence(MIXED, 12346, c, DRAWS);
        for (int i = 0; i < DRAWS; i++) {
                differ += a[i] != c[i];
        }
        /* Two independent sequences over four outcomes disagree about half the time or more. */
        assert_true(differ > DRAWS / 3);
}

typedef struct draw_arg {
        rpc_faults *f;
        int n;
        int fired;
} draw_arg;

static void *
draw_thread(void *p)
{
        draw_arg *a = p;

        for (int i = 0; i < a->n; i++) {
                a->fired += rpc_faults_decide(a->f, ECHO).action != RPC_FAULT_NONE;
        }
        return NULL;
}

/* Four threads drawing at once fire exactly as often as one thread making the same number of
 * draws: the decision for the n-th request does not depend on who makes it. */
static void
test_rpc_faults_decisions_independent_of_threads(void **state)
{
        static int one[DRAWS];
        int single = 0, total = 0;
        rpc_faults *f = parse_ok("*Echo drop 0.37", 777);
        pthread_t t[4];
        draw_arg args[4];

        sequence("*Echo drop 0.37", 777, one, DRAWS);
        for (int i = 0; i < DRAWS; i++) {
                single += one[i] != -1;
        }
        for (int i = 0; i < 4; i++) {
                args[i] = (draw_arg) { .f = f, .n = DRAWS / 4 };
                assert_int_equal(pthread_create(&t[i], NULL, draw_thread, &args[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
                pthread_join(t[i], NULL);
                total += args[i].fired;
        }
        assert_int_equal(total, single);
        assert_int_equal(rpc_faults_fired(f), (uint64_t) single);
        rpc_faults_free(f);
}

/* A rule of probability p fires for about p of 10000 requests (within 6 standard deviations),
 * never at 0 and always at 1; the fired counter agrees. */
static void
test_rpc_faults_probability(void **state)
{
        static const double ps[] = { 0.01, 0.1, 0.3, 0.5, 0.9 };

        for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
                char spec[64];
                int fired = 0;

                snprintf(spec, sizeof(spec), "*Echo drop %.2f", ps[i]);
                rpc_faults *f = parse_ok(spec, 2024 + i);
                for (int k = 0; k < DRAWS; k++) {
                        fired += rpc_faults_decide(f, ECHO).action == RPC_FAULT_DROP;
                }
                double dev = fired - ps[i] * DRAWS;
                double var = DRAWS * ps[i] * (1 - ps[i]);
                if (dev * dev > 36 * var) {
                        fail_msg("p=%.2f fired %d of %d", ps[i], fired, DRAWS);
                }
                assert_int_equal(rpc_faults_fired(f), (uint64_t) fired);
                rpc_faults_free(f);
        }

        rpc_faults *never = parse_ok("*Echo drop 0", 5);
        rpc_faults *always = parse_ok("*Echo drop 1", 5);
        for (int k = 0; k < DRAWS; k++) {
                assert_int_equal(rpc_faults_decide(never, ECHO).action, RPC_FAULT_NONE);
                assert_int_equal(rpc_faults_decide(always, ECHO).action, RPC_FAULT_DROP);
        }
        assert_int_equal(rpc_faults_fired(never), 0);
        assert_int_equal(rpc_faults_fired(always), DRAWS);
        rpc_faults_free(never);
        rpc_faults_free(always);
}

/* Patterns are globs over the full method name; the first rule that matches and fires
 * decides, and a rule that does not fire passes the request on to the next. */
static void
test_rpc_faults_pattern_matching(void **state)
{
        rpc_faults *f = parse_ok("/mercato.test.v1.EchoService/Echo fail 1.0 NOT_FOUND;"
                                 "/mercato.test.v1.EchoService/* drop 1.0;"
                                 "*Product* delay 1.0 40",
            3);

        rpc_fault_decision d = rpc_faults_decide(f, ECHO);
        assert_int_equal(d.action, RPC_FAULT_FAIL);
        assert_int_equal(d.status, RPC_NOT_FOUND);
        assert_int_equal(d.rule, 0);

        d = rpc_faults_decide(f, COUNT);
        assert_int_equal(d.action, RPC_FAULT_DROP);
        assert_int_equal(d.rule, 1);

        d = rpc_faults_decide(f, GET);
        assert_int_equal(d.action, RPC_FAULT_DELAY);
        assert_int_equal(d.arg, 40);
        assert_int_equal(d.rule, 2);

        static const char *const misses[] = {
                "/mercato.rpc.v1.StandardService/Health",
                "/mercato.test.v1.EchoServiceX/Echo",
                "/mercato.test.v1.EchoService", /* no method part for the '*' to cover */
                "",
        };
        for (size_t i = 0; i < sizeof(misses) / sizeof(misses[0]); i++) {
                d = rpc_faults_decide(f, misses[i]);
                assert_int_equal(d.action, RPC_FAULT_NONE);
                assert_int_equal(d.rule, -1);
        }
        /* An exact pattern matches nothing longer or shorter. */
        assert_int_equal(rpc_faults_decide(f, "/mercato.test.v1.EchoService/EchoX").rule, 1);
        rpc_faults_free(f);

        /* A rule that matches but does not fire falls through to the next. */
        f = parse_ok("*Echo fail 0.0; *Echo duplicate 1.0 2", 3);
        d = rpc_faults_decide(f, ECHO);
        assert_int_equal(d.action, RPC_FAULT_DUPLICATE);
        assert_int_equal(d.arg, 2);
        assert_int_equal(d.rule, 1);
        rpc_faults_free(f);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rpc_faults_parse_errors),
                cmocka_unit_test(test_rpc_faults_parse_accepts),
                cmocka_unit_test(test_rpc_faults_seed_determinism),
                cmocka_unit_test(test_rpc_faults_decisions_independent_of_threads),
                cmocka_unit_test(test_rpc_faults_probability),
                cmocka_unit_test(test_rpc_faults_pattern_matching),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
