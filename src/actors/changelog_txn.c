/*
 * Fencing (docs/design.md, "Fencing"): each owned shard writes its
 * kchat-changelog partition through a transactional producer of its own,
 * transactional.id `kchat-<data set>-shard-<p>`.
 *
 * Acquiring a shard opens its producer first: init_transactions() makes
 * Kafka abort whatever transaction an earlier owner left open and refuse
 * every later write of that owner (its producer epoch is older). Only then
 * is the partition read to catch up (read_committed), so the copy this
 * node serves from holds every change an earlier owner ever had accepted,
 * and nothing that owner writes later can be accepted.
 *
 * The worker hands a committed shard transaction's changes to the shard's
 * committer thread (kchat__cl_txn_enqueue()), which writes what has
 * queued since its last round in one Kafka transaction and commits it.
 * A commit moves the shard's cl_acked, which opens the gate its answers,
 * events and commands wait behind (changelog.c): nothing reports a change
 * before Kafka committed it, and a fenced owner's commits fail, so none of
 * its late answers, events or commands is ever produced. A fenced shard is
 * no longer served here (its worker skips it) until the group assigns it
 * again; what it held is dropped at the revocation, and its copy, which
 * kept changes Kafka never had, is set aside at its next acquisition
 * (restore.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors.h"
#include "changelog.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

#define TXN_INIT_TIMEOUT_MS 30000   /* init_transactions(): Kafka's answer */
#define TXN_COMMIT_TIMEOUT_MS 10000 /* one commit_transaction() call */
#define TXN_TIMEOUT_MS "10000"      /* transaction.timeout.ms: Kafka aborts a
                                       transaction left open this long */
#define TXN_RETRY_MS 100            /* after an aborted transaction */
#define TXN_LOG_MS 10000            /* a failing shard says so this often */
/* Kafka writes a committed transaction's markers after it answers the
 * commit, and refuses to add a partition to the id's next transaction
 * until then (CONCURRENT_TRANSACTIONS), which librdkafka 2.0.2 asks again
 * for only 20 ms later. Beginning the next one this long after a commit
 * avoids that wait (docs/bench.md, "Fencing"). */
#ifndef TXN_GAP_US   /* a build may set it (-DTXN_GAP_US=N), to measure another */
#define TXN_GAP_US 2000
#endif
/* Changes no held answer, event or command waits for (the tombstones of
 * delivered outbox records, a command's deletion once its target
 * acknowledged it; those behind command acknowledgements only) wait this
 * long at most for changes that some record does wait for, and go with
 * them: about half of a shard's commits at 200 requests/s, each of which
 * was a Kafka transaction of its own that a waited-for change could queue
 * behind (docs/bench.md, "Changes nobody waits for"). */
#define TXN_LAZY_US 50000

struct cl_txn {
    kchat_backend *be;
    struct shard *sh;
    rd_kafka_t *rk;               /* the shard's transactional producer: the
                                     committer thread's alone once started */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct cl_rec *q;             /* under lock: changes to write, in seq order */
    size_t n_q, cap_q;
    bool waited;                  /* under lock: a held record waits for a change of q
                                     (or its shard is being released): write q now */
    int64_t queued_us;            /* under lock: when q's oldest change was queued */
    bool stop;                    /* under lock: the committer ends */
    struct cl_rec *batch;         /* the committer's: the changes of the transaction
                                     being written; the producer refers to their values
                                     (not copied) until it commits, aborts or is
                                     destroyed */
    size_t n_batch, cap_batch;
    unsigned char *superseded;    /* the committer's: 1 for each change of batch a
                                     later one of batch writes again (not written) */
    size_t cap_superseded;
    uint32_t *slots;              /* the committer's: kchat__cl_coalesce()'s scratch */
    size_t cap_slots;
    bool coalesce;                /* readers see only committed transactions whole:
                                     superseded changes may be left out */
};

static void recs_free(struct cl_rec *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(r[i].key);
}

/* jemalloc's control interface, when jemalloc is the allocator (not in
 * sanitizer builds, where this is NULL). */
extern int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen)
    __attribute__((weak));

/* Turn off the allocator's cache of freed blocks for the calling thread.
 * The threads of a shard's changelog (its committer, its producer's) free
 * what workers allocated and allocate little: a per-thread cache would only
 * hold on to memory, times the shards a node owns (test_overload's bound
 * on memory growth failed without this).
 * @locality any thread, about itself */
static void thread_cache_off(void)
{
    bool off = false;

    if (mallctl != NULL)
        kchat_ignore(mallctl("thread.tcache.enabled", NULL, NULL, &off, sizeof(off)));
}

/* The delivery-report callback of a shard's producer: nothing to do (the
 * commit reports on the whole transaction), but with one set, the flush
 * inside commit_transaction() wakes at each report; without, it looks only
 * every 10 ms.
 * @locality the committer thread, inside commit_transaction() */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)m;
    (void)opaque;
}

/* on_thread_start() interceptor of a shard's producer.
 * @locality each thread librdkafka starts for it */
static rd_kafka_resp_err_t on_thread_start(rd_kafka_t *rk, rd_kafka_thread_type_t type,
                                           const char *name, void *opaque)
{
    (void)rk;
    (void)type;
    (void)name;
    (void)opaque;
    thread_cache_off();
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* on_new() interceptor of a shard's producer: adds on_thread_start().
 * @locality the thread in rd_kafka_new() */
static rd_kafka_resp_err_t on_new(rd_kafka_t *rk, const rd_kafka_conf_t *conf, void *opaque,
                                  char *errstr, size_t len)
{
    (void)conf;
    (void)errstr;
    (void)len;
    return rd_kafka_interceptor_add_on_thread_start(rk, "kchat-cache-off", on_thread_start,
                                                    opaque);
}

/* What became of one transaction (txn_write()). */
enum txn_result {
    TXN_COMMITTED,   /* Kafka has its changes */
    TXN_ABORTED,     /* not written: try again */
    TXN_FENCED,      /* a newer owner's producer fenced this one: never again */
    TXN_FAILED,      /* the producer failed for good otherwise */
};

/* What a failed transactional call's @p err means for the transaction. */
static enum txn_result txn_result_of(const rd_kafka_error_t *err)
{
    if (!rd_kafka_error_is_fatal(err))
        return TXN_ABORTED;
    return rd_kafka_error_code(err) == RD_KAFKA_RESP_ERR__FENCED ? TXN_FENCED : TXN_FAILED;
}

/* Abort the open transaction after @p err (consumed), saying in @p errstr
 * why it failed.
 * @locality the shard's committer thread */
static enum txn_result txn_undo(struct cl_txn *tx, rd_kafka_error_t *err, char *errstr,
                                size_t len)
{
    if (err != NULL) {
        enum txn_result r = txn_result_of(err);

        snprintf(errstr, len, "%s", rd_kafka_error_string(err));
        rd_kafka_error_destroy(err);
        if (r != TXN_ABORTED)
            return r;
    }
    if ((err = rd_kafka_abort_transaction(tx->rk, TXN_COMMIT_TIMEOUT_MS)) != NULL) {
        enum txn_result r = txn_result_of(err);

        snprintf(errstr, len, "%s", rd_kafka_error_string(err));
        rd_kafka_error_destroy(err);
        if (r != TXN_ABORTED)
            return r;
    }
    atomic_fetch_add(&tx->be->stats.cl_txn_aborts, 1);
    return TXN_ABORTED;
}

/* The headers of change @p ch as written to kchat-changelog: its data set,
 * seq and last seq, and with a deployment secret their MAC.
 * @locality the shard's committer thread */
static rd_kafka_headers_t *change_headers(kchat_backend *be, const kchat_change *ch,
                                          const unsigned char *key, size_t kl, const char *seq,
                                          const char *last)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(4);

    rd_kafka_header_add(hdrs, KCHAT_HDR_DATASET, -1, be->dataset, -1);
    rd_kafka_header_add(hdrs, KCHAT_HDR_CL_SEQ, -1, seq, -1);
    rd_kafka_header_add(hdrs, KCHAT_HDR_CL_LAST, -1, last, -1);
    if (be->auth != NULL &&
        kchat_auth_sign(be->auth, KCHAT_TOPIC_CHANGELOG, key, kl, ch->deleted ? NULL : ch->value,
                        ch->deleted ? 0 : ch->value_len, hdrs) != KCHAT_OK)
        fprintf(stderr, "kchat: cannot sign a change for %s: restores will drop it\n",
                KCHAT_TOPIC_CHANGELOG);
    return hdrs;
}

/* FNV-1a of a change's table and key. */
static uint32_t change_hash(const struct cl_rec *r)
{
    uint32_t h = 2166136261u ^ (uint32_t)r->table;

    h *= 16777619u;
    for (size_t i = 0; i < r->key_len; i++) {
        h ^= r->key[i];
        h *= 16777619u;
    }
    return h;
}

size_t kchat__cl_coalesce(const struct cl_rec *r, size_t n, unsigned char *superseded,
                          uint32_t **slots, size_t *cap)
{
    size_t want = 16, mask, count = 0;

    memset(superseded, 0, n);
    if (n < 2 || n > UINT32_MAX / 2)
        return 0;
    while (want < 2 * n)
        want *= 2;
    if (want > *cap) {
        uint32_t *nv = realloc(*slots, want * sizeof(*nv));
        if (nv == NULL)
            return 0;
        *slots = nv;
        *cap = want;
    }
    /* An open-addressing set of the keys seen, read from the last change
     * back: a change whose key is in it already is superseded. Slots hold
     * 1 + an index into r, 0 when free. */
    memset(*slots, 0, want * sizeof(**slots));
    mask = want - 1;
    for (size_t i = n; i-- > 0;) {
        size_t at = change_hash(&r[i]) & mask;

        for (;;) {
            uint32_t s = (*slots)[at];
            if (s == 0) {
                (*slots)[at] = (uint32_t)i + 1;
                break;
            }
            const struct cl_rec *o = &r[s - 1];
            if (o->table == r[i].table && o->key_len == r[i].key_len &&
                memcmp(o->key, r[i].key, r[i].key_len) == 0) {
                superseded[i] = 1;
                count++;
                break;
            }
            at = (at + 1) & mask;
        }
    }
    return count;
}

/* Write the @p n changes @p r in one transaction and commit it, leaving
 * out those marked in @p superseded (NULL: none); errstr says why when it
 * was not committed.
 * @locality the shard's committer thread */
static enum txn_result txn_write(struct cl_txn *tx, const struct cl_rec *r, size_t n,
                                 const unsigned char *superseded, char *errstr, size_t len)
{
    kchat_backend *be = tx->be;
    rd_kafka_error_t *err;
    int64_t deadline;
    size_t written = 0;

    if ((err = rd_kafka_begin_transaction(tx->rk)) != NULL)
        return txn_undo(tx, err, errstr, len);   /* e.g. an abort that timed out: again */
    for (size_t i = 0; i < n; i++) {
        if (superseded != NULL && superseded[i])
            continue;   /* a later change of this transaction writes its key */
        kchat_change ch = {
            .seq = r[i].seq, .last = r[i].last, .table = r[i].table, .key = r[i].key,
            .key_len = r[i].key_len, .value = r[i].value, .value_len = r[i].value_len,
            .deleted = r[i].value == NULL,
        };
        unsigned char key[KCHAT_CHANGE_KEY_MAX];
        size_t kl = kchat_store_change_key(&ch, key);
        char seq[24], last[24];
        rd_kafka_resp_err_t perr;

        if (ch.table < KCHAT_TBL__COUNT)
            atomic_fetch_add_explicit(&be->cl_changes[ch.table][ch.deleted], 1,
                                      memory_order_relaxed);
        snprintf(seq, sizeof(seq), "%" PRIu64, ch.seq);
        snprintf(last, sizeof(last), "%" PRIu64, ch.last);
        for (;;) {
            rd_kafka_headers_t *hdrs = change_headers(be, &ch, key, kl, seq, last);

            perr = rd_kafka_producev(
                tx->rk, RD_KAFKA_V_TOPIC(KCHAT_TOPIC_CHANGELOG),
                RD_KAFKA_V_PARTITION((int32_t)tx->sh->id), RD_KAFKA_V_KEY(key, kl),
                RD_KAFKA_V_VALUE(ch.deleted ? NULL : (void *)ch.value,
                                 ch.deleted ? 0 : ch.value_len),
                /* not copied: the batch outlives the transaction */
                RD_KAFKA_V_MSGFLAGS(0), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
            if (perr != RD_KAFKA_RESP_ERR_NO_ERROR)
                rd_kafka_headers_destroy(hdrs);   /* taken only on success */
            if (perr != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                break;
            rd_kafka_poll(tx->rk, 1);
        }
        if (perr != RD_KAFKA_RESP_ERR_NO_ERROR) {
            /* Refused (a fenced or failed producer refuses here): never
             * commit a part of the changes. */
            char why[512];
            rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(tx->rk, why, sizeof(why));
            if (ferr != RD_KAFKA_RESP_ERR_NO_ERROR) {
                snprintf(errstr, len, "%s", why);
                return ferr == RD_KAFKA_RESP_ERR__FENCED ||
                       ferr == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
                       ferr == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH ? TXN_FENCED
                                                                         : TXN_FAILED;
            }
            enum txn_result res = txn_undo(tx, NULL, errstr, len);
            if (res == TXN_ABORTED)
                snprintf(errstr, len, "%s", rd_kafka_err2str(perr));
            return res;
        }
        written++;
    }
    atomic_fetch_add(&be->stats.changes_produced, written);
    atomic_fetch_add(&be->stats.changes_coalesced, n - written);
    deadline = kchat__monotonic_us() / 1000 + 3 * TXN_COMMIT_TIMEOUT_MS;
    while ((err = rd_kafka_commit_transaction(tx->rk, TXN_COMMIT_TIMEOUT_MS)) != NULL &&
           rd_kafka_error_is_retriable(err) && kchat__monotonic_us() / 1000 < deadline)
        rd_kafka_error_destroy(err);   /* the same commit may be asked for again */
    return err == NULL ? TXN_COMMITTED : txn_undo(tx, err, errstr, len);
}

/* Which changes of tx's batch a later one of it writes again (NULL: write
 * them all: the readers may see part of a transaction, or no memory).
 * @locality the shard's committer thread */
static const unsigned char *coalesced(struct cl_txn *tx)
{
    if (!tx->coalesce || tx->n_batch < 2)
        return NULL;
    if (tx->n_batch > tx->cap_superseded) {
        unsigned char *nv = realloc(tx->superseded, tx->cap_batch);
        if (nv == NULL)
            return NULL;
        tx->superseded = nv;
        tx->cap_superseded = tx->cap_batch;
    }
    if (kchat__cl_coalesce(tx->batch, tx->n_batch, tx->superseded, &tx->slots,
                           &tx->cap_slots) == 0)
        return NULL;
    return tx->superseded;
}

/* The committer thread's main: every round, write what queued since the
 * last one in one transaction; on its commit, acknowledge its changes.
 * @locality the shard's committer thread, from kchat__cl_txn_open() to
 *           kchat__cl_txn_close() */
static void *committer_main(void *arg)
{
    struct cl_txn *tx = arg;
    kchat_backend *be = tx->be;
    struct shard *sh = tx->sh;
    int64_t logged = 0, committed_us = 0;
    char errstr[512];

    thread_cache_off();
    for (;;) {
        enum txn_result res;
        int64_t t0, since;

        pthread_mutex_lock(&tx->lock);
        while (!tx->stop && tx->n_batch == 0 && !tx->waited) {
            int64_t due = tx->queued_us + TXN_LAZY_US;
            struct timespec ts;

            if (tx->n_q == 0) {
                pthread_cond_wait(&tx->cond, &tx->lock);
                continue;
            }
            if (kchat__monotonic_us() >= due)
                break;   /* nobody waits for these, but they waited long enough */
            ts = (struct timespec){.tv_sec = due / 1000000, .tv_nsec = due % 1000000 * 1000};
            pthread_cond_timedwait(&tx->cond, &tx->lock, &ts);
        }
        if ((since = kchat__monotonic_us() - committed_us) < TXN_GAP_US) {
            /* the gap after a commit is slept out before the queue is
             * taken, so that what is queued meanwhile goes in this
             * transaction rather than wait for the next one */
            pthread_mutex_unlock(&tx->lock);
            kchat__sleep_us(TXN_GAP_US - since);
            pthread_mutex_lock(&tx->lock);
        }
        if (tx->stop) {
            pthread_mutex_unlock(&tx->lock);
            break;
        }
        if (tx->n_batch == 0) {   /* take the queue as it is */
            struct cl_rec *swap = tx->batch;
            size_t swap_cap = tx->cap_batch;
            tx->batch = tx->q;
            tx->cap_batch = tx->cap_q;
            tx->n_batch = tx->n_q;
            tx->q = swap;
            tx->cap_q = swap_cap;
            tx->n_q = 0;
            tx->waited = false;
        } else if (tx->n_q > 0 && tx->n_batch + tx->n_q <= tx->cap_batch) {
            /* a retry: take what came meanwhile too */
            memcpy(tx->batch + tx->n_batch, tx->q, tx->n_q * sizeof(*tx->batch));
            tx->n_batch += tx->n_q;
            tx->n_q = 0;
            tx->waited = false;
        }
        pthread_mutex_unlock(&tx->lock);

        t0 = kchat__monotonic_us();
        errstr[0] = '\0';
        res = txn_write(tx, tx->batch, tx->n_batch, coalesced(tx), errstr, sizeof(errstr));
        if (res == TXN_COMMITTED) {
            atomic_fetch_add(&be->stats.cl_txns, 1);
            atomic_fetch_add(&be->stats.cl_txn_us, (uint64_t)(kchat__monotonic_us() - t0));
            for (size_t i = 0; i < tx->n_batch; i++)
                kchat__changelog_acked(be, sh, tx->batch[i].seq);
            recs_free(tx->batch, tx->n_batch);
            tx->n_batch = 0;
            committed_us = kchat__monotonic_us();
            continue;
        }
        if (res != TXN_ABORTED) {
            /* Fenced: a newer owner took the shard, and Kafka refuses this
             * producer from now on. Failed for good otherwise: the shard
             * cannot be written from here either. Its held records are
             * never let out; the worker leaves it alone. The batch is freed
             * with the producer (kchat__cl_txn_close()). */
            atomic_store(&sh->fenced, true);
            atomic_fetch_add(&be->stats.fenced, 1);
            atomic_fetch_add(&be->stats.fenced_changes, tx->n_batch);
            fprintf(stderr, "kchat: shard %u: %s (%s); it is not served here until it is "
                    "assigned again\n", sh->id,
                    res == TXN_FENCED ? "fenced: another node owns it now" :
                                        "its changelog producer failed for good", errstr);
            break;
        }
        if (kchat__monotonic_us() / 1000 - logged >= TXN_LOG_MS) {
            fprintf(stderr, "kchat: shard %u: a changelog transaction was aborted (%s); "
                    "trying again\n", sh->id, errstr);
            logged = kchat__monotonic_us() / 1000;
        }
        kchat__sleep_ms(TXN_RETRY_MS);
    }
    return NULL;
}

/* The configuration of @p sh's transactional producer; NULL when refused
 * (errstr says why).
 * @locality any thread */
static rd_kafka_conf_t *txn_conf(kchat_backend *be, struct shard *sh, char *errstr, size_t len)
{
    rd_kafka_conf_t *conf = kchat__kafka_conf(be, errstr, len);
    char id[96];

    if (conf == NULL)
        return NULL;
    snprintf(id, sizeof(id), "kchat-%s-shard-%u", be->dataset, sh->id);
    if (rd_kafka_conf_set(conf, "transactional.id", id, errstr, len) ||
        rd_kafka_conf_set(conf, "transaction.timeout.ms", TXN_TIMEOUT_MS, errstr, len) ||
        rd_kafka_conf_set(conf, "linger.ms", "0", errstr, len) ||
        rd_kafka_conf_interceptor_add_on_new(conf, "kchat-cache-off", on_new, NULL) ||
        /* see kchat__producer_conf(): the mock cluster and skipped sequences */
        (be->mock_broker &&
         rd_kafka_conf_set(conf, "max.in.flight.requests.per.connection", "1", errstr, len))) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

int kchat__cl_txn_open(kchat_backend *be, struct shard *sh, char *errstr, size_t len)
{
    struct cl_txn *tx;
    rd_kafka_conf_t *conf;
    rd_kafka_error_t *err;
    rd_kafka_topic_t *rkt;
    const struct rd_kafka_metadata *md;
    pthread_condattr_t ca;
    int rc = KCHAT_EKAFKA;

    if (sh->txn != NULL && atomic_load(&sh->fenced))
        kchat__cl_txn_close(be, sh);   /* useless now: a new one fences the other owner */
    if (!be->changelog || sh->txn != NULL)
        return KCHAT_OK;
    if ((tx = calloc(1, sizeof(*tx))) == NULL)
        return KCHAT_ENOMEM;
    tx->be = be;
    tx->sh = sh;
    /* Kafka shows read_committed readers a transaction whole or not at all;
     * the mock cluster shows its records as they come (changelog.h,
     * kchat__cl_fate_at_end()), so a reader there could apply a part of a
     * round without the later change that replaced a left-out one. */
    tx->coalesce = !be->mock_broker;
    if ((conf = txn_conf(be, sh, errstr, len)) == NULL) {
        rc = KCHAT_ECONFIG;
        goto out_free;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    if ((tx->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, len)) == NULL) {
        rd_kafka_conf_destroy(conf);
        goto out_free;
    }
    /* Fences every earlier owner of the shard (and aborts what it left open). */
    if ((err = rd_kafka_init_transactions(tx->rk, TXN_INIT_TIMEOUT_MS)) != NULL) {
        snprintf(errstr, len, "shard %u: cannot start its changelog producer: %s", sh->id,
                 rd_kafka_error_string(err));
        rd_kafka_error_destroy(err);
        goto out_destroy;
    }
    /* Ask for the topic's leaders now: the first transaction would wait for
     * the next metadata refresh (a second) otherwise. */
    if ((rkt = rd_kafka_topic_new(tx->rk, KCHAT_TOPIC_CHANGELOG, NULL)) != NULL) {
        if (rd_kafka_metadata(tx->rk, 0, rkt, &md, TXN_INIT_TIMEOUT_MS) == 0)
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
    }
    pthread_mutex_init(&tx->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);   /* kchat__monotonic_us()'s */
    pthread_cond_init(&tx->cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_store(&sh->fenced, false);
    if (pthread_create(&tx->thread, NULL, committer_main, tx) != 0) {
        snprintf(errstr, len, "shard %u: cannot start its changelog committer", sh->id);
        rc = KCHAT_ENOMEM;
        goto out_sync;
    }
    sh->txn = tx;
    return KCHAT_OK;

out_sync:
    pthread_cond_destroy(&tx->cond);
    pthread_mutex_destroy(&tx->lock);
out_destroy:
    rd_kafka_destroy(tx->rk);
out_free:
    free(tx);
    return rc;
}

void kchat__cl_txn_close(kchat_backend *be, struct shard *sh)
{
    struct cl_txn *tx = sh->txn;
    rd_kafka_error_t *err;

    (void)be;
    if (tx == NULL)
        return;
    pthread_mutex_lock(&tx->lock);
    tx->stop = true;
    pthread_cond_signal(&tx->cond);
    pthread_mutex_unlock(&tx->lock);
    pthread_join(tx->thread, NULL);
    /* A transaction the stop cut off is not committed: its changes stay
     * kept in the shard, for whoever owns it next. */
    if ((err = rd_kafka_abort_transaction(tx->rk, 1000)) != NULL)
        rd_kafka_error_destroy(err);   /* none open, or fenced: nothing to undo */
    rd_kafka_destroy(tx->rk);   /* refers to the batch's values no more */
    recs_free(tx->batch, tx->n_batch);
    free(tx->batch);
    recs_free(tx->q, tx->n_q);
    free(tx->q);
    free(tx->superseded);
    free(tx->slots);
    pthread_cond_destroy(&tx->cond);
    pthread_mutex_destroy(&tx->lock);
    free(tx);
    sh->txn = NULL;
}

int kchat__cl_txn_give(struct shard *sh, struct cl_rec *r, size_t n, bool waited)
{
    struct cl_txn *tx = sh->txn;

    if (tx == NULL)
        return KCHAT_ESHUTDOWN;
    pthread_mutex_lock(&tx->lock);
    if (tx->n_q + n > tx->cap_q) {
        size_t cap = tx->cap_q ? tx->cap_q : 256;
        struct cl_rec *nv;

        while (cap < tx->n_q + n)
            cap *= 2;
        if ((nv = realloc(tx->q, cap * sizeof(*nv))) == NULL) {
            pthread_mutex_unlock(&tx->lock);
            return KCHAT_ENOMEM;
        }
        tx->q = nv;
        tx->cap_q = cap;
    }
    if (tx->n_q == 0)
        tx->queued_us = kchat__monotonic_us();
    memcpy(tx->q + tx->n_q, r, n * sizeof(*r));
    tx->n_q += n;
    tx->waited = tx->waited || waited;
    pthread_cond_signal(&tx->cond);
    pthread_mutex_unlock(&tx->lock);
    return KCHAT_OK;
}

void kchat__cl_txn_hurry(struct shard *sh)
{
    struct cl_txn *tx = sh->txn;

    if (tx == NULL)
        return;
    pthread_mutex_lock(&tx->lock);
    if (tx->n_q > 0 && !tx->waited) {
        tx->waited = true;
        pthread_cond_signal(&tx->cond);
    }
    pthread_mutex_unlock(&tx->lock);
}

int kchat__cl_txn_enqueue(struct shard *sh, const kchat_change *ch)
{
    size_t vl = ch->deleted ? 0 : ch->value_len;
    struct cl_rec r;
    unsigned char *buf;
    int rc;

    if (sh->txn == NULL)
        return KCHAT_ESHUTDOWN;
    if ((buf = malloc(ch->key_len + vl + 1)) == NULL)
        return KCHAT_ENOMEM;
    memcpy(buf, ch->key, ch->key_len);
    if (vl)
        memcpy(buf + ch->key_len, ch->value, vl);
    r = (struct cl_rec){.seq = ch->seq, .last = ch->last, .table = ch->table, .key = buf,
                        .key_len = ch->key_len,
                        .value = ch->deleted ? NULL : buf + ch->key_len, .value_len = vl};
    if ((rc = kchat__cl_txn_give(sh, &r, 1, true)) != KCHAT_OK)
        free(buf);
    return rc;
}
