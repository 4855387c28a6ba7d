/*
 * Private to src/actors: the replicas every backend keeps of what
 * other shards publish: the user directory (directory.c) and the room
 * summaries (summaries.c).
 * Declared apart from actors.h (its structs and the other files'
 * interfaces), which it includes.
 */
#ifndef KCHAT_ACTORS_REPLICAS_H
#define KCHAT_ACTORS_REPLICAS_H

#include "actors.h"

/* A write to the replica that found its map full is tried again this
 * often (each failure doubles the map: "A full map" in store.h). */
#define KCHAT__REPLICA_MAPFULL_TRIES 8

/* Store one item (a profile, a room summary) in the replica's write
 * transaction @p t if it is newer than what the replica holds, setting
 * @p *wrote when it stored it. KCHAT_EINVAL: not such an item (skipped);
 * store errors.
 * @locality the thread holding @p t */
typedef int (*kchat__replica_apply_fn)(kchat_txn *t, const json_t *item, bool *wrote);

/* Apply @p items[0..n) (NULL entries skipped) with @p one in one write
 * transaction of the replica, committed only when one was stored; a full
 * map is tried again (KCHAT__REPLICA_MAPFULL_TRIES). Errors: KCHAT_EINVAL
 * when no item was valid (the others are applied all the same), store
 * errors (nothing applied).
 * @locality any thread (LMDB serialises the replica's writers) */
KCHAT_MUST_CHECK
int kchat__replica_apply(kchat_backend *be, kchat__replica_apply_fn one, json_t *const *items,
                         size_t n);

/* ---- directory.c: the user directory and this backend's replica of it ---- */

/* Publish the profile of a user to kchat-directory, through the outbox; the
 * local replica takes it once the transaction has committed.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__directory_publish(struct ctx *c, const json_t *user);

/* A shard's own directory record (@p topic kchat-directory; anything else
 * is ignored) into the local replica as it is handed to the producer, so
 * that this node knows the user before the answers that report it leave
 * (kchat__out_rec_flush(), and the outbox replay of an acquisition, whose
 * answers would otherwise go out before the replica read the record back
 * from Kafka). Failures are logged.
 * @locality any thread (the replica's own write transaction) */
void kchat__directory_write_through(kchat_backend *be, const char *topic, const void *value,
                                    size_t len);

/* Look a user up in the directory replica: a new reference to
 * {userId, userName, userStatus, ver}, or NULL when unknown.
 * @locality any thread (its own read transaction) */
json_t *kchat__directory_get(kchat_backend *be, const char *user_id);

/* Apply one directory record (from Kafka or write-through) if newer.
 * Errors: KCHAT_EINVAL (no valid userId), store errors.
 * @locality any thread: the directory thread and the workers (LMDB
 *           serialises their write transactions) */
KCHAT_MUST_CHECK
int kchat__directory_apply(kchat_backend *be, const json_t *entry);

/* Start the thread that reads kchat-directory and kchat-rooms into the
 * replica: from where the replica had read them before (offsets it stores
 * every second and at stop, for this cluster only), else from their
 * beginning. On error nothing is left running (errstr says why); what the
 * thread cannot do once running (its stored offsets, the assignment) it
 * says on stderr and in be->dir_failed (kchat__directory_wait()).
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
int kchat__directory_start(kchat_backend *be, char *errstr, size_t len);

/* Wait until the replica holds every record kchat-directory and
 * kchat-rooms held when the directory thread began (each partition read to
 * its end once, and what was read applied), so that a node with a new
 * replica does not answer from an incomplete one (regression 0060). Says
 * every 10 s that it waits. Errors: KCHAT_ETIMEDOUT after 10 minutes;
 * when the directory thread could not run, its reason (KCHAT_ENOMEM,
 * KCHAT_EKAFKA, store errors; errstr says so).
 * @locality the thread in kchat_backend_start(), after
 *           kchat__directory_start() */
KCHAT_MUST_CHECK
int kchat__directory_wait(kchat_backend *be, char *errstr, size_t len);

/* Join the directory thread (be->stopping must be set) and close its
 * consumer; what kchat__directory_start() did not start is skipped.
 * @locality the thread in kchat_backend_start() or kchat_backend_stop() */
void kchat__directory_stop(kchat_backend *be);

/* ---- summaries.c: room summaries and this backend's replica of them ---- */

/* Publish the summary of @p room (its stored record: roomId, roomName,
 * participants, lastSeq) to kchat-rooms through the outbox, in the open
 * transaction of the room's shard c->sh; the local replica takes it once
 * the transaction has committed. At most one per room per transaction: a
 * later call for the same room replaces the earlier record (its outbox
 * record is deleted, the new one appended). Errors: store errors,
 * KCHAT_ENOMEM, KCHAT_EINVAL (no roomId).
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__room_summary_publish(struct ctx *c, const json_t *room);

/* Apply one room summary (from Kafka or write-through) to the replica if
 * it is newer: a room not yet known, or a later version
 * (kchat__room_newer()); an equal or older one is ignored (KCHAT_OK, nothing committed). Errors: KCHAT_EINVAL (no
 * valid roomId or no lastSeq), store errors.
 * @locality any thread: the directory thread and the workers (LMDB
 *           serialises their write transactions) */
KCHAT_MUST_CHECK
int kchat__room_summary_apply(kchat_backend *be, const json_t *sum);

/* Apply the summaries @p sums[0..n) (stolen; NULL entries, records that
 * did not parse, are skipped) as kchat__room_summary_apply() does, in one
 * transaction of the replica, committed only if one was newer; one that is
 * not a summary is skipped. Returns KCHAT_OK, or the store error it logged
 * (then none of them was applied).
 * @locality any thread, as kchat__room_summary_apply() */
int kchat__room_summaries_take(kchat_backend *be, json_t **sums, size_t n);

/* Records of a committed transaction about to be produced (right after
 * the commit, or once Kafka has its changes: changelog.c): every room
 * summary among @p recs[0..n) into the replica, in one transaction of the
 * replica (committed only if one was newer); a failure is logged (the
 * directory thread takes them again from Kafka).
 * @locality the worker that owns the records' shard */
void kchat__room_summaries_write_through(kchat_backend *be, const struct out_rec *recs,
                                         size_t n);

/* The summary of @p room_id in the replica, read in @p t (a transaction
 * of be->directory): a new reference to {roomId, roomName, participants,
 * lastSeq, ver, reads?}, or NULL when the replica does not know the room.
 * @locality the thread holding @p t */
json_t *kchat__room_summary_get(kchat_txn *t, const char *room_id);

/* Whether room (or summary) @p a is a later version than @p b: a higher
 * `ver`, or, at equal ones, a higher lastSeq.
 * @locality any thread */
bool kchat__room_newer(const json_t *a, const json_t *b);

/* Start-up, without a changelog (one process owns every shard): when the
 * replica has never been filled with room summaries (a data directory of
 * an older kchat, or a replica made anew), every shard appends the summary
 * of each room it holds to its outbox (produced by kchat__outbox_replay())
 * and the replica takes them at once; then the replica remembers it.
 * Nothing with a changelog: a process may not touch a shard it does not
 * own, so each shard does it at its acquisition
 * (kchat__room_summaries_upgrade_shard()). Errors: store errors (errstr
 * names the shard).
 * @locality the thread in kchat_backend_start(), before the outboxes are
 *           replayed and before the directory thread starts */
KCHAT_MUST_CHECK
int kchat__room_summaries_upgrade(kchat_backend *be, char *errstr, size_t len);

/* With a changelog, acquiring @p sh (caught up, before its kept changes are
 * produced again and its outbox replayed): once in the shard's life (a mark
 * in its own meta table, which its changelog carries), append the summary
 * of each room it holds to its outbox and give them to the replica. Errors:
 * store errors (errstr names the shard).
 * @locality the consumer's poll thread acquiring @p sh (ownership.c) */
KCHAT_MUST_CHECK
int kchat__room_summaries_upgrade_shard(kchat_backend *be, struct shard *sh, char *errstr,
                                        size_t len);

#endif /* KCHAT_ACTORS_REPLICAS_H */
