/*
 * kchat-test: kafka (also run on real Apache Kafka by `make check-kafka`)
 * Crash test (PROTOCOL.md §7): `kchat serve --brokers B` is killed with
 * SIGKILL at random moments under a load of registrations, logins,
 * friendships, room creations, chat sends, history reads and room lists,
 * and restarted on the same data directory each time.
 *
 * Every request has its own kchat-cid and is sent exactly once: nothing is
 * re-sent, so every request that was in Kafka when the server died must be
 * answered by a later incarnation (from its outbox or by consuming the
 * request again). At the end the test checks:
 *  - every request got a response; repeats of one cid carry the same body;
 *    every response is a success (the load never asks for a failure);
 *  - every user exists once and can log in; each user's friend list is
 *    exactly the friends it was told it added, each once;
 *  - each room's messages have seqs 1..n with no gap and no repeat, n is
 *    the number of acknowledged sends to it, and each acknowledged send is
 *    there once with the seq, writer and text it was acknowledged with;
 *  - every participant's room list is exactly its rooms, with those
 *    participants and that lastSeq.
 *
 * The broker is kc_broker_start()'s: `kchat broker`, or the real Kafka of
 * KCHAT_TEST_BROKERS. Environment knobs (`make soak` raises them):
 *   KCHAT_CRASH_KILLS (20), KCHAT_CRASH_USERS (16), KCHAT_CRASH_RUN_MS (1500:
 *   the longest stretch of load between two kills), KCHAT_CRASH_SEED.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/wait.h>
#include <cmocka.h>

#include "support/kassert.h"
#include "support/kclient.h"

#define PARTITIONS     4
#define MAX_FRIENDS    3
#define MAX_ROOMS      128
#define ROOM_MEMBERS   3
#define CID_BUCKETS0   (1u << 16) /* first size of the cid index; doubled at half full */
#define DRAIN_MS       120000

enum rq_op { RQ_ADD, RQ_LOGIN, RQ_FRIEND, RQ_ROOM, RQ_CHAT, RQ_HISTORY, RQ_ROOMS, RQ__N };
static const char *const rq_topic[RQ__N] = {
    "user-add", "login", "user-add-friend", "user-add-room", "user-add-chat",
    "room-history", "user-search-room",
};

/* One request sent by the load: answered once its first response came. */
struct rq {
    char cid[72];
    int op;
    int user;
    int arg;            /* friend: the user followed; room: the first friend;
                           chat/history: the room */
    int arg2;           /* room: the second friend, -1 when none */
    int msg;            /* chat: index into g.msgs */
    int answers;
    char *body;         /* the first answer, canonical JSON (for repeats) */
};

struct cuser {
    kc_user u;
    bool registered;
    bool logged_in;
    int pending;                 /* request in flight, -1 when none */
    int friends[MAX_FRIENDS];    /* acknowledged follows */
    int n_friends;
    int rooms_created;
};

struct croom {
    char id[65];
    int members[ROOM_MEMBERS];   /* [0] is the creator */
    int n_members;
    int acked;                   /* acknowledged chat sends */
};

struct cmsg {
    int room;
    int writer;
    char cmid[24];
    char text[48];
    int64_t seq;                 /* acknowledged seq, 0 before */
};

static struct {
    kc_client *c;
    kc_proc *broker, *srv;
    char brokers[1024];
    char *data;
    int n_users;
    struct cuser *users;
    struct croom rooms[MAX_ROOMS];
    int n_rooms;
    struct rq *rqs;
    size_t n_rqs, cap_rqs;
    struct cmsg *msgs;
    size_t n_msgs, cap_msgs;
    uint32_t *cid_index;               /* rq index + 1, open addressing */
    size_t cid_buckets;                /* a power of two, > 2 * n_rqs */
    size_t scan;
    uint64_t rng;
    int64_t run_start;
    size_t failures, mismatches;
    size_t answers;                    /* response records seen for our cids */
} g;

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? atoi(v) : dflt;
}

static uint32_t rnd(uint32_t n)
{
    g.rng ^= g.rng << 13;
    g.rng ^= g.rng >> 7;
    g.rng ^= g.rng << 17;
    return n == 0 ? 0 : (uint32_t)(g.rng % n);
}

static uint32_t cid_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static void cid_slot_put(const char *cid, size_t idx)
{
    size_t mask = g.cid_buckets - 1, b = cid_hash(cid) & mask;
    while (g.cid_index[b] != 0)
        b = (b + 1) & mask;
    g.cid_index[b] = (uint32_t)idx + 1;
}

/* Index request @p idx by its cid; the index doubles (and every cid is put
 * again) before it is half full, so probes stay short however long the
 * run (make soak: 100 kills, ~55,000 requests). */
static void cid_put(const char *cid, size_t idx)
{
    if (2 * (idx + 1) >= g.cid_buckets) {
        free(g.cid_index);
        g.cid_buckets = g.cid_buckets ? 2 * g.cid_buckets : CID_BUCKETS0;
        g.cid_index = calloc(g.cid_buckets, sizeof(*g.cid_index));
        assert_non_null(g.cid_index);
        for (size_t i = 0; i < idx; i++)
            cid_slot_put(g.rqs[i].cid, i);
    }
    cid_slot_put(cid, idx);
}

static struct rq *cid_get(const char *cid)
{
    size_t mask = g.cid_buckets - 1, b = cid_hash(cid) & mask;
    while (g.cid_buckets > 0 && g.cid_index[b] != 0) {
        struct rq *r = &g.rqs[g.cid_index[b] - 1];
        if (strcmp(r->cid, cid) == 0)
            return r;
        b = (b + 1) & mask;
    }
    return NULL;
}

static bool is_member(const struct croom *r, int user)
{
    for (int i = 0; i < r->n_members; i++)
        if (r->members[i] == user)
            return true;
    return false;
}

static bool follows(const struct cuser *u, int other)
{
    for (int i = 0; i < u->n_friends; i++)
        if (u->friends[i] == other)
            return true;
    return false;
}

/* ------------------------------------------------------------------------ */
/* sending                                                                  */
/* ------------------------------------------------------------------------ */

static struct rq *rq_new(int op, int user)
{
    if (g.n_rqs == g.cap_rqs) {
        g.cap_rqs = g.cap_rqs ? g.cap_rqs * 2 : 1024;
        g.rqs = realloc(g.rqs, g.cap_rqs * sizeof(*g.rqs));
        assert_non_null(g.rqs);
    }
    struct rq *r = &g.rqs[g.n_rqs];
    memset(r, 0, sizeof(*r));
    r->op = op;
    r->user = user;
    r->msg = -1;
    snprintf(r->cid, sizeof(r->cid), "crash-%d-%lld-%zu", (int)getpid(),
             (long long)g.run_start, g.n_rqs);
    return r;
}

/* Sends r with body (stolen); the user waits for it. */
static void rq_send(struct rq *r, json_t *body)
{
    struct cuser *u = &g.users[r->user];
    const char *session = u->logged_in ? u->u.session : NULL;
    bool ok = kc_send_req(g.c, rq_topic[r->op], u->u.id, session, r->cid, body, NULL);
    json_decref(body);
    assert_true(ok);
    cid_put(r->cid, g.n_rqs);
    u->pending = (int)g.n_rqs;
    g.n_rqs++;
}

static int pick_room_of(int user)
{
    int mine[MAX_ROOMS], n = 0;
    for (int i = 0; i < g.n_rooms; i++)
        if (is_member(&g.rooms[i], user))
            mine[n++] = i;
    return n == 0 ? -1 : mine[rnd((uint32_t)n)];
}

/* The next request of a user with nothing in flight. */
static void user_step(int ui)
{
    struct cuser *u = &g.users[ui];
    struct rq *r;

    if (!u->registered) {
        r = rq_new(RQ_ADD, ui);
        rq_send(r, json_pack("{ss ss ss ss}", "userId", u->u.id, "userPw", u->u.pw,
                             "email", u->u.email, "userName", u->u.name));
        return;
    }
    if (!u->logged_in) {
        r = rq_new(RQ_LOGIN, ui);
        rq_send(r, json_pack("{ss ss}", "userId", u->u.id, "userPw", u->u.pw));
        return;
    }
    if (u->n_friends < MAX_FRIENDS) {
        int cand = (int)rnd((uint32_t)g.n_users);
        if (cand != ui && g.users[cand].registered && !follows(u, cand)) {
            r = rq_new(RQ_FRIEND, ui);
            r->arg = cand;
            rq_send(r, json_pack("{ss s[s]}", "userId", u->u.id, "friendId",
                                 g.users[cand].u.id));
            return;
        }
        if (u->n_friends == 0)
            return;   /* nobody to follow yet: try again later */
    }
    if (u->rooms_created < 2 && g.n_rooms < MAX_ROOMS && rnd(4) == 0) {
        r = rq_new(RQ_ROOM, ui);
        int f1 = u->friends[rnd((uint32_t)u->n_friends)];
        int f2 = u->friends[rnd((uint32_t)u->n_friends)];
        json_t *ids = json_pack("[s]", g.users[f1].u.id);
        if (f2 != f1)
            json_array_append_new(ids, json_string(g.users[f2].u.id));
        r->arg = f1;
        r->arg2 = f2 != f1 ? f2 : -1;
        rq_send(r, json_pack("{ss so ss}", "userId", u->u.id, "friendId", ids,
                             "roomName", "crash"));
        return;
    }
    int room = pick_room_of(ui);
    if (room < 0)
        return;
    uint32_t dice = rnd(100);
    if (dice < 90) {
        if (g.n_msgs == g.cap_msgs) {
            g.cap_msgs = g.cap_msgs ? g.cap_msgs * 2 : 1024;
            g.msgs = realloc(g.msgs, g.cap_msgs * sizeof(*g.msgs));
            assert_non_null(g.msgs);
        }
        struct cmsg *m = &g.msgs[g.n_msgs];
        memset(m, 0, sizeof(*m));
        m->room = room;
        m->writer = ui;
        snprintf(m->cmid, sizeof(m->cmid), "m%zu", g.n_msgs);
        snprintf(m->text, sizeof(m->text), "message %zu from %d", g.n_msgs, ui);
        r = rq_new(RQ_CHAT, ui);
        r->arg = room;
        r->msg = (int)g.n_msgs++;
        rq_send(r, json_pack("{ss ss ss ss}", "roomId", g.rooms[room].id, "writerId",
                             u->u.id, "message", m->text, "clientMsgId", m->cmid));
    } else if (dice < 95) {
        r = rq_new(RQ_HISTORY, ui);
        r->arg = room;
        rq_send(r, json_pack("{ss ss si}", "userId", u->u.id, "roomId", g.rooms[room].id,
                             "limit", 20));
    } else {
        r = rq_new(RQ_ROOMS, ui);
        rq_send(r, json_pack("{ss}", "userId", u->u.id));
    }
}

/* ------------------------------------------------------------------------ */
/* answers                                                                  */
/* ------------------------------------------------------------------------ */

static void rq_fail(const struct rq *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void rq_fail(const struct rq *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "test_crash: %s %s (user %s): ", rq_topic[r->op], r->cid,
            g.users[r->user].u.id);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    g.failures++;
}

/* The first answer of r: apply what it acknowledges to the bookkeeping. */
static void rq_answered(struct rq *r, const json_t *b)
{
    struct cuser *u = &g.users[r->user];
    if (!json_is_true(json_object_get(b, "isSuccess"))) {
        rq_fail(r, "no success: %s", r->body);
        return;
    }
    switch (r->op) {
    case RQ_ADD:
        u->registered = true;
        break;
    case RQ_LOGIN: {
        const char *s = kc_str(b, "sessionId");
        if (s == NULL || strlen(s) >= sizeof(u->u.session)) {
            rq_fail(r, "no usable sessionId");
            break;
        }
        snprintf(u->u.session, sizeof(u->u.session), "%s", s);
        u->logged_in = true;
        break;
    }
    case RQ_FRIEND:
        if (!follows(u, r->arg) && u->n_friends < MAX_FRIENDS)
            u->friends[u->n_friends++] = r->arg;
        break;
    case RQ_ROOM: {
        const char *id = kc_str(b, "roomId");
        if (id == NULL || strlen(id) >= sizeof(g.rooms[0].id)) {
            rq_fail(r, "no usable roomId");
            break;
        }
        struct croom *room = &g.rooms[g.n_rooms++];
        memset(room, 0, sizeof(*room));
        snprintf(room->id, sizeof(room->id), "%s", id);
        room->members[room->n_members++] = r->user;
        room->members[room->n_members++] = r->arg;
        if (r->arg2 >= 0)
            room->members[room->n_members++] = r->arg2;
        u->rooms_created++;
        break;
    }
    case RQ_CHAT: {
        struct cmsg *m = &g.msgs[r->msg];
        json_int_t seq = kc_int(b, "seq", -1);
        if (seq < 1) {
            rq_fail(r, "no seq");
            break;
        }
        m->seq = seq;
        g.rooms[m->room].acked++;
        break;
    }
    default:
        break;
    }
}

/* Folds every response record that arrived since the last call. */
static void collect(void)
{
    size_t n = kc_record_count(g.c);
    for (; g.scan < n; g.scan++) {
        const kc_record *rec = kc_record_get(g.c, g.scan);
        if (rec->cid == NULL || strstr(rec->topic, "-response") == NULL)
            continue;
        struct rq *r = cid_get(rec->cid);
        if (r == NULL)
            continue;   /* not this run's */
        g.answers++;
        char *body = rec->body != NULL ?
            json_dumps(rec->body, JSON_COMPACT | JSON_SORT_KEYS) : strdup("(undecodable)");
        assert_non_null(body);
        if (r->answers++ > 0) {
            if (strcmp(body, r->body) != 0) {
                rq_fail(r, "a repeated answer differs:\n  first %s\n  again %s", r->body, body);
                g.mismatches++;
            }
            free(body);
            continue;
        }
        r->body = body;
        if (g.users[r->user].pending == (int)(r - g.rqs))
            g.users[r->user].pending = -1;
        if (rec->body == NULL)
            rq_fail(r, "undecodable answer");
        else
            rq_answered(r, rec->body);
    }
}

/* Keeps every idle user busy for @p ms (or, with @p send false, only
 * collects answers). */
static void run_load(int ms, bool send)
{
    int64_t end = kc_now_ms() + ms;
    do {
        collect();
        for (int i = 0; send && i < g.n_users; i++)
            if (g.users[i].pending < 0)
                user_step(i);
        kc_sleep_ms(3);
    } while (kc_now_ms() < end);
}

/* Requests among the first @p n still waiting for their first answer. */
static size_t unanswered_below(size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        w += g.rqs[i].answers == 0;
    return w;
}

static size_t unanswered(void)
{
    return unanswered_below(g.n_rqs);
}

/* ------------------------------------------------------------------------ */
/* checks after the storm                                                   */
/* ------------------------------------------------------------------------ */

static json_t *call_ok(const char *op, struct cuser *u, json_t *body)
{
    json_t *r = kc_call(g.c, op, u->u.id, u->u.session, body);
    if (r == NULL || !kc_check_ok(r, u->u.id)) {
        json_decref(r);
        return NULL;
    }
    return r;
}

static void check_users(void)
{
    for (int i = 0; i < g.n_users; i++) {
        struct cuser *u = &g.users[i];
        if (!u->registered)
            continue;
        /* exists once: registering the id again is refused */
        json_t *again = kc_call(g.c, "user-add", u->u.id, NULL,
                                json_pack("{ss ss ss ss}", "userId", u->u.id, "userPw",
                                          "another-password-1", "email", "x@y",
                                          "userName", "dup"));
        assert_non_null(again);
        assert_true(kc_check_err(again, u->u.id, "ALREADY_EXISTS"));
        json_decref(again);
        /* a fresh login with its password works */
        char *s = kc_login(g.c, u->u.id, u->u.pw);
        assert_non_null(s);
        free(s);
        if (!u->logged_in)
            continue;
        json_t *r = call_ok("user-search-friend", u, json_pack("{ss}", "userId", u->u.id));
        assert_non_null(r);
        const char *expect[MAX_FRIENDS + 1];
        for (int f = 0; f < u->n_friends; f++)
            expect[f] = g.users[u->friends[f]].u.id;
        expect[u->n_friends] = NULL;
        json_t *ids = json_array();
        json_t *fr;
        size_t k;
        json_array_foreach(json_object_get(r, "friend"), k, fr)
            json_array_append_new(ids, json_string(kc_str(fr, "userId")));
        assert_true(kc_check_id_set(ids, expect, "friend list"));
        json_decref(ids);
        json_decref(r);
    }
}

static void check_room_messages(const struct croom *room, int ri)
{
    json_t *all = kc_history_all(g.c, &g.users[room->members[0]].u, room->id), *m;
    size_t k;
    assert_non_null(all);
    json_array_foreach(all, k, m) {
        /* seqs 1..n in order, and the acknowledged send with this
         * clientMsgId has this seq, writer and text */
        const char *cmid = kc_str(m, "clientMsgId"), *text = kc_str(m, "message"),
                   *writer = kc_str(m, "writerId");
        int mi = cmid != NULL && cmid[0] == 'm' ? atoi(cmid + 1) : -1;
        if (kc_int(m, "seq", -1) != (json_int_t)k + 1 || mi < 0 || (size_t)mi >= g.n_msgs ||
            g.msgs[mi].room != ri || g.msgs[mi].seq != (int64_t)k + 1 || text == NULL ||
            strcmp(text, g.msgs[mi].text) != 0 || writer == NULL ||
            strcmp(writer, g.users[g.msgs[mi].writer].u.id) != 0) {
            fprintf(stderr, "test_crash: room %s: stored %s is out of place or matches no "
                    "acknowledged send\n", room->id, kc_dumps(m));
            fail_msg("a gap, a repeat, or an unacknowledged or altered message");
        }
    }
    if (json_array_size(all) != (size_t)room->acked) {
        fprintf(stderr, "test_crash: room %s holds %zu messages, %d were acknowledged\n",
                room->id, json_array_size(all), room->acked);
        fail_msg("message count");
    }
    json_decref(all);
}

/* The rooms @p ui takes part in, as the server lists them, match the
 * acknowledged creations (members and lastSeq). Polls: a participant other
 * than the creator sees a room once its room event was sent. */
static bool rooms_match(int ui, bool report)
{
    struct cuser *u = &g.users[ui];
    json_t *r = call_ok("user-search-room", u, json_pack("{ss}", "userId", u->u.id));
    if (r == NULL)
        return false;
    json_t *list = json_object_get(r, "rooms");
    int expect = 0;
    bool ok = true;
    for (int i = 0; i < g.n_rooms; i++)
        expect += is_member(&g.rooms[i], ui);
    if ((int)json_array_size(list) != expect) {
        ok = false;
        if (report)
            fprintf(stderr, "test_crash: %s lists %zu rooms, takes part in %d: %s\n",
                    u->u.id, json_array_size(list), expect, kc_dumps(list));
    }
    json_t *e;
    size_t k;
    json_array_foreach(list, k, e) {
        const char *id = kc_str(e, "roomId");
        int ri = -1;
        for (int i = 0; id != NULL && i < g.n_rooms; i++)
            if (strcmp(g.rooms[i].id, id) == 0)
                ri = i;
        if (ri < 0 || !is_member(&g.rooms[ri], ui) ||
            kc_int(e, "lastSeq", -1) != g.rooms[ri].acked) {
            ok = false;
            if (report)
                fprintf(stderr, "test_crash: %s lists %s, which does not match\n", u->u.id,
                        kc_dumps(e));
            continue;
        }
        const char *expect_ids[ROOM_MEMBERS + 1];
        for (int m = 0; m < g.rooms[ri].n_members; m++)
            expect_ids[m] = g.users[g.rooms[ri].members[m]].u.id;
        expect_ids[g.rooms[ri].n_members] = NULL;
        if (!kc_check_id_set(json_object_get(e, "participants"), expect_ids, "participants"))
            ok = false;
    }
    json_decref(r);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* the test                                                                 */
/* ------------------------------------------------------------------------ */

static int teardown(void **state)
{
    (void)state;
    kc_client_free(g.c);
    kc_proc_free(g.srv);
    kc_proc_free(g.broker);
    for (size_t i = 0; i < g.n_rqs; i++)
        free(g.rqs[i].body);
    free(g.rqs);
    free(g.cid_index);
    free(g.msgs);
    free(g.users);
    free(g.data);
    return 0;
}

static void start_server(void)
{
    g.srv = kc_serve_start_ex("crash-serve", g.data, g.brokers, PARTITIONS, NULL, 120);
    assert_non_null(g.srv);
}

static void test_kill9_under_load(void **state)
{
    (void)state;
    int kills = env_int("KCHAT_CRASH_KILLS", 20);
    int run_ms = env_int("KCHAT_CRASH_RUN_MS", 1500);
    g.n_users = env_int("KCHAT_CRASH_USERS", 16);
    uint64_t seed = (uint64_t)env_int("KCHAT_CRASH_SEED", 0);
    if (seed == 0)
        seed = (uint64_t)kc_wall_ms() ^ (uint64_t)getpid();
    g.rng = seed | 1;
    g.run_start = kc_wall_ms();
    assert_true(g.n_users >= 2 && kills >= 1 && run_ms >= 100);
    fprintf(stderr, "test_crash: %d kills, %d users, seed %llu (KCHAT_CRASH_SEED)\n", kills,
            g.n_users, (unsigned long long)seed);

    g.users = calloc((size_t)g.n_users, sizeof(*g.users));
    assert_non_null(g.users);
    for (int i = 0; i < g.n_users; i++) {
        kc_user_init(&g.users[i].u, "cr");
        g.users[i].pending = -1;
    }
    g.broker = kc_broker_start("crash-broker", PARTITIONS);
    assert_non_null(g.broker);
    snprintf(g.brokers, sizeof(g.brokers), "%s", kc_proc_bootstrap(g.broker));
    g.data = kc_tmppath("crash-data");
    kc_rm_rf(g.data);
    start_server();
    g.c = kc_client_new(g.brokers, KC_FROM_END);
    assert_non_null(g.c);

    int64_t t0 = kc_now_ms();
    for (int k = 0; k < kills; k++) {
        run_load(100 + (int)rnd((uint32_t)run_ms), true);
        int st = 0;
        kc_proc_stop(g.srv, SIGKILL, 10, &st);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        kc_proc_free(g.srv);
        g.srv = NULL;
        /* requests keep coming while the server is down */
        run_load((int)rnd(300), true);
        start_server();
        /* the next kill comes once this incarnation has answered what was
         * waiting, so that every kill hits a server at work */
        int64_t busy_by = kc_now_ms() + 60000;
        size_t waiting = g.n_rqs;
        while (kc_now_ms() < busy_by && unanswered_below(waiting) > 0)
            run_load(20, true);
        fprintf(stderr, "test_crash: kill %d/%d at %.1f s: %zu requests, %zu unanswered\n",
                k + 1, kills, (double)(kc_now_ms() - t0) / 1000.0, g.n_rqs, unanswered());
    }
    run_load(1000, true);

    /* nothing more is sent: every request must be answered */
    int64_t deadline = kc_now_ms() + DRAIN_MS;
    while (unanswered() > 0 && kc_now_ms() < deadline)
        run_load(200, false);
    collect();
    size_t missing = unanswered();
    for (size_t i = 0; i < g.n_rqs && missing > 0; i++)
        if (g.rqs[i].answers == 0)
            fprintf(stderr, "test_crash: no answer to %s %s of %s\n", rq_topic[g.rqs[i].op],
                    g.rqs[i].cid, g.users[g.rqs[i].user].u.id);
    if (missing > 0)
        kc_proc_log_tail(g.srv, 60, stderr);
    assert_int_equal(missing, 0);
    assert_int_equal(g.failures, 0);

    size_t per_op[RQ__N] = { 0 }, repeats = 0;
    for (size_t i = 0; i < g.n_rqs; i++) {
        per_op[g.rqs[i].op]++;
        repeats += (size_t)(g.rqs[i].answers - 1);
    }
    fprintf(stderr, "test_crash: %d kills survived in %.1f s; %zu requests all answered "
            "(%zu repeated answers, all equal): %zu registrations, %zu logins, %zu follows, "
            "%zu rooms, %zu chat sends, %zu history reads, %zu room lists\n",
            kills, (double)(kc_now_ms() - t0) / 1000.0, g.n_rqs, repeats, per_op[RQ_ADD],
            per_op[RQ_LOGIN], per_op[RQ_FRIEND], per_op[RQ_ROOM], per_op[RQ_CHAT],
            per_op[RQ_HISTORY], per_op[RQ_ROOMS]);
    assert_true(per_op[RQ_CHAT] > 0 && per_op[RQ_ROOM] > 0);

    check_users();
    for (int i = 0; i < g.n_rooms; i++)
        check_room_messages(&g.rooms[i], i);
    for (int i = 0; i < g.n_users; i++) {
        if (!g.users[i].logged_in)
            continue;
        bool ok = false;
        for (int t = 0; t < 100 && !(ok = rooms_match(i, false)); t++)
            kc_sleep_ms(100);
        if (!ok)
            rooms_match(i, true);
        assert_true(ok);
    }
    assert_int_equal(g.failures, 0);
    fprintf(stderr, "test_crash: checked %d users, %d rooms, %zu acknowledged messages\n",
            g.n_users, g.n_rooms, g.n_msgs);

    assert_true(kc_proc_stop_clean(g.srv, 20));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_kill9_under_load, teardown),
    };
    return cmocka_run_group_tests_name("kill -9 under load", tests, NULL, NULL);
}
