/*
 * Regression 0055 (fixed by this commit): a shard restored from a compacted
 * kchat-changelog lost committed data. A restore applies a transaction's
 * changes once it has read the one numbered like the transaction's last
 * (kchat-cl-last), and dropped a transaction followed by another before
 * that change came, taking it for one its writer never finished. But a
 * transaction's changes are sorted by table and key, and its last one is
 * nearly always a key a later transaction writes again (a command stream's
 * mark, an outbox page deleted once delivered): compaction removes it, and
 * every restore after that dropped the rest of the transaction, users and
 * chat messages included. Kafka compacts only rolled segments (7 days or
 * 1 GB by default), so no test or benchmark run ever met it.
 *
 * The test compacts by hand: `kchat serve` on a mock cluster, users on every
 * shard, friends, a room, chat sends, a clean stop; then every compacted
 * topic of kchat's (the changelog, kchat-meta, the directory, room
 * summaries) is copied to a second mock cluster as Kafka's log cleaner
 * would leave it: of each key, only its last record. `kchat serve` on the
 * second cluster with an empty data directory restores every shard from
 * that, dropping no transaction, and after its clean stop every shard must
 * hold exactly the rows the first run left (kc_shards_compare(): but for
 * what a node changes of its own as it serves on, the outbox and command
 * streams among them: a command the first run left unacknowledged is
 * delivered and acknowledged then, as a TSan run showed). It checks that
 * the copy did remove the last change of some transactions whose other
 * changes stayed. Seen failing on the code before the fix: 37, 9, 6 and 6
 * changes dropped; shard 0 without its users, sessions and friend rows
 * and with 3 of its 20 messages.
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

#include "support/compacted.h"
#include "support/kassert.h"
#include "support/kclient.h"
#include "support/mockfault.h"

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
    assert_true(kc_user_in_shard(g.client, u, "compacted", shard, PARTITIONS));
}

static void test_restore_from_compacted_changelog(void **state)
{
    char *data = kc_tmppath("source"), *restored = kc_tmppath("restored"), room[65];
    const char *brokers;
    kc_user u[PARTITIONS + 2];
    kc_compacted_counts k;
    size_t rows_total = 0;

    (void)state;
    /* the source: a workload, a clean stop */
    brokers = mock_start(0);
    g.srv = kc_serve_start("source-serve", data, brokers, PARTITIONS, NULL);
    assert_non_null(g.srv);
    g.client = kc_client_new(brokers, KC_FROM_END);
    for (int i = 0; i < PARTITIONS + 2; i++)
        user_in(&u[i], i % PARTITIONS);
    const char *friends[] = {u[1].id, u[2].id, u[3].id, NULL};
    assert_true(kc_add_friends(g.client, &u[0], friends));
    assert_true(kc_create_room(g.client, &u[0], friends, "compacted room", room));
    for (int i = 0; i < 20; i++)
        assert_true(kc_chat(g.client, &u[i % 4], room, "kept", NULL) == i + 1);
    assert_true(kc_proc_stop_clean(g.srv, 30));
    kc_proc_free(g.srv);
    g.srv = NULL;
    kc_client_free(g.client);
    g.client = NULL;

    /* the compacted copy */
    kc_compacted *c = kc_compacted_read(brokers, PARTITIONS);
    brokers = mock_start(1);
    k = kc_compacted_copy(c, brokers, false);
    fprintf(stderr, "0055: %zu records kept by compaction, %zu removed; %zu changelog "
            "transactions lost their last change and kept others\n", k.kept, k.superseded,
            k.torn);
    assert_true(k.torn > 0);

    /* restored from it */
    g.srv = kc_serve_start_ex("restored-serve", restored, brokers, PARTITIONS, NULL, 90);
    assert_non_null(g.srv);
    kc_wait_restored_whole(g.srv, PARTITIONS);
    assert_true(kc_proc_stop_clean(g.srv, 30));
    kc_proc_free(g.srv);
    g.srv = NULL;

    rows_total = kc_shards_compare(data, restored, PARTITIONS, "  extra:");
    fprintf(stderr, "0055: %d shards restored whole (%zu rows)\n", PARTITIONS, rows_total);
    free(data);
    free(restored);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_restore_from_compacted_changelog, teardown),
    };
    return cmocka_run_group_tests_name("0055 compacted changelog restore", tests, NULL, NULL);
}
