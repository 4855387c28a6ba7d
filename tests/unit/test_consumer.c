/*
 * Unit tests for the pipeline consumer (include/kchat/consumer.h) against
 * librdkafka's in-process mock cluster: 3 brokers, 3 topics x 4 partitions,
 * a few thousand keyed messages.
 *
 * The callbacks run on the consumer's threads, where cmocka's asserts must
 * not be used: they count violations in atomics and the test thread asserts
 * on the counts after kchat_consumer_stop() (which joins those threads).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "kchat/consumer.h"
#include "kchat/error.h"
#include "support/mockfault.h"

#define NT 3                 /* topics */
#define NP 4                 /* partitions per topic */
#define MSGS_PER_TOPIC 1500
#define SKIP_TOPIC 0         /* this partition starts at SKIP_OFFSET */
#define SKIP_PART 1
#define SKIP_OFFSET 50
#define DEADLINE_S 40.0

/* ThreadSanitizer builds link src/sanitize/tsan_threads.c (see the Makefile). */

static const char *const topic_names[NT] = {"kc-req-a", "kc-req-b", "kc-internal"};

/* ---- the cluster and what was produced (set up once) ---- */

static struct {
    rd_kafka_t *mock_rk;                 /* throwaway handle owning the cluster */
    rd_kafka_mock_cluster_t *mc;
    char bootstraps[512];
    char *payload[NT][NP][MSGS_PER_TOPIC]; /* by offset */
    int64_t hw[NT][NP];                  /* high watermark = messages produced */
} fx;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int topic_index(const char *name)
{
    for (int t = 0; t < NT; t++)
        if (strcmp(name, topic_names[t]) == 0)
            return t;
    return -1;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    int t = topic_index(rd_kafka_topic_name(m->rkt));
    if (m->err || t < 0 || m->partition < 0 || m->partition >= NP ||
        m->offset < 0 || m->offset >= MSGS_PER_TOPIC) {
        fprintf(stderr, "delivery failed: %s\n", rd_kafka_err2str(m->err));
        abort();
    }
    fx.payload[t][m->partition][m->offset] = strndup(m->payload, m->len);
    if (m->offset + 1 > fx.hw[t][m->partition])
        fx.hw[t][m->partition] = m->offset + 1;
}

static int setup_cluster(void **state)
{
    (void)state;
    char err[512];
    rd_kafka_conf_t *conf;

    fx.mc = kc_mock_cluster_new(3, 4, &fx.mock_rk);
    snprintf(fx.bootstraps, sizeof(fx.bootstraps), "%s", rd_kafka_mock_cluster_bootstraps(fx.mc));
    for (int t = 0; t < NT; t++)
        if (rd_kafka_mock_topic_create(fx.mc, topic_names[t], NP, 1))
            return -1;

    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", fx.bootstraps, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof(err)))
        return -1;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!prod)
        return -1;
    for (int t = 0; t < NT; t++) {
        for (int i = 0; i < MSGS_PER_TOPIC; i++) {
            char key[32], val[64];
            snprintf(key, sizeof(key), "user-%d", i % 97);
            snprintf(val, sizeof(val), "%s/%d", topic_names[t], i);
            rd_kafka_resp_err_t e;
            while ((e = rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(topic_names[t]),
                                          RD_KAFKA_V_KEY(key, strlen(key)),
                                          RD_KAFKA_V_VALUE(val, strlen(val)),
                                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                          RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(prod, 10);
            if (e)
                return -1;
        }
    }
    if (rd_kafka_flush(prod, 30000))
        return -1;
    rd_kafka_destroy(prod);

    int64_t total = 0;
    for (int t = 0; t < NT; t++)
        for (int p = 0; p < NP; p++)
            total += fx.hw[t][p];
    if (total != NT * MSGS_PER_TOPIC || fx.hw[SKIP_TOPIC][SKIP_PART] <= SKIP_OFFSET + 10)
        return -1;
    return 0;
}

static int teardown_cluster(void **state)
{
    (void)state;
    for (int t = 0; t < NT; t++)
        for (int p = 0; p < NP; p++)
            for (int i = 0; i < MSGS_PER_TOPIC; i++)
                free(fx.payload[t][p][i]);
    kc_mock_cluster_free(fx.mc, fx.mock_rk);
    return 0;
}

/* ---- what the callbacks observe: shared by every member of a test ---- */

struct tp_state {
    int64_t next;     /* offset of record: next offset to apply */
    int64_t start;    /* first offset the test wants applied */
    int owner;        /* member that holds the partition, -1 if none */
};

struct world {
    pthread_mutex_t mu;
    struct tp_state tp[NT][NP];
    unsigned delay_us;                /* per message, in process() */
    atomic_uint_fast64_t processed;
    atomic_uint order_errors, payload_errors, worker_errors, owner_errors,
        offset_errors, copart_errors, bad_msgs;
};

struct member {
    struct world *w;
    int id;
    unsigned n_workers;
    kchat_consumer *c;
    atomic_uint assigned_calls, revoked_calls, nonempty_assigns;
    atomic_uint_fast64_t processed, idle_calls;
    atomic_bool revoked_early;        /* revoked() while work was in flight */
};

static void world_init(struct world *w, unsigned delay_us)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->mu, NULL);
    w->delay_us = delay_us;
    for (int t = 0; t < NT; t++)
        for (int p = 0; p < NP; p++) {
            int64_t s = (t == SKIP_TOPIC && p == SKIP_PART) ? SKIP_OFFSET : 0;
            w->tp[t][p] = (struct tp_state){.next = s, .start = s, .owner = -1};
        }
}

static uint64_t world_expected(void)
{
    uint64_t n = 0;
    for (int t = 0; t < NT; t++)
        for (int p = 0; p < NP; p++)
            n += (uint64_t)fx.hw[t][p];
    return n - SKIP_OFFSET;
}

static int64_t cb_start_offset(void *opaque, const char *topic, int32_t partition)
{
    struct member *m = opaque;
    int t = topic_index(topic);
    if (t < 0 || partition < 0 || partition >= NP) {
        atomic_fetch_add(&m->w->bad_msgs, 1);
        return RD_KAFKA_OFFSET_BEGINNING;
    }
    pthread_mutex_lock(&m->w->mu);
    int64_t off = m->w->tp[t][partition].next;
    pthread_mutex_unlock(&m->w->mu);
    return off;
}

static void cb_process(void *opaque, unsigned worker, rd_kafka_message_t **msgs, size_t n)
{
    struct member *mb = opaque;
    struct world *w = mb->w;
    for (size_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = msgs[i];
        int t = m->rkt ? topic_index(rd_kafka_topic_name(m->rkt)) : -1;
        if (m->err || t < 0 || m->partition < 0 || m->partition >= NP) {
            atomic_fetch_add(&w->bad_msgs, 1);
            continue;
        }
        if ((unsigned)m->partition % mb->n_workers != worker)
            atomic_fetch_add(&w->worker_errors, 1);
        pthread_mutex_lock(&w->mu);
        struct tp_state *st = &w->tp[t][m->partition];
        if (st->owner != mb->id)
            atomic_fetch_add(&w->owner_errors, 1);
        if (m->offset != st->next) {
            if (atomic_fetch_add(&w->order_errors, 1) < 5)
                fprintf(stderr, "member %d: %s [%d]: got offset %" PRId64 ", expected %" PRId64 "\n",
                        mb->id, topic_names[t], m->partition, m->offset, st->next);
        } else {
            st->next++;
        }
        pthread_mutex_unlock(&w->mu);
        const char *want = m->offset >= 0 && m->offset < MSGS_PER_TOPIC
                               ? fx.payload[t][m->partition][m->offset] : NULL;
        if (!want || m->len != strlen(want) || memcmp(m->payload, want, m->len) != 0)
            atomic_fetch_add(&w->payload_errors, 1);
        atomic_fetch_add(&w->processed, 1);
        atomic_fetch_add(&mb->processed, 1);
        if (w->delay_us)
            usleep(w->delay_us);
    }
}

static void cb_idle(void *opaque, unsigned worker)
{
    struct member *mb = opaque;
    (void)worker;
    atomic_fetch_add(&mb->idle_calls, 1);
}

static void cb_assigned(void *opaque, const rd_kafka_topic_partition_list_t *parts)
{
    struct member *mb = opaque;
    struct world *w = mb->w;
    bool has[NT][NP] = {{false}};
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &parts->elems[i];
        int t = topic_index(e->topic);
        if (t < 0 || e->partition < 0 || e->partition >= NP) {
            atomic_fetch_add(&w->bad_msgs, 1);
            continue;
        }
        has[t][e->partition] = true;
        struct tp_state *st = &w->tp[t][e->partition];
        if (st->owner != -1)   /* still held by another member */
            atomic_fetch_add(&w->owner_errors, 1);
        st->owner = mb->id;
        if (e->offset != st->next)   /* start_offset() was applied */
            atomic_fetch_add(&w->offset_errors, 1);
    }
    pthread_mutex_unlock(&w->mu);
    /* Co-partitioning: the same partition numbers of every topic. */
    for (int p = 0; p < NP; p++)
        for (int t = 1; t < NT; t++)
            if (has[t][p] != has[0][p])
                atomic_fetch_add(&w->copart_errors, 1);
    atomic_fetch_add(&mb->assigned_calls, 1);
    if (parts->cnt)
        atomic_fetch_add(&mb->nonempty_assigns, 1);
}

static void cb_revoked(void *opaque, const rd_kafka_topic_partition_list_t *parts)
{
    struct member *mb = opaque;
    struct world *w = mb->w;
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &parts->elems[i];
        int t = topic_index(e->topic);
        if (t < 0 || e->partition < 0 || e->partition >= NP)
            continue;
        if (w->tp[t][e->partition].owner != mb->id)
            atomic_fetch_add(&w->owner_errors, 1);
        w->tp[t][e->partition].owner = -1;
    }
    pthread_mutex_unlock(&w->mu);
    atomic_fetch_add(&mb->revoked_calls, 1);
}

static rd_kafka_conf_t *consumer_rk_conf(const char *group)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {
        {"bootstrap.servers", fx.bootstraps},
        {"group.id", group},
        {"session.timeout.ms", "6000"},
        {"heartbeat.interval.ms", "100"},
        {"fetch.wait.max.ms", "5"},
        {"fetch.error.backoff.ms", "10"},
        {"auto.offset.reset", "error"},   /* start_offset() must decide */
    };
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        assert_int_equal(rd_kafka_conf_set(conf, kv[i][0], kv[i][1], err, sizeof(err)),
                         RD_KAFKA_CONF_OK);
    return conf;
}

static void member_start(struct member *mb, struct world *w, int id, unsigned n_workers,
                         const char *group, size_t ring, size_t max_batch)
{
    memset(mb, 0, sizeof(*mb));
    mb->w = w;
    mb->id = id;
    mb->n_workers = n_workers;
    kchat_consumer_conf cc = {
        .topics = topic_names,
        .n_topics = NT,
        .n_workers = n_workers,
        .ring_capacity = ring,
        .max_batch = max_batch,
        .tick_ms = 10,
        .start_offset = cb_start_offset,
        .process = cb_process,
        .idle = cb_idle,
        .assigned = cb_assigned,
        .revoked = cb_revoked,
        .opaque = mb,
    };
    char err[512];
    int rc = kchat_consumer_start(&cc, consumer_rk_conf(group), &mb->c, err, sizeof(err));
    if (rc)
        fprintf(stderr, "kchat_consumer_start: %s: %s\n", kchat_strerror(rc), err);
    assert_int_equal(rc, KCHAT_OK);
    assert_non_null(kchat_consumer_handle(mb->c));
}

/* Messages read from Kafka but not processed yet: in rings or stashes.
 * consumed is read before processed, so this never under-estimates. */
static int64_t in_flight(struct member *mb)
{
    kchat_consumer_stats st;
    kchat_consumer_get_stats(mb->c, &st);
    return (int64_t)st.consumed - (int64_t)atomic_load(&mb->processed);
}

/* On a timeout: every partition not applied to its end, where it stopped,
 * and which member held it, so that a stall says where it was. */
static void world_dump_short(struct world *w)
{
    pthread_mutex_lock(&w->mu);
    for (int t = 0; t < NT; t++)
        for (int p = 0; p < NP; p++)
            if (w->tp[t][p].next < fx.hw[t][p])
                printf("  topic %d partition %d: applied up to %" PRId64 " of %" PRId64
                       ", held by member %d\n", t, p, w->tp[t][p].next, (int64_t)fx.hw[t][p],
                       w->tp[t][p].owner);
    pthread_mutex_unlock(&w->mu);
}

/* Wait until @p n messages were processed; track the most in flight. */
static bool wait_until_processed(struct world *w, struct member *mb, uint64_t n, double t0,
                                 int64_t *max_in_flight)
{
    while (atomic_load(&w->processed) < n) {
        if (now_s() - t0 > DEADLINE_S) {
            printf("%.0f s and %" PRIu64 " of %" PRIu64 " processed; short:\n", DEADLINE_S,
                   (uint64_t)atomic_load(&w->processed), n);
            world_dump_short(w);
            return false;
        }
        if (max_in_flight) {
            int64_t f = in_flight(mb);
            if (f > *max_in_flight)
                *max_in_flight = f;
        }
        usleep(2000);
    }
    return true;
}

static void check_world(struct world *w, uint64_t expected)
{
    assert_int_equal(atomic_load(&w->processed), expected);
    assert_int_equal(atomic_load(&w->order_errors), 0);
    assert_int_equal(atomic_load(&w->payload_errors), 0);
    assert_int_equal(atomic_load(&w->worker_errors), 0);
    assert_int_equal(atomic_load(&w->owner_errors), 0);
    assert_int_equal(atomic_load(&w->offset_errors), 0);
    assert_int_equal(atomic_load(&w->copart_errors), 0);
    assert_int_equal(atomic_load(&w->bad_msgs), 0);
    for (int t = 0; t < NT; t++)
        for (int p = 0; p < NP; p++)
            assert_int_equal(w->tp[t][p].next, fx.hw[t][p]); /* all of it, once each */
}

/* ---- tests ---- */

/* The regression test of a fetch wait of 500 ms lowered to 100 ms is
 * tests/regress/0023-fetch-wait-500-lowered.c. */

static void test_start_rejects_bad_conf(void **state)
{
    (void)state;
    char err[256];
    kchat_consumer *c = NULL;
    kchat_consumer_conf cc = {.topics = topic_names, .n_topics = NT, .n_workers = 2,
                              .process = cb_process};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    cc.n_workers = 0;
    assert_int_equal(kchat_consumer_start(&cc, conf, &c, err, sizeof(err)), KCHAT_EINVAL);
    cc.n_workers = 2;
    cc.process = NULL;
    assert_int_equal(kchat_consumer_start(&cc, conf, &c, err, sizeof(err)), KCHAT_EINVAL);
    cc.process = cb_process;
    const char *const dup[] = {"a", "b", "a"};
    cc.topics = dup;
    assert_int_equal(kchat_consumer_start(&cc, conf, &c, err, sizeof(err)), KCHAT_EINVAL);
    assert_non_null(strstr(err, "duplicate"));
    cc.topics = topic_names;
    assert_int_equal(kchat_consumer_start(&cc, NULL, &c, err, sizeof(err)), KCHAT_EINVAL);
    /* No group.id: refused, and the conf is still ours (destroyed below). */
    assert_int_equal(kchat_consumer_start(&cc, conf, &c, err, sizeof(err)), KCHAT_ECONFIG);
    assert_non_null(strstr(err, "group.id"));
    assert_null(c);
    rd_kafka_conf_destroy(conf);
    kchat_consumer_stop(NULL); /* no-op */
}

/* One member, W=2, rings of 4, a slow process(): pauses happen; every
 * message arrives once, in order per partition, on worker p % W; the start
 * offset of one partition is honoured; stop() is prompt. */
static void test_backpressure_exactly_once_in_order(void **state)
{
    (void)state;
    static struct world w;
    static struct member mb;
    world_init(&w, 200);
    double t0 = now_s();
    member_start(&mb, &w, 1, 2, "kc-test-bp", 4, 8);

    while (!kchat_consumer_ready(mb.c) && now_s() - t0 < DEADLINE_S)
        usleep(10000);
    assert_true(kchat_consumer_ready(mb.c));
    int64_t max_in_flight = 0;
    bool done = wait_until_processed(&w, &mb, world_expected(), t0, &max_in_flight);
    usleep(100000); /* anything extra (a duplicate) would show up now */

    kchat_consumer_stats st;
    kchat_consumer_get_stats(mb.c, &st);
    double ts = now_s();
    kchat_consumer_stop(mb.c);
    double stop_s = now_s() - ts;
    printf("backpressure: %.2f s, consumed %" PRIu64 ", paused %" PRIu64 ", resumed %" PRIu64
           ", ring fill max %zu, paused now %u, max in flight %" PRId64 ", idle calls %" PRIu64
           ", stop %.3f s\n",
           ts - t0, st.consumed, st.paused_events, st.resumed_events, st.ring_fill_max,
           st.paused_now, max_in_flight, (uint64_t)atomic_load(&mb.idle_calls), stop_s);

    assert_true(done);
    check_world(&w, world_expected());
    assert_int_equal(st.consumed, world_expected());
    assert_true(st.paused_events > 0);
    assert_true(st.resumed_events > 0);
    assert_true(st.ring_fill_max <= 4);
    /* The memory bound: T x W rings of 4, plus one stashed message per
     * partition (librdkafka drops the rest of a paused partition's
     * pre-fetch), plus what a process() call holds (max_batch per worker). */
    assert_true(max_in_flight <= NT * 2 * 4 + NT * NP + 2 * 8);
    assert_int_equal(st.paused_now, 0);   /* everything was handed over */
    assert_int_equal(atomic_load(&mb.assigned_calls), 1);
    assert_int_equal(atomic_load(&mb.revoked_calls), 1);   /* by stop() */
    assert_true(atomic_load(&mb.idle_calls) > 0);
    assert_true(stop_s < 5.0);
    pthread_mutex_destroy(&w.mu);
}

/* Two members of one group, different W: the second joins mid-stream, the
 * first revokes (after draining) and the partitions move. Offsets of record
 * live in the shared world, as they would in LMDB: every message is applied
 * exactly once overall, never by a member that does not own it. */
static void test_rebalance_hands_over_exactly_once(void **state)
{
    (void)state;
    static struct world w;
    static struct member a, b;
    world_init(&w, 500);
    double t0 = now_s();
    member_start(&a, &w, 1, 2, "kc-test-rebalance", 4, 8);
    bool started_b = wait_until_processed(&w, &a, 300, t0, NULL);
    assert_true(started_b);
    member_start(&b, &w, 2, 3, "kc-test-rebalance", 8, 16);

    bool done = wait_until_processed(&w, &a, world_expected(), t0, NULL);
    usleep(100000);
    double ts = now_s();
    kchat_consumer_stop(b.c);
    kchat_consumer_stop(a.c);
    double stop_s = now_s() - ts;
    printf("rebalance: %.2f s; A processed %" PRIu64 " (assigned %u, revoked %u), "
           "B processed %" PRIu64 " (assigned %u, revoked %u); stop both %.3f s\n",
           ts - t0, (uint64_t)atomic_load(&a.processed), atomic_load(&a.assigned_calls),
           atomic_load(&a.revoked_calls), (uint64_t)atomic_load(&b.processed),
           atomic_load(&b.assigned_calls), atomic_load(&b.revoked_calls), stop_s);

    assert_true(done);
    check_world(&w, world_expected());
    assert_true(atomic_load(&a.assigned_calls) >= 2);   /* before and after B */
    assert_true(atomic_load(&a.revoked_calls) >= 2);
    assert_true(atomic_load(&b.nonempty_assigns) >= 1);
    assert_true(atomic_load(&b.processed) > 0);
    assert_true(stop_s < 10.0);
    pthread_mutex_destroy(&w.mu);
}

/* stop() in the middle of a paused, back-pressured stream: it returns
 * promptly, what was processed is a gap-free prefix of every partition,
 * and nothing is processed after revoked(). */
static void test_stop_midstream(void **state)
{
    (void)state;
    static struct world w;
    static struct member mb;
    world_init(&w, 500);
    double t0 = now_s();
    member_start(&mb, &w, 1, 2, "kc-test-stop", 4, 8);
    int64_t max_in_flight = 0;
    assert_true(wait_until_processed(&w, &mb, 500, t0, &max_in_flight));
    assert_true(max_in_flight <= NT * 2 * 4 + NT * NP + 2 * 8);

    double ts = now_s();
    kchat_consumer_stop(mb.c);
    double stop_s = now_s() - ts;
    uint64_t n = atomic_load(&w.processed);
    printf("stop mid-stream: processed %" PRIu64 " of %" PRIu64 ", stop %.3f s\n", n,
           world_expected(), stop_s);

    assert_true(n < world_expected());
    assert_int_equal(atomic_load(&w.order_errors), 0);
    assert_int_equal(atomic_load(&w.payload_errors), 0);
    assert_int_equal(atomic_load(&w.worker_errors), 0);
    assert_int_equal(atomic_load(&w.owner_errors), 0);
    assert_int_equal(atomic_load(&w.bad_msgs), 0);
    uint64_t applied = 0;
    for (int t = 0; t < NT; t++)
        for (int p = 0; p < NP; p++)
            applied += (uint64_t)(w.tp[t][p].next - w.tp[t][p].start);
    assert_int_equal(applied, n);   /* processed == the prefixes, no gaps */
    assert_int_equal(atomic_load(&mb.revoked_calls), 1);
    assert_true(stop_s < 5.0);
    pthread_mutex_destroy(&w.mu);
}

/* stop() before the group ever assigned anything: prompt, no revoked(). */
static void test_stop_before_assignment(void **state)
{
    (void)state;
    static struct world w;
    static struct member mb;
    world_init(&w, 0);
    member_start(&mb, &w, 1, 1, "kc-test-early-stop", 0, 0);
    assert_false(kchat_consumer_ready(mb.c));
    double ts = now_s();
    kchat_consumer_stop(mb.c);
    double stop_s = now_s() - ts;
    assert_int_equal(atomic_load(&mb.assigned_calls), 0);
    assert_int_equal(atomic_load(&mb.revoked_calls), 0);
    assert_int_equal(atomic_load(&w.processed), 0);
    assert_true(stop_s < 5.0);
    pthread_mutex_destroy(&w.mu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_rejects_bad_conf),
        cmocka_unit_test(test_backpressure_exactly_once_in_order),
        cmocka_unit_test(test_rebalance_hands_over_exactly_once),
        cmocka_unit_test(test_stop_midstream),
        cmocka_unit_test(test_stop_before_assignment),
    };
    return cmocka_run_group_tests(tests, setup_cluster, teardown_cluster);
}
