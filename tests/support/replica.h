/**
 * @file replica.h
 * @brief Helpers for the tests of `kchat serve`'s directory replica (its
 *        copy of kchat-directory and kchat-rooms, docs/design.md "Room
 *        summaries"), shared by regression 0061 and test_replica_positions:
 *        what a server's log says its replica read before it served, and
 *        the replica's view of a friend's status.
 *
 * Like kclient's call functions, these are for the test's own thread.
 * kc_replica_read_at_start() asserts nothing; kc_expect_friend_status()
 * asserts (cmocka) and prints what it found first.
 */
#ifndef KCHAT_TESTS_REPLICA_H
#define KCHAT_TESTS_REPLICA_H

#include <stdbool.h>

#include "kclient.h"

/**
 * @brief How many records `kchat serve` @p p says its directory replica
 *        read before it served (its last "read kchat-directory and
 *        kchat-rooms to their end: N records" line), or -1 when its log
 *        has none.
 * @note Asserts that the log can be read.
 */
long kc_replica_read_at_start(const kc_proc *p);

/**
 * @brief Asserts that @p a's friends (user-search-friend, which the
 *        replica answers) are @p b alone, with `userStatus` @p want.
 */
void kc_expect_friend_status(kc_client *c, const kc_user *a, const kc_user *b,
                             const char *want);

/**
 * What the replica's tests start with: a broker that outlives the
 * servers, a first `kchat serve`, a client, and user A (shard 0) following
 * user B (shard 1). A test keeps one in a static so that its teardown can
 * call kc_friends_down() after a failed assertion.
 */
typedef struct kc_friends {
    kc_proc *broker;     /**< kc_broker_start()'s, or kc_mock_broker_start()'s */
    kc_proc *srv;        /**< the server running now, or NULL */
    kc_client *c;
    char brokers[1024];  /**< the broker's bootstrap list */
    kc_user a, b;        /**< A follows B */
} kc_friends;

/**
 * @brief Starts @p f: the broker (`kchat broker` when @p mock, else
 *        kc_broker_start(), the suite's real Kafka when it runs on one),
 *        `kchat serve --data DATA_DIR EXTRA...` as @p name, a client, and
 *        users named after @p prefix ("<prefix>a" in shard 0 follows
 *        "<prefix>b" in shard 1). Asserts each step.
 */
void kc_friends_up(kc_friends *f, const char *name, int partitions, bool mock,
                   const char *data_dir, const char *const *extra, const char *prefix);

/**
 * @brief Stops f->srv cleanly (asserted) and frees it, then waits
 *        @p wait_ms (a static member's session, for the next server to be
 *        given every partition at once).
 */
void kc_friends_stop_server(kc_friends *f, int wait_ms);

/** @brief Frees what @p f holds (a teardown: asserts nothing). */
void kc_friends_down(kc_friends *f);

#endif
