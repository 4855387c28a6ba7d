/*
 * kchat-test: kafka (also run on real Apache Kafka by `make check-kafka`)
 * Regression 0061 (fixed by 9fd6ab8): every start of `kchat serve` read kchat-directory and
 * kchat-rooms from their beginning into a replica that already held them,
 * and since 0060's fix the node serves only once that read is done, so a
 * restart took longer the more users the deployment had (20,002 records
 * took 1.3 s; a million would take about a minute).
 *
 * One broker (`kchat broker`, or the real Kafka of `make check-kafka`)
 * outlives three servers, all with the changelog on:
 *  1. `kchat serve --data D1`: users A and B, A follows B, then B changes
 *     its status STATUS_CHANGES (3,000) times. Then SIGTERM.
 *  2. Past the group's session, `kchat serve --data D2` (a new directory,
 *     restored from kchat-changelog) serves alone: B's status becomes
 *     "while-away", a record D1's replica has not read. Then SIGTERM.
 *  3. Past the session again, `kchat serve --data D1` once more. It must say
 *     it read far fewer records than step 1 wrote (it takes up where its
 *     replica left off), and A's user-search-friend (which reads the
 *     replica) must show B "while-away": what was written while it was
 *     down is read all the same.
 * Steps 2 and 3 also check that the embedded broker held the whole
 * changelog (their restores say so otherwise).
 * Before the fix step 3 read every record again (at least STATUS_CHANGES).
 */
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
#include "support/replica.h"

#define PARTITIONS      4
/* Records of B's profile in kchat-directory. Few enough that the embedded
 * broker (which keeps 5 MB of a partition) holds D1's changelog whole under
 * TSan too, where small batches make it several times longer: with 10,000
 * it dropped the oldest records, and D2's restore lost the shard's stored
 * offsets with them. */
#define STATUS_CHANGES  3000
#define SESSION_GONE_MS 8000    /* more than serve's session.timeout.ms */
/* What a restart may read at most: the records written while it was down
 * (a few here; on a shared real cluster other tests' too), far below what
 * reading from the beginning takes. */
#define REREAD_MAX      (STATUS_CHANGES / 2)

static const char *const changelog_on[] = {"--changelog", "on", NULL};
static const char mock_dropped[] = "the embedded broker has dropped the first";

/* what the test started, so that a failed assertion still cleans up */
static kc_friends g_f;

static int test_teardown(void **state)
{
    (void)state;
    kc_friends_down(&g_f);
    return 0;
}

/* The server's restores had the whole changelog (the embedded broker
 * drops a partition's oldest records past 5 MB; then a restore is partial
 * and this test would measure something else). */
static void expect_whole_changelog(const kc_proc *p)
{
    size_t n = kc_file_count(kc_proc_log(p), mock_dropped);

    if (n > 0)
        kc_proc_log_tail(p, 40, stderr);
    assert_int_equal(n, 0);
}

static void test_restart_reads_only_what_is_new(void **state)
{
    (void)state;
    kc_friends *f = &g_f;
    char *d1 = kc_tmppath("data-d1"), *d2 = kc_tmppath("data-d2");
    kc_rm_rf(d1);
    kc_rm_rf(d2);

    /* ---- 1. D1 publishes many versions of B's profile ---- */
    kc_friends_up(f, "serve-d1", PARTITIONS, false, d1, changelog_on, "r");
    kc_client *c = f->c;
    assert_true(kc_change_status_many(c, &f->b, STATUS_CHANGES, "before"));
    /* its consumer was a static member of the group, which keeps its place
     * for the session timeout (6 s): past it, the next server is given
     * every partition at once */
    kc_friends_stop_server(f, SESSION_GONE_MS);

    /* ---- 2. another node writes while D1 is down ---- */
    f->srv = kc_serve_start_ex("serve-d2", d2, f->brokers, PARTITIONS, changelog_on, 120);
    assert_non_null(f->srv);
    json_t *away = json_pack("{ss ss}", "userId", f->b.id, "userStatus", "while-away");
    json_t *r = kc_call(c, "user-status-change", f->b.id, f->b.session, away);
    assert_true(kc_check_ok(r, f->b.id));
    json_decref(r);
    expect_whole_changelog(f->srv);
    kc_friends_stop_server(f, SESSION_GONE_MS);

    /* ---- 3. D1 again: only what is new is read ---- */
    f->srv = kc_serve_start_ex("serve-d1-again", d1, f->brokers, PARTITIONS, changelog_on,
                               120);
    assert_non_null(f->srv);
    long reread = kc_replica_read_at_start(f->srv);
    fprintf(stderr, "the restart read %ld records before serving (at most %d wanted)\n",
            reread, REREAD_MAX);
    assert_true(reread >= 0);
    assert_true(reread < REREAD_MAX);
    kc_expect_friend_status(c, &f->a, &f->b, "while-away");
    expect_whole_changelog(f->srv);

    assert_true(kc_proc_stop_clean(f->srv, 60));
    free(d1);
    free(d2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_restart_reads_only_what_is_new, test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
