/*
 * A stream of chat sends kept in flight while a fault is injected, checked
 * afterwards: see faultstream.h. Moved from tests/integration/test_faults.c.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "faultstream.h"
#include "mockfault.h"

#define PARTITIONS  FS_PARTITIONS
#define N_USERS     4
#define N_ROOMS     2
#define INFLIGHT    FS_INFLIGHT
#define MAX_MSGS    20000
#define DRAIN_MS    120000

struct fmsg {
    char cmid[24];
    int writer;
    int room;
    int64_t seq;       /* acknowledged seq, 0 before */
    int answers;
    bool failed;
};

/* A line on stderr prefixed with the program's name. */
__attribute__((format(printf, 1, 2)))
static void say(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", program_invocation_short_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

static struct {
    rd_kafka_t *host;                  /* mock mode: the cluster's handle */
    rd_kafka_mock_cluster_t *mock;
    char brokers[1024];
    kc_client *c;
    kc_proc *srv;
    char *data;
    kc_user users[N_USERS];
    char rooms[N_ROOMS][65];
    int members[N_ROOMS][N_USERS];
    int n_members[N_ROOMS];
    char prefix[48];
    struct fmsg *m;
    size_t n, scan;
    size_t inflight;
    uint64_t rng;
} g;

static uint32_t rnd(uint32_t n)
{
    g.rng ^= g.rng << 13;
    g.rng ^= g.rng >> 7;
    g.rng ^= g.rng << 17;
    return (uint32_t)(g.rng % n);
}

static void cid_of(size_t i, char *out, size_t size)
{
    snprintf(out, size, "%s%zu", g.prefix, i);
}

static void send_one(void)
{
    if (g.n >= MAX_MSGS)
        return;
    struct fmsg *m = &g.m[g.n];
    char cid[72], text[64];
    m->room = (int)rnd(N_ROOMS);
    m->writer = g.members[m->room][rnd((uint32_t)g.n_members[m->room])];
    snprintf(m->cmid, sizeof(m->cmid), "f%zu", g.n);
    snprintf(text, sizeof(text), "fault stream %zu", g.n);
    cid_of(g.n, cid, sizeof(cid));
    json_t *body = json_pack("{ss ss ss ss}", "roomId", g.rooms[m->room], "writerId",
                             g.users[m->writer].id, "message", text, "clientMsgId", m->cmid);
    /* the send itself may take a while when the brokers misbehave: the
     * test client rides through the same faults */
    assert_true(kc_send_req(g.c, "user-add-chat", g.users[m->writer].id,
                            g.users[m->writer].session, cid, body, NULL));
    json_decref(body);
    g.n++;
    g.inflight++;
}

static void collect(void)
{
    size_t plen = strlen(g.prefix), cnt = kc_record_count(g.c);
    for (; g.scan < cnt; g.scan++) {
        const kc_record *r = kc_record_get(g.c, g.scan);
        if (r->cid == NULL || strncmp(r->cid, g.prefix, plen) != 0 ||
            strcmp(r->topic, "user-add-chat-response") != 0)
            continue;
        size_t i = strtoul(r->cid + plen, NULL, 10);
        if (i >= g.n)
            continue;
        struct fmsg *m = &g.m[i];
        json_int_t seq = r->body != NULL && json_is_true(json_object_get(r->body, "isSuccess")) ?
                         kc_int(r->body, "seq", -1) : -1;
        if (m->answers++ == 0) {
            g.inflight--;
            if (seq < 1) {
                m->failed = true;
                kc_record_dump(r, "a chat send that did not succeed");
            }
            m->seq = seq;
        } else if (seq != m->seq) {
            m->failed = true;
            say("%s answered with seq %lld and %lld\n", r->cid, (long long)m->seq,
                (long long)seq);
        }
    }
}

/* Keeps INFLIGHT sends outstanding for @p ms. With @p send false it only
 * collects answers: while a broker is down the test client's own sends to
 * the partitions it leads would block (kc_send_req() waits for the
 * broker's acknowledgement), so only the requests in flight meet the fault. */
void fs_stream_ex(int ms, bool send)
{
    int64_t end = kc_now_ms() + ms;
    do {
        collect();
        while (send && g.inflight < INFLIGHT && g.n < MAX_MSGS)
            send_one();
        kc_sleep_ms(5);
    } while (kc_now_ms() < end);
}

void fs_stream(int ms)
{
    fs_stream_ex(ms, true);
}

static int64_t g_t0;

void fs_clock_start(void)
{
    g_t0 = kc_now_ms();
}

rd_kafka_mock_cluster_t *fs_mock(void)
{
    return g.mock;
}

void fs_use_brokers(const char *bootstrap)
{
    snprintf(g.brokers, sizeof(g.brokers), "%s", bootstrap);
}

kc_proc *fs_server(void)
{
    return g.srv;
}

void fs_phase(const char *what)
{
    collect();
    say("%6.1f s: %s (%zu sent, %zu answered)\n", (double)(kc_now_ms() - g_t0) / 1000.0, what,
        g.n, g.n - g.inflight);
}

/* After a fault is cleared the stream must flow again: 2 * INFLIGHT more
 * answers within RECOVER_MS. */
#define RECOVER_MS 45000
void fs_recovered(const char *fault)
{
    int64_t t = kc_now_ms(), end = t + RECOVER_MS;
    size_t want = g.n - g.inflight + 2 * INFLIGHT;
    while (g.n - g.inflight < want && kc_now_ms() < end)
        fs_stream(20);
    say("%6.1f s: flowing again %.1f s after %s ended\n", (double)(kc_now_ms() - g_t0) / 1000.0,
        (double)(kc_now_ms() - t) / 1000.0, fault);
    if (g.n - g.inflight < want)
        kc_proc_log_tail(g.srv, 40, stderr);
    assert_true(g.n - g.inflight >= want);
}

/* Nothing more is sent; every request must be answered and stored once. */
void fs_drain_and_verify(void)
{
    int64_t deadline = kc_now_ms() + DRAIN_MS;
    while (g.inflight > 0 && kc_now_ms() < deadline) {
        collect();
        kc_sleep_ms(20);
    }
    collect();
    if (g.inflight > 0) {
        /* Tell the two possible losses apart: an answer the backend wrote
         * to Kafka but this client's consumer never saw, or one that is not
         * in the topic at all. A second client reads the topics again from
         * the beginning. */
        kc_client *again;

        /* the server's log first: CI shows the end of a failing run */
        kc_proc_log_tail(g.srv, 60, stderr);
        again = kc_client_new(g.brokers, KC_FROM_BEGINNING);
        if (again != NULL)
            kc_sleep_ms(5000);
        for (size_t i = 0; i < g.n; i++)
            if (g.m[i].answers == 0) {
                char cid[96];

                cid_of(i, cid, sizeof(cid));
                if (again == NULL)
                    say("no answer to %s\n", cid);
                else
                    say("no answer to %s; a fresh consumer finds %zu answer(s) to it in "
                        "Kafka\n", cid, kc_count_cid(again, cid));
            }
        kc_client_free(again);
    }
    assert_int_equal(g.inflight, 0);

    size_t repeats = 0;
    int64_t acked[N_ROOMS] = { 0 };
    for (size_t i = 0; i < g.n; i++) {
        assert_false(g.m[i].failed);
        repeats += (size_t)(g.m[i].answers - 1);
        acked[g.m[i].room]++;
    }
    for (int r = 0; r < N_ROOMS; r++) {
        /* every acknowledged send once, with its seq, and seqs 1..n */
        json_t *all = kc_history_all(g.c, &g.users[0], g.rooms[r]), *e;
        size_t k;
        assert_non_null(all);
        json_array_foreach(all, k, e) {
            const char *cmid = kc_str(e, "clientMsgId");
            size_t mi = cmid != NULL && cmid[0] == 'f' ? strtoul(cmid + 1, NULL, 10) : g.n;
            if (kc_int(e, "seq", -1) != (json_int_t)k + 1 || mi >= g.n ||
                g.m[mi].seq != (int64_t)k + 1 || g.m[mi].room != r) {
                say("room %s: %s is out of place (1..%lld)\n", g.rooms[r], kc_dumps(e),
                    (long long)acked[r]);
                fail_msg("a stored message repeats, has a gap or was never acknowledged");
            }
        }
        if ((int64_t)json_array_size(all) != acked[r])
            say("room %s holds %zu, %lld acknowledged\n", g.rooms[r], json_array_size(all),
                (long long)acked[r]);
        assert_int_equal(json_array_size(all), acked[r]);
        json_decref(all);
    }
    say("%zu chat sends, all answered (%zu repeated answers), each stored once, seqs "
        "gap-free\n", g.n, repeats);
}

void fs_setup(const char *tag)
{
    fs_setup_ex(tag, NULL);
}

void fs_setup_ex(const char *tag, const char *const *extra)
{
    g.rng = ((uint64_t)kc_wall_ms() << 1) | 1;
    g.m = calloc(MAX_MSGS, sizeof(*g.m));
    assert_non_null(g.m);
    snprintf(g.prefix, sizeof(g.prefix), "flt-%s-%d-%lld-", tag, (int)getpid(),
             (long long)kc_wall_ms());
    g.data = kc_tmppath(tag);
    kc_rm_rf(g.data);
    g.srv = kc_serve_start_ex("faults-serve", g.data, g.brokers, PARTITIONS, extra, 60);
    assert_non_null(g.srv);
    g.c = kc_client_new(g.brokers, KC_FROM_END);
    assert_non_null(g.c);
    /* A room lives in its creator's shard (user 0's); user 1 is made to be
     * in another, so that some sends always travel as internal commands. */
    for (int i = 0; i < N_USERS; i++) {
        int tries = 0;
        do
            assert_true(kc_user_new(g.c, &g.users[i], "flt"));
        while (i == 1 && ++tries < 32 && kc_partition_for(g.users[1].id, PARTITIONS) ==
                                             kc_partition_for(g.users[0].id, PARTITIONS));
    }
    const char *friends[N_USERS];
    for (int i = 1; i < N_USERS; i++)
        friends[i - 1] = g.users[i].id;
    friends[N_USERS - 1] = NULL;
    assert_true(kc_add_friends(g.c, &g.users[0], friends));
    /* room 0: users 0, 1, 2; room 1: users 0 and 3 */
    const char *r0[] = { g.users[1].id, g.users[2].id, NULL }, *r1[] = { g.users[3].id, NULL };
    assert_true(kc_create_room(g.c, &g.users[0], r0, "faults 0", g.rooms[0]));
    assert_true(kc_create_room(g.c, &g.users[0], r1, "faults 1", g.rooms[1]));
    int m0[] = { 0, 1, 2 }, m1[] = { 0, 3 };
    memcpy(g.members[0], m0, sizeof(m0));
    g.n_members[0] = 3;
    memcpy(g.members[1], m1, sizeof(m1));
    g.n_members[1] = 2;
    /* the other participants learn of their rooms through events */
    json_decref(kc_wait_events(g.c, g.users[2].id, "room", g.rooms[0], 1, 15000));
    json_decref(kc_wait_events(g.c, g.users[3].id, "room", g.rooms[1], 1, 15000));
}

int fs_teardown(void **state)
{
    (void)state;
    kc_client_free(g.c);
    g.c = NULL;
    kc_proc_free(g.srv);
    g.srv = NULL;
    kc_mock_cluster_free(g.mock, g.host);
    g.mock = NULL;
    g.host = NULL;
    free(g.m);
    g.m = NULL;
    free(g.data);
    g.data = NULL;
    g.n = g.scan = g.inflight = 0;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* mock cluster fault injection                                             */
/* ------------------------------------------------------------------------ */

void fs_mock_start(void)
{
    g.mock = kc_mock_cluster_new(3, 3, &g.host);
    snprintf(g.brokers, sizeof(g.brokers), "%s", rd_kafka_mock_cluster_bootstraps(g.mock));
    /* the mock answers no CreateTopics: make kchat's topics as `kchat broker` does */
    static const char *const fixed[] = { "chat-events", "kchat-internal", "kchat-dlq",
                                         "kchat-directory", "kchat-rooms",
                                         "kchat-changelog", "kchat-meta", "kchat-presence" };
    char name[96];
    for (int i = 0; i < KC_OP_COUNT + KC_OP_V11_COUNT; i++) {
        const char *op = i < KC_OP_COUNT ? kc_ops[i] : kc_ops_v11[i - KC_OP_COUNT];

        snprintf(name, sizeof(name), "%s-request", op);
        assert_int_equal(rd_kafka_mock_topic_create(g.mock, name, PARTITIONS, 3), 0);
        snprintf(name, sizeof(name), "%s-response", op);
        assert_int_equal(rd_kafka_mock_topic_create(g.mock, name, PARTITIONS, 3), 0);
    }
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        assert_int_equal(rd_kafka_mock_topic_create(g.mock, fixed[i],
                                                    strcmp(fixed[i], "kchat-meta") ? PARTITIONS : 1,
                                                    3), 0);
}

/* Every partition of every topic but kchat-internal led by @p broker. */
static void mock_leaders_except_internal(int32_t broker)
{
    static const char *const fixed[] = { "chat-events", "kchat-dlq", "kchat-directory",
                                         "kchat-rooms", "kchat-changelog", "kchat-presence" };
    char name[96];
    for (int p = 0; p < PARTITIONS; p++) {
        for (int i = 0; i < KC_OP_COUNT + KC_OP_V11_COUNT; i++) {
            const char *op = i < KC_OP_COUNT ? kc_ops[i] : kc_ops_v11[i - KC_OP_COUNT];

            snprintf(name, sizeof(name), "%s-request", op);
            assert_int_equal(rd_kafka_mock_partition_set_leader(g.mock, name, p, broker), 0);
            snprintf(name, sizeof(name), "%s-response", op);
            assert_int_equal(rd_kafka_mock_partition_set_leader(g.mock, name, p, broker), 0);
        }
        for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
            assert_int_equal(rd_kafka_mock_partition_set_leader(g.mock, fixed[i], p, broker), 0);
    }
}

/* kchat-internal led by broker 3 alone, the other topics by broker 1; then
 * broker 3 answers its next 3 produce requests with @p err, so only kchat's
 * cross-shard commands meet it while the stream runs. */
void fs_internal_produce_errors(const char *tag, rd_kafka_resp_err_t err)
{
    fs_mock_start();
    mock_leaders_except_internal(1);
    for (int p = 0; p < PARTITIONS; p++)
        assert_int_equal(rd_kafka_mock_partition_set_leader(g.mock, "kchat-internal", p, 3), 0);
    /* commands through Kafka alone, as between nodes: in memory they
     * would not meet the fault (--local-commands) */
    static const char *const kafka_only[] = { "--no-local-commands", NULL };
    fs_setup_ex(tag, kafka_only);
    fs_clock_start();
    /* writers whose sends to a room travel as commands to another shard */
    int cross = 0;
    for (int r = 0; r < N_ROOMS; r++)
        for (int k = 0; k < g.n_members[r]; k++)
            cross += kc_partition_for(g.users[g.members[r][k]].id, PARTITIONS) !=
                     kc_partition_for(g.rooms[r], PARTITIONS);
    say("%d of the members write to a room in another shard\n", cross);
    assert_true(cross > 0);
    fs_stream(1000);

    fs_phase(rd_kafka_err2name(err));
    rd_kafka_mock_broker_push_request_error_rtts(g.mock, 3, FS_API_PRODUCE, 3, err, 0, err, 0,
                                                 err, 0);
    fs_stream(4000);
    fs_recovered(rd_kafka_err2name(err));

    fs_phase("drain");
    fs_drain_and_verify();
    assert_true(kc_proc_stop_clean(g.srv, 20));
}

