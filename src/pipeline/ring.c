/* Bounded lock-free SPSC ring of pointers (see include/kchat/ring.h). */
#include "kchat/ring.h"

#include <assert.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/error.h"

/** Size that keeps the two sides' hot fields on separate cache lines. */
#define KCHAT__CACHE_LINE 64

/*
 * Invariants: capacity is a power of two >= 2, mask == capacity - 1;
 * head <= tail <= head + capacity (as free-running size_t counters, so the
 * arithmetic is modulo SIZE_MAX + 1 and wrap-around is harmless);
 * slots[i & mask] for head <= i < tail hold the queued items.
 */
struct kchat_ring {
    /* Consumer's line: the index it writes and its view of the producer. */
    alignas(KCHAT__CACHE_LINE) atomic_size_t head; /**< next slot to pop */
    size_t tail_cache;          /**< consumer's last seen tail */

    /* Producer's line. */
    alignas(KCHAT__CACHE_LINE) atomic_size_t tail; /**< next slot to fill */
    size_t head_cache;          /**< producer's last seen head */

    /* Read-only after kchat_ring_new(). */
    alignas(KCHAT__CACHE_LINE) size_t mask;
    void **slots;               /**< capacity entries */
};

int kchat_ring_new(size_t capacity, kchat_ring **out)
{
    if (!out || capacity == 0 || capacity > (SIZE_MAX / 2) / sizeof(void *))
        return KCHAT_EINVAL;

    size_t cap = 2;
    while (cap < capacity)
        cap <<= 1;

    kchat_ring *r = aligned_alloc(KCHAT__CACHE_LINE, sizeof(*r));
    if (!r)
        return KCHAT_ENOMEM;
    memset(r, 0, sizeof(*r));
    r->slots = calloc(cap, sizeof(void *));
    if (!r->slots) {
        free(r);
        return KCHAT_ENOMEM;
    }
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    r->mask = cap - 1;
    *out = r;
    return KCHAT_OK;
}

void kchat_ring_free(kchat_ring *r)
{
    if (!r)
        return;
    free(r->slots);
    free(r);
}

bool kchat_ring_push(kchat_ring *r, void *item)
{
    assert(item != NULL);
    if (!item)
        return false;
    size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (t - r->head_cache > r->mask) {
        /* Looks full: refresh our view of the consumer. Acquire pairs with
         * the release in pop, so the slot it vacated is ours to overwrite. */
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        if (t - r->head_cache > r->mask)
            return false;
    }
    r->slots[t & r->mask] = item;
    atomic_store_explicit(&r->tail, t + 1, memory_order_release);
    return true;
}

void *kchat_ring_pop(kchat_ring *r)
{
    size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (h == r->tail_cache) {
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (h == r->tail_cache)
            return NULL;
    }
    void *item = r->slots[h & r->mask];
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
    return item;
}

size_t kchat_ring_count(const kchat_ring *r)
{
    /* head first: tail can only have grown since, so the difference never
     * goes negative; it can exceed capacity if both moved in between. */
    size_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    size_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    size_t n = t - h;
    return n > r->mask + 1 ? r->mask + 1 : n;
}

size_t kchat_ring_capacity(const kchat_ring *r)
{
    return r->mask + 1;
}
