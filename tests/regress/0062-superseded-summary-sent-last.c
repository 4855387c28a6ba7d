/*
 * Regression 0062 (fixed by 4058f1b): a room summary Kafka refused for good
 * was produced again after the room's later summaries had been delivered,
 * so it landed last in kchat-rooms, the compacted topic kept it, and a
 * replica filled from the topic afterwards (a new node, a lost data
 * directory) listed the room at its older participants and lastSeq until
 * its next change. Profiles in kchat-directory had the same limit. The
 * outbox replay of a start or an acquisition did the same with a summary
 * that was still in the outbox when a later one had been delivered.
 * (docs/design.md listed it under the summaries' limits.)
 *
 * With the operations' fixture (tests/unit/ops/fixture.h) and a producer
 * whose broker is never reached (nothing it is given leaves): alice's room
 * and her profile are stored at some version; her shard's outbox holds, for
 * each, a record one version older and one of the stored version. Produced
 * again after a refusal (kchat__outbox_resend()), or replayed at a start
 * (kchat__outbox_replay()), only the records of the stored version go to
 * the producer; the older ones are deleted as if Kafka had them. Seen
 * failing on the code before the fix: all four were produced.
 */
#include "unit/ops/fixture.c"

/* The records of one case: for the room and for alice's profile, one of
 * the stored version and one older. */
struct recs {
    uint64_t room_old, room_now, user_old, user_now;
    json_int_t room_ver, user_ver;   /* the stored versions */
};

/* What the producer was given: "topic ver" of each record, in order. */
static char produced[8][64];
static size_t n_produced;

/* Delivery report of a purged record: list it.
 * @locality the thread in rd_kafka_flush() */
static void on_report(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    json_t *v = json_loadb(m->payload, m->len, 0, NULL);

    (void)rk;
    (void)opaque;
    assert_non_null(v);
    assert_true(n_produced < 8);
    snprintf(produced[n_produced++], sizeof(produced[0]), "%s %" JSON_INTEGER_FORMAT,
             rd_kafka_topic_name(m->rkt), json_integer_value(json_object_get(v, "ver")));
    json_decref(v);
}

static void producer_open(struct fx *f)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];

    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", "127.0.0.1:1", errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
    rd_kafka_conf_set_dr_msg_cb(conf, on_report);
    assert_non_null(f->be.producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr,
                                                   sizeof(errstr)));
    assert_int_equal(pthread_rwlock_init(&f->be.producer_lock, NULL), 0);
    n_produced = 0;
}

/* Purge what the producer holds (its broker is never reached), list it
 * through the delivery reports and close the producer. */
static void producer_close(struct fx *f)
{
    rd_kafka_purge(f->be.producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(f->be.producer, 5000);
    rd_kafka_destroy(f->be.producer);
    f->be.producer = NULL;
    pthread_rwlock_destroy(&f->be.producer_lock);
}

/* Append a record of @p topic keyed @p key with value @p v to @p shard's
 * outbox, committed; returns its seq. */
static uint64_t outbox_add(struct fx *f, uint32_t shard, const char *topic, const char *key,
                           json_t *v)
{
    kchat_outbox_rec rec = {.topic = topic, .partition = -1, .kind = OUT_REPLY,
                            .key = key, .key_len = strlen(key)};
    char *text = json_dumps(v, JSON_COMPACT);
    uint64_t seq;
    kchat_txn *t;

    assert_non_null(text);
    rec.value = text;
    rec.value_len = strlen(text);
    assert_int_equal(kchat_txn_begin(f->be.shards[shard].store, true, &t), KCHAT_OK);
    assert_int_equal(kchat_store_outbox_append(t, &rec, &seq), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    free(text);
    json_decref(v);
    return seq;
}

static int seq_list(void *arg, uint64_t seq, const kchat_outbox_rec *r)
{
    struct seqlist *l = arg;

    (void)r;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        assert_non_null(l->v = realloc(l->v, l->cap * sizeof(*l->v)));
    }
    l->v[l->n++] = seq;
    return 0;
}

/* Empty @p shard's outbox (what the operations of the set-up appended). */
static void outbox_clear(struct fx *f, uint32_t shard)
{
    struct seqlist l = {0};
    kchat_txn *t;

    assert_int_equal(kchat_txn_begin(f->be.shards[shard].store, true, &t), KCHAT_OK);
    assert_int_equal(kchat_store_outbox_scan(t, 0, seq_list, &l), KCHAT_OK);
    for (size_t i = 0; i < l.n; i++)
        assert_int_equal(kchat_store_outbox_del(t, l.v[i]), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    free(l.v);
}

/* The stored room of @p c and alice's stored profile, each once as it is
 * and once a version older, into the home shard's outbox, emptied first. */
static void outbox_fill(struct fx *f, const struct fx_cast *c, struct recs *r)
{
    json_t *room = fx_get(f, c->home, KCHAT_TBL_ROOMS, c->room, strlen(c->room));
    json_t *user = fx_get(f, c->home, KCHAT_TBL_USERS, "alice", 5);
    json_int_t room_ver, user_ver;

    outbox_clear(f, c->home);
    assert_non_null(room);
    assert_non_null(user);
    room_ver = r->room_ver = fx_int(room, "ver");
    user_ver = r->user_ver = fx_int(user, "ver");
    assert_true(room_ver >= 1);
    assert_true(user_ver >= 1);
    r->room_old = outbox_add(f, c->home, KCHAT_TOPIC_ROOMS, c->room,
                             json_pack("{s:s, s:s, s:[s], s:I, s:I}", "roomId", c->room,
                                       "roomName", "", "participants", "alice",
                                       "lastSeq", fx_int(room, "lastSeq"), "ver",
                                       room_ver - 1));
    r->room_now = outbox_add(f, c->home, KCHAT_TOPIC_ROOMS, c->room,
                             json_pack("{s:s, s:O, s:O, s:I, s:I}", "roomId", c->room,
                                       "roomName", json_object_get(room, "roomName"),
                                       "participants", json_object_get(room, "participants"),
                                       "lastSeq", fx_int(room, "lastSeq"), "ver", room_ver));
    r->user_old = outbox_add(f, c->home, KCHAT_TOPIC_DIRECTORY, "alice",
                             json_pack("{s:s, s:s, s:I}", "userId", "alice", "userStatus",
                                       "older", "ver", user_ver - 1));
    r->user_now = outbox_add(f, c->home, KCHAT_TOPIC_DIRECTORY, "alice",
                             json_pack("{s:s, s:O, s:I}", "userId", "alice", "userStatus",
                                       json_object_get(user, "userStatus"), "ver", user_ver));
    json_decref(room);
    json_decref(user);
}

static bool listed(const struct seqlist *l, uint64_t seq)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i] == seq)
            return true;
    return false;
}

static int seq_seen(void *arg, uint64_t seq, const kchat_outbox_rec *r)
{
    (void)r;
    if (seq == *(uint64_t *)arg) {
        *(uint64_t *)arg = 0;
        return 1;
    }
    return 0;
}

/* Whether outbox record @p seq of @p shard is still stored. */
static bool in_outbox(struct fx *f, uint32_t shard, uint64_t seq)
{
    uint64_t want = seq;
    kchat_txn *t;

    assert_int_equal(kchat_txn_begin(f->be.shards[shard].store, false, &t), KCHAT_OK);
    assert_int_equal(kchat_store_outbox_scan(t, seq, seq_seen, &want), KCHAT_OK);
    kchat_txn_abort(t);
    return want == 0;
}

/* The producer was given the room's and the profile's stored versions and
 * nothing else (the purge reports the two topics in either order). */
static void assert_current_only(const struct recs *r)
{
    char room[64], user[64];

    snprintf(room, sizeof(room), "%s %" JSON_INTEGER_FORMAT, KCHAT_TOPIC_ROOMS, r->room_ver);
    snprintf(user, sizeof(user), "%s %" JSON_INTEGER_FORMAT, KCHAT_TOPIC_DIRECTORY,
             r->user_ver);
    assert_int_equal(n_produced, 2);
    if (strcmp(produced[0], room) != 0) {
        assert_string_equal(produced[1], room);
        assert_string_equal(produced[0], user);
    } else {
        assert_string_equal(produced[1], user);
    }
}

/* Refused for good, then produced again by the worker's resend. */
static void test_refused_summary_not_sent_after_newer(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    struct recs r;
    struct shard *sh;

    fx_cast_make(f, &c, true);   /* alice's room (home) with bob (away) and carol */
    json_decref(fx_ok(f, KCHAT_OP_STATUS, "alice", c.sa,
                      "{\"userId\":\"alice\",\"userStatus\":\"busy\"}"));
    sh = &f->be.shards[c.home];
    outbox_fill(f, &c, &r);
    producer_open(f);

    kchat__outbox_refused(sh, r.room_old);
    kchat__outbox_refused(sh, r.room_now);
    kchat__outbox_refused(sh, r.user_old);
    kchat__outbox_refused(sh, r.user_now);
    kchat__outbox_resend(&f->be, sh);
    producer_close(f);

    assert_current_only(&r);
    assert_true(listed(&sh->delivered, r.room_old));
    assert_true(listed(&sh->delivered, r.user_old));
    assert_false(listed(&sh->delivered, r.room_now));
    assert_false(listed(&sh->delivered, r.user_now));
    free(sh->delivered.v);   /* the fixture runs no worker to take the list */
    sh->delivered = (struct seqlist){0};
}

/* Still in the outbox at a start: the replay produces the current ones and
 * deletes the older ones. */
static void test_replay_skips_superseded_summary(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    struct recs r;
    uint32_t home;

    fx_cast_make(f, &c, true);
    home = c.home;
    outbox_fill(f, &c, &r);
    producer_open(f);

    assert_int_equal(kchat__outbox_replay(&f->be, &f->be.shards[home]), KCHAT_OK);
    producer_close(f);

    assert_current_only(&r);
    assert_false(in_outbox(f, home, r.room_old));
    assert_false(in_outbox(f, home, r.user_old));
    assert_true(in_outbox(f, home, r.room_now));
    assert_true(in_outbox(f, home, r.user_now));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refused_summary_not_sent_after_newer, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_replay_skips_superseded_summary, fx_setup,
                                        fx_teardown),
    };
    return cmocka_run_group_tests_name("0062 superseded summary sent last", tests, NULL, NULL);
}
