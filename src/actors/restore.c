/*
 * Restoring shards from kchat-changelog (docs/design.md, "Changelog";
 * docs/scaling.md, "Hand-over"): when this process is given a shard
 * (ownership.c), and, without a consumer group's say, at start for the
 * data set.
 *
 * A shard being acquired compares its own changelog position (the last
 * change it committed) with the last record of its kchat-changelog
 * partition. When Kafka holds later changes (the data
 * directory was lost, or is a copy older than the changelog), the shard
 * reads its partition from the beginning and applies, in log order, every
 * change after its own, whole transactions at a time: a transaction is
 * applied once its last change (kchat-cl-last) has been read, or once a
 * change numbered after its last one comes (compaction removed its last
 * changes: later records of the same keys, applied after it, replace
 * them). One followed by a change numbered inside it (its node died and
 * the next writer numbered on from the same point) is dropped, and so is
 * one cut off at the end of the log on the mock cluster, which shows what
 * no transaction committed (kchat__cl_fate_at_end()). A copy older than
 * --changelog-copy-max-age is set aside and the shard restored whole: the
 * deletions made since may be gone. Compaction keeps the last record of
 * each key, and a refused change is produced again with every later one,
 * so the log's order gives the final state. The restored tables carry the
 * stored input offsets and the data set id: the shard
 * serves on from where its last owner stopped, and an empty data directory
 * joins the deployment instead of starting a new one.
 *
 * A local copy that committed changes Kafka never confirmed (its node died
 * before their acknowledgement) is current only if nobody wrote after it:
 * when the partition's last record is not the copy's own change of that
 * number, another owner wrote on, and the copy has diverged. It is set
 * aside (renamed, kept for the operator) and the shard is restored whole.
 *
 * So is a copy of another data set (datadir.c refuses, at start, a data
 * directory of another data set than the changelog's: this meets only a
 * shard that data directory had never written).
 *
 * kchat__changelog_dataset() reads, at start, the data set the changelog
 * belongs to.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors.h"
#include "changelog.h"
#include "streams.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

#define RESTORE_TIMEOUT_MS 30000  /* Kafka's answer to one step (watermarks, a fetch) */
#define RESTORE_COMMIT_CHANGES 20000  /* changes per LMDB commit while restoring */

/* A transaction's changes, read but not applied until it ended. */
struct pending_txn {
    uint64_t last;               /* its kchat-cl-last; 0: none open */
    int64_t at;                  /* the offset of its first record read */
    rd_kafka_message_t **msgs;
    size_t n, cap;
};

struct restore {
    kchat_backend *be;
    struct shard *sh;
    int64_t copy_ms;             /* the newest record timestamp of a change the copy
                                    has (ms; -1: none read) */
    int64_t stale_before_ms;     /* a copy whose changes are all older is stale */
    bool age_checked;            /* the copy's age was judged (at its first later change) */
    bool stale;                  /* too old to catch up by later changes alone */
    rd_kafka_t *rk;
    char dataset[33];            /* the changelog's data set (its last record's) */
    rd_kafka_message_t *tail;    /* the partition's last record (partition_tail()) */
    int64_t first;               /* the partition's first offset (partition_tail()) */
    uint64_t local;              /* the shard's last committed change */
    uint64_t applied_to;         /* the highest change applied */
    kchat_txn *t;                /* open while applying */
    size_t in_txn;               /* changes applied in t */
    uint64_t check_from;         /* the shard's first kept change (0: none): records
                                    numbered check_from..local must be its own */
    bool diverged;               /* one was not: the copy diverged */
    uint64_t changes, records, dropped;
};

/* Header @p name of @p m as a number; 0 when absent or not a number. */
static uint64_t header_u64(const rd_kafka_message_t *m, const char *name)
{
    const void *v;
    size_t len;
    uint64_t n;

    if (kchat_header_get(m, name, &v, &len) != 0 || kchat__parse_u64(v, len, &n) != 0)
        return 0;
    return n;
}

static bool header_is(const rd_kafka_message_t *m, const char *name, const char *want)
{
    const void *v;
    size_t len;

    return kchat_header_get(m, name, &v, &len) == 0 && len == strlen(want) &&
           memcmp(v, want, len) == 0;
}

static void pending_drop(struct restore *rs, struct pending_txn *pt)
{
    rs->dropped += pt->n;
    for (size_t i = 0; i < pt->n; i++)
        rd_kafka_message_destroy(pt->msgs[i]);
    pt->n = 0;
    pt->last = 0;
}

/* Apply the complete transaction @p pt to the shard (committing every
 * RESTORE_COMMIT_CHANGES changes, always between transactions).
 * @locality the thread acquiring the shard (ownership.c) */
KCHAT_MUST_CHECK
static int pending_apply(struct restore *rs, struct pending_txn *pt)
{
    int rc = KCHAT_OK;

    if (rs->t == NULL && (rc = kchat_txn_begin(rs->sh->store, true, &rs->t)) != KCHAT_OK)
        return rc;
    for (size_t i = 0; rc == KCHAT_OK && i < pt->n; i++) {
        const rd_kafka_message_t *m = pt->msgs[i];
        const unsigned char *k = m->key;
        kchat_change ch = {
            .seq = header_u64(m, KCHAT_HDR_CL_SEQ), .last = pt->last,
            .table = (kchat_table)k[0], .key = k + 1, .key_len = m->key_len - 1,
            .value = m->payload, .value_len = m->payload ? m->len : 0,
            .deleted = m->payload == NULL,
        };
        rc = kchat_store_change_apply(rs->t, &ch);
        rs->changes++;
        rs->in_txn++;
    }
    if (rc == KCHAT_OK && pt->last > rs->applied_to)
        rs->applied_to = pt->last;
    for (size_t i = 0; i < pt->n; i++)
        rd_kafka_message_destroy(pt->msgs[i]);
    pt->n = 0;
    pt->last = 0;
    if (rc == KCHAT_OK && rs->in_txn >= RESTORE_COMMIT_CHANGES) {
        rc = kchat_store_changelog_restored(rs->t, rs->applied_to);
        if (rc == KCHAT_OK)
            rc = kchat_txn_commit(rs->t);
        else
            kchat_txn_abort(rs->t);
        rs->t = NULL;
        rs->in_txn = 0;
    }
    return rc;
}

/* kchat_store_changelog_scan() callback: whether the kept change numbered
 * like record sa->m is sa->m. */
struct same_arg {
    const rd_kafka_message_t *m;
    bool same;
};

static int same_change(void *arg, const kchat_change *ch)
{
    struct same_arg *sa = arg;
    const rd_kafka_message_t *m = sa->m;
    const unsigned char *k = m->key;

    sa->same = ch->seq == header_u64(m, KCHAT_HDR_CL_SEQ) && m->key_len == ch->key_len + 1 &&
               k[0] == (unsigned char)ch->table && memcmp(k + 1, ch->key, ch->key_len) == 0 &&
               (ch->deleted ? m->payload == NULL
                            : m->payload != NULL && m->len == ch->value_len &&
                                  memcmp(m->payload, ch->value, ch->value_len) == 0);
    return 1;
}

/* Whether record @p m is the shard's own kept change of its number; sets
 * @p *diverged when it is not. Errors: store errors.
 * @locality the thread acquiring the shard */
KCHAT_MUST_CHECK
static int kept_matches(struct restore *rs, const rd_kafka_message_t *m, bool *diverged)
{
    struct same_arg sa = {.m = m};
    kchat_txn *t = rs->t;   /* a write transaction reads too */
    int rc;

    if (t == NULL && (rc = kchat_txn_begin(rs->sh->store, false, &t)) != KCHAT_OK)
        return rc;
    rc = kchat_store_changelog_scan(t, header_u64(m, KCHAT_HDR_CL_SEQ), same_change, &sa);
    if (t != rs->t)
        kchat_txn_abort(t);
    if (rc == KCHAT_OK && !sa.same)
        *diverged = true;
    return rc;
}

/* One record of the partition, in log order: kept for its transaction,
 * which is applied once its last change is read. Takes @p m.
 * @locality the thread acquiring the shard */
KCHAT_MUST_CHECK
static int restore_record(struct restore *rs, struct pending_txn *pt, rd_kafka_message_t *m)
{
    uint64_t seq = header_u64(m, KCHAT_HDR_CL_SEQ), last = header_u64(m, KCHAT_HDR_CL_LAST);
    const unsigned char *k = m->key;

    rs->records++;
    if (seq == 0 || last < seq || m->key_len < 2 || k[0] >= KCHAT_TBL__COUNT ||
        k[0] == KCHAT_TBL_CHANGELOG || !header_is(m, KCHAT_HDR_DATASET, rs->dataset)) {
        rd_kafka_message_destroy(m);   /* not ours, or not a change */
        return KCHAT_OK;
    }
    if (seq <= rs->local) {   /* the copy has it: as this record says? */
        int rc = KCHAT_OK;
        int64_t ts = rd_kafka_message_timestamp(m, NULL);
        if (ts > rs->copy_ms)
            rs->copy_ms = ts;
        if (rs->check_from != 0 && seq >= rs->check_from)
            rc = kept_matches(rs, m, &rs->diverged);
        rd_kafka_message_destroy(m);
        return rc;
    }
    if (!rs->age_checked) {
        /* The first change after the copy's: would reading on from here miss
         * a deletion? Compaction drops tombstones delete.retention.ms after
         * it reached them, and every change after the copy's last is younger
         * than the newest change of the copy's that Kafka still has. */
        rs->age_checked = true;
        if (rs->local > 0 && rs->copy_ms < rs->stale_before_ms) {
            rs->stale = true;
            rd_kafka_message_destroy(m);
            return KCHAT_OK;
        }
    }
    switch (kchat__cl_fate(pt->last, seq, last)) {
    case KCHAT__CL_SAME:
        break;
    case KCHAT__CL_ENDED: {
        int rc = pending_apply(rs, pt);
        if (rc != KCHAT_OK) {
            rd_kafka_message_destroy(m);
            return rc;
        }
        break;
    }
    case KCHAT__CL_CUT:
        pending_drop(rs, pt);
        break;
    }
    if (pt->n == pt->cap) {
        size_t cap = pt->cap ? 2 * pt->cap : 64;
        rd_kafka_message_t **nv = realloc(pt->msgs, cap * sizeof(*nv));
        if (nv == NULL) {
            rd_kafka_message_destroy(m);
            return KCHAT_ENOMEM;
        }
        pt->msgs = nv;
        pt->cap = cap;
    }
    if (pt->n == 0)
        pt->at = m->offset;
    pt->msgs[pt->n++] = m;
    pt->last = last;
    return seq == last ? pending_apply(rs, pt) : KCHAT_OK;
}

/* Whether changelog record @p m carries the deployment's MAC (always, with
 * no secret): a forged change is never applied.
 * @locality the thread acquiring the shard, or the standby thread */
static bool record_authentic(struct restore *rs, const rd_kafka_message_t *m)
{
    return rs->be->auth == NULL || kchat_auth_verify(rs->be->auth, m, "changelog restore");
}

/* Read partition @p p from @p from to its end (the end of what is
 * committed: control records of transactions are never delivered, so the
 * end is known by the consumer's end-of-partition event, not by an
 * offset); the last record read in *@p last (NULL: none), its offset + 1
 * or the end in *@p next. Errors: KCHAT_EKAFKA (errstr says why).
 * @locality the thread acquiring the shard, or starting */
KCHAT_MUST_CHECK
static int read_to_end(struct restore *rs, int32_t p, int64_t from, rd_kafka_message_t **last,
                       char *errstr, size_t len)
{
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
    int64_t deadline = kchat__monotonic_us() / 1000 + RESTORE_TIMEOUT_MS;
    rd_kafka_resp_err_t err;

    *last = NULL;
    rd_kafka_topic_partition_list_add(tp, KCHAT_TOPIC_CHANGELOG, p)->offset = from;
    err = rd_kafka_assign(rs->rk, tp);
    rd_kafka_topic_partition_list_destroy(tp);
    while (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rs->rk, 100);

        if (m == NULL) {
            if (kchat__monotonic_us() / 1000 > deadline) {
                snprintf(errstr, len, "shard %d: cannot read the end of %s", p,
                         KCHAT_TOPIC_CHANGELOG);
                err = RD_KAFKA_RESP_ERR__TIMED_OUT;
            }
            continue;
        }
        if (m->partition != p) {   /* left from the reader's last use */
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_message_destroy(m);
            break;
        }
        if (m->err || !record_authentic(rs, m)) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (*last != NULL)
            rd_kafka_message_destroy(*last);
        *last = m;
    }
    rd_kafka_assign(rs->rk, NULL);
    if (err && *last != NULL) {
        rd_kafka_message_destroy(*last);
        *last = NULL;
    }
    return err ? KCHAT_EKAFKA : KCHAT_OK;
}

/* The last record of partition @p p (kept in rs->tail, its data set in
 * rs->dataset, its seq in @p seq) and the end offset. @p end is 0 for a
 * partition without records (empty, or only aborted transactions).
 * @locality the thread acquiring the shard, or starting */
KCHAT_MUST_CHECK
static int partition_tail(struct restore *rs, int32_t p, int64_t *end, uint64_t *seq,
                          char *errstr, size_t len)
{
    int64_t lo, hi;
    rd_kafka_resp_err_t err;
    int64_t deadline = kchat__monotonic_us() / 1000 + RESTORE_TIMEOUT_MS;

    *end = 0;
    *seq = 0;
    rs->dataset[0] = '\0';
    if (rs->tail != NULL)
        rd_kafka_message_destroy(rs->tail);
    rs->tail = NULL;
    /* A topic just created may have no leader yet: ask again until the
     * deadline. */
    while ((err = rd_kafka_query_watermark_offsets(rs->rk, KCHAT_TOPIC_CHANGELOG, p, &lo, &hi,
                                                   RESTORE_TIMEOUT_MS)) != 0 &&
           kchat__monotonic_us() / 1000 < deadline)
        kchat__sleep_ms(200);
    if (err) {
        snprintf(errstr, len, "shard %d: cannot read the end of %s: %s", p,
                 KCHAT_TOPIC_CHANGELOG, rd_kafka_err2str(err));
        return KCHAT_EKAFKA;
    }
    rs->first = lo;
    /* The last offsets may be transaction markers: read a window before
     * the end, wider until it holds a record. */
    for (int64_t window = 16; hi > lo; window *= 16) {
        int64_t from = hi - window > lo ? hi - window : lo;
        rd_kafka_message_t *m;
        const void *v;
        size_t vl;
        int rc;

        if ((rc = read_to_end(rs, p, from, &m, errstr, len)) != KCHAT_OK)
            return rc;
        if (m == NULL) {
            if (from == lo)
                break;   /* no record at all */
            continue;
        }
        *seq = header_u64(m, KCHAT_HDR_CL_SEQ);
        if (kchat_header_get(m, KCHAT_HDR_DATASET, &v, &vl) == 0 && vl < sizeof(rs->dataset)) {
            memcpy(rs->dataset, v, vl);
            rs->dataset[vl] = '\0';
        }
        rs->tail = m;
        *end = hi;
        break;
    }
    return KCHAT_OK;
}

/* Read partition @p p from the beginning up to @p end and apply what the
 * shard does not have.
 * @locality the thread acquiring the shard */
KCHAT_MUST_CHECK
static int partition_restore(struct restore *rs, int32_t p, int64_t end, char *errstr,
                             size_t len)
{
    struct pending_txn pt = {0};
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
    rd_kafka_resp_err_t err;
    int64_t idle_since = kchat__monotonic_us() / 1000, next = end, began_ms = kchat__now_ms();
    int rc = KCHAT_OK;

    if (rs->sh->follow_from >= end)   /* the partition is shorter than we knew it */
        rs->sh->follow_from = 0;
    rd_kafka_topic_partition_list_add(tp, KCHAT_TOPIC_CHANGELOG, p)->offset =
        rs->sh->follow_from > 0 ? rs->sh->follow_from : RD_KAFKA_OFFSET_BEGINNING;
    err = rd_kafka_assign(rs->rk, tp);
    rd_kafka_topic_partition_list_destroy(tp);
    if (err)
        rc = KCHAT_EKAFKA;
    while (rc == KCHAT_OK && !rs->diverged && !rs->stale) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rs->rk, 100);
        int64_t offset;

        if (m == NULL) {
            if (kchat__monotonic_us() / 1000 - idle_since > RESTORE_TIMEOUT_MS) {
                snprintf(errstr, len, "shard %d: %s stopped answering while restoring",
                         p, KCHAT_TOPIC_CHANGELOG);
                rc = KCHAT_EKAFKA;
            }
            continue;
        }
        idle_since = kchat__monotonic_us() / 1000;
        if (m->partition != p) {   /* left from the reader's last use */
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* the end of what is committed (transaction markers are not
             * delivered: the last offset is not a record's) */
            next = m->offset;
            rd_kafka_message_destroy(m);
            break;
        }
        if (m->err || !record_authentic(rs, m)) {
            rd_kafka_message_destroy(m);
            continue;
        }
        offset = m->offset;
        rc = restore_record(rs, &pt, m);
        next = offset + 1;
        atomic_store_explicit(&rs->sh->restore_lag, end - next > 0 ? end - next : 0,
                              memory_order_relaxed);
        if (offset >= end - 1)
            break;
    }
    rd_kafka_assign(rs->rk, NULL);
    atomic_store_explicit(&rs->sh->restore_lag, 0, memory_order_relaxed);
    /* The next catch-up reads on from here: the first record of a
     * transaction cut off at the end (it may end later), else the end. */
    if (rc == KCHAT_OK && pt.n > 0 && !rs->diverged && !rs->stale &&
        kchat__cl_fate_at_end(!rs->be->mock_broker) == KCHAT__CL_ENDED)
        rc = pending_apply(rs, &pt);
    if (rc == KCHAT_OK && !rs->stale) {
        rs->sh->follow_from = pt.n > 0 ? pt.at : next;
        rs->sh->followed_ms = began_ms;
    }
    pending_drop(rs, &pt);   /* a transaction cut off at the end */
    free(pt.msgs);
    if (rs->t != NULL) {
        if (rc == KCHAT_OK && !rs->diverged && !rs->stale &&
            (rc = kchat_store_changelog_restored(rs->t, rs->applied_to)) ==
                                  KCHAT_OK)
            rc = kchat_txn_commit(rs->t);
        else
            kchat_txn_abort(rs->t);
        rs->t = NULL;
        rs->in_txn = 0;
    }
    if (rc != KCHAT_OK && errstr[0] == '\0')
        snprintf(errstr, len, "shard %d: restoring from %s: %s", p, KCHAT_TOPIC_CHANGELOG,
                 kchat_strerror(rc));
    return rc;
}

/* A shard's own position: its last committed change, the first change it
 * keeps for Kafka (0: none kept), its data set ("" when none). */
struct position {
    uint64_t last, first_kept;
    char dataset[33];
};

/* kchat_store_changelog_scan() callback: the first kept change's seq. */
static int first_kept(void *arg, const kchat_change *ch)
{
    *(uint64_t *)arg = ch->seq;
    return 1;
}

/* @p sh's position.
 * @locality the thread acquiring the shard, or starting */
KCHAT_MUST_CHECK
static int shard_position(struct shard *sh, struct position *pos)
{
    uint64_t next;
    kchat_txn *t;
    int rc;

    memset(pos, 0, sizeof(*pos));
    if ((rc = kchat_txn_begin(sh->store, false, &t)) != KCHAT_OK)
        return rc;
    rc = kchat_store_changelog_next(t, &next);
    if (rc == KCHAT_OK)
        rc = kchat_store_changelog_scan(t, 0, first_kept, &pos->first_kept);
    if (rc == KCHAT_OK) {
        int drc = kchat_store_meta_get(t, "dataset", pos->dataset, sizeof(pos->dataset));
        if (drc == KCHAT_ENOTFOUND)
            pos->dataset[0] = '\0';
        else if (drc != KCHAT_OK)
            rc = drc;
    }
    kchat_txn_abort(t);
    pos->last = next - 1;
    return rc;
}

/* The copy's kept changes up to @p upto are in Kafka (the read found each
 * there as the copy has it) and later writers' changes follow them: they
 * must not be produced again, after those (a restore would apply the older
 * values last). Delete them.
 * @locality the thread acquiring the shard */
KCHAT_MUST_CHECK
static int kept_forget(struct shard *sh, uint64_t upto)
{
    kchat_txn *t;
    int rc;

    if ((rc = kchat_txn_begin(sh->store, true, &t)) != KCHAT_OK)
        return rc;
    if ((rc = kchat_store_changelog_trim(t, upto)) != KCHAT_OK) {
        kchat_txn_abort(t);
        return rc;
    }
    return kchat_txn_commit(t);
}

/* Whether @p sh's copy diverged from the changelog, as far as the
 * partition's last record (@p tail_seq) tells: it falls among the changes
 * the copy keeps unconfirmed, and is not the copy's own. (When Kafka holds
 * later changes, the read of the partition checks every record numbered
 * among the kept ones: kept_matches().)
 * @locality the thread acquiring the shard */
KCHAT_MUST_CHECK
static int diverged(struct restore *rs, struct shard *sh, const struct position *pos,
                    uint64_t tail_seq, bool *out)
{
    struct same_arg sa = {.m = rs->tail};
    kchat_txn *t;
    int rc;

    *out = false;
    if (pos->first_kept == 0 || tail_seq < pos->first_kept || tail_seq > pos->last)
        return KCHAT_OK;   /* nothing unconfirmed, before it, or read through below */
    if ((rc = kchat_txn_begin(sh->store, false, &t)) != KCHAT_OK)
        return rc;
    rc = kchat_store_changelog_scan(t, tail_seq, same_change, &sa);
    kchat_txn_abort(t);
    *out = !sa.same;
    return rc;
}

/* Why a copy is set aside and restored whole. */
enum aside { ASIDE_NONE, ASIDE_DATASET, ASIDE_DIVERGED, ASIDE_STALE };

static const char *const aside_why[] = {
    [ASIDE_DATASET] = "is another data set's",
    [ASIDE_DIVERGED] = "diverged from the changelog",
    [ASIDE_STALE] = "is older than --changelog-copy-max-age (deletions since may be gone "
                    "from the changelog)",
};

/* Set @p sh's copy aside for @p why (logged, and counted as diverged or
 * stale): the next catch-up reads its partition from the beginning, into
 * an empty copy. Errors as kchat__datadir_shard_set_aside().
 * @locality the thread acquiring the shard, which no worker touches */
KCHAT_MUST_CHECK
static int copy_aside(struct restore *rs, struct shard *sh, enum aside why, char *errstr,
                      size_t len)
{
    int rc;

    sh->follow_from = 0;
    if ((rc = kchat__datadir_shard_set_aside(rs->be, sh, aside_why[why], errstr, len)) !=
        KCHAT_OK)
        return rc;
    atomic_fetch_add(why == ASIDE_STALE ? &rs->be->stats.stale_copies : &rs->be->stats.diverged,
                     1);
    return KCHAT_OK;
}

/* Bring @p sh up to its changelog partition: nothing when it is current
 * (or ahead, with changes of its own to produce); the changes after its
 * own when it is behind; the whole partition, after setting the copy
 * aside, when it diverged, belongs to another data set or is too old.
 * @locality the thread acquiring the shard, which no worker touches */
KCHAT_MUST_CHECK
static int shard_catch_up(struct restore *rs, struct shard *sh, bool *restored, char *errstr,
                          size_t len)
{
    struct position pos;
    uint64_t tail_seq;
    int64_t end, t0 = kchat__monotonic_us();
    int32_t p = (int32_t)sh->id;
    enum aside aside = ASIDE_NONE;   /* set aside before reading: why */
    bool bad = false;
    int rc;

    rs->sh = sh;
    rs->changes = rs->records = rs->dropped = 0;
    if ((rc = shard_position(sh, &pos)) != KCHAT_OK) {
        snprintf(errstr, len, "shard %d: %s", p, kchat_strerror(rc));
        return rc;
    }
    if ((rc = partition_tail(rs, p, &end, &tail_seq, errstr, len)) != KCHAT_OK)
        return rc;
    if (end == 0 || rs->dataset[0] == '\0')
        return KCHAT_OK;   /* nothing in Kafka (a new deployment, or an older kchat's) */
    if (pos.dataset[0] != '\0' && strcmp(pos.dataset, rs->dataset) != 0) {
        aside = ASIDE_DATASET;   /* another deployment's copy (the start refuses most) */
    } else if ((rc = diverged(rs, sh, &pos, tail_seq, &bad)) != KCHAT_OK) {
        snprintf(errstr, len, "shard %d: %s", p, kchat_strerror(rc));
        return rc;
    } else if (bad) {
        aside = ASIDE_DIVERGED;
    }
    if (aside != ASIDE_NONE) {
        *restored = true;
        if ((rc = copy_aside(rs, sh, aside, errstr, len)) != KCHAT_OK)
            return rc;
        memset(&pos, 0, sizeof(pos));
    } else if (tail_seq <= pos.last) {
        return KCHAT_OK;   /* up to date (or ahead: its kept changes go out next) */
    }
    rs->local = pos.last;
    rs->applied_to = pos.last;
    rs->check_from = pos.first_kept;
    rs->diverged = false;
    rs->copy_ms = sh->follow_from > 0 ? sh->followed_ms : -1;
    rs->stale_before_ms = kchat__now_ms() - rs->be->cfg->changelog_copy_max_age * 1000;
    rs->age_checked = rs->stale = false;
    *restored = true;
    /* The mock cluster keeps 5 MB of each partition and drops the oldest
     * records past that (docs/reliability.md): whatever only they held
     * is not restored. A compacted topic on Kafka starts at 0. */
    if (rs->be->mock_broker && rs->first > 0 && rs->sh->follow_from < rs->first)
        fprintf(stderr, "kchat: shard %d: the embedded broker has dropped the first %" PRId64
                " records of %s [%d] (it keeps 5 MB of a partition): this restore lacks "
                "what only they held\n", p, rs->first, KCHAT_TOPIC_CHANGELOG, p);
    if ((rc = partition_restore(rs, p, end, errstr, len)) != KCHAT_OK)
        return rc;
    if (rs->diverged || rs->stale) {
        /* another writer numbered among our unconfirmed changes, or the
         * copy is older than the deletions Kafka is sure to keep */
        if ((rc = copy_aside(rs, sh, rs->stale ? ASIDE_STALE : ASIDE_DIVERGED, errstr, len)) !=
            KCHAT_OK)
            return rc;
        rs->local = rs->applied_to = rs->check_from = 0;
        rs->diverged = rs->stale = false;
        rs->changes = rs->records = rs->dropped = 0;
        if ((rc = partition_restore(rs, p, end, errstr, len)) != KCHAT_OK)
            return rc;
    } else if (rs->check_from != 0 && (rc = kept_forget(sh, rs->local)) != KCHAT_OK) {
        snprintf(errstr, len, "shard %d: %s", p, kchat_strerror(rc));
        return rc;
    }
    atomic_fetch_add(&rs->be->stats.restored_changes, rs->changes);
    atomic_fetch_add(&rs->be->stats.restore_records, rs->records);
    atomic_fetch_add(&rs->be->stats.restore_ms, (uint64_t)(kchat__monotonic_us() - t0) / 1000);
    fprintf(stderr, "kchat: shard %d: restored from %s: %" PRIu64 " records read, %" PRIu64
            " changes applied (%" PRIu64 "..%" PRIu64 "), %" PRIu64 " of unfinished "
            "transactions dropped, in %.2f s\n", p, KCHAT_TOPIC_CHANGELOG, rs->records,
            rs->changes, rs->local + 1, rs->applied_to, rs->dropped,
            (double)(kchat__monotonic_us() - t0) / 1e6);
    return KCHAT_OK;
}

rd_kafka_t *kchat__restore_consumer(kchat_backend *be, char *errstr, size_t len)
{
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;

    if ((conf = kchat__kafka_conf(be, errstr, len)) == NULL)
        return NULL;
    /* fetch.wait.max.ms: the last record of a partition is asked for alone,
     * and the default (500 ms) would be waited for each shard. */
    if (rd_kafka_conf_set(conf, "group.id", "kchat-restore", errstr, len) ||
        rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", errstr, len) ||
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, len) ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, len) ||
        rd_kafka_conf_set(conf, "isolation.level", "read_committed", errstr, len) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, len) ||
        rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, len)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    if ((rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, len)) == NULL)
        rd_kafka_conf_destroy(conf);
    return rk;
}

int kchat__changelog_catch_up(kchat_backend *be, rd_kafka_t *rk, struct shard *sh,
                              bool *restored, char *errstr, size_t len)
{
    struct restore rs = {.be = be, .rk = rk};
    int rc;

    *restored = false;
    if (!be->changelog)
        return KCHAT_OK;
    errstr[0] = '\0';
    rc = shard_catch_up(&rs, sh, restored, errstr, len);
    if (rs.tail != NULL)
        rd_kafka_message_destroy(rs.tail);
    return rc;
}

int kchat__changelog_dataset(kchat_backend *be, char dataset[33], char *errstr, size_t len)
{
    struct restore rs = {.be = be};
    int rc = KCHAT_OK;

    dataset[0] = '\0';
    if (!be->changelog)
        return KCHAT_OK;
    errstr[0] = '\0';
    if ((rs.rk = kchat__restore_consumer(be, errstr, len)) == NULL)
        return KCHAT_EKAFKA;
    for (int p = 0; rc == KCHAT_OK && dataset[0] == '\0' && p < be->partitions; p++) {
        int64_t end;
        uint64_t seq;

        if ((rc = partition_tail(&rs, p, &end, &seq, errstr, len)) == KCHAT_OK)
            memcpy(dataset, rs.dataset, sizeof(rs.dataset));
    }
    if (rs.tail != NULL)
        rd_kafka_message_destroy(rs.tail);
    rd_kafka_destroy(rs.rk);
    return rc;
}
