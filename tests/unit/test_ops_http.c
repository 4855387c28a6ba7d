/* Unit tests of the operations listener (src/app/ops_http.c). */
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
        cmocka_unit_test(test_stop_right_after_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
