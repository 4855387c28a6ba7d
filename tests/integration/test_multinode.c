/*
 * kchat-test: kafka-only (run only on real Apache Kafka, by `make check-kafka`)
 * kchat-test: kafka-nodes=3 (tests/run.sh starts a 3-broker cluster for it)
 *
 * Several `kchat serve` on one cluster (docs/scaling.md, step 6), tested
 * from outside against the wire contract of docs/protocol.md. Every node is
 * started with kc_serve_start_ex() on the suite's Kafka, in the same
 * consumer group (the default) and with its own data directory; the
 * changelog is on (the default with --brokers). Each case makes fresh users,
 * two on each of the 4 shards, who all follow each other, and 4 rooms, one
 * created by a user of each shard (so one room lives on each shard), with
 * all 8 users as participants. Which node owns which shard is not known to
 * the test, so every check covers every shard.
 *
 * A stream is a thread that sends, every 100 ms, one chat send (writers and
 * rooms of every shard, each with a clientMsgId, never re-sent) and one
 * probe per shard (a user-search-room with the session the user got at the
 * start) while the main thread stops and starts nodes. After every stream,
 * check_world() asks, within bounded waits:
 *  - every request the stream sent was answered (within 60 s), and every
 *    answer is a success: no session issued earlier refused, no room lost;
 *    repeated answers (same kchat-cid) agree;
 *  - each room's history holds every acknowledged send exactly once, at
 *    the seq it was acknowledged with, seqs 1..n with no gap, one writer's
 *    sends in the order sent;
 *  - every user's room list names the 4 rooms with their participants and
 *    lastSeq n; every user's friend list is the 7 others with their status;
 *  - every participant got the `chat` events 1..n of every room (those of
 *    the history) and a `room` event for each room.
 *
 * test_two_nodes_every_operation: nodes A and B; every operation of the
 *    contract across shards (register, login, logout, status, friends,
 *    rooms, chat, history, room lists) and their errors, then the checks.
 * test_kill9_handover: A and B, 200 sends over 20 s, B killed with SIGKILL
 *    after 80: A must take B's shards (session timeout 6 s). Prints
 *    `handover: kill -9 to first answer from new owner: X ms` (per shard,
 *    the first answer after the kill to a probe of that shard; the largest).
 *    Then B again on its old data directory, 40 more sends, checks again.
 * test_fresh_node_joins: A and B; C with an empty data directory joins
 *    during a stream; then, during another, B is killed and its data
 *    directory deleted, A and C take its shards (10 s), and B is started
 *    again on the empty directory.
 * test_sigterm_and_rolling_restart: A and B; B gets SIGTERM during a
 *    stream (it must exit 0) and is started again; then a rolling restart
 *    (SIGTERM, start, ready) of A and of B during one stream.
 *
 * Each case prints its duration. The whole program takes about 4 to 6
 * minutes on a 2-core machine.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>
#include <cmocka.h>

#include "support/kassert.h"
#include "support/kclient.h"

#define PARTITIONS  4      /* shards; tests/run.sh starts Kafka with 4 */
#define NUSERS      8      /* user i lives on shard i % PARTITIONS */
#define NROOMS      4      /* room r lives on shard r (created by user r) */
#define MAX_NODES   3
#define MAX_SENDS   2000   /* chat sends of one case */
#define MAX_PROBES  8000   /* probes of one case: PARTITIONS per tick */
#define TICK_MS     100    /* a stream's pace: one chat send per tick */
#define DRAIN_MS    60000  /* how long answers to a stream may take */
#define SETTLE_MS   20000  /* replicas (directory, room summaries) and events */
#define START_S     90     /* a node's start, group rebalance included */
#define SHOW_MAX    8      /* diagnostics printed per kind of problem */

/* A request whose answer the test waits for: a chat send or a probe. */
struct req {
    char cid[72];
    int user;          /* index into world.u: who sent it (the record key) */
    int room;          /* chat send: index into world.room; probe: -1 */
    int64_t sent_ms;   /* wall clock when Kafka took it; 0: never sent */
    bool answered;
    int64_t answer_ms; /* wall clock of the first answer (its CreateTime) */
    bool ok;           /* the first answer is a success */
    char code[32];     /* its errorCode */
    int64_t seq;       /* chat send: the first answer's seq */
    bool mismatch;     /* a repeat answer differs from the first ... */
    char code2[32];    /* ... with this errorCode */
    int64_t seq2;      /* ... and this seq */
    bool incomplete;   /* probe: a success that lacks one of the rooms */
};

/* One case's users, rooms and every request it waits for. */
struct world {
    const char *tag;
    kc_client *c;
    kc_user u[NUSERS];
    char status[NUSERS][48];
    char room[NROOMS][65];
    char prefix[56];         /* every cid of this world starts with it */
    struct req send[MAX_SENDS];
    int nsend;
    struct req probe[MAX_PROBES];
    int nprobe;
    size_t scan;             /* next client record collect() looks at */
    int by_seq[NROOMS][MAX_SENDS + 1]; /* index_room(): send index of each seq */
    int acked[NROOMS];       /* index_room(): acknowledged sends per room */
};

/* The stream thread: chat sends and probes at TICK_MS until stopped. */
struct stream {
    struct world *w;
    int max;                 /* ticks at most */
    atomic_int done;         /* ticks sent so far */
    atomic_bool stop;
    atomic_int lost;         /* requests Kafka did not take */
    pthread_t thread;
    bool running;
};

/* What a case started, so that teardown cleans up after a failed assertion. */
static struct world *g_w;
static struct stream g_stream;
static kc_proc *g_node[MAX_NODES];
static char *g_data[MAX_NODES];
static const char *g_case = "";
static int64_t g_case_t0;
static const char *const node_letter[MAX_NODES] = {"a", "b", "c"};

/* ------------------------------------------------------------------------ */
/* Nodes                                                                    */
/* ------------------------------------------------------------------------ */

/* Start node @p k and wait until it is ready (assigned its partitions).
 * @p fresh: on a new, empty data directory; otherwise on its last one. */
static void node_start(int k, bool fresh)
{
    char name[64];
    int64_t t0 = kc_now_ms();

    snprintf(name, sizeof(name), "%s-node-%s", g_case, node_letter[k]);
    if (fresh) {
        free(g_data[k]);
        g_data[k] = kc_tmppath(name);
        kc_rm_rf(g_data[k]);
    }
    bool empty = access(g_data[k], F_OK) != 0;
    assert_null(g_node[k]);
    g_node[k] = kc_serve_start_ex(name, g_data[k], NULL, PARTITIONS, NULL, START_S);
    assert_non_null(g_node[k]);
    fprintf(stderr, "%s: node %s ready after %lld ms (%s data directory)\n", g_case,
            node_letter[k], (long long)(kc_now_ms() - t0), empty ? "an empty" : "its old");
}

/* Print the line of node @p k's log that counts what it did, once stopped
 * (which node served how much: the test cannot see it otherwise). */
static void node_print_stats(int k)
{
    char *log = kc_read_file(kc_proc_log(g_node[k]), NULL);
    const char *line = log != NULL ? strstr(log, "kchat serve: stopped: ") : NULL;
    if (line != NULL)
        fprintf(stderr, "%s: node %s %.*s\n", g_case, node_letter[k],
                (int)strcspn(line, "\n"), line);
    free(log);
}

/* kill -9 node @p k; returns the wall clock of the kill. */
static int64_t node_kill(int k)
{
    int64_t at = kc_wall_ms();
    assert_non_null(g_node[k]);
    assert_int_equal(kc_proc_stop(g_node[k], SIGKILL, 10, NULL), 0);
    kc_proc_free(g_node[k]);
    g_node[k] = NULL;
    fprintf(stderr, "%s: node %s killed with SIGKILL\n", g_case, node_letter[k]);
    return at;
}

/* SIGTERM node @p k: it must finish its work and exit 0 (README.md). */
static void node_term(int k)
{
    int64_t t0 = kc_now_ms();
    assert_non_null(g_node[k]);
    bool clean = kc_proc_stop_clean(g_node[k], 60);
    node_print_stats(k);
    kc_proc_free(g_node[k]);
    g_node[k] = NULL;
    fprintf(stderr, "%s: node %s stopped by SIGTERM after %lld ms (%s)\n", g_case,
            node_letter[k], (long long)(kc_now_ms() - t0), clean ? "exit 0" : "NOT clean");
    assert_true(clean);
}

/* ------------------------------------------------------------------------ */
/* Requests and their answers                                               */
/* ------------------------------------------------------------------------ */

/* A string field, "" when absent (for comparisons). */
static const char *str_of(const json_t *obj, const char *field)
{
    const char *s = kc_str(obj, field);
    return s != NULL ? s : "";
}

/* Element @p i of a string array, "" when absent. */
static const char *str_at(const json_t *arr, size_t i)
{
    const char *s = json_string_value(json_array_get(arr, i));
    return s != NULL ? s : "";
}

static const char *code_of(const json_t *r)
{
    return str_of(r, "errorCode");
}

/* @p arr holds exactly the ids of the NULL-terminated @p expect, each once.
 * Silent, unlike kc_check_id_set(): polling loops call it. */
static bool same_ids(const json_t *arr, const char *const *expect)
{
    size_t n = 0;
    while (expect[n] != NULL)
        n++;
    if (!json_is_array(arr) || json_array_size(arr) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        size_t found = 0;
        for (size_t j = 0; j < n; j++)
            found += strcmp(str_at(arr, j), expect[i]) == 0;
        if (found != 1)
            return false;
    }
    return true;
}

static void chat_text(const struct world *w, int i, char *out, size_t size)
{
    snprintf(out, size, "%s message %d", w->tag, i);
}

static void chat_cmid(int i, char *out, size_t size)
{
    snprintf(out, size, "m-%d", i);
}

/* Send chat send number w->nsend: @p writer into room @p room, with a
 * clientMsgId, without waiting for the answer. NULL when the table is full. */
static struct req *chat_send(struct world *w, int writer, int room)
{
    char text[96], cmid[32];
    if (w->nsend >= MAX_SENDS)
        return NULL;
    int i = w->nsend++;
    struct req *q = &w->send[i];
    memset(q, 0, sizeof(*q));
    snprintf(q->cid, sizeof(q->cid), "%sc%d", w->prefix, i);
    q->user = writer;
    q->room = room;
    chat_text(w, i, text, sizeof(text));
    chat_cmid(i, cmid, sizeof(cmid));
    json_t *body = json_pack("{ss ss ss ss}", "roomId", w->room[room], "writerId",
                             w->u[writer].id, "message", text, "clientMsgId", cmid);
    if (kc_send_req(w->c, "user-add-chat", w->u[writer].id, w->u[writer].session, q->cid, body,
                    NULL))
        q->sent_ms = kc_wall_ms();
    json_decref(body);
    return q;
}

/* Send a probe: user-search-room of @p user with the session of the start. */
static struct req *probe_send(struct world *w, int user)
{
    if (w->nprobe >= MAX_PROBES)
        return NULL;
    int i = w->nprobe++;
    struct req *q = &w->probe[i];
    memset(q, 0, sizeof(*q));
    snprintf(q->cid, sizeof(q->cid), "%sp%d", w->prefix, i);
    q->user = user;
    q->room = -1;
    json_t *body = json_pack("{ss}", "userId", w->u[user].id);
    if (kc_send_req(w->c, "user-search-room", w->u[user].id, w->u[user].session, q->cid, body,
                    NULL))
        q->sent_ms = kc_wall_ms();
    json_decref(body);
    return q;
}

/* Whether room list @p rooms names every room of @p w. */
static bool lists_every_room(const struct world *w, const json_t *rooms)
{
    for (int r = 0; r < NROOMS; r++) {
        bool found = false;
        for (size_t j = 0; j < json_array_size(rooms) && !found; j++)
            found = strcmp(str_of(json_array_get(rooms, j), "roomId"), w->room[r]) == 0;
        if (!found)
            return false;
    }
    return true;
}

/* Fold one answer record into its request. */
static void fold(struct world *w, struct req *q, const kc_record *rec, bool probe)
{
    bool ok = rec->body != NULL && json_is_true(json_object_get(rec->body, "isSuccess"));
    const char *code = ok ? "" : rec->body != NULL ? code_of(rec->body) : "(undecodable)";
    int64_t seq = probe ? 0 : kc_int(rec->body, "seq", -1);

    if (!q->answered) {
        q->answered = true;
        q->answer_ms = rec->timestamp > 0 ? rec->timestamp : kc_wall_ms();
        q->ok = ok;
        snprintf(q->code, sizeof(q->code), "%s", code);
        q->seq = seq;
        if (probe && ok)
            q->incomplete = !lists_every_room(w, json_object_get(rec->body, "rooms"));
    } else if (!q->mismatch && (q->ok != ok || strcmp(q->code, code) != 0 || q->seq != seq)) {
        q->mismatch = true;
        snprintf(q->code2, sizeof(q->code2), "%s", ok ? "ok" : code);
        q->seq2 = seq;
    }
}

/* Fold every new answer to this world's requests into their entries. */
static void collect(struct world *w)
{
    size_t n = kc_record_count(w->c), pl = strlen(w->prefix);
    for (; w->scan < n; w->scan++) {
        const kc_record *rec = kc_record_get(w->c, w->scan);
        if (rec->cid == NULL || strncmp(rec->cid, w->prefix, pl) != 0)
            continue;
        char kind = rec->cid[pl];
        int i = atoi(rec->cid + pl + 1);
        if (kind == 'c' && i >= 0 && i < w->nsend &&
            strcmp(rec->topic, "user-add-chat-response") == 0)
            fold(w, &w->send[i], rec, false);
        else if (kind == 'p' && i >= 0 && i < w->nprobe &&
                 strcmp(rec->topic, "user-search-room-response") == 0)
            fold(w, &w->probe[i], rec, true);
    }
}

static bool any_record(const kc_record *r, void *arg)
{
    (void)r;
    (void)arg;
    return true;
}

static int unanswered(const struct req *q, int n)
{
    int cnt = 0;
    for (int i = 0; i < n; i++)
        cnt += q[i].sent_ms != 0 && !q[i].answered;
    return cnt;
}

/* Wait up to @p timeout_ms until every request sent so far is answered. */
static bool drain(struct world *w, int timeout_ms)
{
    int64_t t0 = kc_now_ms();
    for (;;) {
        collect(w);
        int left = unanswered(w->send, w->nsend) + unanswered(w->probe, w->nprobe);
        if (left == 0)
            return true;
        if (kc_now_ms() - t0 >= timeout_ms) {
            fprintf(stderr, "%s: %d requests still unanswered after %d ms\n", g_case, left,
                    timeout_ms);
            return false;
        }
        kc_wait_record(w->c, w->scan, any_record, NULL, 200);
    }
}

/* Chat send and wait for its answer; returns its seq, or -1 for no success. */
static int64_t chat_sync(struct world *w, int writer, int room)
{
    struct req *q = chat_send(w, writer, room);
    assert_non_null(q);
    assert_true(q->sent_ms != 0);
    assert_non_null(kc_wait_cid(w->c, "user-add-chat", q->cid, KC_CALL_TIMEOUT_MS));
    collect(w);
    assert_true(q->answered);
    if (!q->ok)
        fprintf(stderr, "%s: chat send %s answered %s\n", g_case, q->cid, q->code);
    return q->ok ? q->seq : -1;
}

/* kc_call() again while the answer is USER_NOT_FOUND: a user registered
 * through another node reaches this node's directory replica shortly after
 * (protocol.md §3.5, kchat:). @p body is stolen. Returns the last answer. */
static json_t *call_until_known(struct world *w, const char *op, int user, json_t *body)
{
    int64_t deadline = kc_now_ms() + SETTLE_MS;
    for (;;) {
        json_t *r = kc_call(w->c, op, w->u[user].id, w->u[user].session, json_incref(body));
        if (r == NULL || strcmp(code_of(r), "USER_NOT_FOUND") != 0 || kc_now_ms() >= deadline) {
            json_decref(body);
            return r;
        }
        json_decref(r);
        kc_sleep_ms(200);
    }
}

/* ------------------------------------------------------------------------ */
/* The stream                                                               */
/* ------------------------------------------------------------------------ */

/* Tick @p i: one chat send (writer i % NUSERS; the room turns so that each
 * writer writes to every room) and one probe per shard, alternating between
 * the shard's two users. Runs on the stream thread: no cmocka assertion. */
static void stream_tick(struct stream *s, int i)
{
    struct world *w = s->w;
    struct req *q = chat_send(w, i % NUSERS, (i + i / NUSERS) % NROOMS);
    if (q == NULL || q->sent_ms == 0)
        atomic_fetch_add(&s->lost, 1);
    for (int shard = 0; shard < PARTITIONS; shard++) {
        q = probe_send(w, shard + PARTITIONS * (i % 2));
        if (q == NULL || q->sent_ms == 0)
            atomic_fetch_add(&s->lost, 1);
    }
}

static void *stream_main(void *arg)
{
    struct stream *s = arg;
    int64_t t0 = kc_now_ms();
    for (int i = 0; i < s->max && !atomic_load(&s->stop); i++) {
        int64_t wait = t0 + (int64_t)i * TICK_MS - kc_now_ms();
        if (wait > 0)
            kc_sleep_ms((int)wait);
        stream_tick(s, i);
        atomic_store(&s->done, i + 1);
    }
    atomic_store(&s->stop, true);
    return NULL;
}

/* Start a stream of at most @p max ticks. The main thread must not use the
 * client until stream_end(). */
static void stream_start(struct world *w, int max)
{
    struct stream *s = &g_stream;
    assert_false(s->running);
    s->w = w;
    s->max = max;
    atomic_store(&s->done, 0);
    atomic_store(&s->stop, false);
    atomic_store(&s->lost, 0);
    assert_int_equal(pthread_create(&s->thread, NULL, stream_main, s), 0);
    s->running = true;
}

/* Wait until the stream made @p ticks ticks (or ended). */
static void stream_wait(int ticks)
{
    while (atomic_load(&g_stream.done) < ticks && !atomic_load(&g_stream.stop))
        kc_sleep_ms(20);
}

static int stream_done(void)
{
    return atomic_load(&g_stream.done);
}

/* Stop the stream after its current tick and join it. */
static void stream_end(void)
{
    struct stream *s = &g_stream;
    if (!s->running)
        return;
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    s->running = false;
    fprintf(stderr, "%s: stream ended after %d ticks\n", g_case, atomic_load(&s->done));
    if (atomic_load(&s->lost) != 0)
        fprintf(stderr, "%s: %d requests were not taken by Kafka\n", g_case,
                atomic_load(&s->lost));
    assert_int_equal(atomic_load(&s->lost), 0);
}

/* ------------------------------------------------------------------------ */
/* Checks: each prints what is wrong and returns false                      */
/* ------------------------------------------------------------------------ */

/* One line about a request that was answered wrongly. */
static void show_req(const struct world *w, const struct req *q, int shard)
{
    char again[64] = "";
    if (q->mismatch)
        snprintf(again, sizeof(again), ", then %s seq %lld", q->code2, (long long)q->seq2);
    fprintf(stderr, "  %s of user %d (shard %d)%s%s: %s seq %lld%s\n", q->cid, q->user, shard,
            q->room >= 0 ? " to room " : "", q->room >= 0 ? w->room[q->room] : "",
            q->ok ? "ok" : q->code, (long long)q->seq, again);
}

/* Every request answered, with one success, the same on every repeat. */
static bool check_answers(struct world *w, const struct req *q, int n, const char *what)
{
    int sent = 0, open = 0, failed = 0, mismatched = 0, incomplete = 0, shown = 0;
    int open_by_shard[PARTITIONS] = {0}, failed_by_shard[PARTITIONS] = {0};
    for (int i = 0; i < n; i++) {
        int shard = kc_partition_for(w->u[q[i].user].id, PARTITIONS);
        sent += q[i].sent_ms != 0;
        open += !q[i].answered;
        open_by_shard[shard] += !q[i].answered;
        failed += q[i].answered && !q[i].ok;
        failed_by_shard[shard] += q[i].answered && !q[i].ok;
        mismatched += q[i].mismatch;
        incomplete += q[i].incomplete;
        if (((q[i].answered && !q[i].ok) || q[i].mismatch) && shown++ < SHOW_MAX)
            show_req(w, &q[i], shard);
    }
    fprintf(stderr, "%s: %d %s sent, %d unanswered (by key shard %d/%d/%d/%d), %d failed "
            "(%d/%d/%d/%d), %d answered differently twice, %d lacking a room\n", g_case, sent,
            what, open, open_by_shard[0], open_by_shard[1], open_by_shard[2], open_by_shard[3],
            failed, failed_by_shard[0], failed_by_shard[1], failed_by_shard[2],
            failed_by_shard[3], mismatched, incomplete);
    return sent == n && open == 0 && failed == 0 && mismatched == 0 && incomplete == 0;
}

/* Index the acknowledged sends of room @p r by seq; false on a repeat. */
static bool index_room(struct world *w, int r)
{
    bool ok = true;
    w->acked[r] = 0;
    memset(w->by_seq[r], -1, sizeof(w->by_seq[r]));
    for (int i = 0; i < w->nsend; i++) {
        const struct req *q = &w->send[i];
        if (q->room != r || !q->ok)
            continue;
        w->acked[r]++;
        if (q->seq < 1 || q->seq > MAX_SENDS || w->by_seq[r][q->seq] >= 0) {
            fprintf(stderr, "  room %d: send %d acknowledged with seq %lld, %s\n", r, i,
                    (long long)q->seq, q->seq < 1 || q->seq > MAX_SENDS ? "out of range"
                                                                       : "given twice");
            ok = false;
            continue;
        }
        w->by_seq[r][q->seq] = i;
    }
    return ok;
}

/* One history entry at position @p j is the send acknowledged with seq j+1. */
static bool check_entry(struct world *w, int r, size_t j, const json_t *m, int *seen)
{
    char text[96], cmid[32];
    const char *got = kc_str(m, "clientMsgId");
    int64_t seq = kc_int(m, "seq", -1);
    int i = got != NULL && strncmp(got, "m-", 2) == 0 ? atoi(got + 2) : -1;

    if (seq != (int64_t)j + 1 || i < 0 || i >= w->nsend || w->send[i].room != r) {
        fprintf(stderr, "  room %d: entry %zu is %s\n", r, j, kc_dumps(m));
        return false;
    }
    const struct req *q = &w->send[i];
    chat_text(w, i, text, sizeof(text));
    chat_cmid(i, cmid, sizeof(cmid));
    if (seen[i]++ || !q->ok || q->seq != seq ||
        strcmp(str_of(m, "writerId"), w->u[q->user].id) != 0 ||
        strcmp(str_of(m, "message"), text) != 0) {
        fprintf(stderr, "  room %d: seq %lld holds send %d (%s, answered %s seq %lld, %d times "
                "in the history): %s\n", r, (long long)seq, i, cmid, q->ok ? "ok" : q->code,
                (long long)q->seq, seen[i], kc_dumps(m));
        return false;
    }
    return true;
}

/* One writer's acknowledged sends to room @p r have rising seqs in the order
 * they were sent (protocol.md §7, order per user). */
static bool check_writer_order(const struct world *w, int r)
{
    for (int u = 0; u < NUSERS; u++) {
        int64_t last = 0;
        for (int i = 0; i < w->nsend; i++) {
            const struct req *q = &w->send[i];
            if (q->room != r || q->user != u || !q->ok)
                continue;
            if (q->seq <= last) {
                fprintf(stderr, "  room %d: writer %d's send %d got seq %lld after seq %lld\n", r,
                        u, i, (long long)q->seq, (long long)last);
                return false;
            }
            last = q->seq;
        }
    }
    return true;
}

/* Room @p r's history, read by a member of another shard: exactly the
 * acknowledged sends, each once at its seq, seqs 1..n. */
static bool check_room(struct world *w, int r)
{
    static int seen[MAX_SENDS];
    int reader = (r + 1) % NUSERS;
    bool ok = index_room(w, r) && check_writer_order(w, r);
    json_t *h = kc_history_all(w->c, &w->u[reader], w->room[r]);

    if (h == NULL)
        return false;
    if (json_array_size(h) != (size_t)w->acked[r]) {
        fprintf(stderr, "  room %d (%s): history holds %zu messages, %d sends were "
                "acknowledged\n", r, w->room[r], json_array_size(h), w->acked[r]);
        ok = false;
    }
    memset(seen, 0, sizeof(seen));
    int bad = 0;
    for (size_t j = 0; j < json_array_size(h); j++)
        if (!check_entry(w, r, j, json_array_get(h, j), seen) && ++bad >= SHOW_MAX)
            break;
    json_decref(h);
    return ok && bad == 0;
}

/* @p rooms (one user's list) names the world's rooms exactly, each with its
 * name, the 8 participants and lastSeq = its acknowledged sends. */
static bool room_list_right(const struct world *w, const json_t *rooms, char *why, size_t size)
{
    const char *ids[NUSERS + 1];
    for (int i = 0; i < NUSERS; i++)
        ids[i] = w->u[i].id;
    ids[NUSERS] = NULL;
    if (json_array_size(rooms) != NROOMS || !lists_every_room(w, rooms)) {
        snprintf(why, size, "not the %d rooms: %s", NROOMS, kc_dumps(rooms));
        return false;
    }
    for (size_t j = 0; j < NROOMS; j++) {
        const json_t *e = json_array_get(rooms, j);
        int r = 0;
        while (r < NROOMS && strcmp(str_of(e, "roomId"), w->room[r]) != 0)
            r++;
        char name[16];
        snprintf(name, sizeof(name), "room %d", r);
        if (kc_int(e, "lastSeq", -1) != w->acked[r] ||
            strcmp(str_of(e, "roomName"), name) != 0 ||
            strcmp(str_at(json_object_get(e, "participants"), 0),
                   w->u[r].id) != 0) {
            snprintf(why, size, "room %d should have lastSeq %d: %s", r, w->acked[r],
                     kc_dumps(e));
            return false;
        }
        if (!same_ids(json_object_get(e, "participants"), ids)) {
            snprintf(why, size, "room %d participants: %s", r, kc_dumps(e));
            return false;
        }
    }
    return true;
}

/* Every user's room list (with the session of the start) is right, within
 * SETTLE_MS: a room of another shard's lastSeq comes through kchat-rooms. */
static bool check_lists(struct world *w)
{
    int64_t deadline = kc_now_ms() + SETTLE_MS;
    char why[768] = "";
    for (int u = 0; u < NUSERS; u++) {
        for (;;) {
            json_t *r = kc_call(w->c, "user-search-room", w->u[u].id, w->u[u].session,
                                json_pack("{ss}", "userId", w->u[u].id));
            bool answered = r != NULL && json_is_true(json_object_get(r, "isSuccess"));
            bool right = answered && room_list_right(w, json_object_get(r, "rooms"), why,
                                                     sizeof(why));
            if (!answered)
                snprintf(why, sizeof(why), "answer %s", kc_dumps(r));
            json_decref(r);
            if (right)
                break;
            if (!answered || kc_now_ms() >= deadline) {
                fprintf(stderr, "  user %d (shard %d): room list wrong: %s\n", u, u % PARTITIONS,
                        why);
                return false;
            }
            kc_sleep_ms(250);
        }
    }
    return true;
}

/* @p friends (one user's list) is the 7 others, sorted, with name and status. */
static bool friend_list_right(const struct world *w, int u, const json_t *friends)
{
    const char *expect[NUSERS];
    int n = 0;
    for (int i = 0; i < NUSERS; i++)
        if (i != u)
            expect[n++] = w->u[i].id;
    expect[n] = NULL;
    json_t *ids = json_array();
    for (size_t j = 0; j < json_array_size(friends); j++)
        json_array_append(ids, json_object_get(json_array_get(friends, j), "userId"));
    bool ok = same_ids(ids, expect);
    json_decref(ids);
    for (size_t j = 0; ok && j < json_array_size(friends); j++) {
        const json_t *f = json_array_get(friends, j);
        const char *id = kc_str(f, "userId");
        int i = 0;
        while (strcmp(w->u[i].id, id) != 0)
            i++;
        ok = strcmp(str_of(f, "userName"), w->u[i].name) == 0 &&
             strcmp(str_of(f, "userStatus"), w->status[i]) == 0 &&
             (j == 0 || strcmp(kc_str(json_array_get(friends, j - 1), "userId"), id) < 0);
    }
    return ok;
}

/* Every user's friend list is right, within SETTLE_MS (statuses of other
 * shards come through the directory replica). */
static bool check_friends(struct world *w)
{
    int64_t deadline = kc_now_ms() + SETTLE_MS;
    for (int u = 0; u < NUSERS; u++) {
        for (;;) {
            json_t *r = kc_call(w->c, "user-search-friend", w->u[u].id, w->u[u].session,
                                json_pack("{ss}", "userId", w->u[u].id));
            bool answered = r != NULL && json_is_true(json_object_get(r, "isSuccess"));
            bool right = answered && friend_list_right(w, u, json_object_get(r, "friend"));
            if (!right && (!answered || kc_now_ms() >= deadline))
                fprintf(stderr, "  user %d (shard %d): friend list wrong: %s\n", u,
                        u % PARTITIONS, kc_dumps(r));
            json_decref(r);
            if (right)
                break;
            if (!answered || kc_now_ms() >= deadline)
                return false;
            kc_sleep_ms(250);
        }
    }
    return true;
}

/* User @p u got the chat events of room @p r: seqs 1..n, each the message
 * acknowledged with that seq. */
static bool check_chat_events(struct world *w, int u, int r, int64_t deadline)
{
    int64_t left = deadline - kc_now_ms();
    json_t *ev = kc_wait_events(w->c, w->u[u].id, "chat", w->room[r], (size_t)w->acked[r],
                                left > 0 ? (int)left : 0);
    bool ok = json_array_size(ev) == (size_t)w->acked[r];
    if (!ok)
        fprintf(stderr, "  user %d: %zu distinct chat events of room %d, %d acknowledged "
                "sends\n", u, json_array_size(ev), r, w->acked[r]);
    for (size_t j = 0; ok && j < json_array_size(ev); j++) {
        const json_t *e = json_array_get(ev, j);
        int64_t seq = kc_int(e, "seq", -1);
        char cmid[32] = "";
        if (seq >= 1 && seq <= MAX_SENDS && w->by_seq[r][seq] >= 0)
            chat_cmid(w->by_seq[r][seq], cmid, sizeof(cmid));
        ok = cmid[0] != '\0' && strcmp(str_of(e, "clientMsgId"), cmid) == 0;
        if (!ok)
            fprintf(stderr, "  user %d: chat event %s is no acknowledged send (%s)\n", u,
                    kc_dumps(e), cmid);
    }
    json_decref(ev);
    return ok;
}

/* Every participant got every chat event and a room event per room. */
static bool check_events(struct world *w)
{
    int64_t deadline = kc_now_ms() + SETTLE_MS;
    for (int u = 0; u < NUSERS; u++) {
        json_t *rev = kc_wait_events(w->c, w->u[u].id, "room", NULL, NROOMS, 5000);
        bool rooms_ok = json_array_size(rev) == NROOMS && lists_every_room(w, rev);
        if (!rooms_ok)
            fprintf(stderr, "  user %d: room events %s\n", u, kc_dumps(rev));
        json_decref(rev);
        if (!rooms_ok)
            return false;
        for (int r = 0; r < NROOMS; r++)
            if (!check_chat_events(w, u, r, deadline))
                return false;
    }
    return true;
}

/* Everything of the header comment, after @p label; every check runs and
 * prints before the first assertion, so one run tells all that is wrong. */
static void check_world(struct world *w, const char *label)
{
    int64_t t0 = kc_now_ms();
    bool drained = drain(w, DRAIN_MS);
    fprintf(stderr, "%s: checks %s\n", g_case, label);
    bool sends = check_answers(w, w->send, w->nsend, "chat sends");
    bool probes = check_answers(w, w->probe, w->nprobe, "probes");
    bool rooms = true;
    for (int r = 0; r < NROOMS; r++)
        rooms = check_room(w, r) && rooms;
    bool lists = check_lists(w);
    bool friends = check_friends(w);
    bool events = check_events(w);
    fprintf(stderr, "%s: %s: answers %s, probes %s, histories %s, room lists %s, friend lists "
            "%s, events %s (%lld ms)\n", g_case, label, sends && drained ? "ok" : "WRONG",
            probes ? "ok" : "WRONG", rooms ? "ok" : "WRONG", lists ? "ok" : "WRONG",
            friends ? "ok" : "WRONG", events ? "ok" : "WRONG", (long long)(kc_now_ms() - t0));
    if (!(drained && sends && probes && rooms && lists && friends && events))
        kc_diag_dump();
    assert_true(drained);
    assert_true(sends);
    assert_true(probes);
    assert_true(rooms);
    assert_true(lists);
    assert_true(friends);
    assert_true(events);
}

/* ------------------------------------------------------------------------ */
/* A world: users on every shard, friends, a room on every shard            */
/* ------------------------------------------------------------------------ */

/* Start nodes 0..@p nodes-1 on new data directories and open the client. */
static struct world *world_begin(const char *tag, int nodes)
{
    char uid[48];
    assert_null(g_w);
    assert_non_null(kc_test_brokers());
    g_w = calloc(1, sizeof(*g_w));
    assert_non_null(g_w);
    g_w->tag = tag;
    kc_uid(uid, sizeof(uid), tag);
    snprintf(g_w->prefix, sizeof(g_w->prefix), "%s-", uid);
    for (int k = 0; k < nodes; k++)
        node_start(k, true);
    g_w->c = kc_client_new(kc_test_brokers(), KC_FROM_END);
    assert_non_null(g_w->c);
    return g_w;
}

/* User @p i: a new id on shard i % PARTITIONS, registered and logged in. */
static void user_add(struct world *w, int i)
{
    kc_user *u = &w->u[i];
    for (int tries = 0; tries < 1000; tries++) {
        kc_user_init(u, w->tag);
        if (kc_partition_for(u->id, PARTITIONS) == i % PARTITIONS)
            break;
    }
    assert_int_equal(kc_partition_for(u->id, PARTITIONS), i % PARTITIONS);
    json_t *r = kc_call(w->c, "user-add", u->id, NULL,
                        json_pack("{ss ss ss ss}", "userId", u->id, "userPw", u->pw, "email",
                                  u->email, "userName", u->name));
    bool ok = kc_check_ok(r, u->id) && kc_check_user_obj(json_object_get(r, "user"), u->id);
    json_decref(r);
    assert_true(ok);
    r = kc_call(w->c, "login", u->id, NULL,
                json_pack("{ss ss}", "userId", u->id, "userPw", u->pw));
    ok = kc_check_ok(r, u->id) && kc_check_user_obj(json_object_get(r, "user"), u->id) &&
         kc_check_iso(kc_str(json_object_get(r, "user"), "loginDate"), "loginDate") &&
         kc_str(r, "sessionId") != NULL;
    if (ok)
        snprintf(u->session, sizeof(u->session), "%s", kc_str(r, "sessionId"));
    json_decref(r);
    assert_true(ok);
}

static void users_add(struct world *w)
{
    for (int i = 0; i < NUSERS; i++)
        user_add(w, i);
}

static void statuses_set(struct world *w)
{
    for (int i = 0; i < NUSERS; i++) {
        snprintf(w->status[i], sizeof(w->status[i]), "%s status %d", w->tag, i);
        json_t *r = kc_call(w->c, "user-status-change", w->u[i].id, w->u[i].session,
                            json_pack("{ss ss}", "userId", w->u[i].id, "userStatus",
                                      w->status[i]));
        assert_true(kc_check_ok(r, w->u[i].id));
        KC_ASSERT_STR(r, "userStatus", w->status[i]);
        json_decref(r);
    }
}

/* The ids of everyone but @p skip, starting after it (so the order differs
 * per user), as a JSON array and as a NULL-terminated list. */
static json_t *others(const struct world *w, int skip, const char **list)
{
    json_t *a = json_array();
    int n = 0;
    for (int k = 1; k < NUSERS; k++) {
        int i = (skip + k) % NUSERS;
        json_array_append_new(a, json_string(w->u[i].id));
        if (list != NULL)
            list[n++] = w->u[i].id;
    }
    if (list != NULL)
        list[n] = NULL;
    return a;
}

/* Everyone follows everyone else. */
static void friends_add(struct world *w)
{
    for (int i = 0; i < NUSERS; i++) {
        const char *list[NUSERS];
        json_t *ids = others(w, i, list);
        json_t *r = call_until_known(w, "user-add-friend", i,
                                     json_pack("{ss sO}", "userId", w->u[i].id, "friendId", ids));
        bool ok = kc_check_ok(r, w->u[i].id) &&
                  kc_check_id_set(json_object_get(r, "friendId"), list, "friendId");
        json_decref(r);
        json_decref(ids);
        assert_true(ok);
    }
}

/* Room r, made by user r with everyone else: it lives on shard r. */
static void rooms_add(struct world *w)
{
    for (int r = 0; r < NROOMS; r++) {
        char name[16];
        snprintf(name, sizeof(name), "room %d", r);
        json_t *r_ = call_until_known(w, "user-add-room", r,
                                      json_pack("{ss so ss}", "userId", w->u[r].id, "friendId",
                                                others(w, r, NULL), "roomName", name));
        assert_true(kc_check_ok(r_, w->u[r].id));
        KC_ASSERT_STR(r_, "roomName", name);
        assert_true(kc_check_iso(kc_str(r_, "createdAt"), "createdAt"));
        const char *id = kc_str(r_, "roomId");
        assert_true(id != NULL && kc_is_valid_id(id));
        snprintf(w->room[r], sizeof(w->room[r]), "%s", id);
        json_decref(r_);
        /* kchat's choice (protocol.md §9): a room hashes to its creator's
         * shard; the test relies on it to have a room on every shard */
        assert_int_equal(kc_partition_for(w->room[r], PARTITIONS), r % PARTITIONS);
    }
}

/* Wait until every user's list shows the rooms (memberships are added on
 * each participant's shard by commands). */
static void rooms_wait_visible(struct world *w)
{
    int64_t deadline = kc_now_ms() + SETTLE_MS;
    for (int u = 0; u < NUSERS; u++) {
        for (;;) {
            json_t *r = kc_call(w->c, "user-search-room", w->u[u].id, w->u[u].session,
                                json_pack("{ss}", "userId", w->u[u].id));
            assert_true(kc_check_ok(r, w->u[u].id));
            bool all = lists_every_room(w, json_object_get(r, "rooms"));
            if (!all && kc_now_ms() >= deadline)
                fprintf(stderr, "user %d sees %s\n", u, kc_dumps(r));
            json_decref(r);
            if (all)
                break;
            assert_true(kc_now_ms() < deadline);
            kc_sleep_ms(200);
        }
    }
}

/* Users, statuses, friends and rooms, as every case but the first needs. */
static void world_setup(struct world *w)
{
    users_add(w);
    statuses_set(w);
    friends_add(w);
    rooms_add(w);
    rooms_wait_visible(w);
}

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                 */
/* ------------------------------------------------------------------------ */

static int setup(void **state)
{
    (void)state;
    g_case_t0 = kc_now_ms();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (g_stream.running) {
        atomic_store(&g_stream.stop, true);
        pthread_join(g_stream.thread, NULL);
        g_stream.running = false;
    }
    if (g_w != NULL)
        kc_client_free(g_w->c);
    free(g_w);
    g_w = NULL;
    for (int k = 0; k < MAX_NODES; k++) {
        if (g_node[k] != NULL && kc_proc_stop_clean(g_node[k], 30))
            node_print_stats(k);
        kc_proc_free(g_node[k]);
        g_node[k] = NULL;
        free(g_data[k]);
        g_data[k] = NULL;
    }
    fprintf(stderr, "case %s: %.1f s\n", g_case, (double)(kc_now_ms() - g_case_t0) / 1000.0);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* test_two_nodes_every_operation                                           */
/* ------------------------------------------------------------------------ */

/* Register again, wrong password, a second session and its logout, for
 * users of every shard. */
static void accounts_errors_and_logout(struct world *w)
{
    for (int i = 0; i < NUSERS; i++) {
        const kc_user *u = &w->u[i];
        KC_EXPECT_ERR(kc_call(w->c, "user-add", u->id, NULL,
                              json_pack("{ss ss ss ss}", "userId", u->id, "userPw", u->pw,
                                        "email", u->email, "userName", u->name)),
                      u->id, "ALREADY_EXISTS");
        KC_EXPECT_ERR(kc_call(w->c, "login", u->id, NULL,
                              json_pack("{ss ss}", "userId", u->id, "userPw", "wrong password")),
                      u->id, "BAD_CREDENTIALS");
        char *second = kc_login(w->c, u->id, u->pw);
        assert_non_null(second);
        assert_string_not_equal(second, u->session);
        KC_EXPECT_OK(kc_call(w->c, "logout", u->id, second, json_pack("{ss}", "userId", u->id)),
                     u->id);
        KC_EXPECT_ERR(kc_call(w->c, "user-search-friend", u->id, second,
                              json_pack("{ss}", "userId", u->id)),
                      u->id, "UNAUTHENTICATED");
        /* the first session is another one: logout revoked only its own */
        KC_EXPECT_OK(kc_call(w->c, "user-search-friend", u->id, u->session,
                             json_pack("{ss}", "userId", u->id)),
                     u->id);
        free(second);
    }
}

/* Friend and room errors across shards: an unknown id, a non-friend. */
static void friend_and_room_errors(struct world *w, kc_user *outsider)
{
    char ghost[65];
    kc_uid(ghost, sizeof(ghost), "ghost");
    KC_EXPECT_ERR(kc_call(w->c, "user-add-friend", w->u[1].id, w->u[1].session,
                          json_pack("{ss s[ss]}", "userId", w->u[1].id, "friendId", w->u[2].id,
                                    ghost)),
                  w->u[1].id, "USER_NOT_FOUND");
    /* the outsider follows user 0, but user 0 does not follow the outsider:
     * once the outsider is known to user 0's node, NOT_A_FRIEND */
    const char *one[] = {w->u[0].id, NULL};
    assert_true(kc_add_friends(w->c, outsider, one));
    KC_EXPECT_ERR(call_until_known(w, "user-add-room", 0,
                                   json_pack("{ss s[s]}", "userId", w->u[0].id, "friendId",
                                             outsider->id)),
                  w->u[0].id, "NOT_A_FRIEND");
}

/* A room id that hashes to @p shard and names no room. */
static void unknown_room(int shard, char *out, size_t size)
{
    for (unsigned n = 0;; n++) {
        snprintf(out, size, "rnosuchroom%05u", n);
        if (kc_partition_for(out, PARTITIONS) == shard)
            return;
    }
}

/* Chat and history errors, for rooms on every shard. */
static void chat_errors(struct world *w, const kc_user *outsider)
{
    for (int r = 0; r < NROOMS; r++) {
        char nosuch[40];
        unknown_room(r, nosuch, sizeof(nosuch));
        int writer = (r + 2) % NUSERS;
        KC_EXPECT_ERR(kc_call(w->c, "user-add-chat", w->u[writer].id, w->u[writer].session,
                              json_pack("{ss ss ss}", "roomId", nosuch, "writerId",
                                        w->u[writer].id, "message", "into nothing")),
                      w->u[writer].id, "ROOM_NOT_FOUND");
        KC_EXPECT_ERR(kc_call(w->c, "room-history", w->u[writer].id, w->u[writer].session,
                              json_pack("{ss ss}", "userId", w->u[writer].id, "roomId", nosuch)),
                      w->u[writer].id, "ROOM_NOT_FOUND");
        KC_EXPECT_ERR(kc_call(w->c, "user-add-chat", outsider->id, outsider->session,
                              json_pack("{ss ss ss}", "roomId", w->room[r], "writerId",
                                        outsider->id, "message", "let me in")),
                      outsider->id, "NOT_A_MEMBER");
        KC_EXPECT_ERR(kc_call(w->c, "room-history", outsider->id, outsider->session,
                              json_pack("{ss ss}", "userId", outsider->id, "roomId", w->room[r])),
                      outsider->id, "NOT_A_MEMBER");
    }
}

/* Two rounds: every user writes to every room, one send at a time, so the
 * seq of each answer is known: 1..16 per room. Then one repeat. */
static void chat_rounds(struct world *w)
{
    int64_t next[NROOMS] = {1, 1, 1, 1};
    for (int round = 0; round < 2; round++)
        for (int r = 0; r < NROOMS; r++)
            for (int u = 0; u < NUSERS; u++)
                assert_int_equal(chat_sync(w, u, r), next[r]++);
    /* the same (writer, room, clientMsgId) again: nothing new, the first seq */
    const struct req *first = &w->send[5];
    char cmid[32], text[96];
    chat_cmid(5, cmid, sizeof(cmid));
    chat_text(w, 5, text, sizeof(text));
    json_t *r = kc_call(w->c, "user-add-chat", w->u[first->user].id, w->u[first->user].session,
                        json_pack("{ss ss ss ss}", "roomId", w->room[first->room], "writerId",
                                  w->u[first->user].id, "message", text, "clientMsgId", cmid));
    assert_true(kc_check_ok(r, w->u[first->user].id));
    KC_ASSERT_INT(r, "seq", first->seq);
    json_decref(r);
}

/* room-history with a limit and beforeSeq: the newest of those before. */
static void history_page(struct world *w)
{
    int reader = 6, r = 3;
    json_t *h = kc_call(w->c, "room-history", w->u[reader].id, w->u[reader].session,
                        json_pack("{ss ss si si}", "userId", w->u[reader].id, "roomId",
                                  w->room[r], "beforeSeq", 10, "limit", 3));
    assert_true(kc_check_ok(h, w->u[reader].id));
    json_t *msgs = json_object_get(h, "messages");
    assert_int_equal(json_array_size(msgs), 3);
    for (size_t j = 0; j < 3; j++)
        KC_ASSERT_INT(json_array_get(msgs, j), "seq", (json_int_t)(7 + j));
    json_decref(h);
}

static void test_two_nodes_every_operation(void **state)
{
    kc_user outsider;
    (void)state;
    g_case = "ops";
    struct world *w = world_begin("ops", 2);
    users_add(w);
    accounts_errors_and_logout(w);
    statuses_set(w);
    friends_add(w);
    rooms_add(w);
    rooms_wait_visible(w);
    kc_user_init(&outsider, "out");
    assert_true(kc_user_register(w->c, &outsider));
    assert_true(kc_user_login(w->c, &outsider));
    friend_and_room_errors(w, &outsider);
    chat_errors(w, &outsider);
    chat_rounds(w);
    history_page(w);
    check_world(w, "two nodes, every operation");
}

/* ------------------------------------------------------------------------ */
/* test_kill9_handover                                                      */
/* ------------------------------------------------------------------------ */

/* Per shard, the first answer to one of its probes after @p kill_ms: the
 * largest of those is the hand-over time of the killed node's shards. */
static void handover_report(struct world *w, int64_t kill_ms)
{
    int64_t worst = 0;
    bool all = true;
    for (int shard = 0; shard < PARTITIONS; shard++) {
        int64_t first = -1, first_ok = -1;
        for (int i = 0; i < w->nprobe; i++) {
            const struct req *q = &w->probe[i];
            if (q->user % PARTITIONS != shard || !q->answered || q->answer_ms < kill_ms)
                continue;
            if (first < 0 || q->answer_ms < first)
                first = q->answer_ms;
            if (q->ok && (first_ok < 0 || q->answer_ms < first_ok))
                first_ok = q->answer_ms;
        }
        fprintf(stderr, "%s: shard %d: first answer %lld ms after the kill, first success "
                "%lld ms\n", g_case, shard, first < 0 ? -1LL : (long long)(first - kill_ms),
                first_ok < 0 ? -1LL : (long long)(first_ok - kill_ms));
        all = all && first >= 0;
        if (first >= 0 && first - kill_ms > worst)
            worst = first - kill_ms;
    }
    if (all)
        fprintf(stderr, "handover: kill -9 to first answer from new owner: %lld ms\n",
                (long long)worst);
    else
        fprintf(stderr, "handover: kill -9 to first answer from new owner: none (a shard "
                "never answered)\n");
}

static void test_kill9_handover(void **state)
{
    (void)state;
    g_case = "kill9";
    struct world *w = world_begin("kill9", 2);
    world_setup(w);
    stream_start(w, 200);
    stream_wait(80);
    int64_t kill_ms = node_kill(1);
    stream_wait(200);
    stream_end();
    drain(w, DRAIN_MS);
    handover_report(w, kill_ms);
    check_world(w, "after kill -9 of node b");

    node_start(1, false);
    stream_start(w, 40);
    stream_wait(40);
    stream_end();
    check_world(w, "after node b came back on its old data directory");
}

/* ------------------------------------------------------------------------ */
/* test_fresh_node_joins                                                    */
/* ------------------------------------------------------------------------ */

static void test_fresh_node_joins(void **state)
{
    (void)state;
    g_case = "fresh";
    struct world *w = world_begin("fresh", 2);
    world_setup(w);

    stream_start(w, 600);
    stream_wait(30);
    node_start(2, true);   /* node c, empty data directory, joins under load */
    stream_wait(stream_done() + 30);
    stream_end();
    check_world(w, "after node c joined with an empty data directory");

    stream_start(w, 600);
    stream_wait(30);
    node_kill(1);
    kc_rm_rf(g_data[1]);   /* node b's data directory is lost while it is down */
    /* 10 s: past the session timeout (6 s), so a and c take b's shards */
    stream_wait(stream_done() + 100);
    node_start(1, false);
    stream_wait(stream_done() + 30);
    stream_end();
    check_world(w, "after node b came back with its data directory deleted");
}

/* ------------------------------------------------------------------------ */
/* test_sigterm_and_rolling_restart                                         */
/* ------------------------------------------------------------------------ */

static void test_sigterm_and_rolling_restart(void **state)
{
    (void)state;
    g_case = "rolling";
    struct world *w = world_begin("rolling", 2);
    world_setup(w);

    stream_start(w, 600);
    stream_wait(40);
    node_term(1);
    stream_wait(stream_done() + 30);
    node_start(1, false);
    stream_wait(stream_done() + 30);
    stream_end();
    check_world(w, "after SIGTERM of node b and its restart");

    stream_start(w, 900);
    stream_wait(20);
    for (int k = 0; k < 2; k++) {
        node_term(k);
        node_start(k, false);
        stream_wait(stream_done() + 30);
    }
    stream_end();
    check_world(w, "after a rolling restart of both nodes");
}

int main(void)
{
    /* KCHAT_TEST_FILTER=test_kill9* runs only the matching cases */
    const char *filter = getenv("KCHAT_TEST_FILTER");
    if (filter != NULL && filter[0] != '\0')
        cmocka_set_test_filter(filter);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_nodes_every_operation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_handover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fresh_node_joins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_and_rolling_restart, setup, teardown),
    };
    if (kc_test_brokers() == NULL) {
        fprintf(stderr, "test_multinode runs on real Kafka only: make check-kafka sets "
                "KCHAT_TEST_BROKERS\n");
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
