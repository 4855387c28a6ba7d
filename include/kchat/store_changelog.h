/**
 * @file store_changelog.h
 * @brief The store's changelog (kchat_store_opts::changelog): the changes
 *        a write transaction commits, kept until Kafka has them, and their
 *        replay. Part of include/kchat/store.h, which includes it at its
 *        end; the errors and threads of @ref store_errors and
 *        @ref store_threads apply.
 */
#ifndef KCHAT_STORE_CHANGELOG_H
#define KCHAT_STORE_CHANGELOG_H

#include "kchat/store.h"

/* ------------------------------------------------------------------------ */
/** @name Changelog
 * @anchor store_changelog
 * A store opened with kchat_store_opts::changelog records, in every write
 * transaction that commits, one change per key the transaction put or
 * deleted (in any table but #KCHAT_TBL_CHANGELOG): the key's value at the
 * commit, or its absence. The changes of one transaction get consecutive
 * changelog seqs (1, 2, 3, ... per store, never reused) and are kept in
 * #KCHAT_TBL_CHANGELOG, written in that same transaction, until the caller
 * trims them (Kafka has them). A key written several times in one
 * transaction is one change. Replaying every change in seq order onto an
 * empty store gives the store's tables back (the changelog table aside).
 */
/**@{*/

/** @brief One change: @c table / @c key now hold @c value, or nothing when
 *  @c deleted. Pointers are valid only during the call that gives them. */
typedef struct kchat_change {
    uint64_t seq;               /**< its changelog seq */
    uint64_t last;              /**< the seq of its transaction's last change */
    kchat_table table;
    const void *key;
    size_t key_len;             /**< 1 .. #KCHAT_STORE_KEY_MAX */
    const void *value;          /**< NULL when @c deleted */
    size_t value_len;
    bool deleted;
} kchat_change;

/** @brief Called for each change. @return 0 goes on; anything else stops
 *  and is returned (kchat_txn_commit(): the commit fails with it). */
typedef int (*kchat_change_fn)(void *arg, const kchat_change *ch);

/**
 * @brief Have kchat_txn_commit() call @p fn with each change of @p t, in seq
 *   order, just before the LMDB commit (a commit that then fails has still
 *   called it: the caller forgets what it was given). Nothing when the
 *   store keeps no changelog or @p t is a read transaction.
 * @locality the thread holding @p t
 */
void kchat_txn_on_changes(kchat_txn *t, kchat_change_fn fn, void *arg);

/**
 * @brief Visit the changes kept in #KCHAT_TBL_CHANGELOG with seq >=
 *   @p from_seq, ascending.
 * @return as kchat_txn_scan(); #KCHAT_EDECODE for a damaged record (the
 *   scan stops there).
 * @locality the thread holding @p t
 */
KCHAT_MUST_CHECK
int kchat_store_changelog_scan(kchat_txn *t, uint64_t from_seq, kchat_change_fn fn, void *arg);

/**
 * @brief Delete the kept changes with seq <= @p upto (Kafka has them).
 * @param[in] t a write transaction.
 * @return #KCHAT_OK; #KCHAT_EINVAL; #KCHAT_EMAPFULL as kchat_txn_put().
 * @locality the thread holding @p t
 */
KCHAT_MUST_CHECK
int kchat_store_changelog_trim(kchat_txn *t, uint64_t upto);

/**
 * @brief The next changelog seq @p t's store will give (1 for a store
 *   that recorded nothing yet).
 * @return #KCHAT_OK; #KCHAT_EINVAL; #KCHAT_EDECODE.
 * @locality the thread holding @p t
 */
KCHAT_MUST_CHECK
int kchat_store_changelog_next(kchat_txn *t, uint64_t *next);

/**
 * @brief After a restore that applied every change up to @p last: the next
 *   changelog seq becomes @p last + 1 if that is later than it was.
 * @param[in] t a write transaction.
 * @return #KCHAT_OK; #KCHAT_EINVAL; #KCHAT_EDECODE; errors of kchat_txn_put().
 * @locality the thread holding @p t
 */
KCHAT_MUST_CHECK
int kchat_store_changelog_restored(kchat_txn *t, uint64_t last);

/**
 * @brief Decode a kept change: @p v / @p vl as stored in
 *   #KCHAT_TBL_CHANGELOG under seq @p seq. Pointers of @p out point into @p v.
 * @return #KCHAT_OK; #KCHAT_EDECODE for anything malformed (never reads
 *   outside @p v).
 * @locality any thread
 */
KCHAT_MUST_CHECK
int kchat_store_change_decode(const void *v, size_t vl, uint64_t seq, kchat_change *out);

/**
 * @brief Apply change @p ch (read back from a changelog) to @p t: put its
 *   value, or delete its key. Not itself a change of @p t (a restore does
 *   not log again what it restores). #KCHAT_TBL_CHANGELOG is refused.
 * @param[in] t a write transaction.
 * @return #KCHAT_OK (also for deleting an absent key); #KCHAT_EINVAL;
 *   errors of kchat_txn_put() / kchat_txn_del().
 * @locality the thread holding @p t
 */
KCHAT_MUST_CHECK
int kchat_store_change_apply(kchat_txn *t, const kchat_change *ch);

/** @brief Longest changelog record key: a table byte and a store key. */
#define KCHAT_CHANGE_KEY_MAX (1 + KCHAT_STORE_KEY_MAX)

/**
 * @brief The key a change has in a Kafka changelog: one byte of table,
 *   then the store key, into @p out; returns its length.
 * @locality any thread
 */
size_t kchat_store_change_key(const kchat_change *ch, unsigned char out[KCHAT_CHANGE_KEY_MAX]);

/**@}*/

#endif /* KCHAT_STORE_CHANGELOG_H */
