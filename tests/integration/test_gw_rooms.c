/*
 * test_gw_rooms: the gateway's routes of PROTOCOL.md section 8 for
 * operations 11-13 (v1.1), with this program as the backend: a gateway
 * without a deployment secret (so requests travel as PROTOCOL.md section 1
 * has them) on `kchat broker`, and a thread that reads room-read-request,
 * room-invite-request and room-leave-request and answers each on its
 * response topic as a backend would.
 *
 *  - POST /api/rooms/{roomId}/read {readSeq}, POST /api/rooms/{roomId}/members
 *    {friendId}, DELETE /api/rooms/{roomId}/members/me: one request each,
 *    keyed by the cookie's user, with userId from the cookie and roomId from
 *    the (percent-decoded) path whatever the body says, the session in
 *    kchat-session; the answer's body and status 200 back; error codes map
 *    to their statuses (404, 403);
 *  - a body of 64 KiB that the added fields push over the record limit
 *    keeps readSeq (only unknown fields are dropped);
 *  - refusals before Kafka: 405 with the path's Allow, 401 without a
 *    cookie, 415, 400 for a room id that is not one, 404 for a path that
 *    is not one, and the Origin check on DELETE (403 across origins, 200
 *    from the page's own); nothing of those reaches Kafka.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "support/http.h"
#include "support/kassert.h"
#include "support/kclient.h"

#define PARTS 4
#define CHECK KC_CHECK
#define MAX_SEEN 256

static kc_proc *g_broker, *g_gw;
static char g_base[256], g_host[256];

static const char *const ops[] = { "room-read", "room-invite", "room-leave" };

/* ---- the fake backend ---- */

typedef struct seen {
    char topic[48];
    char key[80];
    char session[160];
    json_t *body;
} seen;

static struct {
    pthread_mutex_t lock;
    seen recs[MAX_SEEN];
    size_t n;
    bool stop;
    pthread_t thread;
    rd_kafka_t *c, *p;
} g_be = { .lock = PTHREAD_MUTEX_INITIALIZER };

static const char *header(rd_kafka_message_t *m, const char *name, char *out, size_t size)
{
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t vl;

    out[0] = '\0';
    if (rd_kafka_message_headers(m, &h) == 0 && rd_kafka_header_get_last(h, name, &v, &vl) == 0 &&
        v != NULL)
        snprintf(out, size, "%.*s", (int)vl, (const char *)v);
    return out;
}

/* Answer request @p m as a backend: the room ids "missing" and "not-mine"
 * give ROOM_NOT_FOUND and NOT_A_MEMBER, anything else success. */
static void be_answer(rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    char cid[128], rtopic[64];
    seen s = { .body = kc_json_from_bytes(m->payload, m->len) };
    json_t *resp;
    const char *room, *code = "";

    snprintf(s.topic, sizeof(s.topic), "%s", topic);
    snprintf(s.key, sizeof(s.key), "%.*s", (int)(m->key_len < 79 ? m->key_len : 79),
             m->key ? (const char *)m->key : "");
    header(m, "kchat-session", s.session, sizeof(s.session));
    header(m, "kchat-cid", cid, sizeof(cid));
    room = s.body ? kc_str(s.body, "roomId") : NULL;
    if (room && !strcmp(room, "missing"))
        code = "ROOM_NOT_FOUND";
    else if (room && !strcmp(room, "not-mine"))
        code = "NOT_A_MEMBER";
    resp = json_pack("{s:s,s:b,s:s,s:s}", "userId", s.key, "isSuccess", code[0] == '\0',
                     "errorCode", code, "errorMessage", code[0] ? "No." : "");
    if (code[0] == '\0') {
        json_object_set_new(resp, "roomId", json_string(room ? room : ""));
        if (strstr(topic, "room-read"))
            json_object_set(resp, "readSeq", json_object_get(s.body, "readSeq"));
        if (strstr(topic, "room-invite"))
            json_object_set_new(resp, "participants", json_pack("[s]", s.key));
    }
    /* listed before the answer goes out: the HTTP call may end at once */
    pthread_mutex_lock(&g_be.lock);
    if (g_be.n < MAX_SEEN)
        g_be.recs[g_be.n++] = s;
    else
        json_decref(s.body);
    pthread_mutex_unlock(&g_be.lock);
    char *out = json_dumps(resp, JSON_COMPACT);
    snprintf(rtopic, sizeof(rtopic), "%.*s-response", (int)(strlen(topic) - strlen("-request")),
             topic);
    rd_kafka_producev(g_be.p, RD_KAFKA_V_TOPIC(rtopic), RD_KAFKA_V_KEY(m->key, m->key_len),
                      RD_KAFKA_V_VALUE(out, strlen(out)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                      RD_KAFKA_V_HEADER("kchat-cid", cid, -1),
                      RD_KAFKA_V_HEADER("content-type", "application/json", -1), RD_KAFKA_V_END);
    rd_kafka_poll(g_be.p, 0);
    free(out);
    json_decref(resp);
}

static void *be_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&g_be.lock);
        bool stop = g_be.stop;
        pthread_mutex_unlock(&g_be.lock);
        if (stop)
            break;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(g_be.c, 50);
        rd_kafka_poll(g_be.p, 0);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
            be_answer(m);
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

static bool be_start(const char *boot)
{
    char err[256], gid[64];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(16);

    snprintf(gid, sizeof(gid), "kchat-test-rooms-%d", (int)getpid());
    rd_kafka_conf_set(conf, "bootstrap.servers", boot, err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", gid, err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_conf_set(conf, "fetch.wait.max.ms", "20", err, sizeof(err));
    if ((g_be.c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err))) == NULL)
        return false;
    rd_kafka_poll_set_consumer(g_be.c);
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", boot, err, sizeof(err));
    rd_kafka_conf_set(conf, "linger.ms", "0", err, sizeof(err));
    if ((g_be.p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) == NULL)
        return false;
    if (rd_kafka_metadata(g_be.c, 1, NULL, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return false;
    for (size_t i = 0; i < 3; i++) {
        char t[64];
        snprintf(t, sizeof(t), "%s-request", ops[i]);
        int parts = 0;
        for (int j = 0; j < md->topic_cnt; j++)
            if (!strcmp(md->topics[j].topic, t))
                parts = md->topics[j].partition_cnt;
        if (parts <= 0) {
            fprintf(stderr, "test_gw_rooms: no topic %s\n", t);
            rd_kafka_metadata_destroy(md);
            return false;
        }
        for (int p = 0; p < parts; p++)
            rd_kafka_topic_partition_list_add(tp, t, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_metadata_destroy(md);
    bool ok = rd_kafka_assign(g_be.c, tp) == RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_topic_partition_list_destroy(tp);
    return ok && pthread_create(&g_be.thread, NULL, be_main, NULL) == 0;
}

static void be_stop(void)
{
    if (g_be.c == NULL)
        return;
    pthread_mutex_lock(&g_be.lock);
    g_be.stop = true;
    pthread_mutex_unlock(&g_be.lock);
    pthread_join(g_be.thread, NULL);
    rd_kafka_consumer_close(g_be.c);
    rd_kafka_destroy(g_be.c);
    rd_kafka_flush(g_be.p, 2000);
    rd_kafka_destroy(g_be.p);
    for (size_t i = 0; i < g_be.n; i++)
        json_decref(g_be.recs[i].body);
}

static size_t be_count(void)
{
    pthread_mutex_lock(&g_be.lock);
    size_t n = g_be.n;
    pthread_mutex_unlock(&g_be.lock);
    return n;
}

/* The one request the backend saw from @p mark on (no more, no fewer). */
static const seen *be_only(size_t mark)
{
    size_t n = be_count();
    CHECK(n == mark + 1, "the backend saw %zu requests, want 1", n - mark);
    pthread_mutex_lock(&g_be.lock);
    const seen *s = &g_be.recs[mark];
    pthread_mutex_unlock(&g_be.lock);
    return s;
}

/* ---- set-up ---- */

static int group_setup(void **state)
{
    (void)state;
    char *url_file = kc_tmppath("gw-rooms.url");
    g_broker = kc_broker_start("gw-rooms-broker", PARTS);
    if (g_broker == NULL)
        return -1;
    const char *gx[] = { "gateway", "--brokers", kc_proc_bootstrap(g_broker), "--http",
                         "127.0.0.1:0", "--url-file", url_file, "--http-timeout-ms", "5000",
                         NULL };
    g_gw = kc_proc_start("gw-rooms-gw", gx, url_file, 60);
    free(url_file);
    if (g_gw == NULL)
        return -1;
    snprintf(g_base, sizeof(g_base), "%s", kc_proc_bootstrap(g_gw));
    for (size_t l = strlen(g_base); l > 0 && g_base[l - 1] == '/'; l--)
        g_base[l - 1] = '\0';
    snprintf(g_host, sizeof(g_host), "%s", g_base + strlen("http://"));
    return be_start(kc_proc_bootstrap(g_broker)) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    be_stop();
    if (g_gw != NULL)
        kc_proc_stop(g_gw, SIGTERM, 10, NULL);
    kc_proc_free(g_gw);
    if (g_broker != NULL)
        kc_proc_stop(g_broker, SIGTERM, 10, NULL);
    kc_proc_free(g_broker);
    return 0;
}

/* ---- helpers ---- */

/* A browser whose cookie names @p user with session "sid-@p user". */
static void browser(kh_browser *b, const char *user)
{
    char v[160];
    kh_browser_init(b, user, g_base);
    snprintf(v, sizeof(v), "%s.sid-%s", user, user);
    kh_cookie_set(b, "kchat_session", v);
}

static kh_resp *req(kh_browser *b, const char *method, const char *path, json_t *body,
                    const char *const *headers)
{
    kh_req r = { .method = method, .path = path, .json = body, .headers = headers };
    kh_resp *resp = kh_request(b, &r);
    json_decref(body);
    return resp;
}

static void expect_status(kh_resp *r, long status, const char *code)
{
    if (r->status != status || (code && (!r->json || !kc_str(r->json, "errorCode") ||
                                         strcmp(kc_str(r->json, "errorCode"), code))))
        kh_resp_dump(r, "unexpected answer");
    CHECK(r->status == status, "%s: %ld, want %ld", r->what, r->status, status);
    if (code)
        CHECK(r->json && kc_str(r->json, "errorCode") && !strcmp(kc_str(r->json, "errorCode"),
              code), "%s: errorCode, want %s", r->what, code);
}

/* ---- tests ---- */

static void test_read(void **state)
{
    (void)state;
    kh_browser b;
    size_t mark = be_count();
    browser(&b, "alice");

    kh_resp *r = req(&b, "POST", "/api/rooms/r1/read",
                     json_pack("{s:i,s:s,s:s}", "readSeq", 7, "userId", "mallory", "roomId",
                               "elsewhere"), NULL);
    expect_status(r, 200, NULL);
    KC_ASSERT_STR(r->json, "roomId", "r1");
    KC_ASSERT_INT(r->json, "readSeq", 7);
    kh_resp_free(r);
    const seen *s = be_only(mark);
    CHECK(!strcmp(s->topic, "room-read-request"), "topic %s", s->topic);
    CHECK(!strcmp(s->key, "alice"), "key %s", s->key);
    CHECK(!strcmp(s->session, "sid-alice"), "session %s", s->session);
    KC_ASSERT_STR(s->body, "userId", "alice");
    KC_ASSERT_STR(s->body, "roomId", "r1");
    KC_ASSERT_INT(s->body, "readSeq", 7);

    /* a percent-encoded room id is decoded */
    mark = be_count();
    r = req(&b, "POST", "/api/rooms/r%2E2/read", json_pack("{s:i}", "readSeq", 0), NULL);
    expect_status(r, 200, NULL);
    kh_resp_free(r);
    KC_ASSERT_STR(be_only(mark)->body, "roomId", "r.2");
}

static void test_read_large_body(void **state)
{
    (void)state;
    kh_browser b;
    size_t mark = be_count();
    browser(&b, "alice");

    /* 64 KiB exactly as sent; userId and roomId push the record over */
    json_t *body = json_pack("{s:i,s:s}", "readSeq", 3, "pad", "");
    char *text = json_dumps(body, JSON_COMPACT);
    size_t pad = 64 * 1024 - strlen(text);
    free(text);
    char *p = malloc(pad + 1);
    memset(p, 'x', pad);
    p[pad] = '\0';
    json_object_set_new(body, "pad", json_string(p));
    free(p);
    text = json_dumps(body, JSON_COMPACT);
    CHECK(strlen(text) == 64 * 1024, "body of %zu bytes", strlen(text));
    json_decref(body);
    kh_req rq = { .method = "POST", .path = "/api/rooms/r1/read", .raw = text,
                  .raw_len = strlen(text) };
    kh_resp *r = kh_request(&b, &rq);
    free(text);
    expect_status(r, 200, NULL);
    kh_resp_free(r);
    const seen *s = be_only(mark);
    KC_ASSERT_INT(s->body, "readSeq", 3);
    CHECK(json_object_get(s->body, "pad") == NULL, "the unknown field went to Kafka");
}

static void test_invite(void **state)
{
    (void)state;
    kh_browser b;
    size_t mark = be_count();
    browser(&b, "alice");

    kh_resp *r = req(&b, "POST", "/api/rooms/r1/members",
                     json_pack("{s:[s,s]}", "friendId", "bob", "carol"), NULL);
    expect_status(r, 200, NULL);
    KC_ASSERT_STR(r->json, "roomId", "r1");
    CHECK(json_is_array(json_object_get(r->json, "participants")), "no participants");
    kh_resp_free(r);
    const seen *s = be_only(mark);
    CHECK(!strcmp(s->topic, "room-invite-request"), "topic %s", s->topic);
    CHECK(!strcmp(s->key, "alice"), "key %s", s->key);
    KC_ASSERT_STR(s->body, "userId", "alice");
    KC_ASSERT_STR(s->body, "roomId", "r1");
    json_t *f = json_object_get(s->body, "friendId");
    CHECK(json_array_size(f) == 2 && !strcmp(json_string_value(json_array_get(f, 0)), "bob") &&
          !strcmp(json_string_value(json_array_get(f, 1)), "carol"), "friendId %s",
          kc_dumps(s->body));
}

static void test_leave(void **state)
{
    (void)state;
    kh_browser b;
    size_t mark = be_count();
    browser(&b, "alice");

    kh_resp *r = req(&b, "DELETE", "/api/rooms/r1/members/me", NULL, NULL);
    expect_status(r, 200, NULL);
    KC_ASSERT_STR(r->json, "roomId", "r1");
    kh_resp_free(r);
    const seen *s = be_only(mark);
    CHECK(!strcmp(s->topic, "room-leave-request"), "topic %s", s->topic);
    CHECK(!strcmp(s->key, "alice") && !strcmp(s->session, "sid-alice"), "key %s session %s",
          s->key, s->session);
    KC_ASSERT_STR(s->body, "userId", "alice");
    KC_ASSERT_STR(s->body, "roomId", "r1");
    CHECK(json_object_size(s->body) == 2, "leave body %s", kc_dumps(s->body));
}

static void test_error_statuses(void **state)
{
    (void)state;
    kh_browser b;
    browser(&b, "alice");

    kh_resp *r = req(&b, "POST", "/api/rooms/missing/read", json_pack("{s:i}", "readSeq", 1),
                     NULL);
    expect_status(r, 404, "ROOM_NOT_FOUND");
    kh_resp_free(r);
    r = req(&b, "DELETE", "/api/rooms/not-mine/members/me", NULL, NULL);
    expect_status(r, 403, "NOT_A_MEMBER");
    kh_resp_free(r);
    r = req(&b, "POST", "/api/rooms/not-mine/members", json_pack("{s:[s]}", "friendId", "bob"),
            NULL);
    expect_status(r, 403, "NOT_A_MEMBER");
    kh_resp_free(r);
}

/* refused by the gateway itself: nothing reaches Kafka */
static void test_refusals(void **state)
{
    (void)state;
    kh_browser b, anon;
    size_t mark = be_count();
    browser(&b, "alice");
    kh_browser_init(&anon, "anon", g_base);
    static const struct { const char *method, *path, *allow; } m405[] = {
        { "GET", "/api/rooms/r1/read", "POST" },
        { "PUT", "/api/rooms/r1/read", "POST" },
        { "GET", "/api/rooms/r1/members", "POST" },
        { "DELETE", "/api/rooms/r1/members", "POST" },
        { "POST", "/api/rooms/r1/members/me", "DELETE" },
        { "GET", "/api/rooms/r1/members/me", "DELETE" },
    };
    for (size_t i = 0; i < sizeof(m405) / sizeof(m405[0]); i++) {
        kh_resp *r = req(&b, m405[i].method, m405[i].path, NULL, NULL);
        expect_status(r, 405, "METHOD_NOT_ALLOWED");
        const char *allow = kh_header_get(r, "Allow", 0);
        CHECK(allow && !strcmp(allow, m405[i].allow), "%s: Allow %s, want %s", r->what,
              allow ? allow : "(none)", m405[i].allow);
        kh_resp_free(r);
    }
    /* DELETE on another path keeps that path's Allow */
    kh_resp *r = req(&b, "DELETE", "/api/rooms/r1/messages", NULL, NULL);
    expect_status(r, 405, "METHOD_NOT_ALLOWED");
    CHECK(!strcmp(kh_header_get(r, "Allow", 0), "GET, POST"), "Allow of messages");
    kh_resp_free(r);

    r = req(&anon, "POST", "/api/rooms/r1/read", json_pack("{s:i}", "readSeq", 1), NULL);
    expect_status(r, 401, "UNAUTHENTICATED");
    kh_resp_free(r);
    r = req(&anon, "DELETE", "/api/rooms/r1/members/me", NULL, NULL);
    expect_status(r, 401, "UNAUTHENTICATED");
    kh_resp_free(r);
    kh_req tr = { .method = "POST", .path = "/api/rooms/r1/members", .raw = "{}", .raw_len = 2,
                  .ctype = "text/plain" };
    r = kh_request(&b, &tr);
    expect_status(r, 415, "UNSUPPORTED_MEDIA_TYPE");
    kh_resp_free(r);
    static const char *const bad_room[] = { "/api/rooms/bad%20id/read",
                                            "/api/rooms/bad%2Fid/members/me" };
    for (size_t i = 0; i < 2; i++) {
        r = req(&b, i ? "DELETE" : "POST", bad_room[i],
                i ? NULL : json_pack("{s:i}", "readSeq", 1), NULL);
        expect_status(r, 400, "BAD_REQUEST");
        kh_resp_free(r);
    }
    static const char *const nf[] = { "/api/rooms/r1/members/you", "/api/rooms/r1/readx",
                                      "/api/rooms//read", "/api/rooms/r1/members/me/x" };
    for (size_t i = 0; i < 4; i++) {
        r = req(&b, "DELETE", nf[i], NULL, NULL);
        expect_status(r, 404, "NOT_FOUND");
        kh_resp_free(r);
    }
    /* the Origin check covers DELETE */
    const char *evil[] = { "Origin: http://evil.example", NULL };
    r = req(&b, "DELETE", "/api/rooms/r1/members/me", NULL, evil);
    expect_status(r, 403, "FORBIDDEN");
    kh_resp_free(r);
    const char *cross[] = { "Sec-Fetch-Site: cross-site", NULL };
    r = req(&b, "DELETE", "/api/rooms/r1/members/me", NULL, cross);
    expect_status(r, 403, "FORBIDDEN");
    kh_resp_free(r);
    r = req(&b, "POST", "/api/rooms/r1/members", json_pack("{s:[s]}", "friendId", "bob"), evil);
    expect_status(r, 403, "FORBIDDEN");
    kh_resp_free(r);
    CHECK(be_count() == mark, "%zu refused calls reached Kafka", be_count() - mark);

    char own[300];
    snprintf(own, sizeof(own), "Origin: http://%s", g_host);
    const char *same[] = { own, NULL };
    r = req(&b, "DELETE", "/api/rooms/r1/members/me", NULL, same);
    expect_status(r, 200, NULL);
    kh_resp_free(r);
    CHECK(be_count() == mark + 1, "the same-origin DELETE did not reach Kafka");
}

static void test_route_metrics(void **state)
{
    (void)state;
    double v = -1;
    CHECK(kh_metric(g_base, "kchat_gateway_http_requests_total{route=\"room_leave\","
                    "status=\"200\"}", &v), "metrics");
    CHECK(v >= 2, "room_leave 200 counted %g times", v);
    CHECK(kh_metric(g_base, "kchat_gateway_http_requests_total{route=\"room_read\","
                    "status=\"405\"}", &v), "metrics");
    CHECK(v >= 2, "room_read 405 counted %g times", v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read),
        cmocka_unit_test(test_read_large_body),
        cmocka_unit_test(test_invite),
        cmocka_unit_test(test_leave),
        cmocka_unit_test(test_error_statuses),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_route_metrics),
    };
    return cmocka_run_group_tests_name("gw_rooms", tests, group_setup, group_teardown);
}
