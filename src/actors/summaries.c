/*
 * Room summaries: what a backend needs to know about a room it does not own
 * (roomId, roomName, participants, lastSeq), so that user-search-room never
 * reads another shard's environment. The room's shard publishes the summary
 * to kchat-rooms (compacted, keyed by roomId) through its outbox, in the
 * transaction that changes the room (creation, a message, a read cursor,
 * an invite, a leave), at most once per room per transaction. Every backend keeps them in table ROOMS of its
 * replica environment (DATA/directory, beside the user directory): a
 * shard's own summaries when its committed records are produced (producer.c,
 * changelog.c: once Kafka has the transaction's changes), everyone's
 * from Kafka on the directory thread (directory.c). The higher version
 * wins (every change of a room bumps its `ver`; summaries of an older
 * kchat have none, and then the higher lastSeq wins), so the two paths,
 * repeats and replays commute.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors.h"
#include "replicas.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

/* Meta of the replica: set once every shard has published all its rooms. */
#define META_FILLED "room_summaries"
#define META_SHARD_PUBLISHED "room_summaries_published"   /* a shard's own mark */

/* The summary of stored room @p room (a new reference) and its compact
 * JSON in @p *text (malloc'd). KCHAT_EINVAL: the room has no roomId, name
 * or participants; KCHAT_ENOMEM. */
KCHAT_MUST_CHECK
static int summary_of(const json_t *room, json_t **sum, char **text)
{
    const char *id = json_string_value(json_object_get(room, "roomId"));
    json_t *name = json_object_get(room, "roomName"), *parts = json_object_get(room, "participants");

    if (id == NULL || name == NULL || parts == NULL)
        return KCHAT_EINVAL;
    *sum = json_pack("{s:s, s:O, s:O, s:I, s:I}", "roomId", id, "roomName", name,
                     "participants", parts,
                     "lastSeq", json_integer_value(json_object_get(room, "lastSeq")),
                     "ver", json_integer_value(json_object_get(room, "ver")));
    if (*sum != NULL && json_is_object(json_object_get(room, "reads")))
        json_object_set(*sum, "reads", json_object_get(room, "reads"));
    if (*sum == NULL)
        return KCHAT_ENOMEM;
    if ((*text = json_dumps(*sum, JSON_COMPACT)) == NULL) {
        json_decref(*sum);
        return KCHAT_ENOMEM;
    }
    return KCHAT_OK;
}

/* The roomId of summary @p sum (made by summary_of()). */
static const char *summary_id(const json_t *sum)
{
    return json_string_value(json_object_get(sum, "roomId"));
}

static size_t slot_of(const char *id)
{
    return kchat_murmur2(id, strlen(id)) & (KCHAT__ROOM_SUM_SLOTS - 1);
}

/* Whether @p r is the summary of room @p id published by shard @p shard. */
static bool is_summary_of(const struct out_rec *r, uint32_t shard, const char *id)
{
    size_t len = strlen(id);

    return r->shard == shard && r->kind == OUT_REPLY && !strcmp(r->topic, KCHAT_TOPIC_ROOMS) &&
           r->key_len == len && memcmp(r->key, id, len) == 0;
}

/* The summary of room @p id that c->sh already published in the open
 * transaction, or NULL. The slot of the room either is empty or stale (no
 * summary of it yet: any summary of the open transaction wrote its slot),
 * or names a summary of this transaction: this room's, or another's of the
 * same slot, when only a look through every record tells.
 * @locality worker that owns c->sh */
static struct out_rec *summary_pending(struct ctx *c, const char *id)
{
    struct worker *w = c->w;
    uint32_t e = w->room_sum_slot[slot_of(id)];
    const struct out_rec *r;

    if (e == 0 || e > w->n_out)
        return NULL;
    r = &w->out[e - 1];
    if (r->shard != c->sh->id || r->kind != OUT_REPLY || strcmp(r->topic, KCHAT_TOPIC_ROOMS))
        return NULL;   /* stale */
    if (is_summary_of(r, c->sh->id, id))
        return &w->out[e - 1];
    for (size_t i = 0; i < w->n_out; i++)
        if (is_summary_of(&w->out[i], c->sh->id, id))
            return &w->out[i];
    return NULL;
}

/* Replace the pending summary @p r by @p text: its outbox record deleted,
 * the new one appended in the open transaction.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int summary_replace(struct ctx *c, struct out_rec *r, const char *text)
{
    size_t len = strlen(text);
    kchat_outbox_rec rec = {
        .topic = KCHAT_TOPIC_ROOMS, .partition = -1, .key = r->key, .key_len = r->key_len,
        .value = text, .value_len = len, .kind = OUT_REPLY,
    };
    char *value = malloc(len ? len : 1);
    uint64_t seq;
    int rc;

    if (value == NULL)
        return KCHAT_ENOMEM;
    if ((rc = kchat_store_outbox_del(c->txn, r->seq)) != KCHAT_OK ||
        (rc = kchat_store_outbox_append(c->txn, &rec, &seq)) != KCHAT_OK) {
        free(value);
        return rc;
    }
    memcpy(value, text, len);
    free(r->value);
    r->value = value;
    r->value_len = len;
    r->seq = seq;
    return KCHAT_OK;
}

int kchat__room_summary_publish(struct ctx *c, const json_t *room)
{
    json_t *sum;
    char *text;
    const char *id;
    struct out_rec *old;
    int rc = summary_of(room, &sum, &text);

    if (rc != KCHAT_OK)
        return rc;
    id = summary_id(sum);
    if ((old = summary_pending(c, id)) != NULL) {
        rc = summary_replace(c, old, text);
    } else {
        rc = kchat__out_append(c, OUT_REPLY, 0, KCHAT_TOPIC_ROOMS, -1, id, strlen(id), text,
                               strlen(text), NULL, 0);
        if (rc == KCHAT_OK)
            c->w->room_sum_slot[slot_of(id)] = (uint32_t)c->w->n_out;
    }
    json_decref(sum);
    free(text);
    return rc;
}

/* ---- the replica ---- */

/* Whether @p sum is newer than what transaction @p t of the replica holds
 * (in @p *newer). KCHAT_EINVAL: no valid roomId or lastSeq. */
KCHAT_MUST_CHECK
static int summary_newer(kchat_txn *t, const json_t *sum, bool *newer)
{
    const char *id = json_string_value(json_object_get(sum, "roomId"));
    json_t *seq = json_object_get(sum, "lastSeq"), *old;

    if (id == NULL || !kchat_valid_id(id, strlen(id)) || !json_is_integer(seq) ||
        json_integer_value(seq) < 0)
        return KCHAT_EINVAL;
    old = kchat__get_json(t, KCHAT_TBL_ROOMS, id, strlen(id));
    *newer = old == NULL || kchat__room_newer(sum, old);
    json_decref(old);
    return KCHAT_OK;
}

/* kchat__room_summary_apply() in the replica's write transaction @p t;
 * @p *wrote becomes true when it stored @p sum (it is left alone otherwise). */
KCHAT_MUST_CHECK
static int summary_apply_in(kchat_txn *t, const json_t *sum, bool *wrote)
{
    const char *id = json_string_value(json_object_get(sum, "roomId"));
    bool newer;
    int rc = summary_newer(t, sum, &newer);

    if (rc != KCHAT_OK || !newer)
        return rc;   /* as new or newer already, or no summary */
    *wrote = true;
    return kchat__put_json(t, KCHAT_TBL_ROOMS, id, strlen(id), sum);
}

/* Whether one of @p sums[0..n) (NULL entries skipped) is newer than the
 * replica holds, read without taking the replica's writer lock: most
 * summaries a process reads from kchat-rooms are its own, taken already.
 * KCHAT_EINVAL when none is a summary.
 * @locality any thread */
KCHAT_MUST_CHECK
static int summaries_any_newer(kchat_backend *be, json_t *const *sums, size_t n, bool *newer)
{
    int rc = KCHAT_EINVAL;
    kchat_txn *t;

    *newer = true;   /* unless the replica says otherwise */
    if (kchat_txn_begin(be->directory, false, &t) != KCHAT_OK)
        return KCHAT_OK;   /* the write transaction will tell */
    *newer = false;
    for (size_t i = 0; i < n && !*newer; i++) {
        bool one = false;

        if (sums[i] != NULL && summary_newer(t, sums[i], &one) == KCHAT_OK) {
            rc = KCHAT_OK;
            *newer = one;
        }
    }
    kchat_txn_abort(t);
    return rc;
}

/* Apply the summaries @p sums[0..n) (NULL entries skipped) in one
 * transaction of the replica, committed only when one of them was newer;
 * one that is not a summary is skipped (KCHAT_EINVAL when that is all
 * there was to do). A full map is tried again.
 * @locality any thread (LMDB serialises the writers) */
KCHAT_MUST_CHECK
static int summaries_apply(kchat_backend *be, json_t *const *sums, size_t n)
{
    bool newer;
    int rc = summaries_any_newer(be, sums, n, &newer);

    if (rc != KCHAT_OK || !newer)
        return rc;
    return kchat__replica_apply(be, summary_apply_in, sums, n);
}

int kchat__room_summary_apply(kchat_backend *be, const json_t *sum)
{
    json_t *one = (json_t *)sum;

    return summaries_apply(be, &one, 1);
}

/* Log a failure of the replica that is not a record's fault: @p rc, or
 * KCHAT_OK when it was none.
 * @locality any thread */
static int replica_failed(int rc)
{
    if (rc == KCHAT_OK || rc == KCHAT_EINVAL)
        return KCHAT_OK;   /* EINVAL: no room's summary (no valid roomId or lastSeq), skipped */
    fprintf(stderr, "kchat: room summaries replica: %s\n", kchat_strerror(rc));
    return rc;
}

int kchat__room_summaries_take(kchat_backend *be, json_t **sums, size_t n)
{
    int rc = n > 0 ? replica_failed(summaries_apply(be, sums, n)) : KCHAT_OK;

    for (size_t i = 0; i < n; i++)
        json_decref(sums[i]);
    return rc;
}

void kchat__room_summaries_write_through(kchat_backend *be, const struct out_rec *recs,
                                         size_t n_recs)
{
    json_t *some[16], **sums = some;
    size_t n = 0, cap = sizeof(some) / sizeof(some[0]);

    for (size_t i = 0; i < n_recs; i++) {
        const struct out_rec *r = &recs[i];

        if (r->kind != OUT_REPLY || strcmp(r->topic, KCHAT_TOPIC_ROOMS))
            continue;
        if (n == cap) {
            /* many rooms: the rest on the heap, else in several transactions */
            json_t **more = sums == some ? calloc(n_recs, sizeof(*more)) : NULL;

            if (more != NULL) {
                memcpy(more, some, n * sizeof(*more));
                sums = more;
                cap = n_recs;
            } else {
                (void)kchat__room_summaries_take(be, sums, n);   /* logged */
                n = 0;
            }
        }
        sums[n++] = json_loadb(r->value, r->value_len, 0, NULL);
    }
    (void)kchat__room_summaries_take(be, sums, n);   /* logged */
    if (sums != some)
        free(sums);
}

json_t *kchat__room_summary_get(kchat_txn *t, const char *room_id)
{
    return kchat__get_json(t, KCHAT_TBL_ROOMS, room_id, strlen(room_id));
}

bool kchat__room_newer(const json_t *a, const json_t *b)
{
    json_int_t va = json_integer_value(json_object_get(a, "ver"));
    json_int_t vb = json_integer_value(json_object_get(b, "ver"));

    if (va != vb)
        return va > vb;
    return json_integer_value(json_object_get(a, "lastSeq")) >
           json_integer_value(json_object_get(b, "lastSeq"));
}

/* ---- start-up: summaries of rooms made before kchat-rooms ---- */

struct upgrade {
    kchat_txn *shard;      /* the shard's write transaction: its outbox */
    kchat_txn *replica;    /* the replica's write transaction */
    bool wrote;            /* something was stored in it */
    size_t n;              /* summaries published */
};

/* One stored room: its summary to the shard's outbox and to the replica.
 * Rooms that do not decode are left alone (user-search-room skips them too).
 * @locality the thread in kchat_backend_start() */
static int upgrade_one(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    struct upgrade *u = arg;
    json_t *room = json_loadb(v, vl, 0, NULL), *sum;
    kchat_outbox_rec rec = {.topic = KCHAT_TOPIC_ROOMS, .partition = -1, .kind = OUT_REPLY};
    char *text;
    uint64_t seq;
    int rc;

    (void)k;
    (void)kl;
    rc = room ? summary_of(room, &sum, &text) : KCHAT_EINVAL;
    json_decref(room);
    if (rc != KCHAT_OK)
        return rc == KCHAT_EINVAL ? 0 : rc;
    rec.key = summary_id(sum);
    rec.key_len = strlen(rec.key);
    rec.value = text;
    rec.value_len = strlen(text);
    if ((rc = kchat_store_outbox_append(u->shard, &rec, &seq)) == KCHAT_OK &&
        (rc = summary_apply_in(u->replica, sum, &u->wrote)) == KCHAT_EINVAL)
        rc = KCHAT_OK;   /* an id the replica refuses: published all the same */
    json_decref(sum);
    free(text);
    u->n += rc == KCHAT_OK;
    return rc;
}

/* Publish the summary of every room of shard @p sh (one transaction of the
 * shard, one of the replica); the count in @p n.
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
static int upgrade_shard(kchat_backend *be, struct shard *sh, bool mark, size_t *n)
{
    struct upgrade u = {0};
    char buf[8];
    int rc;

    if ((rc = kchat_txn_begin(sh->store, true, &u.shard)) != KCHAT_OK)
        return rc;
    if (mark) {
        if ((rc = kchat_store_meta_get(u.shard, META_SHARD_PUBLISHED, buf, sizeof(buf))) ==
            KCHAT_OK) {   /* done once already */
            kchat_txn_abort(u.shard);
            return KCHAT_OK;
        }
        if (rc != KCHAT_ENOTFOUND ||
            (rc = kchat_store_meta_set(u.shard, META_SHARD_PUBLISHED, "1")) != KCHAT_OK)
            goto err_abort_shard;
    }
    if ((rc = kchat_txn_begin(be->directory, true, &u.replica)) != KCHAT_OK)
        goto err_abort_shard;
    if ((rc = kchat_txn_scan(u.shard, KCHAT_TBL_ROOMS, NULL, 0, false, upgrade_one, &u)) < 0)
        goto err_abort_replica;
    /* The replica first: when the shard's commit then fails (and the whole
     * is tried again, or at the next start), taking them again is a no-op,
     * whereas the other order would leave the shard's outbox a second copy. */
    rc = kchat_txn_commit(u.replica);
    u.replica = NULL;
    if (rc != KCHAT_OK)
        goto err_abort_shard;
    *n = u.n;
    return kchat_txn_commit(u.shard);

err_abort_replica:
    kchat_txn_abort(u.replica);
err_abort_shard:
    kchat_txn_abort(u.shard);
    return rc;
}

int kchat__room_summaries_upgrade(kchat_backend *be, char *errstr, size_t len)
{
    char buf[8];
    kchat_txn *t;
    int rc;

    if (be->changelog)
        return KCHAT_OK;   /* each shard at its acquisition */
    if ((rc = kchat_txn_begin(be->directory, false, &t)) != KCHAT_OK)
        goto err_say;
    rc = kchat_store_meta_get(t, META_FILLED, buf, sizeof(buf));
    kchat_txn_abort(t);
    if (rc == KCHAT_OK)
        return KCHAT_OK;
    for (int p = 0; p < be->partitions; p++) {
        size_t n = 0;

        rc = KCHAT_EMAPFULL;
        for (int tries = 0; rc == KCHAT_EMAPFULL && tries < KCHAT__REPLICA_MAPFULL_TRIES; tries++)
            rc = upgrade_shard(be, &be->shards[p], false, &n);
        if (rc != KCHAT_OK) {
            snprintf(errstr, len, "shard %d: publishing its room summaries: %s", p,
                     kchat_strerror(rc));
            return rc;
        }
        if (n > 0)
            fprintf(stderr, "kchat: shard %d: %zu room summaries published to %s (rooms made "
                    "before it, or a new replica)\n", p, n, KCHAT_TOPIC_ROOMS);
    }
    if ((rc = kchat_txn_begin(be->directory, true, &t)) != KCHAT_OK)
        goto err_say;
    if ((rc = kchat_store_meta_set(t, META_FILLED, "1")) != KCHAT_OK) {
        kchat_txn_abort(t);
        goto err_say;
    }
    if ((rc = kchat_txn_commit(t)) == KCHAT_OK)
        return KCHAT_OK;
err_say:
    snprintf(errstr, len, "%s/directory: room summaries: %s", be->cfg->data_dir,
             kchat_strerror(rc));
    return rc;
}

int kchat__room_summaries_upgrade_shard(kchat_backend *be, struct shard *sh, char *errstr,
                                        size_t len)
{
    size_t n = 0;
    int rc = KCHAT_EMAPFULL;

    for (int tries = 0; rc == KCHAT_EMAPFULL && tries < KCHAT__REPLICA_MAPFULL_TRIES; tries++)
        rc = upgrade_shard(be, sh, true, &n);
    if (rc != KCHAT_OK) {
        snprintf(errstr, len, "shard %u: publishing its room summaries: %s", sh->id,
                 kchat_strerror(rc));
        return rc;
    }
    if (n > 0)
        fprintf(stderr, "kchat: shard %u: %zu room summaries published to %s (rooms made "
                "before it)\n", sh->id, n, KCHAT_TOPIC_ROOMS);
    return KCHAT_OK;
}
