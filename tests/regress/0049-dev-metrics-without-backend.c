/*
 * Regression 0049 (fixed by ca43251): `kchat dev` promises the backend's
 * metrics on the gateway's /metrics (docs/configuration.md, --metrics-http),
 * but served only the gateway's: the metrics callback read the backend of
 * `kchat serve` (set only there) and ignored the backend `kchat dev` handed
 * it.
 *
 * `kchat dev`; one user registered over HTTP; GET /metrics must hold the
 * backend's counters (kchat_requests_total at 1 or more,
 * kchat_records_refused_total), besides the gateway's.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "support/http.h"
#include "support/kclient.h"

static kc_proc *g_dev;

static int teardown(void **state)
{
    (void)state;
    kc_proc_free(g_dev);
    g_dev = NULL;
    return 0;
}

static void test_dev_metrics_hold_the_backend(void **state)
{
    char *url, id[72];
    double requests = -1, refused = -1, gw = -1;
    kh_browser b;

    (void)state;
    g_dev = kh_dev_start("m", NULL, &url);
    assert_non_null(g_dev);
    assert_non_null(url);
    kh_browser_init(&b, "m", url);
    assert_true(kh_register(&b, "metrics", id));
    assert_true(kh_metric(b.base, "kchat_gateway_ready", &gw));
    assert_true(kh_metric(b.base, "kchat_requests_total", &requests));
    assert_true(kh_metric(b.base, "kchat_records_refused_total", &refused));
    if (requests < 0 || refused < 0)   /* -1: no such line */
        fail_msg("GET /metrics of kchat dev has no backend metrics");
    assert_true(requests >= 1);
    assert_true(refused == 0);
    assert_int_equal(kc_proc_stop(g_dev, SIGTERM, 15, NULL), 0);
    free(url);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_dev_metrics_hold_the_backend, teardown),
    };
    return cmocka_run_group_tests_name("0049 kchat dev /metrics without the backend's", tests,
                                       NULL, NULL);
}
