/*
 * The small records every store keeps: meta strings and counters, input
 * offsets and applied watermarks (see include/kchat/store.h).
 *
 * Layouts (all integers big-endian):
 *   META     "s:" name            -> the string's bytes, no NUL
 *            "c:" name            -> u64 counter
 *            "i:" name            -> u64, the store's own counters
 *                                    ("i:outbox_seq", store_outbox.c)
 *   OFFSETS  topic NUL u32 partition -> i64 next offset
 *   APPLIED  u32 source           -> u64 seq
 * The NUL after the topic keeps "t" and "t1" apart.
 */
#include <string.h>

#include "store_int.h"

/* ------------------------------------------------------------------------ */
/* META */

/* Build the META key tag + name into key[KCHAT_STORE_KEY_MAX]. */
KCHAT_MUST_CHECK
static int meta_key(char tag, const char *name, unsigned char *key, size_t *kl)
{
    size_t n;

    if (!name || !*name)
        return KCHAT_EINVAL;
    n = strlen(name);
    if (n > KCHAT_STORE_KEY_MAX - 2)
        return KCHAT_ETOOBIG;
    key[0] = (unsigned char)tag;
    key[1] = ':';
    memcpy(key + 2, name, n);
    *kl = n + 2;
    return KCHAT_OK;
}

int kchat_store_meta_get(kchat_txn *t, const char *name, char *buf, size_t bufsize)
{
    unsigned char key[KCHAT_STORE_KEY_MAX];
    const void *v;
    size_t kl, vl;
    int rc;

    if (!buf)
        return KCHAT_EINVAL;
    if ((rc = meta_key('s', name, key, &kl)))
        return rc;
    if ((rc = kchat_txn_get(t, KCHAT_TBL_META, key, kl, &v, &vl)))
        return rc;
    if (vl >= bufsize)
        return KCHAT_ETOOBIG;
    memcpy(buf, v, vl);
    buf[vl] = '\0';
    return KCHAT_OK;
}

int kchat_store_meta_set(kchat_txn *t, const char *name, const char *value)
{
    unsigned char key[KCHAT_STORE_KEY_MAX];
    size_t kl;
    int rc;

    if (!value)
        return KCHAT_EINVAL;
    if ((rc = meta_key('s', name, key, &kl)))
        return rc;
    return kchat_txn_put(t, KCHAT_TBL_META, key, kl, value, strlen(value));
}

/* Take @p count values of the u64 counter under key tag:name: the first in
 * *out (the counter's last value + 1). With @p count 0 nothing is taken
 * and *out is the value the next take would give (works in a read
 * transaction too). */
KCHAT_MUST_CHECK
static int counter_take(kchat_txn *t, char tag, const char *name, uint64_t count,
                        uint64_t *out)
{
    unsigned char key[KCHAT_STORE_KEY_MAX], val[8];
    const void *v;
    size_t kl, vl;
    uint64_t n = 0;
    int rc = kchat__txn_check(t, KCHAT_TBL_META, count > 0);

    if (rc)
        return rc;
    if (!out)
        return KCHAT_EINVAL;
    if ((rc = meta_key(tag, name, key, &kl)))
        return rc;
    rc = kchat_txn_get(t, KCHAT_TBL_META, key, kl, &v, &vl);
    if (rc == KCHAT_OK) {
        if (vl != 8)
            return KCHAT_EDECODE;
        n = kchat_store_rd_be64(v);
    } else if (rc != KCHAT_ENOTFOUND) {
        return rc;
    }
    if (UINT64_MAX - n < count || (count == 0 && n == UINT64_MAX))
        return KCHAT_EFULL;
    if (count == 0) {
        *out = n + 1;
        return KCHAT_OK;
    }
    kchat_store_be64(n + count, val);
    if ((rc = kchat_txn_put(t, KCHAT_TBL_META, key, kl, val, sizeof val)))
        return rc;
    *out = n + 1;
    return KCHAT_OK;
}

int kchat_store_counter_next(kchat_txn *t, const char *name, uint64_t *out)
{
    return counter_take(t, 'c', name, 1, out);
}

int kchat__store_internal_next(kchat_txn *t, const char *name, uint64_t *out)
{
    return counter_take(t, 'i', name, 1, out);
}

int kchat__store_internal_take(kchat_txn *t, const char *name, uint64_t count, uint64_t *out)
{
    return counter_take(t, 'i', name, count, out);
}

/* ------------------------------------------------------------------------ */
/* OFFSETS */

KCHAT_MUST_CHECK
static int offset_key(const char *topic, int32_t partition, unsigned char *key, size_t *kl)
{
    size_t n;

    if (!topic || !*topic || partition < 0)
        return KCHAT_EINVAL;
    n = strlen(topic);
    if (n > KCHAT_STORE_KEY_MAX - 5)
        return KCHAT_ETOOBIG;
    memcpy(key, topic, n + 1);   /* with its NUL */
    kchat__store_be32((uint32_t)partition, key + n + 1);
    *kl = n + 5;
    return KCHAT_OK;
}

int kchat_store_offset_get(kchat_txn *t, const char *topic, int32_t partition, int64_t *next)
{
    unsigned char key[KCHAT_STORE_KEY_MAX];
    const void *v;
    size_t kl, vl;
    int rc;

    if (!next)
        return KCHAT_EINVAL;
    if ((rc = offset_key(topic, partition, key, &kl)))
        return rc;
    if ((rc = kchat_txn_get(t, KCHAT_TBL_OFFSETS, key, kl, &v, &vl)))
        return rc;
    if (vl != 8)
        return KCHAT_EDECODE;
    *next = (int64_t)kchat_store_rd_be64(v);
    return KCHAT_OK;
}

int kchat_store_offset_set(kchat_txn *t, const char *topic, int32_t partition, int64_t next)
{
    unsigned char key[KCHAT_STORE_KEY_MAX], val[8];
    size_t kl;
    int rc;

    if ((rc = offset_key(topic, partition, key, &kl)))
        return rc;
    kchat_store_be64((uint64_t)next, val);
    return kchat_txn_put(t, KCHAT_TBL_OFFSETS, key, kl, val, sizeof val);
}

/* kchat_store_offsets_clear(): each offset dropped is a change. */
static int offset_touch(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    (void)v;
    (void)vl;
    return kchat__txn_touch(arg, KCHAT_TBL_OFFSETS, k, kl);
}

int kchat_store_offsets_clear(kchat_txn *t)
{
    int rc = kchat__txn_check(t, KCHAT_TBL_OFFSETS, true);

    if (rc)
        return rc;
    if (t->capture && (rc = kchat_txn_scan(t, KCHAT_TBL_OFFSETS, NULL, 0, false,
                                           offset_touch, t)) != KCHAT_OK)
        return rc;
    t->gen++;
    rc = mdb_drop(t->mdb, kchat__txn_dbi(t, KCHAT_TBL_OFFSETS), 0);
    return rc ? kchat__txn_fail(t, rc) : KCHAT_OK;
}

/* ------------------------------------------------------------------------ */
/* APPLIED: 4-byte keys (source) for the outbox-seq watermarks, 5-byte keys
 * (end, shard) for the command stream counters; 8-byte big-endian values */

KCHAT_MUST_CHECK
static int counter_get(kchat_txn *t, const unsigned char *key, size_t kl, uint64_t *seq)
{
    const void *v;
    size_t vl;
    int rc = kchat_txn_get(t, KCHAT_TBL_APPLIED, key, kl, &v, &vl);

    if (rc == KCHAT_ENOTFOUND) {
        *seq = 0;
        return KCHAT_OK;
    }
    if (rc)
        return rc;
    if (vl != 8)
        return KCHAT_EDECODE;
    *seq = kchat_store_rd_be64(v);
    return KCHAT_OK;
}

KCHAT_MUST_CHECK
static int counter_set(kchat_txn *t, const unsigned char *key, size_t kl, uint64_t seq)
{
    unsigned char val[8];

    kchat_store_be64(seq, val);
    return kchat_txn_put(t, KCHAT_TBL_APPLIED, key, kl, val, sizeof val);
}

int kchat_store_applied_get(kchat_txn *t, uint32_t source, uint64_t *seq)
{
    unsigned char key[4];

    if (!seq)
        return KCHAT_EINVAL;
    kchat__store_be32(source, key);
    return counter_get(t, key, sizeof key, seq);
}

int kchat_store_applied_set(kchat_txn *t, uint32_t source, uint64_t seq)
{
    unsigned char key[4];

    kchat__store_be32(source, key);
    return counter_set(t, key, sizeof key, seq);
}

KCHAT_MUST_CHECK
static int cmdseq_key(kchat_cmdseq_end end, uint32_t shard, unsigned char key[5])
{
    if (end != KCHAT_CMDSEQ_SENT && end != KCHAT_CMDSEQ_APPLIED && end != KCHAT_CMDSEQ_ACKED &&
        end != KCHAT_CMDSEQ_APPLIED_RUN)
        return KCHAT_EINVAL;
    key[0] = (unsigned char)end;
    kchat__store_be32(shard, key + 1);
    return KCHAT_OK;
}

int kchat_store_cmdseq_get(kchat_txn *t, kchat_cmdseq_end end, uint32_t shard, uint64_t *seq)
{
    unsigned char key[5];

    if (!seq || cmdseq_key(end, shard, key))
        return KCHAT_EINVAL;
    return counter_get(t, key, sizeof key, seq);
}

int kchat_store_cmdseq_set(kchat_txn *t, kchat_cmdseq_end end, uint32_t shard, uint64_t seq)
{
    unsigned char key[5];

    if (cmdseq_key(end, shard, key))
        return KCHAT_EINVAL;
    return counter_set(t, key, sizeof key, seq);
}
