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

#endif
