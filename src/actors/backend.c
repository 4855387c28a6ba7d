/*
 * The backend's batch loop: group commit per shard, the outbox and its
 * delivery, internal commands, start-up and shutdown (include/kchat/backend.h).
 *
 * One batch from the pipeline holds records of this worker's shards only.
 * For each shard touched: one LMDB write transaction applies every record,
 * stores the next input offset of each (topic, partition), appends every
 * answer, event and command to the shard's outbox and deletes the outbox
 * records Kafka has confirmed since; one fsync'd commit; then the new outbox
 * records are produced. A crash before the commit loses nothing (the input is
 * read again from the stored offsets); a crash after it loses nothing either
 * (the outbox is produced again at start, and receivers drop repeats).
 */
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "actors.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

#define ACK_CHECK_MS 50          /* how often a shard asks whether its commands were applied */
#define CMD_RESEND_MS 2000       /* a target stuck this long below our commands: produce them again */
#define CMD_RESEND_MAX_MS 30000  /* ... doubling up to this while it stays stuck */
#define RETRY_SLEEP_MS 100       /* pause before a failed commit is retried */
#define COMMIT_FAIL_LOG_MS 10000 /* a run of failed commits is logged this often */
#define DISK_LOW_BYTES (1u << 20) /* less free than this: call the disk full */
#define FLUSH_TIMEOUT_MS 5000
#define PRODUCER_RETIRE_MS 5000  /* a failed producer's purged records are reported within this */

static const double commit_bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
                                       0.2, 0.5, 1, 2};
static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};

/* ---- delivery opaque: kind (2 bits) | shard (14 bits) | seq (48 bits) ---- */

static void *opaque_pack(uint8_t kind, uint32_t shard, uint64_t seq)
{
    return (void *)(uintptr_t)((uint64_t)kind << 62 | (uint64_t)shard << 48 |
                               (seq & 0xffffffffffffULL));
}

static void opaque_unpack(void *op, uint8_t *kind, uint32_t *shard, uint64_t *seq)
{
    uint64_t v = (uint64_t)(uintptr_t)op;
    *kind = (uint8_t)(v >> 62);
    *shard = (uint32_t)(v >> 48) & 0x3fff;
    *seq = v & 0xffffffffffffULL;
}

static int seqlist_push(struct seqlist *l, uint64_t seq)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        uint64_t *nv = realloc(l->v, cap * sizeof(*nv));
        if (nv == NULL)
            return KCHAT_ENOMEM;
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = seq;
    return KCHAT_OK;
}

static int64_t monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- producing ---- */

static int seqlist_push(struct seqlist *l, uint64_t seq);
static int parse_u64(const void *v, size_t len, uint64_t *out);

/* The stream seq of outbox command @p r, 0 if it has none (an older kchat's). */
static uint64_t cmd_cseq(const kchat_outbox_rec *r)
{
    uint64_t cseq = 0;

    for (size_t i = 0; i < r->n_headers; i++)
        if (!strcmp(r->headers[i].name, KCHAT_HDR_CMD_SEQ) &&
            parse_u64(r->headers[i].value, r->headers[i].len, &cseq))
            cseq = 0;
    return cseq;
}

/* The kchat-cmd-base of command @p r: the lowest seq of its stream this
 * shard still holds (it holds every one it has not seen applied), 0 if
 * unknown. The worker owning @p sh (or start-up). */
static uint64_t cmd_base(const kchat_backend *be, const struct shard *sh,
                         const kchat_outbox_rec *r)
{
    uint64_t cseq = cmd_cseq(r), low;

    if (cseq == 0 || sh->links == NULL || r->partition < 0 || r->partition >= be->partitions)
        return 0;
    low = sh->links[r->partition].low;
    return low > 0 && low < cseq ? low : cseq;
}

/* Hand one outbox record to the producer. Never drops it: a full local
 * queue is waited out (the poller thread drains it); a producer that failed
 * for good gets it again once the poller has replaced it. */
static void produce(kchat_backend *be, uint32_t shard, uint64_t seq, const kchat_outbox_rec *r)
{
    struct shard *sh = &be->shards[shard];
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(r->n_headers + 3);
    rd_kafka_resp_err_t err;
    char num[24];

    for (size_t i = 0; i < r->n_headers; i++)
        rd_kafka_header_add(hdrs, r->headers[i].name, -1, r->headers[i].value,
                            (ssize_t)r->headers[i].len);
    if (r->kind == OUT_COMMAND) {
        uint64_t base = cmd_base(be, sh, r);

        snprintf(num, sizeof(num), "%" PRIu32, shard);
        rd_kafka_header_add(hdrs, KCHAT_HDR_SRC_SHARD, -1, num, -1);
        snprintf(num, sizeof(num), "%" PRIu64, seq);
        rd_kafka_header_add(hdrs, KCHAT_HDR_SRC_SEQ, -1, num, -1);
        if (base > 0) {
            snprintf(num, sizeof(num), "%" PRIu64, base);
            rd_kafka_header_add(hdrs, KCHAT_HDR_CMD_BASE, -1, num, -1);
        }
    }
    /* Tagged when produced, so records an older kchat left in the outbox
     * leave tagged too (see dataset_open()). */
    if (r->kind == OUT_COMMAND || !strcmp(r->topic, KCHAT_TOPIC_DIRECTORY))
        rd_kafka_header_add(hdrs, KCHAT_HDR_DATASET, -1, be->dataset, -1);
    /* producev takes the headers only when it succeeds; on failure they are
     * still ours, so a retry reuses them. */
    pthread_rwlock_rdlock(&be->producer_lock);
    for (;;) {
        err = rd_kafka_producev(be->producer, RD_KAFKA_V_TOPIC(r->topic),
                                RD_KAFKA_V_PARTITION(r->partition >= 0 ? r->partition
                                                                       : RD_KAFKA_PARTITION_UA),
                                RD_KAFKA_V_KEY(r->key, r->key_len),
                                RD_KAFKA_V_VALUE((void *)r->value, r->value_len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_HEADERS(hdrs),
                                RD_KAFKA_V_OPAQUE(opaque_pack(r->kind, shard, seq)),
                                RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
            /* produced again by the next producer (see producer_replace()) */
            atomic_store(&be->producer_fatal, true);
            pthread_mutex_lock(&sh->lock);
            seqlist_push(&sh->resend, seq);
            pthread_mutex_unlock(&sh->lock);
            rd_kafka_headers_destroy(hdrs);
            break;
        }
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            /* Left in the outbox: produced again at the next start. */
            fprintf(stderr, "kchat: cannot produce to %s: %s\n", r->topic, rd_kafka_err2str(err));
            rd_kafka_headers_destroy(hdrs);
            break;
        }
        sleep_ms(1);
    }
    pthread_rwlock_unlock(&be->producer_lock);
    atomic_fetch_add(&be->stats.produced, 1);
}

static int pending_cmd_add(kchat_backend *be, struct shard *sh, uint64_t seq, uint32_t target,
                           uint64_t cseq)
{
    struct cmd_link *l;

    if (sh->links == NULL &&
        (sh->links = calloc((size_t)be->partitions, sizeof(*sh->links))) == NULL)
        return KCHAT_ENOMEM;
    if (sh->n_cmds == sh->cap_cmds) {
        size_t cap = sh->cap_cmds ? 2 * sh->cap_cmds : 64;
        struct pending_cmd *nv = realloc(sh->cmds, cap * sizeof(*nv));
        if (nv == NULL)
            return KCHAT_ENOMEM;
        sh->cmds = nv;
        sh->cap_cmds = cap;
    }
    sh->cmds[sh->n_cmds++] = (struct pending_cmd){.seq = seq, .cseq = cseq, .target = target};
    l = &sh->links[target];
    if (l->n_pending++ == 0) {   /* the stream was idle: its clock starts now */
        l->since_ms = kchat__now_ms();
        l->backoff_ms = CMD_RESEND_MS;
        l->low = 0;
    }
    if (cseq > 0 && (l->low == 0 || cseq < l->low))
        l->low = cseq;
    return KCHAT_OK;
}

/* After a commit: apply directory records locally, then produce everything. */
static void worker_flush_out(kchat_backend *be, struct worker *w)
{
    for (size_t i = 0; i < w->n_out; i++) {
        struct out_rec *r = &w->out[i];
        kchat_outbox_rec rec = {
            .topic = r->topic, .partition = r->partition, .key = r->key,
            .key_len = r->key_len, .value = r->value, .value_len = r->value_len,
            .headers = r->hdr, .n_headers = r->n_hdr, .kind = r->kind,
        };
        if (!strcmp(r->topic, KCHAT_TOPIC_DIRECTORY)) {
            json_t *e = json_loadb(r->value, r->value_len, 0, NULL);
            if (e != NULL) {
                int rc = kchat__directory_apply(be, e);
                if (rc != KCHAT_OK)
                    fprintf(stderr, "kchat: directory replica: %s\n", kchat_strerror(rc));
            }
            json_decref(e);
        }
        if (r->kind == OUT_COMMAND)
            pending_cmd_add(be, &be->shards[r->shard], r->seq, r->target, r->cseq);
        produce(be, r->shard, r->seq, &rec);
        kchat__out_rec_release(r);
    }
    w->n_out = 0;
}

static void worker_discard_out(struct worker *w)
{
    for (size_t i = 0; i < w->n_out; i++)
        kchat__out_rec_release(&w->out[i]);
    w->n_out = 0;
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kchat_backend *be = opaque;
    struct shard *sh;
    uint8_t kind;
    uint32_t shard;
    uint64_t seq;

    (void)rk;
    opaque_unpack(m->_private, &kind, &shard, &seq);
    if ((int)shard >= be->partitions)
        return;
    sh = &be->shards[shard];
    if (m->err) {
        fprintf(stderr, "kchat: delivery to %s failed (%s); will retry\n",
                rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
        pthread_mutex_lock(&sh->lock);
        seqlist_push(&sh->resend, seq);
        pthread_mutex_unlock(&sh->lock);
        return;
    }
    atomic_fetch_add(&be->stats.delivered, 1);
    if (kind == OUT_COMMAND)
        return;   /* deleted once the target shard has applied it */
    pthread_mutex_lock(&sh->lock);
    seqlist_push(&sh->delivered, seq);
    pthread_mutex_unlock(&sh->lock);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kchat_backend *be = opaque;

    if (rd_kafka_fatal_error(rk, NULL, 0)) {
        fprintf(stderr, "kchat: FATAL producer error: %s (%s); replacing the producer\n",
                rd_kafka_err2str((rd_kafka_resp_err_t)err), reason);
        atomic_store(&be->producer_fatal, true);
    } else if (err != RD_KAFKA_RESP_ERR__TRANSPORT && err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        fprintf(stderr, "kchat: kafka: %s\n", reason);
}

static int producer_new(kchat_backend *be, char *errstr, size_t len);

/* Poller thread: swap a producer that failed for good (an idempotent
 * producer's fatal error: its sequence state is lost) for a new one. Its
 * queued and in-flight records are purged; their delivery reports (and
 * those of records produced while it was failing) put them on their
 * shards' resend lists, which the workers produce again on the new one
 * (a command with its whole stream, in order). */
static void producer_replace(kchat_backend *be)
{
    rd_kafka_t *old = be->producer;
    int64_t end = monotonic_us() / 1000 + PRODUCER_RETIRE_MS;
    char errstr[512];

    pthread_rwlock_wrlock(&be->producer_lock);
    rd_kafka_purge(old, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    while (rd_kafka_outq_len(old) > 0 && monotonic_us() / 1000 < end)
        rd_kafka_poll(old, 50);
    if (rd_kafka_outq_len(old) > 0)
        fprintf(stderr, "kchat: %d records of the failed producer not reported; they stay in "
                "the outbox until the next start\n", rd_kafka_outq_len(old));
    if (producer_new(be, errstr, sizeof(errstr)) != KCHAT_OK) {
        fprintf(stderr, "kchat: cannot make a new producer: %s; trying again in 1 s\n", errstr);
        be->producer = old;
        pthread_rwlock_unlock(&be->producer_lock);
        sleep_ms(1000);
        return;
    }
    atomic_store(&be->producer_fatal, false);
    pthread_rwlock_unlock(&be->producer_lock);
    rd_kafka_destroy(old);
    atomic_fetch_add(&be->stats.producer_restarts, 1);
    fprintf(stderr, "kchat: a new producer replaced the failed one; what it held is produced "
            "again\n");
}

static void *producer_poll_main(void *arg)
{
    kchat_backend *be = arg;
    while (!atomic_load(&be->stopping)) {
        rd_kafka_poll(be->producer, 50);
        if (atomic_load(&be->producer_fatal))
            producer_replace(be);
    }
    return NULL;
}

/* ---- outbox upkeep, in a shard's write transaction ---- */

/* Shard @p target's marks for commands from @p source: the last stream seq
 * it applied and its outbox-seq watermark (older kchat's commands), 0 when
 * none. Its own read transaction: the caller holds none on @p target's
 * environment (any thread). Errors as kchat_txn_begin() and the getters;
 * the outputs are then 0. */
static int peer_applied(kchat_backend *be, uint32_t target, uint32_t source, uint64_t *stream,
                        uint64_t *legacy)
{
    kchat_txn *t;
    int rc;

    *stream = *legacy = 0;
    if ((rc = kchat_txn_begin(be->shards[target].store, false, &t)) != KCHAT_OK)
        return rc;
    if ((rc = kchat_store_cmdseq_get(t, KCHAT_CMDSEQ_APPLIED, source, stream)) == KCHAT_OK)
        rc = kchat_store_applied_get(t, source, legacy);
    kchat_txn_abort(t);
    return rc;
}

struct resend_arg {
    kchat_backend *be;
    struct shard *sh;
    uint64_t want;
};

static int resend_one(void *arg, uint64_t seq, const kchat_outbox_rec *r)
{
    struct resend_arg *ra = arg;

    if (seq == ra->want)
        produce(ra->be, ra->sh->id, seq, r);
    return 1;
}

static int cmd_by_cseq(const void *a, const void *b)
{
    const struct pending_cmd *x = a, *y = b;
    return x->cseq < y->cseq ? -1 : x->cseq > y->cseq;
}

/* Go back N: produce again, in stream order, every command to @p target the
 * target has not applied. The target applies only the seq it expects next,
 * so one lost or overtaken command holds back those after it until this
 * sends them all again; repeats are dropped there. */
static void cmds_resend(kchat_backend *be, struct shard *sh, kchat_txn *t, uint32_t target,
                        int64_t now)
{
    const struct cmd_link *l = &sh->links[target];
    struct pending_cmd *v = malloc(sh->links[target].n_pending * sizeof(*v));
    size_t n = 0;

    if (v == NULL)
        return;   /* tried again at the next check */
    for (size_t i = 0; i < sh->n_cmds; i++)
        if (sh->cmds[i].target == target && sh->cmds[i].cseq > 0 &&
            n < sh->links[target].n_pending)
            v[n++] = sh->cmds[i];
    qsort(v, n, sizeof(*v), cmd_by_cseq);
    if (n == 0)
        ;   /* only an older kchat's commands: produced once, at start */
    else if (l->resend_now)
        fprintf(stderr, "kchat: shard %u: a command to shard %u was refused; producing its "
                "%zu unapplied commands again, in order\n", sh->id, target, n);
    else
        fprintf(stderr, "kchat: shard %u: shard %u applied none of our %zu pending commands "
                "in %.1f s (it stands at %" PRIu64 "); producing them again\n", sh->id,
                target, n, (double)(now - l->since_ms) / 1000.0, l->applied);
    for (size_t i = 0; i < n; i++) {
        struct resend_arg ra = {be, sh, v[i].seq};
        kchat_store_outbox_scan(t, v[i].seq, resend_one, &ra);
    }
    atomic_fetch_add(&be->stats.command_resends, n);
    free(v);
}

/* Delete what Kafka confirmed and the commands their targets applied, and
 * produce again the command streams a target is stuck on. The seqs taken
 * are returned in @p taken so a failed commit can give them back. */
static int shard_prune(kchat_backend *be, struct shard *sh, kchat_txn *t, struct seqlist *taken)
{
    int64_t now = kchat__now_ms();
    int rc;

    pthread_mutex_lock(&sh->lock);
    *taken = sh->delivered;
    sh->delivered = (struct seqlist){0};
    pthread_mutex_unlock(&sh->lock);
    for (size_t i = 0; i < taken->n; i++) {
        rc = kchat_store_outbox_del(t, taken->v[i]);
        if (rc != KCHAT_OK && rc != KCHAT_ENOTFOUND)
            return rc;
    }
    if (sh->n_cmds == 0 || now - sh->last_ack_check_ms < ACK_CHECK_MS)
        return KCHAT_OK;
    sh->last_ack_check_ms = now;
    /* Each target's marks for us, read once per check (commands never
     * target their own shard). */
    for (int p = 0; p < be->partitions; p++) {
        struct cmd_link *l = &sh->links[p];
        uint64_t applied = 0;

        if (l->n_pending == 0 || (uint32_t)p == sh->id ||
            peer_applied(be, (uint32_t)p, sh->id, &applied, &l->legacy_applied) != KCHAT_OK)
            continue;
        if (applied != l->applied) {
            l->applied = applied;
            l->since_ms = now;
            l->backoff_ms = CMD_RESEND_MS;
        }
    }
    for (size_t i = 0; i < sh->n_cmds;) {
        struct pending_cmd *pc = &sh->cmds[i];
        struct cmd_link *l = &sh->links[pc->target];

        if (pc->cseq > 0 ? l->applied >= pc->cseq : l->legacy_applied >= pc->seq) {
            rc = kchat_store_outbox_del(t, pc->seq);
            if (rc != KCHAT_OK && rc != KCHAT_ENOTFOUND)
                return rc;
            l->n_pending--;
            sh->cmds[i] = sh->cmds[--sh->n_cmds];
        } else {
            i++;
        }
    }
    for (int p = 0; p < be->partitions; p++)
        sh->links[p].low = 0;
    for (size_t i = 0; i < sh->n_cmds; i++) {
        struct cmd_link *l = &sh->links[sh->cmds[i].target];
        if (sh->cmds[i].cseq > 0 && (l->low == 0 || sh->cmds[i].cseq < l->low))
            l->low = sh->cmds[i].cseq;
    }
    for (int p = 0; p < be->partitions; p++) {
        struct cmd_link *l = &sh->links[p];

        if (l->n_pending == 0 || (!l->resend_now && now - l->since_ms < l->backoff_ms))
            continue;
        cmds_resend(be, sh, t, (uint32_t)p, now);
        l->resend_now = false;
        l->since_ms = now;
        l->backoff_ms = l->backoff_ms * 2 < CMD_RESEND_MAX_MS ? l->backoff_ms * 2
                                                               : CMD_RESEND_MAX_MS;
    }
    return KCHAT_OK;
}

static void shard_unprune(struct shard *sh, struct seqlist *taken)
{
    pthread_mutex_lock(&sh->lock);
    for (size_t i = 0; i < taken->n; i++)
        seqlist_push(&sh->delivered, taken->v[i]);
    pthread_mutex_unlock(&sh->lock);
    free(taken->v);
    *taken = (struct seqlist){0};
}

/* The pending command of outbox seq @p seq, or NULL (not a command, or
 * applied already). Only after a refused delivery: a linear search. */
static const struct pending_cmd *pending_cmd_find(const struct shard *sh, uint64_t seq)
{
    for (size_t i = 0; i < sh->n_cmds; i++)
        if (sh->cmds[i].seq == seq)
            return &sh->cmds[i];
    return NULL;
}

/* Produce again what Kafka refused for good (a broker's permanent error or
 * a fatal producer state; retriable errors are retried by librdkafka).
 * A refused command is not produced alone, where it would arrive after
 * later ones: its stream to the target is produced again at the next check. */
static void shard_resend(kchat_backend *be, struct shard *sh)
{
    struct seqlist l;
    kchat_txn *t;

    if (atomic_load(&be->producer_fatal))
        return;   /* after the poller has replaced the producer */
    pthread_mutex_lock(&sh->lock);
    l = sh->resend;
    sh->resend = (struct seqlist){0};
    pthread_mutex_unlock(&sh->lock);
    if (l.n && kchat_txn_begin(sh->store, false, &t) == KCHAT_OK) {
        for (size_t i = 0; i < l.n; i++) {
            const struct pending_cmd *pc = pending_cmd_find(sh, l.v[i]);
            struct resend_arg ra = {be, sh, l.v[i]};

            if (pc != NULL) {
                sh->links[pc->target].resend_now = true;
                sh->last_ack_check_ms = 0;
            } else {
                kchat_store_outbox_scan(t, l.v[i], resend_one, &ra);
            }
        }
        kchat_txn_abort(t);
    }
    free(l.v);
}

/* ---- applying records ---- */

static void key_copy(char *dst, size_t size, const rd_kafka_message_t *m)
{
    size_t n = m->key_len < size - 1 ? m->key_len : size - 1;
    if (m->key)
        memcpy(dst, m->key, n);
    else
        n = 0;
    dst[n] = '\0';
}

/* A record nobody can be answered for goes to kchat-dlq, via the outbox. */
static int dead_letter(struct ctx *c, const rd_kafka_message_t *m, const char *why)
{
    kchat_header hdrs[4];
    size_t n = 0;
    rd_kafka_headers_t *in = NULL;
    const char *name;
    const void *val;
    size_t len;

    /* Keep the original headers that fit (kchat's own are at most 3). */
    if (rd_kafka_message_headers(m, &in) == RD_KAFKA_RESP_ERR_NO_ERROR)
        for (size_t i = 0; n < 3 && !rd_kafka_header_get_all(in, i, &name, &val, &len); i++)
            hdrs[n++] = (kchat_header){name, val ? val : "", val ? len : 0};
    hdrs[n++] = (kchat_header){KCHAT_HDR_ERROR, why, strlen(why)};
    atomic_fetch_add(&c->be->stats.dead_letters, 1);
    fprintf(stderr, "kchat: dead letter from %s [%" PRId32 "] @%" PRId64 ": %s\n",
            rd_kafka_topic_name(m->rkt), m->partition, m->offset, why);
    return kchat__out_append(c, OUT_REPLY, 0, KCHAT_TOPIC_DLQ, -1, m->key, m->key_len,
                             m->payload ? m->payload : "", m->len, hdrs, n);
}

static int dispatch(struct ctx *c)
{
    switch (c->op) {
    case KCHAT_OP_USER_ADD:      return kchat__op_user_add(c);
    case KCHAT_OP_LOGIN:         return kchat__op_login(c);
    case KCHAT_OP_LOGOUT:        return kchat__op_logout(c);
    case KCHAT_OP_STATUS:        return kchat__op_status(c);
    case KCHAT_OP_ADD_FRIEND:    return kchat__op_add_friend(c);
    case KCHAT_OP_SEARCH_FRIEND: return kchat__op_search_friend(c);
    case KCHAT_OP_ADD_ROOM:      return kchat__op_add_room(c);
    case KCHAT_OP_SEARCH_ROOM:   return kchat__op_search_room(c);
    case KCHAT_OP_ADD_CHAT:      return kchat__op_add_chat(c);
    case KCHAT_OP_HISTORY:       return kchat__op_history(c);
    case KCHAT_OP__COUNT:        break;
    }
    return KCHAT_EINVAL;
}

static int apply_request(struct ctx *c, const rd_kafka_message_t *m, kchat_op op)
{
    char key[66], errmsg[256];
    const void *v;
    size_t vl;
    kchat_wire_err werr;
    bool ct_ok = true;

    c->op = op;
    c->fmt = KCHAT_FMT_JSON;
    if (kchat_header_get(m, KCHAT_HDR_CTYPE, &v, &vl) == 0)
        ct_ok = kchat_fmt_from_content_type(v, vl, &c->fmt) == KCHAT_OK;
    if (kchat_header_get(m, KCHAT_HDR_CID, &v, &vl) == 0 && vl >= 1 && vl <= 64) {
        memcpy(c->cid, v, vl);
        c->cid_len = vl;
    }
    if (kchat_header_get(m, KCHAT_HDR_SESSION, &v, &vl) == 0) {
        c->session = v;
        c->session_len = vl;
    }
    if (m->key == NULL || !kchat_valid_id(m->key, m->key_len))
        return dead_letter(c, m, m->key == NULL ? "record has no key: the asking user is unknown"
                                                : "record key is not a valid user id");
    key_copy(key, sizeof(key), m);
    c->user_id = key;
    if (!ct_ok)
        return kchat__reply_err(c, KCHAT_WIRE_BAD_REQUEST,
                                "content-type must be application/json or application/msgpack.");
    if (kchat_header_get(m, KCHAT_HDR_CID, &v, &vl) == 0 && (vl == 0 || vl > 64))
        return kchat__reply_err(c, KCHAT_WIRE_BAD_REQUEST, "kchat-cid must be 1 to 64 bytes.");
    /* A user's state lives in the shard murmur2 picks; a record placed by
     * another partitioner would read and write the wrong shard. */
    if ((uint32_t)m->partition != c->sh->id || kchat__shard_of(c->be, key) != c->sh->id)
        return kchat__reply_err(c, KCHAT_WIRE_BAD_REQUEST,
                                "The record is in partition %d but its key belongs to partition "
                                "%u: produce with the murmur2 partitioner "
                                "(librdkafka: partitioner=murmur2_random).",
                                (int)m->partition, kchat__shard_of(c->be, key));
    errmsg[0] = '\0';
    werr = kchat_request_parse(op, c->fmt, m->key, m->key_len, m->payload ? m->payload : "",
                               m->len, c->req, errmsg, sizeof(errmsg));
    if (werr != KCHAT_WIRE_OK)
        return kchat__reply_err(c, werr, "%s", errmsg[0] ? errmsg : "The request is invalid.");
    c->user_id = c->req->user_id;
    return dispatch(c);
}

static int parse_u64(const void *v, size_t len, uint64_t *out)
{
    char buf[24];
    char *end;

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, v, len);
    buf[len] = '\0';
    errno = 0;
    *out = strtoull(buf, &end, 10);
    return errno || *end ? -1 : 0;
}

/* Whether @p m was written by this data set (its kchat-dataset header);
 * untagged records count as ours only if @p untagged_ok. Logs the first
 * foreign record of each kind (@p kind 0: command, 1: directory record) of
 * the run. Any thread. */
static bool dataset_ours(kchat_backend *be, const rd_kafka_message_t *m, bool untagged_ok,
                         int kind)
{
    const void *v;
    size_t vl;
    bool tagged = kchat_header_get(m, KCHAT_HDR_DATASET, &v, &vl) == 0;

    if (tagged ? vl == strlen(be->dataset) && memcmp(v, be->dataset, vl) == 0 : untagged_ok)
        return true;
    if (!atomic_exchange(&be->foreign_logged[kind], true))
        fprintf(stderr, "kchat: ignoring records of %s on %s (first at [%" PRId32 "] @%" PRId64
                "): this data set is %s; counted in kchat_foreign_*_total\n",
                tagged ? "another data set" : "no data set (an older kchat)",
                rd_kafka_topic_name(m->rkt), m->partition, m->offset, be->dataset);
    return false;
}

static int apply_command(struct ctx *c, const rd_kafka_message_t *m)
{
    const void *v;
    size_t vl;
    uint64_t src, seq, cseq = 0, base = 0, applied = 0;
    bool streamed;
    json_t *cmd;
    const char *op, *cid, *user;
    char userbuf[66];
    int rc;

    /* Another data set's (src, seq) are not ours to dedup or apply: its
     * seqs would move our watermarks and drop our own commands. Untagged
     * ones are never ours: an older kchat's unapplied commands were
     * produced again, tagged, from the outbox at start. */
    if (!dataset_ours(c->be, m, false, 0)) {
        atomic_fetch_add(&c->be->stats.foreign_commands, 1);
        return KCHAT_OK;
    }
    if (kchat_header_get(m, KCHAT_HDR_SRC_SHARD, &v, &vl) || parse_u64(v, vl, &src) ||
        kchat_header_get(m, KCHAT_HDR_SRC_SEQ, &v, &vl) || parse_u64(v, vl, &seq) ||
        src >= (uint64_t)c->be->partitions)
        return dead_letter(c, m, "internal command without a valid source");
    /* A command with a stream seq is applied only as the next one from its
     * source: an earlier one may still be on its way again (a refused or
     * lost produce), and its source produces the whole stream again when
     * we stop moving. An older kchat's command (no stream seq) is applied
     * if its outbox seq is above the highest applied from that source. */
    streamed = kchat_header_get(m, KCHAT_HDR_CMD_SEQ, &v, &vl) == 0;
    if (streamed && (parse_u64(v, vl, &cseq) || cseq == 0))
        return dead_letter(c, m, "internal command with a bad kchat-cmd-seq");
    rc = streamed ? kchat_store_cmdseq_get(c->txn, KCHAT_CMDSEQ_APPLIED, (uint32_t)src, &applied)
                  : kchat_store_applied_get(c->txn, (uint32_t)src, &applied);
    if (rc != KCHAT_OK)
        return rc;
    if (streamed ? cseq <= applied : seq <= applied) {
        atomic_fetch_add(&c->be->stats.duplicates, 1);
        return KCHAT_OK;
    }
    /* The source holds nothing below its base: what we miss below it was
     * applied here once, by data this shard no longer has (restored from
     * an older copy). Waiting would stop the stream for good. */
    if (streamed && cseq > applied + 1 && kchat_header_get(m, KCHAT_HDR_CMD_BASE, &v, &vl) == 0 &&
        parse_u64(v, vl, &base) == 0 && base == cseq) {
        fprintf(stderr, "kchat: shard %u: commands %" PRIu64 "..%" PRIu64 " from shard %" PRIu64
                " are gone: it saw them applied, but this shard's data has applied only up to "
                "%" PRIu64 " (restored from an older copy?); their effects are lost here, "
                "carrying on from %" PRIu64 "\n", c->sh->id, applied + 1, cseq - 1, src,
                applied, cseq);
        atomic_fetch_add(&c->be->stats.command_skips, cseq - 1 - applied);
        applied = cseq - 1;
    }
    if (streamed && cseq > applied + 1) {
        if (atomic_fetch_add(&c->be->stats.command_gaps, 1) < 20)
            fprintf(stderr, "kchat: shard %u: command %" PRIu64 " from shard %" PRIu64
                    " came before %" PRIu64 "; not applied until its source sends "
                    "them again in order\n", c->sh->id, cseq, src, applied + 1);
        return KCHAT_OK;
    }
    cmd = json_loadb(m->payload ? m->payload : "", m->len, 0, NULL);
    op = json_string_value(json_object_get(cmd, "op"));
    user = json_string_value(json_object_get(cmd, "userId"));
    if (user == NULL)
        user = json_string_value(json_object_get(cmd, "writerId"));
    if (op == NULL || user == NULL || strlen(user) > 64) {
        json_decref(cmd);
        return dead_letter(c, m, "internal command does not decode");
    }
    snprintf(userbuf, sizeof(userbuf), "%s", user);
    c->user_id = userbuf;
    c->fmt = json_integer_value(json_object_get(cmd, "fmt")) == KCHAT_FMT_MSGPACK
                 ? KCHAT_FMT_MSGPACK : KCHAT_FMT_JSON;
    if ((cid = json_string_value(json_object_get(cmd, "cid"))) != NULL &&
        sodium_hex2bin((unsigned char *)c->cid, sizeof(c->cid), cid, strlen(cid), NULL,
                       &c->cid_len, NULL) != 0)
        c->cid_len = 0;
    atomic_fetch_add(&c->be->stats.commands, 1);
    if (!strcmp(op, "chat")) {
        c->op = KCHAT_OP_ADD_CHAT;
        rc = kchat__cmd_chat(c, cmd);
    } else if (!strcmp(op, "history")) {
        c->op = KCHAT_OP_HISTORY;
        rc = kchat__cmd_history(c, cmd);
    } else if (!strcmp(op, "member")) {
        rc = kchat__cmd_member(c, cmd);
    } else {
        rc = KCHAT_EDECODE;
    }
    json_decref(cmd);
    if (rc == KCHAT_EDECODE)
        rc = dead_letter(c, m, "internal command does not decode");
    if (rc == KCHAT_OK)
        rc = streamed ? kchat_store_cmdseq_set(c->txn, KCHAT_CMDSEQ_APPLIED, (uint32_t)src, cseq)
                      : kchat_store_applied_set(c->txn, (uint32_t)src, seq);
    return rc;
}

static int apply_record(struct ctx *c, const rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    kchat_op op;

    memset(c->cid, 0, sizeof(c->cid));
    c->cid_len = 0;
    c->session = NULL;
    c->session_len = 0;
    c->user_id = "";
    c->now_ms = kchat__now_ms();
    if (!strcmp(topic, KCHAT_TOPIC_INTERNAL))
        return apply_command(c, m);
    atomic_fetch_add(&c->be->stats.requests, 1);
    if (kchat_op_from_request_topic(topic, &op) != KCHAT_OK)
        return dead_letter(c, m, "record on a topic kchat does not serve");
    return apply_request(c, m, op);
}

/* Store the next offset of each (topic, partition) in the batch: one put
 * per topic, from its last record (a shard's records share a partition). */
static int store_offsets(kchat_txn *t, rd_kafka_message_t **msgs, const size_t *idx, size_t n)
{
    const rd_kafka_topic_t *done[KCHAT_OP__COUNT + 1];
    size_t n_done = 0;
    int rc = KCHAT_OK;

    for (size_t i = n; rc == KCHAT_OK && i-- > 0;) {
        const rd_kafka_message_t *m = msgs[idx[i]];
        bool seen = false;

        for (size_t k = 0; k < n_done && !seen; k++)
            seen = done[k] == m->rkt;
        if (seen)
            continue;
        if (n_done < sizeof(done) / sizeof(done[0]))
            done[n_done++] = m->rkt;
        rc = kchat_store_offset_set(t, rd_kafka_topic_name(m->rkt), m->partition,
                                    m->offset + 1);
    }
    return rc;
}

/* A failed commit is retried every RETRY_SLEEP_MS: the first failure of a
 * run is logged at once, the run then every COMMIT_FAIL_LOG_MS. A full disk
 * often shows as EIO (LMDB reports a short write so), hence the free space
 * of the data directory's file system in the message. */
static void log_commit_failure(const kchat_backend *be, struct shard *sh, size_t n, int rc)
{
    int64_t now = monotonic_us() / 1000;
    struct statvfs vfs;
    char disk[64] = "";

    sh->fail_count = sh->fail_since_ms == 0 ? 1 : sh->fail_count + 1;
    if (sh->fail_since_ms == 0)
        sh->fail_since_ms = now;
    else if (now - sh->fail_logged_ms < COMMIT_FAIL_LOG_MS)
        return;
    sh->fail_logged_ms = now;
    if (statvfs(be->cfg->data_dir, &vfs) == 0) {
        unsigned long long avail = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
        snprintf(disk, sizeof(disk), "; %llu KiB free on its disk%s", avail / 1024,
                 avail < DISK_LOW_BYTES ? ": the disk is full" : "");
    }
    fprintf(stderr, "kchat: shard %u: cannot store a batch of %zu requests: %s%s (%lu failed "
            "commits in %.1f s); this worker applies nothing more until it can (its "
            "partitions pause); retrying every %d ms\n", sh->id, n, kchat_strerror(rc), disk,
            sh->fail_count, (double)(now - sh->fail_since_ms) / 1000.0, RETRY_SLEEP_MS);
}

/* Apply the records of one shard in one transaction; retried until it
 * commits (a full map or disk blocks this worker: back-pressure). */
static void apply_shard_batch(kchat_backend *be, struct worker *w, struct shard *sh,
                              rd_kafka_message_t **msgs, const size_t *idx, size_t n)
{
    for (;;) {
        struct seqlist taken = {0};
        struct ctx c = {.be = be, .w = w, .sh = sh, .req = &w->req};
        int rc = kchat_txn_begin(sh->store, true, &c.txn);

        if (rc == KCHAT_OK)
            rc = shard_prune(be, sh, c.txn, &taken);
        for (size_t i = 0; rc == KCHAT_OK && i < n; i++)
            rc = apply_record(&c, msgs[idx[i]]);
        if (rc == KCHAT_OK)
            rc = store_offsets(c.txn, msgs, idx, n);
        if (rc == KCHAT_OK) {
            int64_t t0 = monotonic_us();
            rc = kchat_txn_commit(c.txn);
            c.txn = NULL;
            kchat_hist_observe(&be->commit_seconds, (double)(monotonic_us() - t0) / 1e6);
        }
        if (rc == KCHAT_OK) {
            free(taken.v);
            kchat_hist_observe(&be->batch_records, (double)n);
            atomic_fetch_add(&be->stats.commits, 1);
            worker_flush_out(be, w);
            if (sh->fail_since_ms != 0) {
                fprintf(stderr, "kchat: shard %u: storing again after %.1f s and %lu failed "
                        "commits\n", sh->id, (double)(monotonic_us() / 1000 -
                        sh->fail_since_ms) / 1000.0, sh->fail_count);
                sh->fail_since_ms = 0;
            }
            return;
        }
        kchat_txn_abort(c.txn);
        worker_discard_out(w);
        shard_unprune(sh, &taken);
        atomic_fetch_add(&be->stats.commit_failures, 1);
        log_commit_failure(be, sh, n, rc);
        if (atomic_load(&be->stopping) && rc != KCHAT_EMAPFULL && rc != KCHAT_ENOSPC)
            return;   /* not stored: read again from the stored offsets next start */
        sleep_ms(RETRY_SLEEP_MS);
    }
}

static void on_process(void *opaque, unsigned worker, rd_kafka_message_t **msgs, size_t n)
{
    kchat_backend *be = opaque;
    struct worker *w = &be->workers[worker];
    size_t *idx = w->idx;
    bool *done = w->done;

    memset(done, 0, n * sizeof(*done));
    for (size_t i = 0; i < n; i++) {
        int32_t p = msgs[i]->partition;
        size_t k = 0;

        if (done[i])
            continue;
        for (size_t j = i; j < n; j++)
            if (!done[j] && msgs[j]->partition == p) {
                idx[k++] = j;
                done[j] = true;
            }
        if (p < 0 || p >= be->partitions) {
            fprintf(stderr, "kchat: record from partition %d beyond %d shards ignored\n",
                    p, be->partitions);
            continue;
        }
        apply_shard_batch(be, w, &be->shards[p], msgs, idx, k);
    }
    atomic_store(&w->last_progress_ms, monotonic_us() / 1000);
}

/* Idle upkeep of one worker's shards: confirmed records out, resends. */
static void on_idle(void *opaque, unsigned worker)
{
    kchat_backend *be = opaque;

    atomic_store(&be->workers[worker].last_progress_ms, monotonic_us() / 1000);
    for (int s = (int)worker; s < be->partitions; s += (int)be->n_workers) {
        struct shard *sh = &be->shards[s];
        struct seqlist taken = {0};
        kchat_txn *t;
        bool work;
        int rc;

        if (!atomic_load(&be->stopping))
            shard_resend(be, sh);   /* at exit the outbox keeps them for the next start */
        pthread_mutex_lock(&sh->lock);
        work = sh->delivered.n > 0;
        pthread_mutex_unlock(&sh->lock);
        work |= sh->n_cmds > 0 && kchat__now_ms() - sh->last_ack_check_ms >= ACK_CHECK_MS;
        if (!work || kchat_txn_begin(sh->store, true, &t) != KCHAT_OK)
            continue;
        rc = shard_prune(be, sh, t, &taken);
        if (rc == KCHAT_OK) {
            rc = kchat_txn_commit(t);
            t = NULL;
        }
        kchat_txn_abort(t);
        if (rc == KCHAT_OK)
            free(taken.v);
        else
            shard_unprune(sh, &taken);
    }
}

/* ---- consumer callbacks ---- */

static int64_t on_start_offset(void *opaque, const char *topic, int32_t partition)
{
    kchat_backend *be = opaque;
    int64_t next = RD_KAFKA_OFFSET_BEGINNING;
    kchat_txn *t;

    if (partition < 0 || partition >= be->partitions)
        return RD_KAFKA_OFFSET_BEGINNING;
    if (kchat_txn_begin(be->shards[partition].store, false, &t) == KCHAT_OK) {
        if (kchat_store_offset_get(t, topic, partition, &next) != KCHAT_OK)
            next = RD_KAFKA_OFFSET_BEGINNING;
        kchat_txn_abort(t);
    }
    return next;
}

/* ---- the directory replica's reader ---- */

static void *directory_main(void *arg)
{
    kchat_backend *be = arg;

    while (!atomic_load(&be->stopping)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(be->dir_consumer, 100);
        json_t *e;

        if (m == NULL)
            continue;
        if (!m->err && !dataset_ours(be, m, be->dataset_legacy, 1)) {
            atomic_fetch_add(&be->stats.foreign_directory, 1);
        } else if (!m->err &&
                   (e = json_loadb(m->payload ? m->payload : "", m->len, 0, NULL))) {
            kchat__directory_apply(be, e);
            json_decref(e);
        }
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

static int directory_start(kchat_backend *be, rd_kafka_conf_t *conf, char *errstr, size_t len)
{
    rd_kafka_topic_partition_list_t *parts;
    char gid[64];

    snprintf(gid, sizeof(gid), "kchat-directory-%ld-%u", (long)getpid(), randombytes_random());
    rd_kafka_conf_set(conf, "group.id", gid, NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(conf, "enable.partition.eof", "false", NULL, 0);
    if ((be->dir_consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, len)) == NULL) {
        rd_kafka_conf_destroy(conf);
        return KCHAT_EKAFKA;
    }
    rd_kafka_poll_set_consumer(be->dir_consumer);
    parts = rd_kafka_topic_partition_list_new(be->partitions);
    for (int p = 0; p < be->partitions; p++)
        rd_kafka_topic_partition_list_add(parts, KCHAT_TOPIC_DIRECTORY, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(be->dir_consumer, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (pthread_create(&be->dir_thread, NULL, directory_main, be) != 0) {
        snprintf(errstr, len, "cannot start the directory thread");
        return KCHAT_ENOMEM;
    }
    be->dir_running = true;
    return KCHAT_OK;
}

/* ---- start-up ---- */

static rd_kafka_conf_t *kafka_conf(const kchat_backend *be, char *errstr, size_t len)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    if (rd_kafka_conf_set(conf, "bootstrap.servers", be->bootstraps, errstr, len) ||
        rd_kafka_conf_set(conf, "client.id", "kchat-serve", errstr, len))
        goto err_destroy;
    for (int i = 0; i < be->cfg->n_x; i++)
        if (kchat_kafka_conf_kv(conf, be->cfg->x[i], errstr, len) != KCHAT_OK)
            goto err_destroy;
    return conf;
err_destroy:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* A new producer in be->producer (the poller thread, or start-up). */
static int producer_new(kchat_backend *be, char *errstr, size_t len)
{
    rd_kafka_conf_t *conf = kafka_conf(be, errstr, len);
    char linger[16];

    if (conf == NULL)
        return KCHAT_ECONFIG;
    snprintf(linger, sizeof(linger), "%d", be->cfg->linger_ms);
    if (rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, len) ||
        rd_kafka_conf_set(conf, "linger.ms", linger, errstr, len) ||
        rd_kafka_conf_set(conf, "partitioner", "murmur2_random", errstr, len) ||
        rd_kafka_conf_set(conf, "message.timeout.ms", "0", errstr, len) ||
        rd_kafka_conf_set(conf, "queue.buffering.max.messages", "1000000", errstr, len)) {
        rd_kafka_conf_destroy(conf);
        return KCHAT_ECONFIG;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, be);
    if ((be->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, len)) == NULL) {
        rd_kafka_conf_destroy(conf);
        return KCHAT_EKAFKA;
    }
    return KCHAT_OK;
}

static int producer_start(kchat_backend *be, char *errstr, size_t len)
{
    int rc;

    if ((rc = producer_new(be, errstr, len)) != KCHAT_OK)
        return rc;
    if (pthread_create(&be->producer_poller, NULL, producer_poll_main, be) != 0) {
        snprintf(errstr, len, "cannot start the producer thread");
        return KCHAT_ENOMEM;
    }
    be->poller_running = true;
    return KCHAT_OK;
}

/* The data directory remembers its shard count; refuse to mix. */
static int data_dir_check(kchat_backend *be, char *errstr, size_t len)
{
    char path[4096], buf[32];
    kchat_store_opts o = {.map_size = 64u << 20};
    kchat_txn *t;
    int rc;

    snprintf(path, sizeof(path), "%s/directory", be->cfg->data_dir);
    if ((rc = kchat_store_open(path, &o, &be->directory)) != KCHAT_OK) {
        snprintf(errstr, len, "cannot open %s: %s", path, kchat_strerror(rc));
        return rc;
    }
    if ((rc = kchat_txn_begin(be->directory, true, &t)) != KCHAT_OK)
        return rc;
    rc = kchat_store_meta_get(t, "partitions", buf, sizeof(buf));
    if (rc == KCHAT_OK && atoi(buf) != be->partitions) {
        kchat_txn_abort(t);
        snprintf(errstr, len, "data directory %s holds %s shards but the topics have %d "
                 "partitions; use a data directory made for %d partitions",
                 be->cfg->data_dir, buf, be->partitions, be->partitions);
        return KCHAT_ECONFIG;
    }
    snprintf(buf, sizeof(buf), "%d", be->partitions);
    if ((rc = kchat_store_meta_set(t, "partitions", buf)) != KCHAT_OK) {
        kchat_txn_abort(t);
        return rc;
    }
    return kchat_txn_commit(t);
}

/* Environment i of the data directory: the shards, then the replica. */
static kchat_store *data_env(kchat_backend *be, int i, char *name, size_t len)
{
    if (i < be->partitions) {
        snprintf(name, len, "shard-%04d", i);
        return be->shards[i].store;
    }
    snprintf(name, len, "directory");
    return be->directory;
}

/* The data set id (docs/design.md, "Data sets"): 16 random bytes in hex,
 * made when a data directory is first used and kept in the meta of every
 * shard and of the directory replica. A data directory an older kchat made
 * gets one at its first start here and is marked legacy. Environments of
 * two data sets in one data directory are refused. */
static int dataset_open(kchat_backend *be, char *errstr, size_t len)
{
    char id[sizeof(be->dataset)], found[sizeof(be->dataset)] = "", where[32] = "";
    char name[32], buf[256];
    bool legacy = false, used = false;
    kchat_txn *t;
    int rc;

    for (int i = 0; i <= be->partitions; i++) {
        kchat_store *st = data_env(be, i, name, sizeof(name));

        if ((rc = kchat_txn_begin(st, false, &t)) != KCHAT_OK)
            return rc;
        rc = kchat_store_meta_get(t, "dataset", id, sizeof(id));
        legacy |= kchat_store_meta_get(t, "dataset_legacy", buf, sizeof(buf)) == KCHAT_OK;
        used |= kchat_store_meta_get(t, "cluster_id", buf, sizeof(buf)) == KCHAT_OK;
        kchat_txn_abort(t);
        if (rc == KCHAT_ENOTFOUND)
            continue;
        if (rc != KCHAT_OK) {
            snprintf(errstr, len, "%s/%s: data set id: %s", be->cfg->data_dir, name,
                     kchat_strerror(rc));
            return rc;
        }
        if (found[0] == '\0') {
            memcpy(found, id, sizeof(found));
            memcpy(where, name, sizeof(where));
        } else if (strcmp(found, id) != 0) {
            snprintf(errstr, len, "data directory %s mixes two data sets: %s belongs to %s, "
                     "%s to %s", be->cfg->data_dir, where, found, name, id);
            return KCHAT_ECONFIG;
        }
    }
    if (found[0] == '\0') {
        unsigned char raw[16];

        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(found, sizeof(found), raw, sizeof(raw));
        legacy = used;   /* shards that ran before, under an older kchat */
        fprintf(stderr, "kchat: data set %s%s\n", found,
                legacy ? " given to a data directory made before data set ids" : " (new)");
    }
    /* Shards first, the replica last. */
    for (int i = 0; i <= be->partitions; i++) {
        kchat_store *st = data_env(be, i, name, sizeof(name));

        if ((rc = kchat_txn_begin(st, true, &t)) != KCHAT_OK)
            return rc;
        rc = kchat_store_meta_get(t, "dataset", id, sizeof(id));
        if (rc == KCHAT_ENOTFOUND) {
            rc = kchat_store_meta_set(t, "dataset", found);
            if (rc == KCHAT_OK && legacy)
                rc = kchat_store_meta_set(t, "dataset_legacy", "1");
            if (rc == KCHAT_OK) {
                rc = kchat_txn_commit(t);
                t = NULL;
            }
        }
        kchat_txn_abort(t);
        if (rc != KCHAT_OK) {
            snprintf(errstr, len, "%s/%s: cannot store the data set id: %s",
                     be->cfg->data_dir, name, kchat_strerror(rc));
            return rc;
        }
    }
    memcpy(be->dataset, found, sizeof(be->dataset));
    be->dataset_legacy = legacy;
    return KCHAT_OK;
}

/* Offsets belong to one cluster: forget them when the cluster changed (the
 * embedded broker is a new, empty cluster at every start). */
static int shard_check_cluster(kchat_backend *be, struct shard *sh, const char *cluster_id)
{
    char old[256];
    kchat_txn *t;
    int rc;

    if ((rc = kchat_txn_begin(sh->store, true, &t)) != KCHAT_OK)
        return rc;
    rc = kchat_store_meta_get(t, "cluster_id", old, sizeof(old));
    if (be->embedded != NULL || rc != KCHAT_OK || strcmp(old, cluster_id) != 0) {
        if ((rc = kchat_store_offsets_clear(t)) == KCHAT_OK)
            rc = kchat_store_meta_set(t, "cluster_id", cluster_id);
        if (rc != KCHAT_OK) {
            kchat_txn_abort(t);
            return rc;
        }
        return kchat_txn_commit(t);
    }
    kchat_txn_abort(t);
    return KCHAT_OK;
}

struct replay_arg {
    kchat_backend *be;
    struct shard *sh;
    struct seqlist applied;    /* commands their targets already applied */
    size_t produced;
};

static int replay_one(void *arg, uint64_t seq, const kchat_outbox_rec *r)
{
    struct replay_arg *ra = arg;
    uint32_t target = r->partition >= 0 ? (uint32_t)r->partition : 0;

    if (r->kind == OUT_COMMAND && target < (uint32_t)ra->be->partitions) {
        uint64_t stream = 0, legacy = 0, cseq = cmd_cseq(r);
        int rc;

        peer_applied(ra->be, target, ra->sh->id, &stream, &legacy);
        if (cseq > 0 ? stream >= cseq : legacy >= seq)
            return seqlist_push(&ra->applied, seq);
        if ((rc = pending_cmd_add(ra->be, ra->sh, seq, target, cseq)) != KCHAT_OK)
            return rc;
    }
    produce(ra->be, ra->sh->id, seq, r);
    ra->produced++;
    return 0;
}

/* Start-up, before anything is produced: a target that applied more of
 * @p sh's commands than @p sh remembers numbering (@p sh restored from an
 * older copy) would drop the next ones as repeats; number on from there. */
static int streams_catch_up(kchat_backend *be, struct shard *sh)
{
    kchat_txn *t;
    int rc;

    if ((rc = kchat_txn_begin(sh->store, true, &t)) != KCHAT_OK)
        return rc;
    for (int p = 0; rc == KCHAT_OK && p < be->partitions; p++) {
        uint64_t sent = 0, applied = 0, legacy;

        if ((uint32_t)p == sh->id)
            continue;
        if ((rc = peer_applied(be, (uint32_t)p, sh->id, &applied, &legacy)) == KCHAT_OK)
            rc = kchat_store_cmdseq_get(t, KCHAT_CMDSEQ_SENT, (uint32_t)p, &sent);
        if (rc != KCHAT_OK || applied <= sent)
            continue;
        fprintf(stderr, "kchat: shard %u: shard %d applied our commands up to %" PRIu64
                " but we numbered only %" PRIu64 " (this shard restored from an older "
                "copy?); numbering on from %" PRIu64 "\n", sh->id, p, applied, sent,
                applied + 1);
        rc = kchat_store_cmdseq_set(t, KCHAT_CMDSEQ_SENT, (uint32_t)p, applied);
    }
    if (rc != KCHAT_OK) {
        kchat_txn_abort(t);
        return rc;
    }
    return kchat_txn_commit(t);
}

/* Produce again everything the last run committed but may not have sent. */
static int shard_replay(kchat_backend *be, struct shard *sh)
{
    struct replay_arg ra = {.be = be, .sh = sh};
    kchat_txn *t;
    int rc;

    if ((rc = kchat_txn_begin(sh->store, false, &t)) != KCHAT_OK)
        return rc;
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

static int shards_open(kchat_backend *be, char *errstr, size_t len)
{
    kchat_store_opts o = {.map_size = (size_t)be->cfg->map_size_mb << 20};
    char path[4096];
    int rc;

    be->shards = calloc((size_t)be->partitions, sizeof(*be->shards));
    if (be->shards == NULL)
        return KCHAT_ENOMEM;
    for (int p = 0; p < be->partitions; p++) {
        struct shard *sh = &be->shards[p];
        sh->id = (uint32_t)p;
        pthread_mutex_init(&sh->lock, NULL);
        snprintf(path, sizeof(path), "%s/shard-%04d", be->cfg->data_dir, p);
        if ((rc = kchat_store_open(path, &o, &sh->store)) != KCHAT_OK) {
            snprintf(errstr, len, "cannot open shard %s: %s", path, kchat_strerror(rc));
            return rc;
        }
    }
    return KCHAT_OK;
}

/* The request consumer; @p mock: the cluster is librdkafka's mock cluster
 * (for the default fetch wait, kchat_config_fetch_wait_ms()). */
static int consumer_start(kchat_backend *be, bool mock, char *errstr, size_t len)
{
    const char *topics[KCHAT_OP__COUNT + 1];
    rd_kafka_conf_t *conf = kafka_conf(be, errstr, len);
    int wait_ms = kchat_config_fetch_wait_ms(be->cfg, mock);
    char wait[16];
    kchat_consumer_conf cc = {
        .topics = topics, .n_topics = KCHAT_OP__COUNT + 1, .n_workers = be->n_workers,
        .ring_capacity = (size_t)be->cfg->ring_capacity, .max_batch = (size_t)be->cfg->max_batch,
        .tick_ms = 20, .start_offset = on_start_offset, .process = on_process,
        .idle = on_idle, .opaque = be,
        .keep_fetch_wait = true,   /* set below, or by -X: either way chosen */
    };
    int rc;

    if (conf == NULL)
        return KCHAT_ECONFIG;
    for (int i = 0; i < KCHAT_OP__COUNT; i++)
        topics[i] = kchat_op_request_topic((kchat_op)i);
    topics[KCHAT_OP__COUNT] = KCHAT_TOPIC_INTERNAL;
    if (rd_kafka_conf_set(conf, "group.id", be->cfg->group_id, errstr, len) ||
        rd_kafka_conf_set(conf, "session.timeout.ms", "6000", errstr, len) ||
        rd_kafka_conf_set(conf, "heartbeat.interval.ms", "1000", errstr, len)) {
        rd_kafka_conf_destroy(conf);
        return KCHAT_ECONFIG;
    }
    snprintf(wait, sizeof(wait), "%d", wait_ms);
    if (wait_ms >= 0 && rd_kafka_conf_set(conf, "fetch.wait.max.ms", wait, errstr, len)) {
        rd_kafka_conf_destroy(conf);
        return KCHAT_ECONFIG;
    }
    rc = kchat_consumer_start(&cc, conf, &be->consumer, errstr, len);
    if (rc != KCHAT_OK)
        rd_kafka_conf_destroy(conf);
    return rc;
}

int kchat_backend_start(const kchat_config *cfg, kchat_backend **out,
                        char *errstr, size_t errstr_size)
{
    kchat_backend *be;
    char cluster_id[256];
    char *cid;
    rd_kafka_conf_t *dconf;
    int rc;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    pthread_rwlockattr_t rwa;

    if (sodium_init() < 0) {
        snprintf(errstr, errstr_size, "libsodium failed to initialise");
        return KCHAT_ECRYPTO;
    }
    if ((be = calloc(1, sizeof(*be))) == NULL)
        return KCHAT_ENOMEM;
    /* Writer first: workers produce all the time, and replacing a failed
     * producer must not wait behind them. */
    pthread_rwlockattr_init(&rwa);
    pthread_rwlockattr_setkind_np(&rwa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&be->producer_lock, &rwa);
    pthread_rwlockattr_destroy(&rwa);
    be->cfg = cfg;
    be->commit_seconds.bounds = commit_bounds;
    be->commit_seconds.n_bounds = sizeof(commit_bounds) / sizeof(commit_bounds[0]);
    be->batch_records.bounds = batch_bounds;
    be->batch_records.n_bounds = sizeof(batch_bounds) / sizeof(batch_bounds[0]);
    be->events_fmt = strcmp(cfg->events_format, "msgpack") ? KCHAT_FMT_JSON : KCHAT_FMT_MSGPACK;
    be->n_workers = cfg->workers > 0 ? (unsigned)cfg->workers : (unsigned)(ncpu > 0 ? ncpu : 1);
    if (crypto_pwhash_str(be->dummy_hash, "not a password", 14, (unsigned long long)cfg->pwhash_ops,
                          (size_t)cfg->pwhash_mem) != 0) {
        snprintf(errstr, errstr_size, "cannot hash with pwhash-ops %ld, pwhash-mem %ld",
                 cfg->pwhash_ops, cfg->pwhash_mem);
        rc = KCHAT_ECONFIG;
        goto err_stop;
    }
    if (cfg->brokers[0] == '\0') {
        if ((rc = kchat_embedded_start(cfg->embedded_brokers, cfg->partitions, &be->embedded,
                                       errstr, errstr_size)) != KCHAT_OK)
            goto err_stop;
        be->bootstraps = strdup(kchat_embedded_bootstraps(be->embedded));
    } else {
        be->bootstraps = strdup(cfg->brokers);
    }
    if (be->bootstraps == NULL) {
        rc = KCHAT_ENOMEM;
        goto err_stop;
    }
    if ((rc = producer_start(be, errstr, errstr_size)) != KCHAT_OK)
        goto err_stop;
    pthread_rwlock_rdlock(&be->producer_lock);   /* the poller may replace it */
    rc = kchat_topics_ensure(be->producer, cfg->partitions, cfg->replication,
                             cfg->login_retention_ms, &be->partitions, errstr, errstr_size);
    pthread_rwlock_unlock(&be->producer_lock);
    if (rc != KCHAT_OK)
        goto err_stop;
    if (be->partitions > 1 << 14) {
        snprintf(errstr, errstr_size, "at most %d partitions are supported", 1 << 14);
        rc = KCHAT_ECONFIG;
        goto err_stop;
    }
    if (be->partitions != cfg->partitions)
        fprintf(stderr, "kchat: the topics exist with %d partitions (not %d): using %d shards\n",
                be->partitions, cfg->partitions, be->partitions);
    if ((rc = data_dir_check(be, errstr, errstr_size)) != KCHAT_OK ||
        (rc = shards_open(be, errstr, errstr_size)) != KCHAT_OK ||
        (rc = dataset_open(be, errstr, errstr_size)) != KCHAT_OK)
        goto err_stop;
    pthread_rwlock_rdlock(&be->producer_lock);
    cluster_id[0] = '\0';
    if ((cid = rd_kafka_clusterid(be->producer, 10000)) != NULL) {
        snprintf(cluster_id, sizeof(cluster_id), "%s", cid);
        rd_kafka_mem_free(be->producer, cid);
    }
    pthread_rwlock_unlock(&be->producer_lock);
    if (cluster_id[0] == '\0') {
        snprintf(errstr, errstr_size, "cannot read the cluster id of %s", be->bootstraps);
        rc = KCHAT_EKAFKA;
        goto err_stop;
    }
    if ((be->workers = calloc(be->n_workers, sizeof(*be->workers))) == NULL) {
        rc = KCHAT_ENOMEM;
        goto err_stop;
    }
    for (unsigned i = 0; i < be->n_workers; i++) {
        struct worker *w = &be->workers[i];
        w->id = i;
        atomic_store(&w->last_progress_ms, monotonic_us() / 1000);
        w->idx = malloc((size_t)cfg->max_batch * sizeof(*w->idx));
        w->done = malloc((size_t)cfg->max_batch * sizeof(*w->done));
        if (w->idx == NULL || w->done == NULL) {
            rc = KCHAT_ENOMEM;
            goto err_stop;
        }
    }
    for (int p = 0; p < be->partitions; p++)
        if ((rc = shard_check_cluster(be, &be->shards[p], cluster_id)) != KCHAT_OK) {
            snprintf(errstr, errstr_size, "shard %d: %s", p, kchat_strerror(rc));
            goto err_stop;
        }
    for (int p = 0; p < be->partitions; p++)
        if ((rc = streams_catch_up(be, &be->shards[p])) != KCHAT_OK ||
            (rc = shard_replay(be, &be->shards[p])) != KCHAT_OK) {
            snprintf(errstr, errstr_size, "shard %d: outbox replay: %s", p, kchat_strerror(rc));
            goto err_stop;
        }
    if ((dconf = kafka_conf(be, errstr, errstr_size)) == NULL) {
        rc = KCHAT_ECONFIG;
        goto err_stop;
    }
    if ((rc = directory_start(be, dconf, errstr, errstr_size)) != KCHAT_OK ||
        (rc = consumer_start(be, be->embedded != NULL ||
                             kchat_kafka_is_mock_cluster(cluster_id),
                             errstr, errstr_size)) != KCHAT_OK)
        goto err_stop;
    /* Ready means assigned: until then nothing is consumed. */
    for (int i = 0; i < 600 && !kchat_consumer_ready(be->consumer); i++)
        sleep_ms(50);
    if (!kchat_consumer_ready(be->consumer)) {
        snprintf(errstr, errstr_size, "no partitions were assigned within 30 s (group %s)",
                 cfg->group_id);
        rc = KCHAT_EKAFKA;
        goto err_stop;
    }
    if (!cfg->session_check)
        fprintf(stderr, "kchat: WARNING: session check is OFF: any client can act as any "
                        "user. Use this only for the original front end.\n");
    *out = be;
    return KCHAT_OK;

err_stop:
    kchat_backend_stop(be, NULL);
    return rc;
}

const char *kchat_backend_bootstraps(const kchat_backend *be)
{
    return be->bootstraps;
}

void kchat_backend_get_stats(kchat_backend *be, kchat_backend_stats *o)
{
    o->requests = atomic_load(&be->stats.requests);
    o->errors = atomic_load(&be->stats.errors);
    o->bad_requests = atomic_load(&be->stats.bad_requests);
    o->too_large = atomic_load(&be->stats.too_large);
    o->dead_letters = atomic_load(&be->stats.dead_letters);
    o->commands = atomic_load(&be->stats.commands);
    o->duplicates = atomic_load(&be->stats.duplicates);
    o->commits = atomic_load(&be->stats.commits);
    o->commit_failures = atomic_load(&be->stats.commit_failures);
    o->produced = atomic_load(&be->stats.produced);
    o->delivered = atomic_load(&be->stats.delivered);
}

void kchat_backend_metrics(kchat_backend *be, FILE *out)
{
    kchat_backend_stats st;
    kchat_consumer_stats cs = {0};
    int64_t now = monotonic_us() / 1000, stalled = 0;

    kchat_backend_get_stats(be, &st);
    if (be->consumer)
        kchat_consumer_get_stats(be->consumer, &cs);
    kchat_metric_write(out, "kchat_requests_total", "counter",
                       "Request records applied, any outcome.", (double)st.requests);
    kchat_metric_write(out, "kchat_request_errors_total", "counter",
                       "Requests answered with an error code.", (double)st.errors);
    kchat_metric_write(out, "kchat_bad_requests_total", "counter",
                       "Requests answered BAD_REQUEST.", (double)st.bad_requests);
    kchat_metric_write(out, "kchat_too_large_total", "counter",
                       "Requests answered TOO_LARGE.", (double)st.too_large);
    kchat_metric_write(out, "kchat_dead_letters_total", "counter",
                       "Records sent to kchat-dlq.", (double)st.dead_letters);
    kchat_metric_write(out, "kchat_commands_total", "counter",
                       "Internal commands applied.", (double)st.commands);
    kchat_metric_write(out, "kchat_duplicate_commands_total", "counter",
                       "Internal commands dropped as already applied.", (double)st.duplicates);
    kchat_metric_write(out, "kchat_command_gaps_total", "counter",
                       "Internal commands that came before an earlier one of their stream, "
                       "left for the source to send again.",
                       (double)atomic_load(&be->stats.command_gaps));
    kchat_metric_write(out, "kchat_commands_skipped_total", "counter",
                       "Internal commands their source no longer holds, skipped by a shard "
                       "whose data is older than its source saw (a restore).",
                       (double)atomic_load(&be->stats.command_skips));
    kchat_metric_write(out, "kchat_command_resends_total", "counter",
                       "Internal commands produced again because their target had not "
                       "applied them.", (double)atomic_load(&be->stats.command_resends));
    kchat_metric_write(out, "kchat_foreign_commands_total", "counter",
                       "Internal commands of another data set (or untagged), ignored.",
                       (double)atomic_load(&be->stats.foreign_commands));
    kchat_metric_write(out, "kchat_foreign_directory_records_total", "counter",
                       "kchat-directory records of another data set, ignored.",
                       (double)atomic_load(&be->stats.foreign_directory));
    kchat_metric_write(out, "kchat_commits_total", "counter",
                       "Shard write transactions committed.", (double)st.commits);
    kchat_metric_write(out, "kchat_commit_failures_total", "counter",
                       "Shard commits that failed and were retried.", (double)st.commit_failures);
    kchat_metric_write(out, "kchat_outbox_produced_total", "counter",
                       "Outbox records handed to the producer.", (double)st.produced);
    kchat_metric_write(out, "kchat_outbox_delivered_total", "counter",
                       "Outbox records confirmed by Kafka.", (double)st.delivered);
    kchat_metric_write(out, "kchat_login_failures_total", "counter",
                       "Logins answered BAD_CREDENTIALS after a password check (unknown "
                       "user or wrong password).", (double)atomic_load(&be->stats.login_failures));
    kchat_metric_write(out, "kchat_logins_throttled_total", "counter",
                       "Logins refused unchecked because the user id was locked after "
                       "too many failures.", (double)atomic_load(&be->stats.logins_throttled));
    kchat_metric_write(out, "kchat_consumed_total", "counter",
                       "Records read from the request topics.", (double)cs.consumed);
    kchat_metric_write(out, "kchat_partition_pauses_total", "counter",
                       "Times a partition was paused because its ring was full.",
                       (double)cs.paused_events);
    kchat_metric_write(out, "kchat_partitions_paused", "gauge",
                       "Partitions paused right now.", (double)cs.paused_now);
    kchat_metric_write(out, "kchat_ring_fill_max", "gauge",
                       "Highest ring fill seen.", (double)cs.ring_fill_max);
    pthread_rwlock_rdlock(&be->producer_lock);
    kchat_metric_write(out, "kchat_producer_queue", "gauge",
                       "Records waiting in the producer.",
                       be->producer ? (double)rd_kafka_outq_len(be->producer) : 0);
    pthread_rwlock_unlock(&be->producer_lock);
    kchat_metric_write(out, "kchat_producer_restarts_total", "counter",
                       "Producers replaced after a fatal error.",
                       (double)atomic_load(&be->stats.producer_restarts));
    for (unsigned w = 0; be->workers && w < be->n_workers; w++) {
        int64_t idle = now - atomic_load(&be->workers[w].last_progress_ms);
        if (idle > stalled)
            stalled = idle;
    }
    kchat_metric_write(out, "kchat_worker_stall_seconds", "gauge",
                       "Longest time any worker went without finishing a batch or a tick; "
                       "above a few seconds a worker is stuck.", (double)stalled / 1000);
    kchat_hist_write(out, "kchat_commit_seconds", "Latency of one shard commit (fsync).", NULL,
                     &be->commit_seconds);
    kchat_hist_write(out, "kchat_batch_records", "Records applied per shard transaction.", NULL,
                     &be->batch_records);
}

void kchat_backend_stop(kchat_backend *be, kchat_backend_stats *final)
{
    if (be == NULL)
        return;
    /* 1. stop reading; the workers apply and commit what is in the rings */
    if (be->consumer)
        kchat_consumer_stop(be->consumer);
    atomic_store(&be->stopping, true);
    if (be->dir_running)
        pthread_join(be->dir_thread, NULL);
    if (be->dir_consumer) {
        rd_kafka_consumer_close(be->dir_consumer);
        rd_kafka_destroy(be->dir_consumer);
    }
    /* 2. send what was committed; what does not make it is re-sent at start
     *    (the poller stops first: it may be replacing the producer) */
    if (be->poller_running)
        pthread_join(be->producer_poller, NULL);
    if (be->producer) {
        if (rd_kafka_flush(be->producer, FLUSH_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "kchat: %d records not confirmed at exit; they stay in the outbox "
                            "and are re-sent at the next start\n",
                    rd_kafka_outq_len(be->producer));
            rd_kafka_purge(be->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            rd_kafka_poll(be->producer, 100);
        }
    }
    /* 3. forget what Kafka confirmed (the workers are gone: this thread owns the shards) */
    if (be->consumer)
        for (unsigned w = 0; w < be->n_workers; w++)
            on_idle(be, w);
    if (final != NULL)
        kchat_backend_get_stats(be, final);
    if (be->producer)
        rd_kafka_destroy(be->producer);
    for (int p = 0; be->shards && p < be->partitions; p++) {
        struct shard *sh = &be->shards[p];
        kchat_store_close(sh->store);
        pthread_mutex_destroy(&sh->lock);
        free(sh->cmds);
        free(sh->links);
        free(sh->delivered.v);
        free(sh->resend.v);
    }
    free(be->shards);
    for (unsigned w = 0; be->workers && w < be->n_workers; w++) {
        worker_discard_out(&be->workers[w]);
        free(be->workers[w].out);
        free(be->workers[w].idx);
        free(be->workers[w].done);
    }
    free(be->workers);
    kchat_store_close(be->directory);
    kchat_embedded_stop(be->embedded);
    free(be->bootstraps);
    pthread_rwlock_destroy(&be->producer_lock);
    free(be);
}
