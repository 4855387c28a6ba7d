/*
 * kchat-test: kafka (also run on real Apache Kafka by `make check-kafka`)
 * Broker faults (PROTOCOL.md §7): a stream of chat sends keeps going while
 * the brokers misbehave, and afterwards every request has been answered,
 * every acknowledged message is stored once with its seq, and each room's
 * seqs run 1..n with no gap. Nothing is re-sent by the client: every
 * recovery is the pipeline's own (librdkafka retries with the idempotent
 * producer, consumer reconnects, kchat's outbox).
 *
 * On kchat's brokers the test hosts a librdkafka mock cluster itself and
 * injects faults with rdkafka_mock.h: a broker down and back, produce and
 * fetch requests failing with retriable errors or dropped connections, and
 * 300 ms of added latency on every broker.
 *
 * On real Kafka (`make check-kafka` sets KCHAT_TEST_BROKERS and
 * KCHAT_TEST_KAFKA_DIR) it stops the broker with SIGTERM and later with
 * SIGKILL, each time restarting it on its data with `scripts/kafka`.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/wait.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "support/faultstream.h"
#include "support/kclient.h"

/* ------------------------------------------------------------------------ */
/* mock cluster fault injection                                             */
/* ------------------------------------------------------------------------ */

/* The regression tests of two faults of the same kind (broker 3, leading
 * only kchat-internal, refusing produce requests) are
 * tests/regress/0022-refused-command-dropped-as-repeat.c and
 * tests/regress/0024-fatal-producer-error.c. */
static void test_mock_faults(void **state)
{
    (void)state;
    fs_mock_start();
    fs_setup("mock");
    fs_clock_start();
    fs_stream(2000);

    fs_phase("broker 2 down for 4 s");
    rd_kafka_mock_broker_set_down(fs_mock(), 2);
    fs_stream_ex(4000, false);
    rd_kafka_mock_broker_set_up(fs_mock(), 2);
    fs_recovered("broker 2 down");

    fs_phase("produce requests fail: 8 retriable errors and 2 dropped connections");
    rd_kafka_mock_push_request_errors(fs_mock(), FS_API_PRODUCE, 10,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
    fs_stream(3000);
    fs_recovered("produce errors");

    fs_phase("fetch requests fail: 6 retriable errors and 2 dropped connections");
    rd_kafka_mock_push_request_errors(fs_mock(), FS_API_FETCH, 8,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR__TRANSPORT,
        RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
    fs_stream(3000);
    fs_recovered("fetch errors");

    fs_phase("300 ms added to every broker's answers for 4 s");
    for (int b = 1; b <= 3; b++)
        rd_kafka_mock_broker_set_rtt(fs_mock(), b, 300);
    fs_stream(4000);
    for (int b = 1; b <= 3; b++)
        rd_kafka_mock_broker_set_rtt(fs_mock(), b, 0);
    fs_recovered("added latency");

    fs_phase("every broker down for 3 s");
    for (int b = 1; b <= 3; b++)
        rd_kafka_mock_broker_set_down(fs_mock(), b);
    fs_stream_ex(3000, false);
    for (int b = 1; b <= 3; b++)
        rd_kafka_mock_broker_set_up(fs_mock(), b);
    fs_recovered("all brokers down");

    fs_phase("drain");
    fs_drain_and_verify();
    assert_true(kc_proc_stop_clean(fs_server(), 20));
}

/* ------------------------------------------------------------------------ */
/* a real broker stopped and restarted                                      */
/* ------------------------------------------------------------------------ */

static void kafka_node(const char *verb, const char *flag)
{
    char cmd[1024];
    int st = 0;
    snprintf(cmd, sizeof(cmd), "scripts/kafka %s %s --dir '%s' 1 2>&1", verb, flag,
             getenv("KCHAT_TEST_KAFKA_DIR"));
    fprintf(stderr, "test_faults: %s\n", cmd);
    char *out = kc_run_capture(cmd, NULL, &st);
    if (st != 0)
        fprintf(stderr, "%s\n", out != NULL ? out : "");
    free(out);
    assert_int_equal(st, 0);
}

static void test_real_broker_restart(void **state)
{
    (void)state;
    fs_use_brokers(kc_test_brokers());
    fs_setup("kafka");
    fs_clock_start();
    fs_stream(2000);

    fs_phase("broker stopped (SIGTERM) for 3 s");
    kafka_node("stop-node", "");
    fs_stream_ex(3000, false);
    kafka_node("start-node", "");
    fs_recovered("the broker stop");

    fs_phase("broker killed (SIGKILL) for 3 s");
    kafka_node("stop-node", "--kill");
    fs_stream_ex(3000, false);
    kafka_node("start-node", "");
    fs_recovered("the broker kill");

    fs_phase("drain");
    fs_drain_and_verify();
    assert_true(kc_proc_stop_clean(fs_server(), 20));
}

int main(void)
{
    const struct CMUnitTest mock[] = {
        cmocka_unit_test_teardown(test_mock_faults, fs_teardown),
    };
    const struct CMUnitTest kafka[] = {
        cmocka_unit_test_teardown(test_real_broker_restart, fs_teardown),
    };
    /* each broker gets the faults it can produce: injected ones on the
     * mock, a stopped and restarted process on real Kafka */
    if (kc_test_brokers() != NULL && getenv("KCHAT_TEST_KAFKA_DIR") != NULL)
        return cmocka_run_group_tests_name("broker faults (real Kafka)", kafka, NULL, NULL);
    return cmocka_run_group_tests_name("broker faults (mock cluster)", mock, NULL, NULL);
}
