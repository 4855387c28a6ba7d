/**
 * @file kclient.h
 * @brief A small Kafka test client for kchat's integration tests.
 *
 * Integration tests treat `bin/kchat` as a black box: they start it as a
 * child process and speak to it over Kafka only, using the wire contract of
 * docs/protocol.md. This library provides the pieces every such test
 * needs:
 *
 *  - **Processes** (`kc_proc_*`): fork/exec `kchat broker` or `kchat serve`
 *    with its stdout+stderr captured in a log file under the scratch
 *    directory, wait (bounded) for its bootstrap file, stop it with SIGTERM
 *    or SIGKILL and reap it with a timeout.
 *  - **Client** (`kc_client_*`): one producer (partitioner `murmur2_random`,
 *    as PROTOCOL.md §1 requires) and one consumer that reads *every*
 *    partition of the ten response topics, `chat-events` and `kchat-dlq` by
 *    manual assignment (no consumer group membership, so it sees everything;
 *    librdkafka's assign() wants a group.id, so a unique one is set, but it
 *    is never joined and nothing is ever committed). A
 *    background thread copies each consumed record into an in-memory,
 *    append-only list that the waiting functions scan.
 *  - **Calls** (`kc_call*`): send a request with a fresh `kchat-cid` and wait
 *    (default 10 s) for the response with that cid; the envelope (key,
 *    content-type, cid) is checked and the body decoded to a jansson value.
 *  - **Checks** (`kc_check_*`): predicates that print a precise diagnostic
 *    (the offending body and the tail of every live server log) and return
 *    false, meant to be wrapped in cmocka's `assert_true()`.
 *  - **Conversions**: JSON <-> msgpack, ISO-8601 timestamps, murmur2.
 *
 * Caveats:
 *  - A client's send/call functions are meant to be used by one thread; the
 *    waiting functions may be used from any thread.
 *  - Every wait is bounded; a function that times out prints why and returns
 *    NULL/false instead of blocking.
 *  - Records returned as `const kc_record *` are owned by the client and stay
 *    valid until kc_client_free().
 *  - Child processes get `PR_SET_PDEATHSIG(SIGKILL)`, so a test program that
 *    dies (or is killed by the runner's timeout) never leaves a server behind.
 *
 * Environment: `KCHAT_BIN` (the binary, default `bin/kchat`) and
 * `KCHAT_TEST_TMP` (scratch directory, default `/tmp`); each program works in
 * its own subdirectory `$KCHAT_TEST_TMP/<program>-<pid>/`.
 */
#ifndef KCHAT_TESTS_KCLIENT_H
#define KCHAT_TESTS_KCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>
#include <msgpack.h>

/* ------------------------------------------------------------------------ */
/** @name Constants of the wire contract                                     */
/* ------------------------------------------------------------------------ */

/** Number of request/response topic pairs (PROTOCOL.md §3). */
#define KC_OP_COUNT 10
/** The ten operation names; topics are `<op>-request` / `<op>-response`. */
extern const char *const kc_ops[KC_OP_COUNT];

/** Number of the operations protocol v1.1 added (PROTOCOL.md §3, 11-13). */
#define KC_OP_V11_COUNT 3
/**
 * The v1.1 operation names: `room-read`, `room-invite`, `room-leave`. Kept
 * apart from kc_ops so that the loops over kc_ops (every operation's bad
 * input, topic checks) are unchanged. A client also consumes their response
 * topics: kc_client_new() assigns them when they exist, waiting up to 5 s
 * more for them once every other topic is there (a v1.0 server has none).
 */
extern const char *const kc_ops_v11[KC_OP_V11_COUNT];

#define KC_TOPIC_EVENTS "chat-events"
#define KC_TOPIC_DLQ    "kchat-dlq"
#define KC_HDR_CID      "kchat-cid"
#define KC_HDR_SESSION  "kchat-session"
#define KC_HDR_CTYPE    "content-type"
#define KC_HDR_ERROR    "kchat-error"
#define KC_CT_JSON      "application/json"
#define KC_CT_MSGPACK   "application/msgpack"

/** Default time kc_call() waits for a response (PROTOCOL tests: 10 s). */
#define KC_CALL_TIMEOUT_MS 10000

/* ------------------------------------------------------------------------ */
/** @name Scratch space, ids, time                                           */
/* ------------------------------------------------------------------------ */

/**
 * @brief This program's scratch directory, created on first use:
 *        `$KCHAT_TEST_TMP/<program>-<pid>` (KCHAT_TEST_TMP defaults to /tmp).
 * @return a static string; never NULL (aborts when it cannot be created).
 */
const char *kc_tmpdir(void);

/**
 * @brief `kc_tmpdir()/name`.
 * @return a malloc'd string the caller frees.
 */
char *kc_tmppath(const char *name);

/** @brief The deployment secret of this test program's servers (made on
 *  the first call, mode 0600, in kc_tmpdir()): kc_serve_start_ex() passes it
 *  as `--secret-file`, and so should every gateway of the same servers.
 *  Static string; aborts when it cannot be written. Any thread. */
const char *kc_secret_file(void);

/** @brief A script in the test's directory that runs kc_bin() under a
 *         descriptor limit of @p nofile (soft and hard, through prlimit):
 *         set KCHAT_BIN to it around a start. malloc'd path; aborts on error. */
char *kc_nofile_wrapper(int nofile);

/** @brief The kchat binary: `$KCHAT_BIN` or `bin/kchat`. Static string. */
const char *kc_bin(void);

/**
 * @brief Write a user id unique to this run into @p out:
 *        `<tag>-<run>-<n>` with `<run>` from the pid and start time, so two
 *        runs against one broker never collide. Only `[A-Za-z0-9_.-]`.
 * @param[in] tag short, at most 24 bytes of `[A-Za-z0-9_.-]`.
 */
void kc_uid(char *out, size_t size, const char *tag);

/**
 * @brief A fresh random password (`Pw` + 24 hex digits) written to @p out
 *        (size >= 27) and remembered, so that kc_passwords() can list every
 *        password the program has used.
 */
void kc_new_password(char *out, size_t size);

/**
 * @brief Remember a password the program sent (e.g. a wrong one in a failed
 *        login) so that leak checks look for it too. Copied.
 */
void kc_remember_password(const char *pw);

/**
 * @brief Every password remembered so far.
 * @param[out] count the number of entries.
 * @return a static array valid until the next kc_new_password()/kc_remember_password().
 */
const char *const *kc_passwords(size_t *count);

/** @brief A loopback TCP port free a moment ago (bound, read, closed), or -1. */
int kc_free_port(void);

/** @brief CLOCK_MONOTONIC in milliseconds. */
int64_t kc_now_ms(void);

/** @brief Wall clock (CLOCK_REALTIME) in milliseconds since the epoch. */
int64_t kc_wall_ms(void);

/** @brief Sleep @p ms milliseconds. */
void kc_sleep_ms(int ms);

/* ------------------------------------------------------------------------ */
/** @name Processes                                                          */
/* ------------------------------------------------------------------------ */

/** A spawned kchat process (opaque). */
typedef struct kc_proc kc_proc;

/**
 * @brief Start `kc_bin()` with @p args and wait for its bootstrap file.
 *
 * stdout and stderr go to `kc_tmpdir()/<name>-<k>.log` (k counts starts of
 * the same name, so a restarted server gets a fresh log). @p bootstrap_file
 * is deleted first, then polled until it holds one non-empty line, the
 * process dies, or @p timeout_s passes.
 *
 * @param[in] name a short label for the log file and diagnostics.
 * @param[in] args NULL-terminated argument list *without* the program name.
 * @param[in] bootstrap_file path the process writes its bootstrap to, or
 *            NULL to return right after the fork.
 * @return the process, or NULL (after printing the log tail) when it could not
 *         be started, exited early or did not write the file in time; in that
 *         case the child has been killed and reaped.
 * @note The process is registered for diagnostics (kc_diag_dump()) until
 *       kc_proc_free().
 */
kc_proc *kc_proc_start(const char *name, const char *const *args,
                       const char *bootstrap_file, int timeout_s);

/**
 * @brief The real Kafka cluster the suite runs against: `$KCHAT_TEST_BROKERS`
 *        (a bootstrap list, set by tests/run.sh --kafka), or NULL when the
 *        tests use kchat's own brokers (embedded or `kchat broker`).
 */
const char *kc_test_brokers(void);

/** Pass as `brokers` to kc_serve_start() for an embedded broker even when
 *  kc_test_brokers() names a real cluster (tests of the embedded install). */
#define KC_EMBEDDED ""

/**
 * @brief Start `kchat serve --data DATA --partitions N --bootstrap-file F
 *        --pwhash-ops 1 --pwhash-mem 8192 [--brokers B]` (F is
 *        `kc_tmpdir()/<name>.bootstrap`) and wait up to 30 s for F
 *        (KC_KAFKA_START_S on the suite's real Kafka).
 * @param[in] brokers the bootstrap list; NULL for the suite's broker
 *            (kc_test_brokers() when set, else an embedded one);
 *            KC_EMBEDDED for an embedded broker in every case.
 * @param[in] extra NULL or NULL-terminated extra arguments.
 */
kc_proc *kc_serve_start(const char *name, const char *data_dir, const char *brokers,
                        int partitions, const char *const *extra);

/** The least kc_serve_start_ex() waits for a `kchat serve` on the suite's
 *  real Kafka (kc_test_brokers()): a fresh cluster's first start makes its
 *  internal topics first. */
#define KC_KAFKA_START_S 120

/**
 * @brief kc_serve_start() waiting up to @p timeout_s for the bootstrap file, for
 *        a restart that may first have to wait for its consumer group; at
 *        least KC_KAFKA_START_S when kc_test_brokers() is set and @p brokers
 *        is not KC_EMBEDDED (a mock cluster's address waits as long: a bound,
 *        not a check).
 */
kc_proc *kc_serve_start_ex(const char *name, const char *data_dir, const char *brokers,
                           int partitions, const char *const *extra, int timeout_s);

/**
 * @brief `kchat gateway --http 127.0.0.1:0 --url-file F --secret-file S
 *        EXTRA...` (S: kc_secret_file(), as kc_serve_start()'s), waiting up
 *        to 60 s for F.
 * @param[out] base the gateway's URL without its trailing '/'.
 * @return the process, or NULL as kc_proc_start().
 */
kc_proc *kc_gateway_start(const char *name, const char *const *extra, char *base, size_t size);

/**
 * @brief The suite's standalone broker: with kc_test_brokers() set, a handle
 *        on that real cluster (no process: stopping it does nothing, its
 *        bootstrap is the list); otherwise kc_mock_broker_start().
 */
kc_proc *kc_broker_start(const char *name, int partitions);

/** @brief Start `kchat broker --bootstrap-file F --partitions N`, wait up to 30 s. */
kc_proc *kc_mock_broker_start(const char *name, int partitions);

/** @brief The bootstrap string the process wrote (no newline), or "" when none. */
const char *kc_proc_bootstrap(const kc_proc *p);

/** @brief The log file capturing the process's stdout and stderr. */
const char *kc_proc_log(const kc_proc *p);

/** @brief Process id, or -1 once reaped. */
pid_t kc_proc_pid(const kc_proc *p);

/**
 * @brief Send @p sig and wait up to @p timeout_s for the process to exit.
 *
 * When it does not exit in time it is killed with SIGKILL and reaped.
 * Stopping an already reaped process returns its saved status.
 * @param[out] status the waitpid() status (may be NULL).
 * @return 0 when it exited (by itself or by @p sig) within the timeout,
 *         -1 when it had to be SIGKILLed after the timeout.
 */
int kc_proc_stop(kc_proc *p, int sig, int timeout_s, int *status);

/**
 * @brief SIGTERM @p p and wait up to @p timeout_s: true when it exited with
 *        status 0 in time (a clean stop); otherwise prints why and the tail of
 *        its log and returns false. Same thread rules as kc_proc_stop().
 */
bool kc_proc_stop_clean(kc_proc *p, int timeout_s);

/** @brief kc_proc_stop() with SIGTERM and @p timeout_s, then kc_proc_free();
 *         nothing for NULL. For teardowns that do not judge the stop. */
void kc_proc_end(kc_proc *p, int timeout_s);

/** @brief Kill (SIGKILL) if still running, reap, unregister, free. NULL is fine. */
void kc_proc_free(kc_proc *p);

/** @brief Print the last @p lines lines of the process log to @p out. */
void kc_proc_log_tail(const kc_proc *p, int lines, FILE *out);

/** @brief Print the log tail of every registered process to stderr. */
void kc_diag_dump(void);

/** @brief "exit 0", "exit 3", "signal 9"… for @p status (static buffer). */
const char *kc_status_str(int status);

/**
 * @brief Read a whole file.
 * @return malloc'd contents (NUL-terminated, @p len without the NUL), or NULL.
 */
char *kc_read_file(const char *path, size_t *len);

/** @brief Whether file @p path contains the bytes @p needle. */
bool kc_file_contains(const char *path, const void *needle, size_t len);

/** @brief How many times the string @p needle occurs in file @p path, not
 *         overlapping (0 when the file cannot be read). */
size_t kc_file_count(const char *path, const char *needle);

/** @brief Remove a directory tree (like `rm -rf`). Missing is fine. */
void kc_rm_rf(const char *path);

/**
 * @brief Every LMDB environment under @p dir: the directories holding a
 *        `data.mdb` file, searched recursively.
 * @return a malloc'd, NULL-terminated array of malloc'd paths (free with
 *         kc_strv_free()); @p count gets its length.
 */
char **kc_find_lmdb_envs(const char *dir, size_t *count);

/** @brief Free a NULL-terminated array of malloc'd strings. */
void kc_strv_free(char **v);

/**
 * @brief Run a command through `/bin/sh -c` and capture its stdout.
 * @param[out] exit_status the exit code, or -1 when it did not exit normally.
 * @return malloc'd output, or NULL when it could not be run.
 */
char *kc_run_capture(const char *cmd, size_t *len, int *exit_status);

/* ------------------------------------------------------------------------ */
/** @name Records                                                            */
/* ------------------------------------------------------------------------ */

/** One header to send: value of @p len bytes (value NULL = null header). */
typedef struct kc_header {
    const char *name;
    const void *value;
    size_t len;
} kc_header;

/** One header of a consumed record. */
typedef struct kc_rec_header {
    char *name;
    void *value;    /**< NUL-terminated copy; NULL for a null header */
    size_t len;
} kc_rec_header;

/** A consumed record, copied out of librdkafka. Owned by the client. */
typedef struct kc_record {
    char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp;          /**< ms since epoch, -1 if unknown */
    bool has_key;               /**< false: record without key */
    char *key;                  /**< NUL-terminated copy (may contain NULs) */
    size_t key_len;
    bool has_value;             /**< false: null value */
    char *value;                /**< NUL-terminated copy */
    size_t value_len;
    kc_rec_header *headers;
    size_t header_cnt;
    char *cid;                  /**< copy of the last kchat-cid header, or NULL */
    size_t index;               /**< position in the client's record list */
    json_t *body;               /**< decoded body (JSON, or msgpack when the
                                     content-type says so), NULL when the value
                                     does not decode to an object */
} kc_record;

/**
 * @brief The last header @p name of @p r.
 * @param[out] len its length (may be NULL).
 * @return a NUL-terminated value, or NULL when absent (or a null header).
 */
const char *kc_record_header(const kc_record *r, const char *name, size_t *len);

/** @brief Whether @p r has a header called @p name (even a null one). */
bool kc_record_has_header(const kc_record *r, const char *name);

/** @brief Whether the key of @p r is exactly @p key (NULL: record has no key). */
bool kc_record_key_is(const kc_record *r, const char *key);

/** @brief Print a record (topic, partition, offset, key, headers, value) to stderr. */
void kc_record_dump(const kc_record *r, const char *why);

/* ------------------------------------------------------------------------ */
/** @name Client                                                             */
/* ------------------------------------------------------------------------ */

/** Body encodings. */
typedef enum kc_fmt {
    KC_FMT_JSON = 0,   /**< JSON body, `content-type: application/json` */
    KC_FMT_MSGPACK,    /**< msgpack body, `content-type: application/msgpack` */
} kc_fmt;

/** Where the consumer starts. */
typedef enum kc_start {
    KC_FROM_BEGINNING = 0, /**< every record the topics hold */
    KC_FROM_END,           /**< only records produced after kc_client_new() returns */
} kc_start;

/** A test client (opaque): one producer, one all-partition consumer. */
typedef struct kc_client kc_client;

/**
 * @brief Connect to @p bootstrap, wait (up to 30 s) until all response
 *        topics, `chat-events` and `kchat-dlq` exist, assign every partition
 *        of them and start the background consumer thread.
 * @return the client, or NULL after printing why.
 */
kc_client *kc_client_new(const char *bootstrap, kc_start start);

/**
 * @brief kc_client_new() for deployment @p deployment (`kchat serve
 *        --deployment NAME`): its topics are named `NAME.<topic>` unless it
 *        is NULL or "kchat"; the client reads and writes only those.
 */
kc_client *kc_client_new_in(const char *bootstrap, kc_start start, const char *deployment);

/** @brief Stop the consumer thread, destroy the Kafka handles, free every record. */
void kc_client_free(kc_client *c);

/** @brief A test's teardown of its client and server: kc_client_free(*c)
 *         and kc_proc_free(*srv), both set to NULL (either may be NULL). */
void kc_release(kc_client **c, kc_proc **srv);

/**
 * @brief An embedded install on @p data_dir (kc_serve_start() with
 *        KC_EMBEDDED and no extra arguments) and a client reading it from
 *        the beginning, into @p *srv and @p *client: the caller's, so that
 *        its teardown frees whatever a failed test left there.
 * @return true when both are up; false (after a diagnostic) otherwise.
 */
bool kc_embedded_up(const char *name, const char *data_dir, int partitions, kc_proc **srv,
                    kc_client **client);

/**
 * @brief Free @p *client, stop @p *srv with kc_proc_stop_clean() within
 *        @p timeout_s and free it; both become NULL.
 * @return whether the stop was clean.
 */
bool kc_embedded_down(kc_proc **srv, kc_client **client, int timeout_s);

/** @brief Default body encoding of kc_call() and the helpers (initially JSON). */
void kc_client_set_fmt(kc_client *c, kc_fmt fmt);
kc_fmt kc_client_fmt(const kc_client *c);

/** @brief Partition count of @p topic from fresh metadata, or -1. */
int kc_topic_partitions(kc_client *c, const char *topic);

/** @brief The number of records consumed so far (a mark for later scans). */
size_t kc_record_count(kc_client *c);

/** @brief Record number @p i (< kc_record_count()). Stable pointer. */
const kc_record *kc_record_get(kc_client *c, size_t i);

/** @brief A record predicate for kc_wait_record(). */
typedef bool (*kc_match_fn)(const kc_record *r, void *arg);

/**
 * @brief Wait up to @p timeout_ms for a record with index >= @p from that
 *        satisfies @p fn.
 * @return the first such record, or NULL on timeout (no diagnostic printed).
 * @note @p fn runs with the client's lock held: it must not call kc_* functions
 *       that take a client.
 */
const kc_record *kc_wait_record(kc_client *c, size_t from, kc_match_fn fn, void *arg,
                                int timeout_ms);

/** @brief Number of records (index >= @p from) satisfying @p fn, now. */
size_t kc_count_records(kc_client *c, size_t from, kc_match_fn fn, void *arg);

/**
 * @brief Produce one record and wait (up to 10 s) for its delivery report.
 * @param[in] partition -1 for the partitioner (murmur2_random), else explicit.
 * @param[in] key NULL for a record without key.
 * @param[in] value NULL for a null value.
 * @return true when the broker acknowledged it.
 */
bool kc_send_raw(kc_client *c, const char *topic, int32_t partition,
                 const void *key, size_t key_len, const void *value, size_t value_len,
                 const kc_header *headers, size_t header_cnt);

/** A request for kc_call_req(). Zero-initialise, then set what you need. */
typedef struct kc_req {
    const char *op;          /**< e.g. "login": sent to login-request, answer on login-response */
    const char *key;         /**< record key; NULL = no key */
    const char *session;     /**< `kchat-session` header; NULL = absent */
    const char *cid;         /**< `kchat-cid`; NULL = a fresh unique one */
    bool no_cid;             /**< send no `kchat-cid`; the answer is then the next
                                  record on the response topic keyed by @c key */
    kc_fmt fmt;              /**< body encoding and content-type */
    bool no_ctype;           /**< omit the content-type header */
    const char *ctype;       /**< content-type value overriding the one of @c fmt */
    const json_t *body;      /**< the body, encoded per @c fmt (unless @c raw/@c null_value) */
    const void *raw;         /**< when non-NULL: sent verbatim as the value */
    size_t raw_len;
    bool null_value;         /**< send a null value */
    const kc_header *extra;  /**< more headers */
    size_t extra_cnt;
    int timeout_ms;          /**< 0: KC_CALL_TIMEOUT_MS */
    kc_fmt resp_fmt;         /**< how to decode the answer (normally = @c fmt) */
    bool resp_fmt_set;       /**< use @c resp_fmt instead of @c fmt */
} kc_req;

/**
 * @brief Send @p req and wait for its response.
 *
 * The response is the first record on `<op>-response` carrying the request's
 * cid (or, with @c no_cid, the first record after the send keyed by @c key).
 * It must be keyed by the request's key, carry a content-type naming the
 * request's encoding, and (with @c no_cid) carry no cid; its value must
 * decode, in that encoding, to an object. Any violation, or a timeout, prints
 * a diagnostic with the server log tails and yields NULL.
 *
 * @param[out] rec the response record (owned by the client), may be NULL.
 * @param[out] cid_out the cid used (size >= 72), may be NULL.
 * @return the decoded body (new reference: json_decref() it), or NULL.
 */
json_t *kc_call_req(kc_client *c, const kc_req *req, const kc_record **rec,
                    char *cid_out);

/**
 * @brief kc_call_req() with the client's encoding and a fresh cid.
 * @param[in] body stolen (json_decref'd by the call); NULL is reported and yields NULL.
 */
json_t *kc_call(kc_client *c, const char *op, const char *key, const char *session,
                json_t *body);

/**
 * @brief Send a request with the given cid (NULL = fresh) and return at once
 *        (after the broker acknowledged it); collect the answer with kc_wait_cid().
 * @param[out] cid_out the cid used (size >= 72), may be NULL.
 * @param[in] body not stolen.
 */
bool kc_send_req(kc_client *c, const char *op, const char *key, const char *session,
                 const char *cid, const json_t *body, char *cid_out);

/**
 * @brief The first record on `<op>-response` (any response topic when @p op
 *        is NULL) whose kchat-cid is @p cid, waiting up to @p timeout_ms.
 * @return NULL on timeout (no diagnostic).
 */
const kc_record *kc_wait_cid(kc_client *c, const char *op, const char *cid, int timeout_ms);

/** @brief Every response record with kchat-cid @p cid received so far (count). */
size_t kc_count_cid(kc_client *c, const char *cid);

/**
 * @brief Wait up to @p timeout_ms until @p user has received at least @p n
 *        distinct `chat-events` records matching @p type and @p room.
 *
 * Events are keyed by the recipient; repeats are dropped by (roomId, seq) for
 * `chat` events and by roomId for `room` events, as PROTOCOL.md §6 tells a
 * consumer to do.
 * @param[in] type "chat", "room", or NULL for both.
 * @param[in] room a roomId, or NULL for every room.
 * @return a new array (never NULL) of the decoded events in arrival order;
 *         fewer than @p n on timeout. Events that do not decode are skipped
 *         with a diagnostic.
 */
json_t *kc_wait_events(kc_client *c, const char *user, const char *type, const char *room,
                       size_t n, int timeout_ms);

/**
 * @brief Wait up to @p timeout_ms for a `kchat-dlq` record whose value is
 *        exactly @p value / @p len.
 */
const kc_record *kc_wait_dlq(kc_client *c, const void *value, size_t len, int timeout_ms);

/**
 * @brief Records (key, value or header value) containing @p needle.
 * @param[out] first the first such record (may be NULL).
 * @return how many records contain it.
 */
size_t kc_records_containing(kc_client *c, const void *needle, size_t len,
                             const kc_record **first);

/* ------------------------------------------------------------------------ */
/** @name Users: register, login and friends in one call                     */
/* ------------------------------------------------------------------------ */

/** A test user. */
typedef struct kc_user {
    char id[65];          /**< unique userId */
    char pw[40];          /**< its password (remembered by kc_passwords()) */
    char email[96];
    char name[80];        /**< userName */
    char session[256];    /**< last session from kc_user_login(), "" before */
} kc_user;

/** @brief Fill @p u with a unique id (from @p tag), password, email and name. */
void kc_user_init(kc_user *u, const char *tag);

/**
 * @brief Register @p u (user-add) and check the answer is a success.
 * @return true on success; otherwise prints why.
 */
bool kc_user_register(kc_client *c, const kc_user *u);

/** @brief Log @p u in; stores the session in u->session. */
bool kc_user_login(kc_client *c, kc_user *u);

/**
 * @brief A new user (kc_user_init() with @p tag) whose id falls in
 *        partition @p shard of @p partitions, registered and logged in.
 * @return false when no id of 500 tries fell there, or registering or the
 *         login failed.
 */
bool kc_user_in_shard(kc_client *c, kc_user *u, const char *tag, int shard, int partitions);

/** @brief kc_user_init() + kc_user_register() + kc_user_login(). */
bool kc_user_new(kc_client *c, kc_user *u, const char *tag);

/**
 * @brief Login @p user with @p pw.
 * @return the sessionId (malloc'd), or NULL when the login did not succeed.
 */
char *kc_login(kc_client *c, const char *user, const char *pw);

/** @brief @p u follows every id of the NULL-terminated @p friends; checks success. */
bool kc_add_friends(kc_client *c, const kc_user *u, const char *const *friends);

/**
 * @brief @p u's status changed @p n times ("status 1", ... "status n-1", then
 *        @p last), sent without waiting for each answer; then the last answer
 *        is awaited (up to 180 s), which comes after every other (one key,
 *        one partition, applied in order). Each change is one more record
 *        of @p u's profile in kchat-directory.
 * @return whether every send was accepted and the last answer succeeded.
 */
bool kc_change_status_many(kc_client *c, const kc_user *u, int n, const char *last);

/**
 * @brief @p u creates a room with the NULL-terminated @p friends.
 * @param[in] name roomName, or NULL to leave it out.
 * @param[out] room_id the new roomId (size >= 65).
 * @return true on success.
 */
bool kc_create_room(kc_client *c, const kc_user *u, const char *const *friends,
                    const char *name, char *room_id);

/**
 * @brief @p u writes @p message to @p room (clientMsgId @p cmid, NULL = absent).
 * @return the seq, or -1 when the answer was no success.
 */
int64_t kc_chat(kc_client *c, const kc_user *u, const char *room, const char *message,
                const char *cmid);

/**
 * @brief Every message of @p room, read by @p u 100 at a time (newest pages
 *        first, with beforeSeq), as one array ascending by seq.
 * @return a new reference, or NULL (after a diagnostic) when a page failed.
 */
json_t *kc_history_all(kc_client *c, const kc_user *u, const char *room);

/* ------------------------------------------------------------------------ */
/** @name Checks: print a diagnostic and return false on mismatch            */
/* ------------------------------------------------------------------------ */

/** @brief A string field, or NULL when absent or not a string. */
const char *kc_str(const json_t *obj, const char *field);

/** @brief An integer field, or @p dflt when absent or not an integer. */
json_int_t kc_int(const json_t *obj, const char *field, json_int_t dflt);

/** @brief Compact JSON text of @p j (static buffer, truncated), "(null)" for NULL. */
const char *kc_dumps(const json_t *j);

/**
 * @brief A success body: non-NULL object, `userId` == @p user (skipped when
 *        NULL), `isSuccess` true, `errorCode` "" and `errorMessage` "".
 */
bool kc_check_ok(const json_t *r, const char *user);

/**
 * @brief An error body: non-NULL object, `userId` == @p user (skipped when
 *        NULL), `isSuccess` false, `errorCode` == @p code, `errorMessage` a
 *        non-empty string.
 */
bool kc_check_err(const json_t *r, const char *user, const char *code);

/**
 * @brief A user object: the strings userId (== @p id), email, userName,
 *        userStatus, joinDate (ISO), loginDate and logoutDate ("" or ISO).
 *        Extra fields are tolerated unless their name looks password-related
 *        (contains "pw", "pass", "hash" or "salt", any case).
 */
bool kc_check_user_obj(const json_t *u, const char *id);

/**
 * @brief @p s is `YYYY-MM-DDTHH:MM:SS.mmmZ` (ISO-8601 UTC with ms) and within
 *        10 minutes of the local wall clock.
 */
bool kc_check_iso(const char *s, const char *what);

/** @brief Milliseconds since the epoch of an ISO timestamp, -1 if malformed. */
int64_t kc_iso_to_ms(const char *s);

/**
 * @brief @p arr is an array of strings equal, as a set, to the NULL-terminated
 *        @p expect (no repeats allowed in @p arr).
 */
bool kc_check_id_set(const json_t *arr, const char *const *expect, const char *what);

/** @brief @p s is 1..64 bytes of `[A-Za-z0-9_.-]`. */
bool kc_is_valid_id(const char *s);

/* ------------------------------------------------------------------------ */
/** @name Encodings                                                          */
/* ------------------------------------------------------------------------ */

/**
 * @brief Encode a JSON value as msgpack: objects -> maps (str keys),
 *        arrays -> arrays, strings -> str, integers -> int, reals -> float64,
 *        booleans -> bool, null -> nil.
 * @param[out] out an initialised sbuffer the bytes are appended to.
 * @return 0, or -1 on an unsupported value.
 */
int kc_json_to_msgpack(const json_t *j, msgpack_sbuffer *out);

/**
 * @brief Decode exactly one msgpack object (no trailing bytes) into JSON.
 *        Map keys must be str; str must be valid UTF-8; bin and ext are
 *        refused.
 * @return a new reference, or NULL when the bytes are not such an object.
 */
json_t *kc_msgpack_to_json(const void *buf, size_t len);

/** @brief Decode JSON text (exactly one value). New reference or NULL. */
json_t *kc_json_from_bytes(const void *buf, size_t len);

/**
 * @brief The partition the Java client's murmur2 partitioner gives @p key
 *        among @p cnt partitions.
 */
int32_t kc_partition_for(const char *key, int32_t cnt);

/** @brief Whether @p hay contains @p needle (binary). */
bool kc_memmem(const void *hay, size_t hay_len, const void *needle, size_t len);

#endif /* KCHAT_TESTS_KCLIENT_H */
