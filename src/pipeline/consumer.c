/*
 * The input side of the pipeline (see include/kchat/consumer.h).
 *
 * Who touches what:
 * - `struct ctopic.parts` (partition table, stashes, pause state): the topic
 *   thread while it runs; the poll thread only while every topic thread is
 *   parked (park_all() .. unpark_all()), which the mutex hand-off orders.
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
#include "kchat/consumer.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kchat/error.h"
#include "kchat/ring.h"

#define DEFAULT_RING_CAPACITY 1024
#define DEFAULT_MAX_BATCH     512
#define DEFAULT_TICK_MS       20
#define TOPIC_BURST           256   /* messages a topic thread handles between
                                       wake-ups of the workers */
#define POLL_MS               100   /* poll timeout when nothing is waiting */
#define STASH_POLL_MS         10    /* ... when a partition waits for room */
#define STASH_INIT            16
#define LOG_ONCE_MAX          64
#define QUEUED_KBYTES_DEFAULT "65536"   /* librdkafka 2.0.2's defaults ... */
#define QUEUED_MIN_DEFAULT    "100000"
#define FETCH_WAIT_DEFAULT    "500"
#define QUEUED_KBYTES_KCHAT   "4096"    /* ... and what we lower them to */
#define QUEUED_MIN_KCHAT      "10000"
#define FETCH_WAIT_KCHAT      "100"

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

/* One partition of one topic, as seen by its topic thread. */
struct cpart {
    rd_kafka_queue_t *pq;       /* its queue, forwarded to the topic queue */
    bool active;                /* in the current assignment */
    bool paused;                /* paused by us (a full ring) */
    int64_t next_offset;        /* after the last message read; -1 unknown */
    rd_kafka_message_t **stash; /* FIFO of messages read but not in a ring */
    size_t s_head, s_len, s_cap;
};

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
    rd_kafka_t *rk;
    rd_kafka_queue_t *cq;       /* consumer queue ref, only to yield the poll thread */
    struct ctopic *topics;      /* [T] */
    struct cworker *workers;    /* [W] */
    unsigned n_workers_init;    /* workers whose mutex/cond exist */
    struct lane *lanes;         /* [T * W], lane (t, w) at t * W + w */
    pthread_t poll_thr;
    bool poll_started;
    bool closing;               /* rebalance_cb only clears the assignment */
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

    atomic_uint_fast64_t consumed, paused_events, resumed_events;
    atomic_size_t ring_fill_max;
    atomic_uint paused_now;

    pthread_mutex_t log_mu;
    int logged[LOG_ONCE_MAX];
    unsigned n_logged;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_err(char *errstr, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *errstr, size_t size, const char *fmt, ...)
{
    if (!errstr || !size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, size, fmt, ap);
    va_end(ap);
}

/* Log an error to stderr, once per error code per consumer. */
static void log_once(kchat_consumer *c, rd_kafka_resp_err_t err, const char *topic,
                     int32_t partition, const char *msg)
{
    bool first = true;
    pthread_mutex_lock(&c->log_mu);
    for (unsigned i = 0; i < c->n_logged; i++)
        if (c->logged[i] == (int)err)
            first = false;
    if (first && c->n_logged < LOG_ONCE_MAX)
        c->logged[c->n_logged++] = (int)err;
    pthread_mutex_unlock(&c->log_mu);
    if (!first)
        return;
    if (topic)
        fprintf(stderr, "kchat consumer: %s [%" PRId32 "]: %s: %s (further %s errors not logged)\n",
                topic, partition, rd_kafka_err2name(err), msg ? msg : rd_kafka_err2str(err),
                rd_kafka_err2name(err));
    else
        fprintf(stderr, "kchat consumer: %s: %s (further %s errors not logged)\n",
                rd_kafka_err2name(err), msg ? msg : rd_kafka_err2str(err),
                rd_kafka_err2name(err));
}

static void log_message_error(kchat_consumer *c, const rd_kafka_message_t *m)
{
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
    log_once(c, m->err, m->rkt ? rd_kafka_topic_name(m->rkt) : NULL, m->partition,
             rd_kafka_message_errstr(m));
}

static struct lane *lane_of(kchat_consumer *c, unsigned t, unsigned w)
{
    return &c->lanes[(size_t)t * c->W + w];
}

/* Pause or resume one partition. Returns the librdkafka error, if any. */
static rd_kafka_resp_err_t pause_resume(kchat_consumer *c, const char *topic, int32_t p,
                                        bool pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    if (!l)
        return RD_KAFKA_RESP_ERR__CRIT_SYS_RESOURCE;
    rd_kafka_topic_partition_list_add(l, topic, p);
    rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(c->rk, l)
                                    : rd_kafka_resume_partitions(c->rk, l);
    if (!err)
        err = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    if (err)
        log_once(c, err, topic, p, pause ? "pausing a partition failed"
                                         : "resuming a partition failed");
    return err;
}

/* ------------------------------------------------------------------ */
/* Workers                                                              */

static void worker_kick(struct cworker *w)
{
    pthread_mutex_lock(&w->mu);
    w->signalled = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static bool worker_has_input(struct cworker *w)
{
    for (unsigned t = 0; t < w->c->T; t++)
        if (kchat_ring_count(w->lanes[t]->ring) > 0)
            return true;
    return false;
}

/* After popping from a lane: wake its topic thread if it waits for the
 * ring to drain to low water. Only this worker clears the flag, so putting
 * it back when the ring is not low enough yet races with nobody. */
static void lane_popped(struct lane *ln)
{
    if (atomic_exchange(&ln->want_space, false)) {
        if (kchat_ring_count(ln->ring) <= ln->low_water)
            rd_kafka_queue_yield(ln->topic->q);
        else
            atomic_exchange(&ln->want_space, true);
    }
}

/* Fill w->batch round-robin from the worker's rings. */
static size_t worker_collect(struct cworker *w)
{
    const unsigned T = w->c->T;
    const size_t max = w->c->conf.max_batch;
    const size_t quota = max / T ? max / T : 1;
    const unsigned start = w->rr;
    size_t n = 0;
    bool progress;

    w->rr = (w->rr + 1) % T;
    do {
        progress = false;
        for (unsigned k = 0; k < T && n < max; k++) {
            struct lane *ln = w->lanes[(start + k) % T];
            size_t got = 0;
            rd_kafka_message_t *m;
            while (got < quota && n < max && (m = kchat_ring_pop(ln->ring))) {
                w->batch[n++] = m;
                got++;
            }
            if (got) {
                progress = true;
                lane_popped(ln);
            }
        }
    } while (progress && n < max);
    return n;
}

/* Sleep until kicked or @p ms pass, unless there is work already. */
static void worker_sleep(struct cworker *w, int64_t ms, uint64_t drain_seen)
{
    kchat_consumer *c = w->c;

    atomic_exchange(&w->sleeping, true);
    if (worker_has_input(w) || atomic_load(&w->exit) ||
        atomic_load(&c->drain_req) != drain_seen) {
        atomic_exchange(&w->sleeping, false);
        return;
    }

    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (ms % 1000) * 1000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&w->mu);
    while (!w->signalled)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) == ETIMEDOUT)
            break;
    w->signalled = false;
    pthread_mutex_unlock(&w->mu);
    atomic_exchange(&w->sleeping, false);
}

static void *worker_main(void *arg)
{
    struct cworker *w = arg;
    kchat_consumer *c = w->c;
    const kchat_consumer_conf *cf = &c->conf;
    int64_t last_idle = now_ms();

    for (;;) {
        /* Read the drain request before looking at the rings: an ack means
         * "empty after the request was made". */
        uint64_t dreq = atomic_load_explicit(&c->drain_req, memory_order_acquire);
        size_t n = worker_collect(w);
        if (n) {
            cf->process(cf->opaque, w->idx, w->batch, n);
            for (size_t i = 0; i < n; i++)
                rd_kafka_message_destroy(w->batch[i]);
            if (cf->idle && now_ms() - last_idle >= cf->tick_ms) {
                cf->idle(cf->opaque, w->idx);
                last_idle = now_ms();
            }
            continue;
        }
        if (w->drain_ack != dreq) {
            pthread_mutex_lock(&c->mu);
            w->drain_ack = dreq;
            pthread_cond_broadcast(&c->cv);
            pthread_mutex_unlock(&c->mu);
        }
        if (atomic_load(&w->exit))
            break;
        if (cf->idle) {
            cf->idle(cf->opaque, w->idx);
            last_idle = now_ms();
        }
        worker_sleep(w, cf->tick_ms, dreq);
    }
    return NULL;
}

/* Poll thread: wait until every worker has processed all that is in its
 * rings now and is out of process(). The producers must be parked. */
static void drain_workers(kchat_consumer *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t gen = atomic_load(&c->drain_req) + 1;
    atomic_store(&c->drain_req, gen);
    pthread_mutex_unlock(&c->mu);
    for (unsigned w = 0; w < c->W; w++)
        if (c->workers[w].started)
            worker_kick(&c->workers[w]);
    pthread_mutex_lock(&c->mu);
    for (unsigned w = 0; w < c->W; w++)
        while (c->workers[w].started && c->workers[w].drain_ack < gen)
            pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

/* ------------------------------------------------------------------ */
/* Topic threads                                                        */

static bool lane_push(struct ctopic *t, struct lane *ln, rd_kafka_message_t *m)
{
    if (!kchat_ring_push(ln->ring, m))
        return false;
    t->touched[ln->worker->idx] = true;
    return true;
}

/* Wake the workers this thread pushed to, if they sleep; sample ring fill. */
static void topic_wake_workers(struct ctopic *t)
{
    kchat_consumer *c = t->c;
    for (unsigned w = 0; w < c->W; w++) {
        if (!t->touched[w])
            continue;
        t->touched[w] = false;
        struct cworker *wk = &c->workers[w];
        if (atomic_exchange(&wk->sleeping, false))
            worker_kick(wk);
        size_t fill = kchat_ring_count(lane_of(c, t->idx, w)->ring);
        size_t max = atomic_load_explicit(&c->ring_fill_max, memory_order_relaxed);
        while (fill > max && !atomic_compare_exchange_weak(&c->ring_fill_max, &max, fill))
            ;
    }
}

static int stash_append(struct cpart *pp, rd_kafka_message_t *m)
{
    if (pp->s_len == pp->s_cap) {
        size_t cap = pp->s_cap ? pp->s_cap * 2 : STASH_INIT;
        rd_kafka_message_t **s = malloc(cap * sizeof(*s));
        if (!s)
            return KCHAT_ENOMEM;
        for (size_t i = 0; i < pp->s_len; i++)
            s[i] = pp->stash[(pp->s_head + i) % pp->s_cap];
        free(pp->stash);
        pp->stash = s;
        pp->s_cap = cap;
        pp->s_head = 0;
    }
    pp->stash[(pp->s_head + pp->s_len) % pp->s_cap] = m;
    pp->s_len++;
    return KCHAT_OK;
}

/* Push as much of the stash as fits. True when the stash is empty. */
static bool stash_push(struct ctopic *t, struct cpart *pp, struct lane *ln)
{
    while (pp->s_len) {
        if (!lane_push(t, ln, pp->stash[pp->s_head]))
            return false;
        pp->s_head = (pp->s_head + 1) % pp->s_cap;
        pp->s_len--;
    }
    return true;
}

static void nap(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Hand one message read from the topic queue to its ring, or stash it and
 * pause its partition. Takes ownership of @p m. */
static void topic_dispatch(struct ctopic *t, rd_kafka_message_t *m)
{
    kchat_consumer *c = t->c;
    if (m->err) {
        log_message_error(c, m);
        rd_kafka_message_destroy(m);
        return;
    }
    int32_t p = m->partition;
    if (p < 0 || p >= t->n_parts || !t->parts[p].active) {
        /* Left over from an assignment that is gone (librdkafka filters
         * these itself; this is a second line). */
        rd_kafka_message_destroy(m);
        return;
    }
    atomic_fetch_add_explicit(&c->consumed, 1, memory_order_relaxed);
    struct cpart *pp = &t->parts[p];
    pp->next_offset = m->offset + 1;
    struct lane *ln = lane_of(c, t->idx, (unsigned)p % c->W);
    if (pp->s_len == 0 && lane_push(t, ln, m))
        return;

    /* Full ring (or messages already waiting): keep it, in order. */
    while (stash_append(pp, m) != KCHAT_OK) {
        /* Out of memory for the stash: wait for the ring instead. */
        log_once(c, RD_KAFKA_RESP_ERR__CRIT_SYS_RESOURCE, t->name, p, "stash allocation failed");
        topic_wake_workers(t);
        nap(1000);
        if (stash_push(t, pp, ln) && lane_push(t, ln, m))
            return;
    }
    if (!pp->paused) {
        topic_wake_workers(t);   /* before the (synchronous) pause call */
        pause_resume(c, t->name, p, true);
        pp->paused = true;
        t->n_paused++;
        atomic_fetch_add_explicit(&c->paused_events, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->paused_now, 1, memory_order_relaxed);
    }
}

/* Resume a partition we paused. With @p refetch, also seek it to where it
 * stopped: librdkafka 2.0.2 handles a resume on its main thread without
 * waking the partition's broker thread, which, if every partition it
 * fetches for is paused, sleeps up to a second before fetching again. A seek
 * to the same position wakes it (and changes nothing else: the pause already
 * made librdkafka drop what it had pre-fetched beyond that position). */
static void part_resume(struct ctopic *t, int32_t p, bool refetch)
{
    kchat_consumer *c = t->c;
    pause_resume(c, t->name, p, false);
    if (refetch && t->parts[p].next_offset >= 0) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        if (l) {
            rd_kafka_topic_partition_list_add(l, t->name, p)->offset = t->parts[p].next_offset;
            rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 0 /* async */);
            if (e) {
                log_once(c, rd_kafka_error_code(e), t->name, p, rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
            }
            rd_kafka_topic_partition_list_destroy(l);
        }
    }
    t->parts[p].paused = false;
    t->n_paused--;
    atomic_fetch_add_explicit(&c->resumed_events, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&c->paused_now, 1, memory_order_relaxed);
}

/* Move stashes into rings that have room; resume partitions whose stash is
 * empty and whose ring is down to its low-water mark; for the others ask
 * the worker for a wake-up. */
static void topic_unstash(struct ctopic *t)
{
    kchat_consumer *c = t->c;
    for (int32_t p = 0; p < t->n_parts && t->n_paused; p++) {
        struct cpart *pp = &t->parts[p];
        if (!pp->paused)
            continue;
        struct lane *ln = lane_of(c, t->idx, (unsigned)p % c->W);
        for (;;) {
            bool empty = stash_push(t, pp, ln);
            if (empty && kchat_ring_count(ln->ring) <= ln->low_water) {
                part_resume(t, p, true);
                break;
            }
            atomic_exchange(&ln->want_space, true);
            if (kchat_ring_count(ln->ring) > ln->low_water)
                break;   /* the worker will yield our queue */
        }
    }
}

/* Before parking: every message read goes into a ring, waiting for room
 * (the workers are running). Partitions stay paused; the poll thread
 * resumes them when it revokes. */
static void topic_flush_blocking(struct ctopic *t)
{
    kchat_consumer *c = t->c;
    for (int32_t p = 0; p < t->n_parts; p++) {
        struct cpart *pp = &t->parts[p];
        struct lane *ln = lane_of(c, t->idx, (unsigned)p % c->W);
        while (!stash_push(t, pp, ln)) {
            topic_wake_workers(t);
            nap(200);
        }
    }
    topic_wake_workers(t);
}

/* Park until released; true when told to exit. */
static bool topic_park(struct ctopic *t, uint64_t gen)
{
    kchat_consumer *c = t->c;
    topic_flush_blocking(t);
    pthread_mutex_lock(&c->mu);
    t->parked_gen = gen;
    pthread_cond_broadcast(&c->cv);
    while (c->unpark_gen < gen)
        pthread_cond_wait(&c->cv, &c->mu);
    bool leave = c->topics_exit;
    pthread_mutex_unlock(&c->mu);
    return leave;
}

static void *topic_main(void *arg)
{
    struct ctopic *t = arg;
    kchat_consumer *c = t->c;
    uint64_t seen = 0;

    for (;;) {
        uint64_t req = atomic_load_explicit(&c->park_req, memory_order_acquire);
        if (req != seen) {
            seen = req;
            if (topic_park(t, req))
                break;
            continue;
        }
        if (t->n_paused)
            topic_unstash(t);

        /* One message at a time, not rd_kafka_consume_batch_queue(): once a
         * partition is paused, librdkafka drops its pre-fetched messages
         * from the queue (version barrier), so its stash never holds more
         * than the one message that found the ring full. A batch taken
         * before the pause could hold hundreds of them. (The batch call
         * locks the queue per message too, so this costs little.) */
        rd_kafka_message_t *m =
            rd_kafka_consume_queue(t->q, t->n_paused ? STASH_POLL_MS : POLL_MS);
        for (int n = 0; m; ) {
            topic_dispatch(t, m);
            if (++n == TOPIC_BURST)
                break;
            m = rd_kafka_consume_queue(t->q, 0);
        }
        topic_wake_workers(t);
    }
    return NULL;
}

/* Poll (or stop) thread: stop every topic thread at the top of its loop,
 * with its stashes flushed into the rings. */
static void park_all(kchat_consumer *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t gen = ++c->park_gen;
    atomic_store(&c->park_req, gen);
    pthread_mutex_unlock(&c->mu);
    for (unsigned t = 0; t < c->T; t++)
        if (c->topics[t].started)
            rd_kafka_queue_yield(c->topics[t].q);
    pthread_mutex_lock(&c->mu);
    for (unsigned t = 0; t < c->T; t++)
        while (c->topics[t].started && c->topics[t].parked_gen < gen)
            pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static void unpark_all(kchat_consumer *c, bool leave)
{
    pthread_mutex_lock(&c->mu);
    c->unpark_gen = c->park_gen;
    c->topics_exit = leave;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* ------------------------------------------------------------------ */
/* Assignment (poll thread, topic threads parked)                       */

static struct ctopic *topic_by_name(kchat_consumer *c, const char *name)
{
    for (unsigned t = 0; t < c->T; t++)
        if (strcmp(c->topics[t].name, name) == 0)
            return &c->topics[t];
    return NULL;
}

static int topic_grow(struct ctopic *t, int32_t n)
{
    if (n <= t->n_parts)
        return KCHAT_OK;
    struct cpart *np = realloc(t->parts, (size_t)n * sizeof(*np));
    if (!np)
        return KCHAT_ENOMEM;
    memset(np + t->n_parts, 0, (size_t)(n - t->n_parts) * sizeof(*np));
    t->parts = np;
    t->n_parts = n;
    return KCHAT_OK;
}

/* Release every partition: resume what we paused, un-forward and drop the
 * partition queues. Stashes must be empty (the topic threads flushed). */
static void release_partitions(kchat_consumer *c)
{
    for (unsigned i = 0; i < c->T; i++) {
        struct ctopic *t = &c->topics[i];
        for (int32_t p = 0; p < t->n_parts; p++) {
            struct cpart *pp = &t->parts[p];
            if (pp->paused)
                part_resume(t, p, false);   /* unassigned next: no fetch */
            while (pp->s_len) {   /* only if a topic thread never ran */
                rd_kafka_message_destroy(pp->stash[pp->s_head]);
                pp->s_head = (pp->s_head + 1) % pp->s_cap;
                pp->s_len--;
            }
            if (pp->pq) {
                rd_kafka_queue_forward(pp->pq, NULL);
                rd_kafka_queue_destroy(pp->pq);
                pp->pq = NULL;
            }
            pp->active = false;
        }
    }
}

/* Take the current assignment away, as a revoke does. Topic threads parked. */
static void revoke_parked(kchat_consumer *c)
{
    drain_workers(c);
    if (c->assignment && c->conf.revoked)
        c->conf.revoked(c->conf.opaque, c->assignment);
    rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, NULL);
    if (err)
        log_once(c, err, NULL, -1, "clearing the assignment failed");
    release_partitions(c);
    if (c->assignment) {
        rd_kafka_topic_partition_list_destroy(c->assignment);
        c->assignment = NULL;
    }
}

static void on_assign(kchat_consumer *c, rd_kafka_topic_partition_list_t *parts)
{
    park_all(c);
    if (c->assignment)   /* eager protocol revokes first; be safe anyway */
        revoke_parked(c);

    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *e = &parts->elems[i];
        struct ctopic *t = topic_by_name(c, e->topic);
        if (!t || e->partition < 0) {
            log_once(c, RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, e->topic, e->partition,
                     "assigned a partition of a topic not subscribed");
            continue;
        }
        if (topic_grow(t, e->partition + 1) != KCHAT_OK) {
            log_once(c, RD_KAFKA_RESP_ERR__CRIT_SYS_RESOURCE, e->topic, e->partition,
                     "out of memory for the partition table: partition not consumed");
            e->offset = RD_KAFKA_OFFSET_END;
            continue;
        }
        e->offset = c->conf.start_offset
                        ? c->conf.start_offset(c->conf.opaque, e->topic, e->partition)
                        : RD_KAFKA_OFFSET_INVALID;
        struct cpart *pp = &t->parts[e->partition];
        if (pp->pq)   /* listed twice: keep one reference */
            rd_kafka_queue_destroy(pp->pq);
        pp->pq = rd_kafka_queue_get_partition(c->rk, e->topic, e->partition);
        if (pp->pq)
            rd_kafka_queue_forward(pp->pq, t->q);
        else
            log_once(c, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION, e->topic, e->partition,
                     "no queue for an assigned partition");
        pp->active = true;
        pp->paused = false;
        pp->next_offset = -1;
    }

    rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, parts);
    if (err)
        log_once(c, err, NULL, -1, "applying the assignment failed");
    c->assignment = rd_kafka_topic_partition_list_copy(parts);
    if (c->conf.assigned)
        c->conf.assigned(c->conf.opaque, parts);
    atomic_store(&c->ready, true);
    unpark_all(c, false);
}

static void on_revoke(kchat_consumer *c)
{
    park_all(c);
    revoke_parked(c);
    unpark_all(c, false);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    kchat_consumer *c = opaque;
    if (c->closing) {
        /* Inside rd_kafka_consumer_close(): everything was revoked already. */
        rd_kafka_assign(rk, NULL);
        return;
    }
    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        on_assign(c, parts);
        break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        on_revoke(c);
        break;
    default:
        log_once(c, err, NULL, -1, "rebalance failed; assignment cleared");
        on_revoke(c);
        break;
    }
}

/* ------------------------------------------------------------------ */
/* Poll thread                                                          */

static void *poll_main(void *arg)
{
    kchat_consumer *c = arg;
    while (!atomic_load(&c->stopping)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, POLL_MS);
        if (!m)
            continue;
        if (m->err)
            log_message_error(c, m);
        else   /* a partition we did not forward: cannot happen */
            log_once(c, RD_KAFKA_RESP_ERR__STATE, rd_kafka_topic_name(m->rkt), m->partition,
                     "message on the consumer queue dropped");
        rd_kafka_message_destroy(m);
    }
    /* Stopping: give up the assignment here, on the thread that owns it. */
    park_all(c);
    revoke_parked(c);
    unpark_all(c, true);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Life cycle                                                           */

/* Stop and free everything; safe on a partly built consumer. */
static void consumer_destroy(kchat_consumer *c)
{
    if (c->poll_started) {
        atomic_store(&c->stopping, true);
        rd_kafka_queue_yield(c->cq);
        pthread_join(c->poll_thr, NULL);   /* revokes and releases the topic threads */
    } else if (c->topics) {
        pthread_mutex_lock(&c->mu);
        c->topics_exit = true;
        c->unpark_gen = ++c->park_gen;
        atomic_store(&c->park_req, c->park_gen);
        pthread_mutex_unlock(&c->mu);
        pthread_cond_broadcast(&c->cv);
        for (unsigned t = 0; t < c->T; t++)
            if (c->topics[t].started)
                rd_kafka_queue_yield(c->topics[t].q);
    }
    for (unsigned t = 0; c->topics && t < c->T; t++)
        if (c->topics[t].started)
            pthread_join(c->topics[t].thr, NULL);
    for (unsigned w = 0; c->workers && w < c->W; w++) {
        if (c->workers[w].started) {
            atomic_store(&c->workers[w].exit, true);
            worker_kick(&c->workers[w]);
            pthread_join(c->workers[w].thr, NULL);
        }
    }
    /* Nothing is left in the rings (the workers drain before leaving);
     * drop partition state the poll thread did not get to. */
    if (c->topics)
        release_partitions(c);
    if (c->assignment)
        rd_kafka_topic_partition_list_destroy(c->assignment);

    if (c->cq)
        rd_kafka_queue_destroy(c->cq);
    for (unsigned t = 0; c->topics && t < c->T; t++)
        if (c->topics[t].q)
            rd_kafka_queue_destroy(c->topics[t].q);
    if (c->rk) {
        c->closing = true;
        rd_kafka_resp_err_t err = rd_kafka_consumer_close(c->rk);
        if (err && err != RD_KAFKA_RESP_ERR__FATAL)
            fprintf(stderr, "kchat consumer: close: %s\n", rd_kafka_err2str(err));
        rd_kafka_destroy(c->rk);
    }

    for (unsigned t = 0; c->topics && t < c->T; t++) {
        struct ctopic *tp = &c->topics[t];
        for (int32_t p = 0; p < tp->n_parts; p++)
            free(tp->parts[p].stash);
        free(tp->parts);
        free(tp->touched);
        free(tp->name);
    }
    for (size_t i = 0; c->lanes && i < (size_t)c->T * c->W; i++)
        kchat_ring_free(c->lanes[i].ring);
    for (unsigned w = 0; c->workers && w < c->W; w++) {
        free(c->workers[w].lanes);
        free(c->workers[w].batch);
        if (w < c->n_workers_init) {
            pthread_cond_destroy(&c->workers[w].cv);
            pthread_mutex_destroy(&c->workers[w].mu);
        }
    }
    free(c->topics);
    free(c->workers);
    free(c->lanes);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->log_mu);
    free(c);
}

static int validate(const kchat_consumer_conf *cc, char *errstr, size_t size)
{
    if (!cc->topics || cc->n_topics == 0) {
        set_err(errstr, size, "no topics");
        return KCHAT_EINVAL;
    }
    if (cc->n_topics > 4096 || cc->n_workers == 0 || cc->n_workers > 4096) {
        set_err(errstr, size, "n_topics must be 1..4096, n_workers 1..4096");
        return KCHAT_EINVAL;
    }
    if (!cc->process) {
        set_err(errstr, size, "process callback is NULL");
        return KCHAT_EINVAL;
    }
    for (size_t i = 0; i < cc->n_topics; i++) {
        if (!cc->topics[i] || !*cc->topics[i]) {
            set_err(errstr, size, "empty topic name");
            return KCHAT_EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(cc->topics[i], cc->topics[j]) == 0) {
                set_err(errstr, size, "duplicate topic %s", cc->topics[i]);
                return KCHAT_EINVAL;
            }
    }
    return KCHAT_OK;
}

/* Set a property on the copy of the caller's conf. */
static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value,
                    char *errstr, size_t size)
{
    char buf[256];
    if (rd_kafka_conf_set(conf, name, value, buf, sizeof(buf)) != RD_KAFKA_CONF_OK) {
        set_err(errstr, size, "%s", buf);
        return KCHAT_ECONFIG;
    }
    return KCHAT_OK;
}

/* Lower a pre-fetch limit, unless the caller set it away from the default. */
static int conf_lower(rd_kafka_conf_t *conf, const char *name, const char *dflt,
                      const char *value, char *errstr, size_t size)
{
    char buf[64];
    size_t n = sizeof(buf);
    if (rd_kafka_conf_get(conf, name, buf, &n) == RD_KAFKA_CONF_OK && strcmp(buf, dflt) != 0)
        return KCHAT_OK;
    return conf_set(conf, name, value, errstr, size);
}

static int build_conf(kchat_consumer *c, rd_kafka_conf_t *conf, char *errstr, size_t size)
{
    char gid[512];
    size_t n = sizeof(gid);
    if (rd_kafka_conf_get(conf, "group.id", gid, &n) != RD_KAFKA_CONF_OK || !gid[0]) {
        set_err(errstr, size, "group.id is not set");
        return KCHAT_ECONFIG;
    }
    int rc;
    if ((rc = conf_set(conf, "enable.auto.commit", "false", errstr, size)) ||
        (rc = conf_set(conf, "enable.auto.offset.store", "false", errstr, size)) ||
        (rc = conf_set(conf, "partition.assignment.strategy", "range", errstr, size)) ||
        (rc = conf_lower(conf, "queued.max.messages.kbytes", QUEUED_KBYTES_DEFAULT,
                         QUEUED_KBYTES_KCHAT, errstr, size)) ||
        (rc = conf_lower(conf, "queued.min.messages", QUEUED_MIN_DEFAULT,
                         QUEUED_MIN_KCHAT, errstr, size)) ||
        (!c->conf.keep_fetch_wait &&
         (rc = conf_lower(conf, "fetch.wait.max.ms", FETCH_WAIT_DEFAULT,
                          FETCH_WAIT_KCHAT, errstr, size))))
        return rc;
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_opaque(conf, c);
    return KCHAT_OK;
}

/* Allocate rings, topics, workers (no threads, no librdkafka yet). */
static int build_pipeline(kchat_consumer *c, const kchat_consumer_conf *cc)
{
    const unsigned T = c->T, W = c->W;
    c->topics = calloc(T, sizeof(*c->topics));
    c->workers = aligned_alloc(64, sizeof(struct cworker) * W);
    c->lanes = aligned_alloc(64, sizeof(struct lane) * T * W);
    if (!c->topics || !c->workers || !c->lanes)
        return KCHAT_ENOMEM;
    memset(c->workers, 0, sizeof(struct cworker) * W);
    memset(c->lanes, 0, sizeof(struct lane) * T * W);

    for (unsigned w = 0; w < W; w++) {
        struct cworker *wk = &c->workers[w];
        pthread_condattr_t ca;
        wk->c = c;
        wk->idx = w;
        atomic_init(&wk->sleeping, false);
        atomic_init(&wk->exit, false);
        pthread_mutex_init(&wk->mu, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&wk->cv, &ca);
        pthread_condattr_destroy(&ca);
        c->n_workers_init = w + 1;
        wk->lanes = calloc(T, sizeof(*wk->lanes));
        wk->batch = calloc(c->conf.max_batch, sizeof(*wk->batch));
        if (!wk->lanes || !wk->batch)
            return KCHAT_ENOMEM;
    }
    for (unsigned t = 0; t < T; t++) {
        struct ctopic *tp = &c->topics[t];
        tp->c = c;
        tp->idx = t;
        tp->name = strdup(cc->topics[t]);
        tp->touched = calloc(W, sizeof(*tp->touched));
        if (!tp->name || !tp->touched)
            return KCHAT_ENOMEM;
        for (unsigned w = 0; w < W; w++) {
            struct lane *ln = lane_of(c, t, w);
            int rc = kchat_ring_new(c->conf.ring_capacity, &ln->ring);
            if (rc)
                return rc;
            ln->topic = tp;
            ln->worker = &c->workers[w];
            ln->low_water = kchat_ring_capacity(ln->ring) / 2;
            atomic_init(&ln->want_space, false);
            c->workers[w].lanes[t] = ln;
        }
    }
    return KCHAT_OK;
}

int kchat_consumer_start(const kchat_consumer_conf *cc, rd_kafka_conf_t *rk_conf,
                         kchat_consumer **out, char *errstr, size_t errstr_size)
{
    if (errstr && errstr_size)
        errstr[0] = '\0';
    if (!cc || !rk_conf || !out) {
        set_err(errstr, errstr_size, "NULL argument");
        return KCHAT_EINVAL;
    }
    int rc = validate(cc, errstr, errstr_size);
    if (rc)
        return rc;

    kchat_consumer *c = calloc(1, sizeof(*c));
    if (!c)
        return KCHAT_ENOMEM;
    c->conf = *cc;
    c->conf.topics = NULL;
    if (!c->conf.ring_capacity)
        c->conf.ring_capacity = DEFAULT_RING_CAPACITY;
    if (!c->conf.max_batch)
        c->conf.max_batch = DEFAULT_MAX_BATCH;
    if (!c->conf.tick_ms)
        c->conf.tick_ms = DEFAULT_TICK_MS;
    c->T = (unsigned)cc->n_topics;
    c->W = cc->n_workers;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    pthread_mutex_init(&c->log_mu, NULL);
    atomic_init(&c->stopping, false);
    atomic_init(&c->ready, false);
    atomic_init(&c->park_req, 0);
    atomic_init(&c->drain_req, 0);
    atomic_init(&c->consumed, 0);
    atomic_init(&c->paused_events, 0);
    atomic_init(&c->resumed_events, 0);
    atomic_init(&c->ring_fill_max, 0);
    atomic_init(&c->paused_now, 0);

    rd_kafka_conf_t *conf = NULL;
    if ((rc = build_pipeline(c, cc)) != KCHAT_OK) {
        set_err(errstr, errstr_size, "%s", kchat_strerror(rc));
        goto err;
    }
    conf = rd_kafka_conf_dup(rk_conf);
    if ((rc = build_conf(c, conf, errstr, errstr_size)) != KCHAT_OK)
        goto err;
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
    if (!c->rk) {
        rc = KCHAT_ECONFIG;
        goto err;
    }
    conf = NULL;   /* the handle owns it */
    rd_kafka_poll_set_consumer(c->rk);
    c->cq = rd_kafka_queue_get_consumer(c->rk);
    for (unsigned t = 0; t < c->T; t++) {
        c->topics[t].q = rd_kafka_queue_new(c->rk);
        if (!c->topics[t].q || !c->cq) {
            rc = KCHAT_ENOMEM;
            set_err(errstr, errstr_size, "%s", kchat_strerror(rc));
            goto err;
        }
    }

    for (unsigned w = 0; w < c->W; w++) {
        if (pthread_create(&c->workers[w].thr, NULL, worker_main, &c->workers[w])) {
            rc = KCHAT_EIO;
            set_err(errstr, errstr_size, "cannot create a worker thread");
            goto err;
        }
        c->workers[w].started = true;
    }
    for (unsigned t = 0; t < c->T; t++) {
        if (pthread_create(&c->topics[t].thr, NULL, topic_main, &c->topics[t])) {
            rc = KCHAT_EIO;
            set_err(errstr, errstr_size, "cannot create a topic thread");
            goto err;
        }
        c->topics[t].started = true;
    }

    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new((int)c->T);
    if (!subs) {
        rc = KCHAT_ENOMEM;
        goto err;
    }
    for (unsigned t = 0; t < c->T; t++)
        rd_kafka_topic_partition_list_add(subs, c->topics[t].name, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(c->rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (kerr) {
        rc = KCHAT_EKAFKA;
        set_err(errstr, errstr_size, "subscribe: %s", rd_kafka_err2str(kerr));
        goto err;
    }

    if (pthread_create(&c->poll_thr, NULL, poll_main, c)) {
        rc = KCHAT_EIO;
        set_err(errstr, errstr_size, "cannot create the poll thread");
        goto err;
    }
    c->poll_started = true;

    rd_kafka_conf_destroy(rk_conf);   /* ownership passed; we used a copy */
    *out = c;
    return KCHAT_OK;

err:
    if (conf)
        rd_kafka_conf_destroy(conf);
    consumer_destroy(c);
    return rc;
}

void kchat_consumer_stop(kchat_consumer *c)
{
    if (c)
        consumer_destroy(c);
}

rd_kafka_t *kchat_consumer_handle(kchat_consumer *c)
{
    return c->rk;
}

bool kchat_consumer_ready(const kchat_consumer *c)
{
    return atomic_load(&c->ready);
}

void kchat_consumer_get_stats(kchat_consumer *c, kchat_consumer_stats *out)
{
    out->consumed = atomic_load_explicit(&c->consumed, memory_order_relaxed);
    out->paused_events = atomic_load_explicit(&c->paused_events, memory_order_relaxed);
    out->resumed_events = atomic_load_explicit(&c->resumed_events, memory_order_relaxed);
    out->ring_fill_max = atomic_load_explicit(&c->ring_fill_max, memory_order_relaxed);
    out->paused_now = atomic_load_explicit(&c->paused_now, memory_order_relaxed);
}
