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
    char *data = kc_tmppath("m-data"), *urlfile = kc_tmppath("m.url"), *url;
    const char *args[] = {"dev", "--http", "127.0.0.1:0", "--data", data, "--url-file", urlfile,
                          "--pwhash-ops", "1", "--pwhash-mem", "8192", NULL};
    char id[72], pw[48];
    double requests = -1, refused = -1, gw = -1;
    kh_browser b;
    kh_resp *r;

    (void)state;
    g_dev = kc_proc_start("m", args, urlfile, 60);
    assert_non_null(g_dev);
    url = kc_read_file(urlfile, NULL);
    assert_non_null(url);
    url[strcspn(url, "\n")] = '\0';
    kh_browser_init(&b, "m", url);
    kc_uid(id, sizeof(id), "metrics");
    kc_new_password(pw, sizeof(pw));
    r = kh_do(&b, "POST", "/api/users", json_pack("{s:s, s:s, s:s, s:s}", "userId", id,
                                                  "userPw", pw, "email", "m@example.com",
                                                  "userName", "m"));
    assert_int_equal(r->status, 201);
    kh_resp_free(r);
    assert_true(kh_metric(b.base, "kchat_gateway_ready", &gw));
    assert_true(kh_metric(b.base, "kchat_requests_total", &requests));
    assert_true(kh_metric(b.base, "kchat_records_refused_total", &refused));
    if (requests < 0 || refused < 0)   /* -1: no such line */
        fail_msg("GET /metrics of kchat dev has no backend metrics");
    assert_true(requests >= 1);
    assert_true(refused == 0);
    assert_int_equal(kc_proc_stop(g_dev, SIGTERM, 15, NULL), 0);
    free(url);
    free(data);
    free(urlfile);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_dev_metrics_hold_the_backend, teardown),
    };
    return cmocka_run_group_tests_name("0049 kchat dev /metrics without the backend's", tests,
                                       NULL, NULL);
}
