/*
 * A backend without Kafka, for unit tests of the operations
 * (src/actors/{users,friends,rooms,chat,reply,throttle}.c).
 *
 * One struct fx holds a config (Argon2 at its lowest cost), FX_PARTITIONS
 * shards each with a kchat_store in a temporary directory, the directory
 * replica and one worker. fx_call() runs one request the way the backend's
 * apply_request() (src/actors/batch.c) does: the record's content-type,
 * kchat-cid and kchat-session headers into a struct ctx, the body through
 * kchat_request_parse(), then the kchat__op_* function, in one write
 * transaction of the key's shard, committed. What the operation appended to
 * the worker's outbox records is then kept in fx->recs (answers, chat-events,
 * directory records, room summaries, internal commands), directory records
 * and room summaries are applied to the replica (as
 * kchat__worker_flush_out() does) and internal commands are
 * applied at once in their target shard (as kchat__command_apply() does), so
 * a room or a chat across shards runs end to end in this one thread.
 *
 * Not mirrored: offsets, outbox pruning, producing, the data set tag, the
 * dead letter of a record without a valid key (fx_call() wants a valid
 * one) and the wrong-partition check (the fixture always uses the key's
 * shard). Time: sessions and timestamps use f->now_ms, which a test sets;
 * login throttling uses the real monotonic clock (throttle.c).
 *
 * The fixture is compiled into each test program that includes ops/fixture.c
 * (tests/unit/ops/ is outside the Makefile's wildcard of test programs).
 * Its functions fail the running cmocka test on anything unexpected (a store
 * error, an operation that did not answer exactly once).
 */
#ifndef KCHAT_TEST_OPS_FIXTURE_H
#define KCHAT_TEST_OPS_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "actors/actors.h"
#include "actors/ops.h"
#include "actors/presence.h"
#include "actors/replicas.h"
#include "actors/streams.h"
#include "kchat/config.h"
#include "kchat/kafka.h"

#define FX_PARTITIONS 4
#define FX_PASSWORD "correct horse"   /* every fx_user()'s password */

/* An internal command on its way to its target shard. */
struct fx_cmd {
    uint32_t source, target;
    uint64_t cseq;                  /* its kchat-cmd-seq */
    char *value;                    /* the command's JSON, NUL-terminated */
};

struct fx {
    char dir[256];                  /* the temporary data directory */
    kchat_config cfg;               /* read at each use: a test may change it */
    kchat_backend be;
    struct worker w;
    int64_t now_ms;                 /* the ctx clock (sessions, timestamps) */

    /* the next fx_call()s: body format, kchat-cid (NULL: none) */
    kchat_fmt fmt;
    const char *cid;
    /* true: internal commands wait in `held` until fx_deliver() */
    bool hold_commands;

    /* every record the last fx_call() (and the commands it caused) sent, in
     * the order they were appended; released by the next fx_call() */
    struct out_rec *recs;
    size_t n_recs, cap_recs;

    struct fx_cmd *held;
    size_t n_held, cap_held;
    size_t n_duplicates;            /* commands dropped as already applied */

    void **kept;                    /* fx_keep(): freed at teardown */
    size_t n_kept;
};

/* cmocka setup and teardown: *state is a new struct fx with the default
 * config (kchat_config_init()) but the cheapest Argon2, FX_PARTITIONS
 * shards, JSON events, and now_ms = the real time at setup. */
int fx_setup(void **state);
int fx_teardown(void **state);

/* ---- running requests ---- */

/* Run one request of @p op with record key @p key, header kchat-session
 * @p session (NULL: none) and record value @p value (@p len bytes) in format
 * @p fmt, as the backend does; commit; apply directory records and deliver
 * commands (unless held). Returns the decoded answer (a new reference),
 * after checking there is exactly one, keyed by the acting user, with the
 * request's kchat-cid and a content-type of @p fmt. */
json_t *fx_call_raw(struct fx *f, kchat_op op, const char *key, const char *session,
                    kchat_fmt fmt, const void *value, size_t len);

/* fx_call_raw() with a body given as JSON text (printf format), sent in
 * f->fmt (turned into msgpack when that is KCHAT_FMT_MSGPACK). */
json_t *fx_call(struct fx *f, kchat_op op, const char *key, const char *session,
                const char *json_fmt, ...) __attribute__((format(printf, 5, 6)));

/* fx_call() that must succeed: checks userId, isSuccess, errorCode "" and
 * errorMessage ""; returns the answer (a new reference). */
json_t *fx_ok(struct fx *f, kchat_op op, const char *key, const char *session,
              const char *json_fmt, ...) __attribute__((format(printf, 5, 6)));

/* fx_call() that must fail with errorCode @p code: checks userId, isSuccess
 * false and a non-empty errorMessage; and that no table of any shard or of
 * the replica changed (PROTOCOL.md section 5: a failed request changes no
 * state). Returns the answer (a new reference). */
json_t *fx_err(struct fx *f, const char *code, kchat_op op, const char *key,
               const char *session, const char *json_fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Apply the held commands in order (and whatever commands they cause).
 * Their records are added to f->recs. */
void fx_deliver(struct fx *f);

/* Apply internal command @p json (its JSON text) in shard @p target now,
 * outside any command stream (no kchat-cmd-seq bookkeeping), as the
 * backend does once a command is due. Returns what the kchat__cmd_*
 * function returned: KCHAT_OK (committed; its records in f->recs) or
 * KCHAT_EDECODE for a command that does not decode (nothing committed). */
int fx_command(struct fx *f, uint32_t target, const char *json);
/* Apply kchat-presence record @p json (its JSON text) in shard @p shard at
 * f->now_ms, then the presence sweep, as the backend's batch does; commit;
 * its records in f->recs (commands delivered unless held). */
void fx_presence(struct fx *f, uint32_t shard, const char *json);
/* The presence sweep alone in shard @p shard at f->now_ms (a transaction
 * of no records, as the backend's idle upkeep runs one when due). */
void fx_presence_sweep(struct fx *f, uint32_t shard);

/* The decoded answer of @p op among f->recs (a new reference), NULL when
 * there is none; fails the test when there are several. */
json_t *fx_answer(const struct fx *f, kchat_op op);

/* ---- users ---- */

/* Register @p id (userName "Name <id>", email "<id>@example.com",
 * password FX_PASSWORD) and check the answer. */
void fx_register(struct fx *f, const char *id);
/* Log @p id in; the session id, owned by @p f until teardown. */
const char *fx_login(struct fx *f, const char *id);
/* fx_register() then fx_login(). */
const char *fx_user(struct fx *f, const char *id);
/* @p id follows each of @p friends (a JSON array text, e.g. "[\"b\",\"c\"]"). */
void fx_befriend(struct fx *f, const char *id, const char *session, const char *friends);
/* @p id (who follows them) makes a room with @p friends (a JSON array text);
 * its roomId is copied to @p room_id. */
void fx_room(struct fx *f, const char *id, const char *session, const char *friends,
             char room_id[65]);

/* The users of the room and chat tests: alice; carol and eve in alice's
 * shard ("home"); bob and dave in the next one ("away"); each registered
 * and logged in (sa, sb, ... their sessions); alice follows bob and carol. */
struct fx_cast {
    char bob[65], carol[65], dave[65], eve[65];
    const char *sa, *sb, *sc, *sd, *se;
    uint32_t home, away;
    char room[65];    /* with_room: alice's room with bob and carol, in home */
};
void fx_cast_make(struct fx *f, struct fx_cast *c, bool with_room);

/* Write to @p out (65 bytes) the first of "<prefix>0", "<prefix>1", ...
 * whose shard is @p shard. */
void fx_id_on_shard(const struct fx *f, const char *prefix, uint32_t shard, char out[65]);
uint32_t fx_shard_of(const struct fx *f, const char *id);

/* ---- inspecting what was sent ---- */

/* How many records of the last call went to @p topic (NULL: any). */
size_t fx_count(const struct fx *f, const char *topic);
/* The value of header @p name of @p r as a new string, NULL if absent. */
char *fx_header(const struct out_rec *r, const char *name);
/* A record's value decoded by its content-type header (JSON without one). */
json_t *fx_decode(const struct out_rec *r);
/* The decoded chat-events of the last call keyed by @p user, in order
 * (a new array); checks each event's userId is @p user. */
json_t *fx_events(const struct fx *f, const char *user);
/* The decoded records of the last call on @p topic, in order (a new array). */
json_t *fx_records(const struct fx *f, const char *topic);

/* ---- inspecting state ---- */

/* Every key and value of the operations' tables (users, sessions, friends,
 * members, rooms, messages, idempotency) of every shard, and of the
 * replica's directory and room summaries tables, as text (malloc'd). */
char *fx_state(struct fx *f);
/* The number of keys in table @p tb of all shards. */
size_t fx_rows(struct fx *f, kchat_table tb);
/* A stored JSON value of shard @p shard (a new reference) or NULL. */
json_t *fx_get(struct fx *f, uint32_t shard, kchat_table tb, const void *key, size_t kl);

/* ---- assertions on answers ---- */

/* json_equal() of @p v to the JSON text @p expect_fmt (printf format). */
void fx_assert_json(const json_t *v, const char *expect_fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* @p v is a 24-character ISO-8601 UTC timestamp of @p ms. */
void fx_assert_time(const json_t *v, int64_t ms);
const char *fx_str(const json_t *obj, const char *key);
/* A string of @p n times @p ch, owned by @p f until teardown. */
char *fx_rep(struct fx *f, char ch, size_t n);
/* Free @p p (malloc'd) at teardown; returns it. */
void *fx_keep(struct fx *f, void *p);
json_int_t fx_int(const json_t *obj, const char *key);

#endif /* KCHAT_TEST_OPS_FIXTURE_H */
