/*
 * librdkafka mock clusters for tests, and faults kept up on them
 * (mockfault.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

#include "mockfault.h"

rd_kafka_mock_cluster_t *kc_mock_cluster_new(int brokers, int log_level, rd_kafka_t **host)
{
    char errstr[256], level[16];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_mock_cluster_t *mock;

    snprintf(level, sizeof(level), "%d", log_level);
    assert_int_equal(rd_kafka_conf_set(conf, "log_level", level, errstr, sizeof(errstr)),
                     RD_KAFKA_CONF_OK);
    *host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (*host == NULL)
        fail_msg("no handle for the mock cluster: %s", errstr);
    assert_non_null(mock = rd_kafka_mock_cluster_new(*host, brokers));
    return mock;
}

void kc_mock_cluster_free(rd_kafka_mock_cluster_t *mock, rd_kafka_t *host)
{
    if (mock != NULL)
        rd_kafka_mock_cluster_destroy(mock);
    if (host != NULL)
        rd_kafka_destroy(host);
}

size_t kc_mock_refusals_left(rd_kafka_mock_cluster_t *mock, int32_t broker, int16_t api)
{
    size_t cnt = 0;

    assert_int_equal(rd_kafka_mock_broker_error_stack_cnt(mock, broker, api, &cnt), 0);
    return cnt;
}

void kc_mock_refusals_keep(rd_kafka_mock_cluster_t *mock, int32_t broker, int16_t api,
                           rd_kafka_resp_err_t err, int rtt_ms, size_t low, size_t high)
{
    size_t queued = kc_mock_refusals_left(mock, broker, api);

    if (queued >= low)
        return;
    for (; queued < high; queued++)
        assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(mock, broker, api, 1, err,
                                                                      rtt_ms), 0);
}
