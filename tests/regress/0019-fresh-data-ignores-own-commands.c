/*
 * kchat-test: kafka (also run on real Apache Kafka by `make check-kafka`)
 * Regression 0019 (fixed by 3fb6c37): a fresh --data on a cluster that held
 * another data set's records took that data set's internal commands as its
 * own; they moved its per-source watermarks past its own commands, which it
 * then dropped as repeats (its cross-shard sends were never answered).
 * (Moved from tests/integration/test_fresh_data.c, the whole program.)
 *
 * A fresh data directory on a cluster that already holds another data set's
 * records (docs/design.md, "Data sets"). One broker (`kchat broker`, or the
 * real Kafka of `make check-kafka`) outlives two servers:
 *  1. `kchat serve --data D1`: users A (shard a) and B (shard b != a), a room
 *     in each shard with both in it, then ROUNDS rounds of four chat sends,
 *     two of them crossing shards (internal commands a->b and b->a); A sets
 *     its status to "away". Then SIGTERM.
 *  2. `kchat serve --data D2`, a new empty directory, on the same broker. It
 *     reads every request topic from the beginning (D1's requests are served
 *     again, as requests sent before a first start must be) and
 *     kchat-internal and kchat-directory too. New users A2 (shard a) and
 *     B2 (shard b) make rooms across the shards and chat both ways.
 * Checks: every D2 request is answered with success (before data sets, D1's
 * commands had moved the "applied seq per source shard" watermarks past
 * D2's own seqs, so D2's cross-shard commands were dropped as duplicates and
 * their answers and room events never came); every participant gets its
 * room event and sees both rooms; history holds the messages; none of D1's
 * chat commands is applied by D2 (it would answer them ROOM_NOT_FOUND, the
 * rooms being D1's); D2's directory shows A as D2 has it (status ""), not as
 * D1 published it ("away").
 *
 * Both servers run with --changelog off. With the changelog (the default on
 * a cluster since issue 11) a fresh data directory does not start a data
 * set of its own: it restores D1's shards from kchat-changelog and goes on
 * as D1 (tests/integration/test_changelog.c). Data sets still keep apart
 * what deployments without a changelog, or from before it, wrote.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "support/kassert.h"
#include "support/kclient.h"

#define PARTITIONS 4
#define ROUNDS     20      /* D1 rounds of four chat sends */

/* each data directory its own data set: no changelog to restore from */
static const char *const no_changelog[] = {"--changelog", "off", NULL};

/* what the test started, so that a failed assertion still cleans up */
static kc_client *g_client;
static kc_proc *g_srv, *g_broker;

static int test_teardown(void **state)
{
    (void)state;
    kc_client_free(g_client);
    g_client = NULL;
    kc_proc_free(g_srv);
    g_srv = NULL;
    kc_proc_free(g_broker);
    g_broker = NULL;
    return 0;
}

/* Register and log in a new user whose id lives in shard @p shard. */
static void user_in_shard(kc_client *c, kc_user *u, const char *tag, int shard)
{
    for (int i = 0; i < 400; i++) {
        kc_user_init(u, tag);
        if (kc_partition_for(u->id, PARTITIONS) == shard)
            break;
    }
    assert_int_equal(kc_partition_for(u->id, PARTITIONS), shard);
    assert_true(kc_user_register(c, u));
    assert_true(kc_user_login(c, u));
}

/* @p w writes to @p room; the answer must be a success. Its cid goes to
 * @p cid_out (size >= 72) when not NULL. Returns the seq. */
static int64_t chat(kc_client *c, const kc_user *w, const char *room, const char *text,
                    char *cid_out)
{
    json_t *body = json_pack("{ss ss ss}", "roomId", room, "writerId", w->id, "message", text);
    kc_req req = { .op = "user-add-chat", .key = w->id, .session = w->session, .body = body };
    json_t *r = kc_call_req(c, &req, NULL, cid_out);
    json_decref(body);
    bool ok = kc_check_ok(r, w->id);
    int64_t seq = kc_int(r, "seq", -1);
    json_decref(r);
    assert_true(ok);
    assert_true(seq >= 1);
    return seq;
}

/* @p u's user-search-room lists @p room_a and @p room_b. */
static void sees_rooms(kc_client *c, const kc_user *u, const char *room_a, const char *room_b)
{
    json_t *r = kc_call(c, "user-search-room", u->id, u->session,
                        json_pack("{ss}", "userId", u->id));
    assert_true(kc_check_ok(r, u->id));
    json_t *rooms = json_object_get(r, "rooms"), *ids = json_array();
    for (size_t i = 0; i < json_array_size(rooms); i++)
        json_array_append(ids, json_object_get(json_array_get(rooms, i), "roomId"));
    const char *want[] = { room_a, room_b, NULL };
    bool ok = kc_check_id_set(ids, want, "rooms after the fresh start");
    json_decref(ids);
    json_decref(r);
    assert_true(ok);
}

/* The room event of @p room reaches @p u. */
static void gets_room_event(kc_client *c, const kc_user *u, const char *room)
{
    json_t *ev = kc_wait_events(c, u->id, "room", room, 1, KC_CALL_TIMEOUT_MS);
    if (json_array_size(ev) != 1)
        fprintf(stderr, "%s got no room event for %s\n", u->id, room);
    assert_int_equal(json_array_size(ev), 1);
    json_decref(ev);
}

struct cid_err {
    const char *cid;
    const char *code;
};

static bool is_cid_err(const kc_record *r, void *arg)
{
    const struct cid_err *ce = arg;
    const char *code = r->body ? json_string_value(json_object_get(r->body, "errorCode")) : NULL;
    return r->cid != NULL && !strcmp(r->cid, ce->cid) && code != NULL && !strcmp(code, ce->code);
}

static void test_fresh_data_dir_on_used_cluster(void **state)
{
    (void)state;
    kc_proc *broker = g_broker = kc_broker_start("fresh-broker", PARTITIONS);
    assert_non_null(broker);
    char brokers[1024];
    snprintf(brokers, sizeof(brokers), "%s", kc_proc_bootstrap(broker));
    char *d1 = kc_tmppath("data-d1"), *d2 = kc_tmppath("data-d2");
    kc_rm_rf(d1);
    kc_rm_rf(d2);

    /* ---- 1. the first data set ---- */
    kc_proc *srv = g_srv = kc_serve_start("serve-d1", d1, brokers, PARTITIONS, no_changelog);
    assert_non_null(srv);
    kc_client *c = g_client = kc_client_new(brokers, KC_FROM_END);
    assert_non_null(c);
    kc_user a, b;
    user_in_shard(c, &a, "fa", 0);
    user_in_shard(c, &b, "fb", 1);
    const char *fa[] = { b.id, NULL }, *fb[] = { a.id, NULL };
    assert_true(kc_add_friends(c, &a, fa));
    assert_true(kc_add_friends(c, &b, fb));
    char room_a[65], room_b[65];
    assert_true(kc_create_room(c, &a, fa, "in shard a", room_a));
    assert_true(kc_create_room(c, &b, fb, "in shard b", room_b));
    /* the cids of D1's chat sends that crossed shards (internal commands) */
    static char cross[2 * ROUNDS][72];
    char text[64];
    for (int i = 0; i < ROUNDS; i++) {
        snprintf(text, sizeof(text), "d1 round %d", i);
        chat(c, &a, room_a, text, NULL);
        chat(c, &b, room_a, text, cross[2 * i]);       /* b -> a */
        chat(c, &a, room_b, text, cross[2 * i + 1]);   /* a -> b */
        chat(c, &b, room_b, text, NULL);
    }
    KC_EXPECT_OK(kc_call(c, "user-status-change", a.id, a.session,
                         json_pack("{ss ss}", "userId", a.id, "userStatus", "away")), a.id);
    int status = -1;
    assert_int_equal(kc_proc_stop(srv, SIGTERM, 30, &status), 0);
    if (status != 0)
        fprintf(stderr, "serve-d1 ended with %s\n", kc_status_str(status));
    assert_int_equal(status, 0);
    kc_proc_free(srv);
    g_srv = NULL;

    /* ---- 2. a fresh data directory on the same cluster ---- */
    srv = g_srv = kc_serve_start_ex("serve-d2", d2, brokers, PARTITIONS, no_changelog, 90);
    assert_non_null(srv);
    kc_user a2, b2;
    user_in_shard(c, &a2, "fa2", 0);
    user_in_shard(c, &b2, "fb2", 1);
    const char *fa2[] = { b2.id, NULL }, *fb2[] = { a2.id, NULL };
    assert_true(kc_add_friends(c, &a2, fa2));
    assert_true(kc_add_friends(c, &b2, fb2));
    char room_a2[65], room_b2[65];
    assert_true(kc_create_room(c, &a2, fa2, "fresh in shard a", room_a2));   /* member a -> b */
    assert_true(kc_create_room(c, &b2, fb2, "fresh in shard b", room_b2));   /* member b -> a */
    gets_room_event(c, &b2, room_a2);
    gets_room_event(c, &a2, room_b2);
    for (int i = 0; i < 3; i++) {
        snprintf(text, sizeof(text), "d2 round %d", i);
        assert_int_equal(chat(c, &b2, room_a2, text, NULL), 1 + 2 * i);   /* b -> a */
        assert_int_equal(chat(c, &a2, room_a2, text, NULL), 2 + 2 * i);
        assert_int_equal(chat(c, &a2, room_b2, text, NULL), 1 + 2 * i);   /* a -> b */
        assert_int_equal(chat(c, &b2, room_b2, text, NULL), 2 + 2 * i);
    }
    sees_rooms(c, &a2, room_a2, room_b2);
    sees_rooms(c, &b2, room_a2, room_b2);
    json_t *h = kc_call(c, "room-history", b2.id, b2.session,
                        json_pack("{ss ss}", "userId", b2.id, "roomId", room_a2));
    assert_true(kc_check_ok(h, b2.id));
    json_t *msgs = json_object_get(h, "messages");
    assert_int_equal(json_array_size(msgs), 6);
    for (size_t i = 0; i < 6; i++)
        KC_ASSERT_INT(json_array_get(msgs, i), "seq", (json_int_t)i + 1);
    json_decref(h);

    /* D1's commands were read by D2 before its own in the same partitions
     * of kchat-internal (a and b): none of them was applied. */
    for (int i = 0; i < 2 * ROUNDS; i++) {
        struct cid_err ce = { cross[i], "ROOM_NOT_FOUND" };
        size_t n = kc_count_records(c, 0, is_cid_err, &ce);
        if (n != 0)
            fprintf(stderr, "D1's chat command %s was applied by D2 (%zu answers "
                    "ROOM_NOT_FOUND)\n", cross[i], n);
        assert_int_equal(n, 0);
    }
    /* D2's directory holds A as D2 has it: A's status change in D1 was
     * answered UNAUTHENTICATED by D2 (D1's session), so A's status is "". */
    const char *fa_old[] = { a.id, NULL };
    assert_true(kc_add_friends(c, &b2, fa_old));
    for (int i = 0; i < 10; i++) {
        json_t *r = kc_call(c, "user-search-friend", b2.id, b2.session,
                            json_pack("{ss}", "userId", b2.id));
        assert_true(kc_check_ok(r, b2.id));
        json_t *fr = json_object_get(r, "friend");
        bool seen = false;
        for (size_t k = 0; k < json_array_size(fr); k++) {
            json_t *f = json_array_get(fr, k);
            if (kc_str(f, "userId") != NULL && !strcmp(kc_str(f, "userId"), a.id)) {
                seen = true;
                KC_ASSERT_STR(f, "userStatus", "");
            }
        }
        json_decref(r);
        assert_true(seen);
        kc_sleep_ms(100);
    }

    assert_int_equal(kc_proc_stop(srv, SIGTERM, 30, &status), 0);
    if (status != 0)
        fprintf(stderr, "serve-d2 ended with %s\n", kc_status_str(status));
    assert_int_equal(status, 0);
    free(d1);
    free(d2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_fresh_data_dir_on_used_cluster, test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
