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

/** @brief Every (table, key, value) of shard @p shard of data directory
 *         @p data_dir, a line each, in hex, but for what a node writes of
 *         its own when it serves after a restore: its input offsets (moved
 *         to what the cluster it serves has), the cluster id, the outbox
 *         counter (it publishes at start) and the changelog's table and
 *         counter. @p rows gets the line count. Free the result. */
char *kc_shard_dump(const char *data_dir, int shard, size_t *rows);

/** @brief Print to stderr each line of @p a that @p b lacks, after @p tag
 *         (a line cut at 200 characters). */
void kc_dump_missing(const char *tag, const char *a, const char *b);

/** @brief How many times @p needle occurs in file @p path (0 when the file
 *         cannot be read). */
size_t kc_file_count(const char *path, const char *needle);

#endif
