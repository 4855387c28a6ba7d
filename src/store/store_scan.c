/*
 * The store's scans (kchat_txn_scan(), kchat_txn_scan_range(): keys in
 * order from a bound, within a prefix, while the callback may write to
 * the same transaction) and its big-endian key helpers (see
 * include/kchat/store.h for the contract).
 */
#include <stdint.h>
#include <string.h>

#include "store_int.h"

/* ------------------------------------------------------------------------ */
/* Scans */

/* LMDB's default key order: memcmp, then the shorter key first. */
static int key_cmp(const void *a, size_t al, const void *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);

    if (c)
        return c;
    return al < bl ? -1 : al > bl;
}

/* Position c at the first key >= key (the first key when len is 0). */
KCHAT_MUST_CHECK
static int seek_ge(MDB_cursor *c, const void *key, size_t len, MDB_val *k, MDB_val *v)
{
    if (len == 0)
        return mdb_cursor_get(c, k, v, MDB_FIRST);
    k->mv_data = (void *)key;
    k->mv_size = len;
    return mdb_cursor_get(c, k, v, MDB_SET_RANGE);
}

/* Position c at the last key < key (none when len is 0). */
KCHAT_MUST_CHECK
static int seek_lt(MDB_cursor *c, const void *key, size_t len, MDB_val *k, MDB_val *v)
{
    int rc;

    if (len == 0)
        return MDB_NOTFOUND;
    k->mv_data = (void *)key;
    k->mv_size = len;
    rc = mdb_cursor_get(c, k, v, MDB_SET_RANGE);
    if (rc == MDB_SUCCESS)
        return mdb_cursor_get(c, k, v, MDB_PREV);
    if (rc == MDB_NOTFOUND)
        return mdb_cursor_get(c, k, v, MDB_LAST);
    return rc;
}

/*
 * The smallest key above every key starting with prefix: the prefix with
 * trailing 0xff bytes dropped and its last byte incremented. Returns its
 * length, or 0 when there is none (empty or all-0xff prefix).
 */
static size_t prefix_successor(const unsigned char *prefix, size_t pl, unsigned char *out)
{
    while (pl > 0 && prefix[pl - 1] == 0xff)
        pl--;
    if (pl == 0)
        return 0;
    memcpy(out, prefix, pl);
    out[pl - 1]++;
    return pl;
}

/*
 * Where a scan starts: ascending, at the larger of prefix and bound;
 * descending, just below the smaller of bound and the prefix's successor
 * (written into succ). *start is NULL when a descending scan starts at the
 * table's last key.
 */
static void scan_start(const void *prefix, size_t pl, const void *bound, size_t bl,
                       bool reverse, unsigned char succ[KCHAT_STORE_KEY_MAX],
                       const void **start, size_t *start_len)
{
    *start = NULL;
    *start_len = 0;
    if (!reverse) {
        *start = prefix;
        *start_len = pl;
        if (bound && key_cmp(bound, bl, prefix, pl) > 0) {
            *start = bound;
            *start_len = bl;
        }
        return;
    }
    size_t sl = prefix_successor(prefix, pl, succ);
    if (sl) {
        *start = succ;
        *start_len = sl;
    }
    if (bound && (!*start || key_cmp(bound, bl, *start, *start_len) < 0)) {
        *start = bound;
        *start_len = bl;
    }
}

/*
 * After the scan callback wrote to the transaction, the cursor's pages may
 * have moved: open a new cursor and put it on the key after `last` in the
 * scan's direction. Returns an LMDB code; on failure to open the cursor,
 * *c is left closed and the code is that of mdb_cursor_open().
 */
KCHAT_MUST_CHECK
static int scan_reseek(kchat_txn *t, kchat_table tb, MDB_cursor **c, const void *last,
                       size_t last_len, bool reverse, MDB_val *k, MDB_val *v)
{
    int rc;

    mdb_cursor_close(*c);
    *c = NULL;
    rc = mdb_cursor_open(t->mdb, kchat__txn_dbi(t, tb), c);
    if (rc)
        return rc;
    if (reverse)
        return seek_lt(*c, last, last_len, k, v);
    rc = seek_ge(*c, last, last_len, k, v);
    if (rc == MDB_SUCCESS && key_cmp(k->mv_data, k->mv_size, last, last_len) == 0)
        rc = mdb_cursor_get(*c, k, v, MDB_NEXT);
    return rc;
}

int kchat_txn_scan_range(kchat_txn *t, kchat_table tb, const void *prefix, size_t pl,
                         const void *bound, size_t bl, bool reverse,
                         kchat_scan_fn fn, void *arg)
{
    unsigned char succ[KCHAT_STORE_KEY_MAX], last[KCHAT_STORE_KEY_MAX];
    const void *start;
    size_t start_len, last_len;
    MDB_cursor *c;
    MDB_val k, v;
    int rc = kchat__txn_check(t, tb, false), ret = KCHAT_OK;

    if (rc)
        return rc;
    if (!fn || (!prefix && pl))
        return KCHAT_EINVAL;
    if (pl > KCHAT_STORE_KEY_MAX || (bound && bl > KCHAT_STORE_KEY_MAX))
        return KCHAT_ETOOBIG;
    if (!prefix)
        prefix = "";
    scan_start(prefix, pl, bound, bl, reverse, succ, &start, &start_len);

    rc = mdb_cursor_open(t->mdb, kchat__txn_dbi(t, tb), &c);
    if (rc)
        return kchat__txn_fail(t, rc);
    if (!reverse)
        rc = seek_ge(c, start, start_len, &k, &v);
    else if (start)
        rc = seek_lt(c, start, start_len, &k, &v);
    else
        rc = mdb_cursor_get(c, &k, &v, MDB_LAST);

    while (rc == MDB_SUCCESS) {
        if (k.mv_size < pl || memcmp(k.mv_data, prefix, pl) != 0)
            break;   /* keys with the prefix are contiguous: done */
        last_len = k.mv_size;
        memcpy(last, k.mv_data, last_len);

        uint64_t gen = t->gen;
        int r = fn(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
        if (r != 0) {
            ret = r < 0 ? r : KCHAT_OK;
            goto out;
        }
        if (t->err) {    /* fn failed the transaction */
            ret = t->err;
            goto out;
        }
        if (t->gen == gen) {
            rc = mdb_cursor_get(c, &k, &v, reverse ? MDB_PREV : MDB_NEXT);
            continue;
        }
        /* fn wrote: the cursor's pages may have moved; find our place again. */
        rc = scan_reseek(t, tb, &c, last, last_len, reverse, &k, &v);
        if (!c)   /* no new cursor */
            return kchat__txn_fail(t, rc);
    }
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        ret = kchat__txn_fail(t, rc);
out:
    mdb_cursor_close(c);
    return ret;
}

int kchat_txn_scan(kchat_txn *t, kchat_table tb, const void *prefix, size_t pl,
                   bool reverse, kchat_scan_fn fn, void *arg)
{
    return kchat_txn_scan_range(t, tb, prefix, pl, NULL, 0, reverse, fn, arg);
}

/* ------------------------------------------------------------------------ */
/* Big-endian helpers */

void kchat_store_be64(uint64_t v, unsigned char out[8])
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (unsigned char)v;
}

uint64_t kchat_store_rd_be64(const unsigned char in[8])
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | in[i];
    return v;
}

void kchat__store_be32(uint32_t v, unsigned char out[4])
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        out[i] = (unsigned char)v;
}

uint32_t kchat__store_rd_be32(const unsigned char in[4])
{
    uint32_t v = 0;

    for (int i = 0; i < 4; i++)
        v = v << 8 | in[i];
    return v;
}
