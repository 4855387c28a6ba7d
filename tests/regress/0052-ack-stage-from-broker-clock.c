/*
 * Regression 0052 (fixed by the commit "ack stage: the producer's own
 * latency, not the record's timestamp"): kchat_stage_seconds{stage="ack"}
 * (issue 14's per-stage histogram) timed Kafka's acknowledgement of an
 * outbound record from the timestamp the delivery report carries. A broker
 * may put its log-append time there, and the mock cluster (the embedded
 * broker) puts 1234, so every acknowledgement counted as 56 years: the
 * stage's mean read about 1.8e9 s and bench/stages.sh showed nonsense.
 *
 * `kchat dev`; one user registered over HTTP; once the ack stage has
 * observations, its mean (sum / count) must be under 10 s.
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

static void test_ack_stage_in_seconds(void **state)
{
    char *url, id[72];
    double n = -1, sum = -1;
    int64_t until;
    kh_browser b;

    (void)state;
    g_dev = kh_dev_start("a", NULL, &url);
    assert_non_null(g_dev);
    assert_non_null(url);
    kh_browser_init(&b, "a", url);
    assert_true(kh_register(&b, "ack", id));
    /* the acknowledgement may come after the answer was read */
    for (until = kc_now_ms() + 5000; kc_now_ms() < until; kc_sleep_ms(50))
        if (kh_metric(b.base, "kchat_stage_seconds_count{stage=\"ack\"}", &n) && n >= 1)
            break;
    assert_true(n >= 1);
    assert_true(kh_metric(b.base, "kchat_stage_seconds_sum{stage=\"ack\"}", &sum));
    fprintf(stderr, "0052: ack stage: %g s over %g acknowledgements\n", sum, n);
    assert_true(sum >= 0);
    assert_true(sum / n < 10);
    assert_int_equal(kc_proc_stop(g_dev, SIGTERM, 15, NULL), 0);
    free(url);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_ack_stage_in_seconds, teardown),
    };
    return cmocka_run_group_tests_name("0052 the ack stage timed from the broker's clock", tests,
                                       NULL, NULL);
}
