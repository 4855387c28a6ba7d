/*
 * kchat-test: kafka-only (run only on real Apache Kafka, by `make check-kafka`)
 * kchat-test: kafka-secure (tests/run.sh starts its cluster with `scripts/kafka start --secure`)
 *
 * test_acl: kchat on a Kafka cluster with ACLs (docs/security.md, "Kafka
 * ACLs"). The cluster is the one `scripts/kafka start --secure` makes:
 * SASL_PLAINTEXT listeners, the StandardAuthorizer, nothing allowed that no
 * ACL allows, and the users backend, gateway, client and stranger with the
 * ACLs of their roles; KCHAT_TEST_KAFKA_DIR/clients/USER.conf holds each
 * user's librdkafka settings.
 *
 *  - `kchat serve` as backend and `kchat gateway` as gateway serve a whole
 *    round through HTTP: register, log in, befriend, a room, a chat message
 *    delivered on the event stream.
 *  - As an attacker, with librdkafka: the stranger reads no response topic,
 *    the client and the stranger read neither kchat-changelog nor
 *    kchat-internal, nobody but the backend writes chat-events, nobody but
 *    the gateway writes kchat-presence (which the backend reads and the
 *    gateway does not), the client writes no response topic, and neither
 *    joins kchat's consumer group.
 *    Every refusal is the broker's authorization error for that resource,
 *    not a timeout. What the client role may do (send a request, read its
 *    answer) is checked too, so that the refusals are not a broken client.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "support/http.h"
#include "support/kclient.h"

#define PARTS 4
/* how long a refusal may take to arrive (it comes in well under a second) */
#define REFUSAL_WAIT_MS 20000

static char g_dir[4096];          /* the cluster directory */
static char g_boot[512];          /* its SASL bootstrap */
static kc_proc *g_srv, *g_gw;
static char g_base[256];          /* the gateway's URL */
static char g_alice[65], g_pw[64];

/* DIR/clients/@p user@p suffix, malloc'd */
static char *client_file(const char *user, const char *suffix)
{
    char path[4300];
    snprintf(path, sizeof(path), "%s/clients/%s%s", g_dir, user, suffix);
    return strdup(path);
}

/* A librdkafka configuration with @p user's settings (USER.conf: KEY=VALUE
 * lines) and then the NULL-terminated KEY, VALUE pairs of @p extra. */
static rd_kafka_conf_t *user_conf(const char *user, const char *const *extra)
{
    char *path = client_file(user, ".conf"), *text = kc_read_file(path, NULL);
    char *line, *save = NULL, err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    assert_non_null(text);
    for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        assert_non_null(eq);
        *eq = '\0';
        if (rd_kafka_conf_set(conf, line, eq + 1, err, sizeof(err)) != RD_KAFKA_CONF_OK)
            fail_msg("%s: %s", path, err);
    }
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i += 2)
        if (rd_kafka_conf_set(conf, extra[i], extra[i + 1], err, sizeof(err)) != RD_KAFKA_CONF_OK)
            fail_msg("%s: %s", extra[i], err);
    rd_kafka_conf_set(conf, "log_level", "2", NULL, 0);
    free(text);
    free(path);
    return conf;
}

static rd_kafka_t *user_handle(const char *user, rd_kafka_type_t type, const char *const *extra)
{
    char err[512];
    rd_kafka_conf_t *conf = user_conf(user, extra);
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (rk == NULL)
        fail_msg("rd_kafka_new as %s: %s", user, err);
    if (type == RD_KAFKA_CONSUMER)
        rd_kafka_poll_set_consumer(rk);
    return rk;
}

/* ------------------------------------------------------------------------ */
/* what an attacker tries                                                     */
/* ------------------------------------------------------------------------ */

/* the last delivery report of produce_as() (its thread only) */
static rd_kafka_resp_err_t delivered;
static int reports;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    delivered = m->err;
    reports++;
}

/* The result of producing one record to @p topic as @p user: the delivery
 * report's error (RD_KAFKA_RESP_ERR__TIMED_OUT when none came within
 * REFUSAL_WAIT_MS). */
static rd_kafka_resp_err_t produce_as(const char *user, const char *topic, const char *key,
                                      const char *value)
{
    static const char *const extra[] = { "message.timeout.ms", "15000", NULL };
    rd_kafka_conf_t *conf = user_conf(user, extra);
    char err[512];
    rd_kafka_t *rk;

    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) == NULL)
        fail_msg("rd_kafka_new as %s: %s", user, err);
    delivered = RD_KAFKA_RESP_ERR__TIMED_OUT;
    reports = 0;
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE((void *)value, strlen(value)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADER("kchat-cid", "forged-by-test-acl", -1), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_destroy(rk);
        return e;
    }
    int64_t deadline = kc_now_ms() + REFUSAL_WAIT_MS;
    while (reports == 0 && kc_now_ms() < deadline)
        rd_kafka_poll(rk, 100);
    rd_kafka_destroy(rk);
    fprintf(stderr, "test_acl: %s writing %s: %s\n", user, topic, rd_kafka_err2name(delivered));
    return delivered;
}

/* What @p user meets reading partition 0 of @p topic from its beginning:
 * first the topic's metadata (a principal that may not even describe the
 * topic gets its authorization error there, and Read implies Describe),
 * then a fetch with the simple consumer (no group, so that a group's
 * authorization cannot stand in for the topic's): its first error. Fails
 * the test when a record is read. RD_KAFKA_RESP_ERR__TIMED_OUT when
 * nothing happened within REFUSAL_WAIT_MS. */
static rd_kafka_resp_err_t read_as(const char *user, const char *topic)
{
    rd_kafka_t *rk = user_handle(user, RD_KAFKA_CONSUMER, NULL);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t got;

    assert_non_null(rkt);
    got = rd_kafka_metadata(rk, 0, rkt, &md, REFUSAL_WAIT_MS);
    if (got == RD_KAFKA_RESP_ERR_NO_ERROR) {
        assert_int_equal(md->topic_cnt, 1);
        got = md->topics[0].err;
        rd_kafka_metadata_destroy(md);
    }
    if (got == RD_KAFKA_RESP_ERR_NO_ERROR) {
        got = RD_KAFKA_RESP_ERR__TIMED_OUT;
        assert_int_equal(rd_kafka_consume_start(rkt, 0, RD_KAFKA_OFFSET_BEGINNING), 0);
        int64_t deadline = kc_now_ms() + REFUSAL_WAIT_MS;
        while (got == RD_KAFKA_RESP_ERR__TIMED_OUT && kc_now_ms() < deadline) {
            rd_kafka_message_t *m = rd_kafka_consume(rkt, 0, 100);
            if (m == NULL)
                continue;
            if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
                fail_msg("%s read a record of %s (offset %lld): the ACLs let it through",
                         user, topic, (long long)m->offset);
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                got = m->err;
            rd_kafka_message_destroy(m);
        }
        rd_kafka_consume_stop(rkt, 0);
    }
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    fprintf(stderr, "test_acl: %s reading %s: %s\n", user, topic, rd_kafka_err2name(got));
    return got;
}

/* The first error a member of consumer group @p group (as @p user)
 * subscribed to @p topic meets; fails the test when it gets a partition
 * assigned or reads a record. */
static rd_kafka_resp_err_t join_as(const char *user, const char *group, const char *topic)
{
    const char *const extra[] = { "group.id", group, "enable.auto.commit", "false",
                                  "auto.offset.reset", "earliest", NULL };
    rd_kafka_t *rk = user_handle(user, RD_KAFKA_CONSUMER, extra);
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_t *mine = NULL;
    rd_kafka_resp_err_t got = RD_KAFKA_RESP_ERR__TIMED_OUT;

    rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(rk, subs), 0);
    rd_kafka_topic_partition_list_destroy(subs);
    int64_t deadline = kc_now_ms() + REFUSAL_WAIT_MS;
    while (got == RD_KAFKA_RESP_ERR__TIMED_OUT && kc_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m != NULL) {
            if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
                fail_msg("%s read %s in group %s", user, topic, group);
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                got = m->err;
            rd_kafka_message_destroy(m);
        }
        if (rd_kafka_assignment(rk, &mine) == 0) {
            int n = mine->cnt;
            rd_kafka_topic_partition_list_destroy(mine);
            if (n > 0)
                fail_msg("%s was assigned %d partition(s) of %s in group %s", user, n, topic,
                         group);
        }
    }
    rd_kafka_unsubscribe(rk);
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    fprintf(stderr, "test_acl: %s joining group %s: %s\n", user, group, rd_kafka_err2name(got));
    return got;
}

/* Whether @p user (a role) reads, within REFUSAL_WAIT_MS, a record of
 * kchat-presence keyed @p key whose value holds @p needle, in @p key's
 * partition (the simple consumer: no group). */
static bool presence_read_as(const char *user, const char *key, const char *needle)
{
    rd_kafka_t *rk = user_handle(user, RD_KAFKA_CONSUMER, NULL);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, "kchat-presence", NULL);
    int32_t part = kc_partition_for(key, PARTS);
    bool found = false;

    assert_non_null(rkt);
    assert_int_equal(rd_kafka_consume_start(rkt, part, RD_KAFKA_OFFSET_BEGINNING), 0);
    int64_t deadline = kc_now_ms() + REFUSAL_WAIT_MS;
    while (!found && kc_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consume(rkt, part, 100);
        if (m == NULL)
            continue;
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            fail_msg("%s reading kchat-presence: %s", user, rd_kafka_err2name(m->err));
        found = !m->err && m->key_len == strlen(key) && !memcmp(m->key, key, m->key_len) &&
                kc_memmem(m->payload, m->len, needle, strlen(needle));
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consume_stop(rkt, part);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    fprintf(stderr, "test_acl: %s reading kchat-presence: %s\n", user,
            found ? "the gateway's record" : "nothing");
    return found;
}

#define assert_err(got, want)                                                           \
    do {                                                                                \
        rd_kafka_resp_err_t got_ = (got);                                               \
        if (got_ != (want))                                                             \
            fail_msg("%s: got %s, wanted %s", #got, rd_kafka_err2name(got_),            \
                     rd_kafka_err2name(want));                                          \
    } while (0)

/* ------------------------------------------------------------------------ */
/* the tests                                                                  */
/* ------------------------------------------------------------------------ */

static bool is_chat(const kh_event *e, void *arg)
{
    return !strcmp(e->event, "chat") && e->json != NULL &&
           !strcmp(kc_str(e->json, "message"), (const char *)arg);
}

static kh_resp *call(kh_browser *b, const char *method, const char *path, json_t *body,
                     long want)
{
    kh_resp *r = kh_do(b, method, path, body);
    if (body != NULL)
        json_decref(body);
    if (r->status != want) {
        kh_resp_dump(r, "unexpected status");
        kc_diag_dump();
        fail_msg("%s %s: %ld, wanted %ld", method, path, r->status, want);
    }
    return r;
}

/* serve (backend) + gateway (gateway): a whole round over HTTP */
static void test_round_through_gateway(void **state)
{
    (void)state;
    kh_browser a, b;
    char bob[65], path[160], msg[96];
    kh_browser_init(&a, "alice", g_base);
    kh_browser_init(&b, "bob", g_base);
    kc_uid(g_alice, sizeof(g_alice), "acla");
    kc_uid(bob, sizeof(bob), "aclb");
    kc_new_password(g_pw, sizeof(g_pw));

    kh_resp_free(call(&a, "POST", "/api/users", json_pack("{ss ss ss ss}", "userId", g_alice,
             "userPw", g_pw, "email", "a@example.org", "userName", "Alice"), 201));
    kh_resp_free(call(&b, "POST", "/api/users", json_pack("{ss ss ss ss}", "userId", bob,
             "userPw", g_pw, "email", "b@example.org", "userName", "Bob"), 201));
    kh_resp_free(call(&a, "POST", "/api/login", json_pack("{ss ss}", "userId", g_alice,
             "userPw", g_pw), 200));
    kh_resp_free(call(&b, "POST", "/api/login", json_pack("{ss ss}", "userId", bob,
             "userPw", g_pw), 200));
    kh_resp_free(call(&a, "POST", "/api/friends", json_pack("{s[s]}", "friendId", bob), 200));
    kh_resp *r = call(&a, "POST", "/api/rooms", json_pack("{s[s] ss}", "friendId", bob,
                      "roomName", "behind ACLs"), 201);
    snprintf(path, sizeof(path), "/api/rooms/%s/messages", kc_str(r->json, "roomId"));
    kh_resp_free(r);

    kh_sse *s = kh_sse_open(&b, "/api/events", NULL, 10000);
    assert_int_equal(kh_sse_status(s), 200);
    /* the gateway may write kchat-presence, the backend read it */
    assert_true(presence_read_as("backend", bob, "\"kind\":\"online\""));
    snprintf(msg, sizeof(msg), "through the ACLs %lld", (long long)kc_wall_ms());
    kh_resp_free(call(&a, "POST", path, json_pack("{ss}", "message", msg), 201));
    const kh_event *e = kh_sse_wait(s, 0, is_chat, msg, 15000);
    if (e == NULL)
        kh_sse_dump(s, "no chat event");
    assert_non_null(e);
    assert_string_equal(kc_str(e->json, "writerId"), g_alice);
    kh_sse_close(s);
}

/* the client role may send a request and read its answer (so the refusals
 * below are the ACLs, not a client that cannot connect) */
static void test_client_may_call(void **state)
{
    (void)state;
    char cid[40], body[512];
    snprintf(cid, sizeof(cid), "acl-%lld", (long long)kc_wall_ms());
    snprintf(body, sizeof(body), "{\"userId\":\"%s\",\"userPw\":\"%s\"}", g_alice, g_pw);
    static const char *const pextra[] = { "partitioner", "murmur2_random", NULL };
    rd_kafka_t *p = user_handle("client", RD_KAFKA_PRODUCER, pextra);
    const char *const cextra[] = { "group.id", "kchat-client-test-acl", "enable.auto.commit",
                                   "false", "auto.offset.reset", "earliest", NULL };
    rd_kafka_t *c = user_handle("client", RD_KAFKA_CONSUMER, cextra);
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
    bool answered = false;

    rd_kafka_topic_partition_list_add(subs, "login-response", RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(c, subs), 0);
    rd_kafka_topic_partition_list_destroy(subs);
    assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC("login-request"),
                                       RD_KAFKA_V_KEY(g_alice, strlen(g_alice)),
                                       RD_KAFKA_V_VALUE(body, strlen(body)),
                                       RD_KAFKA_V_HEADER("kchat-cid", cid, -1),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_END), 0);
    assert_int_equal(rd_kafka_flush(p, 15000), 0);
    int64_t deadline = kc_now_ms() + 30000;
    while (!answered && kc_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        const void *v;
        size_t n;
        if (m == NULL)
            continue;
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            fail_msg("client reading login-response: %s", rd_kafka_err2name(m->err));
        rd_kafka_headers_t *hs = NULL;
        if (!m->err && rd_kafka_message_headers(m, &hs) == 0 &&
            rd_kafka_header_get_last(hs, "kchat-cid", &v, &n) == 0 && n == strlen(cid) &&
            memcmp(v, cid, n) == 0) {
            json_t *j = json_loadb(m->payload, m->len, 0, NULL);
            assert_non_null(j);
            assert_true(kc_check_ok(j, g_alice));
            json_decref(j);
            answered = true;
        }
        rd_kafka_message_destroy(m);
    }
    assert_true(answered);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    rd_kafka_destroy(p);
}

/* the 13 operations of PROTOCOL.md §3 */
static const char *const ops[] = {
    "user-add", "login", "logout", "user-status-change", "user-add-friend",
    "user-search-friend", "user-add-room", "user-search-room", "user-add-chat",
    "room-history", "room-read", "room-invite", "room-leave",
};

static void test_stranger_reads_no_response(void **state)
{
    (void)state;
    char topic[64];
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        snprintf(topic, sizeof(topic), "%s-response", ops[i]);
        assert_err(read_as("stranger", topic), RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    }
    assert_err(read_as("stranger", "login-request"), RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
}

static void test_nobody_reads_internal_topics(void **state)
{
    (void)state;
    static const char *const users[] = { "client", "stranger" };
    static const char *const topics[] = { "kchat-changelog", "kchat-internal", "kchat-directory",
                                          "kchat-meta", "chat-events", "kchat-presence" };
    for (size_t u = 0; u < 2; u++)
        for (size_t t = 0; t < sizeof(topics) / sizeof(topics[0]); t++)
            assert_err(read_as(users[u], topics[t]), RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    /* the client reads no request either (passwords travel there) */
    assert_err(read_as("client", "login-request"), RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    /* the gateway may describe kchat's own topics (it checks them at start),
     * but reads none: the fetch is refused */
    assert_err(read_as("gateway", "kchat-changelog"), RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    assert_err(read_as("gateway", "login-request"), RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    /* it writes kchat-presence, but reads no one's records there */
    assert_err(read_as("gateway", "kchat-presence"), RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
}

static void test_nobody_forges_events(void **state)
{
    (void)state;
    char v[256];
    snprintf(v, sizeof(v), "{\"type\":\"chat\",\"userId\":\"%s\",\"roomId\":\"r\",\"seq\":99,"
             "\"writerId\":\"mallory\",\"message\":\"forged\"}", g_alice);
    assert_err(produce_as("stranger", "chat-events", g_alice, v),
               RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    assert_err(produce_as("client", "chat-events", g_alice, v),
               RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    assert_err(produce_as("gateway", "chat-events", g_alice, v),
               RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    /* only gateways say who is online */
    snprintf(v, sizeof(v), "{\"kind\":\"online\",\"gateway\":\"0123456789abcdef\","
             "\"userId\":\"%s\",\"at\":1}", g_alice);
    assert_err(produce_as("stranger", "kchat-presence", g_alice, v),
               RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    assert_err(produce_as("client", "kchat-presence", g_alice, v),
               RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
}

static void test_nobody_forges_responses(void **state)
{
    (void)state;
    const char *v = "{\"userId\":\"x\",\"isSuccess\":true,\"errorCode\":\"\","
                    "\"errorMessage\":\"\",\"sessionId\":\"abababababababababababababababab\"}";
    assert_err(produce_as("client", "login-response", g_alice, v),
               RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    assert_err(produce_as("stranger", "login-response", g_alice, v),
               RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    assert_err(produce_as("gateway", "login-response", g_alice, v),
               RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    assert_err(produce_as("client", "kchat-internal", g_alice, v),
               RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    assert_err(produce_as("stranger", "login-request", g_alice, v),
               RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
}

static void test_nobody_joins_kchat_group(void **state)
{
    (void)state;
    /* kchat's backends are group "kchat" (the deployment's name) */
    assert_err(join_as("client", "kchat", "login-response"),
               RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED);
    assert_err(join_as("stranger", "kchat", "login-response"),
               RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED);
    assert_err(join_as("gateway", "kchat", "login-response"),
               RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED);
}

/* ------------------------------------------------------------------------ */

static void base_of(const char *url, char *out, size_t size)
{
    snprintf(out, size, "%s", url);
    size_t l = strlen(out);
    while (l > 0 && (out[l - 1] == '/' || out[l - 1] == ' ' || out[l - 1] == '\n'))
        out[--l] = '\0';
}

static int group_setup(void **state)
{
    (void)state;
    char bpath[4200];
    snprintf(bpath, sizeof(bpath), "%s/bootstrap", g_dir);
    char *b = kc_read_file(bpath, NULL);
    char *be = client_file("backend", ".kchat.conf"), *gw = client_file("gateway", ".kchat.conf");
    char *data = kc_tmppath("acl-data"), *url_file = kc_tmppath("acl-gw.url");
    int rc = -1;

    if (b == NULL)
        goto out_free;
    base_of(b, g_boot, sizeof(g_boot));
    const char *sx[] = { "--config", be, NULL };
    /* 90 s, not kc_serve_start()'s 30: on a fresh broker with ACLs the
     * shards' transactional producers wait for their coordinator (CI at
     * d2907e4: shards 0-2 of 4 acquired when 30 s ran out). */
    if ((g_srv = kc_serve_start_ex("acl-serve", data, g_boot, PARTS, sx, 90)) == NULL)
        goto out_free;
    const char *gx[] = { "gateway", "--config", gw, "--brokers", g_boot, "--http",
                         "127.0.0.1:0", "--url-file", url_file, "--secret-file",
                         kc_secret_file(), NULL };
    if ((g_gw = kc_proc_start("acl-gateway", gx, url_file, 60)) == NULL)
        goto out_free;
    base_of(kc_proc_bootstrap(g_gw), g_base, sizeof(g_base));
    rc = 0;
out_free:
    if (rc != 0)
        fprintf(stderr, "test_acl: serve or gateway did not start on %s (see above)\n", g_boot);
    free(b);
    free(be);
    free(gw);
    free(data);
    free(url_file);
    return rc;
}

static int group_teardown(void **state)
{
    (void)state;
    bool ok = true;
    if (g_gw != NULL)
        ok &= kc_proc_stop_clean(g_gw, 20);
    if (g_srv != NULL)
        ok &= kc_proc_stop_clean(g_srv, 20);
    kc_proc_free(g_gw);
    kc_proc_free(g_srv);
    return ok ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_through_gateway),
        cmocka_unit_test(test_client_may_call),
        cmocka_unit_test(test_stranger_reads_no_response),
        cmocka_unit_test(test_nobody_reads_internal_topics),
        cmocka_unit_test(test_nobody_forges_events),
        cmocka_unit_test(test_nobody_forges_responses),
        cmocka_unit_test(test_nobody_joins_kchat_group),
    };
    const char *dir = getenv("KCHAT_TEST_KAFKA_DIR");
    char path[4200];

    snprintf(path, sizeof(path), "%s/clients/stranger.conf", dir != NULL ? dir : "");
    if (dir == NULL || access(path, R_OK) != 0) {
        fprintf(stderr, "test_acl: needs a cluster of `scripts/kafka start --secure` "
                "(KCHAT_TEST_KAFKA_DIR; tests/run.sh starts one for `kchat-test: kafka-secure`)\n");
        return 1;
    }
    snprintf(g_dir, sizeof(g_dir), "%s", dir);
    return cmocka_run_group_tests_name("kchat behind Kafka ACLs", tests, group_setup,
                                       group_teardown);
}
