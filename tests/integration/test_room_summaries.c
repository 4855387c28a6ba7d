/*
 * Room summaries through Kafka (docs/design.md, "Cross-shard work"), on the
 * embedded install, where every start has a new, empty broker:
 *  (a) a room made in one user's shard and written to by a user of another
 *      shard: `kchat-rooms` holds the room's summaries, keyed by roomId, in
 *      the room's partition, tagged with a data set, the last one with the
 *      room's lastSeq; user-search-room of the member in the other shard
 *      answers that lastSeq;
 *  (b) SIGTERM and a start on the same data directory: lastSeq is still
 *      right (the replica kept it), and moves with the next send, whose
 *      summary reaches the new broker's `kchat-rooms`;
 *  (c) SIGTERM, the replica (DATA/directory) removed, as a data directory
 *      whose replica never had summaries (an older kchat's) looks to this
 *      start, and a start: the shards publish every room once (logged), so
 *      lastSeq is right again and `kchat-rooms` holds it; a further start
 *      publishes nothing again.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "support/kassert.h"
#include "support/kclient.h"

#define PARTITIONS 4
#define TOPIC      "kchat-rooms"
#define PUBLISHED  "room summaries published"   /* the start-up publication's log line */

static kc_client *g_client;
static kc_proc *g_srv;

static int test_teardown(void **state)
{
    (void)state;
    kc_client_free(g_client);
    g_client = NULL;
    kc_proc_free(g_srv);
    g_srv = NULL;
    return 0;
}

/* What kchat-rooms holds for one room. */
struct seen {
    int n;                  /* records keyed by the room */
    int32_t partition;      /* of the last one */
    json_int_t last_seq;    /* of the last one; -1: none */
    bool all_tagged;        /* every one carries kchat-dataset */
};

/* Read every partition of kchat-rooms on @p bootstrap from the beginning
 * until it has been quiet for a second (at most 20 s), until a record of
 * @p room with lastSeq @p want has been seen. */
static struct seen topic_read(const char *bootstrap, const char *room, json_int_t want)
{
    struct seen s = {0, -1, -1, true};
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(PARTITIONS);
    rd_kafka_t *rk;
    int64_t deadline = kc_now_ms() + 20000, quiet_since = kc_now_ms();

    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", "test-room-summaries", err,
                                       sizeof(err)), RD_KAFKA_CONF_OK);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    assert_non_null(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err)));
    for (int p = 0; p < PARTITIONS; p++)
        rd_kafka_topic_partition_list_add(parts, TOPIC, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);
    while (kc_now_ms() < deadline && (s.last_seq != want || kc_now_ms() - quiet_since < 1000)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        rd_kafka_headers_t *h = NULL;
        const void *v;
        size_t vl;
        json_t *body;

        if (m == NULL)
            continue;
        if (!m->err && m->key_len == strlen(room) && !memcmp(m->key, room, m->key_len)) {
            quiet_since = kc_now_ms();
            body = json_loadb(m->payload, m->len, 0, NULL);
            s.n++;
            s.partition = m->partition;
            s.last_seq = kc_int(body, "lastSeq", -2);
            s.all_tagged &= rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                            rd_kafka_header_get_last(h, "kchat-dataset", &v, &vl) ==
                                RD_KAFKA_RESP_ERR_NO_ERROR && vl == 32;
            KC_ASSERT_STR(body, "roomId", room);
            json_decref(body);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    fprintf(stderr, "%s: %d records of %s, last lastSeq %lld in partition %d\n", TOPIC, s.n,
            room, (long long)s.last_seq, (int)s.partition);
    return s;
}

/* lastSeq of @p room in @p u's user-search-room answer; -1 when absent. */
static json_int_t searched_last_seq(kc_client *c, const kc_user *u, const char *room)
{
    json_t *r = kc_call(c, "user-search-room", u->id, u->session, json_pack("{ss}", "userId", u->id));
    json_int_t seq = -1;
    size_t i;
    json_t *v;

    assert_true(kc_check_ok(r, u->id));
    json_array_foreach(json_object_get(r, "rooms"), i, v)
        if (!strcmp(kc_str(v, "roomId"), room))
            seq = kc_int(v, "lastSeq", -2);
    json_decref(r);
    return seq;
}

/* A start on @p data with an embedded broker, and a client reading it. */
static kc_client *start(const char *data)
{
    assert_true(kc_embedded_up("serve-rooms", data, PARTITIONS, &g_srv, &g_client));
    return g_client;
}

static void stop(void)
{
    assert_true(kc_embedded_down(&g_srv, &g_client, 30));
}

static void test_summaries_through_kafka(void **state)
{
    char *data = kc_tmppath("rooms-data"), *replica, room[65];
    kc_user a, b;
    kc_client *c;
    struct seen s;

    (void)state;
    replica = kc_tmppath("rooms-data/directory");
    c = start(data);
    /* a and b in two shards; the room is in a's */
    assert_true(kc_user_new(c, &a, "ra"));
    do
        kc_user_init(&b, "rb");
    while (kc_partition_for(b.id, PARTITIONS) == kc_partition_for(a.id, PARTITIONS));
    assert_true(kc_user_register(c, &b));
    assert_true(kc_user_login(c, &b));
    const char *fa[] = {b.id, NULL};
    assert_true(kc_add_friends(c, &a, fa));
    assert_true(kc_create_room(c, &a, fa, "summaries", room));
    assert_int_equal(kc_partition_for(room, PARTITIONS), kc_partition_for(a.id, PARTITIONS));
    for (int i = 0; i < 5; i++)
        assert_int_equal(kc_chat(c, &b, room, "from b", NULL), i + 1);
    for (int i = 0; i < 2; i++)
        assert_int_equal(kc_chat(c, &a, room, "from a", NULL), 6 + i);

    /* (a) on the topic, and in b's search (b's shard is not the room's) */
    s = topic_read(kc_proc_bootstrap(g_srv), room, 7);
    assert_int_equal(s.last_seq, 7);
    assert_int_equal(s.partition, kc_partition_for(room, PARTITIONS));
    assert_true(s.all_tagged);
    assert_true(s.n >= 2 && s.n <= 8);   /* the creation, then at most one per send */
    assert_int_equal(searched_last_seq(c, &b, room), 7);
    assert_int_equal(searched_last_seq(c, &a, room), 7);

    /* (b) a restart on the same data directory: a new, empty broker */
    stop();
    c = start(data);
    assert_int_equal(searched_last_seq(c, &b, room), 7);
    assert_int_equal(kc_chat(c, &b, room, "after the restart", NULL), 8);
    assert_int_equal(searched_last_seq(c, &b, room), 8);
    s = topic_read(kc_proc_bootstrap(g_srv), room, 8);
    assert_int_equal(s.last_seq, 8);
    assert_false(kc_file_contains(kc_proc_log(g_srv), PUBLISHED, strlen(PUBLISHED)));

    /* (c) a replica without summaries: published again at the start */
    stop();
    kc_rm_rf(replica);
    c = start(data);
    assert_int_equal(searched_last_seq(c, &b, room), 8);
    assert_true(kc_file_contains(kc_proc_log(g_srv), PUBLISHED, strlen(PUBLISHED)));
    s = topic_read(kc_proc_bootstrap(g_srv), room, 8);
    assert_int_equal(s.last_seq, 8);
    assert_true(s.all_tagged);
    stop();
    c = start(data);
    assert_int_equal(searched_last_seq(c, &b, room), 8);
    assert_false(kc_file_contains(kc_proc_log(g_srv), PUBLISHED, strlen(PUBLISHED)));
    stop();
    free(replica);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_summaries_through_kafka, test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
