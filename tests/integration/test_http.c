/*
 * kchat-test: kafka (also run on real Apache Kafka by `make check-kafka`)
 * The HTTP gateway (PROTOCOL.md §8), tested as browsers use it: every route
 * with its success status and body, every error status, identity from the
 * session cookie only, Server-Sent Events (live delivery, several streams,
 * Last-Event-ID resume, also across a gateway restart, idle comments), two
 * gateways side by side, the 504 of a gateway whose backend is gone, the
 * health endpoints and the page.
 *
 * One `kchat dev` (embedded broker + backend + gateway) serves most tests;
 * tests that need more start `kchat gateway` processes against its broker.
 * Every wait is bounded; on a failure the tails of every server log are
 * printed.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <pthread.h>
#include <cmocka.h>

#include "support/http.h"
#include "support/kassert.h"
#include "support/kclient.h"

#define COOKIE "kchat_session"
#define EV_WAIT_MS 10000        /* bound for one expected SSE event */

static kc_proc *g_dev;          /* kchat dev: broker + backend + gateway */
static char g_base[256];        /* its base URL, without the trailing '/' */
static char g_bootstrap[1024];  /* its Kafka bootstrap */

/* ======================================================================== */
/* Diagnostics and response checks                                          */
/* ======================================================================== */

/* Fail the test at this line, saying why, with the server logs (kassert.h). */
#define FAILF(...) kc_failf_at(__FILE__, __LINE__, __VA_ARGS__)
#define CHECK KC_CHECK

/* No body leaks a session id or a password (§1, §8): no `sessionId` key at
 * any depth, neither the browser's session cookie value nor any password the
 * program used anywhere in the body. */
static void audit_at(const kh_browser *b, const kh_resp *r, const char *file, int line)
{
    size_t npw = 0;
    const char *const *pws = kc_passwords(&npw);
    const char *sid = b ? kh_cookie_get(b, COOKIE) : NULL;
    const char *sc = kh_set_cookie(r, COOKIE);

    if (r->json != NULL && kh_json_has_key(r->json, "sessionId")) {
        kh_resp_dump(r, "a body carries sessionId");
        kc_failf_at(file, line, "%s: the body has a sessionId field (§8: cookie only)", r->what);
    }
    /* the cookie value, and every run of 16+ [A-Za-z0-9] in it (a session id
     * the gateway wrapped into its cookie format; test user ids have no such run) */
    for (int pass = 0; pass < 2; pass++) {
        const char *v = pass == 0 ? sid : (sc != NULL && !kh_cookie_is_clearing(sc) ? sc : NULL);
        if (v == NULL)
            continue;
        if (pass == 1) {            /* Set-Cookie: skip "kchat_session=" */
            v = strchr(v, '=');
            v = v ? v + 1 : "";
        }
        for (const char *p = v; *p != '\0' && *p != ';';) {
            size_t n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
            if (n >= 16 && kc_memmem(r->body, r->body_len, p, n)) {
                kh_resp_dump(r, "a body carries the session");
                kc_failf_at(file, line, "%s: the body contains (part of) the session cookie %.*s",
                         r->what, (int)n, p);
            }
            p += n > 0 ? n : 1;
        }
    }
    for (size_t i = 0; i < npw; i++)
        if (kc_memmem(r->body, r->body_len, pws[i], strlen(pws[i]))) {
            kh_resp_dump(r, "a body carries a password");
            kc_failf_at(file, line, "%s: the body contains a password", r->what);
        }
}

/* The answer has status @p status and, for a JSON API answer, is a success
 * body for @p user (NULL: any user). */
static void expect_ok_at(const kh_resp *r, long status, const char *user, const char *file,
                         int line)
{
    if (r->status != status || r->error[0] != '\0') {
        kh_resp_dump(r, "unexpected answer");
        kc_failf_at(file, line, "%s: status %ld%s%s, expected %ld", r->what, r->status,
                 r->error[0] ? ", " : "", r->error, status);
    }
    if (!json_is_object(r->json)) {
        kh_resp_dump(r, "not a JSON object");
        kc_failf_at(file, line, "%s: the success body is not a JSON object", r->what);
    }
    if (!kc_check_ok(r->json, user)) {
        kh_resp_dump(r, "not a success body");
        kc_failf_at(file, line, "%s: not a success body for %s", r->what, user ? user : "(any)");
    }
}

/* The answer has status @p status and an error body {errorCode == code (NULL:
 * any non-empty string), errorMessage non-empty}. */
static void expect_err_at(const kh_resp *r, long status, const char *code, bool allow_reset,
                          const char *file, int line)
{
    if (r->status != status || (r->error[0] != '\0' && !allow_reset)) {
        kh_resp_dump(r, "unexpected answer");
        kc_failf_at(file, line, "%s: status %ld%s%s, expected %ld %s", r->what, r->status,
                 r->error[0] ? ", " : "", r->error, status, code ? code : "");
    }
    const char *ec = kc_str(r->json, "errorCode"), *em = kc_str(r->json, "errorMessage");
    if (ec == NULL || ec[0] == '\0' || (code != NULL && strcmp(ec, code) != 0) || em == NULL ||
        em[0] == '\0') {
        kh_resp_dump(r, "not the expected error body");
        kc_failf_at(file, line, "%s: error body should be {errorCode: %s, errorMessage: non-empty}",
                 r->what, code ? code : "(any)");
    }
    if (json_is_true(json_object_get(r->json, "isSuccess"))) {
        kh_resp_dump(r, "error with isSuccess true");
        kc_failf_at(file, line, "%s: an error body says isSuccess true", r->what);
    }
}

#define AUDIT(b, r) audit_at((b), (r), __FILE__, __LINE__)
#define EXPECT_OK(r, status, user) expect_ok_at((r), (status), (user), __FILE__, __LINE__)
#define EXPECT_ERR(r, status, code) expect_err_at((r), (status), (code), false, __FILE__, __LINE__)
#define EXPECT_STATUS(r, st)                                                   \
    do {                                                                       \
        if ((r)->status != (st)) {                                             \
            kh_resp_dump((r), "unexpected status");                            \
            FAILF("%s: status %ld, expected %d", (r)->what, (r)->status, (st)); \
        }                                                                      \
    } while (0)

/* KC_ASSERT_STR with the server logs on failure. */
#define KC_ASSERT_STR_(obj, field, want)                                       \
    do {                                                                       \
        const char *s_ = kc_str((obj), (field));                               \
        CHECK(s_ != NULL && strcmp(s_, (want)) == 0, "field %s: want \"%s\" in %s", \
              (field), (want), kc_dumps(obj));                                 \
    } while (0)

/* kh_do() + AUDIT: every API answer of this program goes through here. */
#define CALL(b, method, path, body)                                            \
    call_at((b), (method), (path), (body), __FILE__, __LINE__)
static kh_resp *call_at(kh_browser *b, const char *method, const char *path, json_t *body,
                        const char *file, int line)
{
    kh_resp *r = kh_do(b, method, path, body);
    audit_at(b, r, file, line);
    return r;
}

#define REQ(b, ...) req_at((b), &(kh_req){ __VA_ARGS__ }, __FILE__, __LINE__)
static kh_resp *req_at(kh_browser *b, const kh_req *req, const char *file, int line)
{
    kh_resp *r = kh_request(b, req);
    audit_at(b, r, file, line);
    return r;
}

/* A string of @p n bytes of @p ch (malloc'd). */
static char *repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

/* ======================================================================== */
/* Processes                                                                */
/* ======================================================================== */

/* Strip the trailing '/' (and blanks) of a URL into @p out. */
static void base_of(const char *url, char *out, size_t size)
{
    snprintf(out, size, "%s", url);
    size_t l = strlen(out);
    while (l > 0 && (out[l - 1] == '/' || out[l - 1] == ' ' || out[l - 1] == '\n'))
        out[--l] = '\0';
}

/* `kchat gateway --brokers BS --http 127.0.0.1:0 --url-file F --secret-file S
 * [--http-timeout-ms N]` (S: kc_secret_file(), the dev server's too),
 * waiting up to 60 s for F; @p base gets the URL without the trailing '/'. */
static kc_proc *gateway_start(const char *name, const char *brokers, const char *timeout_ms,
                              char *base, size_t size)
{
    char fname[128];
    snprintf(fname, sizeof(fname), "%s.url", name);
    char *url_file = kc_tmppath(fname);
    const char *args[] = { "gateway", "--brokers", brokers, "--http", "127.0.0.1:0",
                           "--url-file", url_file, "--secret-file", kc_secret_file(),
                           timeout_ms ? "--http-timeout-ms" : NULL, timeout_ms, NULL };
    kc_proc *p = kc_proc_start(name, args, url_file, 60);
    free(url_file);
    if (p != NULL)
        base_of(kc_proc_bootstrap(p), base, size);
    return p;
}

static void proc_stop_checked(kc_proc *p, const char *what)
{
    int status = 0;
    int rc = kc_proc_stop(p, SIGTERM, 10, &status);
    CHECK(rc == 0, "%s did not exit within 10 s of SIGTERM", what);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s exited with %s after SIGTERM, "
          "expected exit 0", what, kc_status_str(status));
}

static int group_setup(void **state)
{
    char *url_file = kc_tmppath("dev.url"), *bs_file = kc_tmppath("dev.bootstrap");
    char *data = kc_tmppath("dev-data");
    /* on a real cluster (tests/run.sh --kafka) the same backend and gateway,
     * with that cluster in place of the embedded broker */
    const char *real = kc_test_brokers();
    const char *args[] = { "dev", "--http", "127.0.0.1:0", "--url-file", url_file,
                           "--bootstrap-file", bs_file, "--data", data,
                           "--secret-file", kc_secret_file(),
                           "--pwhash-ops", "1", "--pwhash-mem", "8192",
                           real != NULL ? "--brokers" : NULL, real, NULL };
    (void)state;
    unlink(bs_file);
    g_dev = kc_proc_start("dev", args, url_file, 90);
    if (g_dev == NULL) {
        fprintf(stderr, "test_http: `kchat dev` did not start (see above)\n");
        free(url_file);
        free(bs_file);
        free(data);
        return -1;
    }
    base_of(kc_proc_bootstrap(g_dev), g_base, sizeof(g_base));
    /* the bootstrap file is written at the same time as the URL file */
    int64_t deadline = kc_now_ms() + 15000;
    for (;;) {
        char *bs = kc_read_file(bs_file, NULL);
        if (bs != NULL) {
            base_of(bs, g_bootstrap, sizeof(g_bootstrap));
            free(bs);
        }
        if (g_bootstrap[0] != '\0' || kc_now_ms() > deadline)
            break;
        kc_sleep_ms(50);
    }
    fprintf(stderr, "test_http: kchat dev at %s, bootstrap %s\n", g_base, g_bootstrap);
    free(url_file);
    free(bs_file);
    free(data);
    if (strncmp(g_base, "http://", 7) != 0) {
        fprintf(stderr, "test_http: the URL file holds \"%s\", not an http:// URL\n", g_base);
        kc_diag_dump();
        return -1;
    }
    if (g_bootstrap[0] == '\0') {
        fprintf(stderr, "test_http: no bootstrap in the --bootstrap-file within 15 s\n");
        kc_diag_dump();
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (g_dev == NULL)
        return 0;
    int status = 0;
    int rc = kc_proc_stop(g_dev, SIGTERM, 10, &status);
    kc_proc_free(g_dev);
    g_dev = NULL;
    if (rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "test_http: kchat dev did not exit 0 within 10 s of SIGTERM (%s)\n",
                rc != 0 ? "timeout" : kc_status_str(status));
        return -1;
    }
    return 0;
}

/* ======================================================================== */
/* Users                                                                    */
/* ======================================================================== */

typedef struct tuser {
    kc_user u;
    kh_browser b;
} tuser;

static json_t *ids_json(const char *const *ids)
{
    json_t *a = json_array();
    for (size_t i = 0; ids[i] != NULL; i++)
        json_array_append_new(a, json_string(ids[i]));
    return a;
}

/* Fresh identity with a browser on @p base; nothing sent. */
static void tuser_init(tuser *t, const char *tag, const char *base)
{
    kc_user_init(&t->u, tag);
    kh_browser_init(&t->b, tag, base);
}

static void tuser_register(tuser *t)
{
    kh_resp *r = CALL(&t->b, "POST", "/api/users",
                      json_pack("{ss ss ss ss}", "userId", t->u.id, "userPw", t->u.pw,
                                "email", t->u.email, "userName", t->u.name));
    EXPECT_OK(r, 201, t->u.id);
    json_t *u = json_object_get(r->json, "user");
    if (!kc_check_user_obj(u, t->u.id)) {
        kh_resp_dump(r, "bad user object");
        FAILF("POST /api/users: no valid user object");
    }
    KC_ASSERT_STR_(u, "email", t->u.email);
    kh_resp_free(r);
}

/* Log in and check the cookie: set, HttpOnly, SameSite=Strict, Path=/, and
 * its value appears nowhere in the body. */
static void tuser_login(tuser *t)
{
    kh_resp *r = CALL(&t->b, "POST", "/api/login",
                      json_pack("{ss ss}", "userId", t->u.id, "userPw", t->u.pw));
    EXPECT_OK(r, 200, t->u.id);
    if (!kc_check_user_obj(json_object_get(r->json, "user"), t->u.id)) {
        kh_resp_dump(r, "bad user object");
        FAILF("POST /api/login: no valid user object");
    }
    const char *sc = kh_set_cookie(r, COOKIE);
    if (sc == NULL || kh_cookie_is_clearing(sc)) {
        kh_resp_dump(r, "no session cookie");
        FAILF("POST /api/login: no Set-Cookie %s=<value>", COOKIE);
    }
    if (!kh_cookie_has_attr(sc, "HttpOnly", NULL) || !kh_cookie_has_attr(sc, "SameSite", "Strict") ||
        !kh_cookie_has_attr(sc, "Path", "/")) {
        kh_resp_dump(r, "cookie attributes");
        FAILF("POST /api/login: the cookie must be HttpOnly; SameSite=Strict; Path=/: %s", sc);
    }
    const char *v = kh_cookie_get(&t->b, COOKIE);
    CHECK(v != NULL && strlen(v) >= 16, "session cookie value too short: %s", sc);
    kh_resp_free(r);
}

static void tuser_new(tuser *t, const char *tag, const char *base)
{
    tuser_init(t, tag, base);
    tuser_register(t);
    tuser_login(t);
}

static void befriend(tuser *a, const char *const *friends)
{
    kh_resp *r = CALL(&a->b, "POST", "/api/friends", json_pack("{so}", "friendId",
                                                                ids_json(friends)));
    EXPECT_OK(r, 200, a->u.id);
    kh_resp_free(r);
}

/* @p a creates a room with @p friends; returns the answer body (new ref). */
static json_t *make_room(tuser *a, const char *const *friends, const char *name, char *room_id)
{
    json_t *body = json_pack("{so}", "friendId", ids_json(friends));
    if (name != NULL)
        json_object_set_new(body, "roomName", json_string(name));
    kh_resp *r = CALL(&a->b, "POST", "/api/rooms", body);
    EXPECT_OK(r, 201, a->u.id);
    const char *rid = kc_str(r->json, "roomId");
    if (rid == NULL || !kc_is_valid_id(rid)) {
        kh_resp_dump(r, "no roomId");
        FAILF("POST /api/rooms: no valid roomId");
    }
    snprintf(room_id, 65, "%s", rid);
    json_t *j = json_incref(r->json);
    kh_resp_free(r);
    return j;
}

static json_int_t post_msg(tuser *a, const char *room, const char *text, const char *cmid)
{
    char path[160];
    snprintf(path, sizeof(path), "/api/rooms/%s/messages", room);
    json_t *body = json_pack("{ss}", "message", text);
    if (cmid != NULL)
        json_object_set_new(body, "clientMsgId", json_string(cmid));
    kh_resp *r = CALL(&a->b, "POST", path, body);
    EXPECT_OK(r, 201, a->u.id);
    json_int_t seq = kc_int(r->json, "seq", -1);
    const char *w = kc_str(r->json, "writerId"), *rr = kc_str(r->json, "roomId");
    if (seq < 1 || w == NULL || strcmp(w, a->u.id) != 0 || rr == NULL || strcmp(rr, room) != 0 ||
        !kc_check_iso(kc_str(r->json, "createdAt"), "createdAt")) {
        kh_resp_dump(r, "bad chat answer");
        FAILF("POST %s: want seq >= 1, writerId %s, roomId %s, createdAt", path, a->u.id, room);
    }
    kh_resp_free(r);
    return seq;
}

/* ======================================================================== */
/* SSE helpers                                                              */
/* ======================================================================== */

typedef struct evm {
    const char *type;       /* "chat"/"room" */
    const char *room;       /* roomId, NULL: any */
    json_int_t seq;         /* chat seq, 0: any */
} evm;

static bool ev_match(const kh_event *e, void *arg)
{
    const evm *m = arg;
    if (strcmp(e->event, m->type) != 0 || !json_is_object(e->json))
        return false;
    const char *room = kc_str(e->json, "roomId");
    if (m->room != NULL && (room == NULL || strcmp(room, m->room) != 0))
        return false;
    return m->seq == 0 || kc_int(e->json, "seq", -1) == m->seq;
}

/* Every event of §8: an id, data that is one JSON object whose type is the
 * event name and whose userId is the recipient, no sessionId, and the
 * fields of its type (§6). */
static void check_event_at(kh_sse *s, const kh_event *e, const char *recipient, const char *file,
                           int line)
{
    const char *why = NULL;
    if (e->id == NULL || e->id[0] == '\0')
        why = "the event has no id:";
    else if (!json_is_object(e->json))
        why = "data: is not one JSON object";
    else if (kc_str(e->json, "type") == NULL || strcmp(kc_str(e->json, "type"), e->event) != 0)
        why = "event: differs from the data's type";
    else if (kc_str(e->json, "userId") == NULL || strcmp(kc_str(e->json, "userId"), recipient) != 0)
        why = "userId is not the recipient";
    else if (kh_json_has_key(e->json, "sessionId"))
        why = "the event carries a sessionId";
    else if (strcmp(e->event, "chat") == 0) {
        if (kc_str(e->json, "roomId") == NULL || kc_int(e->json, "seq", -1) < 1 ||
            kc_str(e->json, "writerId") == NULL || kc_str(e->json, "message") == NULL ||
            kc_iso_to_ms(kc_str(e->json, "createdAt")) < 0 ||
            kc_str(e->json, "clientMsgId") == NULL)
            why = "a chat event needs roomId, seq, writerId, message, createdAt, clientMsgId";
    } else if (strcmp(e->event, "room") == 0) {
        if (kc_str(e->json, "roomId") == NULL || kc_str(e->json, "roomName") == NULL ||
            !json_is_array(json_object_get(e->json, "participants")))
            why = "a room event needs roomId, roomName, participants";
    } else if (strcmp(e->event, "presence") == 0) {   /* v1.1: a followed user's streams */
        const char *seen = kc_str(e->json, "lastSeen");
        if (kc_str(e->json, "friendId") == NULL ||
            !json_is_boolean(json_object_get(e->json, "online")) || seen == NULL ||
            (seen[0] != '\0' && kc_iso_to_ms(seen) < 0))
            why = "a presence event needs friendId, online, lastSeen";
    } else if (strcmp(e->event, "members") == 0) {
        if (kc_str(e->json, "roomId") == NULL ||
            !json_is_array(json_object_get(e->json, "participants")) ||
            !json_is_array(json_object_get(e->json, "added")) ||
            !json_is_array(json_object_get(e->json, "removed")))
            why = "a members event needs roomId, participants, added, removed";
    } else if (strcmp(e->event, "read") == 0) {
        if (kc_str(e->json, "roomId") == NULL || kc_str(e->json, "readerId") == NULL ||
            kc_int(e->json, "readSeq", -1) < 0)
            why = "a read event needs roomId, readerId, readSeq";
    } else {
        why = "the event is none of PROTOCOL.md section 6";
    }
    if (why != NULL) {
        kh_sse_dump(s, why);
        kc_failf_at(file, line, "event %zu for %s: %s", e->index, recipient, why);
    }
}
#define CHECK_EVENT(s, e, who) check_event_at((s), (e), (who), __FILE__, __LINE__)

/* Wait (bounded) for a `type` event of @p room (and @p seq) on @p s, check it. */
static const kh_event *wait_ev_at(kh_sse *s, const char *who, const char *type, const char *room,
                                  json_int_t seq, const char *file, int line)
{
    evm m = { type, room, seq };
    const kh_event *e = kh_sse_wait(s, 0, ev_match, &m, EV_WAIT_MS);
    if (e == NULL) {
        kh_sse_dump(s, "missing event");
        kc_failf_at(file, line, "%s did not receive %s event room=%s seq=%lld within %d ms", who,
                 type, room ? room : "*", (long long)seq, EV_WAIT_MS);
    }
    check_event_at(s, e, who, file, line);
    return e;
}
#define WAIT_EV(s, who, type, room, seq) wait_ev_at((s), (who), (type), (room), (seq), __FILE__, __LINE__)

/* Open /api/events for @p b and check 200 text/event-stream. */
static kh_sse *open_stream_at(const kh_browser *b, const char *last_id, const char *file, int line)
{
    kh_sse *s = kh_sse_open(b, "/api/events", last_id, 10000);
    if (kh_sse_status(s) != 200 || strncmp(kh_sse_ctype(s), "text/event-stream", 17) != 0) {
        kh_sse_dump(s, "stream did not open");
        kc_failf_at(file, line, "GET /api/events for %s: status %ld, Content-Type \"%s\"; "
                 "expected 200 text/event-stream", b->name, kh_sse_status(s), kh_sse_ctype(s));
    }
    return s;
}
#define OPEN_STREAM(b, last) open_stream_at((b), (last), __FILE__, __LINE__)

/* ======================================================================== */
/* Tests: health, page, unknown paths                                       */
/* ======================================================================== */

static void test_health_metrics_page(void **state)
{
    kh_browser b;
    (void)state;
    kh_browser_init(&b, "anon", g_base);

    kh_resp *r = kh_do(&b, "GET", "/healthz", NULL);
    EXPECT_STATUS(r, 200);
    kh_resp_free(r);
    r = kh_do(&b, "GET", "/readyz", NULL);
    EXPECT_STATUS(r, 200);
    kh_resp_free(r);

    r = kh_do(&b, "GET", "/metrics", NULL);
    EXPECT_STATUS(r, 200);
    const char *ct = kh_header_get(r, "Content-Type", 0);
    CHECK(ct != NULL && strncmp(ct, "text/", 5) == 0, "/metrics Content-Type \"%s\", want text/*",
          ct ? ct : "(none)");
    /* at least one "name value" sample line (Prometheus text format) */
    int samples = 0;
    for (char *save = NULL, *l = strtok_r(r->body, "\n", &save); l != NULL;
         l = strtok_r(NULL, "\n", &save)) {
        if (l[0] == '#' || l[0] == '\0')
            continue;
        char *sp = strrchr(l, ' ');
        if (sp == NULL || sp == l)
            continue;
        char *end = NULL;
        (void)strtod(sp + 1, &end);
        if (end != sp + 1 && (*end == '\0' || *end == '\r') &&
            (l[0] == '_' || (l[0] >= 'a' && l[0] <= 'z') || (l[0] >= 'A' && l[0] <= 'Z')))
            samples++;
    }
    if (samples == 0) {
        kh_resp_dump(r, "no metric lines");
        FAILF("/metrics has no `name value` sample line");
    }
    kh_resp_free(r);

    r = kh_do(&b, "GET", "/", NULL);
    EXPECT_STATUS(r, 200);
    ct = kh_header_get(r, "Content-Type", 0);
    CHECK(ct != NULL && strncmp(ct, "text/html", 9) == 0, "GET / Content-Type \"%s\", want "
          "text/html", ct ? ct : "(none)");
    CHECK(strcasestr(r->body, "<html") != NULL || strcasestr(r->body, "<!doctype html") != NULL,
          "GET / is no HTML page: %.200s", r->body);
    kh_resp_free(r);

    r = kh_do(&b, "GET", "/no-such-file-3f9a.html", NULL);
    EXPECT_STATUS(r, 404);
    kh_resp_free(r);
    r = kh_do(&b, "GET", "/api/no-such-route", NULL);
    EXPECT_STATUS(r, 404);
    kh_resp_free(r);
    r = kh_do(&b, "POST", "/api/no-such-route", json_pack("{}"));
    EXPECT_STATUS(r, 404);
    kh_resp_free(r);
}

/* ======================================================================== */
/* Tests: users, login, logout, cookies                                     */
/* ======================================================================== */

static void test_register_login_logout(void **state)
{
    tuser a, c;
    (void)state;
    tuser_init(&a, "reg", g_base);
    tuser_register(&a);

    /* 409 duplicate */
    kh_resp *r = CALL(&a.b, "POST", "/api/users",
                      json_pack("{ss ss ss ss}", "userId", a.u.id, "userPw", a.u.pw,
                                "email", a.u.email, "userName", "Other"));
    EXPECT_ERR(r, 409, "ALREADY_EXISTS");
    kh_resp_free(r);

    /* 401 wrong password / unknown user, no session cookie set */
    char wrong[40];
    kc_new_password(wrong, sizeof(wrong));
    r = CALL(&a.b, "POST", "/api/login", json_pack("{ss ss}", "userId", a.u.id, "userPw", wrong));
    EXPECT_ERR(r, 401, "BAD_CREDENTIALS");
    CHECK(kh_set_cookie(r, COOKIE) == NULL || kh_cookie_is_clearing(kh_set_cookie(r, COOKIE)),
          "a failed login set a session cookie: %s", kh_set_cookie(r, COOKIE));
    kh_resp_free(r);
    tuser_init(&c, "ghost", g_base);
    r = CALL(&c.b, "POST", "/api/login", json_pack("{ss ss}", "userId", c.u.id, "userPw", c.u.pw));
    EXPECT_ERR(r, 401, "BAD_CREDENTIALS");
    kh_resp_free(r);
    CHECK(kh_cookie_get(&a.b, COOKIE) == NULL, "jar holds a session after failed logins");

    /* login: cookie checked by tuser_login; loginDate set */
    tuser_login(&a);
    char first_sid[512];
    snprintf(first_sid, sizeof(first_sid), "%s", kh_cookie_get(&a.b, COOKIE));

    r = CALL(&a.b, "GET", "/api/friends", NULL);
    EXPECT_OK(r, 200, a.u.id);
    CHECK(json_is_array(json_object_get(r->json, "friend")) &&
          json_array_size(json_object_get(r->json, "friend")) == 0,
          "GET /api/friends of a new user: want friend [], got %s", kc_dumps(r->json));
    kh_resp_free(r);

    /* a second browser of the same user gets its own session */
    tuser a2 = a;
    kh_browser_init(&a2.b, "reg-2nd", g_base);
    tuser_login(&a2);
    CHECK(strcmp(kh_cookie_get(&a2.b, COOKIE), first_sid) != 0,
          "two logins returned the same session");

    /* logout: 200, clears the cookie; the old session is revoked */
    r = REQ(&a.b, .method = "POST", .path = "/api/logout", .empty_body = true);
    EXPECT_OK(r, 200, a.u.id);
    const char *sc = kh_set_cookie(r, COOKIE);
    CHECK(sc != NULL && kh_cookie_is_clearing(sc),
          "POST /api/logout must clear %s (Max-Age=0 or a past Expires), got %s", COOKIE,
          sc ? sc : "(no Set-Cookie)");
    kh_resp_free(r);
    CHECK(kh_cookie_get(&a.b, COOKIE) == NULL, "cookie still in the jar after logout");

    r = CALL(&a.b, "GET", "/api/friends", NULL);
    EXPECT_ERR(r, 401, "UNAUTHENTICATED");
    kh_resp_free(r);
    kh_browser old = a.b;
    kh_cookie_set(&old, COOKIE, first_sid);
    r = CALL(&old, "GET", "/api/friends", NULL);
    EXPECT_ERR(r, 401, "UNAUTHENTICATED");
    kh_resp_free(r);
    r = REQ(&a.b, .method = "POST", .path = "/api/logout", .empty_body = true);
    EXPECT_ERR(r, 401, "UNAUTHENTICATED");
    kh_resp_free(r);

    /* the other browser's session still works */
    r = CALL(&a2.b, "GET", "/api/friends", NULL);
    EXPECT_OK(r, 200, a.u.id);
    kh_resp_free(r);

    /* a new login after the logout shows both dates */
    r = CALL(&a.b, "POST", "/api/login", json_pack("{ss ss}", "userId", a.u.id, "userPw", a.u.pw));
    EXPECT_OK(r, 200, a.u.id);
    json_t *u = json_object_get(r->json, "user");
    CHECK(kc_check_iso(kc_str(u, "loginDate"), "loginDate") &&
          kc_check_iso(kc_str(u, "logoutDate"), "logoutDate"),
          "after login, logout, login the user has loginDate and logoutDate: %s", kc_dumps(u));
    kh_resp_free(r);
}

/* Logout with a JSON body `{}` (what a fetch() with a JSON body sends) works too. */
static void test_logout_with_json_body(void **state)
{
    tuser a;
    (void)state;
    tuser_new(&a, "lojs", g_base);
    kh_resp *r = CALL(&a.b, "POST", "/api/logout", json_object());
    EXPECT_OK(r, 200, a.u.id);
    CHECK(kh_cookie_get(&a.b, COOKIE) == NULL, "cookie not cleared by logout");
    kh_resp_free(r);
}

/* Every route needing a session: 401 UNAUTHENTICATED without the cookie and
 * with a made-up one. */
static void test_unauthenticated(void **state)
{
    static const struct {
        const char *method, *path, *body;
    } routes[] = {
        { "POST", "/api/logout", "{}" },
        { "PUT", "/api/status", "{\"userStatus\":\"x\"}" },
        { "GET", "/api/friends", NULL },
        { "POST", "/api/friends", "{\"friendId\":[\"someone\"]}" },
        { "GET", "/api/rooms", NULL },
        { "POST", "/api/rooms", "{\"friendId\":[\"someone\"]}" },
        { "GET", "/api/rooms/some-room/messages", NULL },
        { "POST", "/api/rooms/some-room/messages", "{\"message\":\"hi\"}" },
    };
    kh_browser none, fake;
    (void)state;
    kh_browser_init(&none, "nocookie", g_base);
    kh_browser_init(&fake, "fakecookie", g_base);
    kh_cookie_set(&fake, COOKIE, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");

    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        kh_browser *bs[] = { &none, &fake };
        for (size_t k = 0; k < 2; k++) {
            kh_resp *r = REQ(bs[k], .method = routes[i].method, .path = routes[i].path,
                             .raw = routes[i].body,
                             .raw_len = routes[i].body ? strlen(routes[i].body) : 0,
                             .keep_jar = true);
            EXPECT_ERR(r, 401, "UNAUTHENTICATED");
            kh_resp_free(r);
        }
    }
    kh_sse *s = kh_sse_open(&none, "/api/events", NULL, 10000);
    if (kh_sse_status(s) != 401) {
        kh_sse_dump(s, "events without cookie");
        FAILF("GET /api/events without a cookie: status %ld, want 401", kh_sse_status(s));
    }
    kh_sse_close(s);
    s = kh_sse_open(&fake, "/api/events", NULL, 10000);
    if (kh_sse_status(s) != 401) {
        kh_sse_dump(s, "events with a made-up cookie");
        FAILF("GET /api/events with a made-up cookie: status %ld, want 401", kh_sse_status(s));
    }
    kh_sse_close(s);
}

/* ======================================================================== */
/* Tests: friends, status, rooms, messages, history                         */
/* ======================================================================== */

static void test_friends_status_rooms_messages(void **state)
{
    tuser a, b, c;
    char room[65], path[160];
    (void)state;
    tuser_new(&a, "frA", g_base);
    tuser_new(&b, "frB", g_base);
    tuser_new(&c, "frC", g_base);

    /* POST /api/friends: 200 with friendId; unknown id 404 and nothing added */
    kh_resp *r = CALL(&a.b, "POST", "/api/friends",
                      json_pack("{s[s]}", "friendId", b.u.id));
    EXPECT_OK(r, 200, a.u.id);
    const char *want_b[] = { b.u.id, NULL };
    CHECK(kc_check_id_set(json_object_get(r->json, "friendId"), want_b, "friendId"),
          "POST /api/friends answer: %s", kc_dumps(r->json));
    kh_resp_free(r);
    char ghost[65];
    kc_uid(ghost, sizeof(ghost), "ghost");
    r = CALL(&a.b, "POST", "/api/friends", json_pack("{s[ss]}", "friendId", c.u.id, ghost));
    EXPECT_ERR(r, 404, "USER_NOT_FOUND");
    kh_resp_free(r);

    /* PUT /api/status: 200 userStatus, visible in A's friend list */
    r = CALL(&b.b, "PUT", "/api/status", json_pack("{ss}", "userStatus", "busy \xF0\x9F\x90\x8D"));
    EXPECT_OK(r, 200, b.u.id);
    KC_ASSERT_STR_(r->json, "userStatus", "busy \xF0\x9F\x90\x8D");
    kh_resp_free(r);

    /* GET /api/friends: [{userId, userName, userStatus}] sorted, C not there */
    r = CALL(&a.b, "GET", "/api/friends", NULL);
    EXPECT_OK(r, 200, a.u.id);
    json_t *fl = json_object_get(r->json, "friend");
    CHECK(json_is_array(fl) && json_array_size(fl) == 1, "friend list of A: %s", kc_dumps(r->json));
    json_t *f0 = json_array_get(fl, 0);
    KC_ASSERT_STR_(f0, "userId", b.u.id);
    KC_ASSERT_STR_(f0, "userName", b.u.name);
    KC_ASSERT_STR_(f0, "userStatus", "busy \xF0\x9F\x90\x8D");
    kh_resp_free(r);

    /* POST /api/rooms: 404 unknown, 403 not a friend, 201 */
    r = CALL(&a.b, "POST", "/api/rooms", json_pack("{s[s]}", "friendId", ghost));
    EXPECT_ERR(r, 404, "USER_NOT_FOUND");
    kh_resp_free(r);
    r = CALL(&a.b, "POST", "/api/rooms", json_pack("{s[s]}", "friendId", c.u.id));
    EXPECT_ERR(r, 403, "NOT_A_FRIEND");
    kh_resp_free(r);
    const char *fb[] = { b.u.id, NULL };
    json_t *rj = make_room(&a, fb, "Room \xC3\xA9t\xC3\xA9", room);
    KC_ASSERT_STR_(rj, "roomName", "Room \xC3\xA9t\xC3\xA9");
    CHECK(kc_check_iso(kc_str(rj, "createdAt"), "createdAt"), "room createdAt: %s", kc_dumps(rj));
    CHECK(json_is_array(json_object_get(rj, "friendId")), "room answer without friendId: %s",
          kc_dumps(rj));
    json_decref(rj);

    /* GET /api/rooms: the room with both participants, lastSeq 0; none for C */
    r = CALL(&a.b, "GET", "/api/rooms", NULL);
    EXPECT_OK(r, 200, a.u.id);
    json_t *rooms = json_object_get(r->json, "rooms");
    CHECK(json_is_array(rooms) && json_array_size(rooms) == 1, "rooms of A: %s", kc_dumps(r->json));
    json_t *r0 = json_array_get(rooms, 0);
    KC_ASSERT_STR_(r0, "roomId", room);
    const char *ab[] = { a.u.id, b.u.id, NULL };
    CHECK(kc_check_id_set(json_object_get(r0, "participants"), ab, "participants"),
          "participants: %s", kc_dumps(r0));
    CHECK(kc_int(r0, "lastSeq", -1) == 0, "lastSeq of a new room: %s", kc_dumps(r0));
    kh_resp_free(r);
    r = CALL(&c.b, "GET", "/api/rooms", NULL);
    EXPECT_OK(r, 200, c.u.id);
    CHECK(json_array_size(json_object_get(r->json, "rooms")) == 0, "C sees rooms: %s",
          kc_dumps(r->json));
    kh_resp_free(r);

    /* POST messages: 201 seq 1.., idempotent clientMsgId; 403/404 */
    CHECK(post_msg(&a, room, "one", NULL) == 1, "first seq is not 1");
    CHECK(post_msg(&b, room, "two", "cm-1") == 2, "second seq is not 2");
    CHECK(post_msg(&b, room, "two", "cm-1") == 2, "a repeated clientMsgId got a new seq");
    CHECK(post_msg(&a, room, "three <b>&amp;</b> \"q\"", NULL) == 3, "third seq is not 3");
    snprintf(path, sizeof(path), "/api/rooms/%s/messages", room);
    r = CALL(&c.b, "POST", path, json_pack("{ss}", "message", "intruder"));
    EXPECT_ERR(r, 403, "NOT_A_MEMBER");
    kh_resp_free(r);
    r = CALL(&a.b, "POST", "/api/rooms/no-such-room-x1/messages", json_pack("{ss}", "message", "x"));
    EXPECT_ERR(r, 404, "ROOM_NOT_FOUND");
    kh_resp_free(r);

    /* GET history: all, limit, beforeSeq; 403/404 */
    r = CALL(&b.b, "GET", path, NULL);
    EXPECT_OK(r, 200, b.u.id);
    KC_ASSERT_STR_(r->json, "roomId", room);
    json_t *msgs = json_object_get(r->json, "messages");
    CHECK(json_is_array(msgs) && json_array_size(msgs) == 3, "history: %s", kc_dumps(r->json));
    for (size_t i = 0; i < 3; i++) {
        json_t *m = json_array_get(msgs, i);
        CHECK(kc_int(m, "seq", -1) == (json_int_t)i + 1 && kc_str(m, "writerId") != NULL &&
              kc_str(m, "message") != NULL && kc_str(m, "createdAt") != NULL &&
              kc_str(m, "clientMsgId") != NULL, "history message %zu: %s", i, kc_dumps(m));
    }
    KC_ASSERT_STR_(json_array_get(msgs, 0), "writerId", a.u.id);
    KC_ASSERT_STR_(json_array_get(msgs, 1), "writerId", b.u.id);
    KC_ASSERT_STR_(json_array_get(msgs, 1), "clientMsgId", "cm-1");
    KC_ASSERT_STR_(json_array_get(msgs, 2), "message", "three <b>&amp;</b> \"q\"");
    kh_resp_free(r);

    snprintf(path, sizeof(path), "/api/rooms/%s/messages?limit=2", room);
    r = CALL(&a.b, "GET", path, NULL);
    EXPECT_OK(r, 200, a.u.id);
    msgs = json_object_get(r->json, "messages");
    CHECK(json_array_size(msgs) == 2 && kc_int(json_array_get(msgs, 0), "seq", -1) == 2 &&
          kc_int(json_array_get(msgs, 1), "seq", -1) == 3, "?limit=2 (newest two, ascending): %s",
          kc_dumps(r->json));
    kh_resp_free(r);
    snprintf(path, sizeof(path), "/api/rooms/%s/messages?beforeSeq=3&limit=1", room);
    r = CALL(&a.b, "GET", path, NULL);
    EXPECT_OK(r, 200, a.u.id);
    msgs = json_object_get(r->json, "messages");
    CHECK(json_array_size(msgs) == 1 && kc_int(json_array_get(msgs, 0), "seq", -1) == 2,
          "?beforeSeq=3&limit=1: %s", kc_dumps(r->json));
    kh_resp_free(r);

    snprintf(path, sizeof(path), "/api/rooms/%s/messages", room);
    r = CALL(&c.b, "GET", path, NULL);
    EXPECT_ERR(r, 403, "NOT_A_MEMBER");
    kh_resp_free(r);
    r = CALL(&a.b, "GET", "/api/rooms/no-such-room-x1/messages", NULL);
    EXPECT_ERR(r, 404, "ROOM_NOT_FOUND");
    kh_resp_free(r);

    /* GET /api/rooms after messages: lastSeq 3 */
    r = CALL(&b.b, "GET", "/api/rooms", NULL);
    EXPECT_OK(r, 200, b.u.id);
    r0 = json_array_get(json_object_get(r->json, "rooms"), 0);
    CHECK(r0 != NULL && kc_int(r0, "lastSeq", -1) == 3, "B's rooms after 3 messages: %s",
          kc_dumps(r->json));
    kh_resp_free(r);
}

/* Identity comes from the cookie only: body userId/writerId are ignored. */
static void test_identity_from_cookie_only(void **state)
{
    tuser a, b;
    char room[65], path[160];
    (void)state;
    tuser_new(&a, "idA", g_base);
    tuser_new(&b, "idB", g_base);
    const char *fa[] = { a.u.id, NULL }, *fb[] = { b.u.id, NULL };
    befriend(&a, fb);
    befriend(&b, fa);
    json_decref(make_room(&a, fb, NULL, room));
    snprintf(path, sizeof(path), "/api/rooms/%s/messages", room);

    /* A posts claiming to be B */
    kh_resp *r = CALL(&a.b, "POST", path, json_pack("{ss ss ss}", "message", "spoof",
                                                    "writerId", b.u.id, "userId", b.u.id));
    EXPECT_OK(r, 201, a.u.id);
    KC_ASSERT_STR_(r->json, "writerId", a.u.id);
    kh_resp_free(r);
    r = CALL(&b.b, "GET", path, NULL);
    EXPECT_OK(r, 200, b.u.id);
    json_t *m = json_array_get(json_object_get(r->json, "messages"), 0);
    CHECK(m != NULL && strcmp(kc_str(m, "writerId") ? kc_str(m, "writerId") : "", a.u.id) == 0,
          "a message A sent with writerId B is stored as B's: %s", kc_dumps(r->json));
    kh_resp_free(r);

    /* A changes "B's" status: A's changes, B's does not */
    r = CALL(&a.b, "PUT", "/api/status", json_pack("{ss ss}", "userId", b.u.id,
                                                   "userStatus", "spoofed"));
    EXPECT_OK(r, 200, a.u.id);
    kh_resp_free(r);
    r = CALL(&a.b, "GET", "/api/friends", NULL);
    EXPECT_OK(r, 200, a.u.id);
    json_t *f0 = json_array_get(json_object_get(r->json, "friend"), 0);
    CHECK(f0 != NULL && kc_str(f0, "userStatus") != NULL &&
          strcmp(kc_str(f0, "userStatus"), "spoofed") != 0,
          "A changed B's status through a body userId: %s", kc_dumps(r->json));
    kh_resp_free(r);
    r = CALL(&b.b, "GET", "/api/friends", NULL);
    EXPECT_OK(r, 200, b.u.id);
    f0 = json_array_get(json_object_get(r->json, "friend"), 0);
    KC_ASSERT_STR_(f0, "userStatus", "spoofed");   /* it was A's own status */
    kh_resp_free(r);

    /* A's session under B's name (when the cookie names its user) is no session */
    const char *sid = kh_cookie_get(&a.b, COOKIE);
    const char *at = sid ? strstr(sid, a.u.id) : NULL;
    if (at != NULL) {
        char forged[600];
        snprintf(forged, sizeof(forged), "%.*s%s%s", (int)(at - sid), sid, b.u.id,
                 at + strlen(a.u.id));
        kh_browser f = a.b;
        kh_cookie_set(&f, COOKIE, forged);
        r = CALL(&f, "GET", "/api/friends", NULL);
        EXPECT_ERR(r, 401, "UNAUTHENTICATED");
        kh_resp_free(r);
        r = CALL(&f, "POST", path, json_pack("{ss}", "message", "forged"));
        EXPECT_ERR(r, 401, "UNAUTHENTICATED");
        kh_resp_free(r);
    }

    /* A asks for "B's" friends and rooms: gets its own */
    r = CALL(&a.b, "POST", "/api/friends", json_pack("{ss s[s]}", "userId", b.u.id,
                                                     "friendId", b.u.id));
    EXPECT_OK(r, 200, a.u.id);
    kh_resp_free(r);
    /* a logout body naming B logs out A only */
    r = CALL(&a.b, "POST", "/api/logout", json_pack("{ss}", "userId", b.u.id));
    EXPECT_OK(r, 200, a.u.id);
    kh_resp_free(r);
    r = CALL(&b.b, "GET", "/api/rooms", NULL);
    EXPECT_OK(r, 200, b.u.id);
    kh_resp_free(r);
}

/* ======================================================================== */
/* Tests: 400, 413, 415                                                     */
/* ======================================================================== */

static void test_bad_requests(void **state)
{
    tuser a, b;
    char room[65], path[160], qpath[200], big_id[70];
    (void)state;
    tuser_new(&a, "badA", g_base);
    tuser_new(&b, "badB", g_base);
    const char *fb[] = { b.u.id, NULL };
    befriend(&a, fb);
    json_decref(make_room(&a, fb, "bad", room));
    snprintf(path, sizeof(path), "/api/rooms/%s/messages", room);
    memset(big_id, 'x', 65);
    big_id[65] = '\0';
    char *status257 = repeat('s', 257), *name129 = repeat('n', 129), *msg4097 = repeat('m', 4097);
    char *cmid65 = repeat('c', 65);
    json_t *ids101 = json_array();
    for (int i = 0; i < 101; i++) {
        char id[32];
        snprintf(id, sizeof(id), "u%d", i);
        json_array_append_new(ids101, json_string(id));
    }

    struct {
        const char *method, *path;
        json_t *json;       /* stolen */
        const char *raw;
    } cases[] = {
        { "POST", "/api/users", json_pack("{ss ss ss}", "userId", "nopw-x", "email", "a@b",
                                          "userName", "n"), NULL },
        { "POST", "/api/users", json_pack("{ss ss ss ss}", "userId", "bad id!", "userPw",
                                          "longenough1", "email", "a@b", "userName", "n"), NULL },
        { "POST", "/api/users", json_pack("{ss ss ss ss}", "userId", big_id, "userPw",
                                          "longenough1", "email", "a@b", "userName", "n"), NULL },
        { "POST", "/api/users", json_pack("{ss ss ss ss}", "userId", "shortpw-x", "userPw",
                                          "short", "email", "a@b", "userName", "n"), NULL },
        { "POST", "/api/users", json_pack("{ss ss ss ss}", "userId", "nomail-x", "userPw",
                                          "longenough1", "email", "nope", "userName", "n"), NULL },
        { "POST", "/api/users", json_pack("{ss ss ss si}", "userId", "intname-x", "userPw",
                                          "longenough1", "email", "a@b", "userName", 5), NULL },
        { "POST", "/api/users", NULL, "{\"userId\": " },
        { "POST", "/api/users", NULL, "[1,2,3]" },
        { "POST", "/api/users", NULL, "" },
        { "POST", "/api/login", json_pack("{ss}", "userId", a.u.id), NULL },
        { "PUT", "/api/status", json_pack("{ss}", "userStatus", status257), NULL },
        { "PUT", "/api/status", json_pack("{si}", "userStatus", 5), NULL },
        { "PUT", "/api/status", NULL, "{\"userStatus\":\"\xC3\x28\"}" },
        { "POST", "/api/friends", json_pack("{ss}", "friendId", b.u.id), NULL },
        { "POST", "/api/friends", json_pack("{s[]}", "friendId"), NULL },
        { "POST", "/api/friends", json_pack("{s[s]}", "friendId", a.u.id), NULL },
        { "POST", "/api/friends", json_pack("{sO}", "friendId", ids101), NULL },
        { "POST", "/api/friends", json_pack("{s[s]}", "friendId", "bad id!"), NULL },
        { "POST", "/api/rooms", json_pack("{s[s] ss}", "friendId", b.u.id, "roomName", name129),
          NULL },
        { "POST", "/api/rooms", json_pack("{}"), NULL },
        { "POST", path, json_pack("{ss}", "message", ""), NULL },
        { "POST", path, json_pack("{ss}", "message", msg4097), NULL },
        { "POST", path, json_pack("{}"), NULL },
        { "POST", path, json_pack("{si}", "message", 42), NULL },
        { "POST", path, json_pack("{ss ss}", "message", "ok", "clientMsgId", cmid65), NULL },
        { "POST", path, NULL, "{\"message\":\"\xFF\xFE bad utf8\"}" },
        { "GET", NULL, NULL, NULL },    /* limit=0, filled below */
        { "GET", NULL, NULL, NULL },    /* limit=101 */
    };
    size_t n = sizeof(cases) / sizeof(cases[0]);
    for (size_t i = 0; i < n; i++) {
        if (cases[i].path == NULL) {
            snprintf(qpath, sizeof(qpath), "%s?limit=%s", path, i == n - 2 ? "0" : "101");
            cases[i].path = qpath;
        }
        kh_req req = { .method = cases[i].method, .path = cases[i].path, .json = cases[i].json,
                       .raw = cases[i].raw, .raw_len = cases[i].raw ? strlen(cases[i].raw) : 0,
                       .empty_body = cases[i].raw != NULL && cases[i].raw[0] == '\0',
                       .ctype = strcmp(cases[i].method, "GET") == 0 ? NULL : "application/json",
                       .keep_jar = true };
        if (req.empty_body)
            req.raw = NULL;
        kh_resp *r = kh_request(&a.b, &req);
        AUDIT(&a.b, r);
        if (r->status != 400 || strcmp(kc_str(r->json, "errorCode") ? kc_str(r->json, "errorCode")
                                                                    : "", "BAD_REQUEST") != 0) {
            kh_resp_dump(r, "want 400 BAD_REQUEST");
            FAILF("case %zu (%s %s, body %s): want 400 BAD_REQUEST", i, cases[i].method,
                  cases[i].path, cases[i].raw ? cases[i].raw : kc_dumps(cases[i].json));
        }
        EXPECT_ERR(r, 400, "BAD_REQUEST");
        kh_resp_free(r);
        json_decref(cases[i].json);
    }
    json_decref(ids101);

    /* nothing above changed state: the room is empty, A still logged in */
    {
        kh_resp *r = CALL(&a.b, "GET", path, NULL);
        EXPECT_OK(r, 200, a.u.id);
        CHECK(json_array_size(json_object_get(r->json, "messages")) == 0,
              "a rejected message was stored: %s", kc_dumps(r->json));
        kh_resp_free(r);
    }
    free(status257);
    free(name129);
    free(msg4097);
    free(cmid65);
}

static void test_unsupported_media_type(void **state)
{
    tuser a, b;
    char room[65], path[160];
    (void)state;
    tuser_new(&a, "mtA", g_base);
    tuser_new(&b, "mtB", g_base);
    const char *fb[] = { b.u.id, NULL };
    befriend(&a, fb);
    json_decref(make_room(&a, fb, "mt", room));
    snprintf(path, sizeof(path), "/api/rooms/%s/messages", room);

    char user_body[512];
    snprintf(user_body, sizeof(user_body),
             "{\"userId\":\"mt-%ld\",\"userPw\":\"longenough1\",\"email\":\"a@b\",\"userName\":\"n\"}",
             (long)getpid());
    struct {
        const char *method, *path, *body, *ctype;
    } cases[] = {
        { "POST", "/api/users", user_body, "text/plain" },
        { "POST", "/api/users", user_body, "" },
        { "POST", "/api/login", "{\"userId\":\"x\",\"userPw\":\"longenough1\"}",
          "application/x-www-form-urlencoded" },
        { "PUT", "/api/status", "{\"userStatus\":\"x\"}", "text/plain" },
        { "PUT", "/api/status", "{\"userStatus\":\"x\"}", "" },
        { "POST", "/api/friends", "{\"friendId\":[\"x\"]}", "multipart/form-data; boundary=x" },
        { "POST", "/api/rooms", "{\"friendId\":[\"x\"]}", "application/xml" },
        { "POST", path, "{\"message\":\"x\"}", "text/plain;charset=UTF-8" },
        { "POST", path, "{\"message\":\"x\"}", "application/msgpack" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kh_resp *r = REQ(&a.b, .method = cases[i].method, .path = cases[i].path,
                         .raw = cases[i].body, .raw_len = strlen(cases[i].body),
                         .ctype = cases[i].ctype, .keep_jar = true);
        if (r->status != 415) {
            kh_resp_dump(r, "want 415");
            FAILF("case %zu: %s %s with Content-Type \"%s\": status %ld, want 415", i,
                  cases[i].method, cases[i].path, cases[i].ctype, r->status);
        }
        EXPECT_ERR(r, 415, NULL);
        kh_resp_free(r);
    }
    /* nothing was stored */
    kh_resp *r = CALL(&a.b, "GET", path, NULL);
    EXPECT_OK(r, 200, a.u.id);
    CHECK(json_array_size(json_object_get(r->json, "messages")) == 0,
          "a 415 message was stored: %s", kc_dumps(r->json));
    kh_resp_free(r);
}

/* `application/json; charset=utf-8` is application/json (what many clients send). */
static void test_json_with_charset_accepted(void **state)
{
    tuser a;
    (void)state;
    tuser_new(&a, "cs", g_base);
    kh_resp *r = REQ(&a.b, .method = "PUT", .path = "/api/status",
                     .raw = "{\"userStatus\":\"cs\"}", .raw_len = 19,
                     .ctype = "application/json; charset=utf-8");
    EXPECT_OK(r, 200, a.u.id);
    kh_resp_free(r);
}

static void test_body_too_large(void **state)
{
    tuser a, b;
    char room[65], path[160];
    (void)state;
    tuser_new(&a, "bigA", g_base);
    tuser_new(&b, "bigB", g_base);
    const char *fb[] = { b.u.id, NULL };
    befriend(&a, fb);
    json_decref(make_room(&a, fb, "big", room));
    snprintf(path, sizeof(path), "/api/rooms/%s/messages", room);

    /* 70 000 bytes (over 64 KiB): 413, on an authenticated and an open route */
    char *pad = repeat('p', 70000);
    kh_resp *r = CALL(&a.b, "POST", path, json_pack("{ss ss}", "message", "big", "pad", pad));
    expect_err_at(r, 413, "TOO_LARGE", true, __FILE__, __LINE__);
    kh_resp_free(r);
    kh_browser anon;
    kh_browser_init(&anon, "anon", g_base);
    r = CALL(&anon, "POST", "/api/users", json_pack("{ss ss ss ss ss}", "userId", "big-user-x",
                                                    "userPw", "longenough1", "email", "a@b",
                                                    "userName", "n", "pad", pad));
    expect_err_at(r, 413, "TOO_LARGE", true, __FILE__, __LINE__);
    kh_resp_free(r);
    free(pad);

    /* 60 000 bytes (under 64 KiB) with an unknown field: accepted, field ignored */
    pad = repeat('q', 60000);
    r = CALL(&a.b, "POST", path, json_pack("{ss ss}", "message", "fits", "pad", pad));
    EXPECT_OK(r, 201, a.u.id);
    CHECK(kc_int(r->json, "seq", -1) == 1, "the message after a 413 is not seq 1: %s",
          kc_dumps(r->json));
    kh_resp_free(r);
    free(pad);
}

/* ======================================================================== */
/* Tests: Server-Sent Events                                                */
/* ======================================================================== */

static void test_sse_live_two_users_several_streams(void **state)
{
    tuser a, b;
    char room[65];
    (void)state;
    tuser_new(&a, "sseA", g_base);
    tuser_new(&b, "sseB", g_base);
    const char *fa[] = { a.u.id, NULL }, *fb[] = { b.u.id, NULL };
    befriend(&a, fb);
    befriend(&b, fa);

    kh_sse *sa = OPEN_STREAM(&a.b, NULL);
    kh_sse *sb1 = OPEN_STREAM(&b.b, NULL);
    kh_browser tab2 = b.b;                /* a second tab of B's browser */
    kh_sse *sb2 = OPEN_STREAM(&tab2, NULL);

    json_decref(make_room(&a, fb, "live", room));
    kh_sse *all[] = { sa, sb1, sb2 };
    const char *who[] = { a.u.id, b.u.id, b.u.id };
    for (int i = 0; i < 3; i++) {
        const kh_event *e = WAIT_EV(all[i], who[i], "room", room, 0);
        KC_ASSERT_STR_(e->json, "roomName", "live");
        const char *ab[] = { a.u.id, b.u.id, NULL };
        CHECK(kc_check_id_set(json_object_get(e->json, "participants"), ab, "participants"),
              "room event participants: %s", e->data);
    }

    json_int_t s1 = post_msg(&a, room, "hello from A", "a-1");
    json_int_t s2 = post_msg(&b, room, "hello from B", NULL);
    for (int i = 0; i < 3; i++) {
        const kh_event *e = WAIT_EV(all[i], who[i], "chat", room, s1);
        KC_ASSERT_STR_(e->json, "writerId", a.u.id);
        KC_ASSERT_STR_(e->json, "message", "hello from A");
        KC_ASSERT_STR_(e->json, "clientMsgId", "a-1");
        e = WAIT_EV(all[i], who[i], "chat", room, s2);
        KC_ASSERT_STR_(e->json, "writerId", b.u.id);
        KC_ASSERT_STR_(e->json, "message", "hello from B");
    }
    /* every event so far has an id, ids are distinct within a stream */
    for (int i = 0; i < 3; i++) {
        size_t n = kh_sse_count(all[i]);
        for (size_t k = 0; k < n; k++) {
            const kh_event *e = kh_sse_get(all[i], k);
            CHECK_EVENT(all[i], e, who[i]);
            for (size_t j = 0; j < k; j++)
                if (strcmp(kh_sse_get(all[i], j)->id, e->id) == 0) {
                    kh_sse_dump(all[i], "repeated id");
                    FAILF("stream %d: events %zu and %zu share id %s", i, j, k, e->id);
                }
        }
    }
    kh_sse_close(sa);
    kh_sse_close(sb1);
    kh_sse_close(sb2);
}

/* The (roomId, seq) of chat events with index >= @p from, as "seq,seq,...". */
static void chat_seqs(kh_sse *s, size_t from, const char *room, char *out, size_t size)
{
    size_t n = kh_sse_count(s), l = 0;
    out[0] = '\0';
    for (size_t i = from; i < n && l + 24 < size; i++) {
        const kh_event *e = kh_sse_get(s, i);
        if (strcmp(e->event, "chat") == 0 && strcmp(kc_str(e->json, "roomId") ?
                                                    kc_str(e->json, "roomId") : "", room) == 0)
            l += (size_t)snprintf(out + l, size - l, "%s%lld", l ? "," : "",
                                  (long long)kc_int(e->json, "seq", -1));
        else
            l += (size_t)snprintf(out + l, size - l, "%s%s", l ? "," : "", e->event);
    }
}

/*
 * Resume: @p reader's stream on @p base_before receives the room event and
 * chats 1..3, is closed; @p between() runs (e.g. restarts the gateway) and
 * returns the base to reconnect to; chats 4..6 are sent; a reconnect with
 * the Last-Event-ID of chat 3 receives exactly 4, 5, 6.
 */
typedef const char *(*between_fn)(void *arg);

static void resume_scenario(const char *tag, const char *base_before, between_fn between,
                            void *arg)
{
    tuser a, b;
    char room[65], seqs[512], last_id[512];
    tuser_new(&a, tag, g_base);
    tuser_new(&b, tag, g_base);
    const char *fa[] = { a.u.id, NULL }, *fb[] = { b.u.id, NULL };
    befriend(&a, fb);
    befriend(&b, fa);

    kh_browser_set_base(&a.b, base_before);
    kh_sse *s = OPEN_STREAM(&a.b, NULL);
    json_decref(make_room(&b, fa, "resume", room));
    WAIT_EV(s, a.u.id, "room", room, 0);
    for (int i = 1; i <= 3; i++)
        CHECK(post_msg(&b, room, "before", NULL) == i, "seq %d", i);
    const kh_event *e3 = WAIT_EV(s, a.u.id, "chat", room, 3);
    snprintf(last_id, sizeof(last_id), "%s", e3->id);
    kh_sse_close(s);

    const char *base_after = between ? between(arg) : base_before;
    for (int i = 4; i <= 6; i++)
        CHECK(post_msg(&b, room, "after", NULL) == i, "seq %d", i);

    kh_browser_set_base(&a.b, base_after);
    s = OPEN_STREAM(&a.b, last_id);
    for (int i = 4; i <= 6; i++)
        WAIT_EV(s, a.u.id, "chat", room, i);
    kc_sleep_ms(1500);     /* anything repeated would have arrived by now */
    chat_seqs(s, 0, room, seqs, sizeof(seqs));
    if (strcmp(seqs, "4,5,6") != 0) {
        kh_sse_dump(s, "resume");
        FAILF("after Last-Event-ID %s the stream carried [%s], want exactly [4,5,6]", last_id,
              seqs);
    }
    for (size_t i = 0; i < kh_sse_count(s); i++)
        CHECK_EVENT(s, kh_sse_get(s, i), a.u.id);
    /* the session works on whichever gateway the browser talks to */
    kh_resp *r = CALL(&a.b, "GET", "/api/rooms", NULL);
    EXPECT_OK(r, 200, a.u.id);
    kh_resp_free(r);
    kh_sse_close(s);
}

static void test_sse_resume_last_event_id(void **state)
{
    (void)state;
    resume_scenario("rsm", g_base, NULL, NULL);
}

typedef struct restart_ctx {
    kc_proc *gw;
    char base[256];
} restart_ctx;

static const char *restart_gateway(void *arg)
{
    restart_ctx *c = arg;
    proc_stop_checked(c->gw, "kchat gateway");
    kc_proc_free(c->gw);
    c->gw = gateway_start("gw-restart", g_bootstrap, NULL, c->base, sizeof(c->base));
    CHECK(c->gw != NULL, "the restarted kchat gateway did not start");
    return c->base;
}

static void test_sse_resume_across_gateway_restart(void **state)
{
    restart_ctx c = { 0 };
    (void)state;
    c.gw = gateway_start("gw-restart", g_bootstrap, NULL, c.base, sizeof(c.base));
    CHECK(c.gw != NULL, "kchat gateway did not start");
    char first[256];
    snprintf(first, sizeof(first), "%s", c.base);
    resume_scenario("rsg", first, restart_gateway, &c);
    proc_stop_checked(c.gw, "kchat gateway");
    kc_proc_free(c.gw);
}

static void test_sse_idle_comment(void **state)
{
    tuser a;
    (void)state;
    tuser_new(&a, "idle", g_base);
    kh_sse *s = OPEN_STREAM(&a.b, NULL);
    int64_t opened = kc_now_ms();
    /* a comment at connect time does not count: one must come while idle */
    int64_t at = kh_sse_wait_comment(s, opened + 1000, 20000);
    if (at < 0) {
        kh_sse_dump(s, "no idle comment");
        FAILF("no comment line on an idle stream within 20 s (§8: at least every 15 s)");
    }
    fprintf(stderr, "test_http: idle comment after %lld ms\n", (long long)(at - opened));
    CHECK(!kh_sse_ended(s), "the idle stream ended");
    kh_sse_close(s);
}

/* ======================================================================== */
/* Tests: two gateways, 504                                                 */
/* ======================================================================== */

typedef struct gw_worker {
    tuser *t;
    const char *tag;
    int calls;
    int failures;
    char why[1024];
} gw_worker;

static void *gw_worker_main(void *arg)
{
    gw_worker *w = arg;
    for (int i = 0; i < w->calls && w->failures == 0; i++) {
        char st[64];
        snprintf(st, sizeof(st), "%s-%d", w->tag, i);
        kh_resp *r = kh_do(&w->t->b, "PUT", "/api/status", json_pack("{ss}", "userStatus", st));
        const char *got = kc_str(r->json, "userStatus"), *uid = kc_str(r->json, "userId");
        if (r->status != 200 || got == NULL || strcmp(got, st) != 0 || uid == NULL ||
            strcmp(uid, w->t->u.id) != 0) {
            w->failures++;
            snprintf(w->why, sizeof(w->why), "%s: PUT /api/status %s -> %ld %.300s",
                     w->t->b.base, st, r->status, r->body);
        }
        kh_resp_free(r);
        r = kh_do(&w->t->b, "GET", "/api/friends", NULL);
        uid = kc_str(r->json, "userId");
        if (r->status != 200 || uid == NULL || strcmp(uid, w->t->u.id) != 0) {
            w->failures++;
            snprintf(w->why, sizeof(w->why), "%s: GET /api/friends -> %ld %.300s",
                     w->t->b.base, r->status, r->body);
        }
        kh_resp_free(r);
    }
    return NULL;
}

static void test_two_gateways_side_by_side(void **state)
{
    char ba[256], bb[256];
    tuser a, b;
    (void)state;
    kc_proc *ga = gateway_start("gw-a", g_bootstrap, NULL, ba, sizeof(ba));
    CHECK(ga != NULL, "gateway A did not start");
    kc_proc *gb = gateway_start("gw-b", g_bootstrap, NULL, bb, sizeof(bb));
    CHECK(gb != NULL, "gateway B did not start");

    kh_browser probe;
    kh_browser_init(&probe, "probe", ba);
    kh_resp *r = kh_do(&probe, "GET", "/readyz", NULL);
    EXPECT_STATUS(r, 200);
    kh_resp_free(r);

    /* register and log in through different gateways, interleaved */
    tuser_init(&a, "gwA", ba);
    tuser_init(&b, "gwB", bb);
    tuser_register(&a);
    tuser_register(&b);
    tuser_login(&b);
    tuser_login(&a);

    /* concurrent calls through both gateways: each gets its own answers */
    gw_worker wa = { .t = &a, .tag = "via-a", .calls = 8 }, wb = { .t = &b, .tag = "via-b",
                                                                   .calls = 8 };
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, gw_worker_main, &wa), 0);
    assert_int_equal(pthread_create(&tb, NULL, gw_worker_main, &wb), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(wa.failures == 0, "gateway A: %s", wa.why);
    CHECK(wb.failures == 0, "gateway B: %s", wb.why);

    /* a session from one gateway works on the other and on the dev gateway */
    kh_browser_set_base(&a.b, bb);
    r = CALL(&a.b, "GET", "/api/friends", NULL);
    EXPECT_OK(r, 200, a.u.id);
    kh_resp_free(r);
    kh_browser_set_base(&b.b, g_base);
    r = CALL(&b.b, "GET", "/api/friends", NULL);
    EXPECT_OK(r, 200, b.u.id);
    kh_resp_free(r);

    /* events: B listens on gateway A, A writes through gateway B */
    char room[65];
    kh_browser_set_base(&b.b, ba);
    kh_sse *s = OPEN_STREAM(&b.b, NULL);
    const char *fb[] = { b.u.id, NULL };
    befriend(&a, fb);
    json_decref(make_room(&a, fb, "two gateways", room));
    json_int_t seq = post_msg(&a, room, "across gateways", NULL);
    WAIT_EV(s, b.u.id, "room", room, 0);
    WAIT_EV(s, b.u.id, "chat", room, seq);
    kh_sse_close(s);

    proc_stop_checked(ga, "gateway A");
    proc_stop_checked(gb, "gateway B");
    kc_proc_free(ga);
    kc_proc_free(gb);
}

/* A gateway whose backend is gone answers 504 TIMEOUT after --http-timeout-ms. */
static void test_timeout_504_without_backend(void **state)
{
    char base[256];
    (void)state;
    kc_proc *broker = kc_mock_broker_start("bare-broker", 4);
    CHECK(broker != NULL, "kchat broker did not start");
    char *data = kc_tmppath("bare-serve-data");
    kc_proc *serve = kc_serve_start("bare-serve", data, kc_proc_bootstrap(broker), 4, NULL);
    free(data);
    CHECK(serve != NULL, "kchat serve did not start");   /* it creates the topics */
    proc_stop_checked(serve, "kchat serve");
    kc_proc_free(serve);

    kc_proc *gw = gateway_start("gw-nobackend", kc_proc_bootstrap(broker), "1000", base,
                                sizeof(base));
    CHECK(gw != NULL, "kchat gateway did not start against a broker without backend");
    kh_browser b;
    kh_browser_init(&b, "t504", base);
    kh_resp *r = kh_do(&b, "GET", "/healthz", NULL);
    EXPECT_STATUS(r, 200);
    kh_resp_free(r);

    r = CALL(&b, "POST", "/api/users", json_pack("{ss ss ss ss}", "userId", "nobody-home",
                                                 "userPw", "longenough1", "email", "a@b",
                                                 "userName", "n"));
    EXPECT_ERR(r, 504, "TIMEOUT");
    CHECK(r->elapsed_ms >= 900 && r->elapsed_ms <= 4000,
          "504 after %lld ms with --http-timeout-ms 1000", (long long)r->elapsed_ms);
    kh_resp_free(r);
    r = CALL(&b, "POST", "/api/login", json_pack("{ss ss}", "userId", "nobody-home",
                                                 "userPw", "longenough1"));
    EXPECT_ERR(r, 504, "TIMEOUT");
    kh_resp_free(r);
    /* the gateway still answers what needs no backend */
    r = kh_do(&b, "GET", "/healthz", NULL);
    EXPECT_STATUS(r, 200);
    kh_resp_free(r);

    proc_stop_checked(gw, "kchat gateway");
    kc_proc_free(gw);
    proc_stop_checked(broker, "kchat broker");
    kc_proc_free(broker);
}

int main(void)
{
    /* KCHAT_TEST_FILTER=test_sse* runs only the matching tests */
    const char *filter = getenv("KCHAT_TEST_FILTER");
    if (filter != NULL && filter[0] != '\0')
        cmocka_set_test_filter(filter);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_metrics_page),
        cmocka_unit_test(test_register_login_logout),
        cmocka_unit_test(test_logout_with_json_body),
        cmocka_unit_test(test_unauthenticated),
        cmocka_unit_test(test_friends_status_rooms_messages),
        cmocka_unit_test(test_identity_from_cookie_only),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_unsupported_media_type),
        cmocka_unit_test(test_json_with_charset_accepted),
        cmocka_unit_test(test_body_too_large),
        cmocka_unit_test(test_sse_live_two_users_several_streams),
        cmocka_unit_test(test_sse_resume_last_event_id),
        cmocka_unit_test(test_sse_resume_across_gateway_restart),
        cmocka_unit_test(test_sse_idle_comment),
        cmocka_unit_test(test_two_gateways_side_by_side),
        cmocka_unit_test(test_timeout_504_without_backend),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
