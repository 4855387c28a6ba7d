/**
 * @file faultstream.h
 * @brief A stream of chat sends kept in flight while a fault is injected,
 *        checked afterwards (PROTOCOL.md §7). Include after <cmocka.h>.
 *
 * Moved out of tests/integration/test_faults.c so that its mock-cluster
 * tests and the numbered regression tests built on it
 * (tests/regress/NNNN-*.c) share one copy. The stream's state is one global:
 * one stream per test at a time, released by fs_teardown().
 *
 * The stream: users 0..3, user 1 in another shard than user 0 (a room lives
 * in its creator's shard, user 0's, so user 1's sends always travel as
 * internal commands); room 0 holds users 0, 1, 2 and room 1 users 0 and 3;
 * FS_INFLIGHT sends outstanding, each with its own cid and clientMsgId.
 * Nothing is re-sent by the client: every recovery is the pipeline's own.
 * Afterwards every send must be answered with success (repeats agreeing),
 * stored once with its seq, and each room's seqs must run 1..n.
 *
 * Every function fails the running cmocka test on a broken expectation.
 */
#ifndef KCHAT_TESTS_FAULTSTREAM_H
#define KCHAT_TESTS_FAULTSTREAM_H

#include <stdbool.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "kclient.h"

#define FS_PARTITIONS 4   /**< partitions of every topic */
#define FS_INFLIGHT   16  /**< chat sends kept outstanding */

/** Kafka protocol request types the faults aim at. */
#define FS_API_PRODUCE 0
#define FS_API_FETCH   1
#define FS_API_HEARTBEAT 12

/**
 * @brief Host a librdkafka mock cluster of 3 brokers in this process, with
 *        kchat's topics (FS_PARTITIONS partitions, 3 replicas each), and
 *        stream against it. The mock answers no CreateTopics, so the topics
 *        are made here, as `kchat broker` does.
 */
void fs_mock_start(void);

/** @brief The cluster of fs_mock_start() (NULL before). */
rd_kafka_mock_cluster_t *fs_mock(void);

/** @brief Stream against the cluster @p bootstrap instead (real Kafka). */
void fs_use_brokers(const char *bootstrap);

/**
 * @brief Start `kchat serve` (data directory `kc_tmppath(tag)`) on the
 *        cluster, a client, the users and the two rooms.
 * @param[in] tag short `[A-Za-z0-9-]` label for the cids and the data.
 */
void fs_setup(const char *tag);

/** @brief fs_setup() with @p extra (NULL or NULL-terminated) arguments to
 *         `kchat serve`. */
void fs_setup_ex(const char *tag, const char *const *extra);

/** @brief The server fs_setup() started. */
kc_proc *fs_server(void);

/** @brief Start the fault clock: fs_phase() and fs_recovered() print from it. */
void fs_clock_start(void);

/**
 * @brief Keep FS_INFLIGHT sends outstanding for @p ms. With @p send false
 *        only collect answers: while a broker is down the test client's own
 *        sends to the partitions it leads would block (kc_send_req() waits
 *        for the broker's acknowledgement), so only the requests in flight
 *        meet the fault.
 */
void fs_stream_ex(int ms, bool send);

/** @brief fs_stream_ex(@p ms, true). */
void fs_stream(int ms);

/** @brief Print a line naming the next phase, with the counts so far. */
void fs_phase(const char *what);

/**
 * @brief After a fault is cleared the stream must flow again: 2 *
 *        FS_INFLIGHT more answers within 45 s (prints how long it took).
 */
void fs_recovered(const char *fault);

/** @brief Send nothing more; every request answered and stored once. */
void fs_drain_and_verify(void);

/**
 * @brief kchat-internal led by broker 3 alone, the other topics by broker
 *        1; then broker 3 answers its next 3 produce requests with @p err,
 *        so only kchat's cross-shard commands meet it while the stream runs
 *        (the server runs with `--no-local-commands`, so that every
 *        command goes through Kafka alone).
 *        The whole test: mock cluster, setup, fault, recovery, drain and
 *        verification, clean stop of the server.
 */
void fs_internal_produce_errors(const char *tag, rd_kafka_resp_err_t err);

/** @brief cmocka teardown: release the client, server, cluster and stream. */
int fs_teardown(void **state);

#endif /* KCHAT_TESTS_FAULTSTREAM_H */
