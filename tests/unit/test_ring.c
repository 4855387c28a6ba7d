/* Unit tests for the SPSC ring (include/kchat/ring.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "kchat/error.h"
#include "kchat/ring.h"

/* Items are small integers disguised as pointers; 0 would be NULL. */
#define ITEM(i) ((void *)(uintptr_t)(i))
#define NUM(p)  ((uintptr_t)(p))

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define STRESS_ITEMS 500000u    /* sanitizers are ~10-50x slower */
#else
#define STRESS_ITEMS 5000000u
#endif

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_new_rounds_capacity(void **state)
{
    (void)state;
    static const struct { size_t in, want; } cases[] = {
        {1, 2}, {2, 2}, {3, 4}, {4, 4}, {5, 8}, {1000, 1024}, {1024, 1024},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kchat_ring *r = NULL;
        assert_int_equal(kchat_ring_new(cases[i].in, &r), KCHAT_OK);
        assert_non_null(r);
        assert_int_equal(kchat_ring_capacity(r), cases[i].want);
        assert_int_equal(kchat_ring_count(r), 0);
        kchat_ring_free(r);
    }
}

static void test_new_rejects_bad_args(void **state)
{
    (void)state;
    kchat_ring *r = NULL;
    assert_int_equal(kchat_ring_new(0, &r), KCHAT_EINVAL);
    assert_null(r);
    assert_int_equal(kchat_ring_new(8, NULL), KCHAT_EINVAL);
    assert_int_equal(kchat_ring_new(SIZE_MAX, &r), KCHAT_EINVAL);
    assert_null(r);
    kchat_ring_free(NULL); /* no-op */
}

static void test_empty_full_fifo(void **state)
{
    (void)state;
    kchat_ring *r;
    assert_int_equal(kchat_ring_new(4, &r), KCHAT_OK);
    assert_null(kchat_ring_pop(r));

    for (uintptr_t i = 1; i <= 4; i++) {
        assert_true(kchat_ring_push(r, ITEM(i)));
        assert_int_equal(kchat_ring_count(r), i);
    }
    assert_false(kchat_ring_push(r, ITEM(5)));   /* full */
    assert_int_equal(kchat_ring_count(r), 4);

    assert_int_equal(NUM(kchat_ring_pop(r)), 1);
    assert_true(kchat_ring_push(r, ITEM(5)));    /* room again */
    assert_false(kchat_ring_push(r, ITEM(6)));
    for (uintptr_t i = 2; i <= 5; i++)
        assert_int_equal(NUM(kchat_ring_pop(r)), i);
    assert_null(kchat_ring_pop(r));
    assert_int_equal(kchat_ring_count(r), 0);
    kchat_ring_free(r);
}

/* Many laps around a small ring with varying fill, so the indices wrap the
 * slot array thousands of times and every fill level is crossed. */
static void test_wrap_around(void **state)
{
    (void)state;
    kchat_ring *r;
    assert_int_equal(kchat_ring_new(8, &r), KCHAT_OK);
    uintptr_t next_in = 1, next_out = 1;
    for (unsigned lap = 0; lap < 10000; lap++) {
        unsigned n_push = 1 + lap % 8, n_pop = 1 + (lap * 7) % 8;
        for (unsigned i = 0; i < n_push; i++) {
            if (!kchat_ring_push(r, ITEM(next_in))) {
                assert_int_equal(kchat_ring_count(r), 8);
                break;
            }
            next_in++;
        }
        for (unsigned i = 0; i < n_pop; i++) {
            void *p = kchat_ring_pop(r);
            if (!p) {
                assert_int_equal(next_out, next_in);
                break;
            }
            assert_int_equal(NUM(p), next_out);
            next_out++;
        }
        assert_int_equal(kchat_ring_count(r), next_in - next_out);
    }
    while (next_out < next_in)
        assert_int_equal(NUM(kchat_ring_pop(r)), next_out++);
    assert_null(kchat_ring_pop(r));
    assert_true(next_in > 30000);
    kchat_ring_free(r);
}

struct stress {
    kchat_ring *r;
    uintptr_t n;
    atomic_size_t max_count;    /* largest count the producer saw */
};

static void *stress_producer(void *arg)
{
    struct stress *s = arg;
    size_t max_count = 0;
    for (uintptr_t i = 1; i <= s->n; i++) {
        while (!kchat_ring_push(s->r, ITEM(i)))
            sched_yield();
        if ((i & 1023) == 0) {
            size_t c = kchat_ring_count(s->r);
            if (c > max_count)
                max_count = c;
        }
    }
    atomic_store(&s->max_count, max_count);
    return NULL;
}

/* One producer, one consumer, many items through the ring: every item
 * arrives exactly once and in order. Times the transfer. */
static void run_stress(size_t capacity, uintptr_t n_items)
{
    struct stress s = {.n = n_items};
    assert_int_equal(kchat_ring_new(capacity, &s.r), KCHAT_OK);
    atomic_init(&s.max_count, 0);

    double t0 = now_s();
    pthread_t thr;
    assert_int_equal(pthread_create(&thr, NULL, stress_producer, &s), 0);

    uintptr_t expect = 1, bad = 0;
    while (expect <= s.n) {
        void *p = kchat_ring_pop(s.r);
        if (!p) {
            sched_yield();
            continue;
        }
        if (NUM(p) != expect)
            bad++;
        expect = NUM(p) + 1;
        if ((expect & 0xffff) == 0)
            assert_true(now_s() - t0 < 60.0); /* bounded */
    }
    assert_int_equal(pthread_join(thr, NULL), 0);
    double dt = now_s() - t0;

    assert_int_equal(bad, 0);
    assert_null(kchat_ring_pop(s.r));
    assert_true(atomic_load(&s.max_count) <= kchat_ring_capacity(s.r));
    printf("ring stress: capacity %zu, %lu items in %.3f s = %.1f M items/s\n",
           kchat_ring_capacity(s.r), (unsigned long)s.n, dt,
           (double)s.n / dt / 1e6);
    kchat_ring_free(s.r);
}

static void test_stress_two_threads(void **state)
{
    (void)state;
    run_stress(1024, STRESS_ITEMS);
}

static void test_stress_two_threads_tiny(void **state)
{
    (void)state;
    /* Always full or empty: maximal contention on the indices, and a
     * yield per item, so fewer items. */
    run_stress(2, STRESS_ITEMS / 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_rounds_capacity),
        cmocka_unit_test(test_new_rejects_bad_args),
        cmocka_unit_test(test_empty_full_fifo),
        cmocka_unit_test(test_wrap_around),
        cmocka_unit_test(test_stress_two_threads),
        cmocka_unit_test(test_stress_two_threads_tiny),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
