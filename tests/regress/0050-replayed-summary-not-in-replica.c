/*
 * Regression 0050 (fixed by the commit "outbox replay writes a shard's room
 * summaries into the replica before producing them"): a room list asked
 * right after an answer that a restart produced again from the outbox
 * showed a room of another shard at its older version (lastSeq, and since
 * v1.1 its participants and read cursors). A shard writes its room
 * summaries into the process's replica before it produces a committed
 * transaction's answers; the outbox replay of a start produced them
 * without doing so, so the answers left before the replica had the
 * summaries they report. test_crash_rooms found it (a participant's room
 * list without the invitee whose invite had just been answered).
 *
 * Here, with the operations' fixture (tests/unit/ops/fixture.h) and a
 * producer whose broker is never reached: a newer summary of alice's room
 * waits in her shard's outbox, as a commit the process did not live to
 * produce leaves it; kchat__outbox_replay() runs as at a start; then the
 * replica holds it and bob, in another shard, lists the room at its
 * lastSeq. Seen failing on the code before the fix: the replica kept
 * lastSeq 0 and bob's list said 0.
 */
#include "unit/ops/fixture.c"

static void test_replay_writes_summary_through(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256], text[512];
    kchat_outbox_rec rec = {.topic = KCHAT_TOPIC_ROOMS, .partition = -1, .kind = OUT_REPLY};
    uint64_t seq;
    kchat_txn *t;
    json_t *sum, *a;

    fx_cast_make(f, &c, true);   /* alice's room (home) with bob (away) and carol */
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", "127.0.0.1:1", errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
    assert_non_null(f->be.producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr,
                                                   sizeof(errstr)));
    assert_int_equal(pthread_rwlock_init(&f->be.producer_lock, NULL), 0);

    snprintf(text, sizeof(text), "{\"roomId\":\"%s\",\"roomName\":\"\",\"participants\":"
             "[\"alice\",\"%s\",\"%s\"],\"lastSeq\":7,\"ver\":99}", c.room, c.bob, c.carol);
    rec.key = c.room;
    rec.key_len = strlen(c.room);
    rec.value = text;
    rec.value_len = strlen(text);
    assert_int_equal(kchat_txn_begin(f->be.shards[c.home].store, true, &t), KCHAT_OK);
    assert_int_equal(kchat_store_outbox_append(t, &rec, &seq), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    assert_int_equal(kchat__outbox_replay(&f->be, &f->be.shards[c.home]), KCHAT_OK);
    assert_int_equal(kchat_txn_begin(f->be.directory, false, &t), KCHAT_OK);
    sum = kchat__room_summary_get(t, c.room);
    kchat_txn_abort(t);
    assert_non_null(sum);
    assert_int_equal(json_integer_value(json_object_get(sum, "lastSeq")), 7);
    json_decref(sum);
    a = fx_ok(f, KCHAT_OP_SEARCH_ROOM, c.bob, c.sb, "{\"userId\":\"%s\"}", c.bob);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(json_object_get(a, "rooms"), 0), "lastSeq")), 7);
    json_decref(a);

    rd_kafka_purge(f->be.producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_destroy(f->be.producer);
    f->be.producer = NULL;
    pthread_rwlock_destroy(&f->be.producer_lock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replay_writes_summary_through, fx_setup,
                                        fx_teardown),
    };
    return cmocka_run_group_tests_name("0050 replayed summary not in the replica", tests, NULL,
                                       NULL);
}
