/*
 * The outbox after the commit. Kafka's delivery reports (producer.c) put
 * each record's seq on one of two lists of its shard: confirmed (deleted
 * from the outbox in the shard's next transaction) or refused for good
 * (produced again by the worker; a command with its whole stream, in order,
 * commands.c). At start every shard produces its whole outbox again.
 * Receivers drop repeats, so producing a record twice is harmless; losing
 * a refused one is not.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors.h"
#include "replicas.h"
#include "streams.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

/* Confirmed records are deleted at once when this many wait. */
#define OUTBOX_PRUNE_MAX 4096

atomic_int kchat__test_alloc_failures;

bool kchat__test_alloc_fails(void)
{
    int n = atomic_load_explicit(&kchat__test_alloc_failures, memory_order_relaxed);

    while (n > 0 && !atomic_compare_exchange_weak(&kchat__test_alloc_failures, &n, n - 1))
        ;
    return n > 0;
}

KCHAT_MUST_CHECK
static int seqlist_push(struct seqlist *l, uint64_t seq)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        uint64_t *nv = kchat__test_alloc_fails() ? NULL : realloc(l->v, cap * sizeof(*nv));
        if (nv == NULL)
            return KCHAT_ENOMEM;
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = seq;
    return KCHAT_OK;
}

/* ---- from the delivery reports ---- */

void kchat__outbox_delivered(struct shard *sh, uint64_t seq)
{
    int rc;

    pthread_mutex_lock(&sh->lock);
    if (sh->delivered.n == 0)
        sh->delivered_us = kchat__monotonic_us();
    rc = seqlist_push(&sh->delivered, seq);
    pthread_mutex_unlock(&sh->lock);
    if (rc != KCHAT_OK)
        fprintf(stderr, "kchat: shard %u: no memory to note that Kafka has outbox record %"
                PRIu64 "; it stays in the outbox until the next start\n", sh->id, seq);
}

void kchat__outbox_refused(struct shard *sh, uint64_t seq)
{
    int rc;

    pthread_mutex_lock(&sh->lock);
    if ((rc = seqlist_push(&sh->resend, seq)) != KCHAT_OK)
        sh->resend_all = true;
    pthread_mutex_unlock(&sh->lock);
    if (rc != KCHAT_OK)
        fprintf(stderr, "kchat: shard %u: no memory to list refused outbox record %" PRIu64
                "; producing the whole outbox again\n", sh->id, seq);
}

/* ---- in the worker ---- */

bool kchat__outbox_prune_due(kchat_backend *be, struct shard *sh)
{
    bool due;

    pthread_mutex_lock(&sh->lock);
    due = sh->delivered.n > 0 &&
          (sh->delivered.n >= OUTBOX_PRUNE_MAX ||
           kchat__monotonic_us() - sh->delivered_us >= be->outbox_prune_us ||
           atomic_load(&sh->releasing) || atomic_load(&be->stopping));
    pthread_mutex_unlock(&sh->lock);
    return due;
}

int kchat__outbox_prune(kchat_backend *be, struct shard *sh, kchat_txn *t,
                        struct seqlist *taken)
{
    int rc;

    *taken = (struct seqlist){0};
    if (kchat__outbox_prune_due(be, sh)) {
        pthread_mutex_lock(&sh->lock);
        *taken = sh->delivered;
        sh->delivered = (struct seqlist){0};
        pthread_mutex_unlock(&sh->lock);
    }
    for (size_t i = 0; i < taken->n; i++) {
        rc = kchat_store_outbox_del(t, taken->v[i]);
        if (rc != KCHAT_OK && rc != KCHAT_ENOTFOUND)
            return rc;
    }
    return kchat__streams_check(be, sh, t);
}

void kchat__outbox_unprune(struct shard *sh, struct seqlist *taken)
{
    size_t lost = 0;

    pthread_mutex_lock(&sh->lock);
    sh->delivered_us = 0;   /* due at once */
    if (sh->delivered.n == 0) {   /* none came meanwhile: give the list back as it is */
        free(sh->delivered.v);
        sh->delivered = *taken;
        *taken = (struct seqlist){0};
    }
    for (size_t i = 0; i < taken->n; i++)
        if (seqlist_push(&sh->delivered, taken->v[i]) != KCHAT_OK)
            lost++;
    pthread_mutex_unlock(&sh->lock);
    if (lost > 0)
        fprintf(stderr, "kchat: shard %u: no memory to keep %zu records Kafka has for deletion; "
                "they stay in the outbox until the next start\n", sh->id, lost);
    free(taken->v);
    *taken = (struct seqlist){0};
}

/* Whether @p r publishes a state (a room summary to kchat-rooms, a profile
 * to kchat-directory) that the shard's store, read in @p t, holds at a
 * later version. Every change of a room or a profile bumps its `ver` and
 * publishes it in the same transaction, so the later version's record was
 * appended after @p r: it is still in the outbox or Kafka has it. Produced
 * again now, @p r would land after it, and compaction keeps a key's last
 * record: a replica filled from the topic later would hold the older state
 * until the next change (regression test 0062). A record without `ver`
 * (an older kchat's) is superseded only by a stored state with one, or,
 * for a room, by a later lastSeq (kchat__room_newer()).
 * @locality the thread reading @p t: the worker that owns its shard, or the
 *           one replaying the outbox when the shard is started or acquired */
static bool state_superseded(kchat_txn *t, const kchat_outbox_rec *r)
{
    bool rooms = !strcmp(r->topic, KCHAT_TOPIC_ROOMS);
    json_t *rec, *stored;
    bool later;

    if (r->kind != OUT_REPLY || r->key == NULL || r->key_len == 0 ||
        (!rooms && strcmp(r->topic, KCHAT_TOPIC_DIRECTORY) != 0))
        return false;
    stored = kchat__get_json(t, rooms ? KCHAT_TBL_ROOMS : KCHAT_TBL_USERS, r->key, r->key_len);
    if (stored == NULL)   /* absent, unreadable or no memory: produced as it is */
        return false;
    rec = json_loadb(r->value ? r->value : "", r->value_len, 0, NULL);
    if (rec == NULL)
        later = false;
    else if (rooms)
        later = kchat__room_newer(stored, rec);
    else
        later = json_integer_value(json_object_get(stored, "ver")) >
                json_integer_value(json_object_get(rec, "ver"));
    json_decref(rec);
    json_decref(stored);
    return later;
}

struct resend_arg {
    kchat_backend *be;
    struct shard *sh;
    kchat_txn *t;
    uint64_t want;
};

/* Produce @p r (outbox record @p seq) again, or, when a later version of
 * its state has superseded it, only have it deleted as if Kafka had it.
 * @locality worker that owns ra->sh */
static void resend_rec(struct resend_arg *ra, uint64_t seq, const kchat_outbox_rec *r)
{
    if (state_superseded(ra->t, r))
        kchat__outbox_delivered(ra->sh, seq);
    else
        kchat__produce(ra->be, ra->sh->id, seq, r);
}

/* @locality worker that owns ra->sh */
static int resend_one(void *arg, uint64_t seq, const kchat_outbox_rec *r)
{
    struct resend_arg *ra = arg;

    if (seq == ra->want)
        resend_rec(ra, seq, r);
    return 1;
}

/* Every record: a command of a pending stream marks the stream, anything
 * else is produced again.
 * @locality worker that owns ra->sh */
static int resend_every(void *arg, uint64_t seq, const kchat_outbox_rec *r)
{
    struct resend_arg *ra = arg;

    if (r->kind != OUT_COMMAND || !kchat__streams_refused(ra->sh, seq))
        resend_rec(ra, seq, r);
    return 0;
}

int kchat__outbox_produce_again(kchat_backend *be, struct shard *sh, kchat_txn *t, uint64_t seq)
{
    struct resend_arg ra = {be, sh, t, seq};

    return kchat_store_outbox_scan(t, seq, resend_one, &ra);
}

/* Produce again every record of the outbox, in @p t: the commands as
 * their streams, at the next check. Errors: store errors.
 * @locality worker that owns @p sh */
KCHAT_MUST_CHECK
static int resend_all(kchat_backend *be, struct shard *sh, kchat_txn *t)
{
    struct resend_arg ra = {be, sh, t, 0};

    fprintf(stderr, "kchat: shard %u: producing the whole outbox again\n", sh->id);
    return kchat_store_outbox_scan(t, 0, resend_every, &ra);
}

/* Produce again what Kafka refused for good (a broker's permanent error or
 * a fatal producer state; retriable errors are retried by librdkafka).
 * A refused command is not produced alone, where it would arrive after
 * later ones: its stream to the target is produced again at the next check. */
void kchat__outbox_resend(kchat_backend *be, struct shard *sh)
{
    struct seqlist l;
    kchat_txn *t;
    bool all;
    int rc;

    if (atomic_load(&be->producer_fatal))
        return;   /* after the poller has replaced the producer */
    pthread_mutex_lock(&sh->lock);
    l = sh->resend;
    all = sh->resend_all;
    sh->resend = (struct seqlist){0};
    sh->resend_all = false;
    pthread_mutex_unlock(&sh->lock);
    if (l.n == 0 && !all)
        return;
    if ((rc = kchat_txn_begin(sh->store, false, &t)) != KCHAT_OK) {
        if (!all)   /* logged once: the retries come with resend_all set */
            fprintf(stderr, "kchat: shard %u: cannot read the outbox to produce refused "
                    "records again (%s); trying again\n", sh->id, kchat_strerror(rc));
        free(l.v);
        pthread_mutex_lock(&sh->lock);
        sh->resend_all = true;   /* not forgotten: all of it at the next idle tick */
        pthread_mutex_unlock(&sh->lock);
        return;
    }
    /* A record that cannot be read is left in the outbox (produced again at
     * the next start), not retried here: a damaged one would be read again
     * and again. */
    if (all && (rc = resend_all(be, sh, t)) != KCHAT_OK)
        fprintf(stderr, "kchat: shard %u: cannot read the whole outbox (%s); what was not "
                "produced again stays there until the next start\n", sh->id,
                kchat_strerror(rc));
    for (size_t i = 0; !all && i < l.n; i++)
        if (!kchat__streams_refused(sh, l.v[i]) &&
            (rc = kchat__outbox_produce_again(be, sh, t, l.v[i])) != KCHAT_OK)
            fprintf(stderr, "kchat: shard %u: cannot read outbox record %" PRIu64 " to produce "
                    "it again (%s); it stays in the outbox, produced again at the next "
                    "start\n", sh->id, l.v[i], kchat_strerror(rc));
    kchat_txn_abort(t);
    free(l.v);
}

/* ---- at start ---- */

struct replay_arg {
    kchat_backend *be;
    struct shard *sh;
    kchat_txn *t;              /* the shard's read transaction */
    struct seqlist applied;    /* to delete, not produced: commands their targets
                                  already applied, states a later version superseded */
    size_t produced;
};

/* @locality the thread in kchat_backend_start() */
static int replay_one(void *arg, uint64_t seq, const kchat_outbox_rec *r)
{
    struct replay_arg *ra = arg;
    uint32_t target = r->partition >= 0 ? (uint32_t)r->partition : 0;

    if (r->kind == OUT_COMMAND && target < (uint32_t)ra->be->partitions) {
        uint64_t acked = 0, cseq = kchat__streams_cseq(r);
        int rc;

        /* What the target acknowledged (commands_acks.c), as this shard
         * stored it. An older kchat's command (no stream seq), or one whose
         * ack was lost, is produced again: the target drops the repeat and
         * acknowledges it. */
        if (cseq > 0 &&
            (rc = kchat_store_cmdseq_get(ra->t, KCHAT_CMDSEQ_ACKED, target, &acked)) != KCHAT_OK)
            return rc;
        if (cseq > 0 && acked >= cseq)
            return seqlist_push(&ra->applied, seq);
        if ((rc = kchat__streams_pending_add(ra->be, ra->sh, seq, target, cseq)) != KCHAT_OK)
            return rc;
    }
    if (state_superseded(ra->t, r))
        return seqlist_push(&ra->applied, seq);
    /* The replica takes this shard's directory records and room summaries
     * before the answers that depend on them leave, as after a commit. */
    kchat__directory_write_through(ra->be, r->topic, r->value, r->value_len);
    if (!strcmp(r->topic, KCHAT_TOPIC_ROOMS)) {
        json_t *sum = json_loadb(r->value ? r->value : "", r->value_len, 0, NULL);
        (void)kchat__room_summaries_take(ra->be, &sum, sum != NULL ? 1 : 0);   /* logged */
    }
    kchat__produce(ra->be, ra->sh->id, seq, r);
    ra->produced++;
    return 0;
}

int kchat__outbox_replay(kchat_backend *be, struct shard *sh)
{
    struct replay_arg ra = {.be = be, .sh = sh};
    kchat_txn *t;
    int rc;

    if ((rc = kchat_txn_begin(sh->store, false, &t)) != KCHAT_OK)
        return rc;
    ra.t = t;
    rc = kchat_store_outbox_scan(t, 0, replay_one, &ra);
    kchat_txn_abort(t);
    if (rc == KCHAT_OK && ra.applied.n) {
        if ((rc = kchat_txn_begin(sh->store, true, &t)) == KCHAT_OK) {
            for (size_t i = 0; rc == KCHAT_OK && i < ra.applied.n; i++)
                rc = kchat_store_outbox_del(t, ra.applied.v[i]);
            if (rc == KCHAT_OK)
                rc = kchat_txn_commit(t);
            else
                kchat_txn_abort(t);
        }
    }
    if (ra.produced)
        fprintf(stderr, "kchat: shard %u: re-sent %zu outbox records\n", sh->id, ra.produced);
    free(ra.applied.v);
    return rc;
}
