/*
 * Unit tests of which of a Kafka transaction's changes reach
 * kchat-changelog (src/actors/changelog.h, kchat__cl_coalesce()): a change
 * whose table and key a later change of the same transaction writes again
 * is left out; every other change is written, the last of each key always.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "actors/changelog.h"

/* Up to 4,096 changes with keys of their own (test-owned buffers). */
struct changes {
    struct cl_rec r[4096];
    unsigned char keys[4096][16];
    unsigned char superseded[4096];
    size_t n;
    uint32_t *slots;
    size_t cap;
};

static struct changes *changes_new(void)
{
    struct changes *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    return c;
}

static void changes_free(struct changes *c)
{
    free(c->slots);
    free(c);
}

/* Append a change of @p table to key @p key (a put, or a delete when
 * @p deleted), numbered on from the last. */
static void change(struct changes *c, kchat_table table, const char *key, bool deleted)
{
    size_t i = c->n++;
    size_t kl = strlen(key);

    assert_true(kl <= sizeof(c->keys[i]));
    memcpy(c->keys[i], key, kl);
    c->r[i] = (struct cl_rec){.seq = i + 1, .last = i + 1, .table = table, .key = c->keys[i],
                              .key_len = kl, .value = deleted ? NULL : c->keys[i],
                              .value_len = deleted ? 0 : kl};
}

static size_t coalesce(struct changes *c)
{
    return kchat__cl_coalesce(c->r, c->n, c->superseded, &c->slots, &c->cap);
}

/* None or one change: nothing to leave out. */
static void test_none_or_one(void **state)
{
    struct changes *c = changes_new();

    (void)state;
    assert_int_equal(coalesce(c), 0);
    change(c, KCHAT_TBL_META, "i:outbox_seq", false);
    c->superseded[0] = 1;   /* cleared */
    assert_int_equal(coalesce(c), 0);
    assert_int_equal(c->superseded[0], 0);
    changes_free(c);
}

/* A counter written by three LMDB transactions of one round goes once, the
 * last value; keys of their own stay. */
static void test_counter_written_thrice(void **state)
{
    struct changes *c = changes_new();

    (void)state;
    change(c, KCHAT_TBL_META, "i:outbox_seq", false);
    change(c, KCHAT_TBL_MESSAGES, "m1", false);
    change(c, KCHAT_TBL_META, "i:outbox_seq", false);
    change(c, KCHAT_TBL_MESSAGES, "m2", false);
    change(c, KCHAT_TBL_META, "i:outbox_seq", false);
    assert_int_equal(coalesce(c), 2);
    assert_memory_equal(c->superseded, ((unsigned char[]){1, 0, 1, 0, 0}), 5);
    changes_free(c);
}

/* A put and the deletion of the same key in one round: the tombstone goes
 * alone (an earlier transaction may have written the key). */
static void test_put_then_delete(void **state)
{
    struct changes *c = changes_new();

    (void)state;
    change(c, KCHAT_TBL_OUTBOX, "page7", false);
    change(c, KCHAT_TBL_OUTBOX, "page7", true);
    assert_int_equal(coalesce(c), 1);
    assert_memory_equal(c->superseded, ((unsigned char[]){1, 0}), 2);
    changes_free(c);
}

/* The same key bytes in two tables are two keys; a key and its prefix too. */
static void test_tables_and_prefixes_differ(void **state)
{
    struct changes *c = changes_new();

    (void)state;
    change(c, KCHAT_TBL_USERS, "alice", false);
    change(c, KCHAT_TBL_SESSIONS, "alice", false);
    change(c, KCHAT_TBL_USERS, "alic", false);
    change(c, KCHAT_TBL_USERS, "alice2", false);
    assert_int_equal(coalesce(c), 0);
    assert_memory_equal(c->superseded, ((unsigned char[]){0, 0, 0, 0}), 4);
    changes_free(c);
}

/* Random rounds of up to 4,096 changes over few or many keys (collisions
 * and a scratch that grows and is reused), checked against the pairwise
 * definition. */
static void test_random_rounds(void **state)
{
    struct changes *c = changes_new();
    unsigned seed = 12345;

    (void)state;
    for (int round = 0; round < 40; round++) {
        size_t n = (size_t)(round * 97 % 4096) + 1, keys = round % 2 ? 8 : 3000, want = 0;

        c->n = 0;
        for (size_t i = 0; i < n; i++) {
            char key[16];
            seed = seed * 1103515245u + 12345u;
            snprintf(key, sizeof(key), "k%zu", (size_t)(seed >> 8) % keys);
            change(c, (seed >> 4) % 2 ? KCHAT_TBL_META : KCHAT_TBL_APPLIED, key,
                   (seed >> 3) % 5 == 0);
        }
        size_t got = coalesce(c);
        for (size_t i = 0; i < n; i++) {
            bool later = false;
            for (size_t j = i + 1; j < n && !later; j++)
                later = c->r[j].table == c->r[i].table && c->r[j].key_len == c->r[i].key_len &&
                        memcmp(c->r[j].key, c->r[i].key, c->r[i].key_len) == 0;
            assert_int_equal(c->superseded[i], later);
            want += later;
        }
        assert_int_equal(got, want);
        assert_int_equal(c->superseded[n - 1], 0);   /* the last always goes */
    }
    changes_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_none_or_one),
        cmocka_unit_test(test_counter_written_thrice),
        cmocka_unit_test(test_put_then_delete),
        cmocka_unit_test(test_tables_and_prefixes_differ),
        cmocka_unit_test(test_random_rounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
