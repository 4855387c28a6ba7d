/*
 * Commands handed in memory to a shard of this process (docs/design.md,
 * "Command streams").
 *
 * A command to another shard travels through kchat-internal: produced by
 * its source once committed (and, with a changelog, once Kafka has the
 * changes of its transaction), read by the target's consumer. When the
 * target shard is served by this same process, that trip costs a fetch
 * (most of a chat send's wait on the embedded broker). So when the source
 * produces the command it also puts a copy in the target's inbox and wakes
 * the target's worker, which applies it in its next transaction.
 *
 * The copy in Kafka stays the command of record: it is what a restart, a
 * new owner or a lost copy relies on. Both copies carry the same stream
 * seq, so whichever comes second is dropped as a repeat
 * (kchat_duplicate_commands_total counts the Kafka copies dropped so). A
 * local copy is only ever a shortcut: one that is not the next of its
 * stream, or that does not decode, is dropped without a word and left to
 * its Kafka copy; a full inbox takes no more; a shard released drops its
 * inbox.
 *
 * Nothing here reads a shard this process does not serve: the copy is put
 * only in the inbox of a shard owned here, and applied only while its
 * worker owns it.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "actors.h"
#include "streams.h"
#include "kchat/kafka.h"

#define INBOX_MAX 4096   /* commands waiting in one inbox; beyond, Kafka carries them */

struct local_inbox {
    pthread_mutex_t lock;
    struct local_cmd *v;      /* under lock: in the order handed */
    size_t n, cap;
    atomic_size_t count;      /* = n, read without the lock */
};

struct local_inbox *kchat__inbox_new(void)
{
    struct local_inbox *in = calloc(1, sizeof(*in));

    if (in == NULL)
        return NULL;
    pthread_mutex_init(&in->lock, NULL);
    atomic_init(&in->count, 0);
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

/* Whether @p sh takes commands in memory now: served here, not being given
 * up, not fenced.
 * @locality any thread */
static bool takes_local(const struct shard *sh)
{
    return sh->inbox != NULL && atomic_load(&sh->owned) && !atomic_load(&sh->releasing) &&
           !atomic_load(&sh->fenced);
}

void kchat__local_hand(kchat_backend *be, struct out_rec *r)
{
    struct shard *to;
    struct local_inbox *in;
    struct local_cmd lc;
    bool put = false;

    if (r->kind != OUT_COMMAND || r->cseq == 0 || r->target >= (uint32_t)be->partitions ||
        r->target == r->shard)
        return;
    to = &be->shards[r->target];
    if (!takes_local(to) || !be->cfg->local_commands || atomic_load(&be->stopping) ||
        atomic_load(&to->inbox->count) >= INBOX_MAX)
        return;
    lc = (struct local_cmd){
        .src = r->shard, .cseq = r->cseq,
        .run = kchat__header_u64(r->hdr, r->n_hdr, KCHAT_HDR_CMD_RUN),
        .from = kchat__header_u64(r->hdr, r->n_hdr, KCHAT_HDR_CMD_RUN_FROM),
        .value = r->value, .len = r->value_len,
    };
    if (lc.value == NULL)
        return;
    in = to->inbox;
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
        in->v[in->n++] = lc;
        atomic_store(&in->count, in->n);
        put = true;
    }
    pthread_mutex_unlock(&in->lock);
    if (!put)
        return;   /* out of memory: Kafka carries it */
    r->value = NULL;   /* the inbox owns it now */
    r->value_len = 0;
    pthread_mutex_lock(&be->wake_lock);
    if (be->wake != NULL)
        kchat_consumer_wake(be->wake, r->target % be->n_workers);
    pthread_mutex_unlock(&be->wake_lock);
}

bool kchat__local_waiting(const struct shard *sh)
{
    return sh->inbox != NULL && atomic_load(&sh->inbox->count) > 0;
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
    pthread_mutex_unlock(&in->lock);
    return n;
}

void kchat__local_drop(struct shard *sh)
{
    struct local_cmd *v;
    size_t n = kchat__local_take(sh, &v);

    kchat__local_cmds_free(v, n);
}
