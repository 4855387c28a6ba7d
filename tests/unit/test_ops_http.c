/* Unit tests of the operations listener's address (src/app/ops_http.c):
 * `host:port` with a port of 0 to 65535 listens; anything else is
 * KCHAT_ECONFIG, not a listener on whatever port atoi() made of it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "kchat/error.h"
#include "kchat/ops_http.h"

static void no_metrics(void *arg, FILE *out)
{
    (void)arg;
    (void)out;
}

static void test_bad_address_is_config_error(void **state)
{
    static const char *const bad[] = {
        "127.0.0.1:abc", "127.0.0.1:", "127.0.0.1:80x", "127.0.0.1:-1",
        "127.0.0.1:65536", "127.0.0.1:99999", ":8080", "127.0.0.1",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kchat_ops_http *h = NULL;
        char errstr[256] = "";
        int rc = kchat_ops_http_start(bad[i], no_metrics, NULL, NULL, &h, errstr, sizeof(errstr));
        if (rc == KCHAT_OK)
            kchat_ops_http_stop(h);
        printf("%s: %s (%s)\n", bad[i], kchat_errname(rc), errstr);
        assert_int_equal(rc, KCHAT_ECONFIG);
        assert_non_null(strstr(errstr, "host:port"));
    }
}

/* A stop right after the start, before the listener's thread has entered
 * its loop, must still end that thread (it used to wait for ever: a
 * loopbreak before the loop starts is forgotten). */
static void test_stop_right_after_start(void **state)
{
    (void)state;
    for (int i = 0; i < 200; i++) {
        kchat_ops_http *h = NULL;
        char errstr[256] = "";
        assert_int_equal(kchat_ops_http_start("127.0.0.1:0", no_metrics, NULL, NULL, &h, errstr,
                                              sizeof(errstr)),
                         KCHAT_OK);
        assert_non_null(h);
        kchat_ops_http_stop(h);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_address_is_config_error),
        cmocka_unit_test(test_stop_right_after_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
