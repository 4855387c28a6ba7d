/*
 * Commands and their acknowledgements handed in memory between shards of
 * this process (docs/design.md, "In memory, within one process").
 *
 * A command to another shard travels through kchat-internal: produced by
 * its source once committed (and, with a changelog, once Kafka has the
 * changes of its transaction), read by the target's consumer, which ends
 * its transaction with an ack record on kchat-internal back to the source.
 * When both shards are served by this same process, each trip costs a
 * fetch and a record through Kafka. So at that same point the source puts
 * the command in the target's inbox and wakes the target's worker, which
 * applies it in its next transaction; the target's ack, at its own release
 * point, goes the same way into the source's inbox.
 *
 * The source's outbox stays the command of record: a command leaves it
 * only once an ack covers it, and a stream whose target stops moving is
 * produced again through Kafka (commands.c), which is what a lost inbox, a
 * restart or a new owner rely on. A command handed in memory is not also
 * produced when nothing of its stream is in Kafka unapplied (every command
 * the source produced to that target, it has seen acknowledged): then the
 * target finds it next in its stream, behind the ones handed before it.
 * Otherwise it is produced and the copy in memory is only a shortcut;
 * whichever copy comes second is dropped as a repeat. A local copy that is
 * not the next of its stream, or that does not decode, is dropped without
 * a word; a full inbox takes no more; a shard released drops its inbox:
 * in each case the source's re-send through Kafka makes it good. An ack,
 * an absolute mark, is taken like one read from Kafka; one lost is made
 * good by the next.
 *
 * Nothing here reads a shard this process does not serve: a copy is put
 * only in the inbox of a shard owned here, and applied only while its
 * worker owns it.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "actors.h"
#include "streams.h"
#include "kchat/kafka.h"

#define INBOX_MAX 4096   /* items waiting in one inbox; beyond, Kafka carries them */
/* Acks wait this long for a transaction of their shard's that runs anyway
 * (a request's, a command's) before they get one of their own: nothing
 * waits for them but the deletion of commands, and a transaction of their
 * own is one more fsync'd commit. */
#define ACK_WAIT_US 50000

struct local_inbox {
    pthread_mutex_t lock;
    struct local_cmd *v;      /* under lock: in the order handed */
    size_t n, cap;
    atomic_size_t count;      /* = n, read without the lock */
    atomic_size_t commands;   /* how many of them are commands, read without the lock */
    _Atomic int64_t first_us; /* when the oldest item waiting was put (0: none) */
};

struct local_inbox *kchat__inbox_new(void)
{
    struct local_inbox *in = calloc(1, sizeof(*in));

    if (in == NULL)
        return NULL;
    pthread_mutex_init(&in->lock, NULL);
    atomic_init(&in->count, 0);
    atomic_init(&in->commands, 0);
    atomic_init(&in->first_us, 0);
    return in;
}

void kchat__local_cmds_free(struct local_cmd *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].value);
    free(v);
}

void kchat__inbox_free(struct local_inbox *in)
{
    if (in == NULL)
        return;
    kchat__local_cmds_free(in->v, in->n);
    pthread_mutex_destroy(&in->lock);
    free(in);
}

/* Whether @p sh takes items in memory now: served here, not being given
 * up, not fenced.
 * @locality any thread */
static bool takes_local(const struct shard *sh)
{
    return sh->inbox != NULL && atomic_load(&sh->owned) && !atomic_load(&sh->releasing) &&
           !atomic_load(&sh->fenced);
}

/* Whether shard @p to of @p be takes an item from a shard of this process
 * now (and the backend hands items in memory at all).
 * @locality any thread */
static bool hand_to(kchat_backend *be, uint32_t to)
{
    return to < (uint32_t)be->partitions && takes_local(&be->shards[to]) &&
           be->cfg->local_commands && !atomic_load(&be->stopping) &&
           atomic_load(&be->shards[to].inbox->count) < INBOX_MAX;
}

/* Put @p item in shard @p to's inbox and, for a command, wake its worker;
 * false when out of memory (nothing was put).
 * @locality any worker
 * @locks takes the target's inbox lock (released before), then be->wake_lock */
static bool inbox_put(kchat_backend *be, uint32_t to, const struct local_cmd *item)
{
    struct local_inbox *in = be->shards[to].inbox;
    bool put = false;

    pthread_mutex_lock(&in->lock);
    if (in->n == in->cap) {
        size_t cap = in->cap ? in->cap * 2 : 16;
        struct local_cmd *nv = realloc(in->v, cap * sizeof(*nv));

        if (nv != NULL) {
            in->v = nv;
            in->cap = cap;
        }
    }
    if (in->n < in->cap) {
        in->v[in->n++] = *item;
        if (in->n == 1)
            atomic_store(&in->first_us, kchat__monotonic_us());
        atomic_store(&in->count, in->n);
        if (!item->ack)
            atomic_fetch_add(&in->commands, 1);
        put = true;
    }
    pthread_mutex_unlock(&in->lock);
    if (!put)
        return false;
    if (item->ack)
        return true;   /* taken with the next transaction, or after ACK_WAIT_US */
    pthread_mutex_lock(&be->wake_lock);
    if (be->wake != NULL)
        kchat_consumer_wake(be->wake, to % be->n_workers);
    pthread_mutex_unlock(&be->wake_lock);
    return true;
}

/* Whether @p r is a numbered command to another shard of @p be.
 * @locality any thread */
static bool is_command(const kchat_backend *be, const struct out_rec *r)
{
    return r->kind == OUT_COMMAND && r->cseq != 0 && r->target < (uint32_t)be->partitions &&
           r->target != r->shard;
}

bool kchat__local_alone(const kchat_backend *be, const struct out_rec *r)
{
    const struct shard *sh = &be->shards[r->shard];
    const struct cmd_link *l;

    if (!is_command(be, r) || sh->links == NULL)
        return false;
    l = &sh->links[r->target];
    return l->kafka_high <= l->applied;
}

bool kchat__local_hand(kchat_backend *be, struct out_rec *r)
{
    struct local_cmd lc;

    if (!is_command(be, r) || r->value == NULL || !hand_to(be, r->target))
        return false;
    lc = (struct local_cmd){
        .src = r->shard, .cseq = r->cseq,
        .run = kchat__header_u64(r->hdr, r->n_hdr, KCHAT_HDR_CMD_RUN),
        .from = kchat__header_u64(r->hdr, r->n_hdr, KCHAT_HDR_CMD_RUN_FROM),
        .value = r->value, .len = r->value_len,
    };
    if (!inbox_put(be, r->target, &lc))
        return false;   /* out of memory: Kafka carries it */
    r->value = NULL;   /* the inbox owns it now */
    r->value_len = 0;
    return true;
}

bool kchat__local_hand_ack(kchat_backend *be, const struct out_rec *r)
{
    struct local_cmd ack;
    uint32_t to;
    bool is_ack = false;

    /* every record released passes here: the cheap tests first */
    if (r->kind != OUT_REPLY || r->partition < 0 || strcmp(r->topic, KCHAT_TOPIC_INTERNAL))
        return false;
    for (size_t i = 0; i < r->n_hdr && !is_ack; i++)
        is_ack = !strcmp(r->hdr[i].name, KCHAT_HDR_ACK);
    if (!is_ack || kchat__header_u64(r->hdr, r->n_hdr, KCHAT_HDR_ACK) != r->shard)
        return false;
    to = (uint32_t)r->partition;
    if (to == r->shard || !hand_to(be, to))
        return false;
    ack = (struct local_cmd){
        .ack = true, .src = r->shard,
        .cseq = kchat__header_u64(r->hdr, r->n_hdr, KCHAT_HDR_ACK_SEQ),
        .run = kchat__header_u64(r->hdr, r->n_hdr, KCHAT_HDR_ACK_RUN),
        .legacy = kchat__header_u64(r->hdr, r->n_hdr, KCHAT_HDR_ACK_LEGACY),
    };
    return inbox_put(be, to, &ack);
}

bool kchat__local_waiting(const struct shard *sh)
{
    const struct local_inbox *in = sh->inbox;
    int64_t first;

    if (in == NULL || atomic_load(&in->count) == 0)
        return false;
    if (atomic_load(&in->commands) > 0)
        return true;
    first = atomic_load(&in->first_us);   /* 0: just taken meanwhile */
    return first != 0 && kchat__monotonic_us() - first >= ACK_WAIT_US;
}

size_t kchat__local_take(struct shard *sh, struct local_cmd **out)
{
    struct local_inbox *in = sh->inbox;
    size_t n;

    *out = NULL;
    if (in == NULL || atomic_load(&in->count) == 0)
        return 0;
    pthread_mutex_lock(&in->lock);
    *out = in->v;
    n = in->n;
    in->v = NULL;
    in->n = in->cap = 0;
    atomic_store(&in->count, 0);
    atomic_store(&in->commands, 0);
    atomic_store(&in->first_us, 0);
    pthread_mutex_unlock(&in->lock);
    return n;
}

void kchat__local_drop(struct shard *sh)
{
    struct local_cmd *v;
    size_t n = kchat__local_take(sh, &v);

    kchat__local_cmds_free(v, n);
}
