/*
 * Regression 0024 (fixed by 9e286ba): OUT_OF_ORDER_SEQUENCE_NUMBER is fatal
 * to an idempotent producer (librdkafka cannot tell what the broker holds).
 * The producer used to stay failed: nothing more was answered until
 * `kchat serve` restarted. Now it is replaced and what it held is produced
 * again.
 *
 * Broker 3 of a mock cluster leads only kchat-internal and answers 3 produce
 * requests with OUT_OF_ORDER_SEQUENCE_NUMBER while a stream of chat sends
 * runs; the log must say the producer was replaced, and every send must be
 * answered, stored once, seqs gap-free.
 * (Moved from tests/integration/test_faults.c, test_mock_producer_fatal.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support/faultstream.h"

static void test_mock_producer_fatal(void **state)
{
    (void)state;
    fs_internal_produce_errors("fatal", RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
    static const char replaced[] = "a new producer replaced the failed one";
    assert_true(kc_file_contains(kc_proc_log(fs_server()), replaced, sizeof(replaced) - 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_mock_producer_fatal, fs_teardown),
    };
    return cmocka_run_group_tests_name("0024 fatal producer error", tests, NULL, NULL);
}
