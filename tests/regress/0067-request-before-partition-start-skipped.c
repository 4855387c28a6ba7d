/*
 * Regression 0067: a shard whose stored offset of a request topic lay
 * before the partition's first offset (records the broker had dropped
 * while the node was down) skipped every request the partition still
 * held: kchat's consumer left auto.offset.reset at librdkafka's default,
 * the end, so an assignment at an offset out of range jumped past them
 * and they were never answered. On `kchat broker` a partition keeps 5 MB;
 * on Kafka a request topic's retention (`login-request` and
 * `user-add-request` keep an hour by default) drops rolled segments.
 *
 * One `kchat broker` outlives the server (changelog off: its data
 * directory is the only copy, as on the embedded install):
 *  1. `kchat serve --data D`: users A (shard 0) and B (shard 1), A follows
 *     B, B's status "first". SIGTERM: D has stored how far shard 1 read
 *     user-status-change-request [1].
 *  2. 6 MB of key-less filler to that partition: the broker drops the
 *     oldest records, so the partition begins after that offset.
 *  3. B's status change to "while-away" is sent while no server runs.
 *  4. D again: the change must be answered (success) and A's
 *     user-search-friend must show B "while-away".
 * Before the fix step 4 waited in vain: the shard began at the partition's
 * end, after B's request.
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
#include "support/offsets.h"
#include "support/replica.h"

#define PARTITIONS   4
#define STATUS_TOPIC "user-status-change-request"   /* the default deployment's */
#define ANSWER_MS    60000   /* the restarted server's answer, at most */

static const char *const changelog_off[] = {"--changelog", "off", NULL};

/* what the test started, so that a failed assertion still cleans up */
static kc_friends g_f;

static int test_teardown(void **state)
{
    (void)state;
    kc_friends_down(&g_f);
    return 0;
}

static void test_requests_after_dropped_records_answered(void **state)
{
    (void)state;
    kc_friends *f = &g_f;
    char shard1[4096], cid[72];
    char *d = kc_tmppath("data");
    kc_rm_rf(d);
    snprintf(shard1, sizeof(shard1), "%s/shard-0001", d);

    /* ---- 1. A follows B, B "first" ---- */
    kc_friends_up(f, "serve", PARTITIONS, true, d, changelog_off, "s");
    kc_client *c = f->c;
    assert_true(kc_change_status_many(c, &f->b, 1, "first"));
    kc_friends_stop_server(f, 0);

    /* ---- 2. the partition now begins after what shard 1 read ---- */
    int64_t stored = kc_stored_offset(shard1, STATUS_TOPIC, 1, 0), lo, hi;
    kc_push_out_oldest(c, STATUS_TOPIC, 1);
    kc_watermarks(f->brokers, STATUS_TOPIC, 1, &lo, &hi);
    assert_true(lo > stored);

    /* ---- 3. a request while no server runs ---- */
    json_t *away = json_pack("{ss ss}", "userId", f->b.id, "userStatus", "while-away");
    assert_true(kc_send_req(c, "user-status-change", f->b.id, f->b.session, NULL, away, cid));
    json_decref(away);

    /* ---- 4. the server again: the request is answered ---- */
    f->srv = kc_serve_start_ex("serve-again", d, f->brokers, PARTITIONS, changelog_off, 60);
    assert_non_null(f->srv);
    const kc_record *r = kc_wait_cid(c, "user-status-change", cid, ANSWER_MS);
    if (r == NULL)
        kc_proc_log_tail(f->srv, 30, stderr);
    assert_non_null(r);
    assert_true(kc_check_ok(r->body, f->b.id));
    kc_expect_friend_status(c, &f->a, &f->b, "while-away");

    assert_true(kc_proc_stop_clean(f->srv, 60));
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_requests_after_dropped_records_answered,
                                  test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
