/*
 * Unit tests of command acknowledgements (src/actors/commands_acks.c,
 * docs/design.md "Command streams"): a source shard learns what its target
 * applied only from ack records that travel through Kafka, never from the
 * target's LMDB environment.
 *
 * Two backends share one librdkafka mock cluster (kchat-internal, 2
 * partitions) and nothing else: `src` has shard 0 open and no environment
 * for shard 1, `dst` has shard 1 open and none for shard 0. Records go
 * between them as in kchat serve: a worker's outbox records are produced
 * (kchat__worker_flush_out()), read back from the partition of their
 * target, and applied there (kchat__command_apply()) in the shard's own
 * transaction, which ends with its acks (kchat__acks_flush()).
 */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "actors/actors.h"
#include "actors/replicas.h"
#include "actors/streams.h"
#include "kchat/kafka.h"
#include "support/mockfault.h"
#include <librdkafka/rdkafka_mock.h>   /* after rdkafka.h (actors.h) */

#define MAX_MSGS 32

/* One backend holding one shard of two. */
struct side {
    kchat_backend *be;
    struct shard *sh;          /* its own shard: be->shards[id] */
    struct worker w;
    int64_t next_offset;       /* in kchat-internal, partition sh->id */
};

typedef struct fx {
    char dir[512];
    rd_kafka_t *mock_rk;
    rd_kafka_mock_cluster_t *mc;
    char bootstraps[256];
    rd_kafka_t *consumer;
    struct side src, dst;
} fx;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static rd_kafka_t *client(fx *f, rd_kafka_type_t type)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;

    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", f->bootstraps, errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, type == RD_KAFKA_PRODUCER ? "linger.ms"
                                                                       : "group.id",
                                       type == RD_KAFKA_PRODUCER ? "0" : "test_acks",
                                       errstr, sizeof(errstr)), RD_KAFKA_CONF_OK);
    rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    return rk;
}

static void side_open_store(fx *f, struct side *s)
{
    kchat_store_opts o = {.map_size = 16u << 20, .no_sync = true};
    char path[600];

    snprintf(path, sizeof(path), "%s/%s/shard-%04u", f->dir, s == &f->src ? "src" : "dst",
             s->sh->id);
    assert_int_equal(kchat_store_open(path, &o, &s->sh->store), KCHAT_OK);
}

/* A backend of 2 shards with only shard @p own open, its run @p run. */
static void side_init(fx *f, struct side *s, uint32_t own, uint64_t run)
{
    s->be = calloc(1, sizeof(*s->be));
    assert_non_null(s->be);
    s->be->run_id = run;
    s->be->shards = calloc(2, sizeof(*s->be->shards));
    assert_non_null(s->be->shards);
    s->be->partitions = 2;
    s->be->n_workers = 1;
    snprintf(s->be->dataset, sizeof(s->be->dataset), "%032d", 7);
    pthread_rwlock_init(&s->be->producer_lock, NULL);
    s->be->producer = client(f, RD_KAFKA_PRODUCER);
    for (uint32_t i = 0; i < 2; i++) {
        s->be->shards[i].id = i;
        pthread_mutex_init(&s->be->shards[i].lock, NULL);
    }
    s->sh = &s->be->shards[own];
    side_open_store(f, s);
}

/* Forget what the shard keeps in memory (as a restart does). */
static void side_forget(struct side *s)
{
    free(s->sh->cmds);
    free(s->sh->links);
    s->sh->cmds = NULL;
    s->sh->links = NULL;
    s->sh->n_cmds = s->sh->cap_cmds = 0;
}

static void side_free(struct side *s)
{
    kchat__worker_discard_out(&s->w);
    free(s->w.out);
    kchat__acks_free(&s->w);
    rd_kafka_purge(s->be->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_destroy(s->be->producer);
    pthread_rwlock_destroy(&s->be->producer_lock);
    kchat_store_close(s->sh->store);
    for (int i = 0; i < 2; i++) {
        free(s->be->shards[i].delivered.v);
        free(s->be->shards[i].resend.v);
        pthread_mutex_destroy(&s->be->shards[i].lock);
    }
    side_forget(s);
    free(s->be->shards);
    free(s->be);
}

static int setup(void **state)
{
    const char *tmp = getenv("KCHAT_TEST_TMP");
    fx *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s/test_acks.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    f->mc = kc_mock_cluster_new(1, 0, &f->mock_rk);
    if (rd_kafka_mock_topic_create(f->mc, KCHAT_TOPIC_INTERNAL, 2, 1) ||
        rd_kafka_mock_topic_create(f->mc, KCHAT_TOPIC_EVENTS, 2, 1))
        return -1;
    snprintf(f->bootstraps, sizeof(f->bootstraps), "%s",
             rd_kafka_mock_cluster_bootstraps(f->mc));
    f->consumer = client(f, RD_KAFKA_CONSUMER);
    side_init(f, &f->src, 0, 11);
    side_init(f, &f->dst, 1, 22);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    int rc;

    side_free(&f->src);
    side_free(&f->dst);
    rd_kafka_consumer_close(f->consumer);
    rd_kafka_destroy(f->consumer);
    kc_mock_cluster_free(f->mc, f->mock_rk);
    rc = nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

/* ---- moving records ---- */

/* After a commit, as the batch loop does: list and produce w's records,
 * and wait until Kafka has them. */
static void side_flush_out(struct side *s)
{
    kchat__worker_flush_out(s->be, &s->w);
    assert_int_equal(rd_kafka_flush(s->be->producer, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* Read kchat-internal partition s->sh->id from where the last read ended:
 * every record there now, at most MAX_MSGS, into @p msgs (the caller
 * destroys them). */
static size_t side_read(fx *f, struct side *s, rd_kafka_message_t **msgs)
{
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
    int64_t lo, hi;
    size_t n = 0;

    assert_int_equal(rd_kafka_query_watermark_offsets(f->consumer, KCHAT_TOPIC_INTERNAL,
                                                      (int32_t)s->sh->id, &lo, &hi, 5000),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_add(tp, KCHAT_TOPIC_INTERNAL, (int32_t)s->sh->id)->offset =
        s->next_offset;
    assert_int_equal(rd_kafka_assign(f->consumer, tp), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(tp);
    for (int tries = 0; s->next_offset < hi && tries < 100; tries++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(f->consumer, 100);

        if (m == NULL)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        assert_true(n < MAX_MSGS);
        s->next_offset = m->offset + 1;
        msgs[n++] = m;
    }
    assert_int_equal(s->next_offset, hi);
    assert_int_equal(rd_kafka_assign(f->consumer, NULL), RD_KAFKA_RESP_ERR_NO_ERROR);
    return n;
}

/* Apply everything waiting in s's partition in one transaction of s, as a
 * batch of kchat serve does, commit and produce what it sent. */
static size_t side_apply(fx *f, struct side *s)
{
    rd_kafka_message_t *msgs[MAX_MSGS];
    size_t n = side_read(f, s, msgs);
    struct ctx c = {.be = s->be, .w = &s->w, .sh = s->sh};
    kchat_txn *t;

    assert_int_equal(kchat_txn_begin(s->sh->store, true, &t), KCHAT_OK);
    c.txn = t;
    for (size_t i = 0; i < n; i++) {
        c.user_id = "";
        c.cid_len = 0;
        assert_int_equal(kchat__command_apply(&c, msgs[i]), KCHAT_OK);
        rd_kafka_message_destroy(msgs[i]);
    }
    assert_int_equal(kchat__acks_flush(&c), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    side_flush_out(s);
    return n;
}

/* The source's commands: @p n member commands to the other shard. */
static void src_commands(fx *f, int n)
{
    struct ctx c = {.be = f->src.be, .w = &f->src.w, .sh = f->src.sh, .fmt = KCHAT_FMT_JSON};

    assert_int_equal(kchat_txn_begin(f->src.sh->store, true, &c.txn), KCHAT_OK);
    for (int i = 0; i < n; i++)
        assert_int_equal(kchat__command(&c, 1, "u2",
                                        json_pack("{s:s, s:s, s:{s:s, s:s, s:[s, s]}}", "op",
                                                  "member", "userId", "u2", "room", "roomId",
                                                  "r1", "roomName", "one", "participants",
                                                  "u1", "u2")),
                         KCHAT_OK);
    assert_int_equal(kchat_txn_commit(c.txn), KCHAT_OK);
    side_flush_out(&f->src);
}

/* The source's periodic check, due now, in its own transaction. */
static void src_check(fx *f)
{
    struct seqlist taken = {0};
    kchat_txn *t;

    f->src.sh->last_ack_check_ms = 0;
    assert_int_equal(kchat_txn_begin(f->src.sh->store, true, &t), KCHAT_OK);
    assert_int_equal(kchat__outbox_prune(f->src.be, f->src.sh, t, &taken), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    free(taken.v);
}

/* Take an ack straight from its values, in one committed transaction. */
static void src_take(fx *f, uint64_t seq)
{
    struct ctx c = {.be = f->src.be, .w = &f->src.w, .sh = f->src.sh};

    assert_int_equal(kchat_txn_begin(f->src.sh->store, true, &c.txn), KCHAT_OK);
    assert_int_equal(kchat__acks_take(&c, 1, seq, 0, 0), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(c.txn), KCHAT_OK);
    side_flush_out(&f->src);
}

static size_t outbox_commands(struct side *s)
{
    kchat_txn *t;
    size_t n = 0;

    assert_int_equal(kchat_txn_begin(s->sh->store, false, &t), KCHAT_OK);
    assert_int_equal(kchat_store_outbox_count(t, &n), KCHAT_OK);
    kchat_txn_abort(t);
    return n;
}

static uint64_t cmdseq(struct side *s, kchat_cmdseq_end end, uint32_t shard)
{
    kchat_txn *t;
    uint64_t v = 0;

    assert_int_equal(kchat_txn_begin(s->sh->store, false, &t), KCHAT_OK);
    assert_int_equal(kchat_store_cmdseq_get(t, end, shard, &v), KCHAT_OK);
    kchat_txn_abort(t);
    return v;
}

/* ---- the tests ---- */

/* The whole round through Kafka, the target's environment never open in
 * the source's backend: three commands applied, one ack for the
 * transaction, and the source deletes all three. */
static void test_pruned_by_ack_without_target_env(void **state)
{
    fx *f = *state;

    src_commands(f, 3);
    assert_int_equal(f->src.sh->n_cmds, 3);
    assert_int_equal(side_apply(f, &f->dst), 3);
    assert_int_equal(atomic_load(&f->dst.be->stats.commands), 3);
    assert_int_equal(cmdseq(&f->dst, KCHAT_CMDSEQ_APPLIED, 0), 3);
    /* one ack for the three: the target's outbox holds it until delivered */
    assert_int_equal(side_apply(f, &f->src), 1);
    assert_int_equal(atomic_load(&f->src.be->stats.acks), 1);
    assert_int_equal(cmdseq(&f->src, KCHAT_CMDSEQ_ACKED, 1), 3);
    src_check(f);
    assert_null(f->src.be->shards[1].store);   /* never opened on this side */
    assert_int_equal(f->src.sh->n_cmds, 0);
    assert_int_equal(outbox_commands(&f->src), 0);
}

/* Repeats are acknowledged too: a source whose ack was lost (the embedded
 * broker loses its records at a kill -9) produces its stream again and
 * hears back from the repeats. */
static void test_repeats_acked(void **state)
{
    fx *f = *state;
    rd_kafka_message_t *lost[MAX_MSGS];
    size_t n;

    src_commands(f, 2);
    assert_int_equal(side_apply(f, &f->dst), 2);
    n = side_read(f, &f->src, lost);   /* the ack never reaches the source */
    assert_int_equal(n, 1);
    rd_kafka_message_destroy(lost[0]);
    src_check(f);
    assert_int_equal(f->src.sh->n_cmds, 2);
    /* the next start: the outbox is produced again */
    side_forget(&f->src);
    assert_int_equal(kchat__outbox_replay(f->src.be, f->src.sh), KCHAT_OK);
    assert_int_equal(rd_kafka_flush(f->src.be->producer, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(f->src.sh->n_cmds, 2);
    /* (the check above may have produced them again already: a stuck
     * stream's go-back-N, when the steps took 2 s) */
    n = side_apply(f, &f->dst);
    assert_true(n == 2 || n == 4);
    assert_int_equal(atomic_load(&f->dst.be->stats.duplicates), n);
    assert_int_equal(atomic_load(&f->dst.be->stats.commands), 2);   /* applied once */
    assert_int_equal(side_apply(f, &f->src), 1);                    /* one ack */
    src_check(f);
    assert_int_equal(f->src.sh->n_cmds, 0);
    assert_int_equal(outbox_commands(&f->src), 0);
}

/* Acks come late or twice: only the highest counts. */
static void test_ack_max_rule(void **state)
{
    fx *f = *state;

    src_commands(f, 3);
    src_take(f, 2);
    src_take(f, 1);   /* late */
    src_take(f, 2);   /* twice */
    assert_int_equal(atomic_load(&f->src.be->stats.acks), 3);
    assert_int_equal(cmdseq(&f->src, KCHAT_CMDSEQ_ACKED, 1), 2);
    src_check(f);
    assert_int_equal(f->src.sh->n_cmds, 1);
    assert_int_equal(f->src.sh->cmds[0].cseq, 3);
    assert_int_equal(outbox_commands(&f->src), 1);
    src_take(f, 3);
    src_check(f);
    assert_int_equal(f->src.sh->n_cmds, 0);
    assert_int_equal(atomic_load(&f->src.be->stats.stream_renumbers), 0);
}

/* The stored marks outlive the process: after a restart the replay deletes
 * what was acknowledged and produces only the rest. */
static void test_ack_marks_persist(void **state)
{
    fx *f = *state;
    uint64_t produced;

    src_commands(f, 3);
    src_take(f, 2);
    kchat_store_close(f->src.sh->store);
    side_forget(&f->src);
    side_open_store(f, &f->src);
    produced = atomic_load(&f->src.be->stats.produced);
    assert_int_equal(kchat__outbox_replay(f->src.be, f->src.sh), KCHAT_OK);
    assert_int_equal(atomic_load(&f->src.be->stats.produced), produced + 1);
    assert_int_equal(f->src.sh->n_cmds, 1);
    assert_int_equal(f->src.sh->cmds[0].cseq, 3);
    assert_int_equal(outbox_commands(&f->src), 1);
}

/* A source restored from an older copy: the target applied up to 5, the
 * source numbered only 2. Its command (3, numbered in the same transaction
 * as the ack, before it) and those before are numbered again past 5, in
 * order; an ack equal to the highest numbered is the normal case. */
static void test_fork_renumbers(void **state)
{
    fx *f = *state;
    struct ctx c = {.be = f->src.be, .w = &f->src.w, .sh = f->src.sh, .fmt = KCHAT_FMT_JSON};
    const char *want[] = {"6", "7", "8"};

    src_commands(f, 2);
    assert_int_equal(kchat_txn_begin(f->src.sh->store, true, &c.txn), KCHAT_OK);
    assert_int_equal(kchat__command(&c, 1, "u2", json_pack("{s:s, s:s}", "op", "member",
                                                           "userId", "u2")), KCHAT_OK);
    assert_int_equal(kchat__acks_take(&c, 1, 5, 0, 0), KCHAT_OK);
    /* only the renumbered copies are left to produce, in stream order */
    assert_int_equal(f->src.w.n_out, 3);
    for (size_t i = 0; i < 3; i++) {
        const struct out_rec *r = &f->src.w.out[i];

        assert_int_equal(r->kind, OUT_COMMAND);
        assert_int_equal(r->cseq, 6 + i);
        assert_int_equal(r->n_hdr, 3);   /* its seq, run, and where the run numbered on from */
        assert_string_equal(r->hdr[0].name, KCHAT_HDR_CMD_SEQ);
        assert_memory_equal(r->hdr[0].value, want[i], 1);
        assert_string_equal(r->hdr[1].name, KCHAT_HDR_CMD_RUN);
        assert_memory_equal(r->hdr[1].value, "11", 2);
        assert_string_equal(r->hdr[2].name, KCHAT_HDR_CMD_RUN_FROM);
        assert_memory_equal(r->hdr[2].value, "5", 1);
    }
    assert_int_equal(kchat_txn_commit(c.txn), KCHAT_OK);
    side_flush_out(&f->src);
    assert_int_equal(atomic_load(&f->src.be->stats.stream_renumbers), 1);
    assert_int_equal(cmdseq(&f->src, KCHAT_CMDSEQ_SENT, 1), 8);
    assert_int_equal(cmdseq(&f->src, KCHAT_CMDSEQ_ACKED, 1), 5);
    assert_int_equal(outbox_commands(&f->src), 3);
    src_check(f);
    assert_int_equal(f->src.sh->n_cmds, 3);
    assert_int_equal(f->src.sh->links[1].low, 6);
    src_take(f, 8);   /* equal to the highest numbered: all applied */
    src_check(f);
    assert_int_equal(f->src.sh->n_cmds, 0);
    assert_int_equal(outbox_commands(&f->src), 0);
    assert_int_equal(atomic_load(&f->src.be->stats.stream_renumbers), 1);
}

/* A renumbering whose transaction does not commit leaves the outbox as it
 * was; taking the ack again renumbers from there. */
static void test_fork_aborted_then_redone(void **state)
{
    fx *f = *state;
    struct ctx c = {.be = f->src.be, .w = &f->src.w, .sh = f->src.sh};

    src_commands(f, 2);
    assert_int_equal(kchat_txn_begin(f->src.sh->store, true, &c.txn), KCHAT_OK);
    assert_int_equal(kchat__acks_take(&c, 1, 4, 0, 0), KCHAT_OK);
    kchat_txn_abort(c.txn);
    kchat__worker_discard_out(&f->src.w);
    assert_int_equal(outbox_commands(&f->src), 2);
    assert_int_equal(cmdseq(&f->src, KCHAT_CMDSEQ_SENT, 1), 2);
    src_take(f, 4);
    assert_int_equal(cmdseq(&f->src, KCHAT_CMDSEQ_SENT, 1), 6);
    assert_int_equal(outbox_commands(&f->src), 2);
    src_check(f);
    assert_int_equal(f->src.sh->n_cmds, 2);
    assert_true(f->src.sh->cmds[0].cseq >= 5 && f->src.sh->cmds[1].cseq >= 5);
}

/* The target's ack reaches the source, which renumbers its @p n commands;
 * the target applies them, up to @p applied, and acknowledges them. */
static void renumbered_then_applied(fx *f, size_t n, uint64_t applied)
{
    assert_int_equal(side_apply(f, &f->src), 1);
    assert_int_equal(atomic_load(&f->src.be->stats.stream_renumbers), 1);
    assert_int_equal(side_apply(f, &f->dst), n);
    assert_int_equal(atomic_load(&f->dst.be->stats.commands), n);
    assert_int_equal(cmdseq(&f->dst, KCHAT_CMDSEQ_APPLIED, 0), applied);
    assert_int_equal(cmdseq(&f->dst, KCHAT_CMDSEQ_APPLIED_RUN, 0), 11);
    assert_int_equal(side_apply(f, &f->src), 1);
    src_check(f);
    assert_int_equal(f->src.sh->n_cmds, 0);
    assert_int_equal(outbox_commands(&f->src), 0);
}

/* What the target applied, as if another run of the source (run 99, the
 * lost timeline) had numbered it: its marks for shard 0 set directly; and
 * the source's counter, as a copy taken earlier left it. */
static void restored_source(fx *f, uint64_t target_applied, uint64_t source_sent)
{
    kchat_txn *t;

    assert_int_equal(kchat_txn_begin(f->dst.sh->store, true, &t), KCHAT_OK);
    assert_int_equal(kchat_store_cmdseq_set(t, KCHAT_CMDSEQ_APPLIED, 0, target_applied),
                     KCHAT_OK);
    assert_int_equal(kchat_store_cmdseq_set(t, KCHAT_CMDSEQ_APPLIED_RUN, 0, 99), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    assert_int_equal(kchat_txn_begin(f->src.sh->store, true, &t), KCHAT_OK);
    assert_int_equal(kchat_store_cmdseq_set(t, KCHAT_CMDSEQ_SENT, 1, source_sent), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
}

/* The target applied 3 (run 99), the restored source numbered only 1 and
 * now sends @p n (at most 2) more, which the target drops as repeats. */
static void restored_sends_dropped(fx *f, int n)
{
    restored_source(f, 3, 1);
    src_commands(f, n);
    assert_int_equal(side_apply(f, &f->dst), n);
    assert_int_equal(atomic_load(&f->dst.be->stats.duplicates), n);
}

/* The fork end to end (regression 0025's writer-shard case, in units): the
 * target applied 3 from the old timeline; the restored source numbers its
 * next command 2, which the target drops and acknowledges with 3; the
 * source numbers it again as 4, which the target applies. */
static void test_fork_through_kafka(void **state)
{
    fx *f = *state;

    restored_sends_dropped(f, 1);
    renumbered_then_applied(f, 1, 4);   /* by ack 3, above the 2 numbered */
}

/* The restored source numbers as far as the lost timeline went (2 and 3,
 * where the target applied 3 of run 99) before the target's ack comes: the
 * ack equals the highest numbered, yet our command 3 is of run 11, not 99,
 * so the target applied none of ours; both are numbered again. */
static void test_fork_at_equal_ack(void **state)
{
    fx *f = *state;

    restored_sends_dropped(f, 2);
    renumbered_then_applied(f, 2, 5);   /* by ack 3 of run 99, = our counter */
}

/* The same, but the source restarted (a new run) before the ack came: its
 * command 3 is now an earlier run's, looked up in its outbox. */
static void test_fork_at_equal_ack_after_restart(void **state)
{
    fx *f = *state;

    restored_source(f, 3, 1);
    src_commands(f, 2);
    f->src.be->run_id = 12;
    side_forget(&f->src);
    assert_int_equal(kchat__outbox_replay(f->src.be, f->src.sh), KCHAT_OK);
    assert_int_equal(rd_kafka_flush(f->src.be->producer, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(side_apply(f, &f->dst), 4);   /* both, twice */
    assert_int_equal(atomic_load(&f->dst.be->stats.duplicates), 4);
    assert_int_equal(side_apply(f, &f->src), 1);
    assert_int_equal(atomic_load(&f->src.be->stats.stream_renumbers), 1);
    assert_int_equal(side_apply(f, &f->dst), 2);
    assert_int_equal(atomic_load(&f->dst.be->stats.commands), 2);
    assert_int_equal(cmdseq(&f->dst, KCHAT_CMDSEQ_APPLIED_RUN, 0), 12);
}

/* Past it (2, 3, 4 against 3 applied): the target drops 2 and 3 and does
 * not apply 4, whose run numbered on from 1 while it applied 3 of another
 * run; its ack tells the source, which numbers all three again. */
static void test_fork_past_ack_refused(void **state)
{
    fx *f = *state;

    restored_source(f, 3, 1);
    src_commands(f, 3);
    assert_int_equal(side_apply(f, &f->dst), 3);
    assert_int_equal(atomic_load(&f->dst.be->stats.duplicates), 2);
    assert_int_equal(atomic_load(&f->dst.be->stats.command_forks), 1);
    assert_int_equal(atomic_load(&f->dst.be->stats.commands), 0);
    renumbered_then_applied(f, 3, 6);
}

/* A new run after an ordinary restart numbers on from its counter, at or
 * above all the target applied: nothing is refused or renumbered. */
static void test_new_run_not_a_fork(void **state)
{
    fx *f = *state;

    src_commands(f, 2);
    assert_int_equal(side_apply(f, &f->dst), 2);
    assert_int_equal(side_apply(f, &f->src), 1);
    f->src.be->run_id = 12;   /* the next start */
    side_forget(&f->src);
    src_commands(f, 2);
    assert_int_equal(side_apply(f, &f->dst), 2);
    assert_int_equal(atomic_load(&f->dst.be->stats.commands), 4);
    assert_int_equal(atomic_load(&f->dst.be->stats.command_forks), 0);
    assert_int_equal(side_apply(f, &f->src), 1);
    assert_int_equal(atomic_load(&f->src.be->stats.stream_renumbers), 0);
    src_check(f);
    assert_int_equal(f->src.sh->n_cmds, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pruned_by_ack_without_target_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeats_acked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_max_rule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_marks_persist, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_renumbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_aborted_then_redone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_through_kafka, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_at_equal_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_at_equal_ack_after_restart, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fork_past_ack_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_run_not_a_fork, setup, teardown),
    };

    return cmocka_run_group_tests_name("command acknowledgements", tests, NULL, NULL);
}
