/*
 * Unit tests of the store's changelog (include/kchat/store.h, "Changelog"):
 * one change per key a committed transaction touched, seqs, the kept
 * changes and their trimming, and the property a restore rests on:
 * replaying every change onto an empty store gives the same tables back.
 */
#include <ftw.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <setjmp.h>
#include <cmocka.h>

#include "kchat/store.h"

struct dirs {
    char base[512];
    char a[600], b[600];
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    const char *tmp = getenv("KCHAT_TEST_TMP");
    struct dirs *d = calloc(1, sizeof(*d));

    if (d == NULL)
        return -1;
    snprintf(d->base, sizeof(d->base), "%s/test_store_changelog.XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(d->base) == NULL) {
        free(d);
        return -1;
    }
    snprintf(d->a, sizeof(d->a), "%s/a", d->base);
    snprintf(d->b, sizeof(d->b), "%s/b", d->base);
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    struct dirs *d = *state;
    int rc = nftw(d->base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);

    free(d);
    return rc;
}

static kchat_store *open_store(const char *dir, bool changelog)
{
    kchat_store_opts o = {.no_sync = true, .changelog = changelog};
    kchat_store *s = NULL;

    assert_int_equal(kchat_store_open(dir, &o, &s), KCHAT_OK);
    return s;
}

static kchat_txn *begin(kchat_store *s, bool write)
{
    kchat_txn *t = NULL;

    assert_int_equal(kchat_txn_begin(s, write, &t), KCHAT_OK);
    return t;
}

/* Changes as handed out, copied. */
struct seen {
    size_t n;
    uint64_t seq[64], last[64];
    kchat_table table[64];
    char key[64][32], value[64][32];
    bool deleted[64];
};

static int collect(void *arg, const kchat_change *ch)
{
    struct seen *s = arg;

    if (s->n == 64)
        return KCHAT_ENOMEM;
    s->seq[s->n] = ch->seq;
    s->last[s->n] = ch->last;
    s->table[s->n] = ch->table;
    snprintf(s->key[s->n], 32, "%.*s", (int)ch->key_len, (const char *)ch->key);
    snprintf(s->value[s->n], 32, "%.*s", (int)ch->value_len,
             ch->value ? (const char *)ch->value : "");
    s->deleted[s->n] = ch->deleted;
    s->n++;
    return 0;
}

static void put(kchat_txn *t, kchat_table tb, const char *k, const char *v)
{
    assert_int_equal(kchat_txn_put(t, tb, k, strlen(k), v, strlen(v)), KCHAT_OK);
}

/* One change per key touched, with the value at commit; seqs go on across
 * transactions; an aborted transaction leaves none. */
static void test_changes_of_a_commit(void **state)
{
    struct dirs *d = *state;
    kchat_store *s = open_store(d->a, true);
    struct seen seen = {0}, kept = {0};
    kchat_txn *t = begin(s, true);
    uint64_t next;

    put(t, KCHAT_TBL_USERS, "alice", "1");
    put(t, KCHAT_TBL_USERS, "alice", "2");
    put(t, KCHAT_TBL_ROOMS, "r1", "room");
    put(t, KCHAT_TBL_USERS, "bob", "b");
    assert_int_equal(kchat_txn_del(t, KCHAT_TBL_USERS, "bob", 3), KCHAT_OK);
    kchat_txn_on_changes(t, collect, &seen);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    /* sorted by (table, key): users alice, users bob, rooms r1 */
    assert_int_equal(seen.n, 3);
    assert_string_equal(seen.key[0], "alice");
    assert_string_equal(seen.value[0], "2");
    assert_false(seen.deleted[0]);
    assert_string_equal(seen.key[1], "bob");
    assert_true(seen.deleted[1]);
    assert_string_equal(seen.key[2], "r1");
    assert_int_equal(seen.table[2], KCHAT_TBL_ROOMS);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(seen.seq[i], i + 1);
        assert_int_equal(seen.last[i], 3);
    }

    t = begin(s, true);   /* aborted: no changes, no seqs */
    put(t, KCHAT_TBL_USERS, "carol", "c");
    kchat_txn_abort(t);

    t = begin(s, true);
    put(t, KCHAT_TBL_USERS, "dave", "d");
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    t = begin(s, false);
    assert_int_equal(kchat_store_changelog_next(t, &next), KCHAT_OK);
    assert_int_equal(next, 5);
    assert_int_equal(kchat_store_changelog_scan(t, 1, collect, &kept), KCHAT_OK);
    kchat_txn_abort(t);
    assert_int_equal(kept.n, 4);
    assert_string_equal(kept.key[3], "dave");
    assert_int_equal(kept.seq[3], 4);
    assert_int_equal(kept.last[3], 4);
    assert_true(kept.deleted[1]);
    kchat_store_close(s);
}

/* Trimming deletes the kept changes up to a seq, and is not a change. */
static void test_trim(void **state)
{
    struct dirs *d = *state;
    kchat_store *s = open_store(d->a, true);
    struct seen kept = {0}, none = {0};
    kchat_txn *t;

    for (int i = 0; i < 3; i++) {
        char k[16];
        snprintf(k, sizeof(k), "u%d", i);
        t = begin(s, true);
        put(t, KCHAT_TBL_USERS, k, "x");
        assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    }
    t = begin(s, true);
    kchat_txn_on_changes(t, collect, &none);
    assert_int_equal(kchat_store_changelog_trim(t, 2), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    assert_int_equal(none.n, 0);

    t = begin(s, false);
    assert_int_equal(kchat_store_changelog_scan(t, 0, collect, &kept), KCHAT_OK);
    kchat_txn_abort(t);
    assert_int_equal(kept.n, 1);
    assert_int_equal(kept.seq[0], 3);
    kchat_store_close(s);
}

/* A store without a changelog records nothing. */
static void test_off(void **state)
{
    struct dirs *d = *state;
    kchat_store *s = open_store(d->a, false);
    struct seen seen = {0};
    kchat_txn *t = begin(s, true);

    put(t, KCHAT_TBL_USERS, "alice", "1");
    kchat_txn_on_changes(t, collect, &seen);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    t = begin(s, false);
    assert_int_equal(kchat_store_changelog_scan(t, 0, collect, &seen), KCHAT_OK);
    kchat_txn_abort(t);
    assert_int_equal(seen.n, 0);
    kchat_store_close(s);
}

static int copy_change(void *arg, const kchat_change *ch)
{
    return kchat_store_change_apply(arg, ch);
}

/* Every (table, key, value) of @p t but the changelog's own, as text. */
struct dump {
    char *buf;
    size_t len, cap;
    kchat_table table;
};

static int dump_one(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    struct dump *dp = arg;
    size_t need = 16 + 2 * (kl + vl) + 4;

    if (dp->len + need > dp->cap) {
        dp->cap = 2 * (dp->len + need);
        dp->buf = realloc(dp->buf, dp->cap);
        assert_non_null(dp->buf);
    }
    dp->len += (size_t)sprintf(dp->buf + dp->len, "%d:", (int)dp->table);
    for (size_t i = 0; i < kl; i++)
        dp->len += (size_t)sprintf(dp->buf + dp->len, "%02x", ((const unsigned char *)k)[i]);
    dp->buf[dp->len++] = '=';
    for (size_t i = 0; i < vl; i++)
        dp->len += (size_t)sprintf(dp->buf + dp->len, "%02x", ((const unsigned char *)v)[i]);
    dp->buf[dp->len++] = '\n';
    dp->buf[dp->len] = '\0';
    return 0;
}

static char *dump_store(kchat_store *s)
{
    struct dump dp = {0};
    kchat_txn *t = begin(s, false);

    for (int tb = 0; tb < KCHAT_TBL__COUNT; tb++) {
        if (tb == KCHAT_TBL_CHANGELOG || tb == KCHAT_TBL_META)
            continue;   /* META: also the changelog's own counter, compared below */
        dp.table = (kchat_table)tb;
        assert_int_equal(kchat_txn_scan(t, (kchat_table)tb, NULL, 0, false, dump_one, &dp),
                         KCHAT_OK);
    }
    kchat_txn_abort(t);
    return dp.buf ? dp.buf : strdup("");
}

/* Replaying every change of a store onto an empty one gives its tables
 * back: puts, overwrites, deletes, outbox records and their deletion,
 * offsets and their clearing, counters, in many transactions. */
static void test_replay_gives_the_state(void **state)
{
    struct dirs *d = *state;
    kchat_store *a = open_store(d->a, true), *b = open_store(d->b, false);
    unsigned seed = 7;
    char *da, *db;
    kchat_txn *t, *tb;

    for (int round = 0; round < 200; round++) {
        t = begin(a, true);
        for (int op = 0; op < 5; op++) {
            char k[16], v[32];
            unsigned r = (seed = seed * 1103515245u + 12345u) >> 16;
            uint64_t seq;
            snprintf(k, sizeof(k), "k%u", r % 37);
            snprintf(v, sizeof(v), "v%d.%d", round, op);
            switch (r % 7) {
            case 0: case 1:
                put(t, (kchat_table)(KCHAT_TBL_USERS + r % 6), k, v);
                break;
            case 2: {
                int rc = kchat_txn_del(t, (kchat_table)(KCHAT_TBL_USERS + r % 6), k, strlen(k));
                assert_true(rc == KCHAT_OK || rc == KCHAT_ENOTFOUND);
                break;
            }
            case 3: {
                kchat_outbox_rec rec = {.topic = "t", .partition = 1, .value = v,
                                        .value_len = strlen(v), .kind = 1};
                assert_int_equal(kchat_store_outbox_append(t, &rec, &seq), KCHAT_OK);
                if (seq > 3)
                    assert_int_equal(kchat_store_outbox_del(t, seq - 3), KCHAT_OK);
                break;
            }
            case 4:
                assert_int_equal(kchat_store_offset_set(t, "topic", (int32_t)(r % 3), round),
                                 KCHAT_OK);
                break;
            case 5:
                if (r % 5 == 0)
                    assert_int_equal(kchat_store_offsets_clear(t), KCHAT_OK);
                else
                    assert_int_equal(kchat_store_cmdseq_set(t, KCHAT_CMDSEQ_SENT, r % 4,
                                                            (uint64_t)round), KCHAT_OK);
                break;
            default:
                assert_int_equal(kchat_store_counter_next(t, "c", &seq), KCHAT_OK);
                break;
            }
        }
        assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    }

    t = begin(a, false);
    tb = begin(b, true);
    assert_int_equal(kchat_store_changelog_scan(t, 1, copy_change, tb), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(tb), KCHAT_OK);
    kchat_txn_abort(t);

    da = dump_store(a);
    db = dump_store(b);
    assert_true(strlen(da) > 100);
    assert_string_equal(da, db);
    free(da);
    free(db);

    /* META too: the counters the operations took came across */
    t = begin(a, true);
    tb = begin(b, true);
    {
        uint64_t x, y;
        assert_int_equal(kchat_store_counter_next(t, "c", &x), KCHAT_OK);
        assert_int_equal(kchat_store_counter_next(tb, "c", &y), KCHAT_OK);
        assert_int_equal(x, y);
    }
    kchat_txn_abort(t);
    kchat_txn_abort(tb);
    kchat_store_close(a);
    kchat_store_close(b);
}

/* Malformed kept changes are refused, never read past their end. */
static void test_decode_refuses(void **state)
{
    unsigned char ok[] = {KCHAT_TBL_USERS, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 2, 'a', 'b', 'v'};
    unsigned char buf[sizeof(ok)];
    kchat_change ch;

    (void)state;
    assert_int_equal(kchat_store_change_decode(ok, sizeof(ok), 5, &ch), KCHAT_OK);
    assert_int_equal(ch.key_len, 2);
    assert_int_equal(ch.value_len, 1);
    assert_int_equal(ch.last, 5);
    assert_int_equal(kchat_store_change_decode(ok, sizeof(ok), 6, &ch), KCHAT_EDECODE);
    for (size_t n = 0; n < 14; n++)   /* every truncation short of the key */
        assert_int_equal(kchat_store_change_decode(ok, n, 5, &ch), KCHAT_EDECODE);
    memcpy(buf, ok, sizeof(ok));
    buf[0] = KCHAT_TBL_CHANGELOG;
    assert_int_equal(kchat_store_change_decode(buf, sizeof(buf), 5, &ch), KCHAT_EDECODE);
    memcpy(buf, ok, sizeof(ok));
    buf[1] = 1;   /* deleted, yet a value follows */
    assert_int_equal(kchat_store_change_decode(buf, sizeof(buf), 5, &ch), KCHAT_EDECODE);
    memcpy(buf, ok, sizeof(ok));
    buf[11] = 0;  /* empty key */
    assert_int_equal(kchat_store_change_decode(buf, sizeof(buf), 5, &ch), KCHAT_EDECODE);
    buf[10] = 0xff;  /* key longer than the record */
    assert_int_equal(kchat_store_change_decode(buf, sizeof(buf), 5, &ch), KCHAT_EDECODE);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_changes_of_a_commit),
        T(test_trim),
        T(test_off),
        T(test_replay_gives_the_state),
        cmocka_unit_test(test_decode_refuses),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
