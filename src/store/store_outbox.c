/*
 * The outbox: records to produce after their transaction commits (see
 * include/kchat/store.h).
 *
 * Key: u64 seq, big-endian. Seqs come from the store's own counter
 * "i:outbox_seq" in META, so they keep increasing after the outbox empties
 * and across restarts.
 *
 * Value (integers big-endian; a length of 0xffffffff stands for NULL):
 *   u8  format (1)       u8  kind        u8  n_headers    u8  0
 *   u32 partition (int32_t two's complement)
 *   u16 topic length, topic bytes, NUL
 *   u32 key length, key bytes
 *   u32 value length, value bytes
 *   n_headers times: u16 name length, name bytes, NUL,
 *                    u32 value length, value bytes
 * Strings carry their NUL so decoded records can point into the map.
 */
#include <string.h>

#include "store_int.h"

#define OUTBOX_FORMAT 1
#define NULL_LEN UINT32_MAX
#define SEQ_COUNTER "outbox_seq"

/* ------------------------------------------------------------------------ */
/* Encoding */

KCHAT_MUST_CHECK
static int check_bytes(const void *p, size_t len)
{
    if (!p && len)
        return KCHAT_EINVAL;
    return len >= NULL_LEN ? KCHAT_ETOOBIG : KCHAT_OK;
}

KCHAT_MUST_CHECK
static int check_name(const char *s, size_t *len)
{
    if (!s)
        return KCHAT_EINVAL;
    *len = strlen(s);
    return *len > UINT16_MAX ? KCHAT_ETOOBIG : KCHAT_OK;
}

/* Validate r and compute its encoded size. */
KCHAT_MUST_CHECK
static int encoded_size(const kchat_outbox_rec *r, size_t *size)
{
    size_t n, total;
    int rc;

    if (!r || r->partition < -1 || r->n_headers > KCHAT_STORE_MAX_HEADERS ||
        (!r->headers && r->n_headers))
        return KCHAT_EINVAL;
    if ((rc = check_name(r->topic, &n)))
        return rc;
    if (n == 0)
        return KCHAT_EINVAL;
    total = 8 + 2 + n + 1;
    if ((rc = check_bytes(r->key, r->key_len)) || (rc = check_bytes(r->value, r->value_len)))
        return rc;
    total += 4 + r->key_len + 4 + r->value_len;
    for (size_t i = 0; i < r->n_headers; i++) {
        const kchat_header *h = &r->headers[i];
        if ((rc = check_name(h->name, &n)) || (rc = check_bytes(h->value, h->len)))
            return rc;
        total += 2 + n + 1 + 4 + h->len;
    }
    if (total >= UINT32_MAX)   /* LMDB's largest value */
        return KCHAT_ETOOBIG;
    *size = total;
    return KCHAT_OK;
}

static unsigned char *put_u16(unsigned char *p, size_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
    return p + 2;
}

static unsigned char *put_bytes(unsigned char *p, const void *b, size_t len)
{
    kchat__store_be32(b ? (uint32_t)len : NULL_LEN, p);
    if (len)
        memcpy(p + 4, b, len);
    return p + 4 + len;
}

static unsigned char *put_str(unsigned char *p, const char *s)
{
    size_t n = strlen(s);

    p = put_u16(p, n);
    memcpy(p, s, n + 1);
    return p + n + 1;
}

static void encode(const kchat_outbox_rec *r, unsigned char *p)
{
    p[0] = OUTBOX_FORMAT;
    p[1] = r->kind;
    p[2] = (unsigned char)r->n_headers;
    p[3] = 0;
    kchat__store_be32((uint32_t)r->partition, p + 4);
    p = put_str(p + 8, r->topic);
    p = put_bytes(p, r->key, r->key_len);
    p = put_bytes(p, r->value, r->value_len);
    for (size_t i = 0; i < r->n_headers; i++) {
        p = put_str(p, r->headers[i].name);
        p = put_bytes(p, r->headers[i].value, r->headers[i].len);
    }
}

/* ------------------------------------------------------------------------ */
/* Decoding: every reader returns false when the record is too short. */

typedef struct reader {
    const unsigned char *p, *end;
} reader;

static bool get_str(reader *rd, const char **s)
{
    size_t n;

    if (rd->end - rd->p < 2)
        return false;
    n = (size_t)rd->p[0] << 8 | rd->p[1];
    rd->p += 2;
    if ((size_t)(rd->end - rd->p) < n + 1 || rd->p[n] != '\0' || memchr(rd->p, 0, n))
        return false;
    *s = (const char *)rd->p;
    rd->p += n + 1;
    return true;
}

static bool get_bytes(reader *rd, const void **b, size_t *len)
{
    uint32_t n;

    if (rd->end - rd->p < 4)
        return false;
    n = kchat__store_rd_be32(rd->p);
    rd->p += 4;
    if (n == NULL_LEN) {
        *b = NULL;
        *len = 0;
        return true;
    }
    if ((size_t)(rd->end - rd->p) < n)
        return false;
    *b = rd->p;
    *len = n;
    rd->p += n;
    return true;
}

/* Decode v into r, pointing into v; h receives the headers. */
KCHAT_MUST_CHECK
static int decode(const unsigned char *v, size_t vl, kchat_outbox_rec *r,
                  kchat_header h[KCHAT_STORE_MAX_HEADERS])
{
    reader rd = { v, v + vl };

    if (vl < 8 || v[0] != OUTBOX_FORMAT || v[2] > KCHAT_STORE_MAX_HEADERS || v[3] != 0)
        return KCHAT_EDECODE;
    memset(r, 0, sizeof *r);
    r->kind = v[1];
    r->n_headers = v[2];
    r->partition = (int32_t)kchat__store_rd_be32(v + 4);
    r->headers = r->n_headers ? h : NULL;
    rd.p += 8;
    if (r->partition < -1 || !get_str(&rd, &r->topic) || !*r->topic ||
        !get_bytes(&rd, &r->key, &r->key_len) || !get_bytes(&rd, &r->value, &r->value_len))
        return KCHAT_EDECODE;
    for (size_t i = 0; i < r->n_headers; i++)
        if (!get_str(&rd, &h[i].name) || !get_bytes(&rd, &h[i].value, &h[i].len))
            return KCHAT_EDECODE;
    return rd.p == rd.end ? KCHAT_OK : KCHAT_EDECODE;
}

/* ------------------------------------------------------------------------ */
/* Operations */

int kchat_store_outbox_append(kchat_txn *t, const kchat_outbox_rec *r, uint64_t *seq)
{
    unsigned char key[8];
    void *dst;
    size_t size;
    uint64_t n;
    int rc = kchat__txn_check(t, KCHAT_TBL_OUTBOX, true);

    if (rc)
        return rc;
    if ((rc = encoded_size(r, &size)))
        return rc;
    if ((rc = kchat__store_internal_next(t, SEQ_COUNTER, &n)))
        return rc;
    kchat_store_be64(n, key);
    rc = kchat__txn_put(t, KCHAT_TBL_OUTBOX, key, sizeof key, NULL, size,
                        MDB_NOOVERWRITE | MDB_RESERVE, &dst);
    if (rc == KCHAT_EEXIST)   /* the counter is behind the table: damaged */
        return KCHAT_ESTORE;
    if (rc)
        return rc;
    encode(r, dst);
    if (seq)
        *seq = n;
    return KCHAT_OK;
}

int kchat_store_outbox_del(kchat_txn *t, uint64_t seq)
{
    unsigned char key[8];

    kchat_store_be64(seq, key);
    return kchat_txn_del(t, KCHAT_TBL_OUTBOX, key, sizeof key);
}

typedef struct outbox_scan_ctx {
    kchat_outbox_fn fn;
    void *arg;
} outbox_scan_ctx;

static int outbox_visit(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    outbox_scan_ctx *ctx = arg;
    kchat_header h[KCHAT_STORE_MAX_HEADERS];
    kchat_outbox_rec r;

    if (kl != 8 || decode(v, vl, &r, h) != KCHAT_OK)
        return KCHAT_EDECODE;
    return ctx->fn(ctx->arg, kchat_store_rd_be64(k), &r);
}

int kchat_store_outbox_scan(kchat_txn *t, uint64_t from_seq, kchat_outbox_fn fn, void *arg)
{
    outbox_scan_ctx ctx = { fn, arg };
    unsigned char bound[8];

    if (!fn)
        return KCHAT_EINVAL;
    kchat_store_be64(from_seq, bound);
    return kchat_txn_scan_range(t, KCHAT_TBL_OUTBOX, NULL, 0, bound, sizeof bound, false,
                                outbox_visit, &ctx);
}

int kchat_store_outbox_count(kchat_txn *t, size_t *n)
{
    MDB_stat st;
    int rc = kchat__txn_check(t, KCHAT_TBL_OUTBOX, false);

    if (rc)
        return rc;
    if (!n)
        return KCHAT_EINVAL;
    rc = mdb_stat(t->mdb, kchat__txn_dbi(t, KCHAT_TBL_OUTBOX), &st);
    if (rc)
        return kchat__txn_fail(t, rc);
    *n = st.ms_entries;
    return KCHAT_OK;
}
