/*
 * Private to src/actors: the backend's shared state and the interface between
 * the batch loop (backend.c), the reply builders (reply.c) and the operations
 * (users.c, friends.c, rooms.c, chat.c).
 *
 * Threading: a shard belongs to exactly one worker (shard mod W); everything
 * reached through a `struct shard` is touched only by that worker, except the
 * fields under `lock`, which the producer's delivery-report thread also uses.
 */
#ifndef KCHAT_ACTORS_H
#define KCHAT_ACTORS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "kchat/backend.h"
#include "kchat/codec.h"
#include "kchat/consumer.h"
#include "kchat/metrics.h"
#include "kchat/store.h"
#include "kchat/topics.h"

/* Outbox record kinds: what happens once Kafka has the record. */
enum {
    OUT_REPLY = 1,     /* response, event, directory record, dead letter: delete on delivery */
    OUT_COMMAND = 2,   /* internal command: delete once the target shard applied it */
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
    uint64_t applied;          /* its watermark for us, as last read */
    uint64_t legacy_applied;   /* its outbox-seq watermark for us (older commands) */
    int64_t since_ms;          /* when that watermark last moved (or the first
                                  command went pending) */
    int64_t backoff_ms;        /* wait before the next re-send */
    bool resend_now;           /* Kafka refused one of them: re-send at the next check */
};

/* A record appended to a shard's outbox in the open transaction, kept in
 * memory so it can be produced right after the commit. */
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
    kchat_header hdr[4];
    size_t n_hdr;
    char *hdr_buf;            /* owns the header names and values */
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

struct shard {
    uint32_t id;
    kchat_store *store;
    /* worker only */
    struct pending_cmd *cmds;
    size_t n_cmds, cap_cmds;
    struct cmd_link *links;     /* [partitions], by target shard; NULL until a command */
    int64_t last_ack_check_ms;
    struct login_throttle throttle; /* zeroed with the shard; needs no release */
    int64_t fail_since_ms;      /* first failed commit of the current run, 0: none */
    int64_t fail_logged_ms;     /* last time that run was logged */
    unsigned long fail_count;   /* failed commits in the current run */
    /* shared with the delivery-report thread */
    pthread_mutex_t lock;
    struct seqlist delivered;   /* to delete from the outbox */
    struct seqlist resend;      /* delivery failed: produce again */
};

/* Per-worker scratch, reused across batches. */
struct worker {
    unsigned id;
    struct out_rec *out;
    size_t n_out, cap_out;
    atomic_int_fast64_t last_progress_ms; /* last time this worker finished a batch or tick */
    kchat_request req;          /* big: kept here rather than on the stack */
    size_t *idx;                /* [max_batch]: one shard's records of a batch */
    bool *done;                 /* [max_batch]: records already grouped */
};

struct kchat_backend {
    const kchat_config *cfg;
    kchat_embedded *embedded;
    char *bootstraps;
    int partitions;
    unsigned n_workers;
    struct shard *shards;       /* [partitions] */
    struct worker *workers;     /* [n_workers] */
    kchat_store *directory;     /* replica of kchat-directory */
    rd_kafka_t *producer;       /* used under producer_lock (shared); replaced by the
                                   poller under it (exclusive) after a fatal error */
    pthread_rwlock_t producer_lock;
    atomic_bool producer_fatal; /* the producer failed for good: the poller replaces it */
    pthread_t producer_poller;
    bool poller_running;
    atomic_bool stopping;
    kchat_consumer *consumer;
    rd_kafka_t *dir_consumer;
    pthread_t dir_thread;
    bool dir_running;
    kchat_fmt events_fmt;
    char dummy_hash[128];       /* verified against for unknown users (even timing) */
    char dataset[33];           /* this data directory's data set id (32 hex digits):
                                   tags its commands and directory records */
    bool dataset_legacy;        /* made before data set ids: also take untagged
                                   directory records as ours */
    atomic_bool foreign_logged[2]; /* a foreign command [0], directory record [1] was logged */
    kchat_hist commit_seconds;  /* shard commit latency */
    kchat_hist batch_records;   /* records per shard transaction */
    struct {
        atomic_uint_fast64_t requests, errors, bad_requests, too_large, dead_letters,
            commands, duplicates, command_gaps, command_resends, command_skips, commits, commit_failures,
            produced, delivered, producer_restarts,
            login_failures, logins_throttled;
        atomic_uint_fast64_t foreign_commands, foreign_directory; /* of another data set */
    } stats;
};

/* One record being applied in one shard's open write transaction. */
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
    int64_t now_ms;
    kchat_request *req;
};

/* ---- reply.c: answers, events and outbox records ---- */

/* Append a record to the shard's outbox and remember it for producing.
 * Takes no ownership. Errors: store errors, KCHAT_ENOMEM. */
int kchat__out_append(struct ctx *c, uint8_t kind, uint32_t target, const char *topic,
                      int32_t partition, const void *key, size_t key_len,
                      const void *value, size_t value_len,
                      const kchat_header *hdrs, size_t n_hdrs);

/* Free what an out_rec owns (not the struct itself). */
void kchat__out_rec_release(struct out_rec *r);

/* Answer the request of @p c with success; @p body (stolen, may be NULL)
 * holds the fields added to the common ones. */
int kchat__reply_ok(struct ctx *c, json_t *body);

/* Answer with an error code and an English sentence (printf format). */
int kchat__reply_err(struct ctx *c, kchat_wire_err e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* kchat__reply_err() whose body also has the fields of @p extra (stolen,
 * may be NULL), e.g. retryAfterMs. */
int kchat__reply_err_with(struct ctx *c, kchat_wire_err e, json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Publish a chat-events record (stolen) for @p user_id. */
int kchat__event(struct ctx *c, const char *user_id, json_t *event);

/* Send an internal command (stolen) to shard @p target, keyed by @p key. */
int kchat__command(struct ctx *c, uint32_t target, const char *key, json_t *cmd);

/* Publish the profile of a user to kchat-directory and to the local replica. */
int kchat__directory_publish(struct ctx *c, const json_t *user);

/* Look a user up in the directory replica: a new reference to
 * {userId, userName, userStatus, ver}, or NULL when unknown. */
json_t *kchat__directory_get(kchat_backend *be, const char *user_id);

/* Apply one directory record (from Kafka or write-through) if newer. */
int kchat__directory_apply(kchat_backend *be, const json_t *entry);

/* ---- helpers shared by the operations ---- */

/* Shard of a user or room id. */
uint32_t kchat__shard_of(const kchat_backend *be, const char *id);

/* Read a JSON value stored under @p key in @p tb; NULL when absent or corrupt. */
json_t *kchat__get_json(kchat_txn *t, kchat_table tb, const void *key, size_t kl);
int kchat__put_json(kchat_txn *t, kchat_table tb, const void *key, size_t kl, const json_t *v);

/* Check the session header of @p c against its user; answers UNAUTHENTICATED
 * itself and returns false when it does not hold. Refreshes its last use. */
bool kchat__session_ok(struct ctx *c, int *rc);

/* The user record (stored form, with the password hash) or NULL. */
json_t *kchat__user_get(kchat_txn *t, const char *user_id);
/* The public user object of PROTOCOL.md §1 built from a stored record. */
json_t *kchat__user_public(const json_t *stored);

/* ---- operations: each answers exactly once, returns store errors only ---- */
int kchat__op_user_add(struct ctx *c);
int kchat__op_login(struct ctx *c);
int kchat__op_logout(struct ctx *c);
int kchat__op_status(struct ctx *c);
int kchat__op_add_friend(struct ctx *c);
int kchat__op_search_friend(struct ctx *c);
int kchat__op_add_room(struct ctx *c);
int kchat__op_search_room(struct ctx *c);
int kchat__op_add_chat(struct ctx *c);
int kchat__op_history(struct ctx *c);

/* Internal commands, applied in the target shard. */
int kchat__cmd_member(struct ctx *c, const json_t *cmd);
int kchat__cmd_chat(struct ctx *c, const json_t *cmd);
int kchat__cmd_history(struct ctx *c, const json_t *cmd);

/* The chat/history work once the room's shard is reached (local or command). */
int kchat__room_chat(struct ctx *c, const char *room_id, const char *writer_id,
                     const char *message, size_t message_len, const char *client_msg_id);
int kchat__room_history(struct ctx *c, const char *room_id, const char *user_id,
                        int64_t before_seq, int limit);

int64_t kchat__now_ms(void);

/* ---- throttle.c: login throttling, on the worker that owns the shard ---- */

/* Monotonic milliseconds: the clock of the throttle (wall-clock steps do not
 * lengthen or end a lockout). */
int64_t kchat__throttle_now_ms(void);

/* Milliseconds @p user_id stays locked after @p now_ms; 0 when it is not
 * (an ended lockout is forgotten here). */
int64_t kchat__throttle_locked(struct login_throttle *t, const char *user_id, int64_t now_ms);

/* Count a failed login of @p user_id (known or not); the failure that
 * reaches cfg->login_max_failures within cfg->login_window locks it for
 * cfg->login_lockout seconds. Does nothing when login_lockout is 0. A new
 * id may evict another's slot: free, then ended, then the oldest unlocked,
 * then the lockout ending first. */
void kchat__throttle_fail(struct login_throttle *t, const kchat_config *cfg,
                          const char *user_id, int64_t now_ms);

/* Forget @p user_id's failures (a successful login). */
void kchat__throttle_reset(struct login_throttle *t, const char *user_id);



/* friends.c: check the request's friendId list: not yourself (BAD_REQUEST),
 * every id a known user (USER_NOT_FOUND, "No user X; no <what>."). Answers
 * itself and returns false when a check fails. */
bool kchat__friend_ids_ok(struct ctx *c, const char *what, int *rc);

/* friends.c: whether @p friend_id is on @p user_id's friend list. */
bool kchat__is_friend(kchat_txn *t, const char *user_id, const char *friend_id);
#endif /* KCHAT_ACTORS_H */
