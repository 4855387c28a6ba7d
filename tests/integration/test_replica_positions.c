/*
 * The directory replica's stored read positions when the partition no
 * longer has them: a position before the partition's first offset, and
 * one past its end (docs/design.md, "Room summaries"; directory.c's
 * reader_begin()). Both paths are the same on any broker; the test makes
 * the situations on kchat's standalone mock broker (`kchat broker`), whose
 * partitions drop their oldest records past 5 MB. A real Kafka's compacted
 * kchat-directory never moves its first offset so, and deleting records
 * from a compacted topic is refused, so this program is not marked for
 * `make check-kafka`.
 *
 * One `kchat broker` outlives the servers, all with the changelog on:
 *  1. `kchat serve --data D1`: users A and B, A follows B, B's status
 *     "first". SIGTERM; D1's replica has stored how far it read.
 *  2. The test writes 6 MB of records of no data set to every
 *     partition of kchat-directory: the broker drops the oldest, so each
 *     partition now begins after what D1 had read.
 *  3. `kchat serve --data D2` (restored from kchat-changelog): B's status
 *     becomes "while-away", written after the filler. SIGTERM.
 *  4. D1 again: its positions lie before the partitions' starts. It must
 *     serve (its replica read each partition to its end) and answer A's
 *     user-search-friend with B "while-away": a reader that went to the
 *     partition's end instead would still say "first".
 *  5. SIGTERM; the test moves every position D1's replica stored for
 *     kchat-directory far past the partitions' ends (as if the topic had
 *     been made anew). D1 again: it must say so, read every partition
 *     from its beginning (at least the filler's records) and answer B
 *     "while-away".
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "support/kassert.h"
#include "support/kclient.h"
#include "support/offsets.h"
#include "support/replica.h"

#define PARTITIONS      4
#define DIRECTORY_TOPIC "kchat-directory"   /* the default deployment's */
#define SESSION_GONE_MS 8000        /* more than serve's session.timeout.ms */
/* How far past a partition's end step 5 moves D1's stored positions. */
#define PAST_END        1000000

static const char *const changelog_on[] = {"--changelog", "on", NULL};
static const char past_end_said[] = "but was read up to";

/* what the test started, so that a failed assertion still cleans up */
static kc_friends g_f;

static int test_teardown(void **state)
{
    (void)state;
    kc_friends_down(&g_f);
    return 0;
}

/* Every position D1's replica stored for kchat-directory into @p next,
 * each moved @p move further when @p move > 0. */
static void replica_positions(const char *d1, int64_t move, int64_t next[PARTITIONS])
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/directory", d1);
    for (int32_t p = 0; p < PARTITIONS; p++)
        next[p] = kc_stored_offset(path, DIRECTORY_TOPIC, p, move);
}

static void test_positions_outside_the_partition(void **state)
{
    (void)state;
    kc_friends *f = &g_f;
    char *d1 = kc_tmppath("data-d1"), *d2 = kc_tmppath("data-d2");
    kc_rm_rf(d1);
    kc_rm_rf(d2);

    /* ---- 1. D1: A follows B, B "first" ---- */
    kc_friends_up(f, "serve-d1", PARTITIONS, true, d1, changelog_on, "p");
    kc_client *c = f->c;
    assert_true(kc_change_status_many(c, &f->b, 1, "first"));
    kc_expect_friend_status(c, &f->a, &f->b, "first");
    /* a static member of the group keeps its place for the session
     * timeout; past it, the next server is given every partition at once */
    kc_friends_stop_server(f, SESSION_GONE_MS);

    /* ---- 2. the partitions move past what D1 read ---- */
    int64_t read[PARTITIONS];
    replica_positions(d1, 0, read);
    for (int32_t p = 0; p < PARTITIONS; p++) {
        int64_t lo, hi;

        kc_push_out_oldest(c, DIRECTORY_TOPIC, p);
        kc_watermarks(f->brokers, DIRECTORY_TOPIC, p, &lo, &hi);
        assert_true(lo > read[p]);
    }

    /* ---- 3. another node writes B's new status after the filler ---- */
    f->srv = kc_serve_start_ex("serve-d2", d2, f->brokers, PARTITIONS, changelog_on, 120);
    assert_non_null(f->srv);
    assert_true(kc_change_status_many(c, &f->b, 1, "while-away"));
    kc_friends_stop_server(f, SESSION_GONE_MS);

    /* ---- 4. D1, its positions before the partitions' starts ---- */
    f->srv = kc_serve_start_ex("serve-d1-before", d1, f->brokers, PARTITIONS, changelog_on,
                               120);
    assert_non_null(f->srv);
    fprintf(stderr, "the restart read %ld records before serving\n",
            kc_replica_read_at_start(f->srv));
    assert_true(kc_replica_read_at_start(f->srv) >= 1);
    kc_expect_friend_status(c, &f->a, &f->b, "while-away");
    kc_friends_stop_server(f, SESSION_GONE_MS);

    /* ---- 5. D1, its positions past the partitions' ends ---- */
    replica_positions(d1, PAST_END, read);
    f->srv = kc_serve_start_ex("serve-d1-past", d1, f->brokers, PARTITIONS, changelog_on,
                               120);
    assert_non_null(f->srv);
    long reread = kc_replica_read_at_start(f->srv);
    fprintf(stderr, "the restart read %ld records before serving (at least %d wanted)\n",
            reread, KC_FILLER_COUNT);
    if (kc_file_count(kc_proc_log(f->srv), past_end_said) != PARTITIONS)
        kc_proc_log_tail(f->srv, 40, stderr);
    assert_int_equal(kc_file_count(kc_proc_log(f->srv), past_end_said), PARTITIONS);
    assert_true(reread >= KC_FILLER_COUNT);
    kc_expect_friend_status(c, &f->a, &f->b, "while-away");

    assert_true(kc_proc_stop_clean(f->srv, 60));
    free(d1);
    free(d2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_positions_outside_the_partition, test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
