/*
 * Regression 0056 (fixed by this commit): a node whose copy of a shard was
 * older than kchat-changelog's delete.retention.ms (1 day by default) caught
 * up by reading only the changes after its own, but Kafka removes a
 * deletion (tombstone) from a compacted topic that long after compacting
 * it: every row deleted meanwhile came back, a logged-out session that
 * works again, a room member who had left. Now a copy whose newest change
 * in the changelog is older than --changelog-copy-max-age (12 h by
 * default) is set aside and the shard restored whole.
 *
 * The test: `kchat serve` on a mock cluster: users on every shard, friends,
 * a room of four, chat sends, a clean stop; the data directory copied (the
 * old copy); `kchat serve` again on the same data directory: alice logs out,
 * bob leaves the room, more chat sends, a clean stop. kchat's compacted
 * topics are copied to a second mock cluster as Kafka leaves them once
 * tombstones expired: of each key its last record, and no tombstone. After
 * 2 s, `kchat serve --changelog-copy-max-age 1` on the old copy there: every
 * shard behind the changelog must be set aside and restored whole
 * (kchat_shards_stale_copies_total counts them, the log says why), and every
 * shard must then hold exactly the rows of the second run's data directory
 * (kc_shards_compare(): but for what a node changes of its own as it
 * serves on): no session of alice's, bob out of the room. Seen failing
 * without the age check: the same steps with --changelog-copy-max-age
 * 1000000 kept alice's session row in shard 0 (the first shard compared).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "kchat/kafka.h"
#include "support/compacted.h"
#include "support/kassert.h"
#include "support/kclient.h"
#include "support/mockfault.h"
#include "support/rooms.h"

#define PARTITIONS 4

/* what the test started, so that a failed assertion still cleans up */
static kc_two_clusters g;

static int teardown(void **state)
{
    (void)state;
    kc_two_clusters_free(&g);
    return 0;
}

/* Mock cluster @p i with kchat's topics; its bootstrap list. */
static const char *mock_start(int i)
{
    return kc_compacted_cluster(PARTITIONS, &g.mock[i], &g.host[i]);
}

/* A user of shard @p shard, registered and logged in. */
static void user_in(kc_user *u, int shard)
{
    assert_true(kc_user_in_shard(g.client, u, "stale", shard, PARTITIONS));
}

/* `kchat serve` on @p data and @p brokers, waiting for its start. */
static void serve(const char *name, const char *data, const char *brokers,
                  const char *const *extra)
{
    g.srv = kc_serve_start_ex(name, data, brokers, PARTITIONS, extra, 90);
    assert_non_null(g.srv);
}

static void stop(void)
{
    assert_true(kc_proc_stop_clean(g.srv, 30));
    kc_proc_free(g.srv);
    g.srv = NULL;
    kc_client_free(g.client);
    g.client = NULL;
}

static void test_stale_copy_restored_whole(void **state)
{
    char *data = kc_tmppath("current"), *old = kc_tmppath("old"), room[65], cmd[8300];
    const char *brokers;
    const char *const extra[] = {"--changelog-copy-max-age", "1", NULL};
    kc_user u[PARTITIONS];
    kc_compacted_counts k;
    size_t rows_total = 0, aside;
    int64_t deadline;

    (void)state;
    /* the first run: what the old copy holds */
    brokers = mock_start(0);
    serve("first-serve", data, brokers, NULL);
    g.client = kc_client_new(brokers, KC_FROM_END);
    for (int i = 0; i < PARTITIONS; i++)
        user_in(&u[i], i);
    const char *friends[] = {u[1].id, u[2].id, u[3].id, NULL};
    assert_true(kc_add_friends(g.client, &u[0], friends));
    assert_true(kc_create_room(g.client, &u[0], friends, "stale room", room));
    for (int i = 0; i < 8; i++)
        assert_true(kc_chat(g.client, &u[i % 4], room, "before", NULL) == i + 1);
    stop();
    snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", data, old);
    assert_int_equal(system(cmd), 0);

    /* the second run deletes: a logout, a leave */
    serve("second-serve", data, brokers, NULL);
    g.client = kc_client_new(brokers, KC_FROM_END);
    KC_EXPECT_OK(kc_call(g.client, "logout", u[0].id, u[0].session,
                         json_pack("{ss}", "userId", u[0].id)), u[0].id);
    KC_EXPECT_OK(krm_leave(g.client, &u[1], room), u[1].id);
    for (int i = 0; i < 4; i++)
        assert_true(kc_chat(g.client, &u[2 + i % 2], room, "after", NULL) == 9 + i);
    stop();

    /* the changelog once its tombstones expired */
    kc_compacted *c = kc_compacted_read(brokers, PARTITIONS);
    brokers = mock_start(1);
    k = kc_compacted_copy(c, brokers, true);
    fprintf(stderr, "0056: %zu records kept, %zu superseded, %zu tombstones expired\n", k.kept,
            k.superseded, k.tombstones);
    assert_true(k.tombstones > 0);

    /* the old copy, 2 s later, with a bound of 1 s */
    kc_sleep_ms(2000);
    serve("old-copy-serve", old, brokers, extra);
    deadline = kc_now_ms() + 60000;
    while (kc_file_count(kc_proc_log(g.srv), "restored from") < PARTITIONS &&
           kc_now_ms() < deadline)
        kc_sleep_ms(100);
    aside = kc_file_count(kc_proc_log(g.srv), "is older than --changelog-copy-max-age");
    fprintf(stderr, "0056: %zu shards set aside as older than the bound\n", aside);
    assert_true(aside > 0);
    assert_true(kc_proc_stop_clean(g.srv, 30));
    kc_proc_free(g.srv);
    g.srv = NULL;

    rows_total = kc_shards_compare(data, old, PARTITIONS, "  kept though deleted:");
    fprintf(stderr, "0056: %d shards as the changelog has them (%zu rows)\n", PARTITIONS,
            rows_total);
    free(data);
    free(old);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_stale_copy_restored_whole, teardown),
    };
    return cmocka_run_group_tests_name("0056 stale copy revives deleted rows", tests, NULL,
                                       NULL);
}
