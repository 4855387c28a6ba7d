/*
 * kchat-test: kafka-only (run only on real Apache Kafka, by `make check-kafka`)
 * Regression 0020 (fixed by 3fb6c37): kchat's consumers fetched with
 * fetch.wait.max.ms 10, right for librdkafka's mock cluster (which holds an
 * empty fetch for the whole wait even when records arrive) but not for
 * Kafka, which answers a waiting fetch as soon as a record arrives: on
 * Kafka an idle `kchat serve` sent about 100 fetch requests a second to
 * each broker and cost the brokers CPU for nothing. The wait now depends on
 * the cluster (--fetch-wait-ms -1: 100 ms on Kafka, 10 ms on the mock).
 *
 * Only meaningful on real Kafka, so tests/run.sh runs it only in make
 * check-kafka (on kchat's own mock brokers 10 ms is right): an idle `kchat serve
 * -X debug=fetch` is watched for 3 s and its request consumer's fetches of
 * one partition counted; at most 20 a second are allowed (10 expected).
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

#include "support/kclient.h"

#define PARTITIONS 4
#define WATCH_MS   3000

static kc_proc *g_srv;

static int teardown(void **state)
{
    (void)state;
    kc_proc_free(g_srv);
    g_srv = NULL;
    return 0;
}

/* Fetch requests for partition 0 of user-add-request in the log so far
 * (librdkafka's debug=fetch line "Fetch topic T [P] at offset N"). */
static size_t fetches(void)
{
    return kc_file_count(kc_proc_log(g_srv), "Fetch topic user-add-request [0] at offset");
}

static void test_idle_fetch_rate(void **state)
{
    const char *const extra[] = {"-X", "debug=fetch", NULL};
    char *data;
    size_t before, after;
    double per_s;

    (void)state;
    if (kc_test_brokers() == NULL)
        fail_msg("0020 runs on real Kafka only (make check-kafka sets KCHAT_TEST_BROKERS)");
    data = kc_tmppath("idle-fetch-data");
    kc_rm_rf(data);
    g_srv = kc_serve_start("idle-fetch", data, NULL, PARTITIONS, extra);
    assert_non_null(g_srv);
    kc_sleep_ms(2000);   /* past the first fetches of the assignment */
    before = fetches();
    kc_sleep_ms(WATCH_MS);
    after = fetches();
    per_s = (double)(after - before) * 1000.0 / WATCH_MS;
    fprintf(stderr, "0020: an idle kchat serve fetched user-add-request [0] %.1f times a "
            "second\n", per_s);
    assert_true(before > 0);   /* the debug lines are there at all */
    if (per_s > 20.0)
        fail_msg("an idle consumer fetched %.1f times a second from one partition (a fetch "
                 "wait of 100 ms allows 10)", per_s);
    assert_true(kc_proc_stop_clean(g_srv, 20));
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_idle_fetch_rate, teardown),
    };
    return cmocka_run_group_tests_name("0020 idle consumer fetches 100 times a second on Kafka",
                                       tests, NULL, NULL);
}
