/*
 * Private to src/pipeline/consumer*.c: the consumer's structs and the
 * helpers its parts share (include/kchat/consumer.h is the contract).
 *
 * One file per thread role:
 *   consumer.c         configuration defaults, start, stop, counters
 *   consumer_poll.c    the poll thread: group membership, rebalances,
 *                      start offsets, the assignment/revocation barrier
 *   consumer_topic.c   the topic threads: reading, pushing into rings,
 *                      back-pressure (pause, stash, resume)
 *   consumer_worker.c  the workers: draining rings into batches, idle and
 *                      tick, sleeping and being woken
 *
 * Who touches what:
 * - `struct ctopic.parts` (partition table, stashes, pause state): the topic
 *   thread while it runs; the poll thread only while every topic thread is
 *   parked (park_all() .. unpark_all() in consumer_poll.c), which the mutex
 *   hand-off orders; the stopping thread once every thread was joined.
 * - `struct lane.ring`: topic thread = producer, worker = consumer.
 * - `kchat_consumer.assignment`: the poll thread (and stop after joining it).
 * - Everything under `mu`: the park and drain hand-shakes.
 *
 * Wake-ups cannot be lost. Each side publishes its ring operation and then
 * does a read-modify-write of the same flag; RMWs on one atomic are totally
 * ordered and each reads the latest value, so whichever comes second either
 * sees the other's flag or synchronizes with it (and so sees its push/pop):
 *   topic thread: push (release) ; exchange(worker.sleeping, false) -> kick?
 *   worker:       exchange(sleeping, true) (acq_rel) ; re-read ring tails
 * and
 *   topic thread: exchange(lane.want_space, true) (acq_rel) ; re-read count
 *   worker:       pop (release) ; exchange(want_space, false) -> yield?
 * Every write to either flag is an RMW, so any later RMW continues the
 * release sequence of every earlier one. (RMWs rather than fences and plain
 * loads: ThreadSanitizer models the former.)
 */
#ifndef KCHAT_CONSUMER_INT_H
#define KCHAT_CONSUMER_INT_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kchat/consumer.h"
#include "kchat/ring.h"

#define POLL_MS      100   /* poll timeout when nothing is waiting */
#define LOG_ONCE_MAX 64    /* distinct error codes logged per consumer */

struct ctopic;
struct cworker;

/* The ring from one topic thread to one worker, with the flag by which the
 * topic thread asks that worker for a wake-up once the ring has drained to
 * `low_water`. The flag has a cache line of its own: the worker writes it
 * after every run of pops, the topic thread reads `ring` on every push. */
struct lane {
    alignas(64) kchat_ring *ring;   /* read-only fields on the first line */
    struct ctopic *topic;
    struct cworker *worker;
    size_t low_water;
    alignas(64) atomic_bool want_space;  /* RMW'd by the worker per pop run */
};

/* One partition of one topic, as seen by its topic thread (see "Who
 * touches what" above). */
struct cpart {
    rd_kafka_queue_t *pq;       /* its queue, forwarded to the topic queue */
    bool active;                /* in the current assignment */
    bool paused;                /* paused by us (a full ring) */
    int64_t next_offset;        /* after the last message read; -1 unknown */
    rd_kafka_message_t **stash; /* FIFO of messages read but not in a ring */
    size_t s_head, s_len, s_cap;
};

/* One topic and the thread that reads it. */
struct ctopic {
    kchat_consumer *c;
    unsigned idx;
    char *name;
    rd_kafka_queue_t *q;        /* the topic queue (ours) */
    pthread_t thr;
    bool started;
    struct cpart *parts;        /* [n_parts], indexed by partition */
    int32_t n_parts;
    unsigned n_paused;          /* parts with paused == true */
    bool *touched;              /* [W]: pushed to that worker since last wake */
    uint64_t parked_gen;        /* under c->mu */
};

/* One worker thread. */
struct cworker {
    kchat_consumer *c;
    unsigned idx;
    pthread_t thr;
    bool started;
    struct lane **lanes;        /* [T]: lanes[t] is ring (t, idx) */
    unsigned rr;                /* lane to start the next batch with */
    rd_kafka_message_t **batch; /* [max_batch] */
    alignas(64) atomic_bool sleeping;   /* RMW'd by topic threads per batch */
    atomic_bool exit;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool signalled;             /* under mu */
    uint64_t drain_ack;         /* written under c->mu */
};

struct kchat_consumer {
    kchat_consumer_conf conf;   /* copy; conf.topics is not used */
    unsigned T, W;
    rd_kafka_conf_t *rk_conf;   /* the caller's, kept to build a new handle */
    rd_kafka_t *rk;             /* replaced only by the poll thread (renew) */
    rd_kafka_queue_t *cq;       /* consumer queue ref, only to yield the poll thread;
                                   swapped and yielded under mu */
    struct ctopic *topics;      /* [T] */
    struct cworker *workers;    /* [W] */
    unsigned n_workers_init;    /* workers whose mutex/cond exist */
    struct lane *lanes;         /* [T * W], lane (t, w) at t * W + w */
    pthread_t poll_thr;
    bool poll_started;
    bool closing;               /* rebalance_cb only clears the assignment */
    bool stop_revoked;          /* poll thread, stopping: likewise */
    bool lost;                  /* poll thread: the assignment being revoked may be
                                   another's already (renew) */
    rd_kafka_topic_partition_list_t *assignment;  /* poll thread */
    atomic_bool stopping;
    atomic_bool ready;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t park_gen;          /* under mu: topic threads are asked to park */
    uint64_t unpark_gen;        /* under mu: ... and released */
    bool topics_exit;           /* under mu: released topic threads leave */
    atomic_uint_fast64_t park_req;   /* = park_gen, read without the lock */
    atomic_uint_fast64_t drain_req;  /* workers ack once their rings are empty */

    atomic_uint_fast64_t consumed, paused_events, resumed_events, renewals;
    atomic_size_t ring_fill_max;
    atomic_uint paused_now;

    pthread_mutex_t log_mu;
    int logged[LOG_ONCE_MAX];
    unsigned n_logged;
};

/* The lane from topic @p t to worker @p w. */
static inline struct lane *kchat__lane_of(kchat_consumer *c, unsigned t, unsigned w)
{
    return &c->lanes[(size_t)t * c->W + w];
}

/* The lane that carries partition @p p of topic @p t (to worker p % W). */
static inline struct lane *kchat__lane_of_part(kchat_consumer *c, unsigned t, int32_t p)
{
    return kchat__lane_of(c, t, (unsigned)p % c->W);
}

/* ---- consumer.c ---- */

/* Log an error to stderr, once per error code per consumer; @p topic may be
 * NULL (then @p partition is not printed), @p msg NULL (librdkafka's text).
 * @locality any thread
 * @locks takes c->log_mu (must not be held) */
void kchat__consumer_log_once(kchat_consumer *c, rd_kafka_resp_err_t err, const char *topic,
                              int32_t partition, const char *msg);

/* kchat__consumer_log_once() for an error event read from a queue; partition
 * EOF is not logged.
 * @locality any thread
 * @locks takes c->log_mu (must not be held) */
void kchat__consumer_log_message_error(kchat_consumer *c, const rd_kafka_message_t *m);

/* Replace the handle after a fatal error: drop the topic and consumer
 * queues, close and destroy the handle, build a new one on c->rk_conf and
 * subscribe again. On error c->rk is NULL (the old one is gone either way).
 * @locality poll thread, with every topic thread parked and the assignment
 *   revoked (no partition queue left)
 * @return KCHAT_OK; KCHAT_ECONFIG, KCHAT_ENOMEM (the handle or a queue could
 *   not be made), KCHAT_EKAFKA (subscribing failed), message in @p errstr
 * @locks takes c->mu (must not be held) */
KCHAT_MUST_CHECK
int kchat__consumer_reopen(kchat_consumer *c, char *errstr, size_t errstr_size);

/* ---- consumer_poll.c ---- */

/* The poll thread's main: serves rebalances (kchat__consumer_rebalance_cb())
 * and errors until `c->stopping`, then revokes the assignment and lets the
 * topic threads leave. @p arg is the consumer.
 * @locality poll thread (started by kchat_consumer_start()) */
void *kchat__consumer_poll_main(void *arg);

/* librdkafka's rebalance callback (@p opaque is the consumer): applies an
 * assignment or revokes one (see "Revocation is a barrier" in consumer.h).
 * @locality poll thread, inside rd_kafka_consumer_poll(); and the stopping
 *   thread inside rd_kafka_consumer_close(), when `c->closing` is set and the
 *   poll thread is gone */
void kchat__consumer_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                  rd_kafka_topic_partition_list_t *parts, void *opaque);

/* Release every partition: resume what we paused, drop what is stashed (only
 * if a topic thread never ran), un-forward and drop the partition queues.
 * @locality poll thread while every topic thread is parked; or the stopping
 *   thread once every topic thread was joined */
void kchat__consumer_release_partitions(kchat_consumer *c);

/* ---- consumer_topic.c ---- */

/* The main of topic @p arg's thread.
 * @locality that topic's thread (started by kchat_consumer_start()) */
void *kchat__consumer_topic_main(void *arg);

/* Resume partition @p p of @p t, which we paused; with @p refetch also seek
 * it to where it stopped, so that it is fetched again at once.
 * @locality the thread that owns t->parts: t's thread; or the poll thread
 *   while t's thread is parked, or the stopping thread after joining it */
void kchat__consumer_part_resume(struct ctopic *t, int32_t p, bool refetch);

/* ---- consumer_worker.c ---- */

/* The main of worker @p arg's thread.
 * @locality that worker's thread (started by kchat_consumer_start()) */
void *kchat__consumer_worker_main(void *arg);

/* Wake worker @p w if it sleeps (or keep it from sleeping next time).
 * @locality any thread (topic threads, the poll thread, the stopping thread)
 * @locks takes w->mu (must not be held) */
void kchat__consumer_worker_kick(struct cworker *w);

#endif /* KCHAT_CONSUMER_INT_H */
