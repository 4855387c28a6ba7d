/*
 * librdkafka mock clusters for tests: making one, and faults kept up on it
 * for as long as a test needs them, however soon the client library
 * retries. Include after <cmocka.h>.
 *
 * A refusal injected with rd_kafka_mock_broker_push_request_error_rtts() is
 * used up by one request, and how soon a refused request comes again is
 * the library's choice (a fixed 100 ms before librdkafka 2.4, an
 * exponential back-off up to 1 s since), so a test that counts refusals out
 * cannot say how long they last. These keep a few queued instead, topped
 * up by calls the test makes while the fault must last.
 */
#ifndef KCHAT_TESTS_MOCKFAULT_H
#define KCHAT_TESTS_MOCKFAULT_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/**
 * @brief A new mock cluster of @p brokers brokers (no topics), hosted by a
 *        handle made for it alone, returned in @p *host. @p log_level is
 *        that handle's `log_level`: the mock cluster logs through it, and
 *        it warns that it has no bootstrap.servers (3 keeps errors only,
 *        0 keeps nothing). Free both with kc_mock_cluster_free(). Fails the
 *        running test when librdkafka refuses either. Any thread.
 */
rd_kafka_mock_cluster_t *kc_mock_cluster_new(int brokers, int log_level, rd_kafka_t **host);

/** @brief Destroy @p mock, then its @p host; either may be NULL. Any
 *         thread, once no client uses the cluster. */
void kc_mock_cluster_free(rd_kafka_mock_cluster_t *mock, rd_kafka_t *host);

/** @brief The ApiKey of Produce requests, for the calls below. */
#define KC_API_PRODUCE 0

/** @brief How many injected errors broker @p broker of @p mock still has
 *         queued for requests of @p api. Fails the running test when the
 *         mock cluster cannot say. Any thread. */
size_t kc_mock_refusals_left(rd_kafka_mock_cluster_t *mock, int32_t broker, int16_t api);

/**
 * @brief Keep broker @p broker of @p mock refusing requests of @p api with
 *        @p err, each refusal answered @p rtt_ms late: when fewer than
 *        @p low are queued, top the queue up to @p high.
 *
 * Call it more often than a refusal takes while the refusals must last;
 * once the calls stop, at most @p high remain (each used up by one
 * request). Fails the running test when the mock cluster refuses the
 * injection. Any thread.
 */
void kc_mock_refusals_keep(rd_kafka_mock_cluster_t *mock, int32_t broker, int16_t api,
                           rd_kafka_resp_err_t err, int rtt_ms, size_t low, size_t high);

#endif
