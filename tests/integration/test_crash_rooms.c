/*
 * kchat-test: kafka (also run on real Apache Kafka by `make check-kafka`)
 * Crash test of PROTOCOL.md v1.1's room changes (§3.11-§3.13, §6, §7):
 * invites, leaves, read cursors and chat sends across shards while
 * `kchat serve` is killed with SIGKILL and restarted on its data directory,
 * once per phase; on real Kafka two nodes (with their changelogs) serve
 * the shards and the one killed is picked at random: its shards are served
 * again when it is back (or by the other node, should the group rebalance
 * first), rooms and users spread over both.
 *
 * Eight users, each a friend of every other, and four rooms (room r made by
 * user r with users r+1 and r+2). Each phase sends, without waiting, for
 * every room one change: an invite of one or two users who were never in
 * it (by a participant), or a leave (by a participant, never the last);
 * in a room with a leave, a chat send by a participant who stays; and in
 * every room a room-read by a participant who neither leaves nor writes,
 * up to the lastSeq the phase began with. Requests of one room in one phase
 * therefore commute, and the test knows each answer and the state after the
 * phase. Then a node is killed at a random moment, started again, and the
 * test checks:
 *  - every request answered, a success, with the answer the model gives
 *    (an invite's participants, a read's cursor, a send's seq);
 *  - every room's participants and cursors (room-history's reads), message
 *    count, and every user's room list (participants in order, lastSeq,
 *    readSeq, unread) exactly as the model (on several nodes within 20 s:
 *    a room of a shard the other node owns is seen through its summary);
 *    a leaver's history of the room NOT_A_MEMBER;
 *  - at the end, events: every participant got every chat event of its
 *    time in the room (an invitee from the invite on), a leaver none of a
 *    message stored after the phase of its leave, every earlier
 *    participant a `members` event naming each invitee, every leaver one
 *    naming itself, and every participant a `room` event.
 *
 * Environment: KCHAT_CRASH_ROOMS_PHASES (4; `make soak` raises it), KCHAT_CRASH_SEED.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/wait.h>
#include <cmocka.h>

#include "support/kassert.h"
#include "support/kclient.h"

#define PARTITIONS 4
#define USERS      8
#define ROOMS      4
#define MAX_REQS   16      /* of one phase: at most 3 per room */
#define ANSWER_MS  120000
#define NODES_MAX  2
#define SETTLE_MS  20000   /* several nodes: room summaries of the others' shards */

struct mroom {
    char id[65];
    int parts[USERS];          /* participants in order */
    int n_parts;
    bool ever[USERS];          /* was a participant at some time */
    int64_t last_seq;
    int64_t read[USERS];       /* cursors of the participants */
    int left_phase[USERS];     /* the phase of a user's leave; -1: none */
    int64_t left_from[USERS];  /* lastSeq when that phase began: theirs for sure */
    int64_t left_at[USERS];    /* lastSeq at the end of that phase: none after */
    int64_t joined_at[USERS];  /* lastSeq at the user's invite (0: a creator's pick) */
    unsigned told[USERS];      /* an invitee's: the participants before the invite (bits) */
};

struct preq {
    char cid[72];
    const char *op;
    int user;
    int room;
    json_t *want;              /* fields the answer must have (stolen) */
};

static struct {
    kc_proc *broker;
    kc_proc *node[NODES_MAX];
    char data[NODES_MAX][512];
    int n_nodes;
    const char *brokers;
    kc_client *c;
    kc_user u[USERS];
    struct mroom room[ROOMS];
    struct preq req[MAX_REQS];
    int n_req;
    unsigned seed;
} g;

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

static int rnd(int n)
{
    return (int)(rand_r(&g.seed) % (unsigned)n);
}

static int part_index(const struct mroom *r, int user)
{
    for (int i = 0; i < r->n_parts; i++)
        if (r->parts[i] == user)
            return i;
    return -1;
}

static json_t *parts_json(const struct mroom *r)
{
    json_t *a = json_array();
    for (int i = 0; i < r->n_parts; i++)
        json_array_append_new(a, json_string(g.u[r->parts[i]].id));
    return a;
}

static void node_start(int n)
{
    char name[32];

    snprintf(name, sizeof(name), "crash-rooms-%c", 'a' + n);
    g.node[n] = kc_serve_start_ex(name, g.data[n], g.brokers, PARTITIONS, NULL, 120);
    assert_non_null(g.node[n]);
}

/* Send a request of the phase; its answer is checked in phase_collect(). */
static void send_req(const char *op, int user, int room, json_t *body, json_t *want)
{
    struct preq *p = &g.req[g.n_req++];

    assert_true(g.n_req <= MAX_REQS);
    p->op = op;
    p->user = user;
    p->room = room;
    p->want = want;
    assert_true(kc_send_req(g.c, op, g.u[user].id, g.u[user].session, NULL, body, p->cid));
    json_decref(body);
}

/* One phase's requests, the model moved to what they make. */
static void phase_send(int phase)
{
    g.n_req = 0;
    for (int ri = 0; ri < ROOMS; ri++) {
        struct mroom *r = &g.room[ri];
        int never[USERS], n_never = 0, actor, writer = -1, reader = -1;
        bool fresh[USERS] = {false};   /* invited in this phase */
        int64_t read_to = r->last_seq;
        bool invite;

        for (int u = 0; u < USERS; u++)
            if (!r->ever[u])
                never[n_never++] = u;
        invite = n_never > 0 && (r->n_parts < 2 || rnd(2) == 0);
        actor = r->parts[rnd(r->n_parts)];
        if (invite) {
            int a = never[rnd(n_never)], b = n_never > 1 ? never[rnd(n_never)] : a;
            json_t *ids = json_pack("[s]", g.u[a].id);
            unsigned before = 0;

            for (int k = 0; k < r->n_parts; k++)
                before |= 1u << r->parts[k];

            if (b != a)
                json_array_append_new(ids, json_string(g.u[b].id));
            for (int k = 0; k < (b != a ? 2 : 1); k++) {
                int x = k == 0 ? a : b;
                r->parts[r->n_parts++] = x;
                r->ever[x] = fresh[x] = true;
                r->read[x] = r->joined_at[x] = r->last_seq;
                r->told[x] = before;
            }
            send_req("room-invite", actor, ri,
                     json_pack("{s:s, s:s, s:o}", "userId", g.u[actor].id, "roomId", r->id,
                               "friendId", ids),
                     json_pack("{s:s, s:o}", "roomId", r->id, "participants", parts_json(r)));
        } else if (r->n_parts >= 2) {
            int at = part_index(r, actor);

            memmove(&r->parts[at], &r->parts[at + 1],
                    (size_t)(r->n_parts - at - 1) * sizeof(int));
            r->n_parts--;
            r->left_phase[actor] = phase;
            r->left_from[actor] = r->last_seq;
            send_req("room-leave", actor, ri,
                     json_pack("{s:s, s:s}", "userId", g.u[actor].id, "roomId", r->id),
                     json_pack("{s:s}", "roomId", r->id));
            /* a send by one who stays (the leave and it commute) */
            writer = r->parts[rnd(r->n_parts)];
            r->last_seq++;
            r->read[writer] = r->last_seq;
            send_req("user-add-chat", writer, ri,
                     json_pack("{s:s, s:s, s:s}", "writerId", g.u[writer].id, "roomId", r->id,
                               "message", "phase message"),
                     json_pack("{s:s, s:I}", "roomId", r->id, "seq", (json_int_t)r->last_seq));
        }
        /* a read by one who neither left, wrote nor was just invited */
        for (int k = 0; k < r->n_parts && reader < 0; k++) {
            int cand = r->parts[k];
            if (cand != writer && !fresh[cand])
                reader = cand;
        }
        if (reader >= 0) {
            if (read_to > r->read[reader])
                r->read[reader] = read_to;
            send_req("room-read", reader, ri,
                     json_pack("{s:s, s:s, s:I}", "userId", g.u[reader].id, "roomId", r->id,
                               "readSeq", (json_int_t)read_to),
                     json_pack("{s:s, s:I}", "roomId", r->id, "readSeq",
                               (json_int_t)r->read[reader]));
        }
    }
}

/* Every request of the phase answered, a success with what the model says. */
static void phase_collect(void)
{
    for (int i = 0; i < g.n_req; i++) {
        struct preq *p = &g.req[i];
        const kc_record *rec = kc_wait_cid(g.c, p->op, p->cid, ANSWER_MS);
        const char *k;
        json_t *v;

        if (rec == NULL)
            fail_msg("%s by %s (cid %s): no answer in %d s", p->op, g.u[p->user].id, p->cid,
                     ANSWER_MS / 1000);
        assert_true(kc_check_ok(rec->body, g.u[p->user].id));
        json_object_foreach(p->want, k, v) {
            if (!json_equal(json_object_get(rec->body, k), v)) {
                char *got = json_dumps(rec->body, JSON_COMPACT), *want = json_dumps(p->want, 0);
                fail_msg("%s by %s: answer %s, want %s", p->op, g.u[p->user].id, got, want);
            }
        }
        json_decref(p->want);
        p->want = NULL;
    }
}

/* What user-search-room should answer @p u (a new array). */
static json_t *rooms_of(int u)
{
    json_t *want = json_array();
    int ids[ROOMS], n = 0;

    for (int ri = 0; ri < ROOMS; ri++)
        if (part_index(&g.room[ri], u) >= 0)
            ids[n++] = ri;
    for (int i = 0; i < n; i++)   /* sorted by roomId */
        for (int j = i + 1; j < n; j++)
            if (strcmp(g.room[ids[j]].id, g.room[ids[i]].id) < 0) {
                int t = ids[i];
                ids[i] = ids[j];
                ids[j] = t;
            }
    for (int i = 0; i < n; i++) {
        struct mroom *r = &g.room[ids[i]];
        json_array_append_new(want, json_pack("{s:s, s:s, s:o, s:I, s:I, s:I}", "roomId", r->id,
                                              "roomName", "", "participants", parts_json(r),
                                              "lastSeq", (json_int_t)r->last_seq,
                                              "readSeq", (json_int_t)r->read[u], "unread",
                                              (json_int_t)(r->last_seq - r->read[u])));
    }
    return want;
}

/* State after the phase: history reads and counts, room lists, leavers. */
static void check_state(void)
{
    for (int ri = 0; ri < ROOMS; ri++) {
        struct mroom *r = &g.room[ri];
        int who = r->parts[0];
        json_t *a = kc_call(g.c, "room-history", g.u[who].id, g.u[who].session,
                            json_pack("{s:s, s:s, s:i}", "userId", g.u[who].id, "roomId", r->id,
                                      "limit", 100));
        json_t *reads = json_array();
        int order[USERS], n = r->n_parts;

        assert_true(kc_check_ok(a, g.u[who].id));
        memcpy(order, r->parts, sizeof(order));
        for (int i = 0; i < n; i++)   /* sorted by userId */
            for (int j = i + 1; j < n; j++)
                if (strcmp(g.u[order[j]].id, g.u[order[i]].id) < 0) {
                    int t = order[i];
                    order[i] = order[j];
                    order[j] = t;
                }
        for (int i = 0; i < n; i++)
            json_array_append_new(reads, json_pack("{s:s, s:I}", "userId", g.u[order[i]].id,
                                                   "readSeq", (json_int_t)r->read[order[i]]));
        if (!json_equal(json_object_get(a, "reads"), reads) ||
            (int64_t)json_array_size(json_object_get(a, "messages")) != r->last_seq) {
            char *got = json_dumps(a, JSON_COMPACT), *want = json_dumps(reads, JSON_COMPACT);
            fail_msg("room %d: history %s; want reads %s and %lld messages", ri, got, want,
                     (long long)r->last_seq);
        }
        json_decref(reads);
        json_decref(a);
        for (int u = 0; u < USERS; u++)
            if (r->ever[u] && part_index(r, u) < 0) {
                a = kc_call(g.c, "room-history", g.u[u].id, g.u[u].session,
                            json_pack("{s:s, s:s}", "userId", g.u[u].id, "roomId", r->id));
                assert_true(kc_check_err(a, g.u[u].id, "NOT_A_MEMBER"));
                json_decref(a);
            }
    }
    for (int u = 0; u < USERS; u++) {
        json_t *want = rooms_of(u), *got = NULL;
        int64_t deadline = kc_now_ms() + (g.n_nodes > 1 ? SETTLE_MS : 0);

        /* one node: exact at once; several: a room of a shard another node
         * owns comes through that node's room summaries (docs/protocol.md
         * §3.8) */
        for (;;) {
            json_t *a = kc_call(g.c, "user-search-room", g.u[u].id, g.u[u].session,
                                json_pack("{s:s}", "userId", g.u[u].id));

            assert_true(kc_check_ok(a, g.u[u].id));
            json_decref(got);
            got = json_incref(json_object_get(a, "rooms"));
            json_decref(a);
            if (json_equal(got, want) || kc_now_ms() >= deadline)
                break;
            usleep(200 * 1000);
        }
        if (!json_equal(got, want)) {
            char *gs = json_dumps(got, JSON_COMPACT), *ws = json_dumps(want, JSON_COMPACT);
            fail_msg("%s's rooms: %s\nwant %s", g.u[u].id, gs, ws);
        }
        json_decref(got);
        json_decref(want);
    }
}

struct ev_match {
    const char *user, *type, *room, *named;  /* named: in added or removed */
    int64_t seq;                             /* chat: this seq; 0: any */
};

static bool names(const json_t *list, const char *id)
{
    size_t i;
    json_t *v;

    json_array_foreach(list, i, v)
        if (!strcmp(json_string_value(v), id))
            return true;
    return false;
}

static bool ev_is(const kc_record *rec, void *arg)
{
    const struct ev_match *m = arg;
    const json_t *b = rec->body;

    if (strcmp(rec->topic, "chat-events") != 0 || b == NULL ||
        rec->key_len != strlen(m->user) || memcmp(rec->key, m->user, rec->key_len) != 0)
        return false;
    if (strcmp(kc_str(b, "type") ? kc_str(b, "type") : "", m->type) != 0 ||
        strcmp(kc_str(b, "roomId") ? kc_str(b, "roomId") : "", m->room) != 0)
        return false;
    if (m->seq > 0 && json_integer_value(json_object_get(b, "seq")) != m->seq)
        return false;
    return m->named == NULL || names(json_object_get(b, "added"), m->named) ||
           names(json_object_get(b, "removed"), m->named);
}

static size_t events(const char *user, const char *type, const char *room, int64_t seq,
                     const char *named, int wait_ms)
{
    struct ev_match m = {user, type, room, named, seq};

    if (wait_ms > 0 && kc_wait_record(g.c, 0, ev_is, &m, wait_ms) == NULL)
        return 0;
    return kc_count_records(g.c, 0, ev_is, &m);
}

static void check_events(void)
{
    for (int ri = 0; ri < ROOMS; ri++) {
        struct mroom *r = &g.room[ri];

        for (int u = 0; u < USERS; u++) {
            if (!r->ever[u])
                continue;
            for (int64_t s = 1; s <= r->last_seq; s++) {
                bool member_then = s > r->joined_at[u] &&
                                   (r->left_phase[u] < 0 || s <= r->left_from[u]);
                bool leaver_after = r->left_phase[u] >= 0 && s > r->left_at[u];

                if (member_then && events(g.u[u].id, "chat", r->id, s, NULL, 20000) == 0)
                    fail_msg("%s never got message %lld of room %d", g.u[u].id, (long long)s,
                             ri);
                if (leaver_after && events(g.u[u].id, "chat", r->id, s, NULL, 0) != 0)
                    fail_msg("%s, who left room %d in phase %d, got its message %lld",
                             g.u[u].id, ri, r->left_phase[u], (long long)s);
            }
            if (events(g.u[u].id, "room", r->id, 0, NULL, 20000) == 0)
                fail_msg("%s got no room event of room %d", g.u[u].id, ri);
            for (int o = 0; o < USERS; o++)   /* those in the room when u was invited */
                if ((r->told[u] >> o & 1u) &&
                    events(g.u[o].id, "members", r->id, 0, g.u[u].id, 20000) == 0)
                    fail_msg("%s got no members event of %s's invite to room %d", g.u[o].id,
                             g.u[u].id, ri);
            if (r->left_phase[u] >= 0 &&
                events(g.u[u].id, "members", r->id, 0, g.u[u].id, 20000) == 0)
                fail_msg("%s got no members event of its leave of room %d", g.u[u].id, ri);
        }
    }
}

static void test_rooms_under_kills(void **state)
{
    int phases = env_int("KCHAT_CRASH_ROOMS_PHASES", 4);
    const char *order[USERS];

    (void)state;
    g.seed = (unsigned)env_int("KCHAT_CRASH_SEED", (int)time(NULL));
    printf("seed %u, %d phases\n", g.seed, phases);
    g.broker = kc_broker_start("crash-rooms-broker", PARTITIONS);
    assert_non_null(g.broker);
    g.brokers = kc_proc_bootstrap(g.broker);
    g.n_nodes = kc_test_brokers() != NULL ? 2 : 1;
    for (int n = 0; n < g.n_nodes; n++) {
        snprintf(g.data[n], sizeof(g.data[n]), "%s/crash-rooms-data-%c", kc_tmpdir(), 'a' + n);
        node_start(n);
    }
    assert_non_null(g.c = kc_client_new(g.brokers, KC_FROM_END));
    for (int u = 0; u < USERS; u++)
        assert_true(kc_user_new(g.c, &g.u[u], "cr"));
    for (int u = 0; u < USERS; u++) {
        int k = 0;
        for (int v = 0; v < USERS; v++)
            if (v != u)
                order[k++] = g.u[v].id;
        order[k] = NULL;
        assert_true(kc_add_friends(g.c, &g.u[u], order));
    }
    for (int ri = 0; ri < ROOMS; ri++) {
        struct mroom *r = &g.room[ri];
        const char *friends[] = {g.u[(ri + 1) % USERS].id, g.u[(ri + 2) % USERS].id, NULL};

        assert_true(kc_create_room(g.c, &g.u[ri], friends, NULL, r->id));
        r->n_parts = 3;
        for (int k = 0; k < 3; k++) {
            r->parts[k] = (ri + k) % USERS;
            r->ever[r->parts[k]] = true;
        }
        for (int u = 0; u < USERS; u++)
            r->left_phase[u] = -1;
    }
    for (int phase = 0; phase < phases; phase++) {
        int victim = rnd(g.n_nodes), st;

        phase_send(phase);
        usleep((useconds_t)rnd(400) * 1000);
        kc_proc_stop(g.node[victim], SIGKILL, 10, &st);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        kc_proc_free(g.node[victim]);
        g.node[victim] = NULL;
        node_start(victim);
        phase_collect();
        for (int ri = 0; ri < ROOMS; ri++)
            for (int u = 0; u < USERS; u++)
                if (g.room[ri].left_phase[u] == phase)
                    g.room[ri].left_at[u] = g.room[ri].last_seq;
        check_state();
        printf("phase %d: every answer and the state right after killing node %c\n", phase,
               'a' + victim);
    }
    check_events();
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < g.n_req; i++)
        json_decref(g.req[i].want);
    kc_client_free(g.c);
    for (int n = 0; n < g.n_nodes; n++)
        if (g.node[n] != NULL)
            kc_proc_stop_clean(g.node[n], 30);
    kc_proc_stop_clean(g.broker, 30);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_rooms_under_kills, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
