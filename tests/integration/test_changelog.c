/*
 * The changelog (docs/design.md, "Changelog"): every change a shard
 * commits also goes to kchat-changelog, and nothing that reports a change
 * leaves before Kafka has it. Both run `kchat serve` on a mock cluster made
 * in this process, so that its brokers can be taken down:
 *
 * - test_changelog_rebuilds_shards: after a workload (users, logins,
 *   friends, rooms across shards, chat sends) and a clean stop, replaying
 *   kchat-changelog partition p from the beginning onto an empty store,
 *   then the changes shard p still keeps (committed after Kafka last
 *   confirmed, e.g. at the stop), gives back every table of shard p.
 * - test_changelog_current_when_idle: the same workload, then 1 s with
 *   nothing to do and a kill -9: the shards keep no change Kafka lacks, and
 *   the changelog alone gives every table back. Changes no held record
 *   waits for (a delivered record's deletion) wait at most 50 ms for
 *   others to go with (changelog_txn.c): this checks that they do go.
 * (Restoring a lost data directory from it: test_restore.c.)
 * - test_answers_wait_for_changelog: while the broker that leads every
 *   kchat-changelog partition refuses produce requests (a retriable
 *   error, answered late), a request is applied but not answered; once the
 *   refusals end, it is answered, once.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "kchat/kafka.h"
#include "kchat/store.h"
#include "kchat/topics.h"
#include "support/compacted.h"
#include "support/kassert.h"
#include "support/kclient.h"
#include "support/mockfault.h"

#define PARTITIONS 4

static kc_proc *g_srv;
static kc_client *g_client;
static rd_kafka_t *g_host;               /* the handle the mock cluster lives on */
static rd_kafka_mock_cluster_t *g_mock;
static char g_brokers[512];

/* A mock cluster of 3 brokers with kchat's topics (it answers no
 * CreateTopics), as `kchat broker` makes them. */
static void mock_start(void)
{
    g_mock = kc_mock_cluster_new(3, 3, &g_host);
    snprintf(g_brokers, sizeof(g_brokers), "%s", rd_kafka_mock_cluster_bootstraps(g_mock));
    for (size_t i = 0; i < kchat_topic_count(); i++)
        assert_int_equal(rd_kafka_mock_topic_create(g_mock, kchat_topic_name(i), PARTITIONS, 3),
                         0);
}

static int teardown(void **state)
{
    (void)state;
    kc_client_free(g_client);
    g_client = NULL;
    if (g_srv != NULL)
        kc_proc_stop_clean(g_srv, 30);
    kc_proc_free(g_srv);
    g_srv = NULL;
    kc_mock_cluster_free(g_mock, g_host);
    g_mock = NULL;
    g_host = NULL;
    return 0;
}

/* A user of shard @p shard (any when -1), registered and logged in. */
static void user_in(kc_user *u, const char *tag, int shard)
{
    for (int tries = 0; tries < 500; tries++) {
        kc_user_init(u, tag);
        if (shard < 0 || kchat_partition_for_key(u->id, strlen(u->id), PARTITIONS) == shard)
            break;
    }
    assert_true(kc_user_register(g_client, u));
    assert_true(kc_user_login(g_client, u));
}

/* ---- the changelog gives the shards back ---- */

/* Replays one partition's records onto a store, in order. */
struct replay {
    kchat_store *store[PARTITIONS];
    uint64_t max_seq[PARTITIONS];   /* highest kchat-cl-seq seen */
    size_t records;
};

static uint64_t header_u64(const rd_kafka_message_t *m, const char *name)
{
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t len;
    char buf[24];

    if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, name, &v, &len) ||
        len == 0 || len >= sizeof(buf))
        return 0;
    memcpy(buf, v, len);
    buf[len] = '\0';
    return strtoull(buf, NULL, 10);
}

static void replay_record(struct replay *rp, const rd_kafka_message_t *m)
{
    const unsigned char *k = m->key;
    kchat_change ch = {0};
    kchat_txn *t;
    uint64_t seq = header_u64(m, KCHAT_HDR_CL_SEQ);

    assert_true(m->partition >= 0 && m->partition < PARTITIONS);
    assert_true(m->key_len >= 2 && k[0] < KCHAT_TBL__COUNT);
    assert_true(seq > 0);
    assert_true(header_u64(m, KCHAT_HDR_CL_LAST) >= seq);
    ch.table = (kchat_table)k[0];
    ch.key = k + 1;
    ch.key_len = m->key_len - 1;
    ch.deleted = m->payload == NULL;
    ch.value = m->payload;
    ch.value_len = m->len;
    assert_int_equal(kchat_txn_begin(rp->store[m->partition], true, &t), KCHAT_OK);
    assert_int_equal(kchat_store_change_apply(t, &ch), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    if (seq > rp->max_seq[m->partition])
        rp->max_seq[m->partition] = seq;
    rp->records++;
}

/* Read every partition of kchat-changelog from the beginning to its end. */
static void replay_changelog(struct replay *rp, const char *brokers)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(PARTITIONS);
    rd_kafka_t *rk;
    bool at_end[PARTITIONS] = {false};
    int eof = 0;
    int64_t deadline = kc_now_ms() + 30000;

    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", "test-changelog", errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    for (int p = 0; p < PARTITIONS; p++)
        rd_kafka_topic_partition_list_add(tp, KCHAT_TOPIC_CHANGELOG, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, tp), 0);
    rd_kafka_topic_partition_list_destroy(tp);
    while (eof < PARTITIONS && kc_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && !at_end[m->partition]) {
            at_end[m->partition] = true;
            eof++;
        }
        else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
            replay_record(rp, m);
        rd_kafka_message_destroy(m);
    }
    assert_int_equal(eof, PARTITIONS);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/* kchat_store_changelog_scan() callback: apply a kept change the Kafka
 * changelog does not have yet. */
static int apply_kept(void *arg, const kchat_change *ch)
{
    return kchat_store_change_apply(arg, ch);
}

/* kchat_store_changelog_scan() callback: count a kept change. */
static int count_kept(void *arg, const kchat_change *ch)
{
    (void)ch;
    ++*(size_t *)arg;
    return 0;
}

/* The workload, then a stop: clean, or (@p idle_kill) a kill -9 after 1 s
 * of nothing to do, after which no shard may keep a change Kafka lacks.
 * Either way the changelog and the kept changes give every table back. */
static void rebuild_after(bool idle_kill)
{
    char *data = kc_tmppath(idle_kill ? "idle" : "rebuild"), errstr[64];
    struct replay rp = {0};
    kc_user u[6];
    char room[65];
    size_t rows_total = 0;

    mock_start();
    g_srv = kc_serve_start("changelog-serve", data, g_brokers, PARTITIONS, NULL);
    assert_non_null(g_srv);
    g_client = kc_client_new(g_brokers, KC_FROM_END);
    for (int i = 0; i < 6; i++)
        user_in(&u[i], "cl", i % PARTITIONS);
    const char *friends[] = {u[1].id, u[2].id, u[3].id, NULL};
    assert_true(kc_add_friends(g_client, &u[0], friends));
    assert_true(kc_create_room(g_client, &u[0], friends, "changelog room", room));
    for (int i = 0; i < 24; i++)
        assert_true(kc_chat(g_client, &u[i % 4], room, "a message", NULL) == i + 1);
    if (idle_kill) {
        kc_sleep_ms(1000);
        kc_proc_stop(g_srv, SIGKILL, 10, NULL);
    } else {
        assert_true(kc_proc_stop_clean(g_srv, 30));
    }
    kc_proc_free(g_srv);
    g_srv = NULL;

    for (int p = 0; p < PARTITIONS; p++) {
        char *dir;
        snprintf(errstr, sizeof(errstr), "%s-replay-%d", idle_kill ? "idle" : "rebuild", p);
        dir = kc_tmppath(errstr);
        assert_int_equal(kchat_store_open(dir, NULL, &rp.store[p]), KCHAT_OK);
        free(dir);
    }
    replay_changelog(&rp, g_brokers);
    assert_true(rp.records > 50);
    for (int p = 0; p < PARTITIONS; p++) {
        char path[4096], *want, *got;
        kchat_store *shard;
        kchat_txn *src, *dst;
        size_t rows, rows_got, kept = 0;

        snprintf(path, sizeof(path), "%s/shard-%04d", data, p);
        assert_int_equal(kchat_store_open(path, NULL, &shard), KCHAT_OK);
        if (idle_kill) {
            assert_int_equal(kchat_txn_begin(shard, false, &src), KCHAT_OK);
            assert_int_equal(kchat_store_changelog_scan(src, rp.max_seq[p] + 1, count_kept,
                                                        &kept), KCHAT_OK);
            kchat_txn_abort(src);
            if (kept > 0)
                fprintf(stderr, "shard %d: %zu changes after %" PRIu64 " not in Kafka after "
                        "1 s idle\n", p, kept, rp.max_seq[p]);
            assert_int_equal(kept, 0);
        }
        /* the changes Kafka may not have: after the last one it confirmed */
        assert_int_equal(kchat_txn_begin(shard, false, &src), KCHAT_OK);
        assert_int_equal(kchat_txn_begin(rp.store[p], true, &dst), KCHAT_OK);
        assert_int_equal(kchat_store_changelog_scan(src, rp.max_seq[p] + 1, apply_kept, dst),
                         KCHAT_OK);
        assert_int_equal(kchat_txn_commit(dst), KCHAT_OK);
        kchat_txn_abort(src);
        want = kc_store_dump(shard, false, &rows);
        got = kc_store_dump(rp.store[p], false, &rows_got);
        if (strcmp(want, got) != 0)
            fprintf(stderr, "shard %d: %zu rows, rebuilt from the changelog: %zu\n", p, rows,
                    rows_got);
        assert_string_equal(want, got);
        rows_total += rows;
        free(want);
        free(got);
        kchat_store_close(shard);
        kchat_store_close(rp.store[p]);
    }
    fprintf(stderr, "test_changelog: %zu changelog records gave back %zu rows of %d shards%s\n",
            rp.records, rows_total, PARTITIONS, idle_kill ? " (kill -9 after 1 s idle)" : "");
    free(data);
}

static void test_changelog_rebuilds_shards(void **state)
{
    (void)state;
    rebuild_after(false);
}

static void test_changelog_current_when_idle(void **state)
{
    (void)state;
    rebuild_after(true);
}

/* ---- answers wait for the changelog ---- */

/* Every partition of kchat-changelog led by broker 3, everything else by 1. */
static void changelog_on_broker_3(void)
{
    for (size_t i = 0; i < kchat_topic_count(); i++)
        for (int p = 0; p < PARTITIONS; p++)
            assert_int_equal(rd_kafka_mock_partition_set_leader(
                                 g_mock, kchat_topic_name(i), p,
                                 strcmp(kchat_topic_name(i), KCHAT_TOPIC_CHANGELOG) ? 1 : 3),
                             0);
}

#define REFUSE_MS 6000

/* Keep broker 3 refusing produce requests: tops its queue up to 3
 * refusals, each answered 150 ms late. Called every 20 ms while it must
 * (a refusal takes longer than that, so the queue never runs dry), it
 * leaves at most 3 behind when the calls stop. */
static void refusals_keep(void)
{
    kc_mock_refusals_keep(g_mock, 3, KC_API_PRODUCE, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 150,
                          3, 3);
}

static void test_answers_wait_for_changelog(void **state)
{
    char *data = kc_tmppath("gate"), cid[72];
    kc_user u;
    json_t *body;
    const kc_record *r;
    int64_t sent_ms;

    (void)state;
    mock_start();
    changelog_on_broker_3();
    g_srv = kc_serve_start("gate-serve", data, g_brokers, PARTITIONS, NULL);
    assert_non_null(g_srv);
    g_client = kc_client_new(g_brokers, KC_FROM_END);
    user_in(&u, "gate", -1);

    /* For 6 s, broker 3 refuses every produce request (a retriable error,
     * answered 150 ms late): no change of any shard reaches Kafka. The
     * refusals are kept queued, a few at a time, for that long rather than
     * counted out, since how soon a refused request is retried is the
     * library's choice (100 ms apart before librdkafka 2.4, an exponential
     * back-off up to 1 s since). */
    refusals_keep();
    body = json_pack("{s:s, s:s}", "userId", u.id, "userStatus", "away");
    sent_ms = kc_now_ms();
    assert_true(kc_send_req(g_client, "user-status-change", u.id, u.session, NULL, body, cid));
    json_decref(body);
    /* applied and committed, but its change is not in Kafka: no answer */
    while (kc_now_ms() - sent_ms < REFUSE_MS) {
        refusals_keep();
        r = kc_wait_cid(g_client, "user-status-change", cid, 20);
        if (r != NULL)
            kc_record_dump(r, "answered while its change could not reach Kafka");
        assert_null(r);
    }
    r = kc_wait_cid(g_client, "user-status-change", cid, 30000);
    if (r == NULL)
        kc_proc_log_tail(g_srv, 30, stderr);
    assert_non_null(r);
    fprintf(stderr, "test_changelog: answered %.1f s after the send, once Kafka had its "
            "change\n", (double)(kc_now_ms() - sent_ms) / 1000.0);
    kc_sleep_ms(500);
    assert_int_equal(kc_count_cid(g_client, cid), 1);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_changelog_rebuilds_shards, teardown),
        cmocka_unit_test_teardown(test_changelog_current_when_idle, teardown),
        cmocka_unit_test_teardown(test_answers_wait_for_changelog, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
