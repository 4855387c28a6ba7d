/*
 * Shards handed over between `kchat serve` processes (src/actors/ownership.c,
 * src/actors/restore.c): a node serves a shard only while the consumer group
 * gives it the shard's partitions; it takes the shard over by catching up
 * with its kchat-changelog partition, and gives it up at revocation. Both
 * cases run the nodes on a mock cluster made in this process (like
 * test_changelog.c), so that the broker leading kchat-changelog can be told
 * to refuse produce requests, and read each node's /metrics
 * (--metrics-http). Each prints how long its hand-overs took: from the stop
 * (or kill, or start) of a node to the first answer to a request of a shard
 * that moved (kchat's producer's timestamp of that answer).
 *
 * - test_diverged_copy_set_aside: node A commits chat sends whose changes
 *   never reach Kafka (broker 3, leader of every kchat-changelog
 *   partition, refuses produce requests), so it holds their answers; then
 *   A is killed (its copy of the room's shard is checked to keep changes
 *   numbered past the last one in Kafka) and the refusals end. Node B, on
 *   an empty data directory, restores every shard from the changelog
 *   (without A's unconfirmed changes), reads those requests again from the
 *   restored offsets and answers them (at least once, repeats agreeing,
 *   seqs without a gap), then writes on. B stops and A starts again on its
 *   old data directory: its copy of the room's shard keeps changes Kafka
 *   never had while B numbered on, so it has diverged. A must say so, set
 *   the copy aside (shard-NNNN.aside-*), count it
 *   (kchat_shards_diverged_total) and serve B's state: the history as B
 *   answered it, lastSeq, B's sessions, the next seq. Why: serving that
 *   copy would show messages nobody was answered for and lose B's.
 * - test_two_nodes_hand_over_on_mock: A and B share the 4 shards; users on
 *   every shard, friends, a room with members on every shard, sends. B
 *   stops (SIGTERM): A takes its shards (restoring what B wrote), every
 *   session still works, the history is whole and new sends get the next
 *   seqs. B starts again: two shards move back to it (restored, since A
 *   wrote on them), and A, which gave up its shards cleanly at each
 *   rebalance (the `range` assignor revokes everything), takes its own
 *   back warm. No copy had unconfirmed changes, so none may be set aside.
 */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <unistd.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "kchat/kafka.h"
#include "kchat/store.h"
#include "kchat/topics.h"
#include "support/http.h"
#include "support/kassert.h"
#include "support/kclient.h"
#include "support/mockfault.h"

#define PARTITIONS 4
#define DRAIN_TOPIC "handover-drain"   /* led by broker 3: takes its leftover refusals */
#define MAX_SEQ 64
#define START_S 90      /* a start may wait for a killed member's session to expire */
#define ANSWER_MS 60000 /* a request of a shard being handed over */

/* One `kchat serve` process. */
struct node {
    const char *name;
    char *data;
    char metrics[64];     /* http://127.0.0.1:PORT of its --metrics-http */
    kc_proc *proc;
};

static struct {
    rd_kafka_t *host;                  /* the handle the mock cluster lives on */
    rd_kafka_mock_cluster_t *mock;
    char brokers[512];
    kc_client *client;
    struct node a, b;
    char text[MAX_SEQ + 1][64];        /* the message each seq was answered for */
} g;

/* ---- the cluster ---- */

/* One change to the mock cluster: create a topic of @c n partitions
 * (@c leader 0), or give partition @c n of it to broker @c leader. */
struct mock_op {
    const char *topic;
    int n, leader;
    rd_kafka_resp_err_t err;
};

static void *mock_op_run(void *arg)
{
    struct mock_op *op = arg;

    op->err = op->leader == 0 ? rd_kafka_mock_topic_create(g.mock, op->topic, op->n, 3)
                              : rd_kafka_mock_partition_set_leader(g.mock, op->topic, op->n,
                                                                   op->leader);
    return NULL;
}

/* Apply @p ops, each from a thread of its own: one after the other, the
 * mock cluster answers such a call in about 0.27 s (mock_start()'s 134
 * calls took 36 s on librdkafka 2.0.2); made together, they all took
 * under 2 s. */
static void mock_ops(struct mock_op *ops, size_t n)
{
    pthread_t *th = calloc(n, sizeof(*th));

    assert_non_null(th);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(pthread_create(&th[i], NULL, mock_op_run, &ops[i]), 0);
    for (size_t i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        if (ops[i].err)
            fprintf(stderr, "mock cluster: %s [%d]: %s\n", ops[i].topic, ops[i].n,
                    rd_kafka_err2str(ops[i].err));
        assert_int_equal(ops[i].err, 0);
    }
    free(th);
}

#define MOCK_OPS 256

/* A mock cluster of 3 brokers with kchat's topics, as `kchat broker` makes
 * them (kchat-meta has one partition), every kchat-changelog partition led
 * by broker 3 and everything else by broker 1; and DRAIN_TOPIC on broker 3. */
static void mock_start(void)
{
    struct mock_op topics[MOCK_OPS], leaders[MOCK_OPS];
    size_t nt = 0, nl = 0;

    g.mock = kc_mock_cluster_new(3, 3, &g.host);
    snprintf(g.brokers, sizeof(g.brokers), "%s", rd_kafka_mock_cluster_bootstraps(g.mock));
    for (size_t i = 0; i <= kchat_topic_count(); i++) {
        const char *name = i < kchat_topic_count() ? kchat_topic_name(i) : DRAIN_TOPIC;
        bool on_3 = !strcmp(name, KCHAT_TOPIC_CHANGELOG) || !strcmp(name, DRAIN_TOPIC);
        int n = strcmp(name, KCHAT_TOPIC_META) && strcmp(name, DRAIN_TOPIC) ? PARTITIONS : 1;

        assert_true(nt < MOCK_OPS && nl + (size_t)n <= MOCK_OPS);
        topics[nt++] = (struct mock_op){.topic = name, .n = n};
        for (int p = 0; p < n; p++)
            leaders[nl++] = (struct mock_op){.topic = name, .n = p, .leader = on_3 ? 3 : 1};
    }
    mock_ops(topics, nt);
    mock_ops(leaders, nl);
}

static size_t refusals_left(void)
{
    return kc_mock_refusals_left(g.mock, 3, KC_API_PRODUCE);
}

/* Keep broker 3 refusing produce requests (a retriable error, answered
 * 50 ms late): at least 8 refusals queued. Call it often while it must. */
static void refusals_keep(void)
{
    kc_mock_refusals_keep(g.mock, 3, KC_API_PRODUCE, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 50,
                          8, 24);
}

/* End the refusals: produce to DRAIN_TOPIC (broker 3) until the broker has
 * none left, so that the next node's changes are not refused. */
static void refusals_drain(void)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    char one[1] = {'x'};
    int64_t deadline = kc_now_ms() + 30000;

    rd_kafka_conf_set(conf, "bootstrap.servers", g.brokers, NULL, 0);
    rd_kafka_conf_set(conf, "retry.backoff.ms", "10", NULL, 0);
    /* librdkafka 2.4+ backs off exponentially up to this (1 s by default);
     * older ones do not know it and keep retry.backoff.ms */
    rd_kafka_conf_set(conf, "retry.backoff.max.ms", "10", NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    assert_non_null(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)));
    while (refusals_left() > 0 && kc_now_ms() < deadline) {
        assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(DRAIN_TOPIC),
                                           RD_KAFKA_V_VALUE(one, 1),
                                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_END), 0);
        assert_int_equal(rd_kafka_flush(rk, 10000), 0);
    }
    rd_kafka_destroy(rk);
    assert_int_equal(refusals_left(), 0);
}

/* The kchat-cl-seq of the last record of kchat-changelog partition @p p
 * (0 when it is empty). */
static uint64_t changelog_last_seq(int p)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
    rd_kafka_t *rk;
    int64_t lo, hi, deadline = kc_now_ms() + 20000;
    uint64_t seq = 0;

    rd_kafka_conf_set(conf, "bootstrap.servers", g.brokers, NULL, 0);
    rd_kafka_conf_set(conf, "group.id", "test-handover", NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    assert_non_null(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr)));
    assert_int_equal(rd_kafka_query_watermark_offsets(rk, KCHAT_TOPIC_CHANGELOG, p, &lo, &hi,
                                                      10000), 0);
    rd_kafka_topic_partition_list_add(tp, KCHAT_TOPIC_CHANGELOG, p)->offset = hi - 1;
    if (hi > lo)
        assert_int_equal(rd_kafka_assign(rk, tp), 0);
    while (hi > lo && seq == 0 && kc_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        rd_kafka_headers_t *h;
        const void *v;
        size_t len;

        if (m != NULL && !m->err && !rd_kafka_message_headers(m, &h) &&
            !rd_kafka_header_get_last(h, KCHAT_HDR_CL_SEQ, &v, &len) && len < 24) {
            char buf[24];
            memcpy(buf, v, len);
            buf[len] = '\0';
            seq = strtoull(buf, NULL, 10);
        }
        if (m != NULL)
            rd_kafka_message_destroy(m);
    }
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    assert_true(hi <= lo || seq > 0);
    return seq;
}

/* ---- the nodes ---- */

static void node_init(struct node *n, const char *name, const char *data)
{
    n->name = name;
    n->data = kc_tmppath(data);
    n->proc = NULL;
}

/* Start @p n (a fresh metrics port each time); its start returns once the
 * group gave it shards and it took them over. */
static void node_start(struct node *n)
{
    char addr[32];
    const char *extra[] = {"--metrics-http", addr, NULL};

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", kc_free_port());
    snprintf(n->metrics, sizeof(n->metrics), "http://%s", addr);
    n->proc = kc_serve_start_ex(n->name, n->data, g.brokers, PARTITIONS, extra, START_S);
    assert_non_null(n->proc);
}

/* Stop @p n with @p sig (SIGTERM: a clean stop is required). */
static void node_stop(struct node *n, int sig)
{
    int status;

    if (sig == SIGTERM)
        assert_true(kc_proc_stop_clean(n->proc, 30));
    else
        assert_int_equal(kc_proc_stop(n->proc, sig, 10, &status), 0);
    kc_proc_free(n->proc);
    n->proc = NULL;
}

static void node_free(struct node *n)
{
    if (n->proc != NULL)
        kc_proc_stop_clean(n->proc, 30);
    kc_proc_free(n->proc);
    n->proc = NULL;
    free(n->data);
    n->data = NULL;
}

/* Sample @p name of @p n's /metrics, -1 when absent. */
static double metric(const struct node *n, const char *name)
{
    double v;
    assert_true(kh_metric(n->metrics, name, &v));
    return v;
}

/* Wait (bounded) until @p n owns @p want shards and restores none. */
static void wait_owned(const struct node *n, int want)
{
    int64_t deadline = kc_now_ms() + ANSWER_MS;

    while (kc_now_ms() < deadline && (metric(n, "kchat_shards_owned") != want ||
                                      metric(n, "kchat_shards_restoring") != 0))
        kc_sleep_ms(100);
    if (metric(n, "kchat_shards_owned") != want)
        kc_proc_log_tail(n->proc, 30, stderr);
    assert_true(metric(n, "kchat_shards_owned") == want);
}

/* How many lines of @p n's log contain @p what. */
static int log_count(const struct node *n, const char *what)
{
    char *log = kc_read_file(kc_proc_log(n->proc), NULL);
    int count = 0;

    assert_non_null(log);
    for (const char *p = strstr(log, what); p != NULL; p = strstr(p + 1, what))
        count++;
    free(log);
    return count;
}

/* Print every line of @p n's log that contains @p what. */
static void log_print(const struct node *n, const char *what)
{
    char *log = kc_read_file(kc_proc_log(n->proc), NULL);

    assert_non_null(log);
    for (char *line = strtok(log, "\n"); line != NULL; line = strtok(NULL, "\n"))
        if (strstr(line, what) != NULL)
            fprintf(stderr, "  %s: %s\n", n->name, line);
    free(log);
}

/* ---- users, rooms, messages ---- */

static int shard_of(const char *id)
{
    return kc_partition_for(id, PARTITIONS);
}

/* A user of shard @p shard, registered and logged in. */
static void user_in(kc_user *u, const char *tag, int shard)
{
    for (int tries = 0; tries < 500; tries++) {
        kc_user_init(u, tag);
        if (shard_of(u->id) == shard)
            break;
    }
    assert_int_equal(shard_of(u->id), shard);
    assert_true(kc_user_register(g.client, u));
    assert_true(kc_user_login(g.client, u));
}

/* @p u follows @p friends: asked again while a friend is not yet in the
 * directory replica of the node serving @p u (another node registered it). */
static void befriend(const kc_user *u, const char *const *friends)
{
    json_t *ids = json_array(), *r = NULL;

    for (size_t i = 0; friends[i] != NULL; i++)
        json_array_append_new(ids, json_string(friends[i]));
    for (int i = 0; i < 50; i++) {
        const char *code;

        json_decref(r);
        r = kc_call(g.client, "user-add-friend", u->id, u->session,
                    json_pack("{s:s, s:O}", "userId", u->id, "friendId", ids));
        code = kc_str(r, "errorCode");
        if (code == NULL || strcmp(code, "USER_NOT_FOUND") != 0)
            break;
        kc_sleep_ms(200);
    }
    json_decref(ids);
    KC_EXPECT_OK(r, u->id);
}

/* The body of a chat send of @p u to @p room. */
static json_t *chat_body(const kc_user *u, const char *room, const char *text)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "roomId", room, "writerId", u->id, "message",
                     text, "clientMsgId", text);
}

/* @p u writes to @p room and must get seq @p want; the text is kept. */
static void chat_expect(const kc_user *u, const char *room, int want, const char *tag)
{
    char text[64];

    assert_true(want > 0 && want <= MAX_SEQ);
    snprintf(text, sizeof(text), "%s-%d-%lld", tag, want, (long long)kc_wall_ms());
    assert_int_equal(kc_chat(g.client, u, room, text, text), want);
    snprintf(g.text[want], sizeof(g.text[want]), "%s", text);
}

/* @p room's history read by @p u: seqs 1..@p n, each with the text it was
 * answered for. */
static void history_is(const kc_user *u, const char *room, int n)
{
    json_t *hist = kc_history_all(g.client, u, room);

    assert_non_null(hist);
    if ((int)json_array_size(hist) != n)
        fprintf(stderr, "history: %zu messages, want %d: %s\n", json_array_size(hist), n,
                kc_dumps(hist));
    assert_int_equal(json_array_size(hist), n);
    for (int i = 0; i < n; i++) {
        json_t *m = json_array_get(hist, (size_t)i);
        assert_int_equal(kc_int(m, "seq", -1), i + 1);
        KC_ASSERT_STR(m, "message", g.text[i + 1]);
    }
    json_decref(hist);
}

/* user-search-room of @p u (with its session) sent now; the cid in @p cid. */
static void rooms_ask(const kc_user *u, char *cid)
{
    json_t *b = json_pack("{s:s}", "userId", u->id);

    assert_true(kc_send_req(g.client, "user-search-room", u->id, u->session, NULL, b, cid));
    json_decref(b);
}

/* The answer to rooms_ask(): a success listing one room; its lastSeq.
 * @p made_ms (may be NULL): when kchat produced it (wall clock, ms). */
static json_int_t rooms_answer(const kc_user *u, const char *cid, int64_t *made_ms)
{
    const kc_record *r = kc_wait_cid(g.client, "user-search-room", cid, ANSWER_MS);
    json_t *rooms;

    if (r == NULL)
        kc_diag_dump();
    assert_non_null(r);
    assert_true(kc_check_ok(r->body, u->id));
    rooms = json_object_get(r->body, "rooms");
    if (json_array_size(rooms) != 1)
        fprintf(stderr, "user-search-room: %s\n", kc_dumps(r->body));
    assert_int_equal(json_array_size(rooms), 1);
    if (made_ms != NULL)
        *made_ms = r->timestamp;
    return kc_int(json_array_get(rooms, 0), "lastSeq", -1);
}

/* @p u sees the room with lastSeq @p want: at once when the room is of
 * @p u's shard (@p room_shard), else once the replica of room summaries
 * (kchat-rooms, read on its own thread) has it (bounded). */
static void rooms_expect(const kc_user *u, int room_shard, int want)
{
    int64_t deadline = kc_now_ms() + 15000;
    json_int_t got;
    char cid[72];

    do {
        rooms_ask(u, cid);
        got = rooms_answer(u, cid, NULL);
        if (got == want || shard_of(u->id) == room_shard)
            break;
        kc_sleep_ms(200);
    } while (kc_now_ms() < deadline);
    if (got != want)
        fprintf(stderr, "user %s (shard %d): lastSeq %lld, want %d\n", u->id, shard_of(u->id),
                (long long)got, want);
    assert_int_equal(got, want);
}

/* user-search-room of every user of @p u, sent at once: prints how long
 * after @p since_ms (wall clock) each shard answered; then each must see
 * lastSeq @p last_seq. */
static void rooms_all(const kc_user *u, int n, int room_shard, int last_seq, int64_t since_ms,
                      const char *what)
{
    char cid[PARTITIONS][72];
    int64_t slowest = 0;

    for (int i = 0; i < n; i++)
        rooms_ask(&u[i], cid[i]);
    for (int i = 0; i < n; i++) {
        int64_t ms;

        (void)rooms_answer(&u[i], cid[i], &ms);
        ms -= since_ms;
        fprintf(stderr, "test_handover: %s: shard %d answered %.2f s after\n", what,
                shard_of(u[i].id), (double)ms / 1000.0);
        if (ms > slowest)
            slowest = ms;
    }
    fprintf(stderr, "test_handover: %s: every shard answered within %.2f s\n", what,
            (double)slowest / 1000.0);
    for (int i = 0; i < n; i++)
        rooms_expect(&u[i], room_shard, last_seq);
}

/* ---- the data directory (white box) ---- */

struct kept {
    uint64_t above;        /* count only changes numbered past this */
    uint64_t count, first, last;
};

static int kept_one(void *arg, const kchat_change *ch)
{
    struct kept *k = arg;

    if (ch->seq > k->above) {
        if (k->count++ == 0)
            k->first = ch->seq;
        k->last = ch->seq;
    }
    return 0;
}

/* The changes shard @p p of @p data keeps numbered past @p above (what
 * Kafka has); the process that wrote them is gone. */
static struct kept kept_changes(const char *data, int p, uint64_t above)
{
    char path[4096];
    struct kept k = {.above = above};
    kchat_store *s;
    kchat_txn *t;

    snprintf(path, sizeof(path), "%s/shard-%04d", data, p);
    assert_int_equal(kchat_store_open(path, NULL, &s), KCHAT_OK);
    assert_int_equal(kchat_txn_begin(s, false, &t), KCHAT_OK);
    assert_int_equal(kchat_store_changelog_scan(t, 0, kept_one, &k), KCHAT_OK);
    kchat_txn_abort(t);
    kchat_store_close(s);
    return k;
}

/* How many shard-NNNN.aside-* directories @p data holds for shard @p p
 * (-1: any shard). */
static int asides(const char *data, int p)
{
    char prefix[32];
    DIR *d = opendir(data);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    snprintf(prefix, sizeof(prefix), p < 0 ? "shard-" : "shard-%04d.", p);
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0 && strstr(e->d_name, ".aside-");
    closedir(d);
    return n;
}

static int teardown(void **state)
{
    (void)state;
    kc_client_free(g.client);
    g.client = NULL;
    node_free(&g.a);
    node_free(&g.b);
    kc_mock_cluster_free(g.mock, g.host);
    g.mock = NULL;
    g.host = NULL;
    memset(g.text, 0, sizeof(g.text));
    return 0;
}

/* ---- test_diverged_copy_set_aside ---- */

#define SENT_BEFORE 4   /* answered by A */
#define HELD 4          /* applied by A, answered by B */
#define SENT_BY_B 5

/* A held chat send: its cid and text, the seq B answered with. */
struct held {
    char cid[72];
    char text[64];
    int seq;
};

/* Send HELD chat sends (from @p u, one from @p other) while broker 3
 * refuses every change: none may be answered. */
static void send_held(const kc_user *u, const kc_user *other, const char *room,
                      struct held *h)
{
    refusals_keep();
    for (int i = 0; i < HELD; i++) {
        const kc_user *w = i == 1 ? other : u;
        json_t *b;

        snprintf(h[i].text, sizeof(h[i].text), "held-%d-%lld", i, (long long)kc_wall_ms());
        b = chat_body(w, room, h[i].text);
        assert_true(kc_send_req(g.client, "user-add-chat", w->id, w->session, NULL, b,
                                h[i].cid));
        json_decref(b);
        refusals_keep();
    }
    for (int64_t until = kc_now_ms() + 3000; kc_now_ms() < until;) {
        refusals_keep();
        kc_sleep_ms(50);
    }
    for (int i = 0; i < HELD; i++) {
        const kc_record *r = kc_wait_cid(g.client, "user-add-chat", h[i].cid, 0);
        if (r != NULL)
            kc_record_dump(r, "answered while its changes could not reach Kafka");
        assert_null(r);
    }
}

/* kc_count_records() predicate: a chat answer with cid @c cid; every one
 * must carry the seq of the first one seen. */
struct answers {
    const char *cid;
    json_int_t seq;
    bool agree;
};

static bool chat_answer(const kc_record *r, void *arg)
{
    struct answers *a = arg;
    json_int_t seq;

    if (r->cid == NULL || strcmp(r->cid, a->cid) != 0 ||
        strcmp(r->topic, "user-add-chat-response") != 0)
        return false;
    seq = kc_int(r->body, "seq", -1);
    if (a->seq == 0)
        a->seq = seq;
    a->agree &= seq == a->seq && seq > 0;
    return true;
}

/* Every held send answered (a success, repeats agreeing) with the seqs
 * SENT_BEFORE+1 .. SENT_BEFORE+HELD; the seqs and texts are kept. A was
 * killed at @p killed_ms (wall clock). */
static void held_answered(const kc_user *u, const kc_user *other, struct held *h,
                          int64_t killed_ms)
{
    bool seen[HELD] = {false};
    int64_t first = INT64_MAX;

    for (int i = 0; i < HELD; i++) {
        const kc_record *r = kc_wait_cid(g.client, "user-add-chat", h[i].cid, ANSWER_MS);
        if (r == NULL)
            kc_diag_dump();
        assert_non_null(r);
        assert_true(kc_check_ok(r->body, i == 1 ? other->id : u->id));
        if (r->timestamp < first)
            first = r->timestamp;
    }
    fprintf(stderr, "test_handover: kill -9 of A -> B's first answer to a held send: %.2f s\n",
            (double)(first - killed_ms) / 1000.0);
    kc_sleep_ms(1000);   /* repeats, if any, come now */
    for (int i = 0; i < HELD; i++) {
        struct answers a = {.cid = h[i].cid, .agree = true};
        size_t n = kc_count_records(g.client, 0, chat_answer, &a);

        if (n != 1)
            fprintf(stderr, "test_handover: held send %d answered %zu times\n", i, n);
        assert_true(n >= 1 && a.agree);
        h[i].seq = (int)a.seq;
        assert_true(h[i].seq > SENT_BEFORE && h[i].seq <= SENT_BEFORE + HELD);
        assert_false(seen[h[i].seq - SENT_BEFORE - 1]);
        seen[h[i].seq - SENT_BEFORE - 1] = true;
        snprintf(g.text[h[i].seq], sizeof(g.text[h[i].seq]), "%s", h[i].text);
    }
}

/* A was killed holding changes of @p room_shard that Kafka never had. */
static void a_kept_unconfirmed(int room_shard)
{
    uint64_t kafka = changelog_last_seq(room_shard);
    struct kept k = kept_changes(g.a.data, room_shard, kafka);

    fprintf(stderr, "test_handover: A's shard %d keeps changes %llu..%llu (%llu) that Kafka "
            "(up to %llu) never had\n", room_shard, (unsigned long long)k.first,
            (unsigned long long)k.last, (unsigned long long)k.count,
            (unsigned long long)kafka);
    assert_true(k.count > 0);
}

/* A, started again on its old data directory after B wrote on: the room's
 * shard diverged, set aside, counted. */
static void a_set_aside(int room_shard)
{
    double diverged = metric(&g.a, "kchat_shards_diverged_total");

    log_print(&g.a, "diverged");
    log_print(&g.a, "acquired");
    fprintf(stderr, "test_handover: A: kchat_shards_diverged_total %.0f, %d copies set "
            "aside\n", diverged, asides(g.a.data, -1));
    assert_true(log_count(&g.a, "its copy diverged") >= 1);
    assert_int_equal(asides(g.a.data, room_shard), 1);
    assert_true(diverged >= 1);
    assert_true(diverged == asides(g.a.data, -1));
}

static void test_diverged_copy_set_aside(void **state)
{
    int64_t t0 = kc_now_ms(), killed_ms, stopped_ms, answered_ms;
    struct held h[HELD];
    kc_user u[3];
    char room[65], cid[72];
    int seq = 0;

    (void)state;
    mock_start();
    node_init(&g.a, "div-a", "div-a");
    node_init(&g.b, "div-b", "div-b");
    node_start(&g.a);
    assert_non_null(g.client = kc_client_new(g.brokers, KC_FROM_END));
    for (int i = 0; i < 3; i++)
        user_in(&u[i], "div", i);
    const int room_shard = shard_of(u[0].id);
    const char *friends[] = {u[1].id, u[2].id, NULL};
    befriend(&u[0], friends);
    assert_true(kc_create_room(g.client, &u[0], friends, "divergence", room));
    for (; seq < SENT_BEFORE; seq++)
        chat_expect(&u[seq % 2], room, seq + 1, "a");

    /* applied by A, never confirmed by Kafka, never answered; A dies */
    send_held(&u[0], &u[1], room, h);
    killed_ms = kc_wall_ms();
    node_stop(&g.a, SIGKILL);
    refusals_drain();
    a_kept_unconfirmed(room_shard);

    /* B restores from the changelog and answers what A held */
    node_start(&g.b);
    assert_true(log_count(&g.b, "restored from kchat-changelog") >= 1);
    held_answered(&u[0], &u[1], h, killed_ms);
    seq = SENT_BEFORE + HELD;
    history_is(&u[2], room, seq);
    assert_true(kc_user_login(g.client, &u[2]));   /* a session B issues */
    for (int i = 0; i < SENT_BY_B; i++, seq++)
        chat_expect(&u[i % 3], room, seq + 1, "b");
    assert_true(metric(&g.b, "kchat_shards_diverged_total") == 0);
    stopped_ms = kc_wall_ms();
    node_stop(&g.b, SIGTERM);
    rooms_ask(&u[0], cid);   /* read by A once it serves the room's shard */

    /* A again, on its old copy */
    node_start(&g.a);
    assert_int_equal(rooms_answer(&u[0], cid, &answered_ms), seq);
    fprintf(stderr, "test_handover: SIGTERM of B -> A's first answer for the room's shard: "
            "%.2f s\n", (double)(answered_ms - stopped_ms) / 1000.0);
    a_set_aside(room_shard);
    history_is(&u[2], room, seq);   /* u[2]'s session from B */
    for (int i = 0; i < 3; i++)
        rooms_expect(&u[i], room_shard, seq);
    chat_expect(&u[1], room, seq + 1, "after");
    fprintf(stderr, "test_handover: test_diverged_copy_set_aside took %.1f s\n",
            (double)(kc_now_ms() - t0) / 1000.0);
}

/* ---- test_two_nodes_hand_over_on_mock ---- */

struct counts {
    double acquired, warm;
};

static struct counts counts_of(const struct node *n)
{
    return (struct counts){metric(n, "kchat_shards_acquired_total"),
                           metric(n, "kchat_shards_acquired_warm_total")};
}

/* A user per shard, friends, a room of all four, @p sends sends. */
static void workload(kc_user *u, char *room, int sends)
{
    for (int i = 0; i < PARTITIONS; i++)
        user_in(&u[i], "two", i);
    const char *friends[] = {u[1].id, u[2].id, u[3].id, NULL};
    befriend(&u[0], friends);
    for (int i = 1; i < PARTITIONS; i++) {
        const char *back[] = {u[0].id, NULL};
        befriend(&u[i], back);
    }
    assert_true(kc_create_room(g.client, &u[0], friends, "two nodes", room));
    for (int i = 0; i < sends; i++)
        chat_expect(&u[i % PARTITIONS], room, i + 1, "two");
}

/* Neither node set a copy aside: no copy had unconfirmed changes. */
static void none_diverged(void)
{
    if (g.a.proc != NULL)
        assert_true(metric(&g.a, "kchat_shards_diverged_total") == 0);
    if (g.b.proc != NULL)
        assert_true(metric(&g.b, "kchat_shards_diverged_total") == 0);
}

/* B stops: A serves all four shards, B's with what B wrote. */
static void b_leaves(const kc_user *u, const char *room, int *seq)
{
    struct counts before = counts_of(&g.a), after;
    int64_t stopped_ms = kc_wall_ms();

    node_stop(&g.b, SIGTERM);
    rooms_all(u, PARTITIONS, shard_of(u[0].id), *seq, stopped_ms, "SIGTERM of B -> A");
    wait_owned(&g.a, PARTITIONS);
    after = counts_of(&g.a);
    fprintf(stderr, "test_handover: A after B left: acquired +%.0f, warm +%.0f\n",
            after.acquired - before.acquired, after.warm - before.warm);
    log_print(&g.a, "acquired");
    assert_true(after.acquired - before.acquired >= PARTITIONS);
    assert_true(after.warm - before.warm >= PARTITIONS / 2);
    none_diverged();
    history_is(&u[3], room, *seq);
    for (int i = 0; i < PARTITIONS; i++, (*seq)++)
        chat_expect(&u[i], room, *seq + 1, "alone");
}

/* B starts again: two shards move back to it, restored (A wrote on every
 * shard meanwhile); A keeps two, warm. */
static void b_returns(const kc_user *u, const char *room, int *seq)
{
    struct counts before = counts_of(&g.a), after;
    int64_t started_ms = kc_wall_ms();

    node_start(&g.b);
    wait_owned(&g.b, PARTITIONS / 2);
    wait_owned(&g.a, PARTITIONS / 2);
    rooms_all(u, PARTITIONS, shard_of(u[0].id), *seq, started_ms, "start of B -> B or A");
    after = counts_of(&g.a);
    fprintf(stderr, "test_handover: A after B came back: acquired +%.0f, warm +%.0f\n",
            after.acquired - before.acquired, after.warm - before.warm);
    log_print(&g.b, "acquired");
    assert_true(after.warm - before.warm >= PARTITIONS / 2);
    assert_true(log_count(&g.b, "(restored)") >= PARTITIONS / 2);
    none_diverged();
    for (int i = 0; i < PARTITIONS; i++, (*seq)++)
        chat_expect(&u[(i + 1) % PARTITIONS], room, *seq + 1, "back");
    history_is(&u[1], room, *seq);
}

static void test_two_nodes_hand_over_on_mock(void **state)
{
    int64_t t0 = kc_now_ms();
    kc_user u[PARTITIONS];
    char room[65];
    int seq = 8;

    (void)state;
    mock_start();
    node_init(&g.a, "two-a", "two-a");
    node_init(&g.b, "two-b", "two-b");
    node_start(&g.a);
    node_start(&g.b);
    wait_owned(&g.a, PARTITIONS / 2);
    wait_owned(&g.b, PARTITIONS / 2);
    assert_non_null(g.client = kc_client_new(g.brokers, KC_FROM_END));
    workload(u, room, seq);
    none_diverged();
    b_leaves(u, room, &seq);
    b_returns(u, room, &seq);
    fprintf(stderr, "test_handover: test_two_nodes_hand_over_on_mock took %.1f s\n",
            (double)(kc_now_ms() - t0) / 1000.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_diverged_copy_set_aside, teardown),
        cmocka_unit_test_teardown(test_two_nodes_hand_over_on_mock, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
