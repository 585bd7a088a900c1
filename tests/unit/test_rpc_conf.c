/* test_rpc_conf.c: the topology file: sections, defaults, comments, overrides and errors. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc.h"

static const char topology[]
    = "# mercato topology\n"
      "[defaults]\n"
      "workers = 4\n"
      "timeout_ms = 5000\n"
      "\n"
      "[product]\n"
      "address = tcp://127.0.0.1:7101\n"
      "db = host=127.0.0.1 port=54329 dbname=mercato_product user=mercato\n"
      "\n"
      "   # an indented comment\n"
      "[cart]\n"
      "address = tcp://127.0.0.1:7102\n"
      "workers = 2\n";

static rpc_conf *
parse_ok(const char *text)
{
        rpc_conf *conf = NULL;
        char err[256] = "";

        if (rpc_conf_parse(text, strlen(text), &conf, err, sizeof(err)) != RPC_OK) {
                fail_msg("refused: %s", err);
        }
        assert_non_null(conf);
        return conf;
}

/* True if errbuf holds the number n as a whole number (not as part of a longer one). */
static bool
mentions_number(const char *s, long n)
{
        for (const char *p = s; *p != '\0'; p++) {
                if (isdigit((unsigned char) *p) && (p == s || !isdigit((unsigned char) p[-1]))) {
                        if (strtol(p, NULL, 10) == n) {
                                return true;
                        }
                }
        }
        return false;
}

/* Sections are read in file order, each with its own keys. */
static void
test_rpc_conf_sections(void **state)
{
        rpc_conf *conf = parse_ok(topology);
        const char **names = NULL;
        size_t n = rpc_conf_sections(conf, &names);

        assert_int_equal(n, 3);
        assert_string_equal(names[0], "defaults");
        assert_string_equal(names[1], "product");
        assert_string_equal(names[2], "cart");
        assert_string_equal(rpc_conf_get(conf, "product", "address"), "tcp://127.0.0.1:7101");
        assert_string_equal(rpc_conf_get(conf, "cart", "address"), "tcp://127.0.0.1:7102");
        /* A value keeps its inner spaces and '=' signs: the first '=' splits. */
        assert_string_equal(rpc_conf_get(conf, "product", "db"),
            "host=127.0.0.1 port=54329 dbname=mercato_product user=mercato");
        rpc_conf_free(conf);
}

/* A key missing from a section comes from [defaults]; one missing there too is NULL, and
 * get_int then gives its default. */
static void
test_rpc_conf_defaults_fallback(void **state)
{
        rpc_conf *conf = parse_ok(topology);

        assert_string_equal(rpc_conf_get(conf, "product", "workers"), "4");
        assert_string_equal(rpc_conf_get(conf, "cart", "workers"), "2");
        assert_int_equal(rpc_conf_get_int(conf, "product", "workers", -1), 4);
        assert_int_equal(rpc_conf_get_int(conf, "cart", "workers", -1), 2);
        assert_int_equal(rpc_conf_get_int(conf, "user", "timeout_ms", -1), 5000);
        assert_null(rpc_conf_get(conf, "product", "nothing"));
        assert_null(rpc_conf_get(conf, "nosuchsection", "address"));
        assert_int_equal(rpc_conf_get_int(conf, "product", "nothing", 77), 77);
        /* Not an integer: the default. */
        assert_int_equal(rpc_conf_get_int(conf, "product", "address", 78), 78);
        rpc_conf_free(conf);
}

/* Comment lines, indented or not, and blank lines are skipped; '#' inside a value is kept. */
static void
test_rpc_conf_comments(void **state)
{
        rpc_conf *conf = parse_ok("# top\n"
                                  "\n"
                                  "[product]\n"
                                  "# address = tcp://wrong\n"
                                  "      # indented = no\n"
                                  "\t# tabbed = no\n"
                                  "address = tcp://127.0.0.1:7101\n"
                                  "note = a#b\n"
                                  "\n\n");

        assert_string_equal(rpc_conf_get(conf, "product", "address"), "tcp://127.0.0.1:7101");
        assert_string_equal(rpc_conf_get(conf, "product", "note"), "a#b");
        assert_null(rpc_conf_get(conf, "product", "indented"));
        assert_null(rpc_conf_get(conf, "product", "tabbed"));
        assert_null(rpc_conf_get(conf, "product", "# address"));
        rpc_conf_free(conf);
}

/* Spaces around keys, values, section names and the '=' are trimmed; inner ones are kept; an
 * empty value is an empty string. The last line needs no newline. */
static void
test_rpc_conf_whitespace(void **state)
{
        rpc_conf *conf = parse_ok("   [  product  ]   \n"
                                  "   address    =    tcp://127.0.0.1:7101    \n"
                                  "\tname\t=\tthe product service\t\n"
                                  "empty =\n"
                                  "spaced=x y  z");

        assert_string_equal(rpc_conf_get(conf, "product", "address"), "tcp://127.0.0.1:7101");
        assert_string_equal(rpc_conf_get(conf, "product", "name"), "the product service");
        assert_string_equal(rpc_conf_get(conf, "product", "empty"), "");
        assert_int_equal(rpc_conf_get_int(conf, "product", "empty", 5), 5);
        assert_string_equal(rpc_conf_get(conf, "product", "spaced"), "x y  z");
        rpc_conf_free(conf);
}

/* "section.key=value" overrides a file value, adds a new key or section, and wins over
 * [defaults]; a malformed one is refused and changes nothing. */
static void
test_rpc_conf_override_with_set_arg(void **state)
{
        rpc_conf *conf = parse_ok(topology);

        assert_int_equal(rpc_conf_set_arg(conf, "product.workers=16"), RPC_OK);
        assert_int_equal(rpc_conf_get_int(conf, "product", "workers", -1), 16);
        assert_int_equal(rpc_conf_get_int(conf, "cart", "workers", -1), 2);

        assert_int_equal(rpc_conf_set_arg(conf, "cart.address=tcp://127.0.0.1:9999"), RPC_OK);
        assert_string_equal(rpc_conf_get(conf, "cart", "address"), "tcp://127.0.0.1:9999");

        assert_int_equal(rpc_conf_set_arg(conf, "defaults.workers=8"), RPC_OK);
        assert_int_equal(rpc_conf_get_int(conf, "user", "workers", -1), 8);
        assert_int_equal(rpc_conf_get_int(conf, "product", "workers", -1), 16);

        assert_int_equal(rpc_conf_set_arg(conf, "order.db=host=x dbname=mercato_order"), RPC_OK);
        assert_string_equal(rpc_conf_get(conf, "order", "db"), "host=x dbname=mercato_order");
        const char **names = NULL;
        size_t n = rpc_conf_sections(conf, &names);
        bool found = false;
        for (size_t i = 0; i < n; i++) {
                found = found || strcmp(names[i], "order") == 0;
        }
        assert_true(found);

        static const char *const bad[] = { "", "noequals", "nodot=1", ".key=1", "sect.=1", "=1",
                "product.=", "product.wor kers=1" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                if (rpc_conf_set_arg(conf, bad[i]) != RPC_INVALID_ARGUMENT) {
                        fail_msg("'%s' was accepted", bad[i]);
                }
        }
        assert_int_equal(rpc_conf_get_int(conf, "product", "workers", -1), 16);
        assert_null(rpc_conf_get(conf, "nodot", "1"));

        rpc_conf_set(conf, "product", "address", "ipc:///tmp/product.sock");
        assert_string_equal(rpc_conf_get(conf, "product", "address"), "ipc:///tmp/product.sock");
        rpc_conf_free(conf);
}

/* A syntax error is INVALID_ARGUMENT and the message names its line. */
static void
test_rpc_conf_errors_name_line(void **state)
{
        static const struct {
                const char *text;
                long line;
        } cases[] = {
                { "[product\naddress = x\n", 1 },
                { "[defaults]\nworkers = 4\n\n# fine\n[product]\njust some words\n", 6 },
                { "[a]\nx = 1\n[]\n", 3 },
                { "[a]\nx = 1\ny = 2\nz = 3\n = novalue\n", 5 },
                { "[a]\n\n\n\n\n\n\n\n\n\n\n[b] trailing\n", 12 },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                rpc_conf *conf = (rpc_conf *) 0x1;
                char err[256] = "";

                assert_int_equal(
                    rpc_conf_parse(cases[i].text, strlen(cases[i].text), &conf, err, sizeof(err)),
                    RPC_INVALID_ARGUMENT);
                assert_ptr_equal(conf, (rpc_conf *) 0x1);
                if (!mentions_number(err, cases[i].line)) {
                        fail_msg("case %zu: '%s' does not name line %ld", i, err, cases[i].line);
                }
        }
}

/* A file loads like text; a missing one is NOT_FOUND; MERCATO_CONF names the default path. */
static void
test_rpc_conf_load_file(void **state)
{
        char path[] = "/tmp/mercato-conf-test-XXXXXX";
        int fd = mkstemp(path);
        rpc_conf *conf = NULL;
        char err[512] = "";

        assert_true(fd >= 0);
        assert_int_equal(write(fd, topology, sizeof(topology) - 1), (ssize_t) sizeof(topology) - 1);
        close(fd);
        assert_int_equal(rpc_conf_load(path, &conf, err, sizeof(err)), RPC_OK);
        assert_string_equal(rpc_conf_get(conf, "cart", "address"), "tcp://127.0.0.1:7102");
        rpc_conf_free(conf);
        unlink(path);

        conf = NULL;
        assert_int_equal(rpc_conf_load(path, &conf, err, sizeof(err)), RPC_NOT_FOUND);
        assert_null(conf);
        assert_true(err[0] != '\0');

        setenv("MERCATO_CONF", "/etc/mercato/test.conf", 1);
        assert_string_equal(rpc_conf_default_path(), "/etc/mercato/test.conf");
        unsetenv("MERCATO_CONF");
        assert_string_equal(rpc_conf_default_path(), "deploy/local.conf");

        rpc_conf_free(NULL);
}

int
main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rpc_conf_sections),
                cmocka_unit_test(test_rpc_conf_defaults_fallback),
                cmocka_unit_test(test_rpc_conf_comments),
                cmocka_unit_test(test_rpc_conf_whitespace),
                cmocka_unit_test(test_rpc_conf_override_with_set_arg),
                cmocka_unit_test(test_rpc_conf_errors_name_line),
                cmocka_unit_test(test_rpc_conf_load_file),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
