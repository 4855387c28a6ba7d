/*
 * test_gw_v11: PROTOCOL.md v1.1 end to end through the gateway, on `kchat
 * dev` (backend and gateway in one process, an embedded broker):
 *
 *  - presence: when alice follows bob, alice's event stream gets a
 *    `presence` event (online: true) within 5 s of bob's stream opening,
 *    and one (online: false, lastSeen the time bob's last stream closed,
 *    within 1 s) after it closes, within PROTOCOL.md's 20 s; GET
 *    /api/friends then says the same;
 *  - the routes of operations 11-13: read moves the cursor (capped at the
 *    room's lastSeq, a negative readSeq is 400), NOT_A_MEMBER (403) before
 *    an invite and after a leave, the invite's participants, an invitee
 *    already in, ROOM_NOT_FOUND (404).
 *
 * The gateway's side alone: test_gw_presence.c (the kchat-presence
 * records), test_gw_rooms.c (the routes, with the test as the backend).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "support/http.h"
#include "support/kassert.h"
#include "support/kclient.h"
#include "support/raw.h"

#define CHECK KC_CHECK

static kc_proc *g_dev;
static char g_base[256];

static int group_setup(void **state)
{
    int port = 0;
    (void)state;
    g_dev = kr_dev_start("gw-v11-dev", NULL, g_base, sizeof(g_base), &port);
    return g_dev != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    return kr_dev_stop(g_dev);
}

/* An event stream of @p u. */
static kh_sse *open_stream(kr_user *u)
{
    kh_sse *s = kh_sse_open(&u->b, "/api/events", NULL, 10000);
    CHECK(kh_sse_status(s) == 200, "stream of %s: %ld", u->u.id, kh_sse_status(s));
    return s;
}

/* Close @p s; *@p before / *@p after the wall clock around it. */
static void close_stream(kh_sse *s, int64_t *before, int64_t *after)
{
    int64_t b = kc_wall_ms();
    kh_sse_close(s);
    if (before)
        *before = b;
    if (after)
        *after = kc_wall_ms();
}

typedef struct want_presence {
    const char *friend_id;
    bool online;
} want_presence;

static bool is_presence_of(const kh_event *e, void *arg)
{
    const want_presence *w = arg;
    return !strcmp(e->event, "presence") && e->json != NULL &&
           kc_str(e->json, "friendId") != NULL && !strcmp(kc_str(e->json, "friendId"), w->friend_id) &&
           json_is_boolean(json_object_get(e->json, "online")) &&
           json_is_true(json_object_get(e->json, "online")) == w->online;
}

/* @p u's call; its status must be @p want. */
static kh_resp *call(kr_user *u, const char *method, const char *path, json_t *body, long want)
{
    kh_resp *r = kh_do(&u->b, method, path, body);
    if (r->status != want)
        kh_resp_dump(r, "unexpected status");
    CHECK(r->status == want, "%s %s by %s: %ld, want %ld", method, path, u->u.id, r->status,
          want);
    return r;
}

/* alice follows bob: bob's stream opening and closing reach alice's stream */
static void test_followers_see_presence(void **state)
{
    (void)state;
    kr_user a, b;
    kr_user_new(&a, "pfa", g_base);
    kr_user_new(&b, "pfb", g_base);

    kh_resp_free(call(&a, "POST", "/api/friends", json_pack("{s:[s]}", "friendId", b.u.id), 200));
    kh_sse *sa = open_stream(&a);
    int64_t t0 = kc_now_ms();
    kh_sse *sb = open_stream(&b);
    want_presence on = { b.u.id, true }, off = { b.u.id, false };
    const kh_event *e = kh_sse_wait(sa, 0, is_presence_of, &on, 10000);
    if (e == NULL)
        kh_sse_dump(sa, "no presence event");
    CHECK(e != NULL, "%s's stream got no online presence of %s", a.u.id, b.u.id);
    CHECK(e->at_ms - t0 <= 5000, "online presence %lld ms after the stream opened",
          (long long)(e->at_ms - t0));
    KC_ASSERT_STR(e->json, "userId", a.u.id);

    int64_t c0, c1;
    size_t n = kh_sse_count(sa);
    close_stream(sb, &c0, &c1);
    e = kh_sse_wait(sa, n, is_presence_of, &off, 25000);
    if (e == NULL)
        kh_sse_dump(sa, "no offline presence event");
    CHECK(e != NULL, "%s's stream got no offline presence of %s", a.u.id, b.u.id);
    const char *seen = kc_str(e->json, "lastSeen");
    int64_t last = seen ? kc_iso_to_ms(seen) : -1;
    CHECK(last >= c0 - 1000 && last <= c1 + 1000, "lastSeen %s, closed in [%lld, %lld]",
          seen ? seen : "(none)", (long long)c0, (long long)c1);

    /* GET /api/friends says so too */
    kh_resp *r = call(&a, "GET", "/api/friends", NULL, 200);
    json_t *f = json_array_get(json_object_get(r->json, "friend"), 0);
    CHECK(f != NULL && json_is_false(json_object_get(f, "online")) &&
          kc_str(f, "lastSeen") && !strcmp(kc_str(f, "lastSeen"), seen),
          "friends of %s: %s", a.u.id, r->body);
    kh_resp_free(r);
    close_stream(sa, NULL, NULL);
}

/* the v1.1 routes through the gateway to the backend */
static void test_rooms_v11_end_to_end(void **state)
{
    (void)state;
    kr_user a, b, c;
    char path[256];
    kr_user_new(&a, "pva", g_base);
    kr_user_new(&b, "pvb", g_base);
    kr_user_new(&c, "pvc", g_base);

    kh_resp_free(call(&a, "POST", "/api/friends",
                      json_pack("{s:[s,s]}", "friendId", b.u.id, c.u.id), 200));
    kh_resp *r = call(&a, "POST", "/api/rooms", json_pack("{s:[s]}", "friendId", b.u.id), 201);
    char room[72];
    snprintf(room, sizeof(room), "%s", kc_str(r->json, "roomId"));
    kh_resp_free(r);
    snprintf(path, sizeof(path), "/api/rooms/%s/messages", room);
    kh_resp_free(call(&a, "POST", path, json_pack("{s:s}", "message", "one"), 201));
    kh_resp_free(call(&a, "POST", path, json_pack("{s:s}", "message", "two"), 201));

    snprintf(path, sizeof(path), "/api/rooms/%s/read", room);
    r = call(&b, "POST", path, json_pack("{s:i}", "readSeq", 1), 200);
    KC_ASSERT_STR(r->json, "roomId", room);
    KC_ASSERT_INT(r->json, "readSeq", 1);
    kh_resp_free(r);
    r = call(&b, "POST", path, json_pack("{s:i}", "readSeq", 99), 200);   /* capped */
    KC_ASSERT_INT(r->json, "readSeq", 2);
    kh_resp_free(r);
    r = call(&b, "POST", path, json_pack("{s:i}", "readSeq", -1), 400);
    kh_resp_free(r);
    r = call(&c, "POST", path, json_pack("{s:i}", "readSeq", 1), 403);  /* not a member yet */
    KC_ASSERT_STR(r->json, "errorCode", "NOT_A_MEMBER");
    kh_resp_free(r);

    snprintf(path, sizeof(path), "/api/rooms/%s/members", room);
    r = call(&a, "POST", path, json_pack("{s:[s]}", "friendId", c.u.id), 200);
    json_t *parts = json_object_get(r->json, "participants");
    CHECK(json_array_size(parts) == 3, "participants after the invite: %s", r->body);
    kh_resp_free(r);
    r = call(&b, "POST", path, json_pack("{s:[s]}", "friendId", a.u.id), 200);   /* already in */
    kh_resp_free(r);

    snprintf(path, sizeof(path), "/api/rooms/%s/members/me", room);
    r = call(&b, "DELETE", path, NULL, 200);
    KC_ASSERT_STR(r->json, "roomId", room);
    kh_resp_free(r);
    r = call(&b, "DELETE", path, NULL, 403);
    KC_ASSERT_STR(r->json, "errorCode", "NOT_A_MEMBER");
    kh_resp_free(r);
    snprintf(path, sizeof(path), "/api/rooms/%s/read", room);
    r = call(&b, "POST", path, json_pack("{s:i}", "readSeq", 1), 403);
    kh_resp_free(r);
    r = call(&a, "POST", "/api/rooms/rnosuchroom0000000/read", json_pack("{s:i}", "readSeq", 1),
             404);
    KC_ASSERT_STR(r->json, "errorCode", "ROOM_NOT_FOUND");
    kh_resp_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_followers_see_presence),
        cmocka_unit_test(test_rooms_v11_end_to_end),
    };
    return cmocka_run_group_tests_name("gw_v11", tests, group_setup, group_teardown);
}
