/**
 * @file offsets.h
 * @brief Read positions outside a partition, for the tests of what a node
 *        does with a stored offset the partition no longer has (the
 *        directory replica's, test_replica_positions; a shard's, regression
 *        0067): the offsets a data directory stored, the partitions'
 *        watermarks, and filler records that push the oldest out of a
 *        partition of `kchat broker` (which keeps 5 MB of each).
 *
 * Include after <cmocka.h>: every function fails the running test when
 * Kafka or a store refuses. Called from the test's thread, with no
 * `kchat serve` using the store at the time. Linked only into programs
 * that link libkchat.a (the store API): the numbered regressions and the
 * Makefile's INT_WHITEBOX programs.
 */
#ifndef KCHAT_TESTS_OFFSETS_H
#define KCHAT_TESTS_OFFSETS_H

#include <stdint.h>

#include "kclient.h"

/** Bytes of filler kc_push_out_oldest() writes: more than `kchat broker`
 *  keeps of a partition (5 MB). */
#define KC_FILLER_BYTES  (6 * 1024 * 1024)
/** ... in records of this size, each its own message set. */
#define KC_FILLER_RECORD (100 * 1024)
/** ... so this many per partition. */
#define KC_FILLER_COUNT  (KC_FILLER_BYTES / KC_FILLER_RECORD)

/**
 * @brief The offset stored in the LMDB environment @p store_dir (a shard,
 *        `DATA/shard-NNNN`, or the replica, `DATA/directory`) as the next
 *        to read of (@p topic, @p partition); with @p move > 0, also
 *        stores it @p move further.
 * @return the offset stored before (the test fails when there is none).
 */
int64_t kc_stored_offset(const char *store_dir, const char *topic, int32_t partition,
                         int64_t move);

/** @brief The low and high watermarks of (@p topic, @p partition) on
 *         @p brokers, asked of the broker (10 s at most). */
void kc_watermarks(const char *brokers, const char *topic, int32_t partition, int64_t *lo,
                   int64_t *hi);

/**
 * @brief KC_FILLER_COUNT records of KC_FILLER_RECORD bytes of 'f', without
 *        a key or headers (no data set's, no user's), to (@p topic,
 *        @p partition) through @p c, each waited for: on `kchat broker`
 *        the partition then begins after every record it held before.
 */
void kc_push_out_oldest(kc_client *c, const char *topic, int32_t partition);

#endif
