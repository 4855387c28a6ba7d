/*
 * Unit tests of kchat__offsets_settle_cluster() (src/actors/datadir.c):
 * stored offsets belong to the cluster a store's meta key names, and are
 * forgotten when kchat runs on another cluster, on none it knows, or on the
 * embedded broker (a new cluster at every start). The shards (meta key
 * `cluster_id`) and the directory replica (`replica_cluster_id`) both go
 * through it.
 *
 * One store in a fresh directory under $KCHAT_TEST_TMP (or /tmp), holding
 * two offsets; a backend of nothing but its cluster id and embedded flag.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "actors/actors.h"
#include "support/kclient.h"

#define KEY "cluster_id"

typedef struct fx {
    char dir[512];
    kchat_backend *be;
    kchat_store *store;
} fx;

static int setup(void **state)
{
    const char *tmp = getenv("KCHAT_TEST_TMP");
    kchat_store_opts o = {.map_size = 16u << 20, .no_sync = true};
    char path[600];
    kchat_txn *t;
    fx *f = calloc(1, sizeof(*f));

    if (f == NULL || (f->be = calloc(1, sizeof(*f->be))) == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s/test_offsets_cluster.XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->be->cluster_id, sizeof(f->be->cluster_id), "cluster-A");
    snprintf(path, sizeof(path), "%s/store", f->dir);
    if (kchat_store_open(path, &o, &f->store) != KCHAT_OK ||
        kchat_txn_begin(f->store, true, &t) != KCHAT_OK)
        return -1;
    if (kchat_store_offset_set(t, "login-request", 0, 42) != KCHAT_OK ||
        kchat_store_offset_set(t, "kchat-directory", 3, 7) != KCHAT_OK ||
        kchat_txn_commit(t) != KCHAT_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;

    kchat_store_close(f->store);
    free(f->be);
    kc_rm_rf(f->dir);
    free(f);
    return 0;
}

/* Settle @p key in a transaction of its own, committed; returns `cleared`. */
static bool settle(fx *f, const char *key)
{
    kchat_txn *t;
    bool cleared = false;

    assert_int_equal(kchat_txn_begin(f->store, true, &t), KCHAT_OK);
    assert_int_equal(kchat__offsets_settle_cluster(f->be, t, key, &cleared), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    return cleared;
}

static void set_meta(fx *f, const char *key, const char *value)
{
    kchat_txn *t;

    assert_int_equal(kchat_txn_begin(f->store, true, &t), KCHAT_OK);
    assert_int_equal(kchat_store_meta_set(t, key, value), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
}

/* How many of setup()'s two offsets the store still holds. */
static int offsets_held(fx *f)
{
    kchat_txn *t;
    int64_t next;
    int n = 0;

    assert_int_equal(kchat_txn_begin(f->store, false, &t), KCHAT_OK);
    n += kchat_store_offset_get(t, "login-request", 0, &next) == KCHAT_OK && next == 42;
    n += kchat_store_offset_get(t, "kchat-directory", 3, &next) == KCHAT_OK && next == 7;
    kchat_txn_abort(t);
    return n;
}

static void assert_meta(fx *f, const char *key, const char *want)
{
    char got[sizeof(f->be->cluster_id)];
    kchat_txn *t;

    assert_int_equal(kchat_txn_begin(f->store, false, &t), KCHAT_OK);
    assert_int_equal(kchat_store_meta_get(t, key, got, sizeof(got)), KCHAT_OK);
    kchat_txn_abort(t);
    assert_string_equal(got, want);
}

/* A store that names no cluster (a new one, or an older kchat's) cannot
 * say whose its offsets are: forgotten, and this cluster named. */
static void test_no_cluster_named(void **state)
{
    fx *f = *state;

    assert_true(settle(f, KEY));
    assert_int_equal(offsets_held(f), 0);
    assert_meta(f, KEY, "cluster-A");
}

/* The same cluster: every offset kept, and the next settle changes nothing. */
static void test_same_cluster_keeps(void **state)
{
    fx *f = *state;

    set_meta(f, KEY, "cluster-A");
    assert_false(settle(f, KEY));
    assert_int_equal(offsets_held(f), 2);
    assert_false(settle(f, KEY));
    assert_int_equal(offsets_held(f), 2);
}

/* Another cluster's offsets point into other logs: forgotten. */
static void test_other_cluster_forgets(void **state)
{
    fx *f = *state;

    set_meta(f, KEY, "cluster-B");
    assert_true(settle(f, KEY));
    assert_int_equal(offsets_held(f), 0);
    assert_meta(f, KEY, "cluster-A");
}

/* The embedded broker is a new cluster at every start, whatever its id. */
static void test_embedded_always_forgets(void **state)
{
    fx *f = *state;

    set_meta(f, KEY, "cluster-A");
    f->be->embedded = (kchat_embedded *)f;   /* never dereferenced: "runs embedded" */
    assert_true(settle(f, KEY));
    assert_int_equal(offsets_held(f), 0);
}

/* A stored id too long to be one kchat keeps is another cluster's, not an
 * error that stops the start. */
static void test_overlong_id_is_another_cluster(void **state)
{
    fx *f = *state;
    char id[sizeof(f->be->cluster_id) + 16];

    memset(id, 'x', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    set_meta(f, KEY, id);
    assert_true(settle(f, KEY));
    assert_int_equal(offsets_held(f), 0);
    assert_meta(f, KEY, "cluster-A");
}

/* Each key is its own: the replica's key naming this cluster says nothing
 * about the shards' key. */
static void test_keys_apart(void **state)
{
    fx *f = *state;

    set_meta(f, "replica_cluster_id", "cluster-A");
    assert_false(settle(f, "replica_cluster_id"));
    assert_int_equal(offsets_held(f), 2);
    assert_true(settle(f, KEY));
    assert_int_equal(offsets_held(f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_cluster_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_cluster_keeps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_cluster_forgets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_embedded_always_forgets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlong_id_is_another_cluster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_apart, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
