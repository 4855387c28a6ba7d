/**
 * @file rooms.h
 * @brief Helpers for the tests of protocol v1.1's rooms (PROTOCOL.md §3
 *        operations 11-13, the read-cursor fields, the `members` and `read`
 *        events of §6), shared by test_rooms_v11 and test_rooms_v11_scale.
 *
 *  - **Events** (`krm_*event*`): scans of a kclient's consumed `chat-events`
 *    records, keyed by the recipient, filtered by `type`, `roomId` and a
 *    "subset" object whose every field the event must carry with an equal
 *    value (json_equal()). Unlike kc_wait_events() they drop no repeats:
 *    they count records, for tests that an event was *not* sent.
 *  - **Calls**: the v1.1 operations and user-search-room per room, with the
 *    kclient's encoding (kc_client_set_fmt()).
 *  - **Users**: a user whose id hashes (murmur2) to a given partition, and
 *    many users registered with pipelined requests.
 *
 * Like kclient's send functions, the call helpers are for one thread per
 * client; the event scans may run on any thread. Nothing here asserts:
 * every function returns what it found (or NULL/false after printing why),
 * and the test asserts.
 */
#ifndef KCHAT_TESTS_ROOMS_H
#define KCHAT_TESTS_ROOMS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "kclient.h"

/* ------------------------------------------------------------------------ */
/** @name Events                                                             */
/* ------------------------------------------------------------------------ */

/**
 * @brief How many `chat-events` records consumed so far are keyed by
 *        @p user, have `type` @p type and `roomId` @p room (NULL: any) and
 *        carry every field of @p subset (NULL: no more conditions).
 */
size_t krm_count_events(kc_client *c, const char *user, const char *type, const char *room,
                        const json_t *subset);

/**
 * @brief Wait up to @p timeout_ms until at least @p n records match as in
 *        krm_count_events().
 * @return whether they did; on a timeout prints what was expected and every
 *         event @p user received for @p room (no server logs: the caller's
 *         assertion adds them with KC_CHECK()).
 */
bool krm_wait_events(kc_client *c, const char *user, const char *type, const char *room,
                     const json_t *subset, size_t n, int timeout_ms);

/**
 * @brief The bodies of the matching records (as krm_count_events()), in
 *        arrival order.
 * @return a new array (never NULL) of new references.
 */
json_t *krm_events(kc_client *c, const char *user, const char *type, const char *room,
                   const json_t *subset);

/* ------------------------------------------------------------------------ */
/** @name Calls                                                              */
/* ------------------------------------------------------------------------ */

/** @brief room-read by @p u: `{userId, roomId, readSeq}`. The answer (new ref) or NULL. */
json_t *krm_read(kc_client *c, const kc_user *u, const char *room, json_int_t read_seq);

/**
 * @brief room-invite by @p u of the NULL-terminated @p ids.
 * @return the answer (new ref) or NULL.
 */
json_t *krm_invite(kc_client *c, const kc_user *u, const char *room, const char *const *ids);

/** @brief room-leave by @p u. The answer (new ref) or NULL. */
json_t *krm_leave(kc_client *c, const kc_user *u, const char *room);

/** @brief room-history by @p u with no beforeSeq and limit 100. The answer or NULL. */
json_t *krm_history(kc_client *c, const kc_user *u, const char *room);

/**
 * @brief The entry of @p room in @p u's user-search-room answer.
 * @param[out] found whether the room is listed (false also when the call
 *             failed, which is printed and makes the return NULL).
 * @return the entry (new ref), or NULL when not listed or on failure.
 */
json_t *krm_room_entry(kc_client *c, const kc_user *u, const char *room, bool *found);

/* ------------------------------------------------------------------------ */
/** @name Users                                                              */
/* ------------------------------------------------------------------------ */

/**
 * @brief kc_user_init() with @p tag until the id hashes to @p partition of
 *        @p parts (at most 10000 tries), then register and log in.
 * @return true when registered and logged in.
 */
bool krm_user_on_partition(kc_client *c, kc_user *u, const char *tag, int partition,
                           int parts);

/**
 * @brief Register the @p n users @p u (kc_user_init()ed by the caller) with
 *        all requests sent before the first answer is awaited, then check
 *        every answer is a success. No login.
 * @return true when every answer came and succeeded.
 */
bool krm_register_many(kc_client *c, const kc_user *u, size_t n);

/**
 * @brief @p u follows the @p n ids @p ids, 100 per user-add-friend request.
 * @return true when every request succeeded.
 */
bool krm_follow_many(kc_client *c, const kc_user *u, const char *const *ids, size_t n);

/** @brief A JSON array of the NULL-terminated @p ids (new ref). */
json_t *krm_id_array(const char *const *ids);

/**
 * @brief @p arr is an array of strings, strictly ascending (so without
 *        repeats), equal as a set to the NULL-terminated @p want; prints why
 *        not (with @p what).
 */
bool krm_sorted_ids_are(const json_t *arr, const char *const *want, const char *what);

#endif /* KCHAT_TESTS_ROOMS_H */
