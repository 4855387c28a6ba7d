/*
 * Unit tests of how a restore groups a shard's changes into transactions
 * (src/actors/changelog.h, kchat__cl_fate(); docs/design.md "Catching
 * up"): changes numbered 1, 2, 3, ... per shard carry the number of their
 * transaction's last change, and compaction removes any change whose key
 * a later change writes again, a transaction's last one included.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "actors/changelog.h"

/* Nothing pends, or the change is the pending transaction's: read on. */
static void test_same_transaction(void **state)
{
    (void)state;
    assert_int_equal(kchat__cl_fate(0, 1, 3), KCHAT__CL_SAME);
    assert_int_equal(kchat__cl_fate(3, 2, 3), KCHAT__CL_SAME);
    assert_int_equal(kchat__cl_fate(3, 3, 3), KCHAT__CL_SAME);
}

/* Transaction 1..3 lost change 3 to compaction (a later record of its key
 * comes): the next change read is 4, 5 or later, of a later transaction.
 * The transaction ended: apply it (regression 0055 dropped it). */
static void test_ended_without_its_last_change(void **state)
{
    (void)state;
    assert_int_equal(kchat__cl_fate(3, 4, 6), KCHAT__CL_ENDED);
    assert_int_equal(kchat__cl_fate(3, 5, 6), KCHAT__CL_ENDED);
    assert_int_equal(kchat__cl_fate(3, 40, 41), KCHAT__CL_ENDED);
}

/* Transaction 1..3 was cut after change 2 (on the mock cluster, which
 * shows what no transaction committed); the next writer restored without
 * it and numbered on from 1 again: the change read next is numbered
 * inside it. Drop it. */
static void test_cut_by_a_later_writer(void **state)
{
    (void)state;
    assert_int_equal(kchat__cl_fate(3, 1, 2), KCHAT__CL_CUT);
    assert_int_equal(kchat__cl_fate(3, 3, 5), KCHAT__CL_CUT);
    assert_int_equal(kchat__cl_fate(3, 2, 9), KCHAT__CL_CUT);
}

/* At the end of the log: Kafka's read_committed reader never sees a part
 * of a transaction, so what pends there ended; the mock cluster shows
 * open and aborted transactions' records, so there it is dropped. */
static void test_at_end(void **state)
{
    (void)state;
    assert_int_equal(kchat__cl_fate_at_end(true), KCHAT__CL_ENDED);
    assert_int_equal(kchat__cl_fate_at_end(false), KCHAT__CL_CUT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_transaction),
        cmocka_unit_test(test_ended_without_its_last_change),
        cmocka_unit_test(test_cut_by_a_later_writer),
        cmocka_unit_test(test_at_end),
    };
    return cmocka_run_group_tests_name("restore fate", tests, NULL, NULL);
}
