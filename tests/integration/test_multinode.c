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
 * nd_check_world() asks, within bounded waits (the world, the stream and
 * the checks are tests/support/nodes.h's, shared with test_paused.c):
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
 *    rooms, chat, history, room lists) and their errors, then the checks;
 *    and that both nodes' shards commit without fsync (three replicas of
 *    kchat-changelog: `--shard-sync auto`), as in every test here.
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
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "support/kassert.h"
#include "support/kclient.h"
#include "support/nodes.h"


/* ------------------------------------------------------------------------ */
/* test_two_nodes_every_operation                                           */
/* ------------------------------------------------------------------------ */

/* Register again, wrong password, a second session and its logout, for
 * users of every shard. */
static void accounts_errors_and_logout(struct nd_world *w)
{
    for (int i = 0; i < ND_USERS; i++) {
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
static void friend_and_room_errors(struct nd_world *w, kc_user *outsider)
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
    KC_EXPECT_ERR(nd_call_until_known(w, "user-add-room", 0,
                                   json_pack("{ss s[s]}", "userId", w->u[0].id, "friendId",
                                             outsider->id)),
                  w->u[0].id, "NOT_A_FRIEND");
}

/* A room id that hashes to @p shard and names no room. */
static void unknown_room(int shard, char *out, size_t size)
{
    for (unsigned n = 0;; n++) {
        snprintf(out, size, "rnosuchroom%05u", n);
        if (kc_partition_for(out, ND_PARTITIONS) == shard)
            return;
    }
}

/* Chat and history errors, for rooms on every shard. */
static void chat_errors(struct nd_world *w, const kc_user *outsider)
{
    for (int r = 0; r < ND_ROOMS; r++) {
        char nosuch[40];
        unknown_room(r, nosuch, sizeof(nosuch));
        int writer = (r + 2) % ND_USERS;
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
static void chat_rounds(struct nd_world *w)
{
    int64_t next[ND_ROOMS] = {1, 1, 1, 1};
    for (int round = 0; round < 2; round++)
        for (int r = 0; r < ND_ROOMS; r++)
            for (int u = 0; u < ND_USERS; u++)
                assert_int_equal(nd_chat_sync(w, u, r), next[r]++);
    /* the same (writer, room, clientMsgId) again: nothing new, the first seq */
    const struct nd_req *first = &w->send[5];
    char cmid[32], text[96];
    nd_chat_cmid(5, cmid, sizeof(cmid));
    nd_chat_text(w, 5, text, sizeof(text));
    json_t *r = kc_call(w->c, "user-add-chat", w->u[first->user].id, w->u[first->user].session,
                        json_pack("{ss ss ss ss}", "roomId", w->room[first->room], "writerId",
                                  w->u[first->user].id, "message", text, "clientMsgId", cmid));
    assert_true(kc_check_ok(r, w->u[first->user].id));
    KC_ASSERT_INT(r, "seq", first->seq);
    json_decref(r);
}

/* room-history with a limit and beforeSeq: the newest of those before. */
static void history_page(struct nd_world *w)
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
    nd_case("ops");
    struct nd_world *w = nd_world_begin("ops", 2);
    nd_users_add(w);
    nd_phase("users");
    accounts_errors_and_logout(w);
    nd_phase("account errors");
    nd_statuses_set(w);
    nd_friends_add(w);
    nd_phase("statuses and friends");
    nd_rooms_add(w);
    nd_rooms_wait_visible(w);
    nd_phase("rooms");
    kc_user_init(&outsider, "out");
    assert_true(kc_user_register(w->c, &outsider));
    assert_true(kc_user_login(w->c, &outsider));
    friend_and_room_errors(w, &outsider);
    chat_errors(w, &outsider);
    nd_phase("errors");
    chat_rounds(w);
    history_page(w);
    nd_phase("chat rounds");
    nd_check_world(w, "two nodes, every operation");
    /* --shard-sync auto on three brokers: kchat-changelog has three
     * replicas, so shards commit without fsync (docs/design.md, "No fsync
     * with a changelog on Kafka") through everything above */
    for (int k = 0; k < 2; k++)
        assert_true(kc_file_contains(kc_proc_log(nd_node(k)), "kchat-changelog has 3 replicas: "
                                     "shards commit with no fsync", 59));
}

/* ------------------------------------------------------------------------ */
/* test_kill9_handover                                                      */
/* ------------------------------------------------------------------------ */

/* Per shard, the first answer to one of its probes after @p kill_ms: the
 * largest of those is the hand-over time of the killed node's shards. */
static void handover_report(struct nd_world *w, int64_t kill_ms)
{
    int64_t worst = 0;
    bool all = true;
    for (int shard = 0; shard < ND_PARTITIONS; shard++) {
        int64_t first = -1, first_ok = -1;
        for (int i = 0; i < w->nprobe; i++) {
            const struct nd_req *q = &w->probe[i];
            if (q->user % ND_PARTITIONS != shard || !q->answered || q->answer_ms < kill_ms)
                continue;
            if (first < 0 || q->answer_ms < first)
                first = q->answer_ms;
            if (q->ok && (first_ok < 0 || q->answer_ms < first_ok))
                first_ok = q->answer_ms;
        }
        fprintf(stderr, "%s: shard %d: first answer %lld ms after the kill, first success "
                "%lld ms\n", nd_case_name(), shard, first < 0 ? -1LL : (long long)(first - kill_ms),
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
    nd_case("kill9");
    struct nd_world *w = nd_world_begin("kill9", 2);
    nd_world_setup(w);
    nd_stream_start(w, 200);
    nd_stream_wait(80);
    int64_t kill_ms = nd_node_kill(1);
    nd_stream_wait(200);
    nd_stream_end();
    nd_drain(w, ND_DRAIN_MS);
    handover_report(w, kill_ms);
    nd_check_world(w, "after kill -9 of node b");

    nd_node_start(1, false);
    nd_stream_start(w, 40);
    nd_stream_wait(40);
    nd_stream_end();
    nd_check_world(w, "after node b came back on its old data directory");
}

/* ------------------------------------------------------------------------ */
/* test_fresh_node_joins                                                    */
/* ------------------------------------------------------------------------ */

static void test_fresh_node_joins(void **state)
{
    (void)state;
    nd_case("fresh");
    struct nd_world *w = nd_world_begin("fresh", 2);
    nd_world_setup(w);

    nd_stream_start(w, 600);
    nd_stream_wait(30);
    nd_node_start(2, true);   /* node c, empty data directory, joins under load */
    nd_stream_wait(nd_stream_done() + 30);
    nd_stream_end();
    nd_check_world(w, "after node c joined with an empty data directory");

    nd_stream_start(w, 600);
    nd_stream_wait(30);
    nd_node_kill(1);
    kc_rm_rf(nd_node_data(1));   /* node b's data directory is lost while it is down */
    /* 10 s: past the session timeout (6 s), so a and c take b's shards */
    nd_stream_wait(nd_stream_done() + 100);
    nd_node_start(1, false);
    nd_stream_wait(nd_stream_done() + 30);
    nd_stream_end();
    nd_check_world(w, "after node b came back with its data directory deleted");
}

/* ------------------------------------------------------------------------ */
/* test_sigterm_and_rolling_restart                                         */
/* ------------------------------------------------------------------------ */

static void test_sigterm_and_rolling_restart(void **state)
{
    (void)state;
    nd_case("rolling");
    struct nd_world *w = nd_world_begin("rolling", 2);
    nd_world_setup(w);

    nd_stream_start(w, 600);
    nd_stream_wait(40);
    nd_node_term(1);
    nd_stream_wait(nd_stream_done() + 30);
    nd_node_start(1, false);
    nd_stream_wait(nd_stream_done() + 30);
    nd_stream_end();
    nd_check_world(w, "after SIGTERM of node b and its restart");

    nd_stream_start(w, 900);
    nd_stream_wait(20);
    for (int k = 0; k < 2; k++) {
        nd_node_term(k);
        nd_node_start(k, false);
        nd_stream_wait(nd_stream_done() + 30);
    }
    nd_stream_end();
    nd_check_world(w, "after a rolling restart of both nodes");
}

int main(void)
{
    /* KCHAT_TEST_FILTER=test_kill9* runs only the matching cases */
    const char *filter = getenv("KCHAT_TEST_FILTER");
    if (filter != NULL && filter[0] != '\0')
        cmocka_set_test_filter(filter);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_nodes_every_operation, nd_setup, nd_teardown),
        cmocka_unit_test_setup_teardown(test_kill9_handover, nd_setup, nd_teardown),
        cmocka_unit_test_setup_teardown(test_fresh_node_joins, nd_setup, nd_teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_and_rolling_restart, nd_setup, nd_teardown),
    };
    if (kc_test_brokers() == NULL) {
        fprintf(stderr, "test_multinode runs on real Kafka only: make check-kafka sets "
                "KCHAT_TEST_BROKERS\n");
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
