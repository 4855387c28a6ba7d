/*
 * kchat-test: kafka-only (run only on real Apache Kafka, by `make check-kafka`)
 *
 * A shard's Kafka transaction writes each key once (changelog_txn.c,
 * kchat__cl_coalesce(); docs/design.md, "Changelog"): of the changes its
 * LMDB transactions made to one key since the last round (a counter, an
 * outbox page put and then deleted), only the last reaches kchat-changelog.
 * That is only sound because a read_committed reader sees a Kafka
 * transaction whole, so it runs on real Kafka alone (the mock cluster shows
 * a transaction's records as they come, and there every change is
 * written).
 *
 * `kchat serve` on the suite's Kafka with users on every shard, friends,
 * two rooms, and chat sends in bursts of 40 in flight (many LMDB
 * transactions per round); some changes must have been left out
 * (kchat_changelog_coalesced_total > 0). After a clean stop, `kchat serve`
 * with an empty data directory on the same Kafka restores every shard, and
 * after its clean stop every shard must hold the rows the first run left
 * (kc_shards_compare(): but for what a node changes of its own as it
 * serves on). Then it serves on: each room's next send gets the next seq.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kchat/kafka.h"
#include "support/compacted.h"
#include "support/http.h"
#include "support/kassert.h"
#include "support/kclient.h"

#define PARTITIONS 4   /* the suite's Kafka broker is started with 4 */
#define USERS 6
#define BURSTS 5
#define BURST 40

static kc_proc *g_srv, *g_broker;
static kc_client *g_client;

static int teardown(void **state)
{
    (void)state;
    if (g_srv != NULL)
        kc_proc_stop_clean(g_srv, 30);
    kc_release(&g_client, &g_srv);
    kc_proc_free(g_broker);
    g_broker = NULL;
    return 0;
}

/* `kchat serve` on @p brokers with data directory @p data and /metrics at
 * @p metrics (a URL base, filled in). */
static kc_proc *serve(const char *name, const char *data, const char *brokers, char *metrics,
                      size_t size)
{
    char addr[64];
    int port = kc_free_port();

    assert_true(port > 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    snprintf(metrics, size, "http://%s", addr);
    const char *extra[] = {"--metrics-http", addr, NULL};
    /* a stopped member's group may have to settle first */
    return kc_serve_start_ex(name, data, brokers, PARTITIONS, extra, 90);
}

/* Send a burst of BURST chat sends to @p room from the users in turn, all
 * in flight at once, and wait for every answer: each ok, and the room's
 * seqs @p *seq + 1 .. @p *seq + BURST handed out once each. */
static void burst(const kc_user *u, int users, const char *room, int64_t *seq)
{
    char cid[BURST][72];
    bool seen[BURST] = {false};

    for (int i = 0; i < BURST; i++) {
        const kc_user *w = &u[i % users];
        char text[64];
        json_t *b;

        snprintf(text, sizeof(text), "coalesce-%lld-%d", (long long)*seq, i);
        b = json_pack("{s:s, s:s, s:s, s:s}", "roomId", room, "writerId", w->id, "message",
                      text, "clientMsgId", text);
        assert_true(kc_send_req(g_client, "user-add-chat", w->id, w->session, NULL, b, cid[i]));
        json_decref(b);
    }
    for (int i = 0; i < BURST; i++) {
        const kc_record *r = kc_wait_cid(g_client, "user-add-chat", cid[i], 30000);
        json_int_t got;

        assert_non_null(r);
        assert_true(kc_check_ok(r->body, NULL));
        got = kc_int(r->body, "seq", -1);
        assert_true(got > *seq && got <= *seq + BURST);
        assert_false(seen[got - *seq - 1]);
        seen[got - *seq - 1] = true;
    }
    *seq += BURST;
}

static void test_restore_of_coalesced_changelog(void **state)
{
    char *data = kc_tmppath("coalesce-source"), *restored = kc_tmppath("coalesce-restored");
    char metrics[96], rooms[2][65];
    const char *brokers;
    kc_user u[USERS];
    int64_t seq[2] = {0, 0};
    double produced = -1, coalesced = -1;
    size_t rows;

    (void)state;
    g_broker = kc_broker_start("coalesce-broker", PARTITIONS);
    assert_non_null(g_broker);
    brokers = kc_proc_bootstrap(g_broker);
    g_srv = serve("coalesce-serve", data, brokers, metrics, sizeof(metrics));
    assert_non_null(g_srv);
    g_client = kc_client_new(brokers, KC_FROM_END);
    for (int i = 0; i < USERS; i++)
        assert_true(kc_user_in_shard(g_client, &u[i], "coalesce", i % PARTITIONS, PARTITIONS));
    const char *friends[] = {u[1].id, u[2].id, u[3].id, NULL};
    const char *others[] = {u[4].id, u[5].id, NULL};
    assert_true(kc_add_friends(g_client, &u[0], friends));
    assert_true(kc_create_room(g_client, &u[0], friends, "coalesced room", rooms[0]));
    assert_true(kc_add_friends(g_client, &u[3], others));
    assert_true(kc_create_room(g_client, &u[3], others, "second room", rooms[1]));
    for (int b = 0; b < BURSTS; b++) {
        burst(u, 4, rooms[0], &seq[0]);
        const kc_user second[] = {u[3], u[4], u[5]};
        burst(second, 3, rooms[1], &seq[1]);
    }
    assert_true(kh_metric(metrics, "kchat_changelog_produced_total", &produced));
    assert_true(kh_metric(metrics, "kchat_changelog_coalesced_total", &coalesced));
    fprintf(stderr, "test_coalesce: %.0f changes written to %s, %.0f left out for a later "
            "change of their key in the same transaction\n", produced, KCHAT_TOPIC_CHANGELOG,
            coalesced);
    assert_true(coalesced > 0);
    assert_true(kc_proc_stop_clean(g_srv, 30));
    kc_proc_free(g_srv);
    g_srv = NULL;

    /* an empty data directory restored from what the first run wrote */
    g_srv = serve("coalesce-restored", restored, brokers, metrics, sizeof(metrics));
    assert_non_null(g_srv);
    kc_wait_restored_whole(g_srv, PARTITIONS);
    assert_true(kc_proc_stop_clean(g_srv, 30));
    kc_proc_free(g_srv);
    g_srv = NULL;
    rows = kc_shards_compare(data, restored, PARTITIONS, "  extra:");
    fprintf(stderr, "test_coalesce: %d shards restored whole (%zu rows)\n", PARTITIONS, rows);

    /* and the restored copy serves on */
    g_srv = serve("coalesce-again", restored, brokers, metrics, sizeof(metrics));
    assert_non_null(g_srv);
    assert_int_equal(kc_chat(g_client, &u[1], rooms[0], "after", NULL), seq[0] + 1);
    assert_int_equal(kc_chat(g_client, &u[4], rooms[1], "after", NULL), seq[1] + 1);
    free(data);
    free(restored);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_restore_of_coalesced_changelog, teardown),
    };
    return cmocka_run_group_tests_name("test_coalesce", tests, NULL, NULL);
}
