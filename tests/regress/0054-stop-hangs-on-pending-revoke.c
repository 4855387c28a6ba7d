/*
 * Regression 0054 (fixed by the commits "consumer: leave the group before
 * closing, so that close has no rebalance left to answer" and "consumer: a
 * static member stays in its group when it stops"):
 * kchat_consumer_stop() could wait for ever. Seen once in 60 runs of
 * test_consumer under ThreadSanitizer (6 at a time), in the rebalance
 * test: member B stopped, so the group began a rebalance, and member A's
 * stop began before A's poll thread had read the revocation. A's poll
 * thread cleared librdkafka's assignment itself; the revocation's event
 * stayed queued and reached the rebalance callback inside
 * rd_kafka_consumer_close(), after close had unsubscribed, which makes the
 * group stop waiting for that answer and terminate. The callback's
 * rd_kafka_assign() was then served after the group had finished
 * terminating, and librdkafka 2.10.1 drops such a request without a reply
 * (gdb: the stopping thread in rd_kafka_assign(), the group's
 * `rkcg_terminated` set, its state TERM).
 *
 * The last step, the call served after termination, is a race inside
 * librdkafka that cannot be forced from outside. The two before it are
 * forced here: A's stop is held in its revoked() callback until B has left
 * and A's group has had 2 s to begin revoking. The test then checks that
 * A's stop returns and that no rd_kafka_assign() call was made inside
 * close: this program defines rd_kafka_assign(), which the consumer in
 * libkchat.a calls, counts the calls made on the stopping thread and
 * passes each on to librdkafka's. Seen failing on the code before the fix
 * (1 call inside close: the dynamic case in each of 3 runs, the static
 * case in its 1 run).
 *
 * Once with A a dynamic member, which now unsubscribes before close, and
 * once with A a static one (group.instance.id set, as `kchat serve` with
 * a changelog is): it must not unsubscribe, since that sends the group a
 * LeaveGroup that librdkafka leaves out when a static member closes, and
 * a restarted node would no longer get its shards back without a
 * rebalance. The third test checks that: a static member's stop leaves
 * the other member's assignment alone for the 2 s it watches (the session
 * is 6 s). A first version of the fix that unsubscribed every member
 * failed it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
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

#define DEADLINE_S 20.0

static const char *const topics[] = {"r0054-requests"};

static rd_kafka_t *mock_rk;
static rd_kafka_mock_cluster_t *mc;

struct member {
    kchat_consumer *c;
    atomic_uint assigned_calls, revoked_calls;
    atomic_bool hold_revoked;    /* the next revoked() waits for release */
    atomic_bool held;            /* revoked() is waiting now */
    atomic_bool release;
};

/* The stopping thread, once known: its rd_kafka_assign() calls are made
 * inside rd_kafka_consumer_close(). */
static pthread_t stopper;
static atomic_bool stopper_known;
static atomic_int calls_in_close;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef rd_kafka_resp_err_t (*assign_fn)(rd_kafka_t *, const rd_kafka_topic_partition_list_t *);

/* librdkafka's rd_kafka_assign(), counted on the stopping thread.
 * @locality any thread */
rd_kafka_resp_err_t rd_kafka_assign(rd_kafka_t *rk,
                                    const rd_kafka_topic_partition_list_t *partitions)
{
    static _Atomic(assign_fn) real;
    assign_fn f = atomic_load(&real);
    if (f == NULL) {
        *(void **)&f = dlsym(RTLD_NEXT, "rd_kafka_assign");
        if (f == NULL)
            abort();
        atomic_store(&real, f);
    }
    if (atomic_load(&stopper_known) && pthread_equal(pthread_self(), stopper))
        atomic_fetch_add(&calls_in_close, 1);
    return f(rk, partitions);
}

static void noop_process(void *opaque, unsigned worker, rd_kafka_message_t **msgs, size_t n)
{
    (void)opaque;
    (void)worker;
    (void)msgs;
    (void)n;
}

static void cb_assigned(void *opaque, const rd_kafka_topic_partition_list_t *parts)
{
    struct member *m = opaque;
    (void)parts;
    atomic_fetch_add(&m->assigned_calls, 1);
}

/* @locality the member's poll thread */
static void cb_revoked(void *opaque, const rd_kafka_topic_partition_list_t *parts)
{
    struct member *m = opaque;
    (void)parts;
    atomic_fetch_add(&m->revoked_calls, 1);
    if (!atomic_exchange(&m->hold_revoked, false))
        return;
    atomic_store(&m->held, true);
    for (double t0 = now_s(); !atomic_load(&m->release) && now_s() - t0 < 2 * DEADLINE_S;)
        usleep(1000);
}

/* Start @p m in @p group; a static member when @p instance is not NULL. */
static void member_start(struct member *m, const char *group, const char *instance)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {
        {"bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc)},
        {"group.id", group},
        {"session.timeout.ms", "6000"},
        {"heartbeat.interval.ms", "100"},
        {"fetch.wait.max.ms", "5"},
    };
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        assert_int_equal(rd_kafka_conf_set(conf, kv[i][0], kv[i][1], err, sizeof(err)),
                         RD_KAFKA_CONF_OK);
    if (instance)
        assert_int_equal(rd_kafka_conf_set(conf, "group.instance.id", instance, err,
                                           sizeof(err)), RD_KAFKA_CONF_OK);
    kchat_consumer_conf cc = {
        .topics = topics,
        .n_topics = 1,
        .n_workers = 1,
        .process = noop_process,
        .assigned = cb_assigned,
        .revoked = cb_revoked,
        .opaque = m,
    };
    int rc = kchat_consumer_start(&cc, conf, &m->c, err, sizeof(err));
    if (rc != KCHAT_OK)
        fprintf(stderr, "kchat_consumer_start: %s: %s\n", kchat_strerror(rc), err);
    assert_int_equal(rc, KCHAT_OK);
}

static bool wait_for(atomic_uint *n, unsigned at_least)
{
    for (double t0 = now_s(); now_s() - t0 < DEADLINE_S; usleep(10000))
        if (atomic_load(n) >= at_least)
            return true;
    return false;
}

static atomic_bool a_stopped;

static void *stop_a(void *arg)
{
    kchat_consumer_stop(arg);
    atomic_store(&a_stopped, true);
    return NULL;
}

/* A (static when @p a_instance is set) and B in @p group; A's stop held
 * in revoked() while B leaves. */
static void stop_with_revocation_pending(const char *group, const char *a_instance)
{
    static struct member a, b;

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    atomic_store(&a_stopped, false);
    atomic_store(&stopper_known, false);
    atomic_store(&calls_in_close, 0);
    member_start(&a, group, a_instance);
    assert_true(wait_for(&a.assigned_calls, 1));
    member_start(&b, group, NULL);
    assert_true(wait_for(&b.assigned_calls, 1));   /* A was assigned again too */
    assert_true(wait_for(&a.assigned_calls, 2));

    /* A's stop: its poll thread stops polling and waits in revoked(),
     * which stop calls (before the fix, after clearing librdkafka's
     * assignment; after it, while leaving the group or revoking). */
    atomic_store(&a.hold_revoked, true);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, stop_a, a.c), 0);
    stopper = t;
    atomic_store(&stopper_known, true);
    double t0 = now_s();
    while (!atomic_load(&a.held) && now_s() - t0 < DEADLINE_S)
        usleep(1000);
    assert_true(atomic_load(&a.held));

    /* B leaves; A's group learns of the rebalance at its next heartbeat
     * (100 ms) and, before the fix, queued a revocation A's poll thread
     * would not read. */
    kchat_consumer_stop(b.c);
    usleep(2000000);
    atomic_store(&a.release, true);

    t0 = now_s();
    while (!atomic_load(&a_stopped) && now_s() - t0 < DEADLINE_S)
        usleep(10000);
    printf("0054 %s: A's stop %s %.1f s after the release; rd_kafka_assign() calls inside "
           "close: %d\n", group, atomic_load(&a_stopped) ? "returned" : "still waits",
           now_s() - t0, atomic_load(&calls_in_close));
    assert_true(atomic_load(&a_stopped));   /* else the thread is left waiting */
    pthread_join(t, NULL);
    atomic_store(&stopper_known, false);
    assert_int_equal(atomic_load(&calls_in_close), 0);
}

static void test_stop_with_revocation_pending(void **state)
{
    (void)state;
    stop_with_revocation_pending("r0054-dynamic", NULL);
}

static void test_static_stop_with_revocation_pending(void **state)
{
    (void)state;
    stop_with_revocation_pending("r0054-static", "r0054-a");
}

/* A static member's stop sends no LeaveGroup: the other member sees no
 * rebalance begin (its assignment is not revoked) before A's 6 s session
 * ends. */
static void test_static_stop_keeps_membership(void **state)
{
    (void)state;
    static struct member a, b;

    member_start(&a, "r0054-keep", "r0054-keep-a");
    assert_true(wait_for(&a.assigned_calls, 1));
    member_start(&b, "r0054-keep", NULL);
    assert_true(wait_for(&b.assigned_calls, 1));
    assert_true(wait_for(&a.assigned_calls, 2));
    usleep(500000);   /* settled */
    unsigned before = atomic_load(&b.revoked_calls);

    double t0 = now_s();
    kchat_consumer_stop(a.c);
    while (now_s() - t0 < 2.0)
        usleep(10000);
    unsigned after = atomic_load(&b.revoked_calls);
    printf("0054 keep: B revoked %u times before A's stop, %u times 2 s after it\n", before,
           after);
    kchat_consumer_stop(b.c);
    assert_int_equal(after, before);
}

static int setup_cluster(void **state)
{
    (void)state;
    mc = kc_mock_cluster_new(1, 4, &mock_rk);
    return rd_kafka_mock_topic_create(mc, topics[0], 2, 1) ? -1 : 0;
}

static int teardown_cluster(void **state)
{
    (void)state;
    kc_mock_cluster_free(mc, mock_rk);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_with_revocation_pending),
        cmocka_unit_test(test_static_stop_with_revocation_pending),
        cmocka_unit_test(test_static_stop_keeps_membership),
    };
    return cmocka_run_group_tests_name("0054 stop hangs on a pending revocation", tests,
                                       setup_cluster, teardown_cluster);
}
