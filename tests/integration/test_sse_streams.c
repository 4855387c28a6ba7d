/*
 * test_sse_streams: the gateway's bookkeeping of event streams, on `kchat
 * dev` started with --sse-max-per-user 3 --sse-max-total 8:
 *
 *  - the caps: a user's fourth stream is 429 TOO_MANY_STREAMS while other
 *    users still open theirs; the ninth stream in all is 429 too; once one
 *    closes, the next opens;
 *  - delivery by recipient: a chat message reaches every stream of each
 *    member of the room once and no stream of anyone else;
 *  - a logout ends the streams of that session only: the user's stream of
 *    another session keeps receiving.
 *
 * The gateway finds a user's streams through a table keyed by a hash of
 * the user id (sse.c); these are the behaviours it must keep.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "support/http.h"
#include "support/kassert.h"
#include "support/kclient.h"
#include "support/raw.h"

#define CHECK KC_CHECK
#define PER_USER 3
#define TOTAL 8
#define WAIT_MS 10000

static kc_proc *g_dev;
static char g_base[256];

static int group_setup(void **state)
{
    static const char *const extra[] = {"--sse-max-per-user", "3", "--sse-max-total", "8", NULL};
    int port = 0;

    (void)state;
    g_dev = kr_dev_start("sse-streams-dev", extra, g_base, sizeof(g_base), &port);
    return g_dev != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    return kr_dev_stop(g_dev);
}

/* A second session of @p u, in browser @p b. */
static void login_again(const kr_user *u, kh_browser *b, const char *name)
{
    kh_browser_init(b, name, g_base);
    kh_resp *r = kh_do(b, "POST", "/api/login",
                       json_pack("{ss ss}", "userId", u->u.id, "userPw", u->u.pw));
    CHECK(r->status == 200, "second login of %s: %ld", u->u.id, r->status);
    kh_resp_free(r);
}

/* An event stream of browser @p b that must open. */
static kh_sse *open_ok(const kh_browser *b)
{
    kh_sse *s = kh_sse_open(b, "/api/events", NULL, 10000);
    if (kh_sse_status(s) != 200)
        kh_sse_dump(s, "stream did not open");
    CHECK(kh_sse_status(s) == 200, "stream of %s: %ld", b->name, kh_sse_status(s));
    return s;
}

/* An event stream of @p b that must be refused 429 TOO_MANY_STREAMS. */
static void open_refused(const kh_browser *b, const char *why)
{
    kh_sse *s = kh_sse_open(b, "/api/events", NULL, 10000);
    for (int i = 0; i < WAIT_MS / 20 && !kh_sse_ended(s); i++)
        usleep(20 * 1000);   /* the whole body */
    json_t *body = kh_sse_error_body(s);
    const char *code = body ? kc_str(body, "errorCode") : NULL;

    if (kh_sse_status(s) != 429)
        kh_sse_dump(s, why);
    CHECK(kh_sse_status(s) == 429, "%s: status %ld, want 429", why, kh_sse_status(s));
    CHECK(code != NULL && !strcmp(code, "TOO_MANY_STREAMS"), "%s: errorCode %s", why,
          code ? code : "(none)");
    json_decref(body);
    kh_sse_close(s);
}

/* Wait until the gateway counts @p n open streams. */
static void wait_streams(int n)
{
    double v = -1;

    for (int i = 0; i < WAIT_MS / 50; i++) {
        if (kh_metric(g_base, "kchat_gateway_sse_streams", &v) && (int)v == n)
            return;
        usleep(50 * 1000);
    }
    CHECK(false, "the gateway counts %.0f open streams, want %d", v, n);
}

static void close_all(kh_sse **s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != NULL)
            kh_sse_close(s[i]);
}

static void test_caps(void **state)
{
    (void)state;
    kr_user a, b, c;
    kh_sse *sa[PER_USER], *sb[PER_USER], *sc[3] = {NULL, NULL, NULL};

    kr_user_new(&a, "capa", g_base);
    kr_user_new(&b, "capb", g_base);
    kr_user_new(&c, "capc", g_base);
    for (int i = 0; i < PER_USER; i++)
        sa[i] = open_ok(&a.b);
    open_refused(&a.b, "a fourth stream of one user");
    for (int i = 0; i < PER_USER; i++)
        sb[i] = open_ok(&b.b);   /* another user is not held back by a's streams */
    sc[0] = open_ok(&c.b);
    sc[1] = open_ok(&c.b);
    wait_streams(TOTAL);
    open_refused(&c.b, "a ninth stream in all");

    kh_sse_close(sa[0]);
    sa[0] = NULL;
    wait_streams(TOTAL - 1);
    sc[2] = open_ok(&c.b);       /* the total has room again */
    open_refused(&a.b, "a ninth stream in all, a's third");

    close_all(sa, PER_USER);
    close_all(sb, PER_USER);
    close_all(sc, 3);
    wait_streams(0);
}

/* Each stream of @p want gets the message once. */
static void expect_once(kh_sse **want, size_t n, const char *text)
{
    for (size_t i = 0; i < n; i++) {
        const kh_event *e = kh_sse_wait(want[i], 0, kh_is_chat, (void *)text, WAIT_MS);
        if (e == NULL)
            kh_sse_dump(want[i], "no chat event");
        CHECK(e != NULL, "stream %zu got no chat event \"%s\"", i, text);
    }
    usleep(300 * 1000);   /* a repeat would come right behind */
    for (size_t i = 0; i < n; i++)
        CHECK(kh_sse_chats(want[i], text) == 1, "stream %zu got \"%s\" %d times", i, text,
              kh_sse_chats(want[i], text));
}

static void test_delivery_by_recipient(void **state)
{
    (void)state;
    kr_user a, b, c;
    kh_browser b2;
    char room[72], path[256];

    kr_user_new(&a, "dla", g_base);
    kr_user_new(&b, "dlb", g_base);
    kr_user_new(&c, "dlc", g_base);
    login_again(&b, &b2, "dlb-second");

    kr_room_of_two(&a, &b, room, sizeof(room));
    kh_resp *r;
    snprintf(path, sizeof(path), "/api/rooms/%s/messages", room);

    kh_sse *members[] = {open_ok(&a.b), open_ok(&a.b), open_ok(&b.b), open_ok(&b2)};
    kh_sse *others[] = {open_ok(&c.b), open_ok(&c.b)};
    wait_streams(6);

    r = kh_do(&a.b, "POST", path, json_pack("{s:s}", "message", "to both, every stream"));
    CHECK(r->status == 201, "send: %ld", r->status);
    kh_resp_free(r);
    expect_once(members, 4, "to both, every stream");
    for (size_t i = 0; i < 2; i++)
        CHECK(kh_sse_chats(others[i], "to both, every stream") == 0,
              "a stream of %s, in no room, got the message", c.u.id);

    /* b's first session logs out: its stream ends, the second's stays */
    r = kh_do(&b.b, "POST", "/api/logout", NULL);
    CHECK(r->status == 200, "logout: %ld", r->status);
    kh_resp_free(r);
    for (int i = 0; i < WAIT_MS / 50 && !kh_sse_ended(members[2]); i++)
        usleep(50 * 1000);
    CHECK(kh_sse_ended(members[2]), "the logged-out session's stream is still open");
    wait_streams(5);
    CHECK(!kh_sse_ended(members[3]), "the other session's stream ended too");
    r = kh_do(&a.b, "POST", path, json_pack("{s:s}", "message", "after the logout"));
    CHECK(r->status == 201, "send: %ld", r->status);
    kh_resp_free(r);
    kh_sse *still[] = {members[0], members[1], members[3]};
    expect_once(still, 3, "after the logout");
    CHECK(kh_sse_chats(members[2], "after the logout") == 0, "an ended stream got a message");

    close_all(members, 4);
    close_all(others, 2);
    wait_streams(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_delivery_by_recipient),
    };
    return cmocka_run_group_tests_name("sse_streams", tests, group_setup, group_teardown);
}
