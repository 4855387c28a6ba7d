/**
 * @file consumer.h
 * @brief The input side of the pipeline: Kafka consumer threads, SPSC rings,
 *        back-pressure, and the keyed worker threads that drain them.
 *
 * One kchat_consumer is one member of a Kafka consumer group (one
 * `rd_kafka_t`), subscribed to every request topic plus the internal topic.
 * All of them are co-partitioned and assigned with the `range` assignor, so
 * partition p of every topic belongs to the same process: the shard p.
 *
 * Threads (T = number of topics, W = number of workers):
 * - **poll thread** (1): serves the consumer's main queue with
 *   rd_kafka_consumer_poll(): rebalances, errors. On an assignment it asks
 *   `prepare()`, then `start_offset()` for every partition, forwards each
 *   partition's queue to its topic's queue and calls rd_kafka_assign(). The
 *   `prepare`, `start_offset`, `assigned` and `revoked` callbacks run here.
 * - **topic threads** (T): each polls its topic's queue and pushes every
 *   message into the ring (topic, partition % W).
 * - **workers** (W): worker w drains its T rings round-robin into batches of
 *   up to `max_batch` messages and calls `process()`; when there is nothing
 *   to do it calls `idle()` and sleeps (no spinning) until a topic thread
 *   wakes it or `tick_ms` passes.
 *
 * Guarantees:
 * - Shard = partition; every message of partition p goes to worker
 *   p % W, and the messages of one partition reach `process()` in offset
 *   order, each once per assignment (librdkafka may re-deliver after a
 *   rebalance if `start_offset` says so: offsets of record are the caller's).
 * - Back-pressure, nothing dropped: when a ring is full the topic thread
 *   pauses that partition (rd_kafka_pause_partitions()), keeps the message
 *   in a per-partition stash (librdkafka drops the partition's other
 *   pre-fetched messages; any that still arrive join the stash, in order),
 *   and goes on serving the topic's other partitions. When the ring has
 *   drained to half its capacity the topic thread pushes the stash and
 *   resumes the partition, which librdkafka fetches again from the offset
 *   after the last message read. A worker that frees room wakes its topic
 *   thread (rd_kafka_queue_yield()), so resuming waits for no poll timeout.
 *   A resumed partition's first fetch may wait for the broker's fetch in
 *   flight, up to `fetch.wait.max.ms`.
 * - Memory is bounded. Per topic: at most W × ring_capacity messages in
 *   rings; one stashed message per paused partition; and whatever
 *   librdkafka pre-fetched into the topic queue, up to
 *   `queued.max.messages.kbytes` (plus one fetch response of overshoot,
 *   `max.partition.fetch.bytes` per partition). Per worker: the batch
 *   process() holds. Messages are read one at a time (not with librdkafka's
 *   batch call, which 2.0.2 documents as unreliable with pause/resume, and
 *   which would fill a paused partition's stash with a whole batch).
 * - Settings lowered, only where the caller left librdkafka's default (they
 *   apply per topic queue, since partition queues are forwarded):
 *   `queued.max.messages.kbytes` 65536 → 4096, `queued.min.messages`
 *   100000 → 10000, and `fetch.wait.max.ms` 500 → 100 (how long a resumed
 *   partition can wait for its first fetch).
 * - Revocation is a barrier: before `revoked()` is called, the topic threads
 *   have stopped reading, every message already read (rings and stashes) has
 *   been through `process()`, and no `process()` call is running. After it,
 *   no message of the revoked partitions reaches `process()`.
 *
 * A fatal error of the handle does not stop the consumer: it gives up its
 * assignment and joins again with a new handle (kchat_consumer_lost()).
 *
 * Not handled here: committing offsets (use kchat_consumer_handle() with
 * rd_kafka_commit() from `revoked()`; enable.auto.commit is off),
 * partition EOF and error events (not passed to `process()`; each distinct
 * error code is logged to stderr once), and stuck-worker detection
 * (polling the topic queues keeps the member alive in the group even if a
 * worker never returns: watch worker progress from `process()`/`idle()`).
 */
#ifndef KCHAT_CONSUMER_H
#define KCHAT_CONSUMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>

#include "kchat/error.h"

/** Opaque consumer handle. */
typedef struct kchat_consumer kchat_consumer;

/** How the consumer is wired. kchat_consumer_start() copies it (and the
 *  topic names); the callbacks and `opaque` must stay valid until
 *  kchat_consumer_stop() returns. */
typedef struct kchat_consumer_conf {
    /** Topic names: the request topics and the internal topic, all with the
     *  same number of partitions. At least one, no duplicates. */
    const char *const *topics;
    size_t n_topics;
    /** Number of worker threads W, >= 1. Partition p goes to worker p % W. */
    unsigned n_workers;
    /** Capacity of each (topic thread, worker) ring, rounded up to a power
     *  of two; 0 means 1024. */
    size_t ring_capacity;
    /** The most messages handed to one process() call; 0 means 512. */
    size_t max_batch;
    /** idle() is called at least this often per worker, busy or not, and a
     *  sleeping worker wakes at least this often; 0 means 20 ms. */
    unsigned tick_ms;
    /** true: `fetch.wait.max.ms` is taken from the caller's librdkafka
     *  configuration as it is, even at librdkafka's default (the caller
     *  chose it); false: the consumer lowers that default (see above). */
    bool keep_fetch_wait;

    /** During an assignment, once per partition before it is assigned:
     *  the offset to start reading from (>= 0), or
     *  RD_KAFKA_OFFSET_BEGINNING. Other logical offsets are passed to
     *  librdkafka as they are (RD_KAFKA_OFFSET_INVALID: the group's
     *  committed offset, else `auto.offset.reset`). May be NULL, which
     *  means RD_KAFKA_OFFSET_INVALID for every partition.
     *  @locality poll thread */
    int64_t (*start_offset)(void *opaque, const char *topic, int32_t partition);

    /** Up to max_batch messages taken from the rings of worker `worker`
     *  (0..W-1). The messages of one partition arrive in offset order and
     *  always on worker partition % W; messages of different topics and
     *  partitions are interleaved. Error and EOF events are never passed.
     *  The pipeline destroys the messages after process() returns: copy
     *  whatever must outlive the call. Must not be NULL.
     *  @locality worker thread `worker` (one call at a time per worker) */
    void (*process)(void *opaque, unsigned worker, rd_kafka_message_t **msgs, size_t n);

    /** Called whenever worker `worker` has drained its rings and is about
     *  to sleep (so also every tick_ms while there is nothing to do), and,
     *  while it is busy, between two process() calls once tick_ms have
     *  passed since the last idle(). May be NULL.
     *  @locality worker thread `worker`, never during its process() */
    void (*idle)(void *opaque, unsigned worker);

    /** During an assignment, before `start_offset()` is asked for any
     *  partition of @p parts and before any of them is fetched: the caller
     *  makes ready what those partitions need (e.g. restores the state
     *  their start offsets are stored in). It may take long: librdkafka's
     *  background thread keeps the member's heartbeats going, and the topic
     *  threads stay parked meanwhile (the workers run, without input).
     *  Also called for an empty assignment. May be NULL.
     *  @locality poll thread */
    void (*prepare)(void *opaque, const rd_kafka_topic_partition_list_t *parts);

    /** After the partitions in @p parts were assigned (with their start
     *  offsets filled in), before any of their messages is processed. Also
     *  called for an empty assignment. May be NULL.
     *  @locality poll thread */
    void (*assigned)(void *opaque, const rd_kafka_topic_partition_list_t *parts);

    /** Before the partitions in @p parts are unassigned, after every
     *  message already read from them has been processed and while no
     *  process() call runs (see "Revocation is a barrier" above). Called for
     *  every rebalance that takes the assignment away, and once during
     *  kchat_consumer_stop() for the assignment held then. May be NULL.
     *  @locality poll thread (also during kchat_consumer_stop(), which
     *  waits for it) */
    void (*revoked)(void *opaque, const rd_kafka_topic_partition_list_t *parts);

    /** Passed to every callback. */
    void *opaque;
} kchat_consumer_conf;

/**
 * @brief Create the consumer, start its threads and subscribe.
 *
 * Returns as soon as the threads run; the group join and the first
 * assignment happen in the background (see kchat_consumer_ready()).
 *
 * @param[in] cc how to wire the consumer; copied.
 * @param[in] rk_conf librdkafka configuration with at least `group.id` and
 *            `bootstrap.servers` set by the caller. The consumer works on a
 *            copy in which it sets `enable.auto.commit=false`,
 *            `enable.auto.offset.store=false`,
 *            `partition.assignment.strategy=range`, its own rebalance
 *            callback and its own conf opaque (so other callbacks set on
 *            @p rk_conf receive the consumer's internal pointer as opaque:
 *            do not rely on it), and lowers `queued.max.messages.kbytes`,
 *            `queued.min.messages` and (unless `keep_fetch_wait`)
 *            `fetch.wait.max.ms` where they are at librdkafka's defaults
 *            (see above).
 * @param[out] out the consumer; set only on success.
 * @param[out] errstr receives a message on failure (may be NULL).
 * @param[in] errstr_size size of @p errstr.
 * @return KCHAT_OK: @p rk_conf now belongs to the consumer (it is destroyed).
 *         On error @p rk_conf is untouched and still the caller's, no
 *         callback has been called and none will be (one exception: when a
 *         thread cannot be created, KCHAT_EIO, workers started before it
 *         may have called idle()):
 *         KCHAT_EINVAL: a NULL argument, no topics, an empty or duplicate
 *         topic name, n_workers 0 or process NULL;
 *         KCHAT_ECONFIG: no group.id, or librdkafka refused a setting or
 *         the handle (message in @p errstr);
 *         KCHAT_EKAFKA: subscribing failed;
 *         KCHAT_ENOMEM; KCHAT_EIO: a thread could not be created.
 * @locality any thread; the consumer's own threads (poll, topic, worker)
 *           are started here
 */
KCHAT_MUST_CHECK
int kchat_consumer_start(const kchat_consumer_conf *cc, rd_kafka_conf_t *rk_conf,
                         kchat_consumer **out, char *errstr, size_t errstr_size);

/**
 * @brief Stop reading, finish what was read, leave the group, free.
 *
 * In order: the poll thread unsubscribes (unless the handle is a static
 * member, `group.instance.id` set, which stays in its group as closing
 * would leave it), answers every rebalance event queued as a rebalance is
 * answered, and revokes what is still assigned (the topic threads stop
 * reading, the workers process every message already read, `revoked()` is
 * called, the partition queues are un-forwarded and released, the
 * assignment is cleared; an assignment raised while stopping is answered
 * with none, calling neither `prepare()` nor `assigned()`); the topic
 * threads and workers are joined; then the consumer is closed (a dynamic
 * member has left the group by then; a static one does not leave it) and
 * destroyed. Messages librdkafka had
 * pre-fetched but not handed over are discarded, so a later owner reads
 * them again from its start offset.
 *
 * Takes as long as the workers need to process what is in the rings, plus
 * the group leave (normally milliseconds).
 *
 * @param[in] c the consumer, or NULL (no-op). Invalid afterwards.
 * @locality any thread except the consumer's own: never from a callback
 *           (process, idle, start_offset, assigned, revoked): that
 *           deadlocks.
 */
void kchat_consumer_stop(kchat_consumer *c);

/**
 * @brief The consumer's librdkafka handle, for commits, positions and
 *        metadata.
 * @return borrowed; valid until kchat_consumer_stop() begins, or until the
 *         poll thread replaces it after a fatal error (see
 *         kchat_consumer_lost()): only the consumer's callbacks on the poll
 *         thread may rely on it, or a caller before the first assignment.
 *         Do not poll it, change its subscription or assignment,
 *         pause/resume its partitions, close or destroy it.
 * @locality the poll thread (the consumer's callbacks); any thread before
 *           kchat_consumer_ready()
 */
rd_kafka_t *kchat_consumer_handle(kchat_consumer *c);

/**
 * @brief Whether the assignment being revoked may already belong to another
 *        member: librdkafka says it was lost (the session timed out), or
 *        the handle failed with a fatal error.
 *
 * A fatal error (RD_KAFKA_RESP_ERR__FATAL; librdkafka 2.0.2 raises one when
 * the group fences a static member that rejoined after its session timed
 * out) does not stop the consumer: the poll thread revokes the assignment
 * (`revoked()` sees this return true), closes the handle, builds a new one
 * on the same configuration and subscribes again; kchat_consumer_ready()
 * is false until the new handle's first assignment, and
 * kchat_consumer_stats.renewals counts the replacements.
 * @locality the poll thread, inside `revoked()`
 */
bool kchat_consumer_lost(kchat_consumer *c);

/**
 * @brief Whether the first assignment (possibly empty) has been applied and
 *        announced with `assigned()`.
 * @locality any thread (lock-free)
 */
bool kchat_consumer_ready(const kchat_consumer *c);

/**
 * @brief Wake worker @p worker: it calls idle() soon, even when it sleeps
 *        (a worker waiting for something outside its rings).
 * @param[in] c the consumer; it must not be stopping or stopped (the
 *              caller makes sure, e.g. under its own lock).
 * @locality any thread
 * @locks takes the worker's mutex
 */
void kchat_consumer_wake(kchat_consumer *c, unsigned worker);

/** Counters since start. */
typedef struct kchat_consumer_stats {
    uint64_t consumed;        /**< messages read from Kafka (events not counted) */
    uint64_t paused_events;   /**< times a partition was paused for a full ring */
    uint64_t resumed_events;  /**< times such a partition was resumed */
    size_t ring_fill_max;     /**< highest fill of any ring seen (sampled) */
    unsigned paused_now;      /**< partitions paused right now */
    uint64_t renewals;        /**< handles replaced after a fatal error */
} kchat_consumer_stats;

/**
 * @brief Read the counters.
 * @param[in] c the consumer.
 * @param[out] out filled with a snapshot (each field read atomically, not
 *             all together).
 * @locality any thread (lock-free)
 */
void kchat_consumer_get_stats(kchat_consumer *c, kchat_consumer_stats *out);

#endif /* KCHAT_CONSUMER_H */
