/*
 * Which shards this process serves (docs/design.md, "Ownership";
 * docs/scaling.md). A shard is served by the member of the consumer group
 * that was assigned its partitions (all topics are co-partitioned, the
 * `range` assignor gives partition p of each to one member). Its worker
 * touches it only while `owned` is set:
 *
 * - Acquisition, in the consumer's prepare() (before the start offsets are
 *   read, before anything is fetched): the shard is caught up with its
 *   kchat-changelog partition (restore.c), its kept changes are produced
 *   and confirmed, its outbox is produced again (what the last owner
 *   committed but may not have sent), and only then is it owned. A shard
 *   this process gave up cleanly at the last revocation and is given back
 *   at the assignment right after it ("warm": no other member owned it in
 *   between) is taken back as it is.
 * - Release, in the consumer's revoked() (every request already applied,
 *   nothing being processed): the shard's worker keeps up its upkeep until
 *   everything it produced is confirmed (at most RELEASE_WAIT_MS), then the
 *   shard stops being owned and the worker is seen to have finished a pass
 *   without it.
 *
 * Without a changelog (the embedded broker, or --changelog off) a process
 * owns every shard of its data directory from start to stop, as it always
 * did: there is nothing to hand over.
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors.h"
#include "streams.h"
#include "changelog.h"
#include "replicas.h"
#include "kchat/error.h"

#define RELEASE_WAIT_MS 5000    /* revoked(): how long a shard may take to quiesce */
#define ACQUIRE_RETRY_MS 1000   /* prepare(): wait before trying a failed acquisition again */
#define ACQUIRE_LOG_MS 10000    /* ... saying so this often */

/* The shards named by @p parts, in @p want ([be->partitions]).
 * @locality any thread */
static void shards_of(kchat_backend *be, const rd_kafka_topic_partition_list_t *parts,
                      bool *want)
{
    memset(want, 0, (size_t)be->partitions * sizeof(*want));
    for (int i = 0; parts != NULL && i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        if (p >= 0 && p < be->partitions)
            want[p] = true;
    }
}

/* Records in the producer, not yet confirmed or refused (all shards').
 * @locality any thread
 * @locks takes the producer lock (shared) */
static int producer_queued(kchat_backend *be)
{
    int queued;

    pthread_rwlock_rdlock(&be->producer_lock);
    queued = be->producer ? rd_kafka_outq_len(be->producer) : 0;
    pthread_rwlock_unlock(&be->producer_lock);
    return queued;
}

/* Wait until every worker has finished one more idle() pass than now: a
 * worker that was inside an upkeep of a shard when its `owned` was cleared
 * is out of it then.
 * @locality the consumer's poll thread */
static void workers_pass(kchat_backend *be)
{
    uint64_t *seen = calloc(be->n_workers, sizeof(*seen));
    int64_t deadline = kchat__monotonic_us() / 1000 + RELEASE_WAIT_MS;

    if (seen == NULL) {   /* no room to count: wait as long as a pass can take */
        kchat__sleep_ms(RELEASE_WAIT_MS / 10);
        return;
    }
    for (unsigned w = 0; w < be->n_workers; w++)
        seen[w] = atomic_load(&be->workers[w].idle_passes);
    for (unsigned w = 0; w < be->n_workers; w++)
        while (atomic_load(&be->workers[w].idle_passes) < seen[w] + 2 &&
               kchat__monotonic_us() / 1000 < deadline)
            kchat__sleep_ms(2);
    free(seen);
}

/* Forget what this process held in memory about @p sh from an earlier
 * ownership: after a restore it describes another state. Records still in
 * the producer are waited for (a bounded while) so that their delivery
 * reports do not land on the new state's outbox numbers.
 * @locality the consumer's poll thread, @p sh not owned */
static void shard_forget(kchat_backend *be, struct shard *sh)
{
    int64_t deadline = kchat__monotonic_us() / 1000 + RELEASE_WAIT_MS;

    for (;;) {
        if (producer_queued(be) == 0 || kchat__monotonic_us() / 1000 >= deadline)
            break;
        kchat__sleep_ms(5);
    }
    kchat__changelog_free(sh);
    free(sh->cmds);
    free(sh->links);
    sh->cmds = NULL;
    sh->links = NULL;
    sh->n_cmds = sh->cap_cmds = 0;
    sh->last_ack_check_ms = 0;
    memset(&sh->throttle, 0, sizeof(sh->throttle));
    sh->fail_since_ms = sh->fail_logged_ms = 0;
    sh->fail_count = 0;
    pthread_mutex_lock(&sh->lock);
    sh->delivered.n = 0;
    sh->resend.n = 0;
    sh->resend_all = false;
    sh->cl_acked = 0;
    sh->cl_resend_from = 0;
    pthread_mutex_unlock(&sh->lock);
    atomic_store(&sh->cl_wake_at, 0);
    sh->cl_trimmed = sh->cl_replayed = sh->cl_produced = 0;
}

/* Make @p sh ready to serve: caught up with the changelog (read with *@p rk,
 * made here when NULL), its kept changes confirmed by Kafka, its outbox
 * produced again; then owned.
 * @locality the consumer's poll thread, @p sh not owned (no worker touches
 *           it)
 * @locks sh->copy_lock must be held */
KCHAT_MUST_CHECK
static int shard_acquire(kchat_backend *be, rd_kafka_t **rk, struct shard *sh, char *errstr,
                         size_t len)
{
    int64_t t0 = kchat__monotonic_us();
    bool restored = false;
    int rc;

    /* First of all: from here on Kafka refuses every write of an earlier
     * owner (changelog_txn.c), so what is read next is all it ever wrote. */
    if ((rc = kchat__cl_txn_open(be, sh, errstr, len)) != KCHAT_OK)
        return rc;
    if (atomic_exchange(&sh->warm, false)) {   /* given up cleanly, given back now */
        atomic_fetch_add(&be->stats.warm_acquires, 1);
        goto out_owned;
    }
    if (*rk == NULL && (*rk = kchat__restore_consumer(be, errstr, len)) == NULL)
        return KCHAT_EKAFKA;
    if ((rc = kchat__changelog_catch_up(be, *rk, sh, &restored, errstr, len)) != KCHAT_OK)
        return rc;
    shard_forget(be, sh);
    if (be->run_id != 0)
        do
            randombytes_buf(&sh->run_id, sizeof(sh->run_id));
        while (sh->run_id == 0);
    if ((rc = kchat__datadir_shard_settle(be, sh, errstr, len)) != KCHAT_OK ||
        (rc = kchat__room_summaries_upgrade_shard(be, sh, errstr, len)) != KCHAT_OK)
        return rc;
    if ((rc = kchat__changelog_replay(be, sh)) != KCHAT_OK ||
        (rc = kchat__changelog_wait_shard(be, sh, errstr, len)) != KCHAT_OK ||
        (rc = kchat__outbox_replay(be, sh)) != KCHAT_OK ||
        (rc = kchat__changelog_produce_rest(be, sh)) != KCHAT_OK) {
        if (errstr[0] == '\0')
            snprintf(errstr, len, "shard %u: %s", sh->id, kchat_strerror(rc));
        return rc;
    }
    fprintf(stderr, "kchat: shard %u: acquired in %.2f s%s\n", sh->id,
            (double)(kchat__monotonic_us() - t0) / 1e6, restored ? " (restored)" : "");
out_owned:
    atomic_fetch_add(&be->stats.handovers_in, 1);
    atomic_store(&sh->owned, true);
    return KCHAT_OK;
}

/* Give up @p sh: let its worker finish what it produced, then stop it.
 * @p lost: the group took it away already (this member was put out):
 * another may own it now, so its copy is not kept warm.
 * @locality the consumer's poll thread */
static void shard_release(kchat_backend *be, struct shard *sh, bool lost)
{
    int64_t deadline = kchat__monotonic_us() / 1000 + RELEASE_WAIT_MS;

    lost |= atomic_load(&sh->fenced);   /* another owner has it already */

    atomic_store(&sh->quiet, false);
    atomic_store(&sh->releasing, !lost);
    /* Lost: another member may serve it already; what is still held here
     * is not let out (its next owner answers from the changelog). */
    while (!lost && !atomic_load(&sh->quiet) && kchat__monotonic_us() / 1000 < deadline)
        kchat__sleep_ms(2);
    atomic_store(&sh->warm, atomic_load(&sh->quiet) && !lost);
    atomic_store(&sh->owned, false);
    kchat__local_drop(sh);   /* their sources send them again through Kafka */
    atomic_store(&sh->releasing, false);
    atomic_fetch_add(&be->stats.handovers_out, 1);
}

void kchat__shards_prepare(void *opaque, const rd_kafka_topic_partition_list_t *parts)
{
    kchat_backend *be = opaque;
    bool want[KCHAT__MAX_SHARDS];
    char errstr[512];
    rd_kafka_t *rk = NULL;   /* reads the changelog for every shard of this call */

    if (!be->changelog)
        return;   /* every shard owned from start to stop */
    shards_of(be, parts, want);
    for (int p = 0; p < be->partitions; p++) {
        if (!want[p])   /* another member's in this generation: it may write */
            atomic_store(&be->shards[p].warm, false);
        else if (!atomic_load(&be->shards[p].owned))
            atomic_fetch_add(&be->restoring, 1);
    }
    for (int p = 0; p < be->partitions; p++) {
        struct shard *sh = &be->shards[p];
        int64_t logged = 0;

        if (!want[p] || atomic_load(&sh->owned))
            continue;
        /* Until it is acquired the shard cannot be served; its partitions
         * are not read meanwhile. A member that takes too long is put out
         * of the group by Kafka, and the shard goes to another. */
        while (!atomic_load(&be->closing)) {
            int rc;

            errstr[0] = '\0';
            pthread_mutex_lock(&sh->copy_lock);   /* a standby catch-up may be on it */
            rc = shard_acquire(be, &rk, sh, errstr, sizeof(errstr));
            pthread_mutex_unlock(&sh->copy_lock);
            if (rc == KCHAT_OK)
                break;
            if (atomic_load(&be->closing))
                kchat__cl_txn_close(be, sh);   /* no more tries */
            if (kchat__monotonic_us() / 1000 - logged >= ACQUIRE_LOG_MS) {
                fprintf(stderr, "kchat: shard %d: cannot take it over yet: %s\n", p, errstr);
                logged = kchat__monotonic_us() / 1000;
            }
            kchat__sleep_ms(ACQUIRE_RETRY_MS);
        }
        atomic_fetch_sub(&be->restoring, 1);
    }
    if (rk != NULL)
        rd_kafka_destroy(rk);
}

void kchat__shards_revoked(void *opaque, const rd_kafka_topic_partition_list_t *parts)
{
    kchat_backend *be = opaque;
    bool want[KCHAT__MAX_SHARDS];
    bool any = false, lost;

    if (!be->changelog)
        return;
    /* be->wake is the consumer while it runs (NULL at the stop's revocation,
     * which loses nothing); be->consumer itself is written by the starting
     * thread without a lock this thread takes. */
    pthread_mutex_lock(&be->wake_lock);
    lost = be->wake != NULL && kchat_consumer_lost(be->wake);
    pthread_mutex_unlock(&be->wake_lock);
    shards_of(be, parts, want);
    for (int p = 0; p < be->partitions; p++)
        if (want[p] && atomic_load(&be->shards[p].owned)) {
            shard_release(be, &be->shards[p], lost);
            any = true;
        }
    if (!any)
        return;
    workers_pass(be);
    /* No worker touches them now: stop their changelog producers; drop what
     * they held back when another owner may serve them already. */
    for (int p = 0; p < be->partitions; p++) {
        struct shard *sh = &be->shards[p];

        if (!want[p] || atomic_load(&sh->owned))
            continue;
        if (lost || atomic_load(&sh->fenced))
            kchat__changelog_free(sh);
        kchat__cl_txn_close(be, sh);
        atomic_store(&sh->fenced, false);
    }
}

void kchat__shards_own_all(kchat_backend *be)
{
    for (int p = 0; p < be->partitions; p++)
        atomic_store(&be->shards[p].owned, !be->changelog);
}

bool kchat__shard_quiet(kchat_backend *be, struct shard *sh)
{
    bool quiet;

    pthread_mutex_lock(&sh->lock);
    /* ...and the kept changes trimmed: a copy that keeps none is plainly a
     * prefix of the changelog when it is acquired again */
    quiet = sh->delivered.n == 0 && sh->resend.n == 0 && !sh->resend_all &&
            sh->cl_resend_from == 0 &&
            sh->cl_acked >= sh->cl_produced && sh->cl_trimmed >= sh->cl_acked;
    pthread_mutex_unlock(&sh->lock);
    return quiet && sh->held_head == sh->n_held && producer_queued(be) == 0;
}

bool kchat_backend_ready(kchat_backend *be)
{
    return be->consumer != NULL && kchat_consumer_ready(be->consumer) &&
           atomic_load(&be->restoring) == 0;
}

void kchat__ownership_metrics(kchat_backend *be, FILE *out)
{
    int owned = 0, standby = 0;
    int64_t lag = 0;

    for (int p = 0; be->shards && p < be->partitions; p++) {
        owned += atomic_load(&be->shards[p].owned);
        standby += atomic_load(&be->shards[p].standby);
        lag += atomic_load_explicit(&be->shards[p].restore_lag, memory_order_relaxed);
    }
    kchat_metric_write(out, "kchat_shards_owned", "gauge",
                       "Shards this process serves now.", (double)owned);
    kchat_metric_write(out, "kchat_shards_standby", "gauge",
                       "Shards of other nodes whose copy this process keeps warm "
                       "(--standby-replicas).", (double)standby);
    kchat_metric_write(out, "kchat_shards_restoring", "gauge",
                       "Shards given to this process and being taken over (restored, "
                       "replayed) now.", (double)atomic_load(&be->restoring));
    kchat_metric_write(out, "kchat_changelog_restore_lag_records", "gauge",
                       "Records of kchat-changelog the catch-ups running now (taking a shard "
                       "over, or a standby following one) have still to read.", (double)lag);
}
