/*
 * The consumer's topic threads (include/kchat/consumer.h): each reads its
 * topic's queue, to which the poll thread forwarded the queues of the
 * topic's assigned partitions, one message at a time, and pushes each into
 * the ring of its partition's worker.
 *
 * Back-pressure: a message that finds its ring full goes into its
 * partition's stash and the partition is paused; the thread goes on serving
 * the topic's other partitions. Once the ring has drained to low water the
 * stash is pushed and the partition resumed. A thread that waits for room
 * asks the worker for a wake-up (lane.want_space; consumer_int.h explains
 * why none is lost).
 *
 * Parking: when the poll thread asks (park_req, consumer_poll.c), the
 * thread pushes every stashed message into the rings, then waits on c->mu
 * until released; only then may the poll thread touch its partition table.
 */
#include <stdlib.h>
#include <time.h>

#include "kchat/error.h"
#include "consumer_int.h"

#define TOPIC_BURST   256   /* messages a topic thread handles between
                               wake-ups of the workers */
#define STASH_POLL_MS 10    /* poll timeout when a partition waits for room */
#define STASH_INIT    16    /* first capacity of a stash */

static void nap(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Pause or resume one partition. A failure is logged and nothing more: the
 * callers carry on as if it had worked (nothing else could be tried).
 * @locality the thread that owns the topic's partition table (see
 *   kchat__consumer_part_resume()) */
static void pause_resume(kchat_consumer *c, const char *topic, int32_t p, bool pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    if (!l)
        return;
    rd_kafka_topic_partition_list_add(l, topic, p);
    rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(c->rk, l)
                                    : rd_kafka_resume_partitions(c->rk, l);
    if (!err)
        err = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    if (err)
        kchat__consumer_log_once(c, err, topic, p, pause ? "pausing a partition failed"
                                                         : "resuming a partition failed");
}

/* Push @p m into @p ln's ring and remember to wake its worker; false (and
 * @p m still ours) when the ring is full.
 * @locality topic thread @p t, the producer of @p ln's ring */
static bool lane_push(struct ctopic *t, struct lane *ln, rd_kafka_message_t *m)
{
    if (!kchat_ring_push(ln->ring, m))
        return false;
    t->touched[ln->worker->idx] = true;
    return true;
}

/* Wake the workers this thread pushed to, if they sleep; sample ring fill.
 * @locality topic thread @p t */
static void topic_wake_workers(struct ctopic *t)
{
    kchat_consumer *c = t->c;
    for (unsigned w = 0; w < c->W; w++) {
        if (!t->touched[w])
            continue;
        t->touched[w] = false;
        struct cworker *wk = &c->workers[w];
        if (atomic_exchange(&wk->sleeping, false))
            kchat__consumer_worker_kick(wk);
        size_t fill = kchat_ring_count(kchat__lane_of(c, t->idx, w)->ring);
        size_t max = atomic_load_explicit(&c->ring_fill_max, memory_order_relaxed);
        while (fill > max && !atomic_compare_exchange_weak(&c->ring_fill_max, &max, fill))
            ;
    }
}

/* Append @p m to @p pp's stash (taking it) or return KCHAT_ENOMEM (and
 * leave it to the caller).
 * @locality topic thread that owns @p pp */
KCHAT_MUST_CHECK
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

/* Push as much of the stash as fits. True when the stash is empty.
 * @locality topic thread @p t, which owns @p pp */
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

/* Pause partition @p p of @p t for a full ring.
 * @locality topic thread @p t */
static void part_pause(struct ctopic *t, int32_t p)
{
    kchat_consumer *c = t->c;
    topic_wake_workers(t);   /* before the (synchronous) pause call */
    pause_resume(c, t->name, p, true);
    t->parts[p].paused = true;
    t->n_paused++;
    atomic_fetch_add_explicit(&c->paused_events, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->paused_now, 1, memory_order_relaxed);
}

/* Hand one message read from the topic queue to its ring, or stash it and
 * pause its partition. Takes ownership of @p m.
 * @locality topic thread @p t */
static void topic_dispatch(struct ctopic *t, rd_kafka_message_t *m)
{
    kchat_consumer *c = t->c;
    if (m->err) {
        kchat__consumer_log_message_error(c, m);
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
    struct lane *ln = kchat__lane_of_part(c, t->idx, p);
    if (pp->s_len == 0 && lane_push(t, ln, m))
        return;

    /* Full ring (or messages already waiting): keep it, in order. */
    while (stash_append(pp, m) != KCHAT_OK) {
        /* Out of memory for the stash: wait for the ring instead. */
        kchat__consumer_log_once(c, RD_KAFKA_RESP_ERR__CRIT_SYS_RESOURCE, t->name, p,
                                 "stash allocation failed");
        topic_wake_workers(t);
        nap(1000);
        if (stash_push(t, pp, ln) && lane_push(t, ln, m))
            return;
    }
    if (!pp->paused)
        part_pause(t, p);
}

/* librdkafka 2.0.2 handles a resume on its main thread without waking the
 * partition's broker thread, which, if every partition it fetches for is
 * paused, sleeps up to a second before fetching again. A seek to the same
 * position wakes it (and changes nothing else: the pause already made
 * librdkafka drop what it had pre-fetched beyond that position). From 2.1
 * to 2.8 the seek did not wake it either (a seek without a leader epoch
 * skips offset validation and marks the partition active, no more), which
 * made test_consumer's back-pressure run 6 times slower on 2.6.1; 2.9 wakes
 * the broker thread whenever a partition becomes active again. */
void kchat__consumer_part_resume(struct ctopic *t, int32_t p, bool refetch)
{
    kchat_consumer *c = t->c;
    pause_resume(c, t->name, p, false);
    if (refetch && t->parts[p].next_offset >= 0) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        if (l) {
            rd_kafka_topic_partition_list_add(l, t->name, p)->offset = t->parts[p].next_offset;
            rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 0 /* async */);
            if (e) {
                kchat__consumer_log_once(c, rd_kafka_error_code(e), t->name, p,
                                         rd_kafka_error_string(e));
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
 * the worker for a wake-up.
 * @locality topic thread @p t */
static void topic_unstash(struct ctopic *t)
{
    kchat_consumer *c = t->c;
    for (int32_t p = 0; p < t->n_parts && t->n_paused; p++) {
        struct cpart *pp = &t->parts[p];
        if (!pp->paused)
            continue;
        struct lane *ln = kchat__lane_of_part(c, t->idx, p);
        for (;;) {
            bool empty = stash_push(t, pp, ln);
            if (empty && kchat_ring_count(ln->ring) <= ln->low_water) {
                kchat__consumer_part_resume(t, p, true);
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
 * resumes them when it revokes.
 * @locality topic thread @p t */
static void topic_flush_blocking(struct ctopic *t)
{
    kchat_consumer *c = t->c;
    for (int32_t p = 0; p < t->n_parts; p++) {
        struct cpart *pp = &t->parts[p];
        struct lane *ln = kchat__lane_of_part(c, t->idx, p);
        while (!stash_push(t, pp, ln)) {
            topic_wake_workers(t);
            nap(200);
        }
    }
    topic_wake_workers(t);
}

/* Park until released (park request @p gen); true when told to exit.
 * @locality topic thread @p t
 * @locks takes c->mu (must not be held) */
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

void *kchat__consumer_topic_main(void *arg)
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
