/*
 * Every change a shard commits also goes to Kafka, before anything that
 * reports it (docs/design.md, "Changelog").
 *
 * A shard store opened with a changelog gives, at each commit, one change
 * per key the transaction touched, numbered 1, 2, 3, ... per shard and kept
 * in the store until Kafka has it (include/kchat/store.h). The worker
 * copies them while its transaction commits (kchat__changelog_collect()),
 * hands them to the shard's committer right after the commit
 * (changelog_txn.c: one Kafka transaction per round, partition = shard),
 * and holds the transaction's answers, events and commands back until
 * Kafka committed every change up to the transaction's last: an answer
 * never reports a change that only one node's disk holds. Commits come in
 * seq order, so "committed up to n" (cl_acked) moves one change at a time.
 * A change that could not be queued (no memory) stops it there: from then
 * on the worker queues no newer change until a replay has queued every
 * kept change from the refused one on, in order (cl_resend_from), so the
 * committer always holds the changes in seq order and no change twice; a
 * replay that is refused in turn stops there and goes on from that change
 * later. Kept changes Kafka has are trimmed in the shard's next
 * transaction. At an acquisition the kept changes are produced again, and
 * the outbox replay waits until Kafka has them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors.h"
#include "changelog.h"
#include "replicas.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

#define WAIT_LOG_MS 10000   /* start-up: say who waits for Kafka this often */
#define WAIT_MAX_MS 60000   /* ... and give up after this */
#define REFUSED_LOG_US 10000000   /* a replay refused again: say so this often */

/* ---- the worker's side ---- */

int kchat__changelog_collect(void *arg, const kchat_change *ch)
{
    struct worker *w = arg;
    struct cl_rec *r;
    unsigned char *buf;

    if (w->n_cl == w->cap_cl) {
        size_t cap = w->cap_cl ? 2 * w->cap_cl : 64;
        struct cl_rec *nv = realloc(w->cl, cap * sizeof(*nv));
        if (nv == NULL)
            return KCHAT_ENOMEM;
        w->cl = nv;
        w->cap_cl = cap;
    }
    if ((buf = malloc(ch->key_len + (ch->deleted ? 0 : ch->value_len) + 1)) == NULL)
        return KCHAT_ENOMEM;
    r = &w->cl[w->n_cl++];
    *r = (struct cl_rec){.seq = ch->seq, .last = ch->last, .table = ch->table, .key = buf,
                         .key_len = ch->key_len};
    memcpy(buf, ch->key, ch->key_len);
    if (!ch->deleted) {
        r->value = buf + ch->key_len;
        r->value_len = ch->value_len;
        if (ch->value_len)
            memcpy(r->value, ch->value, ch->value_len);
    }
    return 0;
}

void kchat__changelog_discard(struct worker *w)
{
    for (size_t i = 0; i < w->n_cl; i++)
        free(w->cl[i].key);
    w->n_cl = 0;
}

/* The records of @p w, held in @p sh behind @p gate. False when there is
 * no room (nothing was moved).
 * @locality worker @p w, which owns @p sh */
static bool hold(kchat_backend *be, struct worker *w, struct shard *sh, uint64_t gate)
{
    if (sh->held_head > 0 && sh->held_head == sh->n_held)
        sh->held_head = sh->n_held = 0;
    if (sh->n_held + w->n_out > sh->cap_held && sh->held_head > 0) {
        /* slide the live ones down first */
        size_t live = sh->n_held - sh->held_head;
        memmove(sh->held, sh->held + sh->held_head, live * sizeof(*sh->held));
        memmove(sh->held_gate, sh->held_gate + sh->held_head, live * sizeof(*sh->held_gate));
        sh->n_held = live;
        sh->held_head = 0;
    }
    if (sh->n_held + w->n_out > sh->cap_held) {
        size_t cap = sh->cap_held ? sh->cap_held : 64;
        struct out_rec *nr;
        uint64_t *ng;

        while (cap < sh->n_held + w->n_out)
            cap *= 2;
        if ((nr = realloc(sh->held, cap * sizeof(*nr))) == NULL)
            return false;
        sh->held = nr;
        if ((ng = realloc(sh->held_gate, cap * sizeof(*ng))) == NULL)
            return false;   /* held grew, which is harmless */
        sh->held_gate = ng;
        sh->cap_held = cap;
    }
    for (size_t i = 0; i < w->n_out; i++) {
        sh->held[sh->n_held] = w->out[i];
        sh->held_gate[sh->n_held++] = gate;
    }
    atomic_fetch_add(&be->stats.held_records, w->n_out);
    w->n_out = 0;
    return true;
}

/* Mark @p mark of @p sh (one of its fields under sh->lock), read. */
static uint64_t mark_now(struct shard *sh, const uint64_t *mark)
{
    uint64_t v;

    pthread_mutex_lock(&sh->lock);
    v = *mark;
    pthread_mutex_unlock(&sh->lock);
    return v;
}

/* Every change of @p sh up to this one is in Kafka. */
static uint64_t acked_now(struct shard *sh)
{
    return mark_now(sh, &sh->cl_acked);
}

/* The first change of @p sh a replay must queue before any newer one; 0
 * when none is due. */
static uint64_t resend_from(struct shard *sh)
{
    return mark_now(sh, &sh->cl_resend_from);
}

/* Whether a record of @p w's transaction is one somebody waits for: any
 * but a command acknowledgement (its source only deletes what it covers,
 * and asks again after 2 s without one: docs/design.md,
 * "Acknowledgements").
 * @locality worker @p w */
static bool awaited(const struct worker *w)
{
    for (size_t i = 0; i < w->n_out; i++) {
        const struct out_rec *o = &w->out[i];
        bool ack = false;

        for (size_t h = 0; h < o->n_hdr && !ack; h++)
            ack = strcmp(o->hdr[h].name, KCHAT_HDR_ACK) == 0;
        if (!ack)
            return true;
    }
    return false;
}

void kchat__changelog_after_commit(kchat_backend *be, struct worker *w, struct shard *sh)
{
    uint64_t gate;
    int64_t now = kchat__monotonic_us();

    for (size_t i = 0; i < w->n_out; i++)
        w->out[i].committed_us = now;   /* the release stage begins */
    if (w->n_cl == 0) {   /* no changelog, or nothing changed */
        kchat__worker_flush_out(be, w);
        return;
    }
    gate = w->cl[w->n_cl - 1].last;
    sh->cl_produced = gate;
    /* With nothing held but acknowledgements, nobody waits for these
     * changes: they may go with the next ones somebody does wait for.
     * While a replay is due, they wait for it (they are kept: it produces
     * them after the older ones). */
    if (resend_from(sh) == 0 &&
        kchat__cl_txn_give(sh, w->cl, w->n_cl, awaited(w)) == KCHAT_OK) {
        w->n_cl = 0;   /* the committer owns them now */
    } else {
        uint64_t first = w->cl[0].seq;

        kchat__changelog_discard(w);
        kchat__changelog_refused(be, sh, first);   /* produced again from there */
    }
    if (w->n_out > 0 && !hold(be, w, sh, gate)) {
        /* No memory to hold them: wait here instead (the gate holds), for
         * changes written now even if nobody else waits for them. */
        kchat__cl_txn_hurry(sh);
        while (acked_now(sh) < gate && !atomic_load(&be->stopping)) {
            kchat__changelog_release(be, sh);
            kchat__sleep_ms(1);
        }
        if (atomic_load(&be->stopping))
            kchat__worker_discard_out(w);   /* their outbox copies stay for the next start */
        else
            kchat__worker_flush_out(be, w);
    }
    kchat__changelog_release(be, sh);
}

static void wake(kchat_backend *be, struct shard *sh);

/* A replay of kept changes (produce_kept_from()). */
struct replay {
    struct shard *sh;
    uint64_t refused;   /* the change the committer refused (the replay
                           stopped there); 0: none */
};

/* kchat_store_changelog_scan() callback: produce a kept change again; stop
 * at the first the committer refuses, so that none after it is queued
 * before it. */
static int produce_kept(void *arg, const kchat_change *ch)
{
    struct replay *rp = arg;
    struct shard *sh = rp->sh;
    int rc = kchat__cl_txn_enqueue(sh, ch);

    if (rc != KCHAT_OK) {
        int64_t now = kchat__monotonic_us();

        sh->cl_refusals++;
        if (now - sh->cl_refused_logged_us >= REFUSED_LOG_US) {
            fprintf(stderr, "kchat: shard %u: cannot queue change %" PRIu64 " for %s: %s; "
                    "produced again from there (refused since the last such message: %lu)\n",
                    sh->id, ch->seq, KCHAT_TOPIC_CHANGELOG, kchat_strerror(rc),
                    sh->cl_refusals);
            sh->cl_refused_logged_us = now;
            sh->cl_refusals = 0;
        }
        rp->refused = ch->seq;
        return 1;
    }
    sh->cl_replayed = ch->seq;
    if (ch->seq > sh->cl_produced)
        sh->cl_produced = ch->seq;
    return 0;
}

/* Produce every kept change from @p from on, in order, until the committer
 * refuses one: then the shard's replay goes on from that one later
 * (cl_resend_from), and until then no newer change is queued. When the
 * kept changes cannot be read, the replay starts at @p from again later.
 * Errors: store errors.
 * @locality worker that owns @p sh (at start: the starting thread) */
KCHAT_MUST_CHECK
static int produce_kept_from(kchat_backend *be, struct shard *sh, uint64_t from)
{
    struct replay rp = {.sh = sh};
    kchat_txn *t;
    int rc;

    if ((rc = kchat_txn_begin(sh->store, false, &t)) == KCHAT_OK) {
        rc = kchat_store_changelog_scan(t, from, produce_kept, &rp);
        kchat_txn_abort(t);
    }
    pthread_mutex_lock(&sh->lock);
    if (rc != KCHAT_OK)
        sh->cl_resend_from = from;
    else if (rp.refused != 0)
        sh->cl_resend_from = rp.refused;
    else
        sh->cl_resend_from = 0;   /* all queued, in order */
    pthread_mutex_unlock(&sh->lock);
    if (rc == KCHAT_OK && rp.refused != 0)
        wake(be, sh);   /* not left for the next request to try again */
    return rc;
}

/* Produce every kept change from @p from on again, in order; what cannot
 * be read or queued is tried again at the next release.
 * @locality worker that owns @p sh (at start: the starting thread) */
static void resend_kept(kchat_backend *be, struct shard *sh, uint64_t from)
{
    int rc;

    atomic_fetch_add(&be->stats.changelog_resends, 1);
    if ((rc = produce_kept_from(be, sh, from)) != KCHAT_OK)
        fprintf(stderr, "kchat: shard %u: cannot read its kept changes (%s); trying again\n",
                sh->id, kchat_strerror(rc));
}

void kchat__changelog_release(kchat_backend *be, struct shard *sh)
{
    uint64_t from = resend_from(sh), acked;

    if (from != 0)
        resend_kept(be, sh, from);
    acked = acked_now(sh);
    for (;;) {
        size_t end = sh->held_head;

        while (end < sh->n_held && sh->held_gate[end] <= acked)
            end++;
        kchat__room_summaries_write_through(be, sh->held + sh->held_head, end - sh->held_head);
        while (sh->held_head < end)
            kchat__out_rec_flush(be, &sh->held[sh->held_head++]);
        if (sh->held_head == sh->n_held) {
            sh->held_head = sh->n_held = 0;
            atomic_store(&sh->cl_wake_at, 0);
            return;
        }
        /* Say what to wake us for, then look again: an ack that came in
         * between saw the old value and woke nobody. */
        atomic_store(&sh->cl_wake_at, sh->held_gate[sh->held_head]);
        if ((acked = acked_now(sh)) < sh->held_gate[sh->held_head])
            return;
    }
}

bool kchat__changelog_due(struct shard *sh)
{
    bool due;

    pthread_mutex_lock(&sh->lock);
    due = sh->cl_resend_from != 0 || sh->cl_acked > sh->cl_trimmed;
    pthread_mutex_unlock(&sh->lock);
    return due || sh->held_head < sh->n_held;
}

int kchat__changelog_trim(struct shard *sh, kchat_txn *t)
{
    uint64_t acked = acked_now(sh);
    int rc;

    if (acked == 0)
        return KCHAT_OK;
    if ((rc = kchat_store_changelog_trim(t, acked)) == KCHAT_OK)
        sh->cl_trimmed = acked;   /* a hint: trimming again costs one seek */
    return rc;
}

void kchat__changelog_free(struct shard *sh)
{
    for (size_t i = sh->held_head; i < sh->n_held; i++)
        kchat__out_rec_release(&sh->held[i]);
    free(sh->held);
    free(sh->held_gate);
    sh->held = NULL;
    sh->held_gate = NULL;
    sh->held_head = sh->n_held = sh->cap_held = 0;
}

/* ---- the delivery-report thread's side ---- */

/* Wake the worker of @p sh.
 * @locks takes be->wake_lock */
static void wake(kchat_backend *be, struct shard *sh)
{
    pthread_mutex_lock(&be->wake_lock);
    if (be->wake != NULL)
        kchat_consumer_wake(be->wake, sh->id % be->n_workers);
    pthread_mutex_unlock(&be->wake_lock);
}

void kchat__changelog_acked(kchat_backend *be, struct shard *sh, uint64_t seq)
{
    bool moved = false;
    uint64_t wake_at;

    pthread_mutex_lock(&sh->lock);
    if (seq == sh->cl_acked + 1) {   /* else a repeat, or one after a refused one */
        sh->cl_acked = seq;
        moved = true;
    }
    pthread_mutex_unlock(&sh->lock);
    if (!moved)
        return;
    atomic_fetch_add(&be->stats.changes_acked, 1);
    wake_at = atomic_load(&sh->cl_wake_at);
    if (wake_at != 0 && seq >= wake_at)
        wake(be, sh);
}

void kchat__changelog_refused(kchat_backend *be, struct shard *sh, uint64_t seq)
{
    pthread_mutex_lock(&sh->lock);
    if (sh->cl_resend_from == 0 || seq < sh->cl_resend_from)
        sh->cl_resend_from = seq;
    pthread_mutex_unlock(&sh->lock);
    wake(be, sh);
}

/* ---- start-up ---- */

/* kchat_store_changelog_scan() callback: the first kept change's seq. */
static int first_kept(void *arg, const kchat_change *ch)
{
    *(uint64_t *)arg = ch->seq;
    return 1;
}

int kchat__changelog_replay(kchat_backend *be, struct shard *sh)
{
    uint64_t next = 1, first = 0;
    kchat_txn *t;
    int rc;

    if (!be->changelog)
        return KCHAT_OK;
    if ((rc = kchat_txn_begin(sh->store, false, &t)) != KCHAT_OK)
        return rc;
    rc = kchat_store_changelog_next(t, &next);
    if (rc == KCHAT_OK)
        rc = kchat_store_changelog_scan(t, 0, first_kept, &first);
    kchat_txn_abort(t);
    if (rc != KCHAT_OK)
        return rc;
    if (first == 0)
        first = next;
    pthread_mutex_lock(&sh->lock);
    sh->cl_acked = first - 1;   /* only what Kafka had was trimmed */
    pthread_mutex_unlock(&sh->lock);
    sh->cl_trimmed = first - 1;
    sh->cl_replayed = first - 1;
    sh->cl_produced = first - 1;
    if (first < next) {
        fprintf(stderr, "kchat: shard %u: producing %" PRIu64 " kept changes again\n", sh->id,
                next - first);
        resend_kept(be, sh, first);
    }
    return KCHAT_OK;
}

int kchat__changelog_produce_rest(kchat_backend *be, struct shard *sh)
{
    if (!be->changelog || resend_from(sh) != 0)
        return KCHAT_OK;   /* a replay due covers them (they are kept), after the older */
    return produce_kept_from(be, sh, sh->cl_produced + 1);
}

int kchat__changelog_wait_shard(kchat_backend *be, struct shard *sh, char *errstr, size_t len)
{
    int64_t start = kchat__monotonic_us() / 1000, logged = start;

    if (!be->changelog)
        return KCHAT_OK;
    for (;;) {
        int64_t now = kchat__monotonic_us() / 1000;

        kchat__changelog_release(be, sh);   /* produces again what was refused */
        if (resend_from(sh) == 0 && acked_now(sh) >= sh->cl_replayed)
            return KCHAT_OK;
        if (now - start >= WAIT_MAX_MS) {
            snprintf(errstr, len, "Kafka did not confirm the kept changes of shard %u within "
                     "%d s", sh->id, WAIT_MAX_MS / 1000);
            return KCHAT_EKAFKA;
        }
        if (now - logged >= WAIT_LOG_MS) {
            fprintf(stderr, "kchat: shard %u: waiting for Kafka to confirm its kept changes\n",
                    sh->id);
            logged = now;
        }
        kchat__sleep_ms(5);
    }
}
