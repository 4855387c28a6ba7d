/*
 * Private to src/actors: the changelog: every change a shard commits
 * also in kchat-changelog before its answers (changelog.c), and shards
 * restored from it at start (restore.c).
 * Declared apart from actors.h (its structs and the other files'
 * interfaces), which it includes.
 */
#ifndef KCHAT_ACTORS_CHANGELOG_H
#define KCHAT_ACTORS_CHANGELOG_H

#include "actors.h"

/* ---- changelog.c: every committed change also in Kafka, before answers ---- */

/* The kchat_change_fn a shard's write transaction calls at commit: copies
 * the change into worker @p arg's list. Errors: KCHAT_ENOMEM (the commit
 * fails and is retried).
 * @locality the worker committing (its transaction's thread) */
int kchat__changelog_collect(void *arg, const kchat_change *ch);

/* After @p sh's commit: produce w's changes, then hold w's outbox records
 * until Kafka has them (flush at once when there are none, or the store
 * keeps no changelog).
 * @locality worker @p w, which owns @p sh */
void kchat__changelog_after_commit(kchat_backend *be, struct worker *w, struct shard *sh);

/* Forget w's collected changes (their commit failed).
 * @locality worker @p w */
void kchat__changelog_discard(struct worker *w);

/* Produce again the kept changes when one was refused, then flush the held
 * records whose changes Kafka has, in commit order.
 * @locality worker that owns @p sh
 * @locks takes sh->lock */
void kchat__changelog_release(kchat_backend *be, struct shard *sh);

/* Whether @p sh has changelog upkeep for its worker's idle tick: changes
 * to trim or to produce again.
 * @locality worker that owns @p sh
 * @locks takes sh->lock */
bool kchat__changelog_due(struct shard *sh);

/* In @p sh's write transaction @p t: delete the kept changes Kafka has.
 * Errors: store errors.
 * @locality worker that owns @p sh
 * @locks takes sh->lock */
KCHAT_MUST_CHECK
int kchat__changelog_trim(struct shard *sh, kchat_txn *t);

/* Kafka has change @p seq of @p sh: move cl_acked when it is the next one;
 * wake the worker when records wait for it.
 * @locality the shard's committer thread (changelog_txn.c)
 * @locks takes sh->lock, then be->wake_lock */
void kchat__changelog_acked(kchat_backend *be, struct shard *sh, uint64_t seq);

/* Change @p seq of @p sh could not be queued for its committer (nor was
 * any later one): its worker queues no newer change until it has produced
 * every kept change from @p seq on again, in order (kchat__changelog_release()).
 * @locality any thread
 * @locks takes sh->lock, then be->wake_lock */
void kchat__changelog_refused(kchat_backend *be, struct shard *sh, uint64_t seq);

/* Acquiring @p sh: produce the changes it kept (committed, not known in
 * Kafka) and set its marks. Errors: store errors.
 * @locality the thread acquiring @p sh (ownership.c), no worker touching it */
KCHAT_MUST_CHECK
int kchat__changelog_replay(kchat_backend *be, struct shard *sh);

/* Acquiring @p sh, after the last write transaction the acquisition makes
 * itself (outbox replay), whose changes no worker collected: produce every
 * change @p sh committed after the last one produced. Errors: store errors.
 * @locality the thread acquiring @p sh (ownership.c), no worker touching it */
KCHAT_MUST_CHECK
int kchat__changelog_produce_rest(kchat_backend *be, struct shard *sh);

/* After kchat__changelog_replay() of @p sh: wait (up to a minute, saying
 * why every 10 s) until Kafka has every change @p sh kept. Errors:
 * KCHAT_EKAFKA (errstr says which shard).
 * @locality the thread acquiring @p sh (ownership.c), no worker touching it */
KCHAT_MUST_CHECK
int kchat__changelog_wait_shard(kchat_backend *be, struct shard *sh, char *errstr, size_t len);

/* ---- changelog_txn.c: each owned shard's transactional changelog producer ---- */

/* Acquiring @p sh: start its transactional changelog producer
 * (transactional.id kchat-<data set>-shard-<id>) and its committer thread.
 * Kafka then refuses every later write of an earlier owner's producer and
 * aborts what it left open: call before reading the changelog to catch up.
 * Nothing when the backend keeps no changelog, or the producer runs
 * already. Errors: KCHAT_EKAFKA (Kafka did not answer; errstr says so),
 * KCHAT_ECONFIG (the -X settings refuse it), KCHAT_ENOMEM.
 * @locality the consumer's poll thread acquiring @p sh (ownership.c) */
KCHAT_MUST_CHECK
int kchat__cl_txn_open(kchat_backend *be, struct shard *sh, char *errstr, size_t len);

/* Stop @p sh's committer and producer; changes not yet committed stay kept
 * in the shard (its next owner produces them). Nothing when there is none.
 * @locality the consumer's poll thread once no worker touches @p sh
 *           (ownership.c), or the thread in kchat_backend_stop() */
void kchat__cl_txn_close(kchat_backend *be, struct shard *sh);

/* Queue @p n changes of a committed transaction, @p r, for @p sh's next
 * changelog transaction, taking what they own (their keys) when it
 * succeeds; see kchat__cl_txn_enqueue(). @p waited: a record somebody
 * waits for (an answer, event or command; not a command acknowledgement)
 * is held for them, so the next transaction begins at once; otherwise they
 * wait up to 50 ms for changes that are waited for, and go with those.
 * Errors: as kchat__cl_txn_enqueue().
 * @locality the worker that owns @p sh
 * @locks takes the committer's lock */
KCHAT_MUST_CHECK
int kchat__cl_txn_give(struct shard *sh, struct cl_rec *r, size_t n, bool waited);

/* Write the changes queued for @p sh without waiting for more, as if a
 * record were held for them: for a shard being released, which waits
 * until Kafka has every change. Nothing when it has no producer.
 * @locality the worker that owns @p sh
 * @locks takes the committer's lock */
void kchat__cl_txn_hurry(struct shard *sh);

/* Queue a copy of change @p ch for @p sh's next changelog transaction,
 * which begins at once (kept changes produced again: someone waits for
 * them); its commit acknowledges it (kchat__changelog_acked()), which opens the
 * gate of the records that report it. Errors: KCHAT_ENOMEM,
 * KCHAT_ESHUTDOWN (@p sh has no producer: not owned).
 * @locality the worker that owns @p sh (at acquisition: the poll thread)
 * @locks takes the committer's lock */
KCHAT_MUST_CHECK
int kchat__cl_txn_enqueue(struct shard *sh, const kchat_change *ch);

/* Mark in @p superseded (n bytes, 1: superseded) each of the @p n changes
 * @p r (one Kafka transaction's, in seq order) whose table and key a later
 * one of them writes again: only the last value of a key needs to reach
 * Kafka in a transaction that a read_committed reader sees whole
 * (docs/design.md, "Each key once per round": why a restore stays whole).
 * @p slots / @p cap: a scratch hash table the caller keeps between calls
 * (NULL / 0 at first; the caller frees *slots). Returns how many are
 * superseded; 0 and none marked when the scratch cannot grow (nothing is
 * lost: every change is written).
 * @locality any thread (the shard's committer thread) */
size_t kchat__cl_coalesce(const struct cl_rec *r, size_t n, unsigned char *superseded,
                          uint32_t **slots, size_t *cap);

/* ---- restore.c: shards restored from kchat-changelog ---- */

/* Bring shard @p sh up to its kchat-changelog partition before this process
 * serves it or as its standby (docs/design.md, "Changelog"), reading with
 * @p rk (kchat__restore_consumer()): nothing when its copy is current
 * or only ahead (changes of its own, still to produce); the changes after
 * its own, in whole transactions, when it is behind; the whole partition
 * when its copy diverged (it kept changes Kafka never confirmed, and
 * another owner wrote on) or belongs to another data set: that copy is set
 * aside first (kchat__datadir_shard_set_aside()). @p restored: whether
 * anything was applied or set aside. Nothing when the backend keeps no
 * changelog. Errors: KCHAT_EKAFKA (Kafka did not answer; errstr says which
 * shard), store errors.
 * @locality the consumer's poll thread acquiring @p sh (ownership.c), or
 *           the thread in kchat_backend_start(); no worker touches @p sh */
KCHAT_MUST_CHECK
int kchat__changelog_catch_up(kchat_backend *be, rd_kafka_t *rk, struct shard *sh,
                              bool *restored, char *errstr, size_t len);

/* A consumer for reading kchat-changelog partitions by hand (no group
 * membership, offsets never committed, read_committed) for
 * kchat__changelog_catch_up(), which borrows it: one caller at a time.
 * The caller destroys it with rd_kafka_destroy(). NULL when Kafka or the
 * -X settings refuse it (errstr says why).
 * @locality any thread */
rd_kafka_t *kchat__restore_consumer(kchat_backend *be, char *errstr, size_t len);

/* The data set kchat-changelog belongs to (its first non-empty partition's
 * last record's), in @p dataset; "" when it is empty or the backend keeps
 * no changelog. Errors: KCHAT_EKAFKA.
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
int kchat__changelog_dataset(kchat_backend *be, char dataset[33], char *errstr, size_t len);

/* Free @p sh's held records (their outbox copies stay in the shard: they
 * are produced again by whoever acquires it next).
 * @locality the thread in kchat_backend_stop(), once no worker runs, or
 *           the consumer's poll thread for a shard not owned (ownership.c) */
void kchat__changelog_free(struct shard *sh);

/* ---- deployment.c: the deployment's data set, kept in Kafka ---- */

/* The data set of this cluster's deployment, in @p out: the first claim in
 * kchat-meta; when there is none, a claim is written first (the
 * changelog's data set, else @p local, this data directory's, else a new
 * id) and the first claim read again, so that nodes starting together
 * agree. "" when the backend keeps no changelog (each data directory is
 * its own data set). Errors: KCHAT_EKAFKA, KCHAT_ECONFIG (errstr says why).
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
int kchat__deployment_dataset(kchat_backend *be, const char *local, char out[33], char *errstr,
                              size_t len);

/* ---- restore.c: what becomes of a transaction read in part ---- */

/* A restore reads a shard's changes in log order and applies them a whole
 * transaction at a time (restore.c). What the next change read, numbered
 * @p seq in a transaction whose last change is @p last, says of the
 * transaction read so far, whose last change is @p pending_last (0: none). */
enum kchat__cl_fate {
    KCHAT__CL_SAME,    /* the change is one of it (or none pends): read on */
    KCHAT__CL_ENDED,   /* it ended, though its last change was not read:
                          compaction removed it (a later record of the same
                          key comes after this change): apply it */
    KCHAT__CL_CUT,     /* another writer numbered on from inside it: its own
                          writer stopped before its end: drop it */
};

/* See enum kchat__cl_fate.
 * @locality any thread */
static inline enum kchat__cl_fate kchat__cl_fate(uint64_t pending_last, uint64_t seq,
                                                 uint64_t last)
{
    if (pending_last == 0 || last == pending_last)
        return KCHAT__CL_SAME;
    return seq > pending_last ? KCHAT__CL_ENDED : KCHAT__CL_CUT;
}

/* The fate of a transaction still pending at the end of the log. Kafka
 * shows a read_committed reader (@p committed_only) no record of an open or
 * aborted transaction, so one read in part there ended: compaction removed
 * its last changes, tombstones once delete.retention.ms passed. The mock
 * cluster shows every record (it has no last stable offset and lists no
 * aborted transactions), so there it may be a transaction being written
 * or one that was aborted: dropped, read again from its start next time.
 * @locality any thread */
static inline enum kchat__cl_fate kchat__cl_fate_at_end(bool committed_only)
{
    return committed_only ? KCHAT__CL_ENDED : KCHAT__CL_CUT;
}

#endif /* KCHAT_ACTORS_CHANGELOG_H */
