/*
 * Unit tests of the store (include/kchat/store.h): persistence, keys and
 * values, scans, group commit, outbox, offsets, meta, watermarks, a full
 * map, and threads.
 *
 * Each test gets a fresh directory made with mkdtemp() under
 * $KCHAT_TEST_TMP (or /tmp), removed afterwards.
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>

#include "kchat/store.h"

/* ------------------------------------------------------------------------ */
/* Fixture: a temporary directory */

typedef struct fx {
    char base[512];     /* the test's temporary directory */
    char dir[600];      /* base/shard: where the store lives */
} fx;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    const char *tmp = getenv("KCHAT_TEST_TMP");
    fx *f = calloc(1, sizeof *f);

    if (!f)
        return -1;
    snprintf(f->base, sizeof f->base, "%s/test_store.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->base)) {
        free(f);
        return -1;
    }
    snprintf(f->dir, sizeof f->dir, "%s/shard", f->base);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    int rc = nftw(f->base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);

    free(f);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Helpers */

static kchat_store *open_at(const char *dir, size_t map_size, bool no_sync)
{
    kchat_store_opts o = { .map_size = map_size, .no_sync = no_sync };
    kchat_store *s = NULL;

    assert_int_equal(kchat_store_open(dir, &o, &s), KCHAT_OK);
    assert_non_null(s);
    return s;
}

static kchat_store *open_fast(const fx *f)
{
    return open_at(f->dir, 0, true);
}

static kchat_txn *begin(kchat_store *s, bool write)
{
    kchat_txn *t = NULL;

    assert_int_equal(kchat_txn_begin(s, write, &t), KCHAT_OK);
    assert_non_null(t);
    return t;
}

static void put_str(kchat_txn *t, kchat_table tb, const char *k, const char *v)
{
    assert_int_equal(kchat_txn_put(t, tb, k, strlen(k), v, strlen(v)), KCHAT_OK);
}

/* Assert that k holds the string v in tb. */
static void expect_str(kchat_txn *t, kchat_table tb, const char *k, const char *v)
{
    const void *got;
    size_t gl;

    assert_int_equal(kchat_txn_get(t, tb, k, strlen(k), &got, &gl), KCHAT_OK);
    assert_int_equal(gl, strlen(v));
    assert_memory_equal(got, v, gl);
}

static void expect_absent(kchat_txn *t, kchat_table tb, const char *k)
{
    const void *got;
    size_t gl;

    assert_int_equal(kchat_txn_get(t, tb, k, strlen(k), &got, &gl), KCHAT_ENOTFOUND);
}

/* Collects the keys a scan visits. */
typedef struct collect {
    unsigned char keys[64][40];
    size_t lens[64];
    int n;
    int stop_after;   /* return 1 after this many keys (0: never) */
    int fail_after;   /* return -42 after this many keys (0: never) */
} collect;

static int collect_fn(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    collect *c = arg;

    (void)v; (void)vl;
    if (c->n >= 64 || kl > sizeof c->keys[0])
        return -1000;
    memcpy(c->keys[c->n], k, kl);
    c->lens[c->n++] = kl;
    if (c->fail_after && c->n == c->fail_after)
        return -42;
    return c->stop_after && c->n == c->stop_after;
}

/* Run a prefix scan and compare with the expected NULL-terminated keys.
 * @p reverse is an int, not a bool: va_start's parameter (the last before
 * the ...) must not be of a type that default argument promotion changes. */
static void expect_scan(kchat_txn *t, kchat_table tb, const char *prefix, int reverse, ...)
{
    collect c = { .n = 0 };
    va_list ap;
    int i = 0;

    assert_int_equal(kchat_txn_scan(t, tb, prefix, strlen(prefix), reverse, collect_fn, &c),
                     KCHAT_OK);
    va_start(ap, reverse);
    for (const char *k; (k = va_arg(ap, const char *)); i++) {
        assert_true(i < c.n);
        assert_int_equal(c.lens[i], strlen(k));
        assert_memory_equal(c.keys[i], k, c.lens[i]);
    }
    va_end(ap);
    assert_int_equal(c.n, i);
}

/* Message-like keys: room "/" be64(seq). */
static size_t msg_key(const char *room, uint64_t seq, unsigned char *out)
{
    size_t n = strlen(room);

    memcpy(out, room, n);
    out[n] = '/';
    kchat_store_be64(seq, out + n + 1);
    return n + 9;
}

typedef struct seqs {
    uint64_t v[64];
    int n;
    int stop_after;
} seqs;

static int seqs_fn(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    seqs *s = arg;

    (void)k; (void)kl;
    if (vl != 8 || s->n >= 64)
        return -1000;
    s->v[s->n++] = kchat_store_rd_be64(v);
    return s->stop_after && s->n == s->stop_after;
}

/* Scan prefix from bound and compare the seqs with want[0..nwant). */
static void expect_range(kchat_txn *t, const char *prefix, const void *bound, size_t bl,
                         bool reverse, const uint64_t *want, int nwant)
{
    seqs s = { .n = 0 };

    assert_int_equal(kchat_txn_scan_range(t, KCHAT_TBL_MESSAGES, prefix, strlen(prefix),
                                          bound, bl, reverse, seqs_fn, &s), KCHAT_OK);
    assert_int_equal(s.n, nwant);
    for (int i = 0; i < nwant; i++)
        assert_int_equal(s.v[i], want[i]);
}

static const uint64_t UP[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
static const uint64_t DOWN[] = { 10, 9, 8, 7, 6, 5, 4, 3, 2, 1 };

static int count_fn(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    (void)k; (void)kl; (void)v; (void)vl;
    ++*(size_t *)arg;
    return 0;
}

static size_t count_prefix(kchat_txn *t, kchat_table tb, const char *prefix)
{
    size_t n = 0;

    assert_int_equal(kchat_txn_scan(t, tb, prefix, strlen(prefix), false, count_fn, &n),
                     KCHAT_OK);
    return n;
}

static size_t outbox_count(kchat_txn *t)
{
    size_t n = 99999;

    assert_int_equal(kchat_store_outbox_count(t, &n), KCHAT_OK);
    return n;
}

/* ------------------------------------------------------------------------ */
/* Open, close, reopen */

static void test_open_close_reopen(void **state)
{
    fx *f = *state;
    char nested[700], file[720];
    struct stat st;
    kchat_store *s, *s2 = NULL;
    kchat_txn *t;

    /* mkdir -p, modes 0700 / 0600 */
    snprintf(nested, sizeof nested, "%s/a/b/shard-0001", f->base);
    s = open_at(nested, 0, false);
    assert_string_equal(kchat_store_path(s), nested);
    assert_int_equal(stat(nested, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0077, 0);
    snprintf(file, sizeof file, "%s/a", f->base);
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0077, 0);
    snprintf(file, sizeof file, "%s/data.mdb", nested);
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* A second open of the same directory in this process is refused. */
    assert_int_equal(kchat_store_open(nested, NULL, &s2), KCHAT_EEXIST);
    assert_null(s2);

    t = begin(s, true);
    put_str(t, KCHAT_TBL_USERS, "alice", "profile-a");
    put_str(t, KCHAT_TBL_ROOMS, "alice", "a room");
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    kchat_store_close(s);

    s = open_at(nested, 0, false);
    t = begin(s, false);
    expect_str(t, KCHAT_TBL_USERS, "alice", "profile-a");
    expect_str(t, KCHAT_TBL_ROOMS, "alice", "a room");
    expect_absent(t, KCHAT_TBL_SESSIONS, "alice");
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);   /* read commit == abort */
    kchat_store_close(s);

    /* Reopen with a smaller map than the data needs: LMDB rounds up. */
    s = open_at(nested, 64 * 1024, true);
    t = begin(s, false);
    expect_str(t, KCHAT_TBL_USERS, "alice", "profile-a");
    kchat_txn_abort(t);
    kchat_store_close(s);

    /* Bad arguments; a regular file where the directory should be. */
    assert_int_equal(kchat_store_open(NULL, NULL, &s2), KCHAT_EINVAL);
    assert_int_equal(kchat_store_open("", NULL, &s2), KCHAT_EINVAL);
    assert_int_equal(kchat_store_open(nested, NULL, NULL), KCHAT_EINVAL);
    snprintf(file, sizeof file, "%s/plainfile", f->base);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(kchat_store_open(file, NULL, &s2), KCHAT_EIO);
    assert_null(s2);

    kchat_store_close(NULL);
    kchat_txn_abort(NULL);
    assert_int_equal(kchat_txn_commit(NULL), KCHAT_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Keys and values */

static void test_put_get_del(void **state)
{
    fx *f = *state;
    kchat_store *s = open_fast(f);
    unsigned char big[KCHAT_STORE_KEY_MAX + 1];
    const void *v;
    size_t vl;
    kchat_txn *t, *r;

    t = begin(s, true);
    expect_absent(t, KCHAT_TBL_USERS, "k");
    put_str(t, KCHAT_TBL_USERS, "k", "v1");
    expect_str(t, KCHAT_TBL_USERS, "k", "v1");
    put_str(t, KCHAT_TBL_USERS, "k", "v2");                 /* overwrite */
    expect_str(t, KCHAT_TBL_USERS, "k", "v2");
    assert_int_equal(kchat_txn_put_new(t, KCHAT_TBL_USERS, "k", 1, "v3", 2), KCHAT_EEXIST);
    expect_str(t, KCHAT_TBL_USERS, "k", "v2");               /* unchanged, txn usable */
    assert_int_equal(kchat_txn_put_new(t, KCHAT_TBL_USERS, "n", 1, "new", 3), KCHAT_OK);
    expect_str(t, KCHAT_TBL_USERS, "n", "new");
    expect_absent(t, KCHAT_TBL_FRIENDS, "k");                /* tables are separate */

    /* Values may be empty, keys may not; key length limits. */
    assert_int_equal(kchat_txn_put(t, KCHAT_TBL_USERS, "e", 1, NULL, 0), KCHAT_OK);
    assert_int_equal(kchat_txn_get(t, KCHAT_TBL_USERS, "e", 1, &v, &vl), KCHAT_OK);
    assert_int_equal(vl, 0);
    assert_int_equal(kchat_txn_put(t, KCHAT_TBL_USERS, "", 0, "x", 1), KCHAT_EINVAL);
    assert_int_equal(kchat_txn_put(t, KCHAT_TBL_USERS, NULL, 3, "x", 1), KCHAT_EINVAL);
    assert_int_equal(kchat_txn_put(t, KCHAT_TBL_USERS, "x", 1, NULL, 4), KCHAT_EINVAL);
    assert_int_equal(kchat_txn_get(t, KCHAT_TBL_USERS, "", 0, &v, &vl), KCHAT_EINVAL);
    memset(big, 'k', sizeof big);
    assert_int_equal(kchat_txn_put(t, KCHAT_TBL_USERS, big, KCHAT_STORE_KEY_MAX, "m", 1),
                     KCHAT_OK);
    assert_int_equal(kchat_txn_put(t, KCHAT_TBL_USERS, big, sizeof big, "m", 1),
                     KCHAT_ETOOBIG);
    assert_int_equal(kchat_txn_get(t, KCHAT_TBL_USERS, big, sizeof big, &v, &vl),
                     KCHAT_ETOOBIG);
    assert_int_equal(kchat_txn_put(t, KCHAT_TBL__COUNT, "k", 1, "v", 1), KCHAT_EINVAL);
    assert_int_equal(kchat_txn_put(t, (kchat_table)-1, "k", 1, "v", 1), KCHAT_EINVAL);

    assert_int_equal(kchat_txn_del(t, KCHAT_TBL_USERS, "n", 1), KCHAT_OK);
    assert_int_equal(kchat_txn_del(t, KCHAT_TBL_USERS, "n", 1), KCHAT_ENOTFOUND);
    expect_absent(t, KCHAT_TBL_USERS, "n");
    /* None of these errors failed the transaction. */
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    /* Read transactions: no writes; a snapshot of their start. */
    r = begin(s, false);
    assert_int_equal(kchat_txn_put(r, KCHAT_TBL_USERS, "k", 1, "v", 1), KCHAT_EINVAL);
    assert_int_equal(kchat_txn_put_new(r, KCHAT_TBL_USERS, "z", 1, "v", 1), KCHAT_EINVAL);
    assert_int_equal(kchat_txn_del(r, KCHAT_TBL_USERS, "k", 1), KCHAT_EINVAL);
    t = begin(s, true);
    put_str(t, KCHAT_TBL_USERS, "k", "v9");
    assert_int_equal(kchat_txn_del(t, KCHAT_TBL_USERS, "e", 1), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    expect_str(r, KCHAT_TBL_USERS, "k", "v2");
    assert_int_equal(kchat_txn_get(r, KCHAT_TBL_USERS, "e", 1, &v, &vl), KCHAT_OK);
    kchat_txn_abort(r);
    r = begin(s, false);
    expect_str(r, KCHAT_TBL_USERS, "k", "v9");
    expect_absent(r, KCHAT_TBL_USERS, "e");
    kchat_txn_abort(r);
    kchat_store_close(s);
}

/* ------------------------------------------------------------------------ */
/* Scans */

static void test_scan_prefix(void **state)
{
    fx *f = *state;
    kchat_store *s = open_fast(f);
    static const char *const keys[] = {
        "b", "a/2", "a", "a/1", "a0", "ab", "b/1", "\xff", "\xff\xff", "\xff\xffz",
        "a\xff", "a\xff\x01", "a/3",
    };
    collect c = { .n = 0 };
    kchat_txn *t;

    t = begin(s, true);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        put_str(t, KCHAT_TBL_USERS, keys[i], "v");
    put_str(t, KCHAT_TBL_ROOMS, "a/9", "other table");
    /* Uncommitted keys are visible to their own transaction. */
    expect_scan(t, KCHAT_TBL_USERS, "a/", false, "a/1", "a/2", "a/3", NULL);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    t = begin(s, false);
    expect_scan(t, KCHAT_TBL_USERS, "a/", false, "a/1", "a/2", "a/3", NULL);
    expect_scan(t, KCHAT_TBL_USERS, "a/", true, "a/3", "a/2", "a/1", NULL);
    expect_scan(t, KCHAT_TBL_USERS, "a", false,
                "a", "a/1", "a/2", "a/3", "a0", "ab", "a\xff", "a\xff\x01", NULL);
    expect_scan(t, KCHAT_TBL_USERS, "a", true,
                "a\xff\x01", "a\xff", "ab", "a0", "a/3", "a/2", "a/1", "a", NULL);
    expect_scan(t, KCHAT_TBL_USERS, "a\xff", true, "a\xff\x01", "a\xff", NULL);
    expect_scan(t, KCHAT_TBL_USERS, "\xff\xff", false, "\xff\xff", "\xff\xffz", NULL);
    expect_scan(t, KCHAT_TBL_USERS, "\xff\xff", true, "\xff\xffz", "\xff\xff", NULL);
    expect_scan(t, KCHAT_TBL_USERS, "\xff", true, "\xff\xffz", "\xff\xff", "\xff", NULL);
    expect_scan(t, KCHAT_TBL_USERS, "b", true, "b/1", "b", NULL);
    expect_scan(t, KCHAT_TBL_USERS, "", false,
                "a", "a/1", "a/2", "a/3", "a0", "ab", "a\xff", "a\xff\x01", "b", "b/1",
                "\xff", "\xff\xff", "\xff\xffz", NULL);
    expect_scan(t, KCHAT_TBL_USERS, "", true,
                "\xff\xffz", "\xff\xff", "\xff", "b/1", "b", "a\xff\x01", "a\xff", "ab",
                "a0", "a/3", "a/2", "a/1", "a", NULL);
    expect_scan(t, KCHAT_TBL_USERS, "zzz", false, NULL);
    expect_scan(t, KCHAT_TBL_USERS, "zzz", true, NULL);
    expect_scan(t, KCHAT_TBL_USERS, "0", true, NULL);
    expect_scan(t, KCHAT_TBL_USERS, "a/1/x", false, NULL);
    expect_scan(t, KCHAT_TBL_SESSIONS, "", true, NULL);        /* empty table */
    expect_scan(t, KCHAT_TBL_ROOMS, "a", false, "a/9", NULL);

    /* NULL prefix with length 0 is the whole table. */
    assert_int_equal(kchat_txn_scan(t, KCHAT_TBL_ROOMS, NULL, 0, false, collect_fn, &c),
                     KCHAT_OK);
    assert_int_equal(c.n, 1);

    /* Stop with 1; an error is passed through. */
    c = (collect){ .stop_after = 2 };
    assert_int_equal(kchat_txn_scan(t, KCHAT_TBL_USERS, "a", 1, false, collect_fn, &c),
                     KCHAT_OK);
    assert_int_equal(c.n, 2);
    c = (collect){ .fail_after = 3 };
    assert_int_equal(kchat_txn_scan(t, KCHAT_TBL_USERS, "a", 1, true, collect_fn, &c), -42);
    assert_int_equal(c.n, 3);

    /* Bad arguments. */
    assert_int_equal(kchat_txn_scan(t, KCHAT_TBL_USERS, "a", 1, false, NULL, NULL),
                     KCHAT_EINVAL);
    assert_int_equal(kchat_txn_scan(t, KCHAT_TBL_USERS, NULL, 3, false, collect_fn, &c),
                     KCHAT_EINVAL);
    assert_int_equal(kchat_txn_scan(t, KCHAT_TBL__COUNT, "a", 1, false, collect_fn, &c),
                     KCHAT_EINVAL);
    {
        unsigned char big[KCHAT_STORE_KEY_MAX + 1] = { 0 };
        assert_int_equal(kchat_txn_scan(t, KCHAT_TBL_USERS, big, sizeof big, false,
                                        collect_fn, &c), KCHAT_ETOOBIG);
    }
    kchat_txn_abort(t);
    kchat_store_close(s);
}

static void test_scan_range(void **state)
{
    fx *f = *state;
    kchat_store *s = open_fast(f);
    static const char *const rooms[] = { "r1", "r0", "r2", "r1x" };
    unsigned char k[64], b[64];
    size_t kl, bl;
    kchat_txn *t;

    t = begin(s, true);
    for (int r = 0; r < 4; r++)
        for (uint64_t i = 1; i <= 10; i++) {
            unsigned char v[8];
            kchat_store_be64(i + (uint64_t)r * 100, v);
            kl = msg_key(rooms[r], i, k);
            assert_int_equal(kchat_txn_put(t, KCHAT_TBL_MESSAGES, k, kl, v, 8), KCHAT_OK);
        }
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    t = begin(s, false);
    /* No bound: the whole prefix. */
    expect_range(t, "r1/", NULL, 0, false, UP, 10);
    expect_range(t, "r1/", NULL, 99, true, DOWN, 10);          /* bl ignored */
    /* Ascending from the first key >= bound, descending from the last < bound. */
    bl = msg_key("r1", 5, b);
    expect_range(t, "r1/", b, bl, false, UP + 4, 6);
    expect_range(t, "r1/", b, bl, true, DOWN + 6, 4);
    /* key + 0 byte: strictly after key going up. */
    b[bl] = 0;
    expect_range(t, "r1/", b, bl + 1, false, UP + 5, 5);
    expect_range(t, "r1/", b, bl + 1, true, DOWN + 5, 5);
    /* At the ends. */
    bl = msg_key("r1", 1, b);
    expect_range(t, "r1/", b, bl, true, NULL, 0);
    expect_range(t, "r1/", b, bl, false, UP, 10);
    bl = msg_key("r1", 11, b);
    expect_range(t, "r1/", b, bl, false, NULL, 0);
    expect_range(t, "r1/", b, bl, true, DOWN, 10);
    /* A bound outside the prefix range never leaves it. */
    expect_range(t, "r1/", "r0", 2, false, UP, 10);
    expect_range(t, "r1/", "r0", 2, true, NULL, 0);
    expect_range(t, "r1/", "r3", 2, false, NULL, 0);
    expect_range(t, "r1/", "r3", 2, true, DOWN, 10);
    expect_range(t, "r1/", "r1/", 3, true, NULL, 0);
    expect_range(t, "r1/", "r1/", 3, false, UP, 10);
    expect_range(t, "r1/", "\xff\xff", 2, true, DOWN, 10);
    /* An empty bound is below every key. */
    expect_range(t, "r1/", "", 0, false, UP, 10);
    expect_range(t, "r1/", "", 0, true, NULL, 0);
    /* No prefix, a bound: runs across rooms. */
    {
        seqs q = { .stop_after = 12 };
        assert_int_equal(kchat_txn_scan_range(t, KCHAT_TBL_MESSAGES, NULL, 0, "r1x", 3,
                                              true, seqs_fn, &q), KCHAT_OK);
        assert_int_equal(q.n, 12);
        assert_int_equal(q.v[0], 10);    /* r1/10 */
        assert_int_equal(q.v[9], 1);     /* r1/1 */
        assert_int_equal(q.v[10], 110);  /* r0/10 */
        q = (seqs){ .stop_after = 3 };
        assert_int_equal(kchat_txn_scan_range(t, KCHAT_TBL_MESSAGES, "", 0, "r2", 2, false,
                                              seqs_fn, &q), KCHAT_OK);
        assert_int_equal(q.v[0], 201);
    }
    /* Pages of 3, newest first, each continuing below the previous page. */
    {
        uint64_t got[10];
        int n = 0;
        const void *bound = NULL;
        while (n < 12) {
            seqs q = { .stop_after = 3 };
            assert_int_equal(kchat_txn_scan_range(t, KCHAT_TBL_MESSAGES, "r1/", 3, bound, bl,
                                                  true, seqs_fn, &q), KCHAT_OK);
            if (q.n == 0)
                break;
            for (int i = 0; i < q.n; i++)
                got[n++] = q.v[i];
            bl = msg_key("r1", got[n - 1], b);
            bound = b;
        }
        assert_int_equal(n, 10);
        assert_memory_equal(got, DOWN, sizeof got);
    }
    /* The prefix "r1" covers r1/ and r1x/ */
    {
        seqs q = { .n = 0 };
        bl = msg_key("r1", 3, b);
        assert_int_equal(kchat_txn_scan_range(t, KCHAT_TBL_MESSAGES, "r1", 2, b, bl, false,
                                              seqs_fn, &q), KCHAT_OK);
        assert_int_equal(q.n, 18);
        assert_int_equal(q.v[0], 3);
        assert_int_equal(q.v[17], 310);
    }
    {
        unsigned char big[KCHAT_STORE_KEY_MAX + 1] = { 0 };
        seqs q = { .n = 0 };
        assert_int_equal(kchat_txn_scan_range(t, KCHAT_TBL_MESSAGES, "r", 1, big, sizeof big,
                                              false, seqs_fn, &q), KCHAT_ETOOBIG);
    }
    kchat_txn_abort(t);
    kchat_store_close(s);
}

/* A scan callback that writes to the table it scans. */
typedef struct mutate {
    kchat_txn *t;
    uint64_t visited[64];
    int n;
    uint64_t on, insert, del;   /* when visiting `on`: insert / delete these (0: none) */
    bool del_each;              /* delete every visited key */
} mutate;

static int mutate_fn(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    mutate *m = arg;
    uint64_t seq = kchat_store_rd_be64((const unsigned char *)k + 1);
    unsigned char key[9] = { 'm' };

    (void)v; (void)vl;
    if (kl != 9 || m->n >= 64)
        return -1000;
    m->visited[m->n++] = seq;
    if (m->del_each && kchat_txn_del(m->t, KCHAT_TBL_IDEM, k, kl) != KCHAT_OK)
        return -1001;
    if (seq == m->on && m->insert) {
        kchat_store_be64(m->insert, key + 1);
        if (kchat_txn_put(m->t, KCHAT_TBL_IDEM, key, 9, "i", 1) != KCHAT_OK)
            return -1002;
    }
    if (seq == m->on && m->del) {
        kchat_store_be64(m->del, key + 1);
        if (kchat_txn_del(m->t, KCHAT_TBL_IDEM, key, 9) != KCHAT_OK)
            return -1003;
    }
    return 0;
}

static void fill_m(kchat_txn *t, uint64_t from, uint64_t to)
{
    unsigned char key[9] = { 'm' };

    for (uint64_t i = from; i <= to; i++) {
        kchat_store_be64(i, key + 1);
        assert_int_equal(kchat_txn_put(t, KCHAT_TBL_IDEM, key, 9, "v", 1), KCHAT_OK);
    }
}

static void expect_visits(const mutate *m, int n, ...)
{
    va_list ap;

    assert_int_equal(m->n, n);
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        assert_int_equal(m->visited[i], va_arg(ap, int));
    va_end(ap);
}

/* Deletes each visited key, checking the order; counts. */
typedef struct drain {
    kchat_txn *t;
    size_t n;
    uint64_t prev;
    bool reverse, bad_order;
} drain;

static int drain_fn(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    drain *d = arg;
    uint64_t seq = kchat_store_rd_be64((const unsigned char *)k + 1);

    (void)v; (void)vl;
    if (kl != 9)
        return -1000;
    if (d->n && (d->reverse ? seq >= d->prev : seq <= d->prev))
        d->bad_order = true;
    d->prev = seq;
    d->n++;
    return kchat_txn_del(d->t, KCHAT_TBL_IDEM, k, kl) == KCHAT_OK ? 0 : -1001;
}

static void test_scan_while_writing(void **state)
{
    fx *f = *state;
    kchat_store *s = open_fast(f);
    kchat_txn *t = begin(s, true);
    drain d;
    mutate m;

    /* Delete every visited key, both directions, over many pages. */
    for (int dir = 0; dir < 2; dir++) {
        fill_m(t, 1, 3000);
        put_str(t, KCHAT_TBL_IDEM, "l", "before");
        put_str(t, KCHAT_TBL_IDEM, "n", "after");
        d = (drain){ .t = t, .reverse = dir };
        assert_int_equal(kchat_txn_scan(t, KCHAT_TBL_IDEM, "m", 1, dir, drain_fn, &d),
                         KCHAT_OK);
        assert_int_equal(d.n, 3000);
        assert_false(d.bad_order);
        assert_int_equal(d.prev, dir ? 1 : 3000);
        assert_int_equal(count_prefix(t, KCHAT_TBL_IDEM, "m"), 0);
        assert_int_equal(count_prefix(t, KCHAT_TBL_IDEM, ""), 2);
    }
    /* The same on committed pages. */
    fill_m(t, 1, 3000);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    t = begin(s, true);
    d = (drain){ .t = t, .reverse = true };
    assert_int_equal(kchat_txn_scan(t, KCHAT_TBL_IDEM, "m", 1, true, drain_fn, &d), KCHAT_OK);
    assert_int_equal(d.n, 3000);
    assert_false(d.bad_order);
    assert_int_equal(count_prefix(t, KCHAT_TBL_IDEM, "m"), 0);

    /* Exact visit orders on 1..5. */
    fill_m(t, 1, 5);
    m = (mutate){ .t = t, .on = 3, .insert = 10 };          /* insert ahead: visited */
    assert_int_equal(kchat_txn_scan(t, KCHAT_TBL_IDEM, "m", 1, false, mutate_fn, &m), KCHAT_OK);
    expect_visits(&m, 6, 1, 2, 3, 4, 5, 10);
    m = (mutate){ .t = t, .on = 3, .insert = 0x7f };         /* insert behind: not visited */
    assert_int_equal(kchat_txn_scan(t, KCHAT_TBL_IDEM, "m", 1, true, mutate_fn, &m), KCHAT_OK);
    expect_visits(&m, 6, 10, 5, 4, 3, 2, 1);
    m = (mutate){ .t = t, .on = 2, .del = 3 };               /* delete ahead: skipped */
    assert_int_equal(kchat_txn_scan(t, KCHAT_TBL_IDEM, "m", 1, false, mutate_fn, &m), KCHAT_OK);
    expect_visits(&m, 6, 1, 2, 4, 5, 10, 0x7f);
    m = (mutate){ .t = t, .on = 5, .del = 4, .insert = 6 };  /* descending */
    assert_int_equal(kchat_txn_scan(t, KCHAT_TBL_IDEM, "m", 1, true, mutate_fn, &m), KCHAT_OK);
    expect_visits(&m, 5, 0x7f, 10, 5, 2, 1);
    m = (mutate){ .t = t, .del_each = true };                /* delete all, descending */
    assert_int_equal(kchat_txn_scan(t, KCHAT_TBL_IDEM, "m", 1, true, mutate_fn, &m), KCHAT_OK);
    expect_visits(&m, 6, 0x7f, 10, 6, 5, 2, 1);
    assert_int_equal(count_prefix(t, KCHAT_TBL_IDEM, "m"), 0);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    kchat_store_close(s);
}

/* ------------------------------------------------------------------------ */
/* Group commit */

static void test_group_commit(void **state)
{
    fx *f = *state;
    kchat_store *s = open_at(f->dir, 0, false);   /* real fsync */
    kchat_outbox_rec rec = { .topic = "kchat-responses", .partition = -1,
                             .key = "u", .key_len = 1, .value = "r", .value_len = 1 };
    char k[32], v[32];
    uint64_t seq;
    int64_t off;
    kchat_txn *t;

    t = begin(s, true);
    for (int i = 0; i < 1000; i++) {
        snprintf(k, sizeof k, "user-%04d", i);
        snprintf(v, sizeof v, "value-%d", i * 7);
        put_str(t, KCHAT_TBL_USERS, k, v);
    }
    for (int p = 0; p < 4; p++)
        assert_int_equal(kchat_store_offset_set(t, "kchat-requests", p, 100 + p), KCHAT_OK);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(kchat_store_outbox_append(t, &rec, &seq), KCHAT_OK);
        assert_int_equal(seq, (uint64_t)i + 1);
    }
    assert_int_equal(kchat_store_applied_set(t, 3, 42), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    kchat_store_close(s);

    s = open_at(f->dir, 0, false);
    t = begin(s, false);
    for (int i = 0; i < 1000; i++) {
        snprintf(k, sizeof k, "user-%04d", i);
        snprintf(v, sizeof v, "value-%d", i * 7);
        expect_str(t, KCHAT_TBL_USERS, k, v);
    }
    assert_int_equal(count_prefix(t, KCHAT_TBL_USERS, "user-"), 1000);
    for (int p = 0; p < 4; p++) {
        assert_int_equal(kchat_store_offset_get(t, "kchat-requests", p, &off), KCHAT_OK);
        assert_int_equal(off, 100 + p);
    }
    assert_int_equal(outbox_count(t), 10);
    assert_int_equal(kchat_store_applied_get(t, 3, &seq), KCHAT_OK);
    assert_int_equal(seq, 42);
    kchat_txn_abort(t);

    /* An aborted batch leaves nothing behind. */
    t = begin(s, true);
    for (int i = 0; i < 1000; i++) {
        snprintf(k, sizeof k, "tmp-%04d", i);
        put_str(t, KCHAT_TBL_USERS, k, "x");
    }
    assert_int_equal(kchat_txn_del(t, KCHAT_TBL_USERS, "user-0000", 9), KCHAT_OK);
    assert_int_equal(kchat_store_offset_set(t, "kchat-requests", 0, 999), KCHAT_OK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(kchat_store_outbox_append(t, &rec, &seq), KCHAT_OK);
    assert_int_equal(seq, 15);
    assert_int_equal(kchat_store_meta_set(t, "cluster_id", "aborted"), KCHAT_OK);
    assert_int_equal(kchat_store_applied_set(t, 3, 50), KCHAT_OK);
    kchat_txn_abort(t);

    for (int round = 0; round < 2; round++) {
        char buf[32];
        t = begin(s, false);
        assert_int_equal(count_prefix(t, KCHAT_TBL_USERS, "tmp-"), 0);
        assert_int_equal(count_prefix(t, KCHAT_TBL_USERS, "user-"), 1000);
        assert_int_equal(kchat_store_offset_get(t, "kchat-requests", 0, &off), KCHAT_OK);
        assert_int_equal(off, 100);
        assert_int_equal(outbox_count(t), 10);
        assert_int_equal(kchat_store_meta_get(t, "cluster_id", buf, sizeof buf),
                         KCHAT_ENOTFOUND);
        assert_int_equal(kchat_store_applied_get(t, 3, &seq), KCHAT_OK);
        assert_int_equal(seq, 42);
        kchat_txn_abort(t);
        kchat_store_close(s);
        s = open_at(f->dir, 0, false);
    }
    /* The aborted seqs were never committed: they are given out again. */
    t = begin(s, true);
    assert_int_equal(kchat_store_outbox_append(t, &rec, &seq), KCHAT_OK);
    assert_int_equal(seq, 11);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    kchat_store_close(s);
}

/* ------------------------------------------------------------------------ */
/* Outbox */

typedef struct ob_copy {
    uint64_t seq;
    char topic[64];
    int32_t partition;
    bool key_null, value_null;
    unsigned char key[64], value[64];
    size_t key_len, value_len;
    size_t n_headers;
    struct {
        char name[32];
        bool null;
        unsigned char value[32];
        size_t len;
    } h[KCHAT_STORE_MAX_HEADERS];
    uint8_t kind;
} ob_copy;

typedef struct ob_list {
    ob_copy r[16];
    int n;
    int stop_after;
    kchat_txn *del_in;   /* delete each visited record through this txn */
} ob_list;

static int ob_collect(void *arg, uint64_t seq, const kchat_outbox_rec *r)
{
    ob_list *l = arg;
    ob_copy *c;

    if (l->n >= 16 || strlen(r->topic) >= sizeof c->topic || r->key_len > 64 ||
        r->value_len > 64 || r->n_headers > KCHAT_STORE_MAX_HEADERS)
        return -1000;
    c = &l->r[l->n++];
    memset(c, 0, sizeof *c);
    c->seq = seq;
    strcpy(c->topic, r->topic);
    c->partition = r->partition;
    c->key_null = !r->key;
    c->value_null = !r->value;
    if (r->key_len)
        memcpy(c->key, r->key, r->key_len);
    if (r->value_len)
        memcpy(c->value, r->value, r->value_len);
    c->key_len = r->key_len;
    c->value_len = r->value_len;
    c->n_headers = r->n_headers;
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strlen(r->headers[i].name) >= sizeof c->h[i].name || r->headers[i].len > 32)
            return -1001;
        strcpy(c->h[i].name, r->headers[i].name);
        c->h[i].null = !r->headers[i].value;
        if (r->headers[i].len)
            memcpy(c->h[i].value, r->headers[i].value, r->headers[i].len);
        c->h[i].len = r->headers[i].len;
    }
    c->kind = r->kind;
    if (l->del_in && kchat_store_outbox_del(l->del_in, seq) != KCHAT_OK)
        return -1002;
    return l->stop_after && l->n == l->stop_after;
}

static void expect_rec(const ob_copy *c, uint64_t seq, const kchat_outbox_rec *r)
{
    assert_int_equal(c->seq, seq);
    assert_string_equal(c->topic, r->topic);
    assert_int_equal(c->partition, r->partition);
    assert_int_equal(c->key_null, r->key == NULL);
    assert_int_equal(c->value_null, r->value == NULL);
    assert_int_equal(c->key_len, r->key_len);
    assert_int_equal(c->value_len, r->value_len);
    if (r->key_len)
        assert_memory_equal(c->key, r->key, r->key_len);
    if (r->value_len)
        assert_memory_equal(c->value, r->value, r->value_len);
    assert_int_equal(c->n_headers, r->n_headers);
    for (size_t i = 0; i < r->n_headers; i++) {
        assert_string_equal(c->h[i].name, r->headers[i].name);
        assert_int_equal(c->h[i].null, r->headers[i].value == NULL);
        assert_int_equal(c->h[i].len, r->headers[i].len);
        if (r->headers[i].len)
            assert_memory_equal(c->h[i].value, r->headers[i].value, r->headers[i].len);
    }
    assert_int_equal(c->kind, r->kind);
}

static const kchat_header HDRS[] = {
    { "kchat-cid", "abc-123", 7 },
    { "kchat-null", NULL, 0 },
    { "kchat-empty", "", 0 },
    { "h4", "\0\1\2", 3 }, { "h5", "5", 1 }, { "h6", "6", 1 }, { "h7", "7", 1 },
    { "h8", "8", 1 }, { "h9", "9", 1 },
};

static const kchat_outbox_rec RECS[] = {
    { .topic = "kchat-responses", .partition = 3, .key = "user-1", .key_len = 6,
      .value = "va\0lue", .value_len = 6, .headers = HDRS, .n_headers = 3, .kind = 7 },
    { .topic = "kchat-directory", .partition = -1, .key = NULL, .key_len = 0,
      .value = NULL, .value_len = 0, .kind = 0 },
    { .topic = "t", .partition = 0, .key = "", .key_len = 0, .value = "", .value_len = 0,
      .headers = HDRS, .n_headers = KCHAT_STORE_MAX_HEADERS, .kind = 255 },
};

static void test_outbox(void **state)
{
    fx *f = *state;
    kchat_store *s = open_fast(f);
    ob_list l = { .n = 0 };
    kchat_outbox_rec bad;
    uint64_t seq;
    kchat_txn *t;

    t = begin(s, true);
    assert_int_equal(outbox_count(t), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(kchat_store_outbox_append(t, &RECS[i], &seq), KCHAT_OK);
        assert_int_equal(seq, (uint64_t)i + 1);
    }
    assert_int_equal(kchat_store_outbox_append(t, &RECS[0], NULL), KCHAT_OK);   /* seq 4 */

    /* Malformed records are refused and change nothing. */
    bad = RECS[0]; bad.n_headers = KCHAT_STORE_MAX_HEADERS + 1;
    assert_int_equal(kchat_store_outbox_append(t, &bad, &seq), KCHAT_EINVAL);
    bad = RECS[0]; bad.topic = NULL;
    assert_int_equal(kchat_store_outbox_append(t, &bad, &seq), KCHAT_EINVAL);
    bad = RECS[0]; bad.topic = "";
    assert_int_equal(kchat_store_outbox_append(t, &bad, &seq), KCHAT_EINVAL);
    bad = RECS[0]; bad.partition = -2;
    assert_int_equal(kchat_store_outbox_append(t, &bad, &seq), KCHAT_EINVAL);
    bad = RECS[0]; bad.key = NULL;
    assert_int_equal(kchat_store_outbox_append(t, &bad, &seq), KCHAT_EINVAL);
    bad = RECS[0]; bad.headers = NULL;
    assert_int_equal(kchat_store_outbox_append(t, &bad, &seq), KCHAT_EINVAL);
    {
        kchat_header h = { NULL, "x", 1 };
        bad = RECS[0]; bad.headers = &h; bad.n_headers = 1;
        assert_int_equal(kchat_store_outbox_append(t, &bad, &seq), KCHAT_EINVAL);
    }
    assert_int_equal(kchat_store_outbox_append(t, NULL, &seq), KCHAT_EINVAL);
    assert_int_equal(outbox_count(t), 4);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    /* Read back exactly, in seq order. */
    t = begin(s, false);
    assert_int_equal(kchat_store_outbox_append(t, &RECS[0], &seq), KCHAT_EINVAL);
    assert_int_equal(kchat_store_outbox_scan(t, 0, ob_collect, &l), KCHAT_OK);
    assert_int_equal(l.n, 4);
    for (int i = 0; i < 3; i++)
        expect_rec(&l.r[i], (uint64_t)i + 1, &RECS[i]);
    expect_rec(&l.r[3], 4, &RECS[0]);
    /* From a seq; stop; errors. */
    l = (ob_list){ .n = 0 };
    assert_int_equal(kchat_store_outbox_scan(t, 3, ob_collect, &l), KCHAT_OK);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.r[0].seq, 3);
    l = (ob_list){ .stop_after = 1 };
    assert_int_equal(kchat_store_outbox_scan(t, 2, ob_collect, &l), KCHAT_OK);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.r[0].seq, 2);
    l = (ob_list){ .n = 0 };
    assert_int_equal(kchat_store_outbox_scan(t, 5, ob_collect, &l), KCHAT_OK);
    assert_int_equal(l.n, 0);
    assert_int_equal(kchat_store_outbox_scan(t, 0, NULL, NULL), KCHAT_EINVAL);
    kchat_txn_abort(t);

    /* Delete; the hole is skipped; a missing seq is ENOTFOUND. */
    t = begin(s, true);
    assert_int_equal(kchat_store_outbox_del(t, 2), KCHAT_OK);
    assert_int_equal(kchat_store_outbox_del(t, 2), KCHAT_ENOTFOUND);
    assert_int_equal(kchat_store_outbox_del(t, 99), KCHAT_ENOTFOUND);
    assert_int_equal(outbox_count(t), 3);
    l = (ob_list){ .n = 0 };
    assert_int_equal(kchat_store_outbox_scan(t, 0, ob_collect, &l), KCHAT_OK);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.r[0].seq, 1);
    assert_int_equal(l.r[1].seq, 3);
    assert_int_equal(l.r[2].seq, 4);
    /* Deleting from inside the scan, as a producer draining the outbox. */
    l = (ob_list){ .del_in = t };
    assert_int_equal(kchat_store_outbox_scan(t, 0, ob_collect, &l), KCHAT_OK);
    assert_int_equal(l.n, 3);
    assert_int_equal(outbox_count(t), 0);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    /* An empty outbox does not reset the numbering. */
    t = begin(s, true);
    assert_int_equal(kchat_store_outbox_append(t, &RECS[1], &seq), KCHAT_OK);
    assert_int_equal(seq, 5);
    /* A user counter of the same name is a separate thing. */
    assert_int_equal(kchat_store_counter_next(t, "outbox_seq", &seq), KCHAT_OK);
    assert_int_equal(seq, 1);
    assert_int_equal(kchat_store_outbox_append(t, &RECS[1], &seq), KCHAT_OK);
    assert_int_equal(seq, 6);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    /* A damaged record makes the scan fail with EDECODE. */
    t = begin(s, true);
    {
        unsigned char key[8];
        kchat_store_be64(7, key);
        assert_int_equal(kchat_txn_put(t, KCHAT_TBL_OUTBOX, key, 8, "\x01\x00\x09", 3),
                         KCHAT_OK);
    }
    l = (ob_list){ .n = 0 };
    assert_int_equal(kchat_store_outbox_scan(t, 0, ob_collect, &l), KCHAT_EDECODE);
    assert_int_equal(l.n, 2);
    kchat_txn_abort(t);
    kchat_store_close(s);
}

/* The child "crashes" (exits without closing) after committing with
 * options @p o: with `meta_no_sync` its commit's meta page was written but
 * not flushed, with `unsynced` nothing was. */
static int crash_child(const char *dir, const kchat_store_opts *o)
{
    kchat_store *s;
    kchat_txn *t;
    uint64_t seq;

    if (kchat_store_open(dir, o, &s) || kchat_txn_begin(s, true, &t))
        return 1;
    for (int i = 0; i < 3; i++)
        if (kchat_store_outbox_append(t, &RECS[i], &seq) || seq != (uint64_t)i + 1)
            return 2;
    if (kchat_store_offset_set(t, "in", 0, 3) || kchat_txn_commit(t))
        return 3;
    /* A read transaction left open: a stale reader slot for the next open. */
    if (kchat_txn_begin(s, false, &t))
        return 4;
    return 0;
}

/* A process that dies after its commit (kill -9, not a machine crash)
 * loses none of it, with both fsyncs, one (`meta_no_sync`) or none
 * (`unsynced`, whose mark then names this boot and is no obstacle): the
 * kernel has the writes. */
static void replay_after_crash(fx *f, const kchat_store_opts *o)
{
    ob_list l = { .n = 0 };
    kchat_store *s;
    kchat_txn *t;
    uint64_t seq;
    int status;
    pid_t pid;

    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(crash_child(f->dir, o));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* Everything committed is there to be produced again. */
    s = open_fast(f);
    t = begin(s, false);
    assert_int_equal(kchat_store_outbox_scan(t, 0, ob_collect, &l), KCHAT_OK);
    assert_int_equal(l.n, 3);
    for (int i = 0; i < 3; i++)
        expect_rec(&l.r[i], (uint64_t)i + 1, &RECS[i]);
    kchat_txn_abort(t);

    /* Deliver two of them; crash again (close without more deletes). */
    t = begin(s, true);
    assert_int_equal(kchat_store_outbox_del(t, 1), KCHAT_OK);
    assert_int_equal(kchat_store_outbox_del(t, 2), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    kchat_store_close(s);

    s = open_fast(f);
    t = begin(s, true);
    l = (ob_list){ .n = 0 };
    assert_int_equal(kchat_store_outbox_scan(t, 0, ob_collect, &l), KCHAT_OK);
    assert_int_equal(l.n, 1);
    expect_rec(&l.r[0], 3, &RECS[2]);
    assert_int_equal(kchat_store_outbox_del(t, 3), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    kchat_store_close(s);

    /* Empty outbox, new process: numbering goes on. */
    s = open_fast(f);
    t = begin(s, true);
    assert_int_equal(outbox_count(t), 0);
    assert_int_equal(kchat_store_outbox_append(t, &RECS[0], &seq), KCHAT_OK);
    assert_int_equal(seq, 4);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    kchat_store_close(s);
}

static void test_outbox_replay_after_crash(void **state)
{
    replay_after_crash(*state, &(kchat_store_opts){0});
}

static void test_outbox_replay_after_crash_meta_no_sync(void **state)
{
    replay_after_crash(*state, &(kchat_store_opts){.meta_no_sync = true});
}

static void test_outbox_replay_after_crash_unsynced(void **state)
{
    replay_after_crash(*state, &(kchat_store_opts){.unsynced = true});
}

/* ------------------------------------------------------------------------ */
/* Offsets, meta, counters, watermarks */

static void test_offsets(void **state)
{
    fx *f = *state;
    kchat_store *s = open_fast(f);
    char topic[KCHAT_STORE_KEY_MAX];
    int64_t off = 12345;
    kchat_txn *t;

    t = begin(s, true);
    assert_int_equal(kchat_store_offset_get(t, "t", 0, &off), KCHAT_ENOTFOUND);
    assert_int_equal(off, 12345);
    assert_int_equal(kchat_store_offset_set(t, "t", 0, 5), KCHAT_OK);
    assert_int_equal(kchat_store_offset_set(t, "t", 1, 7), KCHAT_OK);
    assert_int_equal(kchat_store_offset_set(t, "t1", 0, 9), KCHAT_OK);
    assert_int_equal(kchat_store_offset_set(t, "kchat-requests-users", INT32_MAX, INT64_MAX),
                     KCHAT_OK);
    assert_int_equal(kchat_store_offset_set(t, "neg", 0, -2), KCHAT_OK);
    assert_int_equal(kchat_store_meta_set(t, "cluster_id", "c1"), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    t = begin(s, true);
    assert_int_equal(kchat_store_offset_get(t, "t", 0, &off), KCHAT_OK);
    assert_int_equal(off, 5);
    assert_int_equal(kchat_store_offset_get(t, "t", 1, &off), KCHAT_OK);
    assert_int_equal(off, 7);
    assert_int_equal(kchat_store_offset_get(t, "t1", 0, &off), KCHAT_OK);
    assert_int_equal(off, 9);
    assert_int_equal(kchat_store_offset_get(t, "t", 2, &off), KCHAT_ENOTFOUND);
    assert_int_equal(kchat_store_offset_get(t, "kchat-requests-users", INT32_MAX, &off),
                     KCHAT_OK);
    assert_true(off == INT64_MAX);
    assert_int_equal(kchat_store_offset_get(t, "neg", 0, &off), KCHAT_OK);
    assert_true(off == -2);
    assert_int_equal(kchat_store_offset_set(t, "t", 0, 3), KCHAT_OK);   /* may go back */
    assert_int_equal(kchat_store_offset_get(t, "t", 0, &off), KCHAT_OK);
    assert_int_equal(off, 3);

    assert_int_equal(kchat_store_offset_set(t, "t", -1, 1), KCHAT_EINVAL);
    assert_int_equal(kchat_store_offset_set(t, "", 0, 1), KCHAT_EINVAL);
    assert_int_equal(kchat_store_offset_set(t, NULL, 0, 1), KCHAT_EINVAL);
    assert_int_equal(kchat_store_offset_get(t, "t", 0, NULL), KCHAT_EINVAL);
    memset(topic, 'x', sizeof topic);
    topic[KCHAT_STORE_KEY_MAX - 5] = '\0';
    assert_int_equal(kchat_store_offset_set(t, topic, 0, 1), KCHAT_OK);
    topic[KCHAT_STORE_KEY_MAX - 5] = 'x';
    topic[KCHAT_STORE_KEY_MAX - 4] = '\0';
    assert_int_equal(kchat_store_offset_set(t, topic, 0, 1), KCHAT_ETOOBIG);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    t = begin(s, false);
    assert_int_equal(kchat_store_offset_set(t, "t", 0, 1), KCHAT_EINVAL);
    assert_int_equal(kchat_store_offsets_clear(t), KCHAT_EINVAL);
    kchat_txn_abort(t);

    t = begin(s, true);
    assert_int_equal(kchat_store_offsets_clear(t), KCHAT_OK);
    assert_int_equal(kchat_store_offset_get(t, "t", 0, &off), KCHAT_ENOTFOUND);
    assert_int_equal(kchat_store_offsets_clear(t), KCHAT_OK);            /* already empty */
    assert_int_equal(kchat_store_offset_set(t, "t", 0, 11), KCHAT_OK);   /* usable after */
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    kchat_store_close(s);

    s = open_fast(f);
    t = begin(s, false);
    assert_int_equal(kchat_store_offset_get(t, "t", 0, &off), KCHAT_OK);
    assert_int_equal(off, 11);
    assert_int_equal(kchat_store_offset_get(t, "t", 1, &off), KCHAT_ENOTFOUND);
    assert_int_equal(kchat_store_offset_get(t, "t1", 0, &off), KCHAT_ENOTFOUND);
    assert_int_equal(kchat_store_offset_get(t, "neg", 0, &off), KCHAT_ENOTFOUND);
    {
        char buf[8];   /* clearing offsets kept the meta */
        assert_int_equal(kchat_store_meta_get(t, "cluster_id", buf, sizeof buf), KCHAT_OK);
        assert_string_equal(buf, "c1");
    }
    kchat_txn_abort(t);
    kchat_store_close(s);
}

static void test_meta_and_counters(void **state)
{
    fx *f = *state;
    kchat_store *s = open_fast(f);
    char buf[16];
    uint64_t n = 0;
    kchat_txn *t;

    t = begin(s, true);
    assert_int_equal(kchat_store_meta_get(t, "cluster_id", buf, sizeof buf), KCHAT_ENOTFOUND);
    assert_int_equal(kchat_store_meta_set(t, "cluster_id", "abc"), KCHAT_OK);
    assert_int_equal(kchat_store_meta_get(t, "cluster_id", buf, 4), KCHAT_OK);
    assert_string_equal(buf, "abc");
    memcpy(buf, "untouched", 10);
    assert_int_equal(kchat_store_meta_get(t, "cluster_id", buf, 3), KCHAT_ETOOBIG);
    assert_string_equal(buf, "untouched");
    assert_int_equal(kchat_store_meta_set(t, "empty", ""), KCHAT_OK);
    assert_int_equal(kchat_store_meta_get(t, "empty", buf, 1), KCHAT_OK);
    assert_string_equal(buf, "");
    assert_int_equal(kchat_store_meta_set(t, "", "x"), KCHAT_EINVAL);
    assert_int_equal(kchat_store_meta_set(t, NULL, "x"), KCHAT_EINVAL);
    assert_int_equal(kchat_store_meta_set(t, "x", NULL), KCHAT_EINVAL);
    assert_int_equal(kchat_store_meta_get(t, "cluster_id", NULL, 4), KCHAT_EINVAL);

    for (uint64_t i = 1; i <= 3; i++) {
        assert_int_equal(kchat_store_counter_next(t, "room_id", &n), KCHAT_OK);
        assert_int_equal(n, i);
    }
    /* A counter and a string with one name are separate. */
    assert_int_equal(kchat_store_counter_next(t, "cluster_id", &n), KCHAT_OK);
    assert_int_equal(n, 1);
    assert_int_equal(kchat_store_meta_get(t, "cluster_id", buf, sizeof buf), KCHAT_OK);
    assert_string_equal(buf, "abc");
    assert_int_equal(kchat_store_counter_next(t, "", &n), KCHAT_EINVAL);
    assert_int_equal(kchat_store_counter_next(t, "x", NULL), KCHAT_EINVAL);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    /* An aborted advance is undone. */
    t = begin(s, true);
    assert_int_equal(kchat_store_counter_next(t, "room_id", &n), KCHAT_OK);
    assert_int_equal(n, 4);
    kchat_txn_abort(t);
    t = begin(s, false);
    assert_int_equal(kchat_store_counter_next(t, "room_id", &n), KCHAT_EINVAL);
    assert_int_equal(kchat_store_meta_set(t, "a", "b"), KCHAT_EINVAL);
    kchat_txn_abort(t);
    kchat_store_close(s);

    s = open_fast(f);
    t = begin(s, true);
    assert_int_equal(kchat_store_counter_next(t, "room_id", &n), KCHAT_OK);
    assert_int_equal(n, 4);
    assert_int_equal(kchat_store_meta_get(t, "cluster_id", buf, sizeof buf), KCHAT_OK);
    assert_string_equal(buf, "abc");
    assert_int_equal(kchat_store_meta_set(t, "cluster_id", "new"), KCHAT_OK);
    assert_int_equal(kchat_store_meta_get(t, "cluster_id", buf, sizeof buf), KCHAT_OK);
    assert_string_equal(buf, "new");
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    kchat_store_close(s);
}

static void test_applied(void **state)
{
    fx *f = *state;
    kchat_store *s = open_fast(f);
    uint64_t seq = 99;
    kchat_txn *t;

    t = begin(s, true);
    assert_int_equal(kchat_store_applied_get(t, 1, &seq), KCHAT_OK);
    assert_int_equal(seq, 0);
    assert_int_equal(kchat_store_applied_set(t, 1, 10), KCHAT_OK);
    assert_int_equal(kchat_store_applied_set(t, 2, 5), KCHAT_OK);
    assert_int_equal(kchat_store_applied_set(t, UINT32_MAX, UINT64_MAX), KCHAT_OK);
    assert_int_equal(kchat_store_applied_set(t, 1, 12), KCHAT_OK);
    assert_int_equal(kchat_store_applied_get(t, 1, NULL), KCHAT_EINVAL);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    kchat_store_close(s);

    s = open_fast(f);
    t = begin(s, false);
    assert_int_equal(kchat_store_applied_get(t, 1, &seq), KCHAT_OK);
    assert_int_equal(seq, 12);
    assert_int_equal(kchat_store_applied_get(t, 2, &seq), KCHAT_OK);
    assert_int_equal(seq, 5);
    assert_int_equal(kchat_store_applied_get(t, UINT32_MAX, &seq), KCHAT_OK);
    assert_true(seq == UINT64_MAX);
    assert_int_equal(kchat_store_applied_get(t, 3, &seq), KCHAT_OK);
    assert_int_equal(seq, 0);
    assert_int_equal(kchat_store_applied_set(t, 3, 1), KCHAT_EINVAL);
    kchat_txn_abort(t);
    kchat_store_close(s);
}

/* The per-(source, target) command counters: both ends, kept apart from
 * each other and from the outbox-seq watermarks in the same table. */
static void test_cmdseq(void **state)
{
    fx *f = *state;
    kchat_store *s = open_fast(f);
    uint64_t seq = 99;
    kchat_txn *t;

    t = begin(s, true);
    assert_int_equal(kchat_store_cmdseq_get(t, KCHAT_CMDSEQ_SENT, 1, &seq), KCHAT_OK);
    assert_int_equal(seq, 0);
    assert_int_equal(kchat_store_cmdseq_set(t, KCHAT_CMDSEQ_SENT, 1, 7), KCHAT_OK);
    assert_int_equal(kchat_store_cmdseq_set(t, KCHAT_CMDSEQ_APPLIED, 1, 3), KCHAT_OK);
    assert_int_equal(kchat_store_cmdseq_set(t, KCHAT_CMDSEQ_ACKED, 1, 5), KCHAT_OK);
    assert_int_equal(kchat_store_cmdseq_set(t, KCHAT_CMDSEQ_APPLIED, UINT32_MAX, UINT64_MAX),
                     KCHAT_OK);
    assert_int_equal(kchat_store_applied_set(t, 1, 500), KCHAT_OK);
    assert_int_equal(kchat_store_cmdseq_set(t, (kchat_cmdseq_end)'x', 1, 1), KCHAT_EINVAL);
    assert_int_equal(kchat_store_cmdseq_get(t, (kchat_cmdseq_end)0, 1, &seq), KCHAT_EINVAL);
    assert_int_equal(kchat_store_cmdseq_get(t, KCHAT_CMDSEQ_SENT, 1, NULL), KCHAT_EINVAL);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    kchat_store_close(s);

    s = open_fast(f);
    t = begin(s, false);
    assert_int_equal(kchat_store_cmdseq_get(t, KCHAT_CMDSEQ_SENT, 1, &seq), KCHAT_OK);
    assert_int_equal(seq, 7);
    assert_int_equal(kchat_store_cmdseq_get(t, KCHAT_CMDSEQ_APPLIED, 1, &seq), KCHAT_OK);
    assert_int_equal(seq, 3);
    assert_int_equal(kchat_store_cmdseq_get(t, KCHAT_CMDSEQ_ACKED, 1, &seq), KCHAT_OK);
    assert_int_equal(seq, 5);
    assert_int_equal(kchat_store_cmdseq_get(t, KCHAT_CMDSEQ_APPLIED, UINT32_MAX, &seq),
                     KCHAT_OK);
    assert_true(seq == UINT64_MAX);
    assert_int_equal(kchat_store_cmdseq_get(t, KCHAT_CMDSEQ_SENT, 2, &seq), KCHAT_OK);
    assert_int_equal(seq, 0);
    assert_int_equal(kchat_store_applied_get(t, 1, &seq), KCHAT_OK);
    assert_int_equal(seq, 500);
    assert_int_equal(kchat_store_cmdseq_set(t, KCHAT_CMDSEQ_SENT, 1, 8), KCHAT_EINVAL);
    kchat_txn_abort(t);
    kchat_store_close(s);
}

static void test_be64(void **state)
{
    static const uint64_t vals[] = { 0, 1, 255, 256, 65535, 1ull << 32, 0x0102030405060708ull,
                                     INT64_MAX, UINT64_MAX - 1, UINT64_MAX };
    unsigned char a[8], b[8];

    (void)state;
    kchat_store_be64(0x0102030405060708ull, a);
    assert_memory_equal(a, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        kchat_store_be64(vals[i], a);
        assert_true(kchat_store_rd_be64(a) == vals[i]);
        for (size_t j = 0; j < sizeof vals / sizeof vals[0]; j++) {
            int c;
            kchat_store_be64(vals[j], b);
            c = memcmp(a, b, 8);
            assert_true((c < 0) == (vals[i] < vals[j]) && (c == 0) == (vals[i] == vals[j]));
        }
    }
}

/* ------------------------------------------------------------------------ */
/* A full map */

static void test_map_full(void **state)
{
    enum { MAP = 64 * 1024, BIG = 200 * 1024 };
    fx *f = *state;
    kchat_store *s = open_at(f->dir, MAP, true);
    unsigned char *big = malloc(BIG);
    const void *v;
    size_t vl;
    kchat_txn *t, *r;
    int rc, tries;

    assert_non_null(big);
    memset(big, 0xab, BIG);
    t = begin(s, true);
    put_str(t, KCHAT_TBL_USERS, "keep", "committed before");
    assert_int_equal(kchat_store_outbox_append(t, &RECS[0], NULL), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    /* A reader stays open, so the map cannot grow yet. */
    r = begin(s, false);

    /* The failed transaction: EMAPFULL, then the same error for everything. */
    t = begin(s, true);
    put_str(t, KCHAT_TBL_USERS, "lost", "in the failed txn");
    assert_int_equal(kchat_txn_put(t, KCHAT_TBL_USERS, "big", 3, big, BIG), KCHAT_EMAPFULL);
    assert_int_equal(kchat_txn_get(t, KCHAT_TBL_USERS, "keep", 4, &v, &vl), KCHAT_EMAPFULL);
    assert_int_equal(kchat_txn_put(t, KCHAT_TBL_USERS, "x", 1, "y", 1), KCHAT_EMAPFULL);
    assert_int_equal(kchat_txn_commit(t), KCHAT_EMAPFULL);   /* aborts and frees */

    /* Still full while the reader is open; a failed txn aborted the usual way. */
    t = begin(s, true);
    assert_int_equal(kchat_txn_put(t, KCHAT_TBL_USERS, "big", 3, big, BIG), KCHAT_EMAPFULL);
    kchat_txn_abort(t);

    /* Reads work, committed data is intact, the failed txns left nothing. */
    expect_str(r, KCHAT_TBL_USERS, "keep", "committed before");
    kchat_txn_abort(r);
    t = begin(s, false);
    expect_str(t, KCHAT_TBL_USERS, "keep", "committed before");
    expect_absent(t, KCHAT_TBL_USERS, "lost");
    expect_absent(t, KCHAT_TBL_USERS, "big");
    assert_int_equal(outbox_count(t), 1);
    kchat_txn_abort(t);

    /* Smaller writes work. */
    t = begin(s, true);
    put_str(t, KCHAT_TBL_USERS, "small", "fits");
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    /* Retrying the big write succeeds once the map has doubled enough. */
    for (tries = 1; tries <= 10; tries++) {
        t = begin(s, true);
        rc = kchat_txn_put(t, KCHAT_TBL_USERS, "big", 3, big, BIG);
        if (rc == KCHAT_OK)
            rc = kchat_txn_commit(t);
        else
            kchat_txn_abort(t);
        if (rc != KCHAT_EMAPFULL)
            break;
    }
    assert_int_equal(rc, KCHAT_OK);
    assert_true(tries <= 4);   /* 64 KiB -> 512 KiB at most */

    t = begin(s, false);
    expect_str(t, KCHAT_TBL_USERS, "keep", "committed before");
    expect_str(t, KCHAT_TBL_USERS, "small", "fits");
    assert_int_equal(kchat_txn_get(t, KCHAT_TBL_USERS, "big", 3, &v, &vl), KCHAT_OK);
    assert_int_equal(vl, BIG);
    assert_memory_equal(v, big, BIG);
    kchat_txn_abort(t);
    kchat_store_close(s);

    /* Reopening with the small map still finds everything. */
    s = open_at(f->dir, MAP, true);
    t = begin(s, false);
    assert_int_equal(kchat_txn_get(t, KCHAT_TBL_USERS, "big", 3, &v, &vl), KCHAT_OK);
    assert_int_equal(vl, BIG);
    expect_str(t, KCHAT_TBL_USERS, "keep", "committed before");
    kchat_txn_abort(t);
    kchat_store_close(s);
    free(big);
}

/* Fill a small map with many small transactions: EMAPFULL, then growth. */
static void test_map_full_many_writes(void **state)
{
    fx *f = *state;
    kchat_store *s = open_at(f->dir, 64 * 1024, true);
    unsigned char val[1024];
    char k[32];
    int i, full_at = -1;
    kchat_txn *t;

    memset(val, 'v', sizeof val);
    for (i = 0; i < 2000; i++) {
        int rc;
        t = begin(s, true);
        snprintf(k, sizeof k, "k%05d", i);
        rc = kchat_txn_put(t, KCHAT_TBL_DIRECTORY, k, strlen(k), val, sizeof val);
        if (rc == KCHAT_OK)
            rc = kchat_txn_commit(t);
        else
            kchat_txn_abort(t);
        if (rc == KCHAT_EMAPFULL) {
            if (full_at < 0)
                full_at = i;
            i--;   /* retry the same key */
            continue;
        }
        assert_int_equal(rc, KCHAT_OK);
    }
    assert_true(full_at > 0 && full_at < 100);   /* it did fill up, early */
    t = begin(s, false);
    assert_int_equal(count_prefix(t, KCHAT_TBL_DIRECTORY, "k"), 2000);
    kchat_txn_abort(t);
    kchat_store_close(s);
}

/* ------------------------------------------------------------------------ */
/* Threads */

typedef struct race {
    kchat_store *s;
    atomic_bool done;
    atomic_int reads;
    int errors;
    int commits;
} race;

static void *writer_main(void *arg)
{
    race *rc = arg;
    unsigned char k[9] = { 'k' }, v[8];

    for (uint64_t i = 1; i <= 300; i++) {
        kchat_txn *t;
        if (kchat_txn_begin(rc->s, true, &t) != KCHAT_OK) {
            rc->errors++;
            break;
        }
        kchat_store_be64(i, k + 1);
        kchat_store_be64(i, v);
        if (kchat_txn_put(t, KCHAT_TBL_MESSAGES, k, 9, v, 8) ||
            kchat_txn_put(t, KCHAT_TBL_META, "count", 5, v, 8) ||
            kchat_txn_commit(t))
            rc->errors++;
        else
            rc->commits++;
    }
    atomic_store(&rc->done, true);
    return NULL;
}

/* Each snapshot must be consistent: count == number of k keys, and grow. */
static void *reader_main(void *arg)
{
    race *rc = arg;
    uint64_t last = 0;
    bool done;

    do {
        kchat_txn *t;
        const void *v;
        size_t vl, n = 0;
        uint64_t count = 0;
        done = atomic_load(&rc->done);   /* read before: one more pass after the end */
        if (kchat_txn_begin(rc->s, false, &t) != KCHAT_OK)
            return (void *)1;
        if (kchat_txn_get(t, KCHAT_TBL_META, "count", 5, &v, &vl) == KCHAT_OK)
            count = kchat_store_rd_be64(v);
        if (kchat_txn_scan(t, KCHAT_TBL_MESSAGES, "k", 1, false, count_fn, &n) != KCHAT_OK ||
            n != count || count < last)
            return (void *)2;
        last = count;
        kchat_txn_abort(t);
        atomic_fetch_add(&rc->reads, 1);
    } while (!done);
    return last == 300 ? NULL : (void *)3;
}

static void test_concurrent_readers(void **state)
{
    fx *f = *state;
    race rc = { .s = open_fast(f) };
    pthread_t w, r1, r2;
    void *res1, *res2;
    kchat_txn *old;
    uint64_t n;

    atomic_init(&rc.done, false);
    atomic_init(&rc.reads, 0);
    old = begin(rc.s, false);   /* a snapshot from before any write */
    assert_int_equal(pthread_create(&r1, NULL, reader_main, &rc), 0);
    assert_int_equal(pthread_create(&r2, NULL, reader_main, &rc), 0);
    assert_int_equal(pthread_create(&w, NULL, writer_main, &rc), 0);
    assert_int_equal(pthread_join(w, NULL), 0);
    assert_int_equal(pthread_join(r1, &res1), 0);
    assert_int_equal(pthread_join(r2, &res2), 0);
    assert_null(res1);
    assert_null(res2);
    assert_int_equal(rc.errors, 0);
    assert_int_equal(rc.commits, 300);
    assert_true(atomic_load(&rc.reads) >= 2);

    n = 0;
    assert_int_equal(kchat_txn_scan(old, KCHAT_TBL_MESSAGES, "", 0, false, count_fn, &n),
                     KCHAT_OK);
    assert_int_equal(n, 0);
    kchat_txn_abort(old);
    kchat_store_close(rc.s);
}

typedef struct handoff {
    kchat_store *s;
    kchat_txn *t;
    atomic_bool began;
    int rc;
} handoff;

/* Uses and ends a read transaction begun on another thread. */
static void *use_read_txn(void *arg)
{
    handoff *h = arg;
    const void *v;
    size_t vl;

    h->rc = kchat_txn_get(h->t, KCHAT_TBL_USERS, "a", 1, &v, &vl);
    if (h->rc == KCHAT_OK && (vl != 1 || memcmp(v, "1", 1) != 0))
        h->rc = -100;
    kchat_txn_abort(h->t);
    return NULL;
}

/* Begins a write transaction: blocks while the main thread holds one. */
static void *second_writer(void *arg)
{
    handoff *h = arg;
    kchat_txn *t;

    h->rc = kchat_txn_begin(h->s, true, &t);
    if (h->rc)
        return NULL;
    atomic_store(&h->began, true);
    {
        const void *v;
        size_t vl;
        h->rc = kchat_txn_get(t, KCHAT_TBL_USERS, "first", 5, &v, &vl);   /* sees it */
    }
    if (h->rc == KCHAT_OK)
        h->rc = kchat_txn_put(t, KCHAT_TBL_USERS, "second", 6, "2", 1);
    if (h->rc == KCHAT_OK)
        h->rc = kchat_txn_commit(t);
    else
        kchat_txn_abort(t);
    return NULL;
}

static void test_txn_threads(void **state)
{
    fx *f = *state;
    kchat_store *s = open_fast(f);
    handoff h = { .s = s };
    struct timespec ts = { 0, 100 * 1000 * 1000 };
    pthread_t th;
    kchat_txn *t, *t2 = NULL;

    atomic_init(&h.began, false);
    t = begin(s, true);
    put_str(t, KCHAT_TBL_USERS, "a", "1");
    /* The writer's own thread cannot begin a second write txn... */
    assert_int_equal(kchat_txn_begin(s, true, &t2), KCHAT_EINVAL);
    assert_null(t2);
    /* ...but may read beside it. */
    t2 = begin(s, false);
    expect_absent(t2, KCHAT_TBL_USERS, "a");
    kchat_txn_abort(t2);
    expect_str(t, KCHAT_TBL_USERS, "a", "1");
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);

    /* A read transaction begun here, used and ended on another thread. */
    h.t = begin(s, false);
    assert_int_equal(pthread_create(&th, NULL, use_read_txn, &h), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(h.rc, KCHAT_OK);

    /* A second writer on another thread waits for the first. */
    t = begin(s, true);
    assert_int_equal(pthread_create(&th, NULL, second_writer, &h), 0);
    nanosleep(&ts, NULL);
    assert_false(atomic_load(&h.began));
    put_str(t, KCHAT_TBL_USERS, "first", "1");
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(atomic_load(&h.began));
    assert_int_equal(h.rc, KCHAT_OK);
    t = begin(s, false);
    expect_str(t, KCHAT_TBL_USERS, "second", "2");
    kchat_txn_abort(t);
    kchat_store_close(s);
}

/* ------------------------------------------------------------------------ */

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_open_close_reopen),
        T(test_put_get_del),
        T(test_scan_prefix),
        T(test_scan_range),
        T(test_scan_while_writing),
        T(test_group_commit),
        T(test_outbox),
        T(test_outbox_replay_after_crash),
        T(test_outbox_replay_after_crash_meta_no_sync),
        T(test_outbox_replay_after_crash_unsynced),
        T(test_offsets),
        T(test_meta_and_counters),
        T(test_applied),
        T(test_cmdseq),
        T(test_be64),
        T(test_map_full),
        T(test_map_full_many_writes),
        T(test_concurrent_readers),
        T(test_txn_threads),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
