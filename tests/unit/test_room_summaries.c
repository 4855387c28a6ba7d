/* Unit tests of the room summaries (src/actors/summaries.c) against
 * temporary stores (tests/unit/ops/fixture.h): the replica's apply rule
 * (the higher lastSeq wins, an older or equal one is ignored), at most one
 * summary per room per transaction, user-search-room taking lastSeq from the
 * replica for a room of another shard, the start-up publication for a
 * replica that never had summaries, and the directory thread reading
 * kchat-rooms from an embedded broker, skipping another data set's records
 * and untagged ones. */
#include <librdkafka/rdkafka.h>

#include "kchat/topics.h"
#include "ops/fixture.c"

#define OURS   "0123456789abcdef0123456789abcdef"
#define THEIRS "fedcba9876543210fedcba9876543210"

/* The replica's summary of @p room_id (a new reference), NULL when none. */
static json_t *replica_get(struct fx *f, const char *room_id)
{
    kchat_txn *t;
    json_t *v;

    assert_int_equal(kchat_txn_begin(f->be.directory, false, &t), KCHAT_OK);
    v = kchat__get_json(t, KCHAT_TBL_ROOMS, room_id, strlen(room_id));
    kchat_txn_abort(t);
    return v;
}

static json_int_t replica_last_seq(struct fx *f, const char *room_id)
{
    json_t *v = replica_get(f, room_id);
    json_int_t seq = v ? fx_int(v, "lastSeq") : -1;

    json_decref(v);
    return seq;
}

static void apply_text(struct fx *f, int expect, const char *json)
{
    json_t *v = json_loads(json, 0, NULL);

    assert_non_null(v);
    assert_int_equal(kchat__room_summary_apply(&f->be, v), expect);
    json_decref(v);
}

static json_t *search_rooms(struct fx *f, const char *user, const char *session)
{
    json_t *a = fx_ok(f, KCHAT_OP_SEARCH_ROOM, user, session, "{\"userId\":\"%s\"}", user);
    json_t *rooms = json_incref(json_object_get(a, "rooms"));

    json_decref(a);
    return rooms;
}

/* The replica keeps the highest lastSeq: an older or equal record (a
 * replay, a late write-through) never moves it back; records that are not
 * summaries are refused with KCHAT_EINVAL and change nothing. */
static void test_apply_newer_wins(void **state)
{
    struct fx *f = *state;
    json_t *v;

    apply_text(f, KCHAT_OK, "{\"roomId\":\"r1\",\"roomName\":\"a\",\"participants\":[\"x\"],"
                            "\"lastSeq\":5}");
    assert_int_equal(replica_last_seq(f, "r1"), 5);
    apply_text(f, KCHAT_OK, "{\"roomId\":\"r1\",\"roomName\":\"old\",\"participants\":[\"x\"],"
                            "\"lastSeq\":3}");
    apply_text(f, KCHAT_OK, "{\"roomId\":\"r1\",\"roomName\":\"same\",\"participants\":[\"x\"],"
                            "\"lastSeq\":5}");
    v = replica_get(f, "r1");
    fx_assert_json(v, "{\"roomId\":\"r1\",\"roomName\":\"a\",\"participants\":[\"x\"],"
                      "\"lastSeq\":5}");
    json_decref(v);
    apply_text(f, KCHAT_OK, "{\"roomId\":\"r1\",\"roomName\":\"a\",\"participants\":[\"x\"],"
                            "\"lastSeq\":7}");
    assert_int_equal(replica_last_seq(f, "r1"), 7);
    /* a room at lastSeq 0 (just made) is taken; another room is its own */
    apply_text(f, KCHAT_OK, "{\"roomId\":\"r2\",\"roomName\":\"\",\"participants\":[],"
                            "\"lastSeq\":0}");
    assert_int_equal(replica_last_seq(f, "r2"), 0);
    assert_int_equal(replica_last_seq(f, "r1"), 7);
    /* not summaries */
    apply_text(f, KCHAT_EINVAL, "{\"roomName\":\"a\",\"lastSeq\":9}");
    apply_text(f, KCHAT_EINVAL, "{\"roomId\":\"r1\",\"lastSeq\":\"9\"}");
    apply_text(f, KCHAT_EINVAL, "{\"roomId\":\"r1\"}");
    apply_text(f, KCHAT_EINVAL, "{\"roomId\":\"r1\",\"lastSeq\":-1}");
    apply_text(f, KCHAT_EINVAL, "{\"roomId\":\"bad id\",\"lastSeq\":9}");
    assert_int_equal(replica_last_seq(f, "r1"), 7);
    /* several in one transaction, as the directory thread and the
     * write-through take them: records that did not parse (NULL) and ones
     * that are not summaries skipped, the highest lastSeq kept */
    {
        json_t *batch[] = {
            NULL,
            json_loads("{\"roomId\":\"r1\",\"lastSeq\":9}", 0, NULL),
            json_loads("{\"roomId\":\"r1\",\"lastSeq\":8}", 0, NULL),
            json_loads("{\"roomId\":\"r3\"}", 0, NULL),
            json_loads("{\"roomId\":\"r3\",\"lastSeq\":2}", 0, NULL),
            json_loads("{\"roomId\":\"r2\",\"lastSeq\":0}", 0, NULL),
        };
        size_t n = sizeof(batch) / sizeof(batch[0]);

        assert_int_equal(kchat__room_summaries_take(&f->be, batch, n), KCHAT_OK);
    }
    assert_int_equal(replica_last_seq(f, "r1"), 9);
    assert_int_equal(replica_last_seq(f, "r2"), 0);
    assert_int_equal(replica_last_seq(f, "r3"), 2);
}

/* user-search-room answers a room of another shard with the replica's
 * lastSeq, never the room shard's own record; a room of the asking user's
 * own shard from that shard's transaction. */
static void test_search_reads_replica(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    json_t *rooms, *stored;
    char *text;

    fx_cast_make(f, &c, true);   /* alice's room (home) with bob (away) and carol */
    json_decref(fx_ok(f, KCHAT_OP_ADD_CHAT, c.carol, c.sc,
                      "{\"writerId\":\"%s\",\"roomId\":\"%s\",\"message\":\"hi\"}",
                      c.carol, c.room));
    assert_int_equal(replica_last_seq(f, c.room), 1);   /* written through */
    rooms = search_rooms(f, c.bob, c.sb);
    assert_int_equal(fx_int(json_array_get(rooms, 0), "lastSeq"), 1);
    json_decref(rooms);

    /* a newer summary in the replica (as from Kafka): bob sees it ... */
    text = fx_keep(f, malloc(512));
    snprintf(text, 512, "{\"roomId\":\"%s\",\"roomName\":\"\",\"participants\":"
                        "[\"alice\",\"%s\",\"%s\"],\"lastSeq\":42,\"ver\":9}", c.room, c.bob,
             c.carol);
    apply_text(f, KCHAT_OK, text);
    rooms = search_rooms(f, c.bob, c.sb);
    assert_int_equal(fx_int(json_array_get(rooms, 0), "lastSeq"), 42);
    json_decref(rooms);
    /* ... alice, in the room's shard, reads the room itself */
    rooms = search_rooms(f, "alice", c.sa);
    assert_int_equal(fx_int(json_array_get(rooms, 0), "lastSeq"), 1);
    json_decref(rooms);

    /* the room's shard moved on without the replica knowing: bob still sees
     * what the replica has, not the other shard's record */
    stored = fx_get(f, c.home, KCHAT_TBL_ROOMS, c.room, strlen(c.room));
    json_object_set_new(stored, "lastSeq", json_integer(50));
    {
        kchat_txn *t;
        assert_int_equal(kchat_txn_begin(f->be.shards[c.home].store, true, &t), KCHAT_OK);
        assert_int_equal(kchat__put_json(t, KCHAT_TBL_ROOMS, c.room, strlen(c.room), stored),
                         KCHAT_OK);
        assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    }
    json_decref(stored);
    rooms = search_rooms(f, c.bob, c.sb);
    assert_int_equal(fx_int(json_array_get(rooms, 0), "lastSeq"), 42);
    json_decref(rooms);
    rooms = search_rooms(f, c.carol, c.sc);
    assert_int_equal(fx_int(json_array_get(rooms, 0), "lastSeq"), 50);
    json_decref(rooms);
}

/* A send that stores nothing publishes nothing: a repeat by clientMsgId, a
 * writer who is not a member. */
static void test_no_summary_without_change(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;

    fx_cast_make(f, &c, true);
    json_decref(fx_ok(f, KCHAT_OP_ADD_CHAT, c.bob, c.sb,
                      "{\"writerId\":\"%s\",\"roomId\":\"%s\",\"message\":\"m\","
                      "\"clientMsgId\":\"k1\"}", c.bob, c.room));
    assert_int_equal(fx_count(f, KCHAT_TOPIC_ROOMS), 1);
    json_decref(fx_ok(f, KCHAT_OP_ADD_CHAT, c.bob, c.sb,
                      "{\"writerId\":\"%s\",\"roomId\":\"%s\",\"message\":\"m\","
                      "\"clientMsgId\":\"k1\"}", c.bob, c.room));
    assert_int_equal(fx_count(f, KCHAT_TOPIC_ROOMS), 0);
    json_decref(fx_err(f, "NOT_A_MEMBER", KCHAT_OP_ADD_CHAT, c.eve, c.se,
                       "{\"writerId\":\"%s\",\"roomId\":\"%s\",\"message\":\"m\"}",
                       c.eve, c.room));
    assert_int_equal(fx_count(f, KCHAT_TOPIC_ROOMS), 0);
    assert_int_equal(replica_last_seq(f, c.room), 1);
}

/* ---- one transaction with several sends ---- */

struct outbox_rooms {
    size_t n;
    json_t *values;   /* the kchat-rooms values, in outbox order */
};

static int outbox_rooms_one(void *arg, uint64_t seq, const kchat_outbox_rec *r)
{
    struct outbox_rooms *o = arg;

    (void)seq;
    if (strcmp(r->topic, KCHAT_TOPIC_ROOMS))
        return 0;
    o->n++;
    json_array_append_new(o->values, json_loadb(r->value, r->value_len, 0, NULL));
    return 0;
}

/* The kchat-rooms records of @p t's outbox (a new array). */
static json_t *outbox_rooms(kchat_txn *t)
{
    struct outbox_rooms o = {0, json_array()};

    assert_int_equal(kchat_store_outbox_scan(t, 0, outbox_rooms_one, &o), KCHAT_OK);
    return o.values;
}

/* lastSeq of every summary among the worker's pending records, as a JSON
 * object roomId -> [lastSeq, ...] (a new reference). */
static json_t *pending_summaries(struct fx *f)
{
    json_t *by_room = json_object();

    for (size_t i = 0; i < f->w.n_out; i++) {
        const struct out_rec *r = &f->w.out[i];
        json_t *v, *list;
        const char *id;

        if (strcmp(r->topic, KCHAT_TOPIC_ROOMS))
            continue;
        v = json_loadb(r->value, r->value_len, 0, NULL);
        id = fx_str(v, "roomId");
        assert_int_equal(r->key_len, strlen(id));
        assert_memory_equal(r->key, id, r->key_len);
        if ((list = json_object_get(by_room, id)) == NULL)
            json_object_set_new(by_room, id, list = json_array());
        json_array_append(list, json_object_get(v, "lastSeq"));
        json_decref(v);
    }
    return by_room;
}

/* Send one message from @p writer to each of @p rooms in turn, all in one
 * transaction of shard @p shard (as a batch does), and check the summaries
 * against @p expect (roomId -> [lastSeq]): in the worker's records and in
 * the outbox, one per room. Commits; the records are then dropped. */
static void sends_in_one_txn(struct fx *f, uint32_t shard, const char *writer,
                             const char *const *rooms, size_t n, const char *expect_fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void sends_in_one_txn(struct fx *f, uint32_t shard, const char *writer,
                             const char *const *rooms, size_t n, const char *expect_fmt, ...)
{
    struct ctx c = {.be = &f->be, .w = &f->w, .sh = &f->be.shards[shard], .fmt = KCHAT_FMT_JSON,
                    .user_id = writer, .now_ms = f->now_ms, .req = &f->w.req};
    json_t *got, *in_outbox, *before, *expect, *v;
    char text[1024];
    size_t i, k;
    int rc = KCHAT_OK;
    va_list ap;

    va_start(ap, expect_fmt);
    vsnprintf(text, sizeof(text), expect_fmt, ap);
    va_end(ap);
    assert_non_null(expect = json_loads(text, 0, NULL));
    assert_int_equal(kchat_txn_begin(c.sh->store, true, &c.txn), KCHAT_OK);
    before = outbox_rooms(c.txn);
    for (i = 0; i < n && rc == KCHAT_OK; i++)
        rc = kchat__room_chat(&c, rooms[i], writer, "m", 1, "");
    got = pending_summaries(f);
    in_outbox = outbox_rooms(c.txn);
    /* ended before anything is checked: a failed check leaves no open
     * transaction behind */
    assert_int_equal(kchat_txn_commit(c.txn), KCHAT_OK);
    kchat__worker_discard_out(&f->w);
    assert_int_equal(rc, KCHAT_OK);
    if (!json_equal(got, expect)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
        fprintf(stderr, "summaries of the transaction: %s, expected %s\n", g, text);
        free(g);
        fail();
    }
    /* the outbox holds exactly those summaries (replaced ones deleted) */
    assert_int_equal(json_array_size(in_outbox),
                     json_array_size(before) + json_object_size(expect));
    json_array_foreach(in_outbox, k, v) {
        json_t *want;
        if (k < json_array_size(before))
            continue;
        want = json_object_get(expect, fx_str(v, "roomId"));
        assert_non_null(want);
        assert_int_equal(fx_int(v, "lastSeq"), json_integer_value(json_array_get(want, 0)));
    }
    json_decref(before);
    json_decref(in_outbox);
    json_decref(got);
    json_decref(expect);
}

/* Many sends to one room in one transaction publish one summary, with the
 * last lastSeq; two rooms, two summaries; also when the two rooms share a
 * slot of the worker's table, and in a later transaction (whose records
 * start again at the same indices, under the slots the last one left). */
static void test_coalesced(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char rooms[64][65], friends[160];
    int a = -1, b = -1, n = 1, x, y;

    fx_cast_make(f, &c, true);
    snprintf(friends, sizeof(friends), "[\"%s\",\"%s\"]", c.bob, c.carol);
    snprintf(rooms[0], sizeof(rooms[0]), "%s", c.room);
    for (; n < 64 && (b < 0 || n < 4); n++) {
        fx_room(f, "alice", c.sa, friends, rooms[n]);
        for (int j = 0; j < n && b < 0; j++)
            if ((kchat_murmur2(rooms[n], strlen(rooms[n])) & (KCHAT__ROOM_SUM_SLOTS - 1)) ==
                (kchat_murmur2(rooms[j], strlen(rooms[j])) & (KCHAT__ROOM_SUM_SLOTS - 1))) {
                a = j;
                b = n;
            }
    }
    assert_true(b > 0);   /* two rooms of one slot (birthday bound: ~20 rooms) */
    for (x = 0; x == a || x == b; x++)
        ;
    for (y = x + 1; y == a || y == b; y++)
        ;
    assert_true(y < n);

    /* every room is at lastSeq 0 */
    {
        const char *one[] = {rooms[x], rooms[x], rooms[x]};
        sends_in_one_txn(f, c.home, c.carol, one, 3, "{\"%s\":[3]}", rooms[x]);
    }
    {
        const char *two[] = {rooms[x], rooms[y], rooms[x]};
        sends_in_one_txn(f, c.home, c.carol, two, 3, "{\"%s\":[5],\"%s\":[1]}", rooms[x],
                         rooms[y]);
    }
    {
        /* a, then b over a's slot, then a again: found by a look through */
        const char *clash[] = {rooms[a], rooms[b], rooms[a], rooms[b], rooms[a]};
        sends_in_one_txn(f, c.home, c.carol, clash, 5, "{\"%s\":[3],\"%s\":[2]}", rooms[a],
                         rooms[b]);
    }
}

/* ---- start-up: a replica without summaries ---- */

/* What an older kchat's data directory looks like: rooms in the shards, no
 * summaries in the replica, no mark. The upgrade publishes every room once
 * (outbox and replica), then never again. */
static void test_upgrade_publishes_once(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char room2[65], friends[80], err[256];
    size_t rows = 0, in_outbox[FX_PARTITIONS];
    json_t *rooms;
    kchat_txn *t;

    fx_cast_make(f, &c, true);
    for (int i = 0; i < 2; i++)
        json_decref(fx_ok(f, KCHAT_OP_ADD_CHAT, c.bob, c.sb,
                          "{\"writerId\":\"%s\",\"roomId\":\"%s\",\"message\":\"m\"}",
                          c.bob, c.room));
    snprintf(friends, sizeof(friends), "[\"%s\"]", c.dave);
    fx_befriend(f, c.bob, c.sb, friends);
    fx_room(f, c.bob, c.sb, friends, room2);   /* in bob's shard, away */
    assert_int_equal(fx_shard_of(f, room2), c.away);

    /* the replica as an older kchat left it */
    assert_int_equal(kchat_txn_begin(f->be.directory, true, &t), KCHAT_OK);
    assert_int_equal(kchat_txn_del(t, KCHAT_TBL_ROOMS, c.room, strlen(c.room)), KCHAT_OK);
    assert_int_equal(kchat_txn_del(t, KCHAT_TBL_ROOMS, room2, strlen(room2)), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    rooms = search_rooms(f, c.bob, c.sb);   /* c.room is another shard's: unknown */
    assert_int_equal(fx_int(json_array_get(rooms, 0), "lastSeq") +
                     fx_int(json_array_get(rooms, 1), "lastSeq"), 0);
    json_decref(rooms);
    for (uint32_t p = 0; p < FX_PARTITIONS; p++) {
        json_t *v;
        assert_int_equal(kchat_txn_begin(f->be.shards[p].store, false, &t), KCHAT_OK);
        v = outbox_rooms(t);
        in_outbox[p] = json_array_size(v);
        json_decref(v);
        kchat_txn_abort(t);
    }

    assert_int_equal(kchat__room_summaries_upgrade(&f->be, err, sizeof(err)), KCHAT_OK);
    assert_int_equal(replica_last_seq(f, c.room), 2);
    assert_int_equal(replica_last_seq(f, room2), 0);
    rooms = search_rooms(f, c.bob, c.sb);
    assert_int_equal(fx_int(json_array_get(rooms, 0), "lastSeq") +
                     fx_int(json_array_get(rooms, 1), "lastSeq"), 2);
    json_decref(rooms);
    for (uint32_t p = 0; p < FX_PARTITIONS; p++) {
        json_t *v, *last;
        size_t want = in_outbox[p] + (p == c.home) + (p == c.away);
        assert_int_equal(kchat_txn_begin(f->be.shards[p].store, false, &t), KCHAT_OK);
        v = outbox_rooms(t);
        assert_int_equal(json_array_size(v), want);
        if (p == c.home) {
            last = json_array_get(v, json_array_size(v) - 1);
            fx_assert_json(last, "{\"roomId\":\"%s\",\"roomName\":\"\",\"participants\":"
                                 "[\"alice\",\"%s\",\"%s\"],\"lastSeq\":2,\"ver\":3,"
                                 "\"reads\":{\"%s\":2}}",
                           c.room, c.bob, c.carol, c.bob);
        }
        json_decref(v);
        kchat_txn_abort(t);
        in_outbox[p] = want;
    }

    /* once: a second start publishes nothing */
    assert_int_equal(kchat__room_summaries_upgrade(&f->be, err, sizeof(err)), KCHAT_OK);
    for (uint32_t p = 0; p < FX_PARTITIONS; p++) {
        json_t *v;
        assert_int_equal(kchat_txn_begin(f->be.shards[p].store, false, &t), KCHAT_OK);
        v = outbox_rooms(t);
        assert_int_equal(json_array_size(v), in_outbox[p]);
        json_decref(v);
        kchat_txn_abort(t);
    }
    assert_int_equal(kchat_txn_begin(f->be.directory, false, &t), KCHAT_OK);
    assert_int_equal(kchat_txn_scan(t, KCHAT_TBL_ROOMS, NULL, 0, false, count_one, &rows),
                     KCHAT_OK);
    kchat_txn_abort(t);
    assert_int_equal(rows, 2);
}

/* ---- the directory thread on kchat-rooms ---- */

static void produce(rd_kafka_t *rk, const char *topic, const char *key, const char *dataset,
                    const char *value)
{
    rd_kafka_resp_err_t err;

    if (dataset != NULL)
        err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                                RD_KAFKA_V_VALUE((void *)value, strlen(value)),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_HEADER(KCHAT_HDR_DATASET, dataset,
                                                  (ssize_t)strlen(dataset)),
                                RD_KAFKA_V_END);
    else
        err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                                RD_KAFKA_V_VALUE((void *)value, strlen(value)),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    assert_int_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* The directory thread takes this data set's room summaries from
 * kchat-rooms and skips another data set's and untagged ones (counted);
 * kchat-directory still reaches the user directory. */
static void test_thread_skips_foreign(void **state)
{
    struct fx *f = *state;
    kchat_embedded *e;
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    char err[256];
    json_t *user = NULL;
    int i;

    assert_int_equal(kchat_embedded_start(1, FX_PARTITIONS, &e, err, sizeof(err)), KCHAT_OK);
    f->be.bootstraps = strdup(kchat_embedded_bootstraps(e));
    memcpy(f->be.dataset, OURS, sizeof(OURS));
    conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", f->be.bootstraps, err,
                                       sizeof(err)), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "partitioner", "murmur2_random", err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    assert_non_null(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)));
    /* in one partition, in this order: theirs (9), untagged (8), ours (3) */
    produce(rk, KCHAT_TOPIC_ROOMS, "rq1", THEIRS,
            "{\"roomId\":\"rq1\",\"roomName\":\"t\",\"participants\":[],\"lastSeq\":9}");
    produce(rk, KCHAT_TOPIC_ROOMS, "rq1", NULL,
            "{\"roomId\":\"rq1\",\"roomName\":\"u\",\"participants\":[],\"lastSeq\":8}");
    produce(rk, KCHAT_TOPIC_ROOMS, "rq1", OURS,
            "{\"roomId\":\"rq1\",\"roomName\":\"o\",\"participants\":[\"a\"],\"lastSeq\":3}");
    produce(rk, KCHAT_TOPIC_ROOMS, "rq2", THEIRS,
            "{\"roomId\":\"rq2\",\"roomName\":\"t\",\"participants\":[],\"lastSeq\":4}");
    produce(rk, KCHAT_TOPIC_DIRECTORY, "ua", OURS,
            "{\"userId\":\"ua\",\"userName\":\"A\",\"userStatus\":\"\",\"ver\":1}");
    assert_int_equal(rd_kafka_flush(rk, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);

    assert_int_equal(kchat__directory_start(&f->be, err, sizeof(err)), KCHAT_OK);
    for (i = 0; i < 300; i++) {
        json_decref(user);
        user = kchat__directory_get(&f->be, "ua");
        if (user != NULL && replica_last_seq(f, "rq1") == 3 &&
            atomic_load(&f->be.stats.foreign_rooms) == 3)
            break;
        kchat__sleep_ms(50);
    }
    assert_non_null(user);
    json_decref(user);
    assert_int_equal(replica_last_seq(f, "rq1"), 3);
    assert_int_equal(replica_last_seq(f, "rq2"), -1);
    assert_int_equal(atomic_load(&f->be.stats.foreign_rooms), 3);
    {
        json_t *v = replica_get(f, "rq1");
        assert_string_equal(fx_str(v, "roomName"), "o");
        json_decref(v);
    }

    atomic_store(&f->be.stopping, true);
    kchat__directory_stop(&f->be);
    rd_kafka_destroy(rk);
    kchat_embedded_stop(e);
    free(f->be.bootstraps);
    f->be.bootstraps = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_apply_newer_wins, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_search_reads_replica, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_no_summary_without_change, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_coalesced, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_publishes_once, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_thread_skips_foreign, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
