/*
 * Regression 0035: answers the embedded broker acknowledged but dropped.
 *
 * librdkafka 2.0.2's mock cluster (kchat's embedded broker, and the broker
 * of every mock-cluster test) accepts an idempotent produce request whose
 * sequence skips a request it has just refused with a retriable error,
 * where Kafka answers OUT_OF_ORDER_SEQUENCE_NUMBER. The producer, seeing
 * the later sequence acknowledged, takes the refused records as delivered,
 * so kchat deleted their outbox copies and never produced them again. Seen
 * in CI as test_mock_faults' "stored but unanswered" chat sends (TSan
 * builds, twice): stored in the room's shard, outbox empty, and a fresh
 * consumer found none of the missing answers in the topic. kchat's producer
 * now keeps one produce request in flight per connection on the mock
 * cluster (kchat__producer_conf(), mock_broker).
 *
 * A producer made from kchat__producer_conf() writes numbered records to a
 * mock cluster whose brokers answer rounds of 3 produce requests with
 * retriable errors 60 ms late (NOT_LEADER_FOR_PARTITION,
 * REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS_AFTER_APPEND); afterwards every
 * record whose delivery was reported must be in the topic. The same run
 * with the setting off must lose some on librdkafka 2.0.x: the test still
 * reproduces the defect there.
 *
 * On librdkafka 2.10.1 (what scripts/librdkafka builds) the run without
 * the setting lost nothing, in 4 runs of 4,164-4,480 records. Its mock
 * still checks no sequence of a producer without a transactional id, so
 * the change is most likely the producer's, sending the refused records
 * again (not read in its source); whether they then land out of order was
 * not checked. So the setting stays, the first test
 * runs on every library, and the second only where it reproduces the
 * defect (librdkafka before 2.1; 2.1 to 2.9 were not tried).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "actors/actors.h"
#include "kchat/config.h"
#include "support/mockfault.h"

#define RECORDS    12000   /* numbered records, at most */
#define ROUNDS     5       /* rounds of refused requests */
#define ROUND_MS   250
#define LATE_MS    60      /* how late the refusals come */
#define PARTS      4
#define TOPIC      "t0035"

static atomic_bool reported[RECORDS];

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        atomic_store(&reported[(intptr_t)m->_private], true);
}

/* Records reported delivered but not in the topic, for kchat's producer
 * configuration with be.mock_broker = @p mock_broker. */
static size_t lost_records(bool mock_broker)
{
    char err[512];
    kchat_config cfg;
    kchat_backend be = {0};
    rd_kafka_t *host;
    rd_kafka_mock_cluster_t *mc = kc_mock_cluster_new(3, 0, &host);

    assert_int_equal(rd_kafka_mock_topic_create(mc, TOPIC, PARTS, 3), 0);
    for (size_t i = 0; i < RECORDS; i++)
        atomic_store(&reported[i], false);

    assert_int_equal(kchat_config_init(&cfg), KCHAT_OK);
    be.cfg = &cfg;
    be.bootstraps = (char *)rd_kafka_mock_cluster_bootstraps(mc);
    be.mock_broker = mock_broker;
    rd_kafka_conf_t *conf = kchat__producer_conf(&be, err, sizeof(err));
    assert_non_null(conf);
    assert_int_equal(rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err)), 0);
    rd_kafka_conf_set_dr_msg_cb(conf, dr);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(p);

    /* ~4 records a millisecond for ROUNDS rounds, each round opening with
     * 3 refused requests on every broker */
    size_t n = 0;
    for (int r = 0; r < ROUNDS && n < RECORDS; r++) {
        for (int b = 1; b <= 3; b++)
            rd_kafka_mock_broker_push_request_error_rtts(
                mc, b, 0 /* Produce */, 3, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, LATE_MS,
                RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, LATE_MS,
                RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND, LATE_MS);
        int64_t end = now_ms() + ROUND_MS;
        while (now_ms() < end && n < RECORDS) {
            for (int k = 0; k < 4 && n < RECORDS; k++, n++) {
                char v[16];
                snprintf(v, sizeof(v), "%zu", n);
                assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(TOPIC),
                                                   RD_KAFKA_V_PARTITION((int32_t)(n % PARTS)),
                                                   RD_KAFKA_V_VALUE(v, strlen(v)),
                                                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                                   RD_KAFKA_V_OPAQUE((void *)(intptr_t)n),
                                                   RD_KAFKA_V_END),
                                 RD_KAFKA_RESP_ERR_NO_ERROR);
            }
            rd_kafka_poll(p, 1);
        }
    }
    int64_t t_flush = now_ms();
    assert_int_equal(rd_kafka_flush(p, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);
    int64_t flush_ms = now_ms() - t_flush;
    rd_kafka_destroy(p);

    /* read the topic back */
    bool *seen = calloc(RECORDS, sizeof(*seen));
    assert_non_null(seen);
    rd_kafka_conf_t *cc = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(cc, "bootstrap.servers", be.bootstraps, err,
                                       sizeof(err)), 0);
    assert_int_equal(rd_kafka_conf_set(cc, "group.id", "r0035", err, sizeof(err)), 0);
    assert_int_equal(rd_kafka_conf_set(cc, "enable.partition.eof", "true", err, sizeof(err)), 0);
    assert_int_equal(rd_kafka_conf_set(cc, "log_level", "0", err, sizeof(err)), 0);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err));
    assert_non_null(c);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTS);
    for (int q = 0; q < PARTS; q++)
        rd_kafka_topic_partition_list_add(l, TOPIC, q)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(c, l), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(l);
    int eofs = 0;
    for (int64_t end = now_ms() + 30000; eofs < PARTS && now_ms() < end;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            eofs++;
        else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->len < 16) {
            char v[16];
            memcpy(v, m->payload, m->len);
            v[m->len] = '\0';
            size_t i = strtoul(v, NULL, 10);
            if (i < RECORDS)
                seen[i] = true;
        }
        rd_kafka_message_destroy(m);
    }
    assert_int_equal(eofs, PARTS);
    rd_kafka_destroy_flags(c, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);

    size_t lost = 0, delivered = 0;
    for (size_t i = 0; i < n; i++) {
        delivered += atomic_load(&reported[i]);
        lost += atomic_load(&reported[i]) && !seen[i];
    }
    printf("0035: mock_broker=%s: %zu records, %zu reported delivered (the last after %lld ms "
           "of flush), %zu of those not in the topic\n", mock_broker ? "true" : "false", n,
           delivered, (long long)flush_ms, lost);
    assert_int_equal(delivered, n);   /* flush() returned: every report came */
    free(seen);
    kchat_config_release(&cfg);
    kc_mock_cluster_free(mc, host);
    return lost;
}

static void test_no_acknowledged_record_lost(void **state)
{
    (void)state;
    assert_int_equal(lost_records(true), 0);
}

/* What the setting avoids: librdkafka 2.0.2's mock loses some every run.
 * Registered only on librdkafka 2.0.x (see the top). */
static void test_defect_without_the_setting(void **state)
{
    (void)state;
    size_t lost = lost_records(false);
    if (lost == 0)
        printf("0035: the mock lost nothing without the setting: has librdkafka's mock been "
               "fixed? (see the comment at the top)\n");
    assert_true(lost > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_acknowledged_record_lost),
        cmocka_unit_test(test_defect_without_the_setting),
    };
    const struct CMUnitTest setting_only[] = {
        cmocka_unit_test(test_no_acknowledged_record_lost),
    };

    /* the library loaded, not the headers built against */
    if (rd_kafka_version() < 0x02010000)
        return cmocka_run_group_tests_name("0035 mock broker acknowledges a skipped sequence",
                                           tests, NULL, NULL);
    printf("0035: librdkafka %s: the defect is not reproduced here (see the top); only the "
           "setting's test runs\n", rd_kafka_version_str());
    return cmocka_run_group_tests_name("0035 mock broker acknowledges a skipped sequence",
                                       setting_only, NULL, NULL);
}
