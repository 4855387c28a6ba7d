/* Unit tests of login throttling (src/actors/throttle.c): lockout after too
 * many failures, its end, the window, the reset on success, the off switch,
 * and the bound on memory under a flood of distinct user ids. Time is passed
 * in, so nothing here sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <cmocka.h>

#include "actors/actors.h"
#include "actors/logins.h"

static kchat_config cfg(int max_failures, int window_s, int lockout_s)
{
    kchat_config c;
    memset(&c, 0, sizeof(c));
    c.login_max_failures = max_failures;
    c.login_window = window_s;
    c.login_lockout = lockout_s;
    return c;
}

static struct login_throttle *table_new(void)
{
    struct login_throttle *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    return t;
}

static size_t slots_used(const struct login_throttle *t)
{
    size_t n = 0;
    for (size_t s = 0; s < KCHAT_THROTTLE_SETS; s++)
        for (size_t w = 0; w < KCHAT_THROTTLE_WAYS; w++)
            n += t->slot[s][w].tag != 0;
    return n;
}

static void test_lockout_and_its_end(void **state)
{
    (void)state;
    kchat_config c = cfg(5, 300, 60);
    struct login_throttle *t = table_new();
    int64_t now = 1000000;

    for (int i = 0; i < 4; i++) {
        assert_int_equal(kchat__throttle_locked(t, "alice", now), 0);
        kchat__throttle_fail(t, &c, "alice", now);
        now += 1000;
    }
    assert_int_equal(kchat__throttle_locked(t, "alice", now), 0);
    kchat__throttle_fail(t, &c, "alice", now);          /* the 5th locks */
    assert_int_equal(kchat__throttle_locked(t, "alice", now), 60000);
    assert_int_equal(kchat__throttle_locked(t, "alice", now + 59999), 1);
    /* another id is not affected */
    assert_int_equal(kchat__throttle_locked(t, "bob", now), 0);
    /* failures while locked do not lengthen the lockout */
    kchat__throttle_fail(t, &c, "alice", now + 30000);
    assert_int_equal(kchat__throttle_locked(t, "alice", now + 30000), 30000);
    /* over: unlocked, and the count starts over (4 more failures do not lock) */
    now += 60000;
    assert_int_equal(kchat__throttle_locked(t, "alice", now), 0);
    for (int i = 0; i < 4; i++)
        kchat__throttle_fail(t, &c, "alice", now + i);
    assert_int_equal(kchat__throttle_locked(t, "alice", now + 4), 0);
    kchat__throttle_fail(t, &c, "alice", now + 5);
    assert_int_equal(kchat__throttle_locked(t, "alice", now + 5), 60000);
    free(t);
}

static void test_window(void **state)
{
    (void)state;
    kchat_config c = cfg(3, 10, 60);
    struct login_throttle *t = table_new();
    int64_t now = 5000;

    kchat__throttle_fail(t, &c, "carol", now);
    kchat__throttle_fail(t, &c, "carol", now + 9000);
    /* the window (from the first failure) has passed: the count starts over */
    kchat__throttle_fail(t, &c, "carol", now + 10000);
    kchat__throttle_fail(t, &c, "carol", now + 11000);
    assert_int_equal(kchat__throttle_locked(t, "carol", now + 11000), 0);
    kchat__throttle_fail(t, &c, "carol", now + 12000);   /* 3 within 10 s */
    assert_int_equal(kchat__throttle_locked(t, "carol", now + 12000), 60000);
    free(t);
}

static void test_success_resets(void **state)
{
    (void)state;
    kchat_config c = cfg(3, 300, 60);
    struct login_throttle *t = table_new();

    kchat__throttle_fail(t, &c, "dave", 1);
    kchat__throttle_fail(t, &c, "dave", 2);
    kchat__throttle_reset(t, "dave");
    assert_int_equal(slots_used(t), 0);
    kchat__throttle_fail(t, &c, "dave", 3);
    kchat__throttle_fail(t, &c, "dave", 4);
    assert_int_equal(kchat__throttle_locked(t, "dave", 5), 0);
    kchat__throttle_fail(t, &c, "dave", 5);
    assert_true(kchat__throttle_locked(t, "dave", 5) > 0);
    free(t);
}

static void test_lockout_zero_is_off(void **state)
{
    (void)state;
    kchat_config c = cfg(1, 300, 0);
    struct login_throttle *t = table_new();

    for (int i = 0; i < 100; i++)
        kchat__throttle_fail(t, &c, "erin", i);
    assert_int_equal(kchat__throttle_locked(t, "erin", 100), 0);
    assert_int_equal(slots_used(t), 0);   /* and nothing is kept */
    free(t);
}

/* A million distinct ids failing once each: the table stays at its fixed
 * size, a locked id keeps its lockout (unlocked entries go first), and an id
 * that fails often enough afterwards is still locked (eviction makes room). */
static void test_flood_is_bounded(void **state)
{
    (void)state;
    kchat_config c = cfg(5, 300, 60);
    struct login_throttle *t = table_new();
    char id[32];
    int64_t now = 1000;

    for (int i = 0; i < 5; i++)
        kchat__throttle_fail(t, &c, "victim", now);
    assert_int_equal(kchat__throttle_locked(t, "victim", now), 60000);
    for (int i = 0; i < 1000000; i++) {
        snprintf(id, sizeof(id), "probe-%d", i);
        kchat__throttle_fail(t, &c, id, now + i / 1000);
    }
    now += 1000;
    assert_int_equal(slots_used(t), (size_t)KCHAT_THROTTLE_SETS * KCHAT_THROTTLE_WAYS);
    assert_int_equal(sizeof(t->slot), KCHAT_THROTTLE_SETS * KCHAT_THROTTLE_WAYS *
                                          sizeof(struct throttle_slot));
    assert_int_equal(kchat__throttle_locked(t, "victim", now), 60000 - 1000);
    for (int i = 0; i < 5; i++)
        kchat__throttle_fail(t, &c, "guesser", now);
    assert_int_equal(kchat__throttle_locked(t, "guesser", now), 60000);
    free(t);
}

/* When every slot of a set is locked, a new id evicts the lockout that ends
 * first, never a newer one. */
static void test_full_set_evicts_soonest_lockout(void **state)
{
    (void)state;
    kchat_config c = cfg(1, 300, 60);
    struct login_throttle *t = table_new();
    char id[32];
    int locked = 0;

    /* lock ids at increasing times until the victim's set is full of locks */
    kchat__throttle_fail(t, &c, "victim", 0);
    for (int i = 0; i < 200000; i++) {
        snprintf(id, sizeof(id), "lock-%d", i);
        kchat__throttle_fail(t, &c, id, 1 + i / 10000);
        locked++;
    }
    assert_int_equal(slots_used(t), (size_t)KCHAT_THROTTLE_SETS * KCHAT_THROTTLE_WAYS);
    /* the victim's lockout, the oldest, was evicted once its set filled */
    assert_int_equal(kchat__throttle_locked(t, "victim", 30), 0);
    /* the newest ones survive */
    snprintf(id, sizeof(id), "lock-%d", locked - 1);
    assert_true(kchat__throttle_locked(t, id, 30) > 0);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lockout_and_its_end),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_success_resets),
        cmocka_unit_test(test_lockout_zero_is_off),
        cmocka_unit_test(test_flood_is_bounded),
        cmocka_unit_test(test_full_set_evicts_soonest_lockout),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests_name("kchat login throttling", tests, NULL, NULL);
}
