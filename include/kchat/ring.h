/**
 * @file ring.h
 * @brief Bounded lock-free single-producer single-consumer ring of pointers.
 *
 * A kchat_ring carries `void *` items from exactly one producer thread to
 * exactly one consumer thread without locks: the pipeline uses one ring per
 * (topic thread, worker) pair to hand Kafka messages to the keyed workers;
 * there the topic thread is the producer and the worker the consumer.
 *
 * The ring is a power-of-two array of slots with two free-running indices,
 * `tail` (written only by the producer) and `head` (written only by the
 * consumer), each on its own cache line. A push publishes its slot with a
 * release store of `tail`; a pop reads it after an acquire load, so
 * everything the producer wrote into the item before the push is visible to
 * the consumer after the pop. Each side caches the other's index and only
 * re-reads it when the cached value says "full" / "empty", so in steady state
 * the two threads do not bounce each other's cache lines.
 *
 * Caveats:
 * - One producer and one consumer, each a single thread at a time. Handing a
 *   role to another thread needs a happens-before edge of its own (a join, a
 *   mutex); two concurrent producers or consumers corrupt the ring.
 * - The ring never blocks and never sleeps. Waiting for room or for items
 *   (and waking the other side) is the caller's business; see
 *   src/pipeline/consumer_int.h.
 * - NULL is the "empty" answer of kchat_ring_pop(), so NULL cannot be an item.
 * - The ring does not own its items: kchat_ring_free() drops whatever is
 *   still queued without looking at it. Drain it first if the items own
 *   memory.
 */
#ifndef KCHAT_RING_H
#define KCHAT_RING_H

#include <stdbool.h>
#include <stddef.h>

#include "kchat/error.h"

/** Opaque ring handle. */
typedef struct kchat_ring kchat_ring;

/**
 * @brief Create an empty ring.
 * @param[in] capacity the most items the ring holds; rounded up to a power
 *            of two and to at least 2.
 * @param[out] out the new ring; set only on success.
 * @return KCHAT_OK; KCHAT_EINVAL if @p out is NULL, @p capacity is 0 or too
 *         large to allocate; KCHAT_ENOMEM if allocation failed.
 * @note The caller owns the ring and frees it with kchat_ring_free() once
 *       neither side uses it any more.
 * @locality any thread; the threads that then push and pop need a
 *           happens-before edge from this call (e.g. being created after it)
 */
KCHAT_MUST_CHECK
int kchat_ring_new(size_t capacity, kchat_ring **out);

/**
 * @brief Free a ring. Items still queued are not touched (not freed).
 * @param[in] r the ring, or NULL (no-op).
 * @locality any thread, once both the producer and the consumer are done
 *           with the ring (e.g. joined)
 */
void kchat_ring_free(kchat_ring *r);

/**
 * @brief Append @p item at the tail.
 * @param[in] r the ring.
 * @param[in] item the item; must not be NULL (asserted; false in NDEBUG
 *            builds). Ownership of whatever @p item points to passes to the
 *            consumer that pops it, but only when true is returned.
 * @return true if queued; false if the ring is full (nothing changed, and
 *         @p item is still the caller's).
 * @note Wait-free: O(1), never blocks.
 * @locality the producer thread only (in the pipeline: the topic thread)
 */
KCHAT_MUST_CHECK
bool kchat_ring_push(kchat_ring *r, void *item);

/**
 * @brief Remove the item at the head.
 * @param[in] r the ring.
 * @return the oldest item, now owned by the caller; NULL if the ring is empty.
 * @note Wait-free: O(1), never blocks.
 * @locality the consumer thread only (in the pipeline: the worker)
 */
void *kchat_ring_pop(kchat_ring *r);

/**
 * @brief How many items are queued.
 * @return a value in [0, capacity]. Exact when called by the producer with
 *         no pop in flight or by the consumer with no push in flight; from
 *         any other thread, a recent snapshot.
 * @locality any thread
 */
size_t kchat_ring_count(const kchat_ring *r);

/**
 * @brief The ring's capacity (the rounded-up value, a power of two >= 2).
 * @locality any thread
 */
size_t kchat_ring_capacity(const kchat_ring *r);

#endif /* KCHAT_RING_H */
