/*
 * Faults kept up on a librdkafka mock cluster (mockfault.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "mockfault.h"

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
