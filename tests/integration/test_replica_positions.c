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
 *  2. The test writes FILLER_BYTES of records of no data set to every
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

#include <librdkafka/rdkafka.h>

#include "kchat/store.h"
#include "support/kassert.h"
#include "support/kclient.h"
#include "support/replica.h"

#define PARTITIONS      4
#define DIRECTORY_TOPIC "kchat-directory"   /* the default deployment's */
#define SESSION_GONE_MS 8000        /* more than serve's session.timeout.ms */
/* The filler: more than the 5 MB the mock keeps of a partition, in
 * records of FILLER_RECORD bytes, each its own message set (kc_send_raw()
 * waits for each), so the oldest sets go first. */
#define FILLER_RECORD   (100 * 1024)
#define FILLER_BYTES    (6 * 1024 * 1024)
#define FILLER_COUNT    (FILLER_BYTES / FILLER_RECORD)
/* How far past a partition's end step 5 moves D1's stored positions. */
#define PAST_END        1000000

static const char *const changelog_on[] = {"--changelog", "on", NULL};
static const char past_end_said[] = "but was read up to";

/* what the test started, so that a failed assertion still cleans up */
static kc_client *g_client;
static kc_proc *g_srv, *g_broker;

static int test_teardown(void **state)
{
    (void)state;
    kc_client_free(g_client);
    g_client = NULL;
    kc_proc_free(g_srv);
    g_srv = NULL;
    kc_proc_free(g_broker);
    g_broker = NULL;
    return 0;
}

static void stop_server(kc_proc **srv)
{
    assert_true(kc_proc_stop_clean(*srv, 60));
    kc_proc_free(*srv);
    *srv = g_srv = NULL;
    /* a static member of the group keeps its place for the session
     * timeout; past it, the next server is given every partition at once */
    kc_sleep_ms(SESSION_GONE_MS);
}

/* FILLER_COUNT records of no data set (no header, no tag) to each
 * partition of kchat-directory. */
static void write_filler(kc_client *c)
{
    char *value = malloc(FILLER_RECORD);

    assert_non_null(value);
    memset(value, 'f', FILLER_RECORD);
    for (int32_t p = 0; p < PARTITIONS; p++)
        for (int i = 0; i < FILLER_COUNT; i++)
            assert_true(kc_send_raw(c, DIRECTORY_TOPIC, p, "filler", 6, value,
                                    FILLER_RECORD, NULL, 0));
    free(value);
}

/* The positions D1's replica stored for kchat-directory into @p next, or
 * with @p move > 0 each moved that much further. Each must be there: D1
 * read every partition. */
static void stored_positions(const char *d1, int64_t move, int64_t next[PARTITIONS])
{
    char path[4096];
    kchat_store *s;
    kchat_txn *t;

    snprintf(path, sizeof(path), "%s/directory", d1);
    assert_int_equal(kchat_store_open(path, NULL, &s), KCHAT_OK);
    assert_int_equal(kchat_txn_begin(s, move > 0, &t), KCHAT_OK);
    for (int32_t p = 0; p < PARTITIONS; p++) {
        next[p] = -1;
        assert_int_equal(kchat_store_offset_get(t, DIRECTORY_TOPIC, p, &next[p]), KCHAT_OK);
        fprintf(stderr, "D1's replica had read %s [%d] up to %" PRId64 "\n",
                DIRECTORY_TOPIC, (int)p, next[p]);
        assert_true(next[p] >= 0);
        if (move > 0)
            assert_int_equal(kchat_store_offset_set(t, DIRECTORY_TOPIC, p, next[p] + move),
                             KCHAT_OK);
    }
    if (move > 0)
        assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    else
        kchat_txn_abort(t);
    kchat_store_close(s);
}

/* Each partition of kchat-directory must now begin after @p read. */
static void expect_starts_after(const char *brokers, const int64_t read[PARTITIONS])
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;

    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    assert_non_null(rk);
    for (int32_t p = 0; p < PARTITIONS; p++) {
        int64_t lo = -1, hi = -1;

        assert_int_equal(rd_kafka_query_watermark_offsets(rk, DIRECTORY_TOPIC, p, &lo, &hi,
                                                          10000),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
        fprintf(stderr, "%s [%d] now holds %" PRId64 "..%" PRId64 "\n", DIRECTORY_TOPIC,
                (int)p, lo, hi);
        assert_true(lo > read[p]);
    }
    rd_kafka_destroy(rk);
}

static void test_positions_outside_the_partition(void **state)
{
    (void)state;
    kc_proc *broker = g_broker = kc_mock_broker_start("positions-broker", PARTITIONS);
    assert_non_null(broker);
    char brokers[1024];
    snprintf(brokers, sizeof(brokers), "%s", kc_proc_bootstrap(broker));
    char *d1 = kc_tmppath("data-d1"), *d2 = kc_tmppath("data-d2");
    kc_rm_rf(d1);
    kc_rm_rf(d2);

    /* ---- 1. D1: A follows B, B "first" ---- */
    kc_proc *srv = g_srv = kc_serve_start("serve-d1", d1, brokers, PARTITIONS, changelog_on);
    assert_non_null(srv);
    kc_client *c = g_client = kc_client_new(brokers, KC_FROM_END);
    assert_non_null(c);
    kc_user a, b;
    assert_true(kc_user_in_shard(c, &a, "pa", 0, PARTITIONS));
    assert_true(kc_user_in_shard(c, &b, "pb", 1, PARTITIONS));
    const char *fa[] = { b.id, NULL };
    assert_true(kc_add_friends(c, &a, fa));
    assert_true(kc_change_status_many(c, &b, 1, "first"));
    kc_expect_friend_status(c, &a, &b, "first");
    stop_server(&srv);

    /* ---- 2. the partitions move past what D1 read ---- */
    int64_t read[PARTITIONS];
    stored_positions(d1, 0, read);
    write_filler(c);
    expect_starts_after(brokers, read);

    /* ---- 3. another node writes B's new status after the filler ---- */
    srv = g_srv = kc_serve_start_ex("serve-d2", d2, brokers, PARTITIONS, changelog_on, 120);
    assert_non_null(srv);
    assert_true(kc_change_status_many(c, &b, 1, "while-away"));
    stop_server(&srv);

    /* ---- 4. D1, its positions before the partitions' starts ---- */
    srv = g_srv = kc_serve_start_ex("serve-d1-before", d1, brokers, PARTITIONS, changelog_on,
                                    120);
    assert_non_null(srv);
    fprintf(stderr, "the restart read %ld records before serving\n",
            kc_replica_read_at_start(srv));
    assert_true(kc_replica_read_at_start(srv) >= 1);
    kc_expect_friend_status(c, &a, &b, "while-away");
    stop_server(&srv);

    /* ---- 5. D1, its positions past the partitions' ends ---- */
    stored_positions(d1, PAST_END, read);
    srv = g_srv = kc_serve_start_ex("serve-d1-past", d1, brokers, PARTITIONS, changelog_on,
                                    120);
    assert_non_null(srv);
    long reread = kc_replica_read_at_start(srv);
    fprintf(stderr, "the restart read %ld records before serving (at least %d wanted)\n",
            reread, FILLER_COUNT);
    if (kc_file_count(kc_proc_log(srv), past_end_said) != PARTITIONS)
        kc_proc_log_tail(srv, 40, stderr);
    assert_int_equal(kc_file_count(kc_proc_log(srv), past_end_said), PARTITIONS);
    assert_true(reread >= FILLER_COUNT);
    kc_expect_friend_status(c, &a, &b, "while-away");

    assert_true(kc_proc_stop_clean(srv, 60));
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
