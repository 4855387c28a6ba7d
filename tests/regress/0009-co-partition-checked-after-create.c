/*
 * Regression 0009 (fixed by f24d1f5): kchat_topics_ensure() checked that the
 * request topics and kchat-internal are co-partitioned only after creating
 * the missing topics, and on a cluster that does not answer CreateTopics
 * (librdkafka's mock) it gave up with "CreateTopics timed out" instead of
 * naming the mismatch. It now refuses a mismatch among the existing topics
 * before creating any.
 *
 * A mock cluster whose user-add-request has 2 partitions and the other
 * co-partitioned topics 4 (the rest missing): `kchat serve --brokers` must
 * stop, non-zero, naming "co-partitioned" and the odd topic.
 * (Moved from tests/integration/test_startup.c,
 * test_refuses_topics_not_co_partitioned; its two output helpers, which
 * test_startup keeps, written inline.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "support/kclient.h"
#include "support/mockfault.h"

/* A cluster whose user-add-request has 2 partitions and every other kchat
 * topic 4: kchat serve --brokers must refuse it. */
static void test_refuses_topics_not_co_partitioned(void **state)
{
    static const char *const topics[] = {
        "user-add-request", "login-request", "logout-request", "user-status-change-request",
        "user-add-friend-request", "user-search-friend-request", "user-add-room-request",
        "user-search-room-request", "user-add-chat-request", "room-history-request",
        "kchat-internal",
    };
    static const char *const want[] = {"co-partitioned", "user-add-request"};
    char cmd[4096], *data = kc_tmppath("nocopart-data"), *out;
    rd_kafka_t *host;
    rd_kafka_mock_cluster_t *mc = kc_mock_cluster_new(1, 3, &host);
    int status = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++)
        assert_int_equal(rd_kafka_mock_topic_create(mc, topics[i], i == 0 ? 2 : 4, 1), 0);
    snprintf(cmd, sizeof(cmd), "timeout 60 %s serve --brokers %s --data %s --partitions 4 "
             "--pwhash-ops 1 --pwhash-mem 8192 2>&1", kc_bin(),
             rd_kafka_mock_cluster_bootstraps(mc), data);
    out = kc_run_capture(cmd, NULL, &status);
    assert_true(status != 0 && status != 124);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (out == NULL || strstr(out, want[i]) == NULL)
            fail_msg("expected \"%s\" in:\n%s", want[i], out ? out : "(no output)");
    free(out);
    kc_mock_cluster_free(mc, host);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refuses_topics_not_co_partitioned),
    };
    return cmocka_run_group_tests_name("0009 co-partitioning checked after creating topics",
                                       tests, NULL, NULL);
}
