/*
 * The workers' batch loop: group commit per shard.
 *
 * One batch from the pipeline holds records of this worker's shards only.
 * For each shard touched: one LMDB write transaction applies every record,
 * stores the next input offset of each (topic, partition), appends every
 * answer, event and command to the shard's outbox and deletes the outbox
 * records Kafka has confirmed since; one fsync'd commit; then the new outbox
 * records are produced (producer.c). A crash before the commit loses nothing
 * (the input is read again from the stored offsets); a crash after it loses
 * nothing either (the outbox is produced again at start, and receivers drop
 * repeats).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sodium.h>

#include "actors.h"
#include "ops.h"
#include "presence.h"
#include "changelog.h"
#include "streams.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

#define RETRY_SLEEP_MS 100       /* pause before a failed commit is retried */
#define COMMIT_FAIL_LOG_MS 10000 /* a run of failed commits is logged this often */
#define DISK_LOW_BYTES (1u << 20) /* less free than this: call the disk full */

/* ---- applying one record ---- */

static void key_copy(char *dst, size_t size, const rd_kafka_message_t *m)
{
    size_t n = m->key_len < size - 1 ? m->key_len : size - 1;
    if (m->key)
        memcpy(dst, m->key, n);
    else
        n = 0;
    dst[n] = '\0';
}

int kchat__dead_letter(struct ctx *c, const rd_kafka_message_t *m, const char *why)
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

int kchat__op_dispatch(struct ctx *c)
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
    case KCHAT_OP_ROOM_READ:     return kchat__op_room_read(c);
    case KCHAT_OP_ROOM_INVITE:   return kchat__op_room_invite(c);
    case KCHAT_OP_ROOM_LEAVE:    return kchat__op_room_leave(c);
    case KCHAT_OP__COUNT:        break;
    }
    return KCHAT_EINVAL;
}

/* A request a gateway sealed (include/kchat/auth.h): its value opened, its
 * kchat-session opened into c->sealed_sid, then parsed and applied as any;
 * the answer is sealed in turn. A sealed request that does not open is
 * answered in the clear, with nothing of it repeated.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int apply_sealed(struct ctx *c, const rd_kafka_message_t *m, kchat_op op)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    unsigned char *plain = NULL;
    size_t plen = 0, vl;
    const void *v;
    char errmsg[256];
    kchat_wire_err werr;
    int rc;

    if (c->be->auth == NULL)
        return kchat__reply_err(c, KCHAT_WIRE_BAD_REQUEST, "This backend has no deployment "
                                "secret (--secret-file): it cannot open a sealed request.");
    rc = kchat_auth_open(c->be->auth, KCHAT_SEAL_REQUEST, topic, m->key, m->key_len, c->cid,
                         c->cid_len, m->payload ? m->payload : "", m->len, &plain, &plen);
    if (rc == KCHAT_ENOMEM)
        return rc;
    if (rc != KCHAT_OK)
        return kchat__reply_err(c, KCHAT_WIRE_UNAUTHENTICATED, "The sealed request does not "
                                "open with this deployment's secret.");
    c->session = NULL;
    c->session_len = 0;
    if (kchat_header_get(m, KCHAT_HDR_SESSION, &v, &vl) == 0 && vl > 0) {
        if (kchat_auth_open_session(c->be->auth, topic, m->key, m->key_len, m->payload, m->len,
                                    v, vl, c->now_ms, c->sealed_sid) != KCHAT_OK) {
            sodium_memzero(plain, plen);
            free(plain);
            return kchat__reply_err(c, KCHAT_WIRE_UNAUTHENTICATED, "The sealed session of "
                                    "this request does not open, or is too old.");
        }
        c->session = c->sealed_sid;
        c->session_len = strlen(c->sealed_sid);
    }
    c->sealed = true;
    errmsg[0] = '\0';
    werr = kchat_request_parse(op, c->fmt, m->key, m->key_len, (const char *)plain, plen, c->req,
                               errmsg, sizeof(errmsg));
    sodium_memzero(plain, plen);
    free(plain);
    if (werr != KCHAT_WIRE_OK)
        return kchat__reply_err(c, werr, "%s", errmsg[0] ? errmsg : "The request is invalid.");
    c->user_id = c->req->user_id;
    return kchat__op_dispatch(c);
}

/* A request record of operation @p op: its headers, its key (the acting
 * user, in this shard), its body; then the operation answers it.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
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
    if (kchat_header_get(m, KCHAT_HDR_DEVICE, &v, &vl) == 0) {
        c->device = v;
        c->device_len = vl;
    }
    if (m->key == NULL || !kchat_valid_id(m->key, m->key_len))
        return kchat__dead_letter(c, m, m->key == NULL
                                            ? "record has no key: the asking user is unknown"
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
    if (kchat_header_get(m, KCHAT_HDR_SEALED, &v, &vl) == 0)
        return apply_sealed(c, m, op);
    errmsg[0] = '\0';
    werr = kchat_request_parse(op, c->fmt, m->key, m->key_len, m->payload ? m->payload : "",
                               m->len, c->req, errmsg, sizeof(errmsg));
    if (werr != KCHAT_WIRE_OK)
        return kchat__reply_err(c, werr, "%s", errmsg[0] ? errmsg : "The request is invalid.");
    c->user_id = c->req->user_id;
    return kchat__op_dispatch(c);
}

/* Clear what the previous record left in @p c.
 * @locality worker that owns c->sh */
static void ctx_reset(struct ctx *c)
{
    memset(c->cid, 0, sizeof(c->cid));
    c->cid_len = 0;
    c->session = NULL;
    c->session_len = 0;
    c->sealed = false;
    c->sealed_sid[0] = '\0';
    c->device = NULL;
    c->device_len = 0;
    c->user_id = "";
    c->now_ms = kchat__now_ms();
}

/* One record of the batch: an internal command (commands.c) or a request.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int apply_record(struct ctx *c, const rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    kchat_op op;

    ctx_reset(c);
    if (!strcmp(topic, KCHAT_TOPIC_INTERNAL)) {
        /* Only a node of this deployment can command a shard. */
        if (c->be->auth != NULL && !kchat_auth_verify(c->be->auth, m, "commands"))
            return KCHAT_OK;
        return kchat__command_apply(c, m);
    }
    if (!strcmp(topic, KCHAT_TOPIC_PRESENCE)) {
        /* Only a gateway of this deployment speaks for open streams. */
        if (c->be->auth != NULL && !kchat_auth_verify(c->be->auth, m, "presence"))
            return KCHAT_OK;
        return kchat__presence_apply(c, m);
    }
    atomic_fetch_add(&c->be->stats.requests, 1);
    if (kchat_op_from_request_topic(topic, &op) != KCHAT_OK)
        return kchat__dead_letter(c, m, "record on a topic kchat does not serve");
    return apply_request(c, m, op);
}

/* ---- one shard's transaction ---- */

/* Store the next offset of each (topic, partition) in the batch: one put
 * per topic, from its last record (a shard's records share a partition).
 * @locality worker that owns the shard of @p t */
KCHAT_MUST_CHECK
static int store_offsets(kchat_txn *t, rd_kafka_message_t **msgs, const size_t *idx, size_t n)
{
    const rd_kafka_topic_t *done[KCHAT_OP__COUNT + 2];
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
 * of the data directory's file system in the message.
 * @locality worker that owns @p sh */
static void log_commit_failure(const kchat_backend *be, struct shard *sh, size_t n, int rc)
{
    int64_t now = kchat__monotonic_us() / 1000;
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

/* The shard stores again after a run of failed commits: say so, end the run.
 * @locality worker that owns @p sh */
static void log_commit_recovered(struct shard *sh)
{
    if (sh->fail_since_ms == 0)
        return;
    fprintf(stderr, "kchat: shard %u: storing again after %.1f s and %lu failed commits\n",
            sh->id, (double)(kchat__monotonic_us() / 1000 - sh->fail_since_ms) / 1000.0,
            sh->fail_count);
    sh->fail_since_ms = 0;
}

/* The read stage of each of a batch's records: from its timestamp (the
 * producer's clock) to now (this machine's), 0 when the clocks disagree.
 * @locality any worker */
static void observe_read(kchat_backend *be, rd_kafka_message_t **msgs, const size_t *idx,
                         size_t n)
{
    int64_t now = kchat__now_ms();

    for (size_t i = 0; i < n; i++) {
        rd_kafka_timestamp_type_t type;
        int64_t ts = rd_kafka_message_timestamp(msgs[idx[i]], &type);

        if (type != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts > 0)
            kchat_hist_observe(&be->stage[KCHAT__STAGE_READ],
                               now > ts ? (double)(now - ts) / 1e3 : 0);
    }
}

/* Take the ack @p a a shard of this process handed in memory, as one read
 * from Kafka (kchat__acks_take_record()); one from no other shard cannot
 * come from this process and is ignored. Errors: store errors, KCHAT_ENOMEM.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int local_ack_take(struct ctx *c, const struct local_cmd *a)
{
    /* a->src is a shard id (local.c) */
    int rc = kchat__acks_take(c, (uint32_t)a->src, a->cseq, a->legacy, a->run);

    return rc == KCHAT_EINVAL ? KCHAT_OK : rc;
}

/* Apply the records of one shard, and the items waiting in its inbox
 * (local.c), in one transaction; retried until it commits (a full map or
 * disk blocks this worker: back-pressure).
 * @locality worker @p w, which owns @p sh */
static void apply_shard_batch(kchat_backend *be, struct worker *w, struct shard *sh,
                              rd_kafka_message_t **msgs, const size_t *idx, size_t n)
{
    struct local_cmd *local = NULL;
    size_t n_local = atomic_load(&sh->releasing) ? 0 : kchat__local_take(sh, &local);

    observe_read(be, msgs, idx, n);
    for (;;) {
        struct seqlist taken = {0};
        struct ctx c = {.be = be, .w = w, .sh = sh, .req = &w->req};
        int64_t t_begin = kchat__monotonic_us();
        int rc = kchat_txn_begin(sh->store, true, &c.txn);

        kchat_txn_on_changes(c.txn, kchat__changelog_collect, w);
        if (rc == KCHAT_OK)
            rc = kchat__outbox_prune(be, sh, c.txn, &taken);
        if (rc == KCHAT_OK)
            rc = kchat__changelog_trim(sh, c.txn);
        for (size_t i = 0; rc == KCHAT_OK && i < n_local; i++) {
            ctx_reset(&c);
            rc = local[i].ack ? local_ack_take(&c, &local[i])
                              : kchat__command_apply_local(&c, &local[i]);
        }
        for (size_t i = 0; rc == KCHAT_OK && i < n; i++)
            rc = apply_record(&c, msgs[idx[i]]);
        if (rc == KCHAT_OK) {
            c.now_ms = kchat__now_ms();
            rc = kchat__presence_sweep(&c);
        }
        if (rc == KCHAT_OK)
            rc = kchat__acks_flush(&c);
        if (rc == KCHAT_OK)
            rc = store_offsets(c.txn, msgs, idx, n);
        if (rc == KCHAT_OK) {
            int64_t t0 = kchat__monotonic_us();
            double commit_s;

            kchat_hist_observe(&be->stage[KCHAT__STAGE_APPLY], (double)(t0 - t_begin) / 1e6);
            rc = kchat_txn_commit(c.txn);
            c.txn = NULL;
            commit_s = (double)(kchat__monotonic_us() - t0) / 1e6;
            kchat_hist_observe(&be->commit_seconds, commit_s);
            kchat_hist_observe(&be->stage[KCHAT__STAGE_COMMIT], commit_s);
        }
        if (rc == KCHAT_OK) {
            free(taken.v);
            kchat_hist_observe(&be->batch_records, (double)n);
            atomic_fetch_add(&be->stats.commits, 1);
            kchat__changelog_after_commit(be, w, sh);
            kchat__presence_committed(sh);
            log_commit_recovered(sh);
            kchat__local_cmds_free(local, n_local);
            return;
        }
        kchat_txn_abort(c.txn);
        kchat__worker_discard_out(w);
        kchat__changelog_discard(w);
        kchat__acks_forget(w);
        kchat__outbox_unprune(sh, &taken);
        atomic_fetch_add(&be->stats.commit_failures, 1);
        log_commit_failure(be, sh, n, rc);
        if (atomic_load(&be->stopping) && rc != KCHAT_EMAPFULL && rc != KCHAT_ENOSPC) {
            /* their sources hold them: produced again at the next start */
            kchat__local_cmds_free(local, n_local);
            return;   /* not stored: read again from the stored offsets next start */
        }
        kchat__sleep_ms(RETRY_SLEEP_MS);
    }
}

/* ---- the consumer's callbacks ---- */

/* Whether items handed in memory wait for @p sh, and it takes them (a
 * shard being released leaves them: their sources send the commands again
 * through Kafka, and acknowledgements come again).
 * @locality worker that owns @p sh */
static bool local_due(const struct shard *sh)
{
    return kchat__local_waiting(sh) && !atomic_load(&sh->releasing);
}

/* A process() or idle() call of @p w that began at @p t0 (monotonic µs)
 * ends: its progress mark and its busy time.
 * @locality worker @p w */
static void worker_busy(struct worker *w, int64_t t0)
{
    int64_t now = kchat__monotonic_us();

    atomic_store(&w->last_progress_ms, now / 1000);
    atomic_fetch_add_explicit(&w->busy_us, (uint64_t)(now - t0), memory_order_relaxed);
}

/* The consumer's process(): group the batch by shard, one transaction each.
 * @locality worker thread @p worker (the consumer's) */
static void on_process(void *opaque, unsigned worker, rd_kafka_message_t **msgs, size_t n)
{
    kchat_backend *be = opaque;
    struct worker *w = &be->workers[worker];
    size_t *idx = w->idx;
    bool *done = w->done;
    int64_t t0 = kchat__monotonic_us();

    memset(done, 0, n * sizeof(*done));
    for (int s = (int)worker; s < be->partitions; s += (int)be->n_workers)
        if (atomic_load(&be->shards[s].owned) && atomic_load(&be->shards[s].cl_wake_at) != 0)
            kchat__changelog_release(be, &be->shards[s]);
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
        if (!atomic_load(&be->shards[p].owned) || atomic_load(&be->shards[p].fenced))
            continue;   /* never acquired (the backend stops), or fenced: its owner's */
        apply_shard_batch(be, w, &be->shards[p], msgs, idx, k);
    }
    /* commands handed in memory meanwhile to shards with no record here */
    for (int s = (int)worker; s < be->partitions; s += (int)be->n_workers)
        if (local_due(&be->shards[s]) && atomic_load(&be->shards[s].owned) &&
            !atomic_load(&be->shards[s].fenced))
            apply_shard_batch(be, w, &be->shards[s], NULL, NULL, 0);
    worker_busy(w, t0);
}

/* The consumer's idle(): upkeep of one worker's shards: records whose
 * changes Kafka now has released, refused records and changes produced
 * again, confirmed records, applied commands and confirmed changes
 * deleted, stuck command streams produced again.
 * @locality worker thread @p worker (the consumer's), or the stopping
 *           thread once the workers are joined (kchat__workers_idle()) */
static void on_idle(void *opaque, unsigned worker)
{
    kchat_backend *be = opaque;
    struct worker *w = &be->workers[worker];
    int64_t t0 = kchat__monotonic_us();

    atomic_store(&w->last_progress_ms, t0 / 1000);
    for (int s = (int)worker; s < be->partitions; s += (int)be->n_workers) {
        struct shard *sh = &be->shards[s];
        struct seqlist taken = {0};
        kchat_txn *t;
        uint64_t trimmed;
        bool work;
        int rc;

        if (!atomic_load(&sh->owned) || atomic_load(&sh->fenced))
            continue;   /* another process's, being acquired or fenced (ownership.c) */
        if (atomic_load(&sh->releasing)) {
            kchat__cl_txn_hurry(sh);   /* the release waits for every change */
            if (kchat__shard_quiet(be, sh))
                atomic_store(&sh->quiet, true);
        }
        if (!atomic_load(&be->stopping) &&
            (kchat__presence_due(sh) || local_due(sh))) {
            /* a transaction of no records: commands handed in memory, the
             * sweep, dead gateways' users */
            apply_shard_batch(be, w, sh, NULL, NULL, 0);
            continue;
        }
        if (!atomic_load(&be->stopping)) {
            /* at exit the outbox keeps them for the next start */
            kchat__changelog_release(be, sh);
            kchat__outbox_resend(be, sh);
        }
        work = kchat__outbox_prune_due(be, sh);
        work |= kchat__streams_due(sh) || kchat__changelog_due(sh);
        if (!work || kchat_txn_begin(sh->store, true, &t) != KCHAT_OK)
            continue;
        trimmed = sh->cl_trimmed;
        kchat_txn_on_changes(t, kchat__changelog_collect, w);
        rc = kchat__outbox_prune(be, sh, t, &taken);
        if (rc == KCHAT_OK)
            rc = kchat__changelog_trim(sh, t);
        if (rc == KCHAT_OK) {
            rc = kchat_txn_commit(t);
            t = NULL;
        }
        kchat_txn_abort(t);
        if (rc == KCHAT_OK) {
            if (taken.n > 0 || sh->cl_trimmed != trimmed)   /* not an empty one */
                atomic_fetch_add(&be->stats.upkeep_commits, 1);
            free(taken.v);
            kchat__changelog_after_commit(be, w, sh);
        } else {
            kchat__outbox_unprune(sh, &taken);
            kchat__changelog_discard(w);
        }
    }
    worker_busy(w, t0);
    atomic_fetch_add(&w->idle_passes, 1);
}

/* The consumer's start_offset(): the offset @p partition's shard stored for
 * @p topic, else the beginning.
 * @locality the consumer's poll thread, during an assignment */
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

int kchat__consumer_start(kchat_backend *be, bool mock, char *errstr, size_t len)
{
    const char *topics[KCHAT_OP__COUNT + 2];
    rd_kafka_conf_t *conf = kchat__kafka_conf(be, errstr, len);
    int wait_ms = kchat_config_fetch_wait_ms(be->cfg, mock);
    char wait[16];
    kchat_consumer_conf cc = {
        .topics = topics, .n_topics = KCHAT_OP__COUNT + 2, .n_workers = be->n_workers,
        .ring_capacity = (size_t)be->cfg->ring_capacity, .max_batch = (size_t)be->cfg->max_batch,
        .tick_ms = 20, .start_offset = on_start_offset, .process = on_process,
        .idle = on_idle, .prepare = kchat__shards_prepare, .revoked = kchat__shards_revoked,
        .opaque = be,
        .keep_fetch_wait = true,   /* set below, or by -X: either way chosen */
    };
    int rc;

    if (conf == NULL)
        return KCHAT_ECONFIG;
    for (int i = 0; i < KCHAT_OP__COUNT; i++)
        topics[i] = kchat_op_request_topic((kchat_op)i);
    topics[KCHAT_OP__COUNT] = KCHAT_TOPIC_INTERNAL;
    topics[KCHAT_OP__COUNT + 1] = KCHAT_TOPIC_PRESENCE;
    /* A shard's stored offset that its partition no longer has (records the
     * broker dropped while the node was down, or a topic made anew and
     * shorter) is read from the partition's first record: librdkafka's
     * default, its end, skipped every request still there (regression
     * 0067). What lies before that first record is gone either way; what
     * follows it was never applied here. */
    if (rd_kafka_conf_set(conf, "group.id", kchat_config_group(be->cfg), errstr, len) ||
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, len) ||
        rd_kafka_conf_set(conf, "session.timeout.ms", "6000", errstr, len) ||
        rd_kafka_conf_set(conf, "heartbeat.interval.ms", "1000", errstr, len)) {
        rd_kafka_conf_destroy(conf);
        return KCHAT_ECONFIG;
    }
    /* Static membership with a changelog: a node restarted on its data
     * directory within the session timeout keeps its shards, so a rolling
     * restart moves none (docs/scaling.md). */
    if (be->changelog && be->node_id[0] != '\0') {
        char instance[64];
        snprintf(instance, sizeof(instance), "kchat-node-%s", be->node_id);
        if (rd_kafka_conf_set(conf, "group.instance.id", instance, errstr, len)) {
            rd_kafka_conf_destroy(conf);
            return KCHAT_ECONFIG;
        }
    }
    snprintf(wait, sizeof(wait), "%d", wait_ms);
    if (wait_ms >= 0 && rd_kafka_conf_set(conf, "fetch.wait.max.ms", wait, errstr, len)) {
        rd_kafka_conf_destroy(conf);
        return KCHAT_ECONFIG;
    }
    rc = kchat_consumer_start(&cc, conf, &be->consumer, errstr, len);
    if (rc != KCHAT_OK) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    pthread_mutex_lock(&be->wake_lock);   /* delivery reports may wake workers now */
    be->wake = be->consumer;
    pthread_mutex_unlock(&be->wake_lock);
    return KCHAT_OK;
}

/* ---- the workers' scratch ---- */

int kchat__workers_new(kchat_backend *be)
{
    size_t max_batch = (size_t)be->cfg->max_batch;

    if ((be->workers = calloc(be->n_workers, sizeof(*be->workers))) == NULL)
        return KCHAT_ENOMEM;
    for (unsigned i = 0; i < be->n_workers; i++) {
        struct worker *w = &be->workers[i];
        w->id = i;
        atomic_store(&w->last_progress_ms, kchat__monotonic_us() / 1000);
        w->idx = malloc(max_batch * sizeof(*w->idx));
        w->done = malloc(max_batch * sizeof(*w->done));
        if (w->idx == NULL || w->done == NULL)
            return KCHAT_ENOMEM;
    }
    return KCHAT_OK;
}

void kchat__workers_idle(kchat_backend *be)
{
    for (unsigned w = 0; be->workers && be->shards && w < be->n_workers; w++)
        on_idle(be, w);
}

void kchat__workers_free(kchat_backend *be)
{
    for (unsigned w = 0; be->workers && w < be->n_workers; w++) {
        kchat__worker_discard_out(&be->workers[w]);
        kchat__changelog_discard(&be->workers[w]);
        free(be->workers[w].cl);
        free(be->workers[w].out);
        free(be->workers[w].idx);
        free(be->workers[w].done);
        kchat__acks_free(&be->workers[w]);
    }
    free(be->workers);
    be->workers = NULL;
}
