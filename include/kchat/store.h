/**
 * @file store.h
 * @brief kchat's storage: one LMDB environment per shard, and the records
 *        every shard keeps beside its state (offsets, outbox, watermarks).
 *
 * A #kchat_store is one LMDB environment in one directory: a shard
 * (`DATA/shard-NNNN/`) or the local replica of the directory. It holds a
 * fixed set of tables (#kchat_table, LMDB named databases), all opened by
 * kchat_store_open(). Keys are byte strings ordered by memcmp() (a shorter
 * key sorts before every longer key it is a prefix of); values are byte
 * strings. Integers that must sort are written big-endian
 * (kchat_store_be64()).
 *
 * Everything happens in a transaction (#kchat_txn). One write transaction
 * per store at a time carries a whole batch: state changes, the input
 * offsets the batch consumed and the outbox records it produced, made
 * durable together by one fsync in kchat_txn_commit() (group commit). Read
 * transactions see a consistent snapshot and run concurrently with the
 * writer and with each other.
 *
 * The store knows nothing of Kafka, of operations or of HTTP: topics,
 * partitions and headers are opaque strings and numbers to it.
 *
 * @section store_errors Errors
 * Every function that can fail returns #KCHAT_OK or a negative `KCHAT_E*`
 * code from error.h. The codes each function can return are listed with it;
 * in addition every function taking a #kchat_txn may return:
 *  - #KCHAT_EINVAL for a NULL or otherwise invalid argument (a table outside
 *    #kchat_table, a NULL pointer with a non-zero length, a write through a
 *    read transaction). No state changes.
 *  - #KCHAT_ETOOBIG for a key, prefix or bound longer than
 *    #KCHAT_STORE_KEY_MAX, or a value of 4 GiB or more. No state changes.
 *  - #KCHAT_ESTORE for an unexpected LMDB failure (corruption, a bug).
 *  - #KCHAT_ENOMEM when LMDB or the store cannot allocate memory.
 *  - The sticky error of a failed write transaction (see below).
 *
 * @section store_failed_txn A write transaction that failed
 * When an operation of a write transaction fails with #KCHAT_EMAPFULL,
 * #KCHAT_EFULL, #KCHAT_ENOSPC, #KCHAT_EIO, #KCHAT_ENOMEM or #KCHAT_ESTORE,
 * LMDB can no longer commit it: the transaction is *failed*. Every later
 * call on it returns that same first error without doing anything, and
 * kchat_txn_commit() discards it and returns that error. The caller must end
 * it with kchat_txn_abort() (or kchat_txn_commit(), which then aborts), and
 * may redo the work in a new transaction. None of its changes are kept.
 * #KCHAT_ENOTFOUND, #KCHAT_EEXIST, #KCHAT_EINVAL, #KCHAT_ETOOBIG,
 * #KCHAT_EDECODE and an error returned by a scan callback do not fail the
 * transaction.
 *
 * @section store_mapfull A full map
 * LMDB maps the whole data file into memory at a fixed size, the map size
 * (kchat_store_opts::map_size). A write that needs more room fails with
 * #KCHAT_EMAPFULL and fails its transaction (above); data committed earlier
 * is intact and the store stays usable for reads and for other writes. The
 * store then grows: when its last open transaction ends (the failed one,
 * or a read transaction still open elsewhere), it doubles the map size
 * with mdb_env_set_mapsize(), up to #KCHAT_STORE_MAP_MAX. So the usual
 * reaction to #KCHAT_EMAPFULL is: abort, then retry the same work in a new
 * transaction; each further #KCHAT_EMAPFULL doubles the map again. An open
 * read transaction on any thread postpones the growth until it ends. The
 * map size is not a disk quota: the data file only grows as data is
 * written, and a full disk shows as #KCHAT_ENOSPC from kchat_txn_commit().
 * At #KCHAT_STORE_MAP_MAX, or when the process cannot reserve the larger
 * address range, the map stops growing and #KCHAT_EMAPFULL is final.
 *
 * @section store_threads Threads
 * These are LMDB's rules (the store opens its environment `MDB_NOTLS`); each
 * function's `@locality` says which applies to it.
 * - A store handle may be used from any number of threads; kchat_store_open()
 *   and kchat_store_close() are the exceptions (no other call may be in
 *   progress on that store).
 * - A write transaction belongs to the thread that began it: only that
 *   thread may use it, commit it or abort it. At most one write transaction
 *   is open per store; kchat_txn_begin() for a second one, from another
 *   thread, blocks until the first one ends.
 * - A read transaction (LMDB's `MDB_NOTLS`) is not tied to a thread: it may
 *   be begun on one thread and used and ended on another, but by one thread
 *   at a time. A thread may hold several read transactions, and a read
 *   transaction and the write transaction at once.
 * - At most 126 read transactions may be open at once per store.
 * - Every function taking a #kchat_txn runs on the thread holding that
 *   transaction: for a write transaction the thread that began it, for a
 *   read transaction whichever one thread uses it at the time.
 *
 * @section store_caveats Caveats
 * - Open a directory at most once per process at a time (LMDB's locks are
 *   per process); kchat_store_open() refuses a second open of the same
 *   directory with #KCHAT_EEXIST.
 * - Do not use a store in a child process after fork(); open it again there.
 * - Long-lived read transactions keep old pages from being reused and make
 *   the data file grow; keep them short.
 * - Pointers the store returns into its data (kchat_txn_get(), scan
 *   callbacks) point into the read-only map: never write through them.
 * - The tables #KCHAT_TBL_META, #KCHAT_TBL_OFFSETS, #KCHAT_TBL_OUTBOX and
 *   #KCHAT_TBL_APPLIED have a layout private to the store: use the
 *   functions for them below, not kchat_txn_put() and friends. So has
 *   #KCHAT_TBL_CHANGELOG, which only the store writes (@ref store_changelog).
 */
#ifndef KCHAT_STORE_H
#define KCHAT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kchat/error.h"

/** Longest key, prefix or bound, in bytes (LMDB's default maximum). */
#define KCHAT_STORE_KEY_MAX 511

/** Map size used when kchat_store_opts::map_size is 0: 1 GiB. */
#define KCHAT_STORE_MAP_DEFAULT ((size_t)1 << 30)

/** The map never grows past this size by itself: 1 TiB (see @ref store_mapfull). */
#define KCHAT_STORE_MAP_MAX ((size_t)1 << 40)

/** Most headers an outbox record can carry. */
#define KCHAT_STORE_MAX_HEADERS 8

/** @brief An open store: one LMDB environment, one shard (or the directory
 *  replica). Opaque. */
typedef struct kchat_store kchat_store;

/** @brief A transaction on a store. Opaque; see @ref store_threads. */
typedef struct kchat_txn kchat_txn;

/** @brief The tables of a store, one LMDB named database each. Every store
 *  has all of them, whether it uses them or not. */
typedef enum kchat_table {
    KCHAT_TBL_META = 0,   /**< private: meta strings and counters */
    KCHAT_TBL_OFFSETS,    /**< private: next input offset per (topic, partition) */
    KCHAT_TBL_USERS,      /**< user accounts */
    KCHAT_TBL_SESSIONS,   /**< sessions */
    KCHAT_TBL_FRIENDS,    /**< friend relations */
    KCHAT_TBL_MEMBERS,    /**< room memberships */
    KCHAT_TBL_ROOMS,      /**< rooms (in the directory replica: room summaries) */
    KCHAT_TBL_MESSAGES,   /**< chat messages */
    KCHAT_TBL_IDEM,       /**< idempotency records */
    KCHAT_TBL_OUTBOX,     /**< private: records to produce (kchat_store_outbox_*) */
    KCHAT_TBL_APPLIED,    /**< private: applied watermark per source shard */
    KCHAT_TBL_DIRECTORY,  /**< the directory replica */
    KCHAT_TBL_CHANGELOG,  /**< private: changes not yet confirmed by Kafka (kchat_store_changelog_*) */
    KCHAT_TBL_FOLLOWERS,  /**< who follows a user (presence events go to them) */
    KCHAT_TBL__COUNT      /**< number of tables, not a table */
} kchat_table;

/** @brief The name of table @p t: its LMDB database's name ("users",
 *  "outbox", ...), also the table label of kchat_changelog_changes_total.
 *  A static string; NULL when @p t is not a table. Any thread. */
const char *kchat_store_table_name(kchat_table t);

/** @brief Options of kchat_store_open(). All-zero is the default. */
typedef struct kchat_store_opts {
    /** Initial map size in bytes (see @ref store_mapfull); 0 means
     *  #KCHAT_STORE_MAP_DEFAULT. LMDB rounds it up to the data already
     *  stored. It is the size of an address range, not of the file. */
    size_t map_size;
    /** Skip fsync at commit (`MDB_NOSYNC`): a crash may lose or corrupt
     *  recent commits. For tests only. */
    bool no_sync;
    /** One fsync per commit instead of two (`MDB_NOMETASYNC`): a machine
     *  crash may undo the last commit, never more, and never corrupts the
     *  store. For a store whose every commit Kafka also holds before
     *  anyone is told of it (a shard with a changelog on Kafka). */
    bool meta_no_sync;
    /** Commit without any fsync (`MDB_NOSYNC`), and say so in a mark, a
     *  file `unsynced` in @p dir naming this boot (Linux's boot id),
     *  written and synced before the first commit and removed by
     *  kchat_store_close() once the environment is synced. A process that
     *  dies loses nothing (the kernel has every write); a machine that
     *  restarts may have lost or torn any commit since the last sync, so
     *  the next boot's kchat_store_open() refuses the store
     *  (#KCHAT_EUNSYNCED) until it is moved aside. For a store whose every
     *  commit Kafka holds before anyone is told of it, and which can be
     *  restored whole from Kafka (a shard with a changelog on Kafka).
     *  Where the system gives no boot id it acts as `meta_no_sync`. */
    bool unsynced;
    /** Keep a changelog (@ref store_changelog): every committed write
     *  transaction also records the final value of each key it touched. */
    bool changelog;
} kchat_store_opts;

/* ------------------------------------------------------------------------ */
/** @name Stores */
/**@{*/

/**
 * @brief Open (creating if needed) the store in directory @p dir.
 *
 * Creates @p dir and its missing parents with mode 0700 (existing
 * directories are left as they are), creates or opens the LMDB files
 * `data.mdb` and `lock.mdb` in it with mode 0600, and opens every table.
 * Clears reader slots left behind by dead processes.
 *
 * @param[in] dir  the directory; copied, the caller keeps ownership.
 * @param[in] opts options, or NULL for the defaults.
 * @param[out] out the new store on success; untouched on failure.
 * @return #KCHAT_OK;
 *   #KCHAT_EINVAL if @p dir or @p out is NULL or @p dir is empty;
 *   #KCHAT_EEXIST if this process already has @p dir open;
 *   #KCHAT_EIO if a directory cannot be created or the files cannot be
 *   opened (permissions, not a directory, a damaged file);
 *   #KCHAT_ENOSPC if the disk is full;
 *   #KCHAT_EMAPFULL if kchat_store_opts::map_size is too small even to
 *   create the tables (a few pages);
 *   #KCHAT_EUNSYNCED if @p dir holds the mark of a store opened
 *   kchat_store_opts::unsynced in another boot (whatever @p opts says):
 *   its last commits may be lost or torn (kchat_store_unsynced_lost());
 *   the files are not touched. A mark of this boot (its process died) is
 *   kept by an unsynced open; any other open syncs the environment and
 *   removes it;
 *   #KCHAT_ENOMEM; #KCHAT_ESTORE for any other LMDB failure.
 * @note Release the store with kchat_store_close().
 * @locality any thread; the store is then usable from any thread (see
 *   @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_store_open(const char *dir, const kchat_store_opts *opts, kchat_store **out);

/**
 * @brief Close a store and free it.
 * @param[in] s the store, or NULL (then nothing happens).
 * @note Every transaction of @p s must have ended and no other thread may
 *   be using @p s; closing with a transaction open is a bug and aborts the
 *   process. Committed data is durable already; close does not sync,
 *   unless the store was opened kchat_store_opts::unsynced: then it syncs
 *   the environment and, when that succeeded, removes the unsynced mark
 *   (a failed sync is logged to stderr and leaves the mark).
 * @locality any thread, once no other thread uses @p s
 */
void kchat_store_close(kchat_store *s);

/**
 * @brief Whether the store in @p dir was opened kchat_store_opts::unsynced
 * in a boot of this machine other than the current one and not closed
 * since: its last commits may be lost or torn, so kchat_store_open()
 * refuses it. A mark that names no boot, or a system that gives no boot
 * id while a mark is there, counts as lost too (which boot wrote it
 * cannot be told). No mark, or this boot's: not lost.
 * @param[in] dir   the store's directory (need not exist).
 * @param[out] lost the answer; false on error.
 * @return #KCHAT_OK; #KCHAT_EINVAL for a NULL argument; #KCHAT_EIO when
 *   the mark is there but cannot be read.
 * @locality any thread
 */
KCHAT_MUST_CHECK
int kchat_store_unsynced_lost(const char *dir, bool *lost);

/**
 * @brief The directory of a store, as given to kchat_store_open().
 * @return a NUL-terminated string owned by @p s, valid until
 *   kchat_store_close().
 * @locality any thread
 */
const char *kchat_store_path(const kchat_store *s);

/**@}*/
/* ------------------------------------------------------------------------ */
/** @name Transactions */
/**@{*/

/**
 * @brief Begin a transaction.
 *
 * A read transaction sees the data committed when it began, for its whole
 * life. A write transaction sees its own changes.
 *
 * @param[in] s     the store.
 * @param[in] write true for a write transaction, false for a read one.
 * @param[out] out  the transaction on success; untouched on failure.
 * @return #KCHAT_OK;
 *   #KCHAT_EINVAL if @p s or @p out is NULL, or @p write is true and the
 *   calling thread already holds the write transaction of @p s (which
 *   would deadlock);
 *   #KCHAT_EFULL if @p write is false and 126 read transactions are open;
 *   #KCHAT_ENOMEM;
 *   #KCHAT_ESTORE if growing the map failed earlier and left the store
 *   unusable (only close it), or for any other LMDB failure.
 * @note A write begin blocks while another thread holds the write
 *   transaction. End every transaction with kchat_txn_commit() or
 *   kchat_txn_abort(), which free it.
 * @locality any thread; a write transaction then belongs to the calling
 *   thread (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_txn_begin(kchat_store *s, bool write, kchat_txn **out);

/**
 * @brief Commit a transaction and free it.
 *
 * For a write transaction, every change becomes visible to transactions
 * begun afterwards and is durable (written and fsync'd) when this returns
 * #KCHAT_OK, unless the store was opened with kchat_store_opts::no_sync.
 * For a read transaction it is the same as kchat_txn_abort() and returns
 * #KCHAT_OK.
 *
 * @param[in] t the transaction; freed in every case, even on error.
 * @return #KCHAT_OK;
 *   #KCHAT_EINVAL if @p t is NULL;
 *   #KCHAT_EMAPFULL if the map has no room for the commit (see
 *   @ref store_mapfull);
 *   #KCHAT_ENOSPC if the disk is full or a quota is reached;
 *   #KCHAT_EIO if writing or syncing failed: durability of this and of
 *   future commits is unknown and the store should not be trusted further;
 *   #KCHAT_ENOMEM; #KCHAT_ESTORE for any other LMDB failure; or the sticky
 *   error of a failed transaction (see @ref store_failed_txn).
 *   On any error nothing of @p t is kept.
 * @note May grow the map afterwards (see @ref store_mapfull).
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_txn_commit(kchat_txn *t);

/**
 * @brief Abort a transaction, discarding its changes, and free it.
 * @param[in] t the transaction, or NULL (then nothing happens).
 * @note May grow the map afterwards (see @ref store_mapfull).
 * @locality the thread holding @p t (see @ref store_threads)
 */
void kchat_txn_abort(kchat_txn *t);

/**@}*/
/* ------------------------------------------------------------------------ */
/** @name Keys and values */
/**@{*/

/**
 * @brief Look a key up.
 * @param[in] t   the transaction (read or write).
 * @param[in] tb  the table.
 * @param[in] k   the key, @p kl bytes, 1 <= kl <= #KCHAT_STORE_KEY_MAX.
 * @param[out] v  the value on success.
 * @param[out] vl its length on success.
 * @return #KCHAT_OK; #KCHAT_ENOTFOUND if the key is absent (@p v and @p vl
 *   untouched); #KCHAT_EINVAL for an empty key.
 * @note The value is owned by the store: read-only, valid until the
 *   transaction ends or, in a write transaction, until the next write
 *   (put, delete, outbox append, counter...) in it. Copy it to keep it.
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_txn_get(kchat_txn *t, kchat_table tb, const void *k, size_t kl,
                  const void **v, size_t *vl);

/**
 * @brief Store a value under a key, replacing any value there.
 * @param[in] t  a write transaction.
 * @param[in] tb the table.
 * @param[in] k  the key, @p kl bytes, 1 <= kl <= #KCHAT_STORE_KEY_MAX.
 * @param[in] v  the value, @p vl bytes (may be NULL when vl is 0); copied.
 * @return #KCHAT_OK; #KCHAT_EINVAL for an empty key or a read transaction;
 *   #KCHAT_EMAPFULL, #KCHAT_EFULL (the transaction has too many changed
 *   pages: commit smaller batches), which fail the transaction.
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_txn_put(kchat_txn *t, kchat_table tb, const void *k, size_t kl,
                  const void *v, size_t vl);

/**
 * @brief Like kchat_txn_put(), but only when the key is absent.
 * @return as kchat_txn_put(), and #KCHAT_EEXIST when the key is present
 *   (nothing changes, the transaction stays usable).
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_txn_put_new(kchat_txn *t, kchat_table tb, const void *k, size_t kl,
                      const void *v, size_t vl);

/**
 * @brief Delete a key and its value.
 * @param[in] t a write transaction.
 * @return #KCHAT_OK; #KCHAT_ENOTFOUND if the key is absent (the
 *   transaction stays usable); #KCHAT_EINVAL for an empty key or a read
 *   transaction; #KCHAT_EMAPFULL (deleting may need pages too).
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_txn_del(kchat_txn *t, kchat_table tb, const void *k, size_t kl);

/**
 * @brief Called by the scans for each key visited.
 * @param[in] arg the caller's pointer, as given to the scan.
 * @param[in] k,kl the key; @param[in] v,vl its value. Both owned by the
 *   store and valid only during this call (see below).
 * @return 0 to go on, 1 (any positive value) to stop the scan (it then
 *   returns #KCHAT_OK), a negative value to stop it and make it return that
 *   value.
 * @note It may read @p t and, in a write transaction, write to it, even to
 *   the table being scanned (the scan then carries on from the last key it
 *   visited, so keys written ahead of it are visited, deleted ones are
 *   not). Any write invalidates @p k and @p v at once.
 * @locality the thread running the scan
 */
typedef int (*kchat_scan_fn)(void *arg, const void *k, size_t kl, const void *v, size_t vl);

/**
 * @brief Visit, in order, every key that starts with a prefix.
 * @param[in] t       the transaction (read or write).
 * @param[in] tb      the table.
 * @param[in] prefix  the prefix, @p pl bytes; pl 0 visits the whole table
 *                    (prefix may then be NULL).
 * @param[in] reverse false: ascending key order; true: descending.
 * @param[in] fn      called for each key; see #kchat_scan_fn.
 * @param[in] arg     passed to @p fn.
 * @return #KCHAT_OK when every key was visited or @p fn stopped the scan
 *   with a positive value; the negative value @p fn returned; or an error
 *   of its own (then @p fn was not called again).
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_txn_scan(kchat_txn *t, kchat_table tb, const void *prefix, size_t pl,
                   bool reverse, kchat_scan_fn fn, void *arg);

/**
 * @brief Like kchat_txn_scan(), starting from a bound.
 *
 * Ascending, the scan starts at the first key >= @p bound; descending, at
 * the last key < @p bound (so a page of results can continue from the last
 * key of the previous page, or from that key plus a 0 byte going up). A
 * NULL @p bound means no bound, as in kchat_txn_scan(). Either way only
 * keys starting with @p prefix are visited, whatever the bound: a bound
 * below the prefix range starts at its first key (ascending) or visits
 * nothing (descending); a bound above it visits nothing (ascending) or
 * starts at its last key (descending).
 *
 * @param[in] bound the bound, @p bl bytes (0 <= bl <= #KCHAT_STORE_KEY_MAX),
 *   or NULL (then @p bl is ignored). An empty bound is below every key.
 * @return as kchat_txn_scan().
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_txn_scan_range(kchat_txn *t, kchat_table tb, const void *prefix, size_t pl,
                         const void *bound, size_t bl, bool reverse,
                         kchat_scan_fn fn, void *arg);

/**@}*/
/* ------------------------------------------------------------------------ */
/** @name Input offsets
 * For each input (topic, partition), the offset of the next record to read:
 * stored in the same transaction as the effects of the records before it.
 */
/**@{*/

/**
 * @brief The next offset to read from (@p topic, @p partition).
 * @param[in] topic     a non-empty NUL-terminated name, at most
 *                      #KCHAT_STORE_KEY_MAX - 5 bytes.
 * @param[in] partition >= 0.
 * @param[out] next     the offset on success.
 * @return #KCHAT_OK; #KCHAT_ENOTFOUND if none is stored (@p next
 *   untouched); #KCHAT_EINVAL for an empty topic or a negative partition;
 *   #KCHAT_ETOOBIG for a longer topic; #KCHAT_EDECODE for a damaged record.
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_store_offset_get(kchat_txn *t, const char *topic, int32_t partition, int64_t *next);

/**
 * @brief Store the next offset to read from (@p topic, @p partition),
 *        replacing the previous one (any value, even a smaller one).
 * @param[in] t a write transaction.
 * @return as kchat_store_offset_get() without #KCHAT_ENOTFOUND, and
 *   #KCHAT_EMAPFULL / #KCHAT_EFULL as kchat_txn_put().
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_store_offset_set(kchat_txn *t, const char *topic, int32_t partition, int64_t next);

/**
 * @brief Forget every stored offset (e.g. the store now follows another
 *        Kafka cluster).
 * @param[in] t a write transaction.
 * @return #KCHAT_OK (also when there was none); #KCHAT_EINVAL for a read
 *   transaction; #KCHAT_EMAPFULL.
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_store_offsets_clear(kchat_txn *t);

/**@}*/
/* ------------------------------------------------------------------------ */
/** @name Meta strings and counters
 * Small named values in #KCHAT_TBL_META, e.g. "cluster_id". Strings and
 * counters are separate name spaces: a string and a counter may share a
 * name.
 */
/**@{*/

/**
 * @brief Read a meta string into a caller's buffer.
 * @param[in] name    a non-empty NUL-terminated name, at most
 *                    #KCHAT_STORE_KEY_MAX - 2 bytes.
 * @param[out] buf    receives the value and a terminating NUL.
 * @param[in] bufsize size of @p buf; must be at least the value's length + 1.
 * @return #KCHAT_OK; #KCHAT_ENOTFOUND if @p name is not set;
 *   #KCHAT_ETOOBIG if the value does not fit (or the name is too long);
 *   #KCHAT_EINVAL for an empty name or a NULL @p buf. @p buf is untouched
 *   on any error.
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_store_meta_get(kchat_txn *t, const char *name, char *buf, size_t bufsize);

/**
 * @brief Set a meta string, replacing any previous value.
 * @param[in] t     a write transaction.
 * @param[in] name  as in kchat_store_meta_get().
 * @param[in] value a NUL-terminated string (may be empty); copied.
 * @return #KCHAT_OK; #KCHAT_EINVAL; #KCHAT_ETOOBIG for a long name;
 *   #KCHAT_EMAPFULL / #KCHAT_EFULL as kchat_txn_put().
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_store_meta_set(kchat_txn *t, const char *name, const char *value);

/**
 * @brief Advance a persistent counter and return its new value.
 *
 * A counter that was never advanced is 0, so successive calls return 1, 2,
 * 3... Like every change, the advance is undone if the transaction is
 * aborted: a value is never returned twice by committed transactions.
 *
 * @param[in] t    a write transaction.
 * @param[in] name as in kchat_store_meta_get().
 * @param[out] out the new value on success.
 * @return #KCHAT_OK; #KCHAT_EINVAL; #KCHAT_ETOOBIG for a long name;
 *   #KCHAT_EFULL if the counter is at UINT64_MAX; #KCHAT_EDECODE for a
 *   damaged record; #KCHAT_EMAPFULL as kchat_txn_put().
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_store_counter_next(kchat_txn *t, const char *name, uint64_t *out);

/**@}*/
/* ------------------------------------------------------------------------ */
/** @name Outbox
 * Records to produce once their transaction has committed. Each gets a
 * sequence number; the producer deletes a record when its delivery is
 * confirmed, and on restart sends again whatever is still there.
 *
 * Stored in pages: the records of one kind a transaction appends in a row
 * are one key of #KCHAT_TBL_OUTBOX (so one change of the changelog), and a
 * page's deleted records are marked beside it until the last one goes.
 * A transaction writes its page and its marks at its commit, or before any
 * other use of the table through kchat_txn_get(), kchat_txn_scan() and the
 * like, which see the raw pages (src/store/store_outbox.c).
 */
/**@{*/

/** @brief A record header: @c name is NUL-terminated; @c value is @c len
 *  bytes, or NULL (a null header value, then @c len is 0). */
typedef struct kchat_header {
    const char *name;
    const void *value;
    size_t len;
} kchat_header;

/**
 * @brief An outbox record. Given to kchat_store_outbox_append(), which
 * copies everything it points to; handed to #kchat_outbox_fn, where every
 * pointer points into the store and is valid only during the call.
 * A NULL key or value is kept distinct from an empty one.
 */
typedef struct kchat_outbox_rec {
    const char *topic;          /**< non-empty, NUL-terminated, < 65536 bytes */
    int32_t partition;          /**< >= 0, or -1 = partition by key */
    const void *key;            /**< @c key_len bytes, or NULL (no key) */
    size_t key_len;             /**< 0 when @c key is NULL */
    const void *value;          /**< @c value_len bytes, or NULL (no value) */
    size_t value_len;           /**< 0 when @c value is NULL */
    const kchat_header *headers;/**< @c n_headers headers, in order */
    size_t n_headers;           /**< at most #KCHAT_STORE_MAX_HEADERS */
    uint8_t kind;               /**< caller-defined tag, stored and returned as is */
} kchat_outbox_rec;

/**
 * @brief Append a record to the outbox.
 * @param[in] t   a write transaction.
 * @param[in] r   the record; copied, the caller keeps ownership.
 * @param[out] seq its sequence number on success (may be NULL). Sequence
 *   numbers start at 1 and strictly increase per store across restarts;
 *   a committed record's number is never given to another record, even
 *   after the record is deleted. (An aborted transaction's numbers were
 *   never committed and are given out again.)
 * @return #KCHAT_OK; #KCHAT_EINVAL for a malformed record (no topic,
 *   partition < -1, more than #KCHAT_STORE_MAX_HEADERS headers, a header
 *   without a name, a NULL pointer with a non-zero length);
 *   #KCHAT_ETOOBIG for a topic or header name of 65536 bytes or more, or a
 *   key, value or header value of 4 GiB or more; #KCHAT_EMAPFULL /
 *   #KCHAT_EFULL as kchat_txn_put().
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_store_outbox_append(kchat_txn *t, const kchat_outbox_rec *r, uint64_t *seq);

/**
 * @brief Delete the record @p seq from the outbox.
 * @param[in] t a write transaction.
 * @return #KCHAT_OK; #KCHAT_ENOTFOUND if there is no such record (the
 *   transaction stays usable); #KCHAT_EINVAL; #KCHAT_EDECODE when its page
 *   or the page's marks are damaged; #KCHAT_ENOMEM; #KCHAT_EMAPFULL.
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_store_outbox_del(kchat_txn *t, uint64_t seq);

/**
 * @brief Called by kchat_store_outbox_scan() for each record.
 * @param[in] r the record; @p r and every pointer in it are owned by the
 *   store and valid only during the call.
 * @return as #kchat_scan_fn: 0 goes on, positive stops, negative stops and
 *   is returned by the scan. It may write to the transaction (e.g. delete
 *   @p seq), which invalidates @p r at once.
 * @locality the thread running the scan
 */
typedef int (*kchat_outbox_fn)(void *arg, uint64_t seq, const kchat_outbox_rec *r);

/**
 * @brief Visit the outbox records with seq >= @p from_seq, ascending.
 * @param[in] t the transaction (read or write).
 * @return as kchat_txn_scan(), #KCHAT_EDECODE when a record, a page or its
 *   marks are damaged (the scan stops there), and #KCHAT_ENOMEM (in a
 *   write transaction a page is copied before its records are visited).
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_store_outbox_scan(kchat_txn *t, uint64_t from_seq, kchat_outbox_fn fn, void *arg);

/**
 * @brief The number of records in the outbox (a scan of them all).
 * @param[out] n the count on success.
 * @return #KCHAT_OK; #KCHAT_EINVAL; as kchat_store_outbox_scan().
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_store_outbox_count(kchat_txn *t, size_t *n);

/**@}*/
/* ------------------------------------------------------------------------ */
/** @name Applied internal commands
 * For each source shard, the highest sequence number of its commands this
 * store has applied, so each command is applied once.
 */
/**@{*/

/**
 * @brief The watermark of @p source.
 * @param[out] seq the stored value, or 0 when none is stored.
 * @return #KCHAT_OK; #KCHAT_EINVAL; #KCHAT_EDECODE for a damaged record.
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_store_applied_get(kchat_txn *t, uint32_t source, uint64_t *seq);

/**
 * @brief Store the watermark of @p source as given (it is not compared
 *        with the previous one: the caller checks before applying).
 * @param[in] t a write transaction.
 * @return #KCHAT_OK; #KCHAT_EINVAL; #KCHAT_EMAPFULL / #KCHAT_EFULL as
 *   kchat_txn_put().
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_store_applied_set(kchat_txn *t, uint32_t source, uint64_t seq);

/** @brief Which end of a (source, target) command stream a counter counts. */
typedef enum kchat_cmdseq_end {
    KCHAT_CMDSEQ_SENT = 's',     /**< in the source: the last seq given, keyed by target */
    KCHAT_CMDSEQ_APPLIED = 'a',  /**< in the target: the last seq applied, keyed by source */
    KCHAT_CMDSEQ_ACKED = 'k',    /**< in the source: the highest seq its target said it
                                      applied (an acknowledgement), keyed by target */
    KCHAT_CMDSEQ_APPLIED_RUN = 'r', /**< in the target: the run of the source that
                                      numbered the last command applied, keyed by source */
} kchat_cmdseq_end;

/**
 * @brief Read a per-(source, target) command counter. Every internal command
 *   carries a seq counted per (source, target) pair: 1, 2, 3, ... The
 *   source stores the last one it gave to each target; the target stores
 *   the last one it applied from each source and applies only the next
 *   one, so a command that overtakes an earlier one is not applied before
 *   it (the source produces both again). Kept in the same table as the
 *   watermarks above, under keys of another length.
 * @param end which counter; @p shard the target (#KCHAT_CMDSEQ_SENT) or the
 *   source (#KCHAT_CMDSEQ_APPLIED).
 * @param[out] seq the stored value, or 0 when none is stored.
 * @return #KCHAT_OK; #KCHAT_EINVAL for a bad @p end or NULL @p seq;
 *   #KCHAT_EDECODE for a damaged record.
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_store_cmdseq_get(kchat_txn *t, kchat_cmdseq_end end, uint32_t shard, uint64_t *seq);

/**
 * @brief Store a per-(source, target) command counter as given (the caller
 *   compares: see kchat_store_cmdseq_get()).
 * @param[in] t a write transaction.
 * @return #KCHAT_OK; #KCHAT_EINVAL for a bad @p end; #KCHAT_EMAPFULL /
 *   #KCHAT_EFULL as kchat_txn_put().
 * @locality the thread holding @p t (see @ref store_threads)
 */
KCHAT_MUST_CHECK
int kchat_store_cmdseq_set(kchat_txn *t, kchat_cmdseq_end end, uint32_t shard, uint64_t seq);

/**@}*/
/* ------------------------------------------------------------------------ */
/** @name Big-endian key helpers
 * Big-endian integers sort by memcmp() in numeric order.
 */
/**@{*/

/** @brief Write @p v to @p out, most significant byte first.
 *  @locality any thread */
void kchat_store_be64(uint64_t v, unsigned char out[8]);

/** @brief Read a value written by kchat_store_be64().
 *  @locality any thread */
uint64_t kchat_store_rd_be64(const unsigned char in[8]);

/**@}*/

/* The changelog's part of the API (kchat_store_opts::changelog): its own
 * header, part of this one. */
#include "kchat/store_changelog.h"

#endif /* KCHAT_STORE_H */
