/*
 * A world of users and rooms on several `kchat serve` nodes, a stream of
 * requests and what it was answered: see nodes.h. Moved from
 * tests/integration/test_multinode.c; the checks are in nodes_check.c.
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

#include "http.h"
#include "kassert.h"
#include "nodes.h"

/* A burst of chat sends nd_stream_burst() asks the stream thread for. */
struct burst {
    int sends;
    void (*then)(void *arg); /* called on the stream thread after the last send */
    void *arg;
};

/* The stream thread: chat sends and probes at ND_TICK_MS until stopped. */
struct stream {
    struct nd_world *w;
    int max;                 /* ticks at most */
    atomic_int done;         /* ticks sent so far */
    atomic_bool stop;
    atomic_int lost;         /* requests Kafka did not take */
    struct burst burst;      /* written by the main thread before it sets ... */
    atomic_bool burst_asked; /* ... this, which the stream thread clears when done */
    pthread_t thread;
    bool running;
};

/* What a case started, so that teardown cleans up after a failed assertion. */
static struct nd_world *g_w;
static struct stream g_stream;
static kc_proc *g_node[ND_MAX_NODES];
static char *g_data[ND_MAX_NODES];
static char g_metrics[ND_MAX_NODES][64]; /* http://127.0.0.1:PORT, "" without */
static bool g_use_metrics;
static const char *g_case = "";
static int64_t g_case_t0;
static const char *const node_letter[ND_MAX_NODES] = {"a", "b", "c"};

/* ------------------------------------------------------------------------ */
/* Nodes                                                                    */
/* ------------------------------------------------------------------------ */

void nd_use_metrics(bool on)
{
    g_use_metrics = on;
}

void nd_node_start(int k, bool fresh)
{
    char name[64], addr[32];
    const char *extra[] = {"--metrics-http", addr, NULL};
    int64_t t0 = kc_now_ms();

    snprintf(name, sizeof(name), "%s-node-%s", g_case, node_letter[k]);
    if (fresh) {
        free(g_data[k]);
        g_data[k] = kc_tmppath(name);
        kc_rm_rf(g_data[k]);
    }
    bool empty = access(g_data[k], F_OK) != 0;
    assert_null(g_node[k]);
    g_metrics[k][0] = '\0';
    if (g_use_metrics) {   /* a fresh port each start */
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", kc_free_port());
        snprintf(g_metrics[k], sizeof(g_metrics[k]), "http://%s", addr);
    }
    g_node[k] = kc_serve_start_ex(name, g_data[k], NULL, ND_PARTITIONS,
                                  g_use_metrics ? extra : NULL, ND_START_S);
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

int64_t nd_node_kill(int k)
{
    int64_t at = kc_wall_ms();
    assert_non_null(g_node[k]);
    assert_int_equal(kc_proc_stop(g_node[k], SIGKILL, 10, NULL), 0);
    kc_proc_free(g_node[k]);
    g_node[k] = NULL;
    fprintf(stderr, "%s: node %s killed with SIGKILL\n", g_case, node_letter[k]);
    return at;
}

bool nd_node_stop(int k)
{
    int64_t t0 = kc_now_ms();
    assert_non_null(g_node[k]);
    bool clean = kc_proc_stop_clean(g_node[k], 60);
    node_print_stats(k);
    kc_proc_free(g_node[k]);
    g_node[k] = NULL;
    fprintf(stderr, "%s: node %s stopped by SIGTERM after %lld ms (%s)\n", g_case,
            node_letter[k], (long long)(kc_now_ms() - t0), clean ? "exit 0" : "NOT clean");
    return clean;
}

void nd_node_term(int k)
{
    assert_true(nd_node_stop(k));
}

kc_proc *nd_node(int k)
{
    return g_node[k];
}

const char *nd_node_name(int k)
{
    return node_letter[k];
}

const char *nd_node_data(int k)
{
    return g_data[k];
}

double nd_metric(int k, const char *name)
{
    double v;
    assert_non_null(g_node[k]);
    assert_true(g_metrics[k][0] != '\0');
    assert_true(kh_metric(g_metrics[k], name, &v));
    return v;
}

/* ------------------------------------------------------------------------ */
/* Requests and their answers                                               */
/* ------------------------------------------------------------------------ */

const char *nd_str_of(const json_t *obj, const char *field)
{
    const char *s = kc_str(obj, field);
    return s != NULL ? s : "";
}

static const char *code_of(const json_t *r)
{
    return nd_str_of(r, "errorCode");
}

void nd_chat_text(const struct nd_world *w, int i, char *out, size_t size)
{
    snprintf(out, size, "%s message %d", w->tag, i);
}

void nd_chat_cmid(int i, char *out, size_t size)
{
    snprintf(out, size, "m-%d", i);
}

struct nd_req *nd_chat_send(struct nd_world *w, int writer, int room)
{
    char text[96], cmid[32];
    if (w->nsend >= ND_MAX_SENDS)
        return NULL;
    int i = w->nsend++;
    struct nd_req *q = &w->send[i];
    memset(q, 0, sizeof(*q));
    snprintf(q->cid, sizeof(q->cid), "%sc%d", w->prefix, i);
    q->user = writer;
    q->room = room;
    nd_chat_text(w, i, text, sizeof(text));
    nd_chat_cmid(i, cmid, sizeof(cmid));
    json_t *body = json_pack("{ss ss ss ss}", "roomId", w->room[room], "writerId",
                             w->u[writer].id, "message", text, "clientMsgId", cmid);
    if (kc_send_req(w->c, "user-add-chat", w->u[writer].id, w->u[writer].session, q->cid, body,
                    NULL))
        q->sent_ms = kc_wall_ms();
    json_decref(body);
    return q;
}

/* Send a probe: user-search-room of @p user with the session of the start. */
static struct nd_req *probe_send(struct nd_world *w, int user)
{
    if (w->nprobe >= ND_MAX_PROBES)
        return NULL;
    int i = w->nprobe++;
    struct nd_req *q = &w->probe[i];
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

bool nd_lists_every_room(const struct nd_world *w, const json_t *rooms)
{
    for (int r = 0; r < ND_ROOMS; r++) {
        bool found = false;
        for (size_t j = 0; j < json_array_size(rooms) && !found; j++)
            found = strcmp(nd_str_of(json_array_get(rooms, j), "roomId"), w->room[r]) == 0;
        if (!found)
            return false;
    }
    return true;
}

/* Fold one answer record into its request. */
static void fold(struct nd_world *w, struct nd_req *q, const kc_record *rec, bool probe)
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
            q->incomplete = !nd_lists_every_room(w, json_object_get(rec->body, "rooms"));
    } else if (!q->mismatch && (q->ok != ok || strcmp(q->code, code) != 0 || q->seq != seq)) {
        q->mismatch = true;
        snprintf(q->code2, sizeof(q->code2), "%s", ok ? "ok" : code);
        q->seq2 = seq;
    }
}

void nd_collect(struct nd_world *w)
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

static int unanswered(const struct nd_req *q, int n)
{
    int cnt = 0;
    for (int i = 0; i < n; i++)
        cnt += q[i].sent_ms != 0 && !q[i].answered;
    return cnt;
}

bool nd_drain(struct nd_world *w, int timeout_ms)
{
    int64_t t0 = kc_now_ms();
    for (;;) {
        nd_collect(w);
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

int64_t nd_chat_sync(struct nd_world *w, int writer, int room)
{
    struct nd_req *q = nd_chat_send(w, writer, room);
    assert_non_null(q);
    assert_true(q->sent_ms != 0);
    assert_non_null(kc_wait_cid(w->c, "user-add-chat", q->cid, KC_CALL_TIMEOUT_MS));
    nd_collect(w);
    assert_true(q->answered);
    if (!q->ok)
        fprintf(stderr, "%s: chat send %s answered %s\n", g_case, q->cid, q->code);
    return q->ok ? q->seq : -1;
}

json_t *nd_call_until_known(struct nd_world *w, const char *op, int user, json_t *body)
{
    int64_t deadline = kc_now_ms() + ND_SETTLE_MS;
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

/* Tick @p i: one chat send (writer i % ND_USERS; the room turns so that each
 * writer writes to every room) and one probe per shard, alternating between
 * the shard's two users. Runs on the stream thread: no cmocka assertion. */
static void stream_tick(struct stream *s, int i)
{
    struct nd_world *w = s->w;
    struct nd_req *q = nd_chat_send(w, i % ND_USERS, (i + i / ND_USERS) % ND_ROOMS);
    if (q == NULL || q->sent_ms == 0)
        atomic_fetch_add(&s->lost, 1);
    for (int shard = 0; shard < ND_PARTITIONS; shard++) {
        q = probe_send(w, shard + ND_PARTITIONS * (i % 2));
        if (q == NULL || q->sent_ms == 0)
            atomic_fetch_add(&s->lost, 1);
    }
}

/* The burst asked for: chat sends of every writer to every room (32 cover
 * each pair once), then its callback. Runs on the stream thread. */
static void stream_burst(struct stream *s)
{
    for (int b = 0; b < s->burst.sends; b++) {
        struct nd_req *q = nd_chat_send(s->w, b % ND_USERS, (b + b / ND_USERS) % ND_ROOMS);
        if (q == NULL || q->sent_ms == 0)
            atomic_fetch_add(&s->lost, 1);
    }
    if (s->burst.then != NULL)
        s->burst.then(s->burst.arg);
    atomic_store(&s->burst_asked, false);
}

static void *stream_main(void *arg)
{
    struct stream *s = arg;
    int64_t t0 = kc_now_ms();
    for (int i = 0; i < s->max && !atomic_load(&s->stop); i++) {
        int64_t wait = t0 + (int64_t)i * ND_TICK_MS - kc_now_ms();
        if (wait > 0)
            kc_sleep_ms((int)wait);
        stream_tick(s, i);
        if (atomic_load(&s->burst_asked))
            stream_burst(s);
        atomic_store(&s->done, i + 1);
    }
    atomic_store(&s->stop, true);
    return NULL;
}

void nd_stream_start(struct nd_world *w, int max)
{
    struct stream *s = &g_stream;
    assert_false(s->running);
    s->w = w;
    s->max = max;
    atomic_store(&s->done, 0);
    atomic_store(&s->stop, false);
    atomic_store(&s->lost, 0);
    atomic_store(&s->burst_asked, false);
    assert_int_equal(pthread_create(&s->thread, NULL, stream_main, s), 0);
    s->running = true;
}

void nd_stream_wait(int ticks)
{
    while (atomic_load(&g_stream.done) < ticks && !atomic_load(&g_stream.stop))
        kc_sleep_ms(20);
}

int nd_stream_done(void)
{
    return atomic_load(&g_stream.done);
}

void nd_stream_burst(int sends, void (*then)(void *arg), void *arg)
{
    struct stream *s = &g_stream;
    int64_t deadline = kc_now_ms() + 30000;
    assert_true(s->running);
    assert_false(atomic_load(&s->burst_asked));
    s->burst = (struct burst){sends, then, arg};
    atomic_store(&s->burst_asked, true);
    while (atomic_load(&s->burst_asked) && kc_now_ms() < deadline)
        kc_sleep_ms(5);
    assert_false(atomic_load(&s->burst_asked));
}

/* What nd_wait_every_shard() waits for: an answer to a probe of @c shard
 * created at or after @c since. */
struct shard_answer {
    const char *prefix;
    size_t pl;
    int shard;
    int64_t since;
};

/* Runs with the client's lock held: no kc_* call that takes the client. */
static bool is_shard_answer(const kc_record *r, void *arg)
{
    const struct shard_answer *m = arg;
    return r->cid != NULL && strncmp(r->cid, m->prefix, m->pl) == 0 && r->cid[m->pl] == 'p' &&
           r->timestamp >= m->since && r->has_key &&
           strcmp(r->topic, "user-search-room-response") == 0 &&
           kc_partition_for(r->key, ND_PARTITIONS) == m->shard;
}

int64_t nd_wait_every_shard(struct nd_world *w, int64_t since_ms, int timeout_ms)
{
    int64_t deadline = kc_now_ms() + timeout_ms, worst = 0;
    for (int shard = 0; shard < ND_PARTITIONS; shard++) {
        struct shard_answer m = {w->prefix, strlen(w->prefix), shard, since_ms};
        int64_t left = deadline - kc_now_ms();
        const kc_record *r = kc_wait_record(w->c, 0, is_shard_answer, &m,
                                            left > 0 ? (int)left : 0);
        int64_t after = r != NULL ? r->timestamp - since_ms : -1;
        fprintf(stderr, "%s: shard %d: first probe answer %lld ms after the mark%s\n", g_case,
                shard, (long long)after, r != NULL ? "" : " (none)");
        if (r == NULL)
            worst = -1;
        else if (worst >= 0 && after > worst)
            worst = after;
    }
    return worst;
}

void nd_stream_end(void)
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
/* A world: users on every shard, friends, a room on every shard            */
/* ------------------------------------------------------------------------ */

struct nd_world *nd_world_begin(const char *tag, int nodes)
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
        nd_node_start(k, true);
    g_w->c = kc_client_new(kc_test_brokers(), KC_FROM_END);
    assert_non_null(g_w->c);
    return g_w;
}

/* User @p i: a new id on shard i % ND_PARTITIONS, registered and logged in. */
static void user_add(struct nd_world *w, int i)
{
    kc_user *u = &w->u[i];
    for (int tries = 0; tries < 1000; tries++) {
        kc_user_init(u, w->tag);
        if (kc_partition_for(u->id, ND_PARTITIONS) == i % ND_PARTITIONS)
            break;
    }
    assert_int_equal(kc_partition_for(u->id, ND_PARTITIONS), i % ND_PARTITIONS);
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

void nd_users_add(struct nd_world *w)
{
    for (int i = 0; i < ND_USERS; i++)
        user_add(w, i);
}

void nd_statuses_set(struct nd_world *w)
{
    for (int i = 0; i < ND_USERS; i++) {
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
static json_t *others(const struct nd_world *w, int skip, const char **list)
{
    json_t *a = json_array();
    int n = 0;
    for (int k = 1; k < ND_USERS; k++) {
        int i = (skip + k) % ND_USERS;
        json_array_append_new(a, json_string(w->u[i].id));
        if (list != NULL)
            list[n++] = w->u[i].id;
    }
    if (list != NULL)
        list[n] = NULL;
    return a;
}

void nd_friends_add(struct nd_world *w)
{
    for (int i = 0; i < ND_USERS; i++) {
        const char *list[ND_USERS];
        json_t *ids = others(w, i, list);
        json_t *r = nd_call_until_known(w, "user-add-friend", i,
                                     json_pack("{ss sO}", "userId", w->u[i].id, "friendId", ids));
        bool ok = kc_check_ok(r, w->u[i].id) &&
                  kc_check_id_set(json_object_get(r, "friendId"), list, "friendId");
        json_decref(r);
        json_decref(ids);
        assert_true(ok);
    }
}

void nd_rooms_add(struct nd_world *w)
{
    for (int r = 0; r < ND_ROOMS; r++) {
        char name[24];
        snprintf(name, sizeof(name), "room %d", r);
        json_t *r_ = nd_call_until_known(w, "user-add-room", r,
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
        assert_int_equal(kc_partition_for(w->room[r], ND_PARTITIONS), r % ND_PARTITIONS);
    }
}

/* Wait until every user's list shows the rooms (memberships are added on
 * each participant's shard by commands). */
void nd_rooms_wait_visible(struct nd_world *w)
{
    int64_t deadline = kc_now_ms() + ND_SETTLE_MS;
    for (int u = 0; u < ND_USERS; u++) {
        for (;;) {
            json_t *r = kc_call(w->c, "user-search-room", w->u[u].id, w->u[u].session,
                                json_pack("{ss}", "userId", w->u[u].id));
            assert_true(kc_check_ok(r, w->u[u].id));
            bool all = nd_lists_every_room(w, json_object_get(r, "rooms"));
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

void nd_world_setup(struct nd_world *w)
{
    nd_users_add(w);
    nd_statuses_set(w);
    nd_friends_add(w);
    nd_rooms_add(w);
    nd_rooms_wait_visible(w);
}

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                 */
/* ------------------------------------------------------------------------ */

int nd_setup(void **state)
{
    (void)state;
    g_case_t0 = kc_now_ms();
    return 0;
}

void nd_case(const char *name)
{
    g_case = name;
}

const char *nd_case_name(void)
{
    return g_case;
}

void nd_phase(const char *what)
{
    fprintf(stderr, "%s: %s done at %.1f s\n", g_case, what,
            (double)(kc_now_ms() - g_case_t0) / 1000.0);
}

int nd_teardown(void **state)
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
    for (int k = 0; k < ND_MAX_NODES; k++) {
        /* a node a failed case left paused (SIGSTOP) would hold SIGTERM */
        if (g_node[k] != NULL && kc_proc_pid(g_node[k]) > 0)
            kill(kc_proc_pid(g_node[k]), SIGCONT);
        if (g_node[k] != NULL && kc_proc_stop_clean(g_node[k], 30))
            node_print_stats(k);
        kc_proc_free(g_node[k]);
        g_node[k] = NULL;
        free(g_data[k]);
        g_data[k] = NULL;
    }
    g_use_metrics = false;
    fprintf(stderr, "case %s: %.1f s\n", g_case, (double)(kc_now_ms() - g_case_t0) / 1000.0);
    return 0;
}
