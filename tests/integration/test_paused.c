/*
 * kchat-test: kafka-only (run only on real Apache Kafka, by `make check-kafka`)
 * kchat-test: kafka-nodes=3 (tests/run.sh starts a 3-broker cluster for it)
 *
 * Fencing, tested from outside: a `kchat serve` node paused past its Kafka
 * session timeout (SIGSTOP, then SIGCONT) must never get an effect accepted
 * after another node took its shards over (docs/scaling.md, "What is not
 * built"). The world, the stream and the checks are tests/support/nodes.h's
 * (as in test_multinode.c): 8 users, two on each of the 4 shards, 4 rooms,
 * one on each shard, and a stream thread sending every 100 ms a chat send
 * and a probe (user-search-room) per shard.
 *
 * Why it could fail. A paused node does not know it was paused. Once its
 * consumer session (6 s) has expired the group gives its shards to the
 * other node, which restores them from kchat-changelog and serves them. On
 * SIGCONT the paused node, now a zombie, goes on from where it stopped
 * until its consumer learns that the assignment is gone: it may apply the
 * requests it had read from Kafka and not yet answered, and produce their
 * changelog records, answers, events and commands. That breaks what the
 * clients were told in two ways:
 *  - a late answer contradicts the new owner's: one request (kchat-cid)
 *    answered twice with different seqs or outcomes, or a chat event
 *    naming another message at a seq already given out;
 *  - late changelog records land after the new owner's in the compacted
 *    changelog and overwrite them (a message at a seq, a room's lastSeq),
 *    so whoever restores the shard next (a node that joins, the zombie
 *    itself when it gets the shard back) holds state that contradicts
 *    acknowledged sends, even when no late answer was seen.
 * So that the zombie has something to apply, each pause comes right after
 * a burst of 32 chat sends (every writer into every room) that the stream
 * thread sends back to back; the same thread sends SIGSTOP as soon as Kafka
 * has acknowledged the last one, while the node is still reading and
 * applying the burst.
 *
 * test_paused_owner_is_fenced: nodes A and B (with --metrics-http, to see
 *    which owns how many shards), the world, a stream.
 *  1. After 3 s the node owning the most shards (A on a tie) is paused
 *     after a burst. The stream goes on; the other node must answer probes
 *     of every shard within 30 s and own all 4 shards. 5 s later SIGCONT;
 *     10 s more; the stream ends; nd_check_world() (every request answered
 *     with success, repeats identical, histories exactly the acknowledged
 *     sends at their seqs 1..n, room lists with lastSeq, friend lists,
 *     events) and nd_check_event_repeats() (no chat event, repeats
 *     included, names another message than the one acknowledged at its
 *     seq).
 *  2. Once the two nodes share the shards again, the same in a new stream,
 *     pausing the node owning the most (B on a tie).
 *  3. The changelog: A and B get SIGTERM (each must exit 0), both data
 *     directories are deleted, and C starts on an empty one, so it restores
 *     every shard from kchat-changelog alone. The same checks again, read
 *     through C: every room's history is exactly what was acknowledged
 *     (same seq, same message) and lastSeq is right.
 * Prints `pause: SIGSTOP to first answer from new owner: X ms` per pause.
 * Takes about 3 to 4 minutes on a 2-core machine.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <cmocka.h>

#include "support/kclient.h"
#include "support/nodes.h"

#define BURST       32     /* chat sends right before a pause: each writer into each room */
#define TAKEOVER_MS 30000  /* the other node answers every shard (session timeout 6 s) */
#define SHARDS_MS   60000  /* the running nodes own every shard between them */
#define STREAM_MAX  900    /* ticks of one stream at most (90 s) */

/* A pause, sent by the stream thread right after a burst (pause_now()). */
struct pause {
    pid_t pid;
    int64_t at_ms;   /* wall clock right after the SIGSTOP */
};

/* Runs on the stream thread: no assertion. */
static void pause_now(void *arg)
{
    struct pause *p = arg;
    kill(p->pid, SIGSTOP);
    p->at_ms = kc_wall_ms();
}

static int owned(int k)
{
    return (int)nd_metric(k, "kchat_shards_owned");
}

/* Wait (SHARDS_MS) until the @p n running nodes @p ks own every shard
 * between them and restore none; prints who owns how many. */
static void wait_shards(const int *ks, int n)
{
    int64_t deadline = kc_now_ms() + SHARDS_MS, t0 = kc_now_ms();
    for (;;) {
        int sum = 0, restoring = 0;
        char line[128] = "";
        for (int i = 0; i < n; i++) {
            int o = owned(ks[i]);
            sum += o;
            restoring += (int)nd_metric(ks[i], "kchat_shards_restoring");
            size_t len = strlen(line);
            snprintf(line + len, sizeof(line) - len, " node %s owns %d;", nd_node_name(ks[i]), o);
        }
        bool done = sum == ND_PARTITIONS && restoring == 0;
        if (done || kc_now_ms() >= deadline) {
            fprintf(stderr, "%s:%s %d restoring, after %lld ms\n", nd_case_name(), line,
                    restoring, (long long)(kc_now_ms() - t0));
            if (!done)
                kc_diag_dump();
            assert_true(done);
            return;
        }
        kc_sleep_ms(200);
    }
}

/* Print node @p k's hand-over counters. */
static void print_counters(int k)
{
    fprintf(stderr, "%s: node %s: acquired %.0f (warm %.0f), released %.0f, diverged %.0f\n",
            nd_case_name(), nd_node_name(k), nd_metric(k, "kchat_shards_acquired_total"),
            nd_metric(k, "kchat_shards_acquired_warm_total"),
            nd_metric(k, "kchat_shards_released_total"),
            nd_metric(k, "kchat_shards_diverged_total"));
}

/* During a stream of nodes a and b: pause the one owning the most shards
 * (@p prefer on a tie) right after a burst, wait until the other serves
 * every shard, 5 s more, resume it, 10 s more. */
static void pause_round(struct nd_world *w, int prefer)
{
    const int both[] = {0, 1};
    wait_shards(both, 2);
    int oa = owned(0), ob = owned(1);
    int k = oa > ob ? 0 : ob > oa ? 1 : prefer, other = 1 - k;
    struct pause p = {kc_proc_pid(nd_node(k)), 0};
    assert_true(p.pid > 0);

    nd_stream_burst(BURST, pause_now, &p);
    fprintf(stderr, "%s: node %s (owning %d shards) paused with SIGSTOP right after a burst "
            "of %d chat sends\n", nd_case_name(), nd_node_name(k), k == 0 ? oa : ob, BURST);
    int64_t took = nd_wait_every_shard(w, p.at_ms, TAKEOVER_MS);
    if (took >= 0)
        fprintf(stderr, "pause: SIGSTOP to first answer from new owner: %lld ms\n",
                (long long)took);
    else
        fprintf(stderr, "pause: SIGSTOP to first answer from new owner: none (a shard never "
                "answered)\n");
    assert_true(took >= 0);
    wait_shards(&other, 1);

    nd_stream_wait(nd_stream_done() + 50);
    assert_int_equal(kill(p.pid, SIGCONT), 0);
    fprintf(stderr, "%s: node %s resumed with SIGCONT after %lld ms paused\n", nd_case_name(),
            nd_node_name(k), (long long)(kc_wall_ms() - p.at_ms));
    nd_stream_wait(nd_stream_done() + 100);
    print_counters(k);
    print_counters(other);
}

/* nd_check_world() and nd_check_event_repeats(), both printed first. */
static void check_all(struct nd_world *w, const char *label)
{
    nd_drain(w, ND_DRAIN_MS);
    bool events = nd_check_event_repeats(w);
    nd_check_world(w, label);
    assert_true(events);
}

static void test_paused_owner_is_fenced(void **state)
{
    (void)state;
    nd_case("paused");
    nd_use_metrics(true);
    struct nd_world *w = nd_world_begin("paused", 2);
    nd_world_setup(w);

    nd_stream_start(w, STREAM_MAX);
    nd_stream_wait(30);
    pause_round(w, 0);
    nd_stream_end();
    check_all(w, "after a pause of the node owning the most shards (a on a tie)");

    nd_stream_start(w, STREAM_MAX);
    nd_stream_wait(30);
    pause_round(w, 1);
    nd_stream_end();
    check_all(w, "after a pause of the node owning the most shards (b on a tie)");

    /* the changelog alone: what a node restores must be what was acknowledged */
    bool a_clean = nd_node_stop(0), b_clean = nd_node_stop(1);
    kc_rm_rf(nd_node_data(0));
    kc_rm_rf(nd_node_data(1));
    nd_node_start(2, true);
    const int c[] = {2};
    wait_shards(c, 1);
    print_counters(2);
    check_all(w, "on node c, every shard restored from kchat-changelog alone");
    assert_true(a_clean);
    assert_true(b_clean);
}

int main(void)
{
    /* KCHAT_TEST_FILTER=test_paused* runs only the matching cases */
    const char *filter = getenv("KCHAT_TEST_FILTER");
    if (filter != NULL && filter[0] != '\0')
        cmocka_set_test_filter(filter);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_paused_owner_is_fenced, nd_setup, nd_teardown),
    };
    if (kc_test_brokers() == NULL) {
        fprintf(stderr, "test_paused runs on real Kafka only: make check-kafka sets "
                "KCHAT_TEST_BROKERS\n");
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
