/*
 * Commands handed in memory to a shard of the same process
 * (src/actors/local.c, kchat__command_apply_local() in commands.c), with the
 * operations' fixture: bob's chat send to alice's room (another shard)
 * leaves a command; its local copy is applied once; a repeat, one that
 * comes early and one that does not decode are left to the Kafka copy
 * without a count or a dead letter; then the Kafka copy's stream check
 * drops the repeat. The local copy is not acknowledged (its Kafka copy is).
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

static uint64_t applied_mark(struct fx *f, uint32_t target, uint32_t source)
{
    kchat_txn *t;
    uint64_t v = 0;

    assert_int_equal(kchat_txn_begin(f->be.shards[target].store, false, &t), KCHAT_OK);
    assert_int_equal(kchat_store_cmdseq_get(t, KCHAT_CMDSEQ_APPLIED, source, &v), KCHAT_OK);
    kchat_txn_abort(t);
    return v;
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
    /* not acknowledged: its Kafka copy will be */
    assert_int_equal(fx_count(f, KCHAT_TOPIC_INTERNAL), 0);
    /* a repeat: dropped quietly (not a duplicate: its Kafka copy is one) */
    assert_int_equal(apply_local(f, c.home, &lc), 0);
    assert_int_equal(fx_count(f, KCHAT_TOPIC_EVENTS), 0);
    assert_int_equal(atomic_load(&f->be.stats.duplicates), 0);
    /* the Kafka copy arrives: dropped as a repeat, stored once */
    fx_deliver(f);
    assert_int_equal(f->n_duplicates, 1);
    assert_int_equal(fx_rows(f, KCHAT_TBL_MESSAGES), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_local_copy_applied_once, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("local commands", tests, NULL, NULL);
}
