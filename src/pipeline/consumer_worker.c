/*
 * The consumer's workers (include/kchat/consumer.h): worker w drains its T
 * rings round-robin into batches for process(), calls idle() every tick and
 * whenever it runs dry, and then sleeps until a topic thread kicks it or a
 * tick passes. It also answers the poll thread's drain requests (the
 * revocation barrier, consumer_poll.c) and, after popping, wakes a topic
 * thread that waits for room (consumer_int.h explains why no wake-up is
 * lost).
 */
#include <errno.h>
#include <time.h>

#include "consumer_int.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void kchat__consumer_worker_kick(struct cworker *w)
{
    pthread_mutex_lock(&w->mu);
    w->signalled = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Whether any of @p w's rings holds a message.
 * @locality worker thread that owns @p w */
static bool worker_has_input(struct cworker *w)
{
    for (unsigned t = 0; t < w->c->T; t++)
        if (kchat_ring_count(w->lanes[t]->ring) > 0)
            return true;
    return false;
}

/* After popping from a lane: wake its topic thread if it waits for the
 * ring to drain to low water. Only this worker clears the flag, so putting
 * it back when the ring is not low enough yet races with nobody.
 * @locality the worker that consumes @p ln's ring */
static void lane_popped(struct lane *ln)
{
    if (atomic_exchange(&ln->want_space, false)) {
        if (kchat_ring_count(ln->ring) <= ln->low_water)
            rd_kafka_queue_yield(ln->topic->q);
        else
            atomic_exchange(&ln->want_space, true);
    }
}

/* Fill w->batch round-robin from the worker's rings; returns how many.
 * @locality worker thread that owns @p w */
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

/* Sleep until kicked or @p ms pass, unless there is work already (input,
 * exit, or a drain request newer than @p drain_seen).
 * @locality worker thread that owns @p w
 * @locks takes w->mu (must not be held) */
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

/* Tell the poll thread (drain_workers()) that @p w's rings were empty after
 * drain request @p dreq was made and no process() call runs.
 * @locality worker thread that owns @p w
 * @locks takes c->mu (must not be held) */
static void worker_ack_drain(struct cworker *w, uint64_t dreq)
{
    kchat_consumer *c = w->c;

    pthread_mutex_lock(&c->mu);
    w->drain_ack = dreq;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void *kchat__consumer_worker_main(void *arg)
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
        if (w->drain_ack != dreq)
            worker_ack_drain(w, dreq);
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
