/*
 * Regression 0022 (fixed by f31d036): an internal command whose delivery the
 * broker refused was produced again alone, after later commands to the same
 * shard had been applied; the target dropped it as a repeat (outbox-seq
 * watermark) and the source deleted its copy, so a chat send was never
 * stored nor answered (3 of 2,374 and 1 of 2,840 sends lost on f31d036^).
 *
 * Broker 3 of a mock cluster leads only kchat-internal and refuses its next
 * 3 produce requests for good (INVALID_RECORD) while a stream of chat sends
 * runs; every send must be answered, stored once, seqs gap-free.
 * (Moved from tests/integration/test_faults.c, test_mock_command_refused.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "support/faultstream.h"

/* A command the broker refuses for good (INVALID_RECORD) must still be
 * applied, once and in its place: its delivery fails while later commands
 * to the same shard get through. Before per-stream command seqs the
 * refused command, produced again after later ones were applied, was
 * dropped as a duplicate: its chat send was never stored nor answered. */
static void test_mock_command_refused(void **state)
{
    (void)state;
    fs_internal_produce_errors("refused", RD_KAFKA_RESP_ERR_INVALID_RECORD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_mock_command_refused, fs_teardown),
    };
    return cmocka_run_group_tests_name("0022 refused command dropped as a repeat", tests, NULL,
                                       NULL);
}
