/*
 * The user directory: every user's public profile (name, status, version),
 * published to kchat-directory by the user's shard through its outbox, and
 * read back into a replica (DATA/directory) that any shard can look users
 * up in. The replica takes a shard's own records at once when they are
 * committed (producer.c) and everyone's from Kafka on its own thread;
 * the newest version wins. The same thread reads kchat-rooms into the
 * room summaries of the same replica (summaries.c).
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actors.h"
#include "replicas.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

int kchat__directory_publish(struct ctx *c, const json_t *user)
{
    json_t *seen = json_object_get(user, "lastSeen");
    json_t *e = json_pack("{s:O, s:O, s:O, s:O, s:b, s:s}",
                          "userId", json_object_get(user, "userId"),
                          "userName", json_object_get(user, "userName"),
                          "userStatus", json_object_get(user, "userStatus"),
                          "ver", json_object_get(user, "ver"),
                          "online", json_is_true(json_object_get(user, "online")),
                          "lastSeen", json_is_string(seen) ? json_string_value(seen) : "");
    const char *id = json_string_value(json_object_get(user, "userId"));
    char *s;
    int rc;

    if (e == NULL)
        return KCHAT_ENOMEM;
    s = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    if (s == NULL)
        return KCHAT_ENOMEM;
    rc = kchat__out_append(c, OUT_REPLY, 0, KCHAT_TOPIC_DIRECTORY, -1, id, strlen(id),
                           s, strlen(s), NULL, 0);
    free(s);
    return rc;
}

void kchat__directory_write_through(kchat_backend *be, const char *topic, const void *value,
                                    size_t len)
{
    json_t *e;
    int rc;

    if (strcmp(topic, KCHAT_TOPIC_DIRECTORY) != 0 ||
        (e = json_loadb(value ? value : "", len, 0, NULL)) == NULL)
        return;
    if ((rc = kchat__directory_apply(be, e)) != KCHAT_OK)
        fprintf(stderr, "kchat: directory replica: %s\n", kchat_strerror(rc));
    json_decref(e);
}

json_t *kchat__directory_get(kchat_backend *be, const char *user_id)
{
    kchat_txn *t;
    json_t *v;

    if (kchat_txn_begin(be->directory, false, &t) != KCHAT_OK)
        return NULL;
    v = kchat__get_json(t, KCHAT_TBL_DIRECTORY, user_id, strlen(user_id));
    kchat_txn_abort(t);
    return v;
}

/* The user id of profile @p entry, or NULL when it has no valid one. */
static const char *profile_id(const json_t *entry)
{
    const char *id = json_string_value(json_object_get(entry, "userId"));

    return id != NULL && kchat_valid_id(id, strlen(id)) ? id : NULL;
}

/* Store profile @p entry in the replica's write transaction @p t unless
 * the replica holds the same or a later version of it; @p *wrote is set
 * when it was stored. KCHAT_EINVAL: no valid userId; store errors.
 * @locality the thread holding @p t */
KCHAT_MUST_CHECK
static int directory_apply_in(kchat_txn *t, const json_t *entry, bool *wrote)
{
    const char *id = profile_id(entry);
    json_int_t ver = json_integer_value(json_object_get(entry, "ver"));
    json_t *old;
    int rc;

    if (id == NULL)
        return KCHAT_EINVAL;
    old = kchat__get_json(t, KCHAT_TBL_DIRECTORY, id, strlen(id));
    if (old && json_integer_value(json_object_get(old, "ver")) >= ver) {
        json_decref(old);
        return KCHAT_OK;
    }
    json_decref(old);
    if ((rc = kchat__put_json(t, KCHAT_TBL_DIRECTORY, id, strlen(id), entry)) == KCHAT_OK)
        *wrote = true;
    return rc;
}

int kchat__replica_apply(kchat_backend *be, kchat__replica_apply_fn one, json_t *const *items,
                         size_t n)
{
    int rc = KCHAT_EMAPFULL;

    for (int tries = 0; rc == KCHAT_EMAPFULL && tries < KCHAT__REPLICA_MAPFULL_TRIES; tries++) {
        bool wrote = false, valid = false;
        kchat_txn *t;

        if ((rc = kchat_txn_begin(be->directory, true, &t)) != KCHAT_OK)
            return rc;
        for (size_t i = 0; i < n && (rc == KCHAT_OK || rc == KCHAT_EINVAL); i++)
            if (items[i] != NULL && (rc = one(t, items[i], &wrote)) == KCHAT_OK)
                valid = true;
        if (rc == KCHAT_EINVAL && valid)
            rc = KCHAT_OK;   /* the last one skipped, others taken */
        if ((rc == KCHAT_OK || rc == KCHAT_EINVAL) && wrote) {
            int crc = kchat_txn_commit(t);
            rc = crc != KCHAT_OK ? crc : rc;
        } else {
            kchat_txn_abort(t);
        }
    }
    return rc;
}

int kchat__directory_apply(kchat_backend *be, const json_t *entry)
{
    json_t *one = (json_t *)entry;

    if (profile_id(entry) == NULL)
        return KCHAT_EINVAL;   /* no profile: refused before the writer lock is taken */
    return kchat__replica_apply(be, directory_apply_in, &one, 1);
}

/* ---- the replica's reader ---- */

/* Most records the directory thread takes at once: the profiles and the
 * room summaries among them go to the replica in one transaction each. */
#define DIR_BATCH 256

/* How often a start waiting for the replica says so, and how long it waits. */
#define CATCH_UP_LOG_MS 10000
#define CATCH_UP_MAX_MS 600000

/* How often the directory thread stores how far the replica has read
 * (and once more at stop): a restart reads again at most that much. */
#define POSITIONS_SAVE_MS 1000

/* Kafka's answer to the question of every partition's first offset or end,
 * at the start. */
#define ENDS_TIMEOUT_MS 10000

/* The replica's meta: the cluster whose offsets its offsets table holds. */
#define META_CLUSTER "replica_cluster_id"

/* What the directory thread took from one poll round, for the replica. */
struct dir_batch {
    json_t *users[DIR_BATCH];   /* profiles (NULL: did not parse) */
    json_t *sums[DIR_BATCH];    /* room summaries (NULL: did not parse) */
    size_t n_users, n_sums;
};

/* The directory thread's own state, per partition it reads in dir_index()'s
 * order (kchat-directory's partitions, then kchat-rooms').
 * @locality the directory thread */
struct dir_reader {
    size_t parts;
    int64_t *lo, *end;      /* each partition's offsets at the start; end -1: not known */
    int64_t *next;          /* the next offset to apply: what the replica holds all
                               before; RD_KAFKA_OFFSET_BEGINNING: nothing yet */
    int64_t *saved;         /* next as the replica last stored it */
    bool *at_end;           /* read to its end at the start once */
    size_t ended;           /* how many are */
    bool keep_positions;    /* false once a round could not be applied: the
                               next start reads again from what was stored */
    int64_t saved_ms;       /* when the positions were last stored */
    struct dir_batch b;
};

/* The topic and partition of index @p i (dir_index()'s order). */
static const char *part_topic(const kchat_backend *be, size_t i, int32_t *p)
{
    *p = (int32_t)(i % (size_t)be->partitions);
    return i < (size_t)be->partitions ? KCHAT_TOPIC_DIRECTORY : KCHAT_TOPIC_ROOMS;
}

/* The index of (@p topic, @p partition) in dir_index()'s order
 * (kchat-directory's partitions, then kchat-rooms'), or -1 for neither. */
static int part_index(const kchat_backend *be, const char *topic, int32_t partition)
{
    if (partition < 0 || partition >= be->partitions)
        return -1;
    if (!strcmp(topic, KCHAT_TOPIC_DIRECTORY))
        return partition;
    return strcmp(topic, KCHAT_TOPIC_ROOMS) ? -1 : be->partitions + partition;
}

/* Which of the 2 * partitions the directory thread reads @p m is from:
 * kchat-directory's partitions first, then kchat-rooms'; -1 for neither
 * (an error event that names no partition has no topic).
 * @locality the directory thread */
static int dir_index(const kchat_backend *be, const rd_kafka_message_t *m)
{
    if (m->rkt == NULL)
        return -1;   /* an error event of no partition */
    return part_index(be, rd_kafka_topic_name(m->rkt), m->partition);
}

/* One record of kchat-rooms (@p rooms) or kchat-directory, if it is of
 * this data set, parsed onto @p b for the round's transactions (NULL when
 * it does not parse). Room summaries are always tagged (every kchat that
 * writes kchat-rooms tags them), so an untagged one is never ours.
 * @locality the directory thread */
static void directory_record(kchat_backend *be, const rd_kafka_message_t *m, bool rooms,
                             struct dir_batch *b)
{
    const void *value = m->payload ? m->payload : "";

    if (rooms) {
        if (!kchat__dataset_ours(be, m, false, 2))
            atomic_fetch_add(&be->stats.foreign_rooms, 1);
        else
            b->sums[b->n_sums++] = json_loadb(value, m->len, 0, NULL);
    } else if (!kchat__dataset_ours(be, m, be->dataset_legacy, 1)) {
        atomic_fetch_add(&be->stats.foreign_directory, 1);
    } else {
        b->users[b->n_users++] = json_loadb(value, m->len, 0, NULL);
    }
}

/* The profiles of a round into the replica (records that are no user's
 * profile are skipped), then freed. KCHAT_OK, or the store error it logged.
 * @locality the directory thread */
KCHAT_MUST_CHECK
static int users_take(kchat_backend *be, json_t **users, size_t n)
{
    int rc = n > 0 ? kchat__replica_apply(be, directory_apply_in, users, n) : KCHAT_OK;

    if (rc == KCHAT_EINVAL)
        rc = KCHAT_OK;   /* none was a user's profile (no valid userId), skipped */
    if (rc != KCHAT_OK)
        fprintf(stderr, "kchat: directory replica: %s\n", kchat_strerror(rc));
    for (size_t i = 0; i < n; i++)
        json_decref(users[i]);
    return rc;
}

/* How far the replica had read each partition, from its offsets table, in
 * r->next (RD_KAFKA_OFFSET_BEGINNING where it holds none). Offsets belong
 * to one cluster: when the replica last read another one, or the embedded
 * broker (a new, empty cluster at every start), they are forgotten and
 * this cluster's id kept instead. Errors: store errors.
 * @locality the directory thread */
KCHAT_MUST_CHECK
static int positions_load(kchat_backend *be, struct dir_reader *r)
{
    kchat_txn *t;
    bool cleared;
    int rc;

    for (size_t i = 0; i < r->parts; i++)
        r->next[i] = r->saved[i] = RD_KAFKA_OFFSET_BEGINNING;
    if ((rc = kchat_txn_begin(be->directory, true, &t)) != KCHAT_OK)
        return rc;
    if ((rc = kchat__offsets_settle_cluster(be, t, META_CLUSTER, &cleared)) != KCHAT_OK)
        goto out_abort;
    if (cleared)
        return kchat_txn_commit(t);
    for (size_t i = 0; i < r->parts; i++) {
        int32_t p;
        const char *topic = part_topic(be, i, &p);
        int64_t next;

        rc = kchat_store_offset_get(t, topic, p, &next);
        if (rc == KCHAT_OK && next >= 0)
            r->next[i] = r->saved[i] = next;
        else if (rc != KCHAT_OK && rc != KCHAT_ENOTFOUND)
            goto out_abort;
    }
    rc = KCHAT_OK;
out_abort:
    kchat_txn_abort(t);
    return rc;
}

/* Store r->next where it moved since the last time, in one transaction of
 * the replica; called only once what it covers has been applied. A full
 * map is tried again (KCHAT__REPLICA_MAPFULL_TRIES). Errors: store errors
 * (nothing stored; the next call tries again).
 * @locality the directory thread */
KCHAT_MUST_CHECK
static int positions_save(kchat_backend *be, struct dir_reader *r)
{
    int rc = KCHAT_EMAPFULL;

    for (int tries = 0; rc == KCHAT_EMAPFULL && tries < KCHAT__REPLICA_MAPFULL_TRIES; tries++) {
        bool moved = false;
        kchat_txn *t;

        if ((rc = kchat_txn_begin(be->directory, true, &t)) != KCHAT_OK)
            return rc;
        for (size_t i = 0; i < r->parts && rc == KCHAT_OK; i++) {
            int32_t p;
            const char *topic = part_topic(be, i, &p);

            if (r->next[i] >= 0 && r->next[i] != r->saved[i]) {
                rc = kchat_store_offset_set(t, topic, p, r->next[i]);
                moved = true;
            }
        }
        if (rc == KCHAT_OK && moved)
            rc = kchat_txn_commit(t);
        else
            kchat_txn_abort(t);
    }
    if (rc == KCHAT_OK)
        memcpy(r->saved, r->next, r->parts * sizeof(*r->saved));
    return rc;
}

/* Every partition's first offset (@p spec RD_KAFKA_OFFSET_SPEC_EARLIEST) or
 * end (..._LATEST) into @p out, in one ListOffsets call for all of them;
 * -1 where Kafka gave none within ENDS_TIMEOUT_MS.
 * @locality the directory thread */
static void offsets_list(kchat_backend *be, size_t parts, rd_kafka_OffsetSpec_t spec,
                         int64_t *out)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)parts);
    rd_kafka_queue_t *q = rd_kafka_queue_new(be->dir_consumer);
    rd_kafka_AdminOptions_t *opt =
        rd_kafka_AdminOptions_new(be->dir_consumer, RD_KAFKA_ADMIN_OP_LISTOFFSETS);
    rd_kafka_event_t *ev = NULL;
    const rd_kafka_ListOffsets_result_t *res;
    const rd_kafka_ListOffsetsResultInfo_t **infos;
    size_t n = 0;

    for (size_t i = 0; i < parts; i++) {
        int32_t p;
        const char *topic = part_topic(be, i, &p);

        out[i] = -1;
        rd_kafka_topic_partition_list_add(list, topic, p)->offset = spec;
    }
    if (opt != NULL)
        rd_kafka_AdminOptions_set_request_timeout(opt, ENDS_TIMEOUT_MS, NULL, 0);
    rd_kafka_ListOffsets(be->dir_consumer, list, opt, q);
    ev = rd_kafka_queue_poll(q, ENDS_TIMEOUT_MS + 1000);
    res = ev != NULL ? rd_kafka_event_ListOffsets_result(ev) : NULL;
    infos = res != NULL ? rd_kafka_ListOffsets_result_infos(res, &n) : NULL;
    for (size_t k = 0; k < n; k++) {
        const rd_kafka_topic_partition_t *tp =
            rd_kafka_ListOffsetsResultInfo_topic_partition(infos[k]);
        int i = part_index(be, tp->topic, tp->partition);

        if (i >= 0 && tp->err == RD_KAFKA_RESP_ERR_NO_ERROR && tp->offset >= 0)
            out[i] = tp->offset;
    }
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    if (opt != NULL)
        rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
    rd_kafka_topic_partition_list_destroy(list);
}

/* Each partition's offsets at the start in r->lo and r->end (-1: could not
 * be asked; for an end, its end-of-partition event tells then): two
 * requests for all partitions, not two per partition.
 * @locality the directory thread */
static void ends_query(kchat_backend *be, struct dir_reader *r)
{
    offsets_list(be, r->parts, RD_KAFKA_OFFSET_SPEC_EARLIEST, r->lo);
    offsets_list(be, r->parts, RD_KAFKA_OFFSET_SPEC_LATEST, r->end);
}

/* Where each partition is read from, and which are at their end already:
 * the stored positions (positions_load()), but from the beginning where
 * one lies beyond the partition's end (the topic was made anew); a
 * partition empty at the start, or read up to its end before, is at its
 * end. Then the consumer is assigned those offsets. Errors: store errors,
 * KCHAT_EKAFKA (the assignment; said on stderr).
 * @locality the directory thread */
KCHAT_MUST_CHECK
static int reader_begin(kchat_backend *be, struct dir_reader *r)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_resp_err_t err;
    int rc;

    if ((rc = positions_load(be, r)) != KCHAT_OK) {
        fprintf(stderr, "kchat: directory replica: its stored offsets: %s\n",
                kchat_strerror(rc));
        return rc;
    }
    ends_query(be, r);
    list = rd_kafka_topic_partition_list_new((int)r->parts);
    for (size_t i = 0; i < r->parts; i++) {
        int32_t p;
        const char *topic = part_topic(be, i, &p);

        if (r->end[i] >= 0 && r->next[i] > r->end[i]) {
            fprintf(stderr, "kchat: directory replica: %s [%d] ends at %" PRId64 " but was "
                    "read up to %" PRId64 " before: reading it from its beginning\n",
                    topic, (int)p, r->end[i], r->next[i]);
            r->next[i] = RD_KAFKA_OFFSET_BEGINNING;
        }
        r->at_end[i] = r->end[i] >= 0 && (r->end[i] <= r->lo[i] || r->next[i] >= r->end[i]);
        r->ended += r->at_end[i];
        rd_kafka_topic_partition_list_add(list, topic, p)->offset = r->next[i];
    }
    err = rd_kafka_assign(be->dir_consumer, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kchat: directory replica: cannot assign %s and %s: %s\n",
                KCHAT_TOPIC_DIRECTORY, KCHAT_TOPIC_ROOMS, rd_kafka_err2str(err));
        return KCHAT_EKAFKA;
    }
    if (r->ended == r->parts)
        atomic_store(&be->dir_caught_up, true);
    return KCHAT_OK;
}

/* One poll round: a record or event, then what has arrived meanwhile, up
 * to DIR_BATCH, applied to the replica; the positions and ends move with
 * what was applied.
 * @locality the directory thread */
static void reader_round(kchat_backend *be, struct dir_reader *r)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(be->dir_consumer, 100);
    struct dir_batch *b = &r->b;
    size_t newly_ended = 0;
    int urc, src;

    for (size_t taken = 1; m != NULL; taken++) {
        int i = dir_index(be, m);

        /* at the end: its first end-of-partition event (which also covers
         * a last record that compaction removed), or the record before the
         * end it had at the start */
        if (i >= 0 && !r->at_end[i] &&
            (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ||
             (!m->err && r->end[i] > 0 && m->offset + 1 >= r->end[i]))) {
            r->at_end[i] = true;
            newly_ended++;
        }
        /* i < 0 cannot be a record: only partitions 0..P-1 are assigned */
        if (!m->err && i >= 0) {
            if (be->auth == NULL || kchat_auth_verify(be->auth, m, "directory"))
                directory_record(be, m, i >= be->partitions, b);
            atomic_fetch_add(&be->dir_records, 1);
            r->next[i] = m->offset + 1;
        } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && i >= 0 &&
                   m->offset > r->next[i]) {
            r->next[i] = m->offset;   /* past records compaction removed */
        }
        rd_kafka_message_destroy(m);
        m = taken < DIR_BATCH ? rd_kafka_consumer_poll(be->dir_consumer, 0) : NULL;
    }
    urc = users_take(be, b->users, b->n_users);
    src = kchat__room_summaries_take(be, b->sums, b->n_sums);
    b->n_users = b->n_sums = 0;
    if ((urc != KCHAT_OK || src != KCHAT_OK) && r->keep_positions) {
        fprintf(stderr, "kchat: directory replica: not storing how far it has read until "
                "the next start, which reads again from there\n");
        r->keep_positions = false;
    }
    /* what was read up to each end is in the replica now */
    if (newly_ended > 0 && (r->ended += newly_ended) == r->parts)
        atomic_store(&be->dir_caught_up, true);
}

static void reader_free(struct dir_reader *r)
{
    if (r == NULL)
        return;
    free(r->lo);
    free(r->end);
    free(r->next);
    free(r->saved);
    free(r->at_end);
    free(r);
}

static struct dir_reader *reader_new(const kchat_backend *be)
{
    struct dir_reader *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->parts = 2 * (size_t)be->partitions;
    r->keep_positions = true;
    r->lo = calloc(r->parts, sizeof(*r->lo));
    r->end = calloc(r->parts, sizeof(*r->end));
    r->next = calloc(r->parts, sizeof(*r->next));
    r->saved = calloc(r->parts, sizeof(*r->saved));
    r->at_end = calloc(r->parts, sizeof(*r->at_end));
    if (!r->lo || !r->end || !r->next || !r->saved || !r->at_end) {
        reader_free(r);
        return NULL;
    }
    return r;
}

/* The directory thread's main: apply every kchat-directory and kchat-rooms
 * record of this data set to the replica, from where it had read before,
 * until the backend stops, storing how far every POSITIONS_SAVE_MS. Once
 * every partition has been read to the end it had when the thread began
 * and what was read is applied, be->dir_caught_up is set; if it cannot
 * begin, be->dir_failed says why.
 * @locality the directory thread */
static void *directory_main(void *arg)
{
    kchat_backend *be = arg;
    struct dir_reader *r = reader_new(be);
    int rc = r == NULL ? KCHAT_ENOMEM : reader_begin(be, r);

    if (rc != KCHAT_OK) {
        if (rc == KCHAT_ENOMEM)
            fprintf(stderr, "kchat: directory replica: out of memory; not reading %s and %s\n",
                    KCHAT_TOPIC_DIRECTORY, KCHAT_TOPIC_ROOMS);
        atomic_store(&be->dir_failed, rc);
        goto out_free;
    }
    r->saved_ms = kchat__monotonic_us() / 1000;
    while (!atomic_load(&be->stopping)) {
        int64_t now;

        reader_round(be, r);
        now = kchat__monotonic_us() / 1000;
        if (r->keep_positions && now - r->saved_ms >= POSITIONS_SAVE_MS) {
            if ((rc = positions_save(be, r)) != KCHAT_OK)
                fprintf(stderr, "kchat: directory replica: storing its offsets: %s\n",
                        kchat_strerror(rc));
            r->saved_ms = now;
        }
    }
    if (r->keep_positions && (rc = positions_save(be, r)) != KCHAT_OK)
        fprintf(stderr, "kchat: directory replica: storing its offsets: %s\n",
                kchat_strerror(rc));
out_free:
    reader_free(r);
    return NULL;
}

int kchat__directory_wait(kchat_backend *be, char *errstr, size_t len)
{
    int64_t start = kchat__monotonic_us() / 1000, now = start, logged = start;

    while (!atomic_load(&be->dir_caught_up)) {
        int failed = atomic_load(&be->dir_failed);

        if (failed != KCHAT_OK) {
            snprintf(errstr, len, "the directory replica cannot read %s and %s: %s",
                     KCHAT_TOPIC_DIRECTORY, KCHAT_TOPIC_ROOMS, kchat_strerror(failed));
            return failed;
        }
        if (now - start >= CATCH_UP_MAX_MS) {
            snprintf(errstr, len, "the directory replica did not read %s and %s to their end "
                     "within %d s (%" PRIu64 " records read)", KCHAT_TOPIC_DIRECTORY,
                     KCHAT_TOPIC_ROOMS, CATCH_UP_MAX_MS / 1000, atomic_load(&be->dir_records));
            return KCHAT_ETIMEDOUT;
        }
        if (now - logged >= CATCH_UP_LOG_MS) {
            fprintf(stderr, "kchat serve: waiting for the directory replica to read %s and %s "
                    "(%" PRIu64 " records so far)\n", KCHAT_TOPIC_DIRECTORY, KCHAT_TOPIC_ROOMS,
                    atomic_load(&be->dir_records));
            logged = now;
        }
        kchat__sleep_ms(10);
        now = kchat__monotonic_us() / 1000;
    }
    fprintf(stderr, "kchat: directory replica: read %s and %s to their end: %" PRIu64
            " records in %.2f s\n", KCHAT_TOPIC_DIRECTORY, KCHAT_TOPIC_ROOMS,
            atomic_load(&be->dir_records), (double)(now - start) / 1000.0);
    return KCHAT_OK;
}

int kchat__directory_start(kchat_backend *be, char *errstr, size_t len)
{
    rd_kafka_conf_t *conf = kchat__kafka_conf(be, errstr, len);
    char gid[64];

    if (conf == NULL)
        return KCHAT_ECONFIG;
    snprintf(gid, sizeof(gid), "kchat-directory-%ld-%u", (long)getpid(), randombytes_random());
    rd_kafka_conf_set(conf, "group.id", gid, NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    /* a stored offset no longer in the partition: everything that is */
    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", NULL, 0);
    /* the first end of each partition tells kchat__directory_wait() */
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", NULL, 0);
    if ((be->dir_consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, len)) == NULL) {
        rd_kafka_conf_destroy(conf);
        return KCHAT_EKAFKA;
    }
    rd_kafka_poll_set_consumer(be->dir_consumer);
    /* the thread assigns the partitions, at the offsets the replica stored */
    if (pthread_create(&be->dir_thread, NULL, directory_main, be) != 0) {
        snprintf(errstr, len, "cannot start the directory thread");
        kchat__directory_stop(be);
        return KCHAT_ENOMEM;
    }
    be->dir_running = true;
    return KCHAT_OK;
}

void kchat__directory_stop(kchat_backend *be)
{
    if (be->dir_running)
        pthread_join(be->dir_thread, NULL);
    be->dir_running = false;
    if (be->dir_consumer) {
        rd_kafka_consumer_close(be->dir_consumer);
        rd_kafka_destroy(be->dir_consumer);
    }
    be->dir_consumer = NULL;
}
