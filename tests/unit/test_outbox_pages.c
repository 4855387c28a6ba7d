/*
 * The outbox's pages (src/store/store_outbox.c): the records a transaction
 * appends one after another are one key of the outbox table, and so one
 * change in the changelog; a page's records gone while others are not are
 * marked in its gone mask; the last one gone deletes page and mask. Checked
 * through the public API and the raw table, which is what the changelog
 * carries to Kafka.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kchat/store.h"

typedef struct fx {
    char dir[64];
    kchat_store *s;
} fx;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    kchat_store_opts o = {.no_sync = true, .changelog = true};

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/kchat-pages.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(kchat_store_open(f->dir, &o, &f->s), KCHAT_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;

    kchat_store_close(f->s);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static kchat_txn *begin(kchat_store *s, bool write)
{
    kchat_txn *t = NULL;

    assert_int_equal(kchat_txn_begin(s, write, &t), KCHAT_OK);
    return t;
}

/* Record i, of kind @p kind: its value names it, so a scan can check it is
 * the right one. */
static uint64_t append_kind(kchat_txn *t, int i, uint8_t kind)
{
    char v[32];
    kchat_header h = {"n", v, 0};
    kchat_outbox_rec r = {.topic = "topic", .partition = i % 3, .key = "k", .key_len = 1,
                          .value = v, .headers = &h, .n_headers = 1, .kind = kind};
    uint64_t seq;

    r.value_len = h.len = (size_t)snprintf(v, sizeof(v), "record %d", i);
    assert_int_equal(kchat_store_outbox_append(t, &r, &seq), KCHAT_OK);
    return seq;
}

#define KIND 7

static uint64_t append(kchat_txn *t, int i)
{
    return append_kind(t, i, KIND);
}

/* Records 0 .. n-1 (seqs 1 .. n in a fresh store), committed as one page. */
static void append_committed(kchat_store *s, int n)
{
    kchat_txn *t = NULL;

    assert_int_equal(kchat_txn_begin(s, true, &t), KCHAT_OK);
    for (int i = 0; i < n; i++)
        append(t, i);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
}

/* What a scan saw: seqs, and whether each record was the one appended. */
typedef struct seen {
    uint64_t seq[512];
    uint8_t kind[512];
    size_t n;
    uint64_t base;   /* record i has seq base + i */
    kchat_txn *del_in;
} seen;

static int collect(void *arg, uint64_t seq, const kchat_outbox_rec *r)
{
    seen *s = arg;
    char want[32];
    int i = (int)(seq - s->base);

    snprintf(want, sizeof(want), "record %d", i);
    assert_int_equal(r->value_len, strlen(want));
    assert_memory_equal(r->value, want, r->value_len);
    assert_int_equal(r->partition, i % 3);
    assert_int_equal(r->n_headers, 1);
    assert_memory_equal(r->headers[0].value, want, r->headers[0].len);
    assert_true(s->n < sizeof(s->seq) / sizeof(s->seq[0]));
    s->kind[s->n] = r->kind;
    s->seq[s->n++] = seq;
    if (s->del_in != NULL)
        assert_int_equal(kchat_store_outbox_del(s->del_in, seq), KCHAT_OK);
    return 0;
}

static int count_raw(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    (void)k;
    (void)kl;
    (void)v;
    (void)vl;
    (*(size_t *)arg)++;
    return 0;
}

/* The keys of the raw outbox table: pages and masks. */
static size_t raw_keys(kchat_txn *t)
{
    size_t n = 0;

    assert_int_equal(kchat_txn_scan(t, KCHAT_TBL_OUTBOX, NULL, 0, false, count_raw, &n),
                     KCHAT_OK);
    return n;
}

static size_t live(kchat_txn *t)
{
    size_t n = 0;

    assert_int_equal(kchat_store_outbox_count(t, &n), KCHAT_OK);
    return n;
}

/* Changes of the outbox table a commit made. */
typedef struct changes {
    size_t outbox, puts;
} changes;

static int on_change(void *arg, const kchat_change *ch)
{
    changes *c = arg;

    if (ch->table == KCHAT_TBL_OUTBOX) {
        c->outbox++;
        c->puts += !ch->deleted;
    }
    return KCHAT_OK;
}

/* 100 records in one transaction: two pages (64 and 36), two changes. */
static void test_one_transaction_is_one_page(void **state)
{
    fx *f = *state;
    changes ch = {0};
    seen s = {.base = 1};
    kchat_txn *t = begin(f->s, true);

    kchat_txn_on_changes(t, on_change, &ch);
    for (int i = 0; i < 100; i++)
        assert_int_equal(append(t, i), (uint64_t)i + 1);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    assert_int_equal(ch.outbox, 2);
    assert_int_equal(ch.puts, 2);

    t = begin(f->s, false);
    assert_int_equal(raw_keys(t), 2);
    assert_int_equal(live(t), 100);
    assert_int_equal(kchat_store_outbox_scan(t, 0, collect, &s), KCHAT_OK);
    assert_int_equal(s.n, 100);
    for (size_t i = 0; i < s.n; i++)
        assert_int_equal(s.seq[i], i + 1);
    /* from the middle of the second page, and of the first */
    s.n = 0;
    assert_int_equal(kchat_store_outbox_scan(t, 70, collect, &s), KCHAT_OK);
    assert_int_equal(s.n, 31);
    assert_int_equal(s.seq[0], 70);
    s.n = 0;
    assert_int_equal(kchat_store_outbox_scan(t, 64, collect, &s), KCHAT_OK);
    assert_int_equal(s.n, 37);
    assert_int_equal(s.seq[0], 64);
    s.n = 0;
    assert_int_equal(kchat_store_outbox_scan(t, 101, collect, &s), KCHAT_OK);
    assert_int_equal(s.n, 0);
    kchat_txn_abort(t);
}

/* Records gone one by one: marked in the mask, skipped, and the last one
 * takes page and mask away. */
static void test_gone_records(void **state)
{
    fx *f = *state;
    changes ch = {0};
    seen s = {.base = 1};
    kchat_txn *t;

    append_committed(f->s, 10);
    t = begin(f->s, true);
    kchat_txn_on_changes(t, on_change, &ch);
    assert_int_equal(kchat_store_outbox_del(t, 3), KCHAT_OK);
    assert_int_equal(kchat_store_outbox_del(t, 3), KCHAT_ENOTFOUND);
    assert_int_equal(kchat_store_outbox_del(t, 10), KCHAT_OK);
    assert_int_equal(kchat_store_outbox_del(t, 11), KCHAT_ENOTFOUND);
    assert_int_equal(kchat_store_outbox_del(t, 0), KCHAT_ENOTFOUND);
    assert_int_equal(raw_keys(t), 2);   /* the page and its mask */
    assert_int_equal(live(t), 8);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    assert_int_equal(ch.outbox, 1);   /* the mask: the page is as it was */

    t = begin(f->s, false);
    assert_int_equal(kchat_store_outbox_scan(t, 0, collect, &s), KCHAT_OK);
    assert_int_equal(s.n, 8);
    assert_int_equal(s.seq[2], 4);
    assert_int_equal(s.seq[7], 9);
    kchat_txn_abort(t);

    /* the rest, from inside a scan: page and mask go */
    ch = (changes){0};
    s = (seen){.base = 1};
    t = begin(f->s, true);
    kchat_txn_on_changes(t, on_change, &ch);
    s.del_in = t;
    assert_int_equal(kchat_store_outbox_scan(t, 0, collect, &s), KCHAT_OK);
    assert_int_equal(s.n, 8);
    assert_int_equal(raw_keys(t), 0);
    assert_int_equal(live(t), 0);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    assert_int_equal(ch.outbox, 2);
    assert_int_equal(ch.puts, 0);
}

/* Every record of a page deleted in one transaction: one change, the
 * page's deletion, and no mask put on the way. */
static void test_whole_page_gone_at_once(void **state)
{
    fx *f = *state;
    changes ch = {0};
    kchat_txn *t;

    append_committed(f->s, 10);
    t = begin(f->s, true);
    kchat_txn_on_changes(t, on_change, &ch);
    for (uint64_t seq = 10; seq >= 1; seq--)
        assert_int_equal(kchat_store_outbox_del(t, seq), KCHAT_OK);
    assert_int_equal(kchat_store_outbox_del(t, 5), KCHAT_ENOTFOUND);
    assert_int_equal(live(t), 0);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    assert_int_equal(ch.outbox, 1);
    assert_int_equal(ch.puts, 0);

    t = begin(f->s, false);
    assert_int_equal(raw_keys(t), 0);
    kchat_txn_abort(t);
}

/* A page holds records of one kind: a change of kind begins another. */
static void test_a_page_is_of_one_kind(void **state)
{
    fx *f = *state;
    static const uint8_t kinds[] = {1, 1, 2, 2, 2, 1};
    seen s = {.base = 1};
    kchat_txn *t = begin(f->s, true);

    for (int i = 0; i < 6; i++)
        append_kind(t, i, kinds[i]);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    t = begin(f->s, false);
    assert_int_equal(raw_keys(t), 3);
    assert_int_equal(kchat_store_outbox_scan(t, 0, collect, &s), KCHAT_OK);
    assert_int_equal(s.n, 6);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(s.kind[i], kinds[i]);
    kchat_txn_abort(t);
}

/* A transaction that appends, deletes and appends again: the page ends at
 * the deletion, a new one begins after it; an aborted page leaves nothing
 * and its seqs are given out again. */
static void test_pages_split_and_abort(void **state)
{
    fx *f = *state;
    seen s = {.base = 1};
    kchat_txn *t = begin(f->s, true);

    append(t, 0);
    append(t, 1);
    append(t, 2);
    assert_int_equal(kchat_store_outbox_del(t, 1), KCHAT_OK);   /* its page is written */
    append(t, 3);
    append(t, 4);
    assert_int_equal(live(t), 4);
    assert_int_equal(raw_keys(t), 3);   /* the first page and its mask, the second */
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    t = begin(f->s, true);
    append(t, 5);
    append(t, 6);
    kchat_txn_abort(t);

    t = begin(f->s, true);
    assert_int_equal(append(t, 5), 6);   /* seq 6 again */
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    t = begin(f->s, false);
    assert_int_equal(raw_keys(t), 4);   /* pages 2..3 with mask, 4..5, 6 */
    assert_int_equal(kchat_store_outbox_scan(t, 0, collect, &s), KCHAT_OK);
    assert_int_equal(s.n, 5);
    assert_int_equal(s.seq[0], 2);
    assert_int_equal(s.seq[4], 6);
    kchat_txn_abort(t);
}

/* A page of one record is the record's own encoding, the outbox's format
 * before pages: a data directory written then reads as pages of one. */
static void test_page_of_one_is_the_old_format(void **state)
{
    fx *f = *state;
    seen s = {.base = 1};
    unsigned char key[8];
    const void *v;
    size_t vl;
    kchat_txn *t = begin(f->s, true);

    append(t, 0);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    t = begin(f->s, true);
    kchat_store_be64(1, key);
    assert_int_equal(kchat_txn_get(t, KCHAT_TBL_OUTBOX, key, 8, &v, &vl), KCHAT_OK);
    assert_int_equal(((const unsigned char *)v)[0], 1);
    assert_int_equal(kchat_store_outbox_scan(t, 0, collect, &s), KCHAT_OK);
    assert_int_equal(s.n, 1);
    assert_int_equal(kchat_store_outbox_del(t, 1), KCHAT_OK);
    assert_int_equal(raw_keys(t), 0);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
}

/* Damaged pages and masks are refused with EDECODE, not read past. */
static void test_damage_is_refused(void **state)
{
    fx *f = *state;
    seen s = {.base = 1};
    unsigned char key[9], val[16];
    kchat_txn *t = begin(f->s, true);

    append(t, 0);
    append(t, 1);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    /* a mask marking a record the page has not */
    t = begin(f->s, true);
    kchat_store_be64(1, key);
    key[8] = 'g';
    kchat_store_be64(4, val);
    assert_int_equal(kchat_txn_put(t, KCHAT_TBL_OUTBOX, key, 9, val, 8), KCHAT_OK);
    assert_int_equal(kchat_store_outbox_scan(t, 0, collect, &s), KCHAT_EDECODE);
    assert_int_equal(kchat_store_outbox_del(t, 2), KCHAT_EDECODE);
    kchat_txn_abort(t);

    /* a mask marking every record: the page would have been deleted */
    t = begin(f->s, true);
    kchat_store_be64(3, val);
    assert_int_equal(kchat_txn_put(t, KCHAT_TBL_OUTBOX, key, 9, val, 8), KCHAT_OK);
    assert_int_equal(kchat_store_outbox_scan(t, 0, collect, &s), KCHAT_EDECODE);
    kchat_txn_abort(t);

    /* a mask of the wrong size */
    t = begin(f->s, true);
    assert_int_equal(kchat_txn_put(t, KCHAT_TBL_OUTBOX, key, 9, val, 4), KCHAT_OK);
    assert_int_equal(kchat_store_outbox_scan(t, 0, collect, &s), KCHAT_EDECODE);
    kchat_txn_abort(t);

    /* a mask without its page */
    t = begin(f->s, true);
    kchat_store_be64(7, key);
    kchat_store_be64(1, val);
    assert_int_equal(kchat_txn_put(t, KCHAT_TBL_OUTBOX, key, 9, val, 8), KCHAT_OK);
    s.n = 0;
    assert_int_equal(kchat_store_outbox_scan(t, 0, collect, &s), KCHAT_EDECODE);
    assert_int_equal(s.n, 2);   /* the page before it was read */
    kchat_txn_abort(t);

    /* a page whose count or lengths do not fit its value */
    {
        static const unsigned char bad[][12] = {
            {2, 0, 0, 3, 0, 0, 0, 0},                  /* 3 records, none there */
            {2, 0, 0, 1, 0, 0, 0, 0},                  /* a page of one in format 2 */
            {2, 0, 0, 65, 0, 0, 0, 0},                 /* more than a mask holds */
            {2, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0},      /* two records of 1 and 0 bytes */
            {3, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0},      /* unknown format */
        };
        static const size_t len[] = {8, 8, 8, 12, 12};

        for (size_t i = 0; i < sizeof(len) / sizeof(len[0]); i++) {
            t = begin(f->s, true);
            kchat_store_be64(20, key);
            assert_int_equal(kchat_txn_put(t, KCHAT_TBL_OUTBOX, key, 8, bad[i], len[i]),
                             KCHAT_OK);
            s.n = 0;
            assert_int_equal(kchat_store_outbox_scan(t, 0, collect, &s), KCHAT_EDECODE);
            assert_int_equal(s.n, 2);
            kchat_txn_abort(t);
        }
    }
}

/* kchat_store_changelog_scan()'s visitor: apply to the store of @p arg. */
static int copy(void *arg, const kchat_change *ch)
{
    return kchat_store_change_apply(arg, ch);
}

/* A store restored from the changes of another has the same live records,
 * masks included: what a new owner of a shard produces again. */
static void test_changes_carry_the_masks(void **state)
{
    fx *f = *state;
    kchat_store_opts o = {.no_sync = true};
    char dir[80];
    kchat_store *b;
    seen s = {.base = 1};
    kchat_txn *t, *tb;

    append_committed(f->s, 20);
    t = begin(f->s, true);
    for (uint64_t seq = 2; seq <= 20; seq += 3)
        assert_int_equal(kchat_store_outbox_del(t, seq), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    snprintf(dir, sizeof(dir), "%s/copy", f->dir);
    assert_int_equal(kchat_store_open(dir, &o, &b), KCHAT_OK);
    t = begin(f->s, false);
    tb = begin(b, true);
    assert_int_equal(kchat_store_changelog_scan(t, 1, copy, tb), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(tb), KCHAT_OK);
    kchat_txn_abort(t);

    tb = begin(b, false);
    assert_int_equal(kchat_store_outbox_scan(tb, 0, collect, &s), KCHAT_OK);
    assert_int_equal(s.n, 13);
    assert_int_equal(s.seq[0], 1);
    assert_int_equal(s.seq[1], 3);
    kchat_txn_abort(tb);
    kchat_store_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_transaction_is_one_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gone_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_whole_page_gone_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_page_is_of_one_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pages_split_and_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_of_one_is_the_old_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damage_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changes_carry_the_masks, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
