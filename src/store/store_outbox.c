/*
 * The outbox: records to produce after their transaction commits (see
 * include/kchat/store.h).
 *
 * Seqs come from the store's own counter "i:outbox_seq" in META, so they
 * keep increasing after the outbox empties and across restarts.
 *
 * Pages. The records of one kind a transaction appends one after another
 * are put as one page (records of a kind are usually deleted together: an
 * answer and its events once Kafka has them, commands once their target
 * applied them): key u64 seq of its first record, big-endian. Every key of the
 * table is a change the changelog carries to Kafka (docs/design.md,
 * "Changelog"), so a page is one change where a record each was one, and
 * its deletion one more (docs/bench.md, "Outbox pages"). A page's
 * records that are gone while others are not are marked in its gone mask,
 * key: the page's key and the byte 'g'; value: u64 big-endian, bit i set
 * when record first + i is gone. The last record gone deletes the page and
 * its mask. Both live in the table, so a store restored from the changelog
 * has exactly the records its source had.
 *
 * A page with one record is that record's encoding (format 1, below: the
 * format of the outbox before pages, so an older data directory reads as
 * pages of one). A page of 2 to PAGE_MAX records:
 *   u8  format (2)   u8  0   u16 n (big-endian)
 *   n times: u32 length, the record's format 1 encoding
 *
 * A record (integers big-endian; a length of 0xffffffff stands for NULL):
 *   u8  format (1)       u8  kind        u8  n_headers    u8  0
 *   u32 partition (int32_t two's complement)
 *   u16 topic length, topic bytes, NUL
 *   u32 key length, key bytes
 *   u32 value length, value bytes
 *   n_headers times: u16 name length, name bytes, NUL,
 *                    u32 value length, value bytes
 * Strings carry their NUL so decoded records can point into the map.
 */
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

#define OUTBOX_FORMAT 1
#define PAGE_FORMAT 2
#define PAGE_HEAD 4
#define PAGE_MAX 64            /* records in a page: its gone mask is a u64 */
#define PAGE_BYTES 16384       /* a page grows past this with no more records */
#define MASK_TAG 'g'
#define NULL_LEN UINT32_MAX
#define SEQ_COUNTER "outbox_seq"

/* A page some of whose records a transaction deleted: its gone mask as the
 * transaction leaves it, written at the next other use of the table or at
 * commit (so that a page whose records all go in one transaction is one
 * deletion, with no mask put and taken away again in between). */
struct mask_entry {
    uint64_t first;       /* the page's first seq */
    size_t n;             /* its records */
    uint64_t gone, was;   /* its mask now, and in the table (0: none there) */
};

/* The outbox work of a transaction not yet in the table (kchat_txn::ob):
 * the page being built, and the masks of pages it deleted records of. */
struct kchat__outbox_txn {
    uint64_t first;       /* the seq of its first record */
    size_t n;             /* records in it; 0: none being built */
    uint8_t kind;         /* of its records */
    unsigned char *buf;   /* PAGE_HEAD bytes, then the records as in a page */
    size_t len, cap;
    struct mask_entry *masks;
    size_t n_masks, cap_masks;
};

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
/* Pages */

/* The mask of a page of @p n records (1..PAGE_MAX) whose records are all gone. */
static uint64_t all_of(size_t n)
{
    return n == PAGE_MAX ? UINT64_MAX : ((uint64_t)1 << n) - 1;
}

static void key_of(uint64_t first, unsigned char key[9])
{
    kchat_store_be64(first, key);
    key[8] = MASK_TAG;
}

/* Put the page being built, if any. */
KCHAT_MUST_CHECK
static int page_put(kchat_txn *t)
{
    struct kchat__outbox_txn *pg = t->ob;
    unsigned char key[8];
    const unsigned char *v;
    size_t vl;
    int rc;

    if (pg == NULL || pg->n == 0)
        return KCHAT_OK;
    if (pg->n == 1) {   /* a page of one is the record itself */
        v = pg->buf + PAGE_HEAD + 4;
        vl = pg->len - PAGE_HEAD - 4;
    } else {
        pg->buf[0] = PAGE_FORMAT;
        pg->buf[1] = 0;
        put_u16(pg->buf + 2, pg->n);
        v = pg->buf;
        vl = pg->len;
    }
    pg->n = 0;   /* written or failed: built no further */
    kchat_store_be64(pg->first, key);
    rc = kchat__txn_put(t, KCHAT_TBL_OUTBOX, key, 8, v, vl, MDB_NOOVERWRITE, NULL);
    if (rc == KCHAT_EEXIST) {   /* the counter is behind the table: damaged */
        t->err = KCHAT_ESTORE;
        return KCHAT_ESTORE;
    }
    return rc;
}

/* Write the masks the transaction changed: a page whose records are all
 * gone is deleted (with its mask, if the table has one). */
KCHAT_MUST_CHECK
static int masks_put(kchat_txn *t)
{
    struct kchat__outbox_txn *ob = t->ob;
    int rc = KCHAT_OK;

    for (size_t i = 0; ob != NULL && rc == KCHAT_OK && i < ob->n_masks; i++) {
        const struct mask_entry *e = &ob->masks[i];
        unsigned char key[9], val[8];

        key_of(e->first, key);
        if (e->gone == all_of(e->n)) {
            rc = kchat__txn_del(t, KCHAT_TBL_OUTBOX, key, 8);
            if (rc == KCHAT_OK && e->was != 0)
                rc = kchat__txn_del(t, KCHAT_TBL_OUTBOX, key, 9);
        } else if (e->gone != e->was) {
            kchat_store_be64(e->gone, val);
            rc = kchat__txn_put(t, KCHAT_TBL_OUTBOX, key, 9, val, 8, 0, NULL);
        }
    }
    if (ob != NULL)
        ob->n_masks = 0;
    return rc;
}

int kchat__outbox_flush(kchat_txn *t)
{
    int rc = page_put(t);

    return rc ? rc : masks_put(t);
}

/* Check @p t for an outbox operation (a write when @p write) and put the
 * page being built, so that the table holds every record; the masks stay
 * with the transaction. */
KCHAT_MUST_CHECK
static int outbox_check(kchat_txn *t, bool write)
{
    if (!t || (write && !t->write))
        return KCHAT_EINVAL;
    return t->err ? t->err : page_put(t);
}

/* The transaction's outbox state, made on first use. */
static struct kchat__outbox_txn *outbox_of(kchat_txn *t)
{
    if (t->ob == NULL)
        t->ob = calloc(1, sizeof(*t->ob));
    return t->ob;
}

/* The mask entry of the page holding @p seq, if the transaction has one. */
static struct mask_entry *mask_find(kchat_txn *t, uint64_t seq)
{
    for (size_t i = t->ob ? t->ob->n_masks : 0; i-- > 0;)
        if (seq - t->ob->masks[i].first < t->ob->masks[i].n)
            return &t->ob->masks[i];
    return NULL;
}

void kchat__outbox_free(kchat_txn *t)
{
    if (t->ob != NULL) {
        free(t->ob->buf);
        free(t->ob->masks);
    }
    free(t->ob);
    t->ob = NULL;
}

/* Make room for @p more bytes in @p pg. */
KCHAT_MUST_CHECK
static int page_reserve(struct kchat__outbox_txn *pg, size_t more)
{
    size_t cap = pg->cap ? pg->cap : 4096;
    unsigned char *nb;

    if (pg->len + more <= pg->cap)
        return KCHAT_OK;
    while (cap < pg->len + more)
        cap *= 2;
    if ((nb = realloc(pg->buf, cap)) == NULL)
        return KCHAT_ENOMEM;
    pg->buf = nb;
    pg->cap = cap;
    return KCHAT_OK;
}

/* One page as read from the table: its records and which are gone. */
typedef struct page_view {
    uint64_t first;
    size_t n;
    uint64_t gone;                   /* the mask; 0 when it has none (a mask
                                        in the table is never 0) */
    const unsigned char *v;          /* the page's value */
    size_t vl;
} page_view;

/* Read the record count of the page value @p v. */
KCHAT_MUST_CHECK
static int page_count(const unsigned char *v, size_t vl, size_t *n)
{
    if (vl >= 1 && v[0] == OUTBOX_FORMAT) {
        *n = 1;
        return KCHAT_OK;
    }
    if (vl < PAGE_HEAD || v[0] != PAGE_FORMAT || v[1] != 0)
        return KCHAT_EDECODE;
    *n = (size_t)v[2] << 8 | v[3];
    return *n >= 2 && *n <= PAGE_MAX ? KCHAT_OK : KCHAT_EDECODE;
}

/* The record of page @p pv that begins at *p (the page's first: *p NULL):
 * its encoding in *rec, *rl; *p moves to the next. */
KCHAT_MUST_CHECK
static int page_next(const page_view *pv, const unsigned char **p, const unsigned char **rec,
                     size_t *rl)
{
    const unsigned char *end = pv->v + pv->vl;
    uint32_t len;

    if (pv->n == 1) {   /* the record itself */
        *rec = pv->v;
        *rl = pv->vl;
        *p = end;
        return KCHAT_OK;
    }
    if (*p == NULL)
        *p = pv->v + PAGE_HEAD;
    if (end - *p < 4)
        return KCHAT_EDECODE;
    len = kchat__store_rd_be32(*p);
    if ((size_t)(end - *p - 4) < len)
        return KCHAT_EDECODE;
    *rec = *p + 4;
    *rl = len;
    *p += 4 + len;
    return KCHAT_OK;
}

/* Check that page @p pv's records fill its value exactly. */
KCHAT_MUST_CHECK
static int page_check(const page_view *pv)
{
    const unsigned char *p = NULL, *rec;
    size_t rl;
    int rc;

    for (size_t j = 0; j < pv->n; j++)
        if ((rc = page_next(pv, &p, &rec, &rl)) != KCHAT_OK)
            return rc;
    return p == pv->v + pv->vl ? KCHAT_OK : KCHAT_EDECODE;
}

/* Fill @p pv with the page at @p c's position (key @p k, value @p v) and
 * its mask, read through @p c (which moves). Its pointers are LMDB's: good
 * until @p t writes. */
KCHAT_MUST_CHECK
static int page_read(kchat_txn *t, MDB_cursor *c, const MDB_val *k, const MDB_val *v,
                     page_view *pv)
{
    MDB_val mk, mv;
    unsigned char mkey[9];
    int rc;

    if (k->mv_size != 8)
        return KCHAT_EDECODE;   /* a mask without its page */
    pv->first = kchat_store_rd_be64(k->mv_data);
    pv->v = v->mv_data;
    pv->vl = v->mv_size;
    pv->gone = 0;
    if ((rc = page_count(pv->v, pv->vl, &pv->n)) != KCHAT_OK)
        return rc;
    key_of(pv->first, mkey);
    mk = (MDB_val){.mv_size = 9, .mv_data = mkey};
    rc = mdb_cursor_get(c, &mk, &mv, MDB_SET_KEY);
    if (rc == MDB_NOTFOUND)
        return KCHAT_OK;
    if (rc)
        return kchat__txn_fail(t, rc);
    if (mv.mv_size != 8 || pv->n == 1)
        return KCHAT_EDECODE;   /* a page of one is deleted whole, never marked */
    pv->gone = kchat_store_rd_be64(mv.mv_data);
    if ((pv->gone & ~all_of(pv->n)) != 0 || pv->gone == 0 || pv->gone == all_of(pv->n))
        return KCHAT_EDECODE;   /* marks a record it has not, none, or all */
    return KCHAT_OK;
}

/* Find the page holding @p seq, or with @p next the first page after it
 * when none does; KCHAT_ENOTFOUND when there is none. */
KCHAT_MUST_CHECK
static int page_find(kchat_txn *t, MDB_cursor *c, uint64_t seq, bool next, page_view *pv)
{
    unsigned char key[8];
    MDB_val k, v;
    int rc;

    kchat_store_be64(seq, key);
    k = (MDB_val){.mv_size = 8, .mv_data = key};
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    if (rc == MDB_SUCCESS && k.mv_size == 8 && kchat_store_rd_be64(k.mv_data) == seq)
        return page_read(t, c, &k, &v, pv);   /* a page begins at seq */
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
        return kchat__txn_fail(t, rc);
    /* the page before, if it reaches seq: step back over a mask */
    {
        MDB_val pk, pvv;
        int prc = mdb_cursor_get(c, &pk, &pvv, rc == MDB_NOTFOUND ? MDB_LAST : MDB_PREV);

        if (prc == MDB_SUCCESS && pk.mv_size == 9)
            prc = mdb_cursor_get(c, &pk, &pvv, MDB_PREV);
        if (prc != MDB_SUCCESS && prc != MDB_NOTFOUND)
            return kchat__txn_fail(t, prc);
        if (prc == MDB_SUCCESS) {
            if ((rc = page_read(t, c, &pk, &pvv, pv)) != KCHAT_OK)
                return rc;
            if (seq - pv->first < pv->n)
                return KCHAT_OK;
        }
    }
    if (!next)
        return KCHAT_ENOTFOUND;
    /* the first page after seq */
    k = (MDB_val){.mv_size = 8, .mv_data = key};
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND)
        return KCHAT_ENOTFOUND;
    if (rc)
        return kchat__txn_fail(t, rc);
    return page_read(t, c, &k, &v, pv);
}

/* ------------------------------------------------------------------------ */
/* Operations */

int kchat_store_outbox_append(kchat_txn *t, const kchat_outbox_rec *r, uint64_t *seq)
{
    struct kchat__outbox_txn *pg;
    size_t size;
    uint64_t n;
    int rc;

    if (!t || !t->write)
        return KCHAT_EINVAL;
    if (t->err)   /* no outbox_check(): it would put the page this one extends */
        return t->err;
    if ((rc = encoded_size(r, &size)))
        return rc;
    if ((rc = kchat__store_internal_next(t, SEQ_COUNTER, &n)))
        return rc;
    if ((pg = outbox_of(t)) == NULL)
        return KCHAT_ENOMEM;
    if (pg->n > 0 && (n != pg->first + pg->n || r->kind != pg->kind || pg->n == PAGE_MAX ||
                      pg->len - PAGE_HEAD + 4 + size > PAGE_BYTES) &&
        (rc = page_put(t)))
        return rc;
    if (pg->n == 0) {
        pg->first = n;
        pg->kind = r->kind;
        pg->len = PAGE_HEAD;
    }
    if ((rc = page_reserve(pg, 4 + size)))
        return rc;
    kchat__store_be32((uint32_t)size, pg->buf + pg->len);
    encode(r, pg->buf + pg->len + 4);
    pg->len += 4 + size;
    pg->n++;
    if (seq)
        *seq = n;
    return KCHAT_OK;
}

int kchat_store_outbox_del(kchat_txn *t, uint64_t seq)
{
    struct mask_entry *e;
    uint64_t bit;
    int rc = outbox_check(t, true);

    if (rc)
        return rc;
    if ((e = mask_find(t, seq)) == NULL) {
        struct kchat__outbox_txn *ob = outbox_of(t);
        page_view pv;
        MDB_cursor *c;

        if (ob == NULL)
            return KCHAT_ENOMEM;
        if ((rc = mdb_cursor_open(t->mdb, kchat__txn_dbi(t, KCHAT_TBL_OUTBOX), &c)))
            return kchat__txn_fail(t, rc);
        rc = page_find(t, c, seq, false, &pv);
        mdb_cursor_close(c);
        if (rc)
            return rc;
        if (ob->n_masks == ob->cap_masks) {
            size_t cap = ob->cap_masks ? 2 * ob->cap_masks : 16;
            struct mask_entry *nv = realloc(ob->masks, cap * sizeof(*nv));

            if (nv == NULL)
                return KCHAT_ENOMEM;
            ob->masks = nv;
            ob->cap_masks = cap;
        }
        e = &ob->masks[ob->n_masks++];
        *e = (struct mask_entry){.first = pv.first, .n = pv.n, .gone = pv.gone,
                                 .was = pv.gone};
    }
    bit = (uint64_t)1 << (seq - e->first);
    if (e->gone & bit)
        return KCHAT_ENOTFOUND;
    e->gone |= bit;
    return KCHAT_OK;
}

int kchat_store_outbox_scan(kchat_txn *t, uint64_t from_seq, kchat_outbox_fn fn, void *arg)
{
    unsigned char *copy = NULL;
    size_t copy_cap = 0;
    uint64_t at = from_seq;
    int rc = outbox_check(t, false);

    if (rc)
        return rc;
    if (!fn)
        return KCHAT_EINVAL;
    for (;;) {
        page_view pv;
        MDB_cursor *c;

        const struct mask_entry *e;

        if ((rc = page_put(t)))   /* what fn appended, if anything */
            break;
        if ((rc = mdb_cursor_open(t->mdb, kchat__txn_dbi(t, KCHAT_TBL_OUTBOX), &c))) {
            rc = kchat__txn_fail(t, rc);
            break;
        }
        rc = page_find(t, c, at, true, &pv);
        mdb_cursor_close(c);
        if (rc == KCHAT_ENOTFOUND) {
            rc = KCHAT_OK;
            break;
        }
        if (rc == KCHAT_OK)
            rc = page_check(&pv);
        if (rc)
            break;
        if ((e = mask_find(t, pv.first)) != NULL)
            pv.gone = e->gone;   /* as this transaction leaves it */
        /* fn may write, which moves what LMDB's pointers point to: a copy */
        if (t->write) {
            if (pv.vl > copy_cap) {
                unsigned char *nb = realloc(copy, pv.vl);
                if (nb == NULL) {
                    rc = KCHAT_ENOMEM;
                    break;
                }
                copy = nb;
                copy_cap = pv.vl;
            }
            memcpy(copy, pv.v, pv.vl);
            pv.v = copy;
        }
        const unsigned char *p = NULL;
        for (size_t i = 0; i < pv.n && rc == KCHAT_OK; i++) {
            kchat_header h[KCHAT_STORE_MAX_HEADERS];
            kchat_outbox_rec r;
            const unsigned char *rec;
            size_t rl;
            uint64_t seq = pv.first + i;

            if ((rc = page_next(&pv, &p, &rec, &rl)))   /* checked: cannot fail */
                break;
            if (seq < from_seq || (pv.gone >> i & 1))
                continue;
            if ((rc = decode(rec, rl, &r, h)))
                break;
            rc = fn(arg, seq, &r);
            if (rc > 0)
                goto out;   /* stopped */
            if (rc == KCHAT_OK && t->err)
                rc = t->err;   /* fn failed the transaction */
        }
        if (rc)
            break;
        at = pv.first + pv.n;
    }
out:
    free(copy);
    return rc > 0 ? KCHAT_OK : rc;
}

/* Add the records of a page to *arg. */
static int count_one(void *arg, uint64_t seq, const kchat_outbox_rec *r)
{
    (void)seq;
    (void)r;
    (*(size_t *)arg)++;
    return 0;
}

int kchat_store_outbox_count(kchat_txn *t, size_t *n)
{
    int rc = outbox_check(t, false);

    if (rc)
        return rc;
    if (!n)
        return KCHAT_EINVAL;
    *n = 0;
    return kchat_store_outbox_scan(t, 0, count_one, n);
}
