/*
 * Unit tests of the outbox after the commit (src/actors/outbox.c): what
 * Kafka confirmed is deleted in the shard's next transaction, what it
 * refused is produced again, and neither is lost when the shard's lists
 * cannot grow (kchat__test_alloc_failures makes that allocation fail);
 * and a committed command is always listed as pending in its source
 * (src/actors/commands.c), memory or not.
 *
 * Shard 0 of two, in a fresh directory under $KCHAT_TEST_TMP (or /tmp),
 * holds three outbox records; the producer has no broker, so what is
 * produced stays in its queue and is counted in be->stats.produced.
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
#include "kchat/kafka.h"

#define N_RECS 3

typedef struct fx {
    char dir[512];
    kchat_backend *be;
    struct shard *sh;
    uint64_t seq[N_RECS];
} fx;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static rd_kafka_t *producer_without_broker(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;

    assert_int_equal(rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr)),
                     RD_KAFKA_CONF_OK);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    return rk;
}

static int setup(void **state)
{
    const char *tmp = getenv("KCHAT_TEST_TMP");
    kchat_store_opts o = {.map_size = 16u << 20, .no_sync = true};
    kchat_outbox_rec rec = {.topic = KCHAT_TOPIC_EVENTS, .partition = -1, .key = "u1",
                            .key_len = 2, .value = "{}", .value_len = 2, .kind = OUT_REPLY};
    char path[600];
    kchat_txn *t;
    fx *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s/test_outbox.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    f->be = calloc(1, sizeof(*f->be));
    f->sh = calloc(2, sizeof(*f->sh));   /* shard 1: a command target, never opened */
    if (f->be == NULL || f->sh == NULL)
        return -1;
    f->sh[1].id = 1;
    f->be->partitions = 2;
    f->be->n_workers = 1;
    f->be->shards = f->sh;
    snprintf(f->be->dataset, sizeof(f->be->dataset), "%032d", 0);
    pthread_rwlock_init(&f->be->producer_lock, NULL);
    f->be->producer = producer_without_broker();
    pthread_mutex_init(&f->sh->lock, NULL);
    snprintf(path, sizeof(path), "%s/shard-0000", f->dir);
    if (kchat_store_open(path, &o, &f->sh->store) != KCHAT_OK ||
        kchat_txn_begin(f->sh->store, true, &t) != KCHAT_OK)
        return -1;
    for (int i = 0; i < N_RECS; i++)
        if (kchat_store_outbox_append(t, &rec, &f->seq[i]) != KCHAT_OK)
            return -1;
    if (kchat_txn_commit(t) != KCHAT_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    int rc;

    atomic_store(&kchat__test_alloc_failures, 0);
    rd_kafka_purge(f->be->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_destroy(f->be->producer);
    pthread_rwlock_destroy(&f->be->producer_lock);
    kchat_store_close(f->sh->store);
    pthread_mutex_destroy(&f->sh->lock);
    free(f->sh->delivered.v);
    free(f->sh->resend.v);
    free(f->sh->cmds);
    free(f->sh->links);
    free(f->sh);
    free(f->be);
    rc = nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc;
}

static uint64_t produced(const fx *f)
{
    return atomic_load(&f->be->stats.produced);
}

static size_t outbox_count(const fx *f)
{
    kchat_txn *t;
    size_t n = 0;

    assert_int_equal(kchat_txn_begin(f->sh->store, false, &t), KCHAT_OK);
    assert_int_equal(kchat_store_outbox_count(t, &n), KCHAT_OK);
    kchat_txn_abort(t);
    return n;
}

/* The worker's transaction: delete what was confirmed; commit or not. */
static void prune(fx *f, bool commit)
{
    struct seqlist taken = {0};
    kchat_txn *t;

    assert_int_equal(kchat_txn_begin(f->sh->store, true, &t), KCHAT_OK);
    assert_int_equal(kchat__outbox_prune(f->be, f->sh, t, &taken), KCHAT_OK);
    if (commit) {
        assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
        free(taken.v);
    } else {
        kchat_txn_abort(t);
        kchat__outbox_unprune(f->sh, &taken);
    }
}

/* A refused record is produced again, once, at the worker's next tick. */
static void test_refused_produced_again(void **state)
{
    fx *f = *state;

    kchat__outbox_refused(f->sh, f->seq[1]);
    kchat__outbox_resend(f->be, f->sh);
    assert_int_equal(produced(f), 1);
    kchat__outbox_resend(f->be, f->sh);
    assert_int_equal(produced(f), 1);
}

/* Regression: a refused record whose seq could not be listed (no memory
 * to grow the resend list) was forgotten: never produced again until the
 * next start. It must still be produced again (here with the rest of the
 * outbox). */
static void test_refused_without_memory_produced_again(void **state)
{
    fx *f = *state;

    atomic_store(&kchat__test_alloc_failures, 1);
    kchat__outbox_refused(f->sh, f->seq[1]);
    assert_int_equal(atomic_load(&kchat__test_alloc_failures), 0);
    kchat__outbox_resend(f->be, f->sh);
    assert_true(produced(f) >= 1);
    assert_int_equal(produced(f), N_RECS);   /* the whole outbox, once */
    kchat__outbox_resend(f->be, f->sh);
    assert_int_equal(produced(f), N_RECS);
}

/* A confirmed record is deleted by the next transaction that commits. */
static void test_delivered_deleted(void **state)
{
    fx *f = *state;

    kchat__outbox_delivered(f->sh, f->seq[0]);
    prune(f, true);
    assert_int_equal(outbox_count(f), N_RECS - 1);
}

/* A transaction that does not commit gives its confirmed seqs back. */
static void test_delivered_kept_over_failed_commit(void **state)
{
    fx *f = *state;

    kchat__outbox_delivered(f->sh, f->seq[0]);
    kchat__outbox_delivered(f->sh, f->seq[2]);
    prune(f, false);
    kchat__outbox_delivered(f->sh, f->seq[1]);   /* confirmed meanwhile */
    prune(f, true);
    assert_int_equal(outbox_count(f), 0);
}

/* A confirmed record that cannot be listed stays in the outbox (produced
 * again at the next start, a repeat receivers drop); nothing else is lost. */
static void test_delivered_without_memory_stays(void **state)
{
    fx *f = *state;

    atomic_store(&kchat__test_alloc_failures, 1);
    kchat__outbox_delivered(f->sh, f->seq[0]);
    kchat__outbox_delivered(f->sh, f->seq[1]);
    prune(f, true);
    assert_int_equal(outbox_count(f), N_RECS - 1);
    assert_int_equal(produced(f), 0);
}

/* Seqs given back after a failed commit that cannot be listed again stay
 * in the outbox; those confirmed meanwhile are still deleted. */
static void test_unprune_without_memory(void **state)
{
    fx *f = *state;
    struct seqlist taken = {0};
    kchat_txn *t;

    kchat__outbox_delivered(f->sh, f->seq[0]);
    assert_int_equal(kchat_txn_begin(f->sh->store, true, &t), KCHAT_OK);
    assert_int_equal(kchat__outbox_prune(f->be, f->sh, t, &taken), KCHAT_OK);
    kchat_txn_abort(t);
    /* Confirmed meanwhile: seq[1] and gone records, until the list is full. */
    kchat__outbox_delivered(f->sh, f->seq[1]);
    while (f->sh->delivered.n < f->sh->delivered.cap)
        kchat__outbox_delivered(f->sh, 1000 + f->sh->delivered.n);
    atomic_store(&kchat__test_alloc_failures, 1);
    kchat__outbox_unprune(f->sh, &taken);
    assert_null(taken.v);
    prune(f, true);
    assert_int_equal(outbox_count(f), N_RECS - 1);   /* seq[0] and seq[2] */
}

/* Regression: a command whose transaction committed but which could not be
 * listed as pending afterwards (no memory) was produced untracked: never
 * produced again, and the next command of its stream told the target that
 * everything before it was gone, so the target could skip it. The batch
 * must fail before its commit instead (and is retried): once committed, a
 * command is listed. */
static void test_command_listed_pending_without_memory(void **state)
{
    fx *f = *state;
    struct worker w = {0};
    int rc = KCHAT_ENOMEM;

    atomic_store(&kchat__test_alloc_failures, 2);   /* the pending list and its links */
    for (int attempt = 0; rc != KCHAT_OK && attempt < 2; attempt++) {
        struct ctx c = {.be = f->be, .w = &w, .sh = f->sh, .fmt = KCHAT_FMT_JSON};

        assert_int_equal(kchat_txn_begin(f->sh->store, true, &c.txn), KCHAT_OK);
        rc = kchat__command(&c, 1, "u2", json_pack("{s:s}", "op", "member"));
        if (rc != KCHAT_OK) {   /* as the batch loop does: abort, retry */
            assert_int_equal(rc, KCHAT_ENOMEM);
            kchat_txn_abort(c.txn);
            kchat__worker_discard_out(&w);
            atomic_store(&kchat__test_alloc_failures, 0);
            continue;
        }
        assert_int_equal(kchat_txn_commit(c.txn), KCHAT_OK);
        kchat__worker_flush_out(f->be, &w);
    }
    free(w.out);
    assert_int_equal(rc, KCHAT_OK);
    assert_int_equal(f->sh->n_cmds, 1);
    assert_int_equal(f->sh->cmds[0].target, 1);
    assert_int_equal(f->sh->cmds[0].cseq, 1);
    assert_int_equal(outbox_count(f), N_RECS + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refused_produced_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_without_memory_produced_again, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_delivered_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivered_kept_over_failed_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivered_without_memory_stays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unprune_without_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_listed_pending_without_memory, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
