/*
 * Embedded broker only (CI time): what presence adds on real Kafka, records
 * on a co-partitioned topic, test_crash_rooms and test_rooms_v11 cover there.
 * Presence (PROTOCOL.md §6, the `presence` event; §3 user-search-friend's
 * `online` and `lastSeen`; §8 GET /api/friends and GET /api/events), written
 * from PROTOCOL.md alone and seen as a browser sees it: one broker, one
 * `kchat serve`, two `kchat gateway`s (plus a third one to kill), all with
 * the suite's secret. In every test a follows b and has an event stream
 * open; b's streams come and go:
 *  - b's first stream: a's stream gets {friendId: b, online: true,
 *    lastSeen} within 5 s, and GET /api/friends says online; b's last
 *    stream closed: {online: false, lastSeen ~ the close} within 20 s, and
 *    user-search-friend says so; the next online event carries that
 *    lastSeen; b, who follows nobody, gets no presence event;
 *  - a stream closed and reopened within 2 s: no presence event at all;
 *  - a stream moved from gateway 1 to gateway 2 within the debounce: no
 *    presence event either;
 *  - the gateway holding b's stream killed with SIGKILL: offline within
 *    60 s, with a lastSeen.
 * The bounds are the page's plus 1 s for the stream's own delivery and a
 * loaded test machine (5 s in a sanitizer build; each named below). "No event" is waited for over a
 * bounded time: the page says when a change must be known, so a wait that
 * long (or, for the debounce, 8 s) shows there was none.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
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

#define PARTS 4
/* delivery to the stream, a loaded machine: 1 s; 5 s in a sanitizer build
 * (tests/run.sh sets KCHAT_SANITIZED), whose every process is slower */
static int g_slack_ms = 1000;
/* how long a close-and-reopen may take: 2 s; 4 s in a sanitizer build
 * (the page's debounce is 5 s) */
static int g_reopen_ms = 2000;
#define ONLINE_MS 5000          /* §6: within 5 s of the first stream opening */
#define OFFLINE_MS 20000        /* §6: within 20 s of the last stream closing */
#define GONE_MS 60000           /* §6: within 60 s of a gateway stopping */
#define QUIET_MS 8000           /* how long "nothing happens" is watched */

#define CHECK KC_CHECK

static kc_proc *g_broker, *g_srv, *g_gw[2];
static kc_client *g_c;
static char g_base[2][256];
static char *g_data;

/* ---- set-up ---------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *san = getenv("KCHAT_SANITIZED");
    if (san != NULL && san[0] != '\0')
        g_slack_ms = 5000, g_reopen_ms = 4000;
    g_data = kc_tmppath("presence-data");
    kc_rm_rf(g_data);
    /* a broker of its own, shared by the backend and every gateway */
    g_broker = kc_broker_start("presence-broker", PARTS);
    if (g_broker == NULL)
        return -1;
    g_srv = kc_serve_start("presence-serve", g_data, kc_proc_bootstrap(g_broker), PARTS, NULL);
    if (g_srv == NULL)
        return -1;
    for (int i = 0; i < 2; i++) {
        const char *gx[] = { "--brokers", kc_proc_bootstrap(g_srv), NULL };
        char name[32];
        snprintf(name, sizeof(name), "presence-gw%d", i + 1);
        g_gw[i] = kc_gateway_start(name, gx, g_base[i], sizeof(g_base[i]));
        if (g_gw[i] == NULL)
            return -1;
    }
    g_c = kc_client_new(kc_proc_bootstrap(g_srv), KC_FROM_END);
    return g_c != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    kc_client_free(g_c);
    for (int i = 0; i < 2; i++) {
        if (g_gw[i] != NULL)
            kc_proc_stop(g_gw[i], SIGTERM, 10, NULL);
        kc_proc_free(g_gw[i]);
    }
    if (g_srv != NULL)
        kc_proc_stop(g_srv, SIGTERM, 10, NULL);
    kc_proc_free(g_srv);
    if (g_broker != NULL)
        kc_proc_stop(g_broker, SIGTERM, 10, NULL);
    kc_proc_free(g_broker);
    free(g_data);
    return 0;
}

/* ---- helpers ----------------------------------------------------------------- */

/* A user with a browser signed up and logged in at gateway @p gw. */
typedef struct buser {
    kc_user u;
    kh_browser b;
} buser;

static void buser_new(buser *x, const char *tag, int gw)
{
    kh_resp *r = kr_signup_login(&x->b, &x->u, tag, g_base[gw]);
    long st = r->status;
    if (st != 200)
        kh_resp_dump(r, "sign-up and login");
    kh_resp_free(r);
    CHECK(st == 200, "sign-up and login of %s: %ld", tag, st);
    CHECK(kh_cookie_get(&x->b, "kchat_session") != NULL, "no session cookie for %s", x->u.id);
}

/* @p x follows @p f (POST /api/friends). */
static void follow(buser *x, const buser *f)
{
    kh_resp *r = kh_do(&x->b, "POST", "/api/friends", json_pack("{s[s]}", "friendId", f->u.id));
    long st = r->status;
    if (st != 200)
        kh_resp_dump(r, "follow");
    kh_resp_free(r);
    CHECK(st == 200, "%s follows %s: %ld", x->u.id, f->u.id, st);
}

/* GET /api/events for @p x, answered 200 with an event stream. */
static kh_sse *stream_open(buser *x)
{
    kh_sse *s = kh_sse_open(&x->b, "/api/events", NULL, 10000);
    long st = kh_sse_status(s);
    if (st != 200)
        kh_sse_dump(s, "event stream");
    CHECK(st == 200, "event stream of %s at %s: %ld", x->u.id, x->b.base, st);
    CHECK(strncmp(kh_sse_ctype(s), "text/event-stream", 17) == 0, "content type %s",
          kh_sse_ctype(s));
    return s;
}

struct pmatch {
    const char *friend_id;
    int online;                 /* 1, 0, or -1 for either */
};

static bool match_presence(const kh_event *e, void *arg)
{
    const struct pmatch *m = arg;
    if (strcmp(e->event, "presence") != 0)
        return false;
    if (m == NULL)
        return true;
    const char *f = e->json ? kc_str(e->json, "friendId") : NULL;
    json_t *on = e->json ? json_object_get(e->json, "online") : NULL;
    return f != NULL && strcmp(f, m->friend_id) == 0 && json_is_boolean(on) &&
           (m->online < 0 || json_is_true(on) == (m->online == 1));
}

/* The presence event about @p friend (online @p online) on @p s after index
 * @p from, waited for up to @p ms; checked to be well formed for @p to. */
static const kh_event *wait_presence(kh_sse *s, size_t from, const buser *to,
                                     const buser *friend, bool online, int ms)
{
    struct pmatch m = { friend->u.id, online ? 1 : 0 };
    const kh_event *e = kh_sse_wait(s, from, match_presence, &m, ms);
    if (e == NULL)
        kh_sse_dump(s, "no presence event");
    CHECK(e != NULL, "%s: no presence event {friendId: %s, online: %s} within %d ms",
          to->u.id, friend->u.id, online ? "true" : "false", ms);
    KC_ASSERT_STR(e->json, "type", "presence");
    KC_ASSERT_STR(e->json, "userId", to->u.id);
    CHECK(e->id != NULL && e->id[0] != '\0', "presence event without an id:");
    const char *ls = kc_str(e->json, "lastSeen");
    CHECK(ls != NULL, "presence event without lastSeen: %s", e->data);
    return e;
}

/* No presence event at all on @p s after index @p from for @p ms. */
static void quiet(kh_sse *s, size_t from, int ms, const char *why)
{
    const kh_event *e = kh_sse_wait(s, from, match_presence, NULL, ms);
    if (e != NULL)
        kh_sse_dump(s, why);
    CHECK(e == NULL, "%s: a presence event came: %s", why, e ? e->data : "");
    CHECK(!kh_sse_ended(s), "%s: the follower's stream ended", why);
}

/* @p f in @p x's GET /api/friends, waited for (bounded) to show @p online;
 * returns its lastSeen (malloc'd). */
static char *friends_show(buser *x, const buser *f, bool online)
{
    int64_t deadline = kc_now_ms() + ONLINE_MS;
    for (;;) {
        kh_resp *r = kh_do(&x->b, "GET", "/api/friends", NULL);
        CHECK(r->status == 200, "GET /api/friends: %ld", r->status);
        json_t *fr;
        size_t i;
        json_array_foreach(json_object_get(r->json, "friend"), i, fr) {
            const char *id = kc_str(fr, "userId");
            json_t *on = json_object_get(fr, "online");
            const char *ls = kc_str(fr, "lastSeen");
            if (id == NULL || strcmp(id, f->u.id) != 0)
                continue;
            CHECK(json_is_boolean(on) && ls != NULL, "friend without online/lastSeen: %s",
                  r->body);
            if (json_is_true(on) == online) {
                char *out = strdup(ls);
                kh_resp_free(r);
                return out;
            }
        }
        if (kc_now_ms() >= deadline) {
            kh_resp_dump(r, "friends");
            kh_resp_free(r);
            CHECK(false, "GET /api/friends of %s never showed %s online=%d", x->u.id, f->u.id,
                  online);
        }
        kh_resp_free(r);
        kc_sleep_ms(200);
    }
}

/* user-search-friend over Kafka (a fresh session of @p x): @p f's entry
 * has online @p online and lastSeen @p last_seen. */
static void search_friend_shows(buser *x, const buser *f, bool online, const char *last_seen)
{
    char *sid = kc_login(g_c, x->u.id, x->u.pw);
    CHECK(sid != NULL, "login over Kafka");
    json_t *r = kc_call(g_c, "user-search-friend", x->u.id, sid,
                        json_pack("{ss}", "userId", x->u.id));
    free(sid);
    CHECK(kc_check_ok(r, x->u.id), "user-search-friend");
    json_t *fr, *mine = NULL;
    size_t i;
    json_array_foreach(json_object_get(r, "friend"), i, fr) {
        const char *id = kc_str(fr, "userId");
        if (id != NULL && strcmp(id, f->u.id) == 0)
            mine = fr;
    }
    CHECK(mine != NULL, "%s not among the friends: %s", f->u.id, kc_dumps(r));
    CHECK(json_is_boolean(json_object_get(mine, "online")) &&
          json_is_true(json_object_get(mine, "online")) == online,
          "online should be %d: %s", online, kc_dumps(mine));
    KC_ASSERT_STR(mine, "lastSeen", last_seen);
    json_decref(r);
}

/* @p iso is a timestamp within [lo - g_slack_ms, hi + g_slack_ms] (wall ms). */
static void time_between(const char *iso, int64_t lo, int64_t hi, const char *what)
{
    int64_t t = kc_iso_to_ms(iso);
    CHECK(kc_check_iso(iso, what), "%s is no timestamp: \"%s\"", what, iso);
    CHECK(t >= lo - g_slack_ms && t <= hi + g_slack_ms,
          "%s %s is %lld ms after the window's start (window %lld ms)", what, iso,
          (long long)(t - lo), (long long)(hi - lo));
}

/* a follows b; both logged in at gateway @p gw; a's stream open. */
static kh_sse *pair(buser *a, buser *b, const char *ta, const char *tb, int gw)
{
    buser_new(a, ta, gw);
    buser_new(b, tb, gw);
    follow(a, b);
    return stream_open(a);
}

/* ---- tests --------------------------------------------------------------------- */

static void test_online_offline(void **state)
{
    (void)state;
    buser a, b;
    kh_sse *sa = pair(&a, &b, "pra", "prb", 0);
    char *ls = friends_show(&a, &b, false);
    CHECK(strcmp(ls, "") == 0, "lastSeen of a user never online: \"%s\"", ls);
    free(ls);

    /* online */
    size_t mark = kh_sse_count(sa);
    int64_t t0 = kc_now_ms();
    kh_sse *sb = stream_open(&b);
    const kh_event *e = wait_presence(sa, mark, &a, &b, true, ONLINE_MS + g_slack_ms);
    CHECK(e->at_ms - t0 <= ONLINE_MS + g_slack_ms, "online after %lld ms",
          (long long)(e->at_ms - t0));
    KC_ASSERT_STR(e->json, "lastSeen", "");   /* never offline before */
    ls = friends_show(&a, &b, true);
    CHECK(strcmp(ls, "") == 0, "lastSeen while never offline: \"%s\"", ls);
    free(ls);
    search_friend_shows(&a, &b, true, "");

    /* offline: lastSeen is the close, as the gateway saw it */
    mark = kh_sse_count(sa);
    int64_t w0 = kc_wall_ms();
    t0 = kc_now_ms();
    kh_sse_close(sb);
    int64_t w1 = kc_wall_ms();
    e = wait_presence(sa, mark, &a, &b, false, OFFLINE_MS + g_slack_ms);
    CHECK(e->at_ms - t0 <= OFFLINE_MS + g_slack_ms, "offline after %lld ms",
          (long long)(e->at_ms - t0));
    char *off_seen = strdup(kc_str(e->json, "lastSeen"));
    time_between(off_seen, w0, w1, "lastSeen of the offline event");
    ls = friends_show(&a, &b, false);
    CHECK(strcmp(ls, off_seen) == 0, "GET /api/friends lastSeen %s, the event said %s", ls,
          off_seen);
    free(ls);
    search_friend_shows(&a, &b, false, off_seen);

    /* online again: the event carries the previous lastSeen */
    mark = kh_sse_count(sa);
    sb = stream_open(&b);
    e = wait_presence(sa, mark, &a, &b, true, ONLINE_MS + g_slack_ms);
    KC_ASSERT_STR(e->json, "lastSeen", off_seen);
    search_friend_shows(&a, &b, true, off_seen);
    /* b follows nobody: b's stream has no presence event */
    CHECK(kh_sse_wait(sb, 0, match_presence, NULL, 0) == NULL, "b got a presence event");
    /* a's own stream made no event for a's followers (nobody) nor for b */
    struct pmatch about_a = { a.u.id, -1 };
    CHECK(kh_sse_wait(sa, 0, match_presence, &about_a, 0) == NULL, "presence of a to a");

    mark = kh_sse_count(sa);
    kh_sse_close(sb);
    wait_presence(sa, mark, &a, &b, false, OFFLINE_MS + g_slack_ms);
    free(off_seen);
    kh_sse_close(sa);
}

static void test_debounce(void **state)
{
    (void)state;
    buser a, b;
    kh_sse *sa = pair(&a, &b, "pda", "pdb", 0);
    size_t mark = kh_sse_count(sa);
    kh_sse *sb = stream_open(&b);
    wait_presence(sa, mark, &a, &b, true, ONLINE_MS + g_slack_ms);

    /* closed and reopened within 2 s: nothing */
    mark = kh_sse_count(sa);
    int64_t t0 = kc_now_ms();
    kh_sse_close(sb);
    sb = stream_open(&b);
    CHECK(kc_now_ms() - t0 < g_reopen_ms, "the reopen took %lld ms",
          (long long)(kc_now_ms() - t0));
    quiet(sa, mark, QUIET_MS, "closed and reopened within 2 s");
    free(friends_show(&a, &b, true));

    /* a second tab closing is no change either */
    kh_sse *sb2 = stream_open(&b);
    mark = kh_sse_count(sa);
    kh_sse_close(sb2);
    quiet(sa, mark, QUIET_MS, "one of two tabs closed");

    mark = kh_sse_count(sa);
    kh_sse_close(sb);
    wait_presence(sa, mark, &a, &b, false, OFFLINE_MS + g_slack_ms);
    kh_sse_close(sa);
}

static void test_move_between_gateways(void **state)
{
    (void)state;
    buser a, b;
    kh_sse *sa = pair(&a, &b, "pma", "pmb", 0);
    size_t mark = kh_sse_count(sa);
    kh_sse *sb = stream_open(&b);   /* on gateway 1 */
    wait_presence(sa, mark, &a, &b, true, ONLINE_MS + g_slack_ms);

    /* closed on gateway 1, opened on gateway 2 within the debounce */
    mark = kh_sse_count(sa);
    int64_t t0 = kc_now_ms();
    kh_sse_close(sb);
    kh_browser_set_base(&b.b, g_base[1]);
    sb = stream_open(&b);
    CHECK(kc_now_ms() - t0 < g_reopen_ms, "the move took %lld ms",
          (long long)(kc_now_ms() - t0));
    /* an offline would be known within 20 s of the close */
    quiet(sa, mark, OFFLINE_MS + g_slack_ms, "stream moved to another gateway");
    free(friends_show(&a, &b, true));

    /* and it does end: closed on gateway 2 */
    mark = kh_sse_count(sa);
    kh_sse_close(sb);
    wait_presence(sa, mark, &a, &b, false, OFFLINE_MS + g_slack_ms);
    kh_sse_close(sa);
}

static void test_gateway_killed(void **state)
{
    (void)state;
    char base3[256];
    const char *gx[] = { "--brokers", kc_proc_bootstrap(g_srv), NULL };
    kc_proc *gw3 = kc_gateway_start("presence-gw3", gx, base3, sizeof(base3));
    CHECK(gw3 != NULL, "third gateway");
    buser a, b;
    kh_sse *sa = pair(&a, &b, "pka", "pkb", 0);
    kh_browser_set_base(&b.b, base3);
    size_t mark = kh_sse_count(sa);
    kh_sse *sb = stream_open(&b);
    const kh_event *on = wait_presence(sa, mark, &a, &b, true, ONLINE_MS + g_slack_ms);
    KC_ASSERT_STR(on->json, "lastSeen", "");

    mark = kh_sse_count(sa);
    int64_t w0 = kc_wall_ms(), t0 = kc_now_ms();
    kc_proc_stop(gw3, SIGKILL, 10, NULL);
    const kh_event *e = wait_presence(sa, mark, &a, &b, false, GONE_MS + g_slack_ms);
    int64_t w1 = kc_wall_ms();
    CHECK(e->at_ms - t0 <= GONE_MS + g_slack_ms, "offline after %lld ms",
          (long long)(e->at_ms - t0));
    /* lastSeen: when the backend concluded so, between the kill and now */
    printf("offline %lld ms after the kill: %s\n", (long long)(e->at_ms - t0), e->data);
    time_between(kc_str(e->json, "lastSeen"), w0, w1, "lastSeen after the kill");
    char *ls = friends_show(&a, &b, false);
    KC_ASSERT_STR(e->json, "lastSeen", ls);
    free(ls);
    kh_sse_close(sb);
    kh_sse_close(sa);
    kc_proc_free(gw3);
}

int main(void)
{
    /* KCHAT_TEST_FILTER=test_debounce runs only the matching tests */
    const char *filter = getenv("KCHAT_TEST_FILTER");
    if (filter != NULL && filter[0] != '\0')
        cmocka_set_test_filter(filter);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_online_offline),
        cmocka_unit_test(test_debounce),
        cmocka_unit_test(test_move_between_gateways),
        cmocka_unit_test(test_gateway_killed),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
