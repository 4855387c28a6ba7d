/*
 * The changelog of a store (include/kchat/store.h, "Changelog").
 *
 * A write transaction of a store opened with a changelog notes every key it
 * puts or deletes (kchat__txn_touch(), from the put and delete paths of
 * store.c). At commit the notes are sorted and made unique, and each key's
 * value as the transaction leaves it, or its absence, becomes one change
 * under the next changelog seq in KCHAT_TBL_CHANGELOG, in the same LMDB
 * transaction: a change exists exactly when the state it describes was
 * committed. The caller produces the changes to Kafka and trims them once
 * Kafka has them.
 *
 * A kept change: key = be64(seq); value = table (1 byte), deleted (1 byte),
 * the seq of its transaction's last change (be64), key length (be16), key,
 * then the value (absent when deleted).
 */
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

#define SEQ_NAME "changelog"   /* the store-internal counter of changelog seqs */
#define HEAD_LEN (1 + 1 + 8 + 2)

/* A key noted by kchat__txn_touch(): its bytes are at `off` in t->keys. */
struct kchat__touch {
    uint8_t table;
    uint16_t len;
    size_t off;
    const unsigned char *p;   /* set at commit, once t->keys moves no more */
};

int kchat__txn_touch(kchat_txn *t, kchat_table tb, const void *k, size_t kl)
{
    if (!t->capture || tb == KCHAT_TBL_CHANGELOG)
        return KCHAT_OK;
    if (t->n_touch == t->cap_touch) {
        size_t cap = t->cap_touch ? 2 * t->cap_touch : 64;
        struct kchat__touch *nv = realloc(t->touch, cap * sizeof(*nv));
        if (nv == NULL)
            goto err_nomem;
        t->touch = nv;
        t->cap_touch = cap;
    }
    if (t->keys_len + kl > t->keys_cap) {
        size_t cap = t->keys_cap ? 2 * t->keys_cap : 4096;
        unsigned char *nv;
        while (cap < t->keys_len + kl)
            cap *= 2;
        if ((nv = realloc(t->keys, cap)) == NULL)
            goto err_nomem;
        t->keys = nv;
        t->keys_cap = cap;
    }
    memcpy(t->keys + t->keys_len, k, kl);
    t->touch[t->n_touch++] = (struct kchat__touch){
        .table = (uint8_t)tb, .len = (uint16_t)kl, .off = t->keys_len};
    t->keys_len += kl;
    return KCHAT_OK;

err_nomem:
    t->err = KCHAT_ENOMEM;
    return KCHAT_ENOMEM;
}

void kchat__txn_touch_free(kchat_txn *t)
{
    free(t->touch);
    free(t->keys);
    t->touch = NULL;
    t->keys = NULL;
    t->n_touch = t->cap_touch = t->keys_len = t->keys_cap = 0;
}

void kchat_txn_on_changes(kchat_txn *t, kchat_change_fn fn, void *arg)
{
    if (t == NULL || !t->capture)
        return;
    t->on_change = fn;
    t->on_change_arg = arg;
}

static int touch_cmp(const void *a, const void *b)
{
    const struct kchat__touch *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c;

    if (x->table != y->table)
        return x->table < y->table ? -1 : 1;
    if ((c = memcmp(x->p, y->p, n)) != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

/* Sort the notes of @p t and drop repeats; returns how many remain. */
static size_t touch_unique(kchat_txn *t)
{
    size_t n = 0;

    for (size_t i = 0; i < t->n_touch; i++)
        t->touch[i].p = t->keys + t->touch[i].off;
    qsort(t->touch, t->n_touch, sizeof(*t->touch), touch_cmp);
    for (size_t i = 0; i < t->n_touch; i++)
        if (n == 0 || touch_cmp(&t->touch[n - 1], &t->touch[i]) != 0)
            t->touch[n++] = t->touch[i];
    return n;
}

/* Keep change @p ch (its seq) in KCHAT_TBL_CHANGELOG. */
KCHAT_MUST_CHECK
static int change_put(kchat_txn *t, const kchat_change *ch)
{
    unsigned char key[8];
    unsigned char *dst;
    void *reserved;
    size_t size = HEAD_LEN + ch->key_len + (ch->deleted ? 0 : ch->value_len);
    int rc;

    kchat_store_be64(ch->seq, key);
    rc = kchat__txn_put(t, KCHAT_TBL_CHANGELOG, key, sizeof(key), NULL, size,
                        MDB_NOOVERWRITE | MDB_RESERVE, &reserved);
    if (rc == KCHAT_EEXIST)   /* the counter is behind the table: damaged */
        return t->err = KCHAT_ESTORE;
    if (rc)
        return rc;
    dst = reserved;
    dst[0] = (uint8_t)ch->table;
    dst[1] = ch->deleted;
    kchat_store_be64(ch->last, dst + 2);
    dst[10] = (uint8_t)(ch->key_len >> 8);
    dst[11] = (uint8_t)ch->key_len;
    memcpy(dst + HEAD_LEN, ch->key, ch->key_len);
    if (!ch->deleted && ch->value_len)
        memcpy(dst + HEAD_LEN + ch->key_len, ch->value, ch->value_len);
    return KCHAT_OK;
}

int kchat__txn_changes_commit(kchat_txn *t)
{
    uint64_t first;
    size_t n, scratch_cap = 0;
    void *scratch = NULL;
    int rc = KCHAT_OK;

    if (!t->capture || t->n_touch == 0)
        return KCHAT_OK;
    n = touch_unique(t);
    t->capture = false;   /* the counter and the kept changes are not changes */
    if ((rc = kchat__store_internal_take(t, SEQ_NAME, n, &first)) != KCHAT_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        const struct kchat__touch *k = &t->touch[i];
        MDB_val key = {.mv_size = k->len, .mv_data = (void *)k->p}, val;
        kchat_change ch = {
            .seq = first + i, .last = first + n - 1, .table = (kchat_table)k->table,
            .key = k->p, .key_len = k->len,
        };
        int m = mdb_get(t->mdb, kchat__txn_dbi(t, ch.table), &key, &val);

        if (m == MDB_NOTFOUND) {
            ch.deleted = true;
        } else if (m) {
            rc = kchat__txn_fail(t, m);
            break;
        } else {
            /* copied: a value read is valid only until the next write */
            if (val.mv_size > scratch_cap) {
                void *nv = realloc(scratch, val.mv_size);
                if (nv == NULL) {
                    rc = t->err = KCHAT_ENOMEM;
                    break;
                }
                scratch = nv;
                scratch_cap = val.mv_size;
            }
            memcpy(scratch, val.mv_data, val.mv_size);
            ch.value = scratch;
            ch.value_len = val.mv_size;
        }
        if ((rc = change_put(t, &ch)) != KCHAT_OK)
            break;
        if (t->on_change && (rc = t->on_change(t->on_change_arg, &ch)) != 0) {
            rc = t->err = rc < 0 ? rc : KCHAT_EINVAL;
            break;
        }
    }
    free(scratch);
    return rc;
}

int kchat_store_change_decode(const void *v, size_t vl, uint64_t seq, kchat_change *out)
{
    const unsigned char *p = v;
    size_t kl;

    if (p == NULL || vl < HEAD_LEN || p[0] >= KCHAT_TBL__COUNT ||
        p[0] == KCHAT_TBL_CHANGELOG || p[1] > 1)
        return KCHAT_EDECODE;
    kl = (size_t)p[10] << 8 | p[11];
    if (kl == 0 || kl > KCHAT_STORE_KEY_MAX || vl - HEAD_LEN < kl ||
        (p[1] && vl - HEAD_LEN != kl))
        return KCHAT_EDECODE;
    *out = (kchat_change){
        .seq = seq, .last = kchat_store_rd_be64(p + 2), .table = (kchat_table)p[0],
        .key = p + HEAD_LEN, .key_len = kl, .deleted = p[1] != 0,
    };
    if (out->last < seq)
        return KCHAT_EDECODE;
    if (!out->deleted) {
        out->value = p + HEAD_LEN + kl;
        out->value_len = vl - HEAD_LEN - kl;
    }
    return KCHAT_OK;
}

struct scan_ctx {
    kchat_change_fn fn;
    void *arg;
};

static int scan_one(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    struct scan_ctx *sc = arg;
    kchat_change ch;

    if (kl != 8 || kchat_store_change_decode(v, vl, kchat_store_rd_be64(k), &ch) != KCHAT_OK)
        return KCHAT_EDECODE;
    return sc->fn(sc->arg, &ch);
}

int kchat_store_changelog_scan(kchat_txn *t, uint64_t from_seq, kchat_change_fn fn, void *arg)
{
    struct scan_ctx sc = {fn, arg};
    unsigned char from[8];

    if (fn == NULL)
        return KCHAT_EINVAL;
    kchat_store_be64(from_seq, from);
    return kchat_txn_scan_range(t, KCHAT_TBL_CHANGELOG, NULL, 0, from, sizeof(from), false,
                                scan_one, &sc);
}

/* Collects the keys to trim (a scan must not delete under its cursor). */
struct trim_ctx {
    uint64_t upto;
    uint64_t *seqs;
    size_t n, cap;
};

static int trim_one(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    struct trim_ctx *tc = arg;
    uint64_t seq;

    (void)v;
    (void)vl;
    if (kl != 8)
        return KCHAT_EDECODE;
    if ((seq = kchat_store_rd_be64(k)) > tc->upto)
        return 1;
    if (tc->n == tc->cap) {
        size_t cap = tc->cap ? 2 * tc->cap : 256;
        uint64_t *nv = realloc(tc->seqs, cap * sizeof(*nv));
        if (nv == NULL)
            return KCHAT_ENOMEM;
        tc->seqs = nv;
        tc->cap = cap;
    }
    tc->seqs[tc->n++] = seq;
    return 0;
}

int kchat_store_changelog_trim(kchat_txn *t, uint64_t upto)
{
    struct trim_ctx tc = {.upto = upto};
    int rc = kchat_txn_scan(t, KCHAT_TBL_CHANGELOG, NULL, 0, false, trim_one, &tc);

    for (size_t i = 0; rc == KCHAT_OK && i < tc.n; i++) {
        unsigned char key[8];
        kchat_store_be64(tc.seqs[i], key);
        rc = kchat_txn_del(t, KCHAT_TBL_CHANGELOG, key, sizeof(key));
    }
    free(tc.seqs);
    return rc;
}

int kchat_store_changelog_next(kchat_txn *t, uint64_t *next)
{
    return kchat__store_internal_take(t, SEQ_NAME, 0, next);
}

int kchat_store_changelog_restored(kchat_txn *t, uint64_t last)
{
    uint64_t next, first;
    bool capture;
    int rc = kchat__store_internal_take(t, SEQ_NAME, 0, &next);

    if (rc != KCHAT_OK || last < next)
        return rc;
    capture = t->capture;   /* the counter is not a change */
    t->capture = false;
    rc = kchat__store_internal_take(t, SEQ_NAME, last + 1 - next, &first);
    t->capture = capture;
    return rc;
}

size_t kchat_store_change_key(const kchat_change *ch, unsigned char out[KCHAT_CHANGE_KEY_MAX])
{
    size_t kl = ch->key_len < KCHAT_STORE_KEY_MAX ? ch->key_len : KCHAT_STORE_KEY_MAX;

    out[0] = (uint8_t)ch->table;
    memcpy(out + 1, ch->key, kl);
    return 1 + kl;
}

int kchat_store_change_apply(kchat_txn *t, const kchat_change *ch)
{
    bool capture;
    int rc;

    if (t == NULL || ch == NULL || ch->table >= KCHAT_TBL__COUNT ||
        ch->table == KCHAT_TBL_CHANGELOG || ch->key == NULL || ch->key_len == 0 ||
        ch->key_len > KCHAT_STORE_KEY_MAX || (!ch->deleted && ch->value == NULL && ch->value_len))
        return KCHAT_EINVAL;
    if ((rc = kchat__txn_check(t, ch->table, true)) != KCHAT_OK)
        return rc;
    capture = t->capture;
    t->capture = false;
    if (ch->deleted) {
        rc = kchat_txn_del(t, ch->table, ch->key, ch->key_len);
        if (rc == KCHAT_ENOTFOUND)
            rc = KCHAT_OK;
    } else {
        rc = kchat__txn_put(t, ch->table, ch->key, ch->key_len, ch->value, ch->value_len, 0,
                            NULL);
    }
    t->capture = capture;
    return rc;
}
