/*
 * Private to src/actors: the backend's shared state and the interfaces
 * between its files. A chat send passes through them in this order:
 *
 *   batch.c      a worker's batch: one write transaction per shard, each
 *                record applied by an operation (users.c, friends.c,
 *                rooms.c, chat.c, members.c) or a gateway's word on open
 *                streams (presence.c), whose answers, events and commands
 *                go to the shard's outbox (reply.c); one commit
 *   changelog.c  the commit's changes to kchat-changelog; its records held
 *                until Kafka has them (restore.c: shards restored from it
 *                at start)
 *   producer.c   the committed outbox records handed to Kafka; delivery
 *                reports; a failed producer replaced
 *   outbox.c     what Kafka confirmed deleted from the outbox, what it
 *                refused produced again; every outbox produced at start
 *   commands.c   internal commands between shards: numbered streams,
 *                re-sends, applying one in its target
 *   commands_acks.c  targets acknowledge what they applied, through Kafka
 *   directory.c  the user directory: published by a user's shard, read
 *                into every backend's replica by its own thread (which
 *                reads the room summaries of summaries.c too)
 *   summaries.c  room summaries (lastSeq for user-search-room): published
 *                by the room's shard, kept in the same replica
 *   datadir.c    the data directory: shard count, shards, data set id,
 *                node id, the cluster the stored offsets belong to
 *   deployment.c the deployment's data set id, claimed in kchat-meta
 *   ownership.c  with a changelog: the shards this process serves, taken
 *                over at an assignment, given up at a revocation
 *   standby.c    warm copies of other nodes' shards (--standby-replicas)
 *   backend.c    start-up in steps, stop, counters and metrics
 *
 * This header holds the shared structs and most files' interfaces; seven
 * concepts have headers of their own, which include this one: ops.h (the
 * operations and internal commands, called by batch.c and commands.c),
 * changelog.h (changelog.c, restore.c), streams.h (commands.c,
 * commands_acks.c), replicas.h (directory.c, summaries.c), rooms.h
 * (rooms.c, members.c, chat.c), logins.h (throttle.c, devices.c, users.c)
 * and presence.h (presence.c, batch.c, friends.c).
 *
 * Threading: a shard belongs to exactly one worker (shard mod W); everything
 * reached through a `struct shard` is touched only by that worker, except the
 * fields under `lock`, which the producer's delivery-report thread also uses.
 * Before the consumer starts and after it stopped, the thread that starts or
 * stops the backend stands in for every worker.
 */
#ifndef KCHAT_ACTORS_H
#define KCHAT_ACTORS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "kchat/auth.h"
#include "kchat/backend.h"
#include "kchat/codec.h"
#include "kchat/consumer.h"
#include "kchat/error.h"
#include "kchat/metrics.h"
#include "kchat/store.h"
#include "kchat/topics.h"

/* Outbox record kinds: what happens once Kafka has the record. */
enum {
    OUT_REPLY = 1,     /* response, event, directory record, room summary, dead letter:
                          delete on delivery */
    OUT_COMMAND = 2,   /* internal command: delete once the target shard applied it */
};

/* A change of a committed transaction, copied for producing (changelog.c). */
struct cl_rec {
    uint64_t seq, last;
    kchat_table table;
    unsigned char *key;        /* owns key and value (one allocation) */
    size_t key_len;
    unsigned char *value;      /* NULL when deleted */
    size_t value_len;
};


/* A seq list shared with the delivery-report thread. */
struct seqlist {
    uint64_t *v;
    size_t n, cap;
};

/* An internal command waiting for its target shard to apply it. */
struct pending_cmd {
    uint64_t seq;              /* outbox seq */
    uint64_t cseq;             /* seq in the (shard, target) stream; 0: an older
                                  kchat's command, deduplicated by outbox seq */
    uint32_t target;
};

/* The source's view of its command stream to one target shard. */
struct cmd_link {
    size_t n_pending;          /* commands to it not yet known applied */
    uint64_t low;              /* the lowest stream seq among them; 0: none */
    uint64_t applied;          /* its watermark for us, as it last acknowledged */
    uint64_t kafka_high;       /* the highest stream seq produced to it through Kafka in
                                  this run (0: none); a command travels in memory alone
                                  only once applied covers it (local.c) */
    uint64_t legacy_applied;   /* its outbox-seq watermark for us (older commands), as
                                  acknowledged in this run (not stored) */
    int64_t since_ms;          /* when that watermark last moved (or the first
                                  command went pending) */
    int64_t backoff_ms;        /* wait before the next re-send */
    bool resend_now;           /* Kafka refused one of them: re-send at the next check */
    bool run_from_set;         /* run_from is set: this run numbered for it */
    uint64_t run_from;         /* the seq this run numbered on from (kchat-cmd-run-from):
                                  the counter when it first numbered, or the ack a fork
                                  renumbered past */
};

/* A record appended to a shard's outbox in the open transaction, kept in
 * memory so it can be produced right after the commit. */
/* The stages a request passes through in a backend, each timed on its own
 * (kchat_stage_seconds in /metrics; docs/operations.md, "Where a request
 * waits"). */
enum kchat__stage {
    KCHAT__STAGE_READ,     /* record's timestamp -> its worker begins applying it */
    KCHAT__STAGE_APPLY,    /* a shard batch: begin -> every record applied */
    KCHAT__STAGE_COMMIT,   /* the batch's LMDB commit (fsync) */
    KCHAT__STAGE_RELEASE,  /* commit -> an outbound record handed to the producer
                              (held behind the changelog, when there is one) */
    KCHAT__STAGE_ACK,      /* producer -> Kafka's acknowledgement of an outbound record
                              (not commands) */
    KCHAT__STAGE_COUNT
};

struct out_rec {
    uint32_t shard;
    uint64_t seq;
    uint8_t kind;
    uint32_t target;          /* OUT_COMMAND: target shard */
    uint64_t cseq;            /* OUT_COMMAND: seq in the (shard, target) stream */
    char *topic;
    int32_t partition;
    char *key; size_t key_len;
    char *value; size_t value_len;
    kchat_header hdr[KCHAT_STORE_MAX_HEADERS];
    size_t n_hdr;
    char *hdr_buf;            /* owns the header names and values */
    int64_t committed_us;     /* kchat__monotonic_us() at its commit; 0: not timed */
};



/* Failed logins of one shard's user ids (throttle.c): a fixed table of
 * KCHAT_THROTTLE_SETS sets of KCHAT_THROTTLE_WAYS slots, in memory only, so
 * a flood of distinct ids evicts old entries instead of growing it. */
#define KCHAT_THROTTLE_WAYS 8
#define KCHAT_THROTTLE_SETS 128

struct throttle_slot {
    uint64_t tag;              /* keyed hash of the user id; 0 = free */
    int64_t first_ms;          /* first failure of the current window */
    int64_t until_ms;          /* locked until then; 0 = not locked */
    uint32_t failures;         /* failures in the current window */
};

struct login_throttle {
    bool keyed;                /* key drawn (on first use) */
    unsigned char key[16];     /* SipHash key: ids cannot be aimed at one set */
    struct throttle_slot slot[KCHAT_THROTTLE_SETS][KCHAT_THROTTLE_WAYS];
};

/* A shard's presence state (presence.c), on its worker, in memory only. */
struct presence {
    json_t *pairs;              /* "gateway/userId" -> last mention (wall ms) */
    json_t *gws;                /* gateway id -> last beat (wall ms) */
    json_t *check;              /* userId -> true: pairs went, no commit since */
    uint64_t run_id;            /* the shard's run_id these are for */
    int64_t since_ms;           /* tracked since (wall ms) */
    int64_t last_sweep_ms;
    int64_t last_due_ms;        /* kchat__presence_due() last looked through them */
    bool grace_done;            /* users stored online and unlisted were settled */
};

struct shard {
    uint32_t id;
    kchat_store *store;
    /* ownership (ownership.c): set and cleared by the consumer's poll thread
     * at assignments, read by the shard's worker before each upkeep */
    atomic_bool owned;          /* this process serves the shard; its worker touches
                                   it only while set */
    atomic_bool releasing;      /* the poll thread gives it up: the worker reports... */
    atomic_bool quiet;          /* ...here when all it produced is confirmed */
    atomic_bool warm;           /* given up gracefully, everything it
                                   produced confirmed: current unless another owner
                                   wrote since */
    atomic_bool fenced;         /* its changelog producer was fenced (a newer owner) or
                                   failed for good: the worker leaves it alone until
                                   it is released (changelog_txn.c) */
    struct cl_txn *txn;         /* its transactional changelog producer, with a
                                   changelog: set before `owned`, cleared after the
                                   release (the poll thread) */
    uint64_t run_id;            /* drawn at each acquisition, never 0 (0: none, in
                                   tests): tags the commands numbered meanwhile */
    /* the local copy while not owned (standby.c, restore.c) */
    pthread_mutex_t copy_lock;  /* held by whoever writes the copy without owning the
                                   shard: an acquisition, a standby's catch-up */
    int64_t follow_from;        /* under copy_lock: the changelog offset the next
                                   catch-up reads from (0: the beginning) */
    int64_t followed_ms;        /* under copy_lock: when the catch-up that set
                                   follow_from began (wall clock, ms) */
    atomic_bool standby;        /* this process keeps the copy warm for its owner */
    atomic_int_fast64_t restore_lag; /* records of its changelog partition a catch-up
                                   running now has still to read (0: none runs) */
    /* worker only */
    struct pending_cmd *cmds;
    size_t n_cmds, cap_cmds;
    struct cmd_link *links;     /* [partitions], by target shard; NULL until a command */
    int64_t last_ack_check_ms;
    struct login_throttle throttle; /* zeroed with the shard; needs no release */
    struct presence presence;   /* kchat__presence_release() at the end */
    int64_t fail_since_ms;      /* first failed commit of the current run, 0: none */
    int64_t fail_logged_ms;     /* last time that run was logged */
    unsigned long fail_count;   /* failed commits in the current run */
    struct local_inbox *inbox;  /* commands handed in memory by this process's shards
                                   (local.c); NULL: none taken */
    /* shared with the thread that serves the producer's delivery reports */
    pthread_mutex_t lock;
    struct seqlist delivered;   /* under lock: to delete from the outbox */
    int64_t delivered_us;       /* under lock: when `delivered` last became non-empty */
    struct seqlist resend;      /* under lock: delivery failed: produce again */
    bool resend_all;            /* under lock: a failed delivery could not be put on
                                   `resend`: produce the whole outbox again */
    /* the changelog (changelog.c) */
    uint64_t cl_acked;          /* under lock: every change up to this one is in Kafka */
    uint64_t cl_resend_from;    /* under lock: change the committer refused (0: none):
                                   no newer one is queued until a replay has queued
                                   every kept change from it on, in order */
    int64_t cl_refused_logged_us; /* worker: when a refused replay was last logged */
    unsigned long cl_refusals;  /* worker: refused replays not logged since */
    atomic_uint_fast64_t cl_wake_at; /* the gate of the first held record (0: none):
                                   the delivery-report thread wakes the worker when
                                   cl_acked reaches it */
    uint64_t cl_trimmed;        /* worker: kept changes up to here trimmed (a hint) */
    uint64_t cl_replayed;       /* start-up: the last change produced again */
    uint64_t cl_produced;       /* worker: the last change handed to the producer */
    struct out_rec *held;       /* worker: records of committed transactions held back
                                   until Kafka has their changes, in commit order, from
                                   held_head (each owns what it points to) */
    uint64_t *held_gate;        /* worker: [i]: the last change of held[i]'s transaction */
    size_t held_head, n_held, cap_held;
};

/* Slots of struct worker's room_sum_slot (a power of two). */
#define KCHAT__ROOM_SUM_SLOTS 256

/* Per-worker scratch, reused across batches; only its worker thread uses
 * it (the starting or stopping thread when there are no workers). */
struct worker {
    unsigned id;
    struct out_rec *out;
    size_t n_out, cap_out;
    atomic_int_fast64_t last_progress_ms; /* last time this worker finished a batch or tick */
    atomic_uint_fast64_t idle_passes; /* idle() calls finished (ownership.c waits on it) */
    atomic_uint_fast64_t busy_us; /* time spent in process() and idle() calls */
    kchat_request req;          /* big: kept here rather than on the stack */
    size_t *idx;                /* [max_batch]: one shard's records of a batch */
    bool *done;                 /* [max_batch]: records already grouped */
    struct cl_rec *cl;          /* the changes of the transaction being committed */
    size_t n_cl, cap_cl;
    /* summaries.c: 1 + the index in `out` of a room summary of the open
     * transaction, by a hash of its roomId (0: none). Entries left by an
     * earlier transaction are stale: every use checks that the record at
     * that index is a summary of this shard for that room. */
    uint32_t room_sum_slot[KCHAT__ROOM_SUM_SLOTS];
    uint32_t *ack_to;           /* [partitions] or NULL: sources to acknowledge at the end
                                   of the open transaction (commands_acks.c) */
    size_t n_ack_to;
    bool *ack_noted;            /* [partitions] or NULL: source s is in ack_to */
};

struct kchat_backend {
    const kchat_config *cfg;
    kchat_embedded *embedded;
    char *bootstraps;
    int partitions;
    unsigned n_workers;
    struct shard *shards;       /* [partitions] */
    struct worker *workers;     /* [n_workers] */
    kchat_store *directory;     /* replica of kchat-directory (table DIRECTORY) and of
                                   kchat-rooms (table ROOMS) */
    rd_kafka_t *producer;       /* used under producer_lock (shared); replaced by the
                                   poller under it (exclusive) after a fatal error;
                                   the poller itself reads it without the lock */
    pthread_rwlock_t producer_lock;
    char cluster_id[256];       /* read once at start (kchat__producer_start()) */
    bool mock_broker;           /* the cluster is librdkafka's mock cluster: one produce
                                   request in flight per connection (producer.c) */
    atomic_bool producer_fatal; /* the producer failed for good: the poller replaces it */
    pthread_t producer_poller;
    bool poller_running;
    atomic_bool stopping;
    kchat_consumer *consumer;
    pthread_mutex_t wake_lock;  /* guards `wake`, the consumer the delivery-report
                                   thread wakes workers through (changelog.c) */
    kchat_consumer *wake;       /* under wake_lock: be->consumer while it runs, else NULL */
    bool changelog;             /* shards keep a changelog in kchat-changelog */
    bool shard_unsynced;        /* shards commit without fsync (datadir.c, --shard-sync) */
    int64_t outbox_prune_us;    /* confirmed records wait this long to be deleted
                                   together (kchat__outbox_prune_due()); 0: at once */
    rd_kafka_t *dir_consumer;
    pthread_t dir_thread;
    bool dir_running;
    atomic_bool dir_caught_up;  /* the replica holds what kchat-directory and kchat-rooms
                                   held when the directory thread began (directory.c) */
    atomic_int dir_failed;      /* why the directory thread could not run (a
                                   kchat error), 0 while it runs */
    atomic_uint_fast64_t dir_records;   /* records the directory thread has read */
    kchat_fmt events_fmt;
    kchat_auth *auth;           /* --secret-file's keys, or NULL: no MACs, no seals */
    char dummy_hash[128];       /* verified against for unknown users (even timing) */
    uint64_t run_id;            /* drawn at each start, never 0 (0: none, in tests):
                                   the shards draw theirs only when it is not 0 */
    atomic_int restoring;       /* shards being acquired right now (ownership.c) */
    atomic_bool closing;        /* kchat_backend_stop() began: an acquisition retrying
                                   gives up, the standby thread ends */
    pthread_t standby_thread;   /* standby.c, with --standby-replicas */
    bool standby_running;
    atomic_bool standby_logged; /* a standby failure was logged */
    char node_id[33];           /* this data directory's node id (32 hex digits): the
                                   consumer's group.instance.id with a changelog */
    char dataset[33];           /* this data directory's data set id (32 hex digits):
                                   tags its commands, directory records and room
                                   summaries */
    bool dataset_legacy;        /* made before data set ids: also take untagged
                                   directory records (not room summaries) as ours */
    atomic_bool foreign_logged[3]; /* a foreign command [0], directory record [1], room
                                      summary [2] was logged */
    kchat_hist commit_seconds;  /* shard commit latency */
    kchat_hist batch_records;   /* records per shard transaction */
    kchat_hist stage[KCHAT__STAGE_COUNT]; /* where a request waits (enum kchat__stage) */
    /* changes handed to a changelog producer, by table and [0] put, [1] deletion
     * (kchat_changelog_changes_total; counted where changes_produced is) */
    atomic_uint_fast64_t cl_changes[KCHAT_TBL__COUNT][2];
    struct {                    /* one per row of KCHAT_BACKEND_COUNTERS (backend.h) */
#define KCHAT__STATS_ATOMIC(field, metric, help, stop) atomic_uint_fast64_t field;
        KCHAT_BACKEND_COUNTERS(KCHAT__STATS_ATOMIC)
#undef KCHAT__STATS_ATOMIC
    } stats;
};

/* One record being applied in one shard's open write transaction, on the
 * worker that owns the shard. */
struct ctx {
    kchat_backend *be;
    struct worker *w;
    struct shard *sh;
    kchat_txn *txn;
    kchat_op op;
    kchat_fmt fmt;                 /* encoding of the answer */
    char cid[65]; size_t cid_len;  /* 0 = the request had none */
    const char *user_id;           /* key of the answer: the acting user */
    const char *session; size_t session_len;
    bool sealed;                   /* the request came sealed: its answer is sealed too */
    char sealed_sid[129];          /* the session id opened from a sealed kchat-session */
    const char *device; size_t device_len; /* kchat-device header; NULL: none */
    int64_t now_ms;
    kchat_request *req;
};

/* The run tag of the commands c->sh numbers now (commands_acks.c): the
 * shard's, drawn when this process acquired it, else the backend's. */
static inline uint64_t kchat__run_id(const struct ctx *c)
{
    return c->sh->run_id != 0 ? c->sh->run_id : c->be->run_id;
}


/* Every function declared below that takes a `struct ctx *` runs on the
 * worker that owns c->sh, inside c->txn (@locality worker that owns c->sh);
 * so do the ones taking a `struct shard *` or `struct worker *` unless they
 * say otherwise. */

/* ---- reply.c: answers, events and outbox records ---- */

/* Append a record to the shard's outbox and remember it for producing.
 * Takes no ownership. Errors: store errors, KCHAT_ENOMEM.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__out_append(struct ctx *c, uint8_t kind, uint32_t target, const char *topic,
                      int32_t partition, const void *key, size_t key_len,
                      const void *value, size_t value_len,
                      const kchat_header *hdrs, size_t n_hdrs);

/* Free what an out_rec owns (not the struct itself). */
void kchat__out_rec_release(struct out_rec *r);

/* Answer the request of @p c with success; @p body (stolen, may be NULL)
 * holds the fields added to the common ones.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__reply_ok(struct ctx *c, json_t *body);

/* Answer the request of @p c with success: @p body (stolen, may be NULL)
 * with the common fields, and last the member @p key whose value is the
 * JSON text @p json (@p json_len bytes, not NUL-terminated; put in as it is
 * in a JSON answer, decoded for a msgpack one: kchat_codec_add_json_member()).
 * Errors: KCHAT_ENOMEM, KCHAT_EINVAL, KCHAT_EDECODE (msgpack: @p json does
 * not decode), store errors.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__reply_ok_with_json(struct ctx *c, json_t *body, const char *key, const char *json,
                              size_t json_len);

/* Answer with an error code and an English sentence (printf format).
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__reply_err(struct ctx *c, kchat_wire_err e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* kchat__reply_err() whose body also has the fields of @p extra (stolen,
 * may be NULL), e.g. retryAfterMs.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__reply_err_with(struct ctx *c, kchat_wire_err e, json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Publish a chat-events record (stolen) for @p user_id.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__event(struct ctx *c, const char *user_id, json_t *event);

/* Publish @p event (stolen; without "userId") to every user id of the JSON
 * array @p users, each copy with its own "userId" last: encoded once, the
 * bytes of each copy those kchat__event() would give. Errors: KCHAT_ENOMEM,
 * KCHAT_EINVAL (a user id that is no UTF-8 string), outbox errors; the
 * copies before the error are appended (the transaction is then aborted).
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__event_to_each(struct ctx *c, json_t *event, const json_t *users);

/* Send an internal command (stolen) to shard @p target, keyed by @p key:
 * the next seq of this shard's stream to @p target (commands.c). Makes room
 * to list it as pending once committed (KCHAT_ENOMEM when there is none).
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__command(struct ctx *c, uint32_t target, const char *key, json_t *cmd);

/* ---- helpers shared by the operations ---- */

/* Shard of a user or room id. */
uint32_t kchat__shard_of(const kchat_backend *be, const char *id);

/* Read a JSON value stored under @p key in @p tb; NULL when absent or corrupt. */
json_t *kchat__get_json(kchat_txn *t, kchat_table tb, const void *key, size_t kl);
KCHAT_MUST_CHECK
int kchat__put_json(kchat_txn *t, kchat_table tb, const void *key, size_t kl, const json_t *v);

/* Check the session header of @p c against its user; answers UNAUTHENTICATED
 * itself and returns false when it does not hold. Refreshes its last use.
 * @locality worker that owns c->sh */
bool kchat__session_ok(struct ctx *c, int *rc);

/* The sessions table's key for session id @p sid (@p len bytes): "h" and
 * the 64 hex digits of its BLAKE2b-256 hash, NUL-terminated in @p out. The
 * store never holds a session id itself, only this (docs/design.md,
 * "Sessions and passwords").
 * @locality any thread */
#define KCHAT__SESSION_KEY_LEN 65
void kchat__session_key(const char *sid, size_t len, char out[KCHAT__SESSION_KEY_LEN + 1]);

/* Store every session of @p sh that an older kchat kept under its id under
 * the hash of kchat__session_key() instead, in one write transaction; the
 * count of those moved in @p moved. Errors: store errors (nothing moved).
 * @locality the thread in kchat_backend_start(), before any worker runs */
KCHAT_MUST_CHECK
int kchat__sessions_rekey(struct shard *sh, size_t *moved);

/* The user record (stored form, with the password hash) or NULL. */
json_t *kchat__user_get(kchat_txn *t, const char *user_id);
/* The public user object of PROTOCOL.md §1 built from a stored record. */
json_t *kchat__user_public(const json_t *stored);

/* Wall-clock milliseconds (timestamps, command re-send clocks). */
int64_t kchat__now_ms(void);

/* ---- batch.c: the workers' batch loop ---- */

/* Allocate the workers' scratch (be->n_workers of them).
 * Errors: KCHAT_ENOMEM (what was allocated stays for kchat__workers_free()).
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
int kchat__workers_new(kchat_backend *be);

/* The workers' idle upkeep, once for each, in this thread: delete from the
 * outboxes what Kafka confirmed. Nothing when there are no workers or shards.
 * @locality the thread in kchat_backend_start() or kchat_backend_stop(),
 *           once no worker thread runs (it stands in for all of them) */
void kchat__workers_idle(kchat_backend *be);

/* Free the workers' scratch and the records they did not produce.
 * @locality the thread in kchat_backend_start() or kchat_backend_stop() */
void kchat__workers_free(kchat_backend *be);

/* Start the request consumer, whose worker threads run the batch loop;
 * @p mock: the cluster is librdkafka's mock cluster (for the default fetch
 * wait). Each partition starts at its shard's stored offset, or at its
 * first record when it has none or no longer has that offset (over any
 * `-X auto.offset.reset`). On error nothing is left running (errstr says
 * why).
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
int kchat__consumer_start(kchat_backend *be, bool mock, char *errstr, size_t len);

/* Send a record nobody can be answered for to kchat-dlq, via the outbox.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__dead_letter(struct ctx *c, const rd_kafka_message_t *m, const char *why);

/* ---- producer.c: outbox records to Kafka ---- */

/* The configuration of kchat's producer (idempotent, murmur2, no message
 * timeout, linger from the config, -X applied; one request in flight per
 * connection when be->mock_broker), without callbacks: the caller owns it.
 * NULL on a bad setting (errstr says which). Exported for regression 0035.
 * @locality any thread; reads be->cfg, be->bootstraps, be->mock_broker */
rd_kafka_conf_t *kchat__producer_conf(const kchat_backend *be, char *errstr, size_t len);

/* Create the producer, read the cluster's id into be->cluster_id (waiting
 * up to 10 s for the brokers; KCHAT_EKAFKA when they do not answer) and
 * start the poller thread (which serves delivery reports and replaces a
 * producer that failed for good). On librdkafka's mock cluster the
 * producer keeps one produce request in flight per connection
 * (kchat__producer_conf()). On error nothing is left running (errstr says why).
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
int kchat__producer_start(kchat_backend *be, char *errstr, size_t len);

/* Hand outbox record @p seq of shard @p shard to the producer. Never drops
 * it: a full queue is waited out; a record refused at once goes to the
 * shard's resend list (a fatal producer) or stays in the outbox until the
 * next start (logged).
 * @locality worker that owns shard @p shard (at start and stop: the thread
 *           that starts or stops the backend)
 * @locks takes be->producer_lock (shared) and the shard's lock */
void kchat__produce(kchat_backend *be, uint32_t shard, uint64_t seq, const kchat_outbox_rec *r);

/* After a commit: apply w's directory records and room summaries to the
 * replica, list its commands as pending, produce every record, and forget
 * them.
 * @locality worker @p w */
void kchat__worker_flush_out(kchat_backend *be, struct worker *w);

/* Forget w's records (their transaction was aborted).
 * @locality worker @p w */
void kchat__worker_discard_out(struct worker *w);

/* Join the poller (be->stopping must be set), then wait up to 5 s for
 * Kafka to confirm what was produced; the rest is purged (it stays in the
 * outboxes). The delivery reports are served on this thread.
 * @locality the thread in kchat_backend_start() or kchat_backend_stop() */
void kchat__producer_flush(kchat_backend *be);

/* Destroy the producer (after kchat__producer_flush()). NULL: nothing.
 * @locality the thread in kchat_backend_start() or kchat_backend_stop() */
void kchat__producer_close(kchat_backend *be);

/* Flush one record of a committed transaction: apply a directory record to
 * the replica, list a command as pending, produce it; then release @p r's
 * contents (not @p r itself).
 * @locality the worker that owns r->shard (the starting or stopping thread
 *           when no worker runs) */
void kchat__out_rec_flush(kchat_backend *be, struct out_rec *r);

/* ---- outbox.c: the outbox after the commit ---- */

/* Kafka confirmed outbox record @p seq of @p sh, or a later record made
 * it superfluous (a superseded room summary or profile, outbox.c): delete
 * it at the worker's next transaction. When it cannot be listed (no
 * memory) it stays in the outbox, produced again at the next start
 * (receivers drop the repeat).
 * @locality the thread serving the producer's delivery reports, or the
 *           worker that owns @p sh
 * @locks takes sh->lock */
void kchat__outbox_delivered(struct shard *sh, uint64_t seq);

/* Kafka refused outbox record @p seq of @p sh for good, or the producer
 * failed: the worker produces it again (a command: its whole stream). When
 * it cannot be listed (no memory) the whole outbox is produced again.
 * @locality any thread (the delivery-report thread, a worker)
 * @locks takes sh->lock */
void kchat__outbox_refused(struct shard *sh, uint64_t seq);

/* In @p sh's write transaction @p t: delete what Kafka confirmed, when that
 * is due (kchat__outbox_prune_due(); otherwise nothing is taken), then the
 * commands their targets applied, and produce again the command streams a
 * target is stuck on. The confirmed seqs taken are returned in @p taken:
 * free taken->v after the commit, or give them back with
 * kchat__outbox_unprune() when it fails. Errors: store errors.
 * @locality worker that owns @p sh
 * @locks takes sh->lock */
KCHAT_MUST_CHECK
int kchat__outbox_prune(kchat_backend *be, struct shard *sh, kchat_txn *t,
                        struct seqlist *taken);

/* Whether @p sh's confirmed records are due for deletion: the first of
 * them was confirmed be->outbox_prune_us ago, or there are many, or the
 * shard is being released or the process stops. Deleting them later than
 * at once lets a page's records (src/store/store_outbox.c) go together,
 * one change of the changelog rather than a gone mask for every part.
 * @locality worker that owns @p sh
 * @locks takes sh->lock */
bool kchat__outbox_prune_due(kchat_backend *be, struct shard *sh);

/* Give back the confirmed seqs kchat__outbox_prune() took (its transaction
 * did not commit) and free @p taken. Those that cannot be listed again (no
 * memory) stay in the outbox, as in kchat__outbox_delivered().
 * @locality worker that owns @p sh
 * @locks takes sh->lock */
void kchat__outbox_unprune(struct shard *sh, struct seqlist *taken);

/* Produce again what Kafka refused since the last call, or the whole
 * outbox when one could not be listed (after the poller has replaced a
 * failed producer); a refused command's stream is marked to be produced
 * again at its next check. A room summary or profile whose state the
 * shard holds at a later version is not produced again but deleted as
 * delivered: the later one is published after it, and the compacted topic
 * must end with it.
 * @locality worker that owns @p sh
 * @locks takes sh->lock */
void kchat__outbox_resend(kchat_backend *be, struct shard *sh);

/* Produce outbox record @p seq of @p sh again, read in @p t; nothing when
 * it is gone, and only its deletion when it is a superseded room summary
 * or profile (as kchat__outbox_resend()). Errors: store errors.
 * @locality worker that owns @p sh */
KCHAT_MUST_CHECK
int kchat__outbox_produce_again(kchat_backend *be, struct shard *sh, kchat_txn *t,
                                uint64_t seq);

/* Start-up: produce again everything the last run committed but may not
 * have sent; list its unapplied commands as pending and delete the applied
 * ones and the room summaries and profiles a later version superseded (as
 * kchat__outbox_resend()). Errors: store errors, KCHAT_ENOMEM.
 * @locality the thread in kchat_backend_start(), before the consumer runs */
KCHAT_MUST_CHECK
int kchat__outbox_replay(kchat_backend *be, struct shard *sh);

/* Tests only: the next this many growths of a shard's delivery lists or
 * pending commands fail as if memory were short. 0 in production. */
extern atomic_int kchat__test_alloc_failures;

/* Whether this growth is to fail (kchat__test_alloc_failures), counting it.
 * @locality any thread */
bool kchat__test_alloc_fails(void);

/* ---- datadir.c: the data directory ---- */

/* Most shards: the delivery opaque has 14 bits for the shard (producer.c). */
#define KCHAT__MAX_SHARDS (1 << 14)

/* Open the data directory for be->partitions shards: check its shard count,
 * open the replica and every shard, and read or make its data set id.
 * On error what was opened stays for kchat__datadir_close() (errstr says
 * why): KCHAT_ECONFIG (another shard count, two data sets), store errors.
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
int kchat__datadir_open(kchat_backend *be, char *errstr, size_t len);

/* Offsets belong to one cluster. In write transaction @p t of a store with
 * an offsets table: when the meta key @p key does not name the cluster
 * kchat runs on (it names another, or none, or kchat runs on the embedded
 * broker, a new cluster at every start), clear every offset and set @p key
 * to it; *@p cleared says whether. Nothing is committed (the caller's).
 * Errors: store errors (the transaction is then the caller's to abort).
 * @locality any thread that holds @p t */
KCHAT_MUST_CHECK
int kchat__offsets_settle_cluster(const kchat_backend *be, kchat_txn *t, const char *key,
                                  bool *cleared);

/* Stored offsets belong to one cluster: every shard forgets them when the
 * cluster changed (or is the embedded broker, new at every start).
 * Errors: store errors (errstr names the shard).
 * @locality the thread in kchat_backend_start(), before the consumer runs */
KCHAT_MUST_CHECK
int kchat__datadir_check_cluster(kchat_backend *be, char *errstr, size_t len);

/* Close what kchat__datadir_open() opened and free the shards.
 * @locality the thread in kchat_backend_start() or kchat_backend_stop(),
 *           after the producer is closed (delivery reports use the shards) */
void kchat__datadir_close(kchat_backend *be);

/* Acquiring @p sh (ownership.c), once it is caught up with the changelog:
 * give it the data set id if it has none yet (a shard new to the
 * deployment) and make its stored offsets the current cluster's. Errors:
 * store errors (errstr names the shard).
 * @locality the thread acquiring @p sh, no worker touching it */
KCHAT_MUST_CHECK
int kchat__datadir_shard_settle(kchat_backend *be, struct shard *sh, char *errstr, size_t len);

/* Set @p sh's copy aside (it diverged, is another data set's, or is too
 * old to catch up: @p why says which, in the log): its environment is
 * closed, its directory renamed `shard-NNNN.aside-TIME` (kept for the
 * operator, logged) and an empty one opened in its place.
 * Errors: KCHAT_EIO, store errors (errstr says which).
 * @locality the thread acquiring @p sh, no worker touching it */
KCHAT_MUST_CHECK
int kchat__datadir_shard_set_aside(kchat_backend *be, struct shard *sh, const char *why,
                                   char *errstr, size_t len);

/* Whether @p m was written by this data set (its kchat-dataset header);
 * untagged records count as ours only if @p untagged_ok. Logs the first
 * foreign record of each kind (@p kind 0: command, 1: directory record,
 * 2: room summary) of the run.
 * @locality any thread */
bool kchat__dataset_ours(kchat_backend *be, const rd_kafka_message_t *m, bool untagged_ok,
                         int kind);

/* ---- ownership.c: the shards this process serves ---- */

/* The consumer's prepare(): acquire every shard of @p parts not owned yet
 * (caught up with the changelog, kept changes confirmed, outbox produced
 * again), retrying one that fails until it succeeds or the backend stops.
 * Nothing without a changelog (every shard is owned throughout).
 * @locality the consumer's poll thread */
void kchat__shards_prepare(void *opaque, const rd_kafka_topic_partition_list_t *parts);

/* The consumer's revoked(): give up every owned shard of @p parts once what
 * it produced is confirmed (a bounded wait), and wait until no worker is
 * inside an upkeep of one of them.
 * @locality the consumer's poll thread */
void kchat__shards_revoked(void *opaque, const rd_kafka_topic_partition_list_t *parts);

/* At start: every shard owned when the backend keeps no changelog (one
 * process serves its data directory), none otherwise (the assignment
 * decides).
 * @locality the thread in kchat_backend_start(), before the consumer runs */
void kchat__shards_own_all(kchat_backend *be);

/* Whether everything @p sh produced is confirmed and nothing of it waits:
 * no held record, no delivery to prune, nothing to produce again.
 * @locality worker that owns @p sh
 * @locks takes sh->lock, the producer lock (shared) */
bool kchat__shard_quiet(kchat_backend *be, struct shard *sh);

/* The shards-owned and restoring gauges for /metrics.
 * @locality any thread */
void kchat__ownership_metrics(kchat_backend *be, FILE *out);

/* ---- standby.c: warm copies of shards owned by other nodes ---- */

/* Start the standby thread when the backend keeps a changelog and
 * --standby-replicas is above 0: every 2 s it reads the group's members
 * and assignments and catches up the copies of the shards this process is
 * a standby of. Errors: KCHAT_ENOMEM (errstr says why).
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
int kchat__standby_start(kchat_backend *be, char *errstr, size_t len);

/* Stop and join the standby thread (sets be->closing); nothing when it
 * does not run.
 * @locality the thread in kchat_backend_start() or kchat_backend_stop() */
void kchat__standby_stop(kchat_backend *be);

/* ---- backend.c: helpers of the files above ---- */

/* A librdkafka configuration with the backend's bootstrap servers, client
 * id and -X settings; NULL when one is refused (errstr says why).
 * @locality any thread */
rd_kafka_conf_t *kchat__kafka_conf(const kchat_backend *be, char *errstr, size_t len);

/* Monotonic microseconds (latencies, worker progress, log pacing). */
int64_t kchat__monotonic_us(void);

/* Sleep @p ms milliseconds. */
void kchat__sleep_ms(int ms);

/* Sleep @p us microseconds. */
void kchat__sleep_us(int64_t us);

#endif /* KCHAT_ACTORS_H */
