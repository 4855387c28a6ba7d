/*
 * kchat-test: kafka (the server follows KCHAT_TEST_BROKERS)
 * The trust boundary on Kafka (issue 12, docs/security.md "Threat model"),
 * tried as an attacker who can read and write every kchat topic but does
 * not hold the deployment secret: `kchat serve` and `kchat gateway` run with
 * --secret-file, the attacker is a plain librdkafka client.
 *
 *  - sniffing: after a browser registered, logged in and used its session,
 *    no record of any topic (requests, responses, events, kchat's internal
 *    topics, the changelog on Kafka) holds its password or its session id,
 *    in key, value or header, and neither does any LMDB file of the server;
 *    the same scan does find the password a raw-protocol client sent in the
 *    clear (so the scan can see what it looks for);
 *  - forged answers: a login with a wrong password, answered by the attacker
 *    with `isSuccess: true` and a session (a record of its own, and a genuine
 *    signed login-response with only its kchat-cid changed), gets no session
 *    cookie: the gateway drops both and counts them;
 *  - forged events: a chat event the attacker writes to chat-events for bob
 *    (its own, and a genuine signed one with the message changed) never
 *    reaches bob's event stream, while a real message after it does;
 *  - forged commands: a record the attacker writes to kchat-internal is
 *    dropped and counted by the backend (kchat_records_refused_total);
 *  - moved session proofs: the sealed kchat-session of a gateway's request,
 *    copied onto the attacker's own request for that user (in the clear,
 *    marked sealed, or with the captured sealed value under a new kchat-cid),
 *    is answered UNAUTHENTICATED.
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
#define HTTP_TIMEOUT_MS "3000"

#define CHECK KC_CHECK

static kc_proc *g_broker, *g_srv, *g_gw;
static kc_client *g_c;
static char g_base[256], g_metrics[96];
static char *g_data;

/* ---- set-up ---- */

static int group_setup(void **state)
{
    char addr[64];
    (void)state;
    int port = kc_free_port();
    if (port <= 0)
        return -1;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    snprintf(g_metrics, sizeof(g_metrics), "http://%s", addr);
    const char *extra[] = { "--metrics-http", addr, NULL };
    g_data = kc_tmppath("forgery-data");
    kc_rm_rf(g_data);
    /* a broker of its own (the embedded one would pause with the backend) */
    g_broker = kc_broker_start("forgery-broker", PARTS);
    if (g_broker == NULL)
        return -1;
    g_srv = kc_serve_start("forgery-serve", g_data, kc_proc_bootstrap(g_broker), PARTS, extra);
    if (g_srv == NULL)
        return -1;
    const char *gx[] = { "--brokers", kc_proc_bootstrap(g_srv), "--http-timeout-ms",
                         HTTP_TIMEOUT_MS, NULL };
    g_gw = kc_gateway_start("forgery-gw", gx, g_base, sizeof(g_base));
    if (g_gw == NULL)
        return -1;
    g_c = kc_client_new(kc_proc_bootstrap(g_srv), KC_FROM_BEGINNING);
    return g_c != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    kc_client_free(g_c);
    if (g_gw != NULL)
        kc_proc_stop(g_gw, SIGTERM, 10, NULL);
    kc_proc_free(g_gw);
    if (g_srv != NULL)
        kc_proc_stop(g_srv, SIGTERM, 10, NULL);
    kc_proc_free(g_srv);
    if (g_broker != NULL)
        kc_proc_stop(g_broker, SIGTERM, 10, NULL);
    kc_proc_free(g_broker);
    free(g_data);
    return 0;
}

/* ---- browsers ---- */

typedef struct buser {
    kh_browser b;
    char id[72];
    char pw[48];
} buser;

static void buser_new(buser *u, const char *tag)
{
    kc_uid(u->id, sizeof(u->id), tag);
    kc_new_password(u->pw, sizeof(u->pw));
    kh_browser_init(&u->b, u->id, g_base);
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "userId", u->id, "userPw", u->pw,
                             "email", "x@example.com", "userName", u->id);
    kh_resp *r = kh_do(&u->b, "POST", "/api/users", body);
    CHECK(r->status == 201, "register %s: %ld", u->id, r->status);
    kh_resp_free(r);
    body = json_pack("{s:s, s:s}", "userId", u->id, "userPw", u->pw);
    r = kh_do(&u->b, "POST", "/api/login", body);
    CHECK(r->status == 200, "login %s: %ld", u->id, r->status);
    kh_resp_free(r);
    CHECK(kh_cookie_get(&u->b, "kchat_session") != NULL, "no session cookie for %s", u->id);
}

/* The session id of @p u's cookie ("USER.SID"). */
static const char *buser_sid(const buser *u)
{
    const char *c = kh_cookie_get(&u->b, "kchat_session");
    const char *dot = c ? strchr(c, '.') : NULL;
    return dot ? dot + 1 : "";
}

static double metric(const char *base, const char *name)
{
    double v = -1;
    CHECK(kh_metric(base, name, &v), "no metric %s at %s", name, base);
    return v;
}

/* ---- an attacker's raw consumer ---- */

/* A consumer of every partition of @p topics (NULL-terminated; NULL: every
 * topic but Kafka's own), from the beginning or (@p from_end) from now. */
static rd_kafka_t *sniffer_new(const char *const *topics, bool from_end)
{
    char err[256], gid[64];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(64);
    rd_kafka_t *rk;

    snprintf(gid, sizeof(gid), "attacker-%d-%lld", (int)getpid(), (long long)kc_now_ms());
    rd_kafka_conf_set(conf, "bootstrap.servers", kc_proc_bootstrap(g_srv), err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", gid, err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    assert_non_null(rk);
    assert_int_equal(rd_kafka_metadata(rk, 1, NULL, &md, 10000), 0);
    for (int t = 0; t < md->topic_cnt; t++) {
        const char *name = md->topics[t].topic;
        bool want = topics == NULL ? strncmp(name, "__", 2) != 0 : false;

        for (size_t i = 0; topics != NULL && topics[i] != NULL; i++)
            want = want || !strcmp(topics[i], name);
        for (int p = 0; want && p < md->topics[t].partition_cnt; p++) {
            int64_t lo = 0, hi = 0;
            if (from_end)
                assert_int_equal(rd_kafka_query_watermark_offsets(rk, name, p, &lo, &hi,
                                                                  10000), 0);
            rd_kafka_topic_partition_list_add(tp, name, p)->offset =
                from_end ? hi : RD_KAFKA_OFFSET_BEGINNING;
        }
    }
    rd_kafka_metadata_destroy(md);
    assert_true(tp->cnt > 0);
    assert_int_equal(rd_kafka_assign(rk, tp), 0);
    rd_kafka_topic_partition_list_destroy(tp);
    return rk;
}

static bool contains(const void *hay, size_t len, const char *needle)
{
    size_t nl = strlen(needle);
    return hay != NULL && len >= nl && memmem(hay, len, needle, nl) != NULL;
}

/* Whether @p m holds @p needle in its key, value or any header. */
static bool record_holds(const rd_kafka_message_t *m, const char *needle)
{
    rd_kafka_headers_t *h = NULL;
    const char *name;
    const void *v;
    size_t vl;

    if (contains(m->key, m->key_len, needle) || contains(m->payload, m->len, needle))
        return true;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
        for (size_t i = 0; !rd_kafka_header_get_all(h, i, &name, &v, &vl); i++)
            if (contains(v, vl, needle))
                return true;
    return false;
}

/* Read every partition of every topic to its end; the records holding
 * @p a and @p b (either may be NULL) counted into @p na and @p nb. */
static void scan_topics(const char *a, size_t *na, const char *b, size_t *nb)
{
    rd_kafka_t *rk = sniffer_new(NULL, false);
    rd_kafka_topic_partition_list_t *asg = NULL;
    int64_t quiet_since = kc_now_ms(), deadline = kc_now_ms() + 60000;
    int eofs = 0, parts;

    assert_int_equal(rd_kafka_assignment(rk, &asg), 0);
    parts = asg->cnt;
    rd_kafka_topic_partition_list_destroy(asg);
    *na = *nb = 0;
    while (eofs < parts && kc_now_ms() < deadline && kc_now_ms() - quiet_since < 10000) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL)
            continue;
        quiet_since = kc_now_ms();
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            eofs++;
        else if (!m->err) {
            if (a && record_holds(m, a)) {
                (*na)++;
                fprintf(stderr, "scan: %s [%d] @%lld holds \"%s\"\n",
                        rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset, a);
            }
            if (b && record_holds(m, b))
                (*nb)++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    CHECK(eofs >= parts, "scan: only %d of %d partitions read to their end", eofs, parts);
}

/* ======================================================================== */

/* Nothing readable on Kafka or on disk gives a browser's password or
 * session away; a raw-protocol client's password is readable (the scan
 * sees what it looks for). */
static void test_sniffing_finds_no_password_or_session(void **state)
{
    (void)state;
    buser u;
    buser_new(&u, "sniffed");
    kh_resp *r = kh_do(&u.b, "GET", "/api/rooms", NULL);
    CHECK(r->status == 200, "GET /api/rooms: %ld", r->status);
    kh_resp_free(r);
    r = kh_do(&u.b, "PUT", "/api/status", json_pack("{s:s}", "userStatus", "sniff me"));
    CHECK(r->status == 200, "PUT /api/status: %ld", r->status);
    kh_resp_free(r);

    kc_user raw;
    CHECK(kc_user_new(g_c, &raw, "rawclient"), "a raw-protocol user");
    const char *sid = buser_sid(&u);
    CHECK(strlen(sid) >= 32, "session id \"%s\"", sid);

    size_t n_pw = 0, n_raw = 0, n_sid = 0, n_none = 0;
    scan_topics(u.pw, &n_pw, raw.pw, &n_raw);
    scan_topics(sid, &n_sid, NULL, &n_none);
    CHECK(n_pw == 0, "the browser's password is in %zu records", n_pw);
    CHECK(n_sid == 0, "the browser's session id is in %zu records", n_sid);
    CHECK(n_raw >= 1, "the raw client's password (sent in the clear) was not found: "
          "the scan does not see what it looks for");

    size_t n_env = 0;
    char **envs = kc_find_lmdb_envs(g_data, &n_env);
    CHECK(n_env > 0, "no LMDB environment under %s", g_data);
    for (size_t i = 0; i < n_env; i++) {
        char *f = NULL;
        assert_true(asprintf(&f, "%s/data.mdb", envs[i]) > 0);
        CHECK(!kc_file_contains(f, sid, strlen(sid)), "%s holds the session id", f);
        CHECK(!kc_file_contains(f, u.pw, strlen(u.pw)), "%s holds the password", f);
        free(f);
    }
    kc_strv_free(envs);
}

/* ---- forged login answers ---- */

struct forger {
    const char *victim;
    const kc_record *genuine;   /* a signed login-response to re-send with a new cid */
    int forged;                 /* records written */
};

/* The attacker: waits for the victim's login-request, then answers it
 * itself, once with a record of its own and once with @p genuine. */
static void *forger_main(void *arg)
{
    struct forger *f = arg;
    const char *topics[] = { "login-request", NULL };
    rd_kafka_t *rk = sniffer_new(topics, true);
    int64_t deadline = kc_now_ms() + 15000;

    while (kc_now_ms() < deadline && f->forged == 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        const void *cid;
        size_t cl;
        rd_kafka_headers_t *h = NULL;

        if (m == NULL)
            continue;
        if (!m->err && m->key_len == strlen(f->victim) &&
            !memcmp(m->key, f->victim, m->key_len) &&
            rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            rd_kafka_header_get_last(h, KC_HDR_CID, &cid, &cl) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            char body[512];
            snprintf(body, sizeof(body),
                     "{\"userId\":\"%s\",\"isSuccess\":true,\"errorCode\":\"\",\"errorMessage\":"
                     "\"\",\"sessionId\":\"abababababababababababababababab\",\"user\":"
                     "{\"userId\":\"%s\"}}", f->victim, f->victim);
            kc_header hd[] = { { KC_HDR_CID, cid, cl }, { KC_HDR_CTYPE, KC_CT_JSON, 16 } };
            if (kc_send_raw(g_c, "login-response", -1, f->victim, strlen(f->victim), body,
                            strlen(body), hd, 2))
                f->forged++;
            /* the genuine record, every header kept but the cid */
            kc_header g[16];
            size_t n = 0;
            for (size_t i = 0; i < f->genuine->header_cnt && n < 15; i++) {
                const kc_rec_header *x = &f->genuine->headers[i];
                if (!strcmp(x->name, KC_HDR_CID))
                    g[n++] = (kc_header){ KC_HDR_CID, cid, cl };
                else
                    g[n++] = (kc_header){ x->name, x->value, x->len };
            }
            if (kc_send_raw(g_c, "login-response", -1, f->victim, strlen(f->victim),
                            f->genuine->value, f->genuine->value_len, g, n))
                f->forged++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return NULL;
}

static bool is_login_of(const kc_record *r, void *arg)
{
    return !strcmp(r->topic, "login-response") && kc_record_key_is(r, arg);
}

/* With the backend paused, only the attacker answers a login with a wrong
 * password: the gateway believes neither forgery. */
static void test_forged_login_answer_gets_no_session(void **state)
{
    (void)state;
    buser carol;
    buser_new(&carol, "carol");
    /* carol's genuine (signed, sealed) login-response, to be re-sent */
    const kc_record *genuine = kc_wait_record(g_c, 0, is_login_of, carol.id, 10000);
    CHECK(genuine != NULL, "carol's login-response was not seen on Kafka");
    CHECK(kc_record_has_header(genuine, "kchat-mac"), "a login-response without kchat-mac");

    double refused0 = metric(g_base, "kchat_gateway_records_refused_total");
    struct forger f = { .victim = carol.id, .genuine = genuine };
    pthread_t t;
    kill(kc_proc_pid(g_srv), SIGSTOP);
    assert_int_equal(pthread_create(&t, NULL, forger_main, &f), 0);
    kc_sleep_ms(1000);   /* the attacker is reading */

    kh_browser intruder;
    kh_browser_init(&intruder, "intruder", g_base);
    json_t *body = json_pack("{s:s, s:s}", "userId", carol.id, "userPw", "wrong password!");
    kh_resp *r = kh_do(&intruder, "POST", "/api/login", body);
    pthread_join(t, NULL);
    kill(kc_proc_pid(g_srv), SIGCONT);

    CHECK(f.forged == 2, "the attacker wrote %d forged answers, expected 2", f.forged);
    if (r->status == 200 || kh_cookie_get(&intruder, "kchat_session") != NULL)
        kh_resp_dump(r, "a forged login answer was believed");
    CHECK(r->status == 504, "login with a wrong password and a forged answer: %ld, expected "
          "504 (no genuine answer while the backend is paused)", r->status);
    CHECK(kh_cookie_get(&intruder, "kchat_session") == NULL, "a session cookie was set");
    kh_resp_free(r);
    double refused = metric(g_base, "kchat_gateway_records_refused_total");
    CHECK(refused >= refused0 + 2, "kchat_gateway_records_refused_total went %g -> %g",
          refused0, refused);

    /* the backend answers again, and carol still logs in */
    body = json_pack("{s:s, s:s}", "userId", carol.id, "userPw", carol.pw);
    r = kh_do(&carol.b, "POST", "/api/login", body);
    CHECK(r->status == 200, "carol's own login after the attack: %ld", r->status);
    kh_resp_free(r);
}

/* ---- forged events ---- */

static bool is_chat_to(const kc_record *r, void *arg)
{
    return !strcmp(r->topic, KC_TOPIC_EVENTS) && kc_record_key_is(r, arg) && r->body &&
           json_is_string(json_object_get(r->body, "type")) &&
           !strcmp(json_string_value(json_object_get(r->body, "type")), "chat");
}

static bool event_says(const kh_event *e, void *arg)
{
    return e->data != NULL && strstr(e->data, arg) != NULL;
}

static void test_forged_event_not_delivered(void **state)
{
    (void)state;
    buser alice, bob;
    buser_new(&alice, "ev-alice");
    buser_new(&bob, "ev-bob");
    kh_resp *r = kh_do(&alice.b, "POST", "/api/friends", json_pack("{s:[s]}", "friendId", bob.id));
    CHECK(r->status == 200, "friends: %ld", r->status);
    kh_resp_free(r);
    r = kh_do(&alice.b, "POST", "/api/rooms", json_pack("{s:[s]}", "friendId", bob.id));
    CHECK(r->status == 201, "room: %ld", r->status);
    const char *rid = json_string_value(json_object_get(r->json, "roomId"));
    if (rid == NULL)
        rid = json_string_value(json_object_get(json_object_get(r->json, "room"), "roomId"));
    CHECK(rid != NULL, "no roomId in the answer");
    char room[96], path[160];
    snprintf(room, sizeof(room), "%s", rid);
    kh_resp_free(r);
    snprintf(path, sizeof(path), "/api/rooms/%s/messages", room);

    kh_sse *s = kh_sse_open(&bob.b, "/api/events", NULL, 10000);
    CHECK(kh_sse_status(s) == 200, "bob's event stream: %ld", kh_sse_status(s));
    size_t mark = kc_record_count(g_c);
    r = kh_do(&alice.b, "POST", path, json_pack("{s:s}", "message", "the first, genuine"));
    CHECK(r->status == 201, "first message: %ld", r->status);
    kh_resp_free(r);
    CHECK(kh_sse_wait(s, 0, event_says, (void *)"the first, genuine", 10000) != NULL,
          "bob did not get the genuine message");
    const kc_record *genuine = kc_wait_record(g_c, mark, is_chat_to, bob.id, 10000);
    CHECK(genuine != NULL, "bob's chat event not seen on Kafka");

    /* 1: a record of the attacker's own */
    char forged[512];
    snprintf(forged, sizeof(forged),
             "{\"type\":\"chat\",\"userId\":\"%s\",\"roomId\":\"%s\",\"seq\":99,\"writerId\":"
             "\"%s\",\"message\":\"FORGED one\",\"createdAt\":\"2026-12-04T00:00:00.000Z\","
             "\"clientMsgId\":\"\"}", bob.id, room, alice.id);
    kc_header ct = { KC_HDR_CTYPE, KC_CT_JSON, 16 };
    CHECK(kc_send_raw(g_c, KC_TOPIC_EVENTS, -1, bob.id, strlen(bob.id), forged, strlen(forged),
                      &ct, 1), "forged event not written");
    /* 2: the genuine record with its MAC, the message changed */
    char *text = strdup(genuine->value);
    char *at = strstr(text, "the first, genuine");
    CHECK(at != NULL, "the genuine event value: %s", genuine->value);
    memcpy(at, "FORGED two, genuine", 18);
    kc_header g[16];
    size_t n = 0;
    for (size_t i = 0; i < genuine->header_cnt && n < 16; i++)
        g[n++] = (kc_header){ genuine->headers[i].name, genuine->headers[i].value,
                              genuine->headers[i].len };
    CHECK(kc_send_raw(g_c, KC_TOPIC_EVENTS, -1, bob.id, strlen(bob.id), text, strlen(text), g, n),
          "altered event not written");
    free(text);

    r = kh_do(&alice.b, "POST", path, json_pack("{s:s}", "message", "the second, genuine"));
    CHECK(r->status == 201, "second message: %ld", r->status);
    kh_resp_free(r);
    CHECK(kh_sse_wait(s, 0, event_says, (void *)"the second, genuine", 10000) != NULL,
          "bob did not get the second genuine message");
    kc_sleep_ms(500);
    CHECK(kh_sse_wait(s, 0, event_says, (void *)"FORGED", 0) == NULL, "a forged event reached bob");
    kh_sse_close(s);
}

/* ---- forged commands ---- */

static void test_forged_command_dropped(void **state)
{
    (void)state;
    double before = metric(g_metrics, "kchat_records_refused_total");
    const char *v = "{\"cmd\":\"room-join\",\"roomId\":\"r-forged\",\"userId\":\"nobody\"}";
    kc_header h[] = { { "kchat-src-shard", "1", 1 }, { "kchat-src-seq", "1", 1 } };
    for (int32_t p = 0; p < PARTS; p++)
        CHECK(kc_send_raw(g_c, "kchat-internal", p, "nobody", 6, v, strlen(v), h, 2),
              "forged command to partition %d not written", (int)p);
    double after = before;
    for (int i = 0; i < 100 && after < before + PARTS; i++) {
        kc_sleep_ms(100);
        after = metric(g_metrics, "kchat_records_refused_total");
    }
    CHECK(after >= before + PARTS, "kchat_records_refused_total went %g -> %g after %d forged "
          "commands", before, after, PARTS);
}

/* ---- moved session proofs ---- */

/* A copy of the first sealed request of @p user the attacker sees. */
struct capture {
    const char *user;
    bool got, sealed;
    char value[4096];
    size_t len;
    char session[512];
    size_t slen;
};

static void *capture_main(void *arg)
{
    struct capture *c = arg;
    const char *topics[] = { "user-search-room-request", NULL };
    rd_kafka_t *rk = sniffer_new(topics, true);
    int64_t deadline = kc_now_ms() + 15000;

    while (kc_now_ms() < deadline && !c->got) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        rd_kafka_headers_t *h = NULL;
        const void *v;
        size_t vl;

        if (m == NULL)
            continue;
        if (!m->err && m->key_len == strlen(c->user) && !memcmp(m->key, c->user, m->key_len) &&
            m->len <= sizeof(c->value) && rd_kafka_message_headers(m, &h) == 0) {
            c->got = true;
            memcpy(c->value, m->payload, m->len);
            c->len = m->len;
            if (!rd_kafka_header_get_last(h, KC_HDR_SESSION, &v, &vl) && vl < sizeof(c->session)) {
                memcpy(c->session, v, vl);
                c->slen = vl;
            }
            c->sealed = !rd_kafka_header_get_last(h, "kchat-sealed", &v, &vl);
        }
        rd_kafka_message_destroy(m);   /* rd_kafka_destroy() waits for every message */
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return NULL;
}

/* Send @p value as user-search-room for @p user with the given headers;
 * its errorCode must be UNAUTHENTICATED. */
static void expect_unauthenticated(const char *what, const char *user, const void *value,
                                   size_t len, const void *session, size_t slen, bool sealed)
{
    char cid[64];
    snprintf(cid, sizeof(cid), "attack-%lld-%d", (long long)kc_now_ms(), rand());
    kc_header h[4];
    size_t n = 0;
    h[n++] = (kc_header){ KC_HDR_CID, cid, strlen(cid) };
    h[n++] = (kc_header){ KC_HDR_CTYPE, KC_CT_JSON, 16 };
    h[n++] = (kc_header){ KC_HDR_SESSION, session, slen };
    if (sealed)
        h[n++] = (kc_header){ "kchat-sealed", "1", 1 };
    CHECK(kc_send_raw(g_c, "user-search-room-request", -1, user, strlen(user), value, len, h, n),
          "%s: not written", what);
    const kc_record *r = kc_wait_cid(g_c, "user-search-room", cid, 10000);
    CHECK(r != NULL && r->body != NULL, "%s: no answer", what);
    const char *code = json_string_value(json_object_get(r->body, "errorCode"));
    if (code == NULL || strcmp(code, "UNAUTHENTICATED"))
        kc_record_dump(r, what);
    CHECK(code != NULL && !strcmp(code, "UNAUTHENTICATED"), "%s: answered %s, expected "
          "UNAUTHENTICATED", what, code ? code : "(none)");
}

static void test_moved_session_proof_refused(void **state)
{
    (void)state;
    buser dave;
    buser_new(&dave, "dave");
    struct capture cap = { .user = dave.id };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, capture_main, &cap), 0);
    kc_sleep_ms(1000);
    kh_resp *r = kh_do(&dave.b, "GET", "/api/rooms", NULL);
    CHECK(r->status == 200, "GET /api/rooms: %ld", r->status);
    kh_resp_free(r);
    pthread_join(t, NULL);
    CHECK(cap.got, "dave's user-search-room-request was not captured");
    const char *session = cap.session;
    size_t sl = cap.slen;
    CHECK(sl > 0, "the captured request has no kchat-session");
    CHECK(cap.sealed, "the captured request is not sealed");
    CHECK(!contains(session, sl, buser_sid(&dave)), "the session id is readable in the header");

    char plain[128];
    snprintf(plain, sizeof(plain), "{\"userId\":\"%s\"}", dave.id);
    expect_unauthenticated("the proof as a plain session", dave.id, plain, strlen(plain),
                           session, sl, false);
    expect_unauthenticated("the proof on a value of the attacker's", dave.id, plain,
                           strlen(plain), session, sl, true);
    expect_unauthenticated("the captured request under a new kchat-cid", dave.id, cap.value,
                           cap.len, session, sl, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sniffing_finds_no_password_or_session),
        cmocka_unit_test(test_forged_login_answer_gets_no_session),
        cmocka_unit_test(test_forged_event_not_delivered),
        cmocka_unit_test(test_forged_command_dropped),
        cmocka_unit_test(test_moved_session_proof_refused),
    };
    return cmocka_run_group_tests_name("forgery", tests, group_setup, group_teardown);
}
