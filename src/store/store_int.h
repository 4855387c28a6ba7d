/*
 * Private to src/store/: the store and transaction structs, and the helpers
 * the record modules (store_meta.c, store_outbox.c) build on.
 *
 * Threads: a transaction is used by one thread at a time, the one holding
 * it (see "Threads" in store.h), so the helpers below that take a `t` run
 * there and need no lock of their own; the store's shared state (open
 * transaction count, map growth) is under `kchat_store.lock` (store.c).
 */
#ifndef KCHAT_STORE_INT_H
#define KCHAT_STORE_INT_H

#include <lmdb.h>

#include "kchat/store.h"

/*
 * A transaction. Invariants: `mdb` is a live LMDB transaction of
 * `store->env`; `err` is KCHAT_OK until an LMDB failure makes the LMDB
 * transaction uncommittable (see "A write transaction that failed" in
 * store.h), then it is that first error for good.
 */
struct kchat_txn {
    kchat_store *store;
    MDB_txn *mdb;
    int err;          /* sticky error, KCHAT_OK while usable */
    uint64_t gen;     /* bumped before every write; scans re-seek when it moved */
    bool write;       /* write transaction */
    /* changelog capture (store_changelog.c): only in write transactions of
     * a store opened with kchat_store_opts::changelog */
    bool capture;
    struct kchat__touch *touch;   /* the keys put or deleted, in order, repeats kept */
    size_t n_touch, cap_touch;
    unsigned char *keys;          /* their bytes, back to back */
    size_t keys_len, keys_cap;
    kchat_change_fn on_change;    /* kchat_txn_on_changes() */
    void *on_change_arg;
    /* the outbox work not yet in the table (store_outbox.c): the page being
     * built and the gone masks changed, written at the next other use of the
     * table or at commit; NULL until the first append or delete */
    struct kchat__outbox_txn *ob;
};

/*
 * Note that `t` puts or deletes key `k` of table `tb` (nothing unless
 * t->capture, or for #KCHAT_TBL_CHANGELOG). Returns KCHAT_OK or
 * KCHAT_ENOMEM, which also fails `t`.
 * @locality the thread that began `t` (a write transaction)
 */
KCHAT_MUST_CHECK
int kchat__txn_touch(kchat_txn *t, kchat_table tb, const void *k, size_t kl);

/*
 * At commit, before the LMDB commit: one change per key touched (its value
 * now, or its absence) into #KCHAT_TBL_CHANGELOG under the next seqs,
 * handed to t->on_change. Errors: as kchat_txn_put(), KCHAT_ENOMEM, or
 * what on_change returned; `t` is then failed.
 * @locality the thread that began `t` (a write transaction)
 */
KCHAT_MUST_CHECK
int kchat__txn_changes_commit(kchat_txn *t);

/* Free what the capture of `t` holds. */
void kchat__txn_touch_free(kchat_txn *t);

/*
 * Put the outbox page `t` is building, if any (store_outbox.c): called
 * before any other use of the outbox table and at commit. Errors: as
 * kchat_txn_put(); `t` is then failed.
 * @locality the thread holding `t`
 */
KCHAT_MUST_CHECK
int kchat__outbox_flush(kchat_txn *t);

/* Free the outbox page buffer of `t` (at its end). */
void kchat__outbox_free(kchat_txn *t);

/* Map an LMDB (or errno) code to a KCHAT_E* code. */
KCHAT_MUST_CHECK
int kchat__store_err(int mdb_rc);

/*
 * Record the failure `mdb_rc` of an LMDB call made in `t` and return its
 * KCHAT_E* code. MDB_NOTFOUND and MDB_KEYEXIST leave `t` usable; anything
 * else fails it (sets t->err) and, for MDB_MAP_FULL, asks the store to grow.
 * @locality the thread holding `t`
 * @locks takes t->store->lock for MDB_MAP_FULL (must not be held)
 */
KCHAT_MUST_CHECK
int kchat__txn_fail(kchat_txn *t, int mdb_rc);

/*
 * Check that `t` can run an operation on table `tb` (a write when `write`):
 * returns t->err for a failed transaction, KCHAT_EINVAL for a NULL `t`, a
 * bad table or a write through a read transaction, KCHAT_OK otherwise.
 * @locality the thread holding `t`
 */
KCHAT_MUST_CHECK
int kchat__txn_check(kchat_txn *t, kchat_table tb, bool write);

/* The LMDB handle of table `tb` (checked by kchat__txn_check()). */
MDB_dbi kchat__txn_dbi(const kchat_txn *t, kchat_table tb);

/*
 * mdb_put() into a checked write transaction with LMDB `flags`. With
 * MDB_RESERVE, `v` is ignored and *reserved receives room for `vl` bytes,
 * which the caller fills before its next call on `t`.
 * @locality the thread that began `t` (a write transaction)
 */
KCHAT_MUST_CHECK
int kchat__txn_put(kchat_txn *t, kchat_table tb, const void *k, size_t kl,
                   const void *v, size_t vl, unsigned flags, void **reserved);

/*
 * mdb_del() of key `k` of table `tb` in a checked write transaction, noted
 * for the changelog: kchat_txn_del() without its checks. KCHAT_ENOTFOUND
 * when there is no such key (`t` stays usable).
 * @locality the thread that began `t` (a write transaction)
 */
KCHAT_MUST_CHECK
int kchat__txn_del(kchat_txn *t, kchat_table tb, const void *k, size_t kl);

/*
 * Advance one of the store's own counters (kept in META apart from the
 * counters of kchat_store_counter_next()); as kchat_store_counter_next().
 * @locality the thread that began `t` (a write transaction)
 */
KCHAT_MUST_CHECK
int kchat__store_internal_next(kchat_txn *t, const char *name, uint64_t *out);

/*
 * Take @p count values of a store-internal counter at once, the first in
 * *out; with @p count 0 take none and give the next one in *out (also in a
 * read transaction). Errors as kchat_store_counter_next().
 * @locality the thread holding `t`
 */
KCHAT_MUST_CHECK
int kchat__store_internal_take(kchat_txn *t, const char *name, uint64_t count, uint64_t *out);

/*
 * The unsynced mark (store_sync.c): whether this system gives a boot id
 * (without one a store is never opened unsynced); whether @p dir has a
 * mark; write the mark naming
 * this boot into @p dir, synced, before an unsynced environment's first
 * commit (KCHAT_ENOTFOUND: no boot id; KCHAT_EIO, KCHAT_ENOSPC); remove it
 * after the environment was synced (KCHAT_EIO).
 * @locality any thread; the mark's functions the one opening or closing
 *           the store in @p dir
 */
bool kchat__store_boot_known(void);
bool kchat__store_marked(const char *dir);
KCHAT_MUST_CHECK
int kchat__store_mark_unsynced(const char *dir);
KCHAT_MUST_CHECK
int kchat__store_mark_synced(const char *dir);

/* Big-endian 32-bit helpers, for keys. */
void kchat__store_be32(uint32_t v, unsigned char out[4]);
uint32_t kchat__store_rd_be32(const unsigned char in[4]);

#endif /* KCHAT_STORE_INT_H */
