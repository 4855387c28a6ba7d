/*
 * Commands handed in memory to a shard of the same process
 * (src/actors/local.c, kchat__command_apply_local() in commands.c), with the
 * operations' fixture: bob's chat send to alice's room (another shard)
 * leaves a command; its local copy is applied once; a repeat, one that
 * comes early and one that does not decode are left to the Kafka copy
 * without a count or a dead letter; then the Kafka copy's stream check
 * drops the repeat. The local copy is acknowledged, since it may have no
 * Kafka copy; an ack handed in memory moves its source's mark as one read
 * from Kafka would.
 */
#include "unit/ops/fixture.c"

/* Apply @p lc in its target shard @p target, flush the acknowledgement as
 * a batch does, commit; returns the local-command count it added. */
static uint64_t apply_local(struct fx *f, uint32_t target, const struct local_cmd *lc)
{
    struct shard *sh = &f->be.shards[target];
    struct ctx c = {.be = &f->be, .w = &f->w, .sh = sh, .req = &f->w.req,
                    .now_ms = f->now_ms, .user_id = ""};
    uint64_t before = atomic_load(&f->be.stats.local_commands);

    recs_clear(f);
    assert_int_equal(kchat_txn_begin(sh->store, true, &c.txn), KCHAT_OK);
    assert_int_equal(kchat__command_apply_local(&c, lc), KCHAT_OK);
    assert_int_equal(kchat__acks_flush(&c), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(c.txn), KCHAT_OK);
    take_out(f);
    return atomic_load(&f->be.stats.local_commands) - before;
}

/* Stream counter @p kind of shard @p shard for shard @p other, as stored. */
static uint64_t stream_mark(struct fx *f, uint32_t shard, kchat_cmdseq_end kind,
                            uint32_t other)
{
    kchat_txn *t;
    uint64_t v = 0;

    assert_int_equal(kchat_txn_begin(f->be.shards[shard].store, false, &t), KCHAT_OK);
    assert_int_equal(kchat_store_cmdseq_get(t, kind, other, &v), KCHAT_OK);
    kchat_txn_abort(t);
    return v;
}

/* @p target's last stream seq applied from @p source. */
static uint64_t applied_mark(struct fx *f, uint32_t target, uint32_t source)
{
    return stream_mark(f, target, KCHAT_CMDSEQ_APPLIED, source);
}

/* The kchat-ack-seq of the one ack record from @p target to @p source
 * among the records of the last commit; fails when there is none. */
static uint64_t ack_seq(struct fx *f, uint32_t target, uint32_t source)
{
    for (size_t i = 0; i < f->n_recs; i++) {
        const struct out_rec *r = &f->recs[i];

        if (strcmp(r->topic, KCHAT_TOPIC_INTERNAL) || r->partition != (int32_t)source)
            continue;
        assert_int_equal(r->kind, OUT_REPLY);
        assert_int_equal(kchat__header_u64(r->hdr, r->n_hdr, KCHAT_HDR_ACK), target);
        return kchat__header_u64(r->hdr, r->n_hdr, KCHAT_HDR_ACK_SEQ);
    }
    fail_msg("no ack from shard %u to shard %u", target, source);
    return 0;
}

static void test_local_copy_applied_once(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    struct local_cmd lc;
    json_t *a;

    fx_cast_make(f, &c, true);   /* alice's room (home) with bob (away) and carol */
    f->hold_commands = true;
    assert_null(fx_call(f, KCHAT_OP_ADD_CHAT, c.bob, c.sb,
                        "{\"writerId\":\"%s\",\"roomId\":\"%s\",\"message\":\"hi\"}", c.bob,
                        c.room));
    assert_int_equal(f->n_held, 1);
    assert_int_equal(f->held[0].target, c.home);
    lc = (struct local_cmd){.src = c.away, .cseq = f->held[0].cseq,
                            .value = f->held[0].value, .len = strlen(f->held[0].value)};

    /* early: the stream stands below it */
    lc.cseq++;
    assert_int_equal(apply_local(f, c.home, &lc), 0);
    assert_int_equal(fx_rows(f, KCHAT_TBL_MESSAGES), 0);
    assert_int_equal(atomic_load(&f->be.stats.command_gaps), 0);
    lc.cseq--;
    /* does not decode: nothing applied, nothing dead-lettered */
    {
        static char truncated[] = "{\"op\":";
        struct local_cmd bad = lc;
        bad.value = truncated;
        bad.len = strlen(truncated);
        assert_int_equal(apply_local(f, c.home, &bad), 0);
        assert_int_equal(fx_count(f, KCHAT_TOPIC_DLQ), 0);
        assert_int_equal(applied_mark(f, c.home, c.away), lc.cseq - 1);
    }
    /* the next one: applied, answered, its stream's mark moved */
    assert_int_equal(apply_local(f, c.home, &lc), 1);
    a = fx_answer(f, KCHAT_OP_ADD_CHAT);
    assert_non_null(a);
    assert_int_equal(fx_int(a, "seq"), 1);
    json_decref(a);
    assert_int_equal(fx_count(f, KCHAT_TOPIC_EVENTS), 3);
    assert_int_equal(fx_rows(f, KCHAT_TBL_MESSAGES), 1);
    assert_int_equal(applied_mark(f, c.home, c.away), lc.cseq);
    /* acknowledged: one ack to its source, saying where the stream stands */
    assert_int_equal(fx_count(f, KCHAT_TOPIC_INTERNAL), 1);
    assert_int_equal(ack_seq(f, c.home, c.away), lc.cseq);
    /* a repeat: dropped quietly (not a duplicate: a Kafka copy would be
     * one), and acknowledged again */
    assert_int_equal(apply_local(f, c.home, &lc), 0);
    assert_int_equal(fx_count(f, KCHAT_TOPIC_EVENTS), 0);
    assert_int_equal(atomic_load(&f->be.stats.duplicates), 0);
    assert_int_equal(ack_seq(f, c.home, c.away), lc.cseq);
    /* the Kafka copy arrives: dropped as a repeat, stored once */
    fx_deliver(f);
    assert_int_equal(f->n_duplicates, 1);
    assert_int_equal(fx_rows(f, KCHAT_TBL_MESSAGES), 1);
}

/* @p source's highest ack from @p target. */
static uint64_t acked_mark(struct fx *f, uint32_t source, uint32_t target)
{
    return stream_mark(f, source, KCHAT_CMDSEQ_ACKED, target);
}

/* The target's ack goes in memory to a source shard this process serves
 * (kchat__local_hand_ack()), as the values its record carries, and taken
 * there it moves the source's acknowledged mark; to a shard not served
 * here, or for a record that is no ack, nothing is handed. */
static void test_local_ack(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    struct local_cmd lc, *got = NULL;
    const struct out_rec *ack = NULL, *answer = NULL;
    struct shard *src;
    size_t n;

    fx_cast_make(f, &c, true);
    f->hold_commands = true;
    assert_null(fx_call(f, KCHAT_OP_ADD_CHAT, c.bob, c.sb,
                        "{\"writerId\":\"%s\",\"roomId\":\"%s\",\"message\":\"hi\"}", c.bob,
                        c.room));
    assert_int_equal(f->n_held, 1);
    lc = (struct local_cmd){.src = c.away, .cseq = f->held[0].cseq,
                            .value = f->held[0].value, .len = strlen(f->held[0].value)};
    assert_int_equal(apply_local(f, c.home, &lc), 1);
    for (size_t i = 0; i < f->n_recs; i++) {
        if (!strcmp(f->recs[i].topic, KCHAT_TOPIC_INTERNAL))
            ack = &f->recs[i];
        else if (!strcmp(f->recs[i].topic, kchat_op_response_topic(KCHAT_OP_ADD_CHAT)))
            answer = &f->recs[i];
    }
    assert_non_null(ack);
    assert_non_null(answer);

    src = &f->be.shards[c.away];
    assert_int_equal(pthread_mutex_init(&f->be.wake_lock, NULL), 0);
    assert_false(kchat__local_hand_ack(&f->be, ack));   /* no inbox: not served here */
    assert_non_null(src->inbox = kchat__inbox_new());
    assert_false(kchat__local_hand_ack(&f->be, ack));   /* not owned */
    atomic_store(&src->owned, true);
    assert_false(kchat__local_hand_ack(&f->be, answer));   /* not an ack */
    assert_true(kchat__local_hand_ack(&f->be, ack));
    n = kchat__local_take(src, &got);
    assert_int_equal(n, 1);
    assert_true(got[0].ack);
    assert_int_equal(got[0].src, c.home);
    assert_int_equal(got[0].cseq, lc.cseq);
    assert_null(got[0].value);

    /* taken by the source as an ack read from Kafka would be */
    assert_int_equal(acked_mark(f, c.away, c.home), 0);
    {
        struct ctx cx = {.be = &f->be, .w = &f->w, .sh = src, .req = &f->w.req,
                         .now_ms = f->now_ms, .user_id = ""};

        assert_int_equal(kchat_txn_begin(src->store, true, &cx.txn), KCHAT_OK);
        assert_int_equal(kchat__acks_take(&cx, (uint32_t)got[0].src, got[0].cseq,
                                          got[0].legacy, got[0].run), KCHAT_OK);
        assert_int_equal(kchat_txn_commit(cx.txn), KCHAT_OK);
    }
    assert_int_equal(acked_mark(f, c.away, c.home), lc.cseq);
    kchat__local_cmds_free(got, n);
    atomic_store(&src->owned, false);
    kchat__inbox_free(src->inbox);
    src->inbox = NULL;
    pthread_mutex_destroy(&f->be.wake_lock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_local_copy_applied_once, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_local_ack, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("local commands", tests, NULL, NULL);
}
