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
 * @locality the thread serving the producer's delivery reports
 * @locks takes sh->lock, then be->wake_lock */
void kchat__changelog_acked(kchat_backend *be, struct shard *sh, uint64_t seq);

/* A change of @p sh was refused: its worker produces the kept ones again.
 * @locality any thread
 * @locks takes sh->lock, then be->wake_lock */
void kchat__changelog_refused(kchat_backend *be, struct shard *sh);

/* Start-up: produce the changes @p sh kept (committed, not known in Kafka)
 * and set its marks. Errors: store errors.
 * @locality the thread in kchat_backend_start(), before the consumer runs */
KCHAT_MUST_CHECK
int kchat__changelog_replay(kchat_backend *be, struct shard *sh);

/* Start-up, after the last write transaction the start makes itself
 * (command catch-up, outbox replay), whose changes no worker collected:
 * produce every change @p sh committed after the last one produced. Errors:
 * store errors.
 * @locality the thread in kchat_backend_start(), before the consumer runs */
KCHAT_MUST_CHECK
int kchat__changelog_produce_rest(kchat_backend *be, struct shard *sh);

/* Start-up, after kchat__changelog_replay() of every shard: wait (up to a
 * minute, saying why every 10 s) until Kafka has every kept change, so
 * that the outbox replay answers nothing Kafka could still lose.
 * Errors: KCHAT_EKAFKA (errstr says which shards wait).
 * @locality the thread in kchat_backend_start(), before the consumer runs */
KCHAT_MUST_CHECK
int kchat__changelog_wait(kchat_backend *be, char *errstr, size_t len);

/* Start-up, before the data set is settled (kchat__datadir_open()):
 * restore every shard whose kchat-changelog partition holds changes after
 * its own, from the beginning of the partition (restore.c). Nothing when
 * the backend keeps no changelog. Errors: KCHAT_EKAFKA (Kafka did not
 * answer), KCHAT_ECONFIG (a shard of another data set than the changelog's:
 * refused, untouched), store errors; errstr says which shard.
 * @locality the thread in kchat_backend_start(), before the consumer runs */
KCHAT_MUST_CHECK
int kchat__changelog_restore(kchat_backend *be, char *errstr, size_t len);

/* Free @p sh's held records (at close: their outbox copies stay for the
 * next start).
 * @locality the thread in kchat_backend_stop(), once no worker runs */
void kchat__changelog_free(struct shard *sh);

#endif /* KCHAT_ACTORS_CHANGELOG_H */
