/**
 * @file compacted.h
 * @brief kchat's compacted topics as Kafka's log cleaner leaves them, for
 *        tests of restores from them (regressions 0055, 0056); and shard
 *        stores compared table by table. Include after <cmocka.h>: every
 *        function fails the running test when Kafka or a store refuses.
 *        Called from the test's thread.
 *
 * The mock cluster never compacts, and Kafka compacts only rolled segments
 * (7 days or 1 GB by default), so a test copies the topics to a second
 * cluster in the state compaction would leave: of each key only its last
 * record, and, once `delete.retention.ms` has passed, no tombstone either.
 */
#ifndef KCHAT_TESTS_COMPACTED_H
#define KCHAT_TESTS_COMPACTED_H

#include <stdbool.h>
#include <stddef.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "kchat/store.h"
#include "kclient.h"

/** @brief A mock cluster of one broker with kchat's topics, @p partitions
 *         each (as `kchat broker` makes them), on a handle of its own: free
 *         both with kc_mock_cluster_free() (mockfault.h).
 *  @return its bootstrap list (the cluster's). */
const char *kc_compacted_cluster(int partitions, rd_kafka_mock_cluster_t **mock,
                                 rd_kafka_t **host);

/** What a test of a restore from a copy of a cluster starts: the node it
 *  runs, its client, and the source and copy mock clusters (any NULL). */
typedef struct kc_two_clusters {
    kc_proc *srv;
    kc_client *client;
    rd_kafka_t *host[2];
    rd_kafka_mock_cluster_t *mock[2];
} kc_two_clusters;

/** @brief Kill and free what @p t holds, and clear it (a test's teardown,
 *         so that a failed assertion still cleans up). */
void kc_two_clusters_free(kc_two_clusters *t);

/** Every record of kchat's compacted topics (kchat-changelog, kchat-meta,
 *  kchat-directory, kchat-rooms) as read from one cluster. Opaque. */
typedef struct kc_compacted kc_compacted;

/** @brief Read every partition of the compacted topics of @p brokers
 *         (@p partitions each) to its end, committed records only (as a
 *         restore reads them). Free with kc_compacted_copy(). */
kc_compacted *kc_compacted_read(const char *brokers, int partitions);

/** What kc_compacted_copy() left out. */
typedef struct kc_compacted_counts {
    size_t kept;          /**< records produced to the copy */
    size_t superseded;    /**< records with a later record of their key */
    size_t tombstones;    /**< last records of their key that are tombstones,
                               left out with @p tombstones_expired */
    size_t torn;          /**< changelog transactions that lost their last change
                               (kchat-cl-last) and kept another */
} kc_compacted_counts;

/** @brief Produce to @p brokers, partition by partition and in order, what
 *         the log cleaner leaves of @p c: of each key its last record; with
 *         @p tombstones_expired no tombstone either. Frees @p c. */
kc_compacted_counts kc_compacted_copy(kc_compacted *c, const char *brokers,
                                      bool tombstones_expired);

/** @brief Every (table, key, value) of store @p s, a line each, in hex, but
 *         the changelog's table and counter; with @p as_served also what a
 *         node changes of its own as it serves on after a restore (see
 *         kc_shards_compare()). @p rows gets the line count. Free the
 *         result. */
char *kc_store_dump(kchat_store *s, bool as_served, size_t *rows);

/** @brief Fail the running test unless shards 0 to @p partitions - 1 of
 *         data directory @p got hold the same (table, key, value) rows as
 *         those of @p want, but for what a node writes of its own when it
 *         serves after a restore: its input offsets (moved to what the
 *         cluster it serves has), the cluster id, the outbox and its
 *         counter (it produces the outbox again, and publishes at start),
 *         the command streams' counters (a command the first run left
 *         unacknowledged is acknowledged then) and the changelog's table
 *         and counter. On a
 *         difference it prints, per shard, the rows @p got lacks and those
 *         it has beyond @p want (@p extra names them), in hex.
 *  @return the rows of @p want. */
size_t kc_shards_compare(const char *want, const char *got, int partitions, const char *extra);

/** @brief Wait up to 60 s until `kchat serve` @p srv has logged the restore
 *         of @p partitions shards from kchat-changelog, and fail the running
 *         test unless it did, each dropping no unfinished transaction. */
void kc_wait_restored_whole(const kc_proc *srv, int partitions);

#endif
