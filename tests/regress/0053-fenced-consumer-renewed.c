/*
 * Regression 0053 (fixed by the commit "consumer: a fatal error replaces
 * the handle instead of leaving it dead"): a node whose consumer got a
 * fatal error stopped answering for good. Seen in test_faults on real
 * Kafka: a broker restart outlasted the 6 s session, librdkafka 2.0.2
 * rejoined with the same group.instance.id, the broker fenced the old
 * member ("Static consumer fenced by other consumer with same
 * group.instance.id"), which librdkafka reports as fatal; kchat logged it
 * and kept a consumer that no longer read.
 *
 * Here the mock cluster answers one heartbeat with FENCED_INSTANCE_ID
 * (which librdkafka takes as fatal) while a stream of chat sends runs;
 * the log must say a new handle replaced the failed one, the stream must
 * flow again, and every send must be answered, stored once, seqs
 * gap-free. Once without a changelog (the embedded default) and once with
 * `--changelog on`, where the node is a static member and its shards are
 * released as lost and acquired again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support/faultstream.h"

static void fence_once(const char *tag, const char *const *extra)
{
    static const char renewed[] = "a new consumer handle replaced the failed one";
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID;

    fs_mock_start();
    fs_setup_ex(tag, extra);
    fs_clock_start();
    fs_stream(1000);
    fs_phase(rd_kafka_err2name(err));
    rd_kafka_mock_push_request_errors(fs_mock(), FS_API_HEARTBEAT, 1, err);
    fs_stream(4000);
    fs_recovered(rd_kafka_err2name(err));
    fs_phase("drain");
    fs_drain_and_verify();
    assert_true(kc_file_contains(kc_proc_log(fs_server()), renewed, sizeof(renewed) - 1));
    assert_true(kc_proc_stop_clean(fs_server(), 20));
}

static void test_fenced_without_changelog(void **state)
{
    (void)state;
    fence_once("fenced", NULL);
}

static void test_fenced_with_changelog(void **state)
{
    (void)state;
    static const char *const extra[] = { "--changelog", "on", NULL };
    fence_once("fenced-cl", extra);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_fenced_without_changelog, fs_teardown),
        cmocka_unit_test_teardown(test_fenced_with_changelog, fs_teardown),
    };
    return cmocka_run_group_tests_name("0053 fenced consumer renewed", tests, NULL, NULL);
}
