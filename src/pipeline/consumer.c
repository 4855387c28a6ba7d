/*
 * The consumer's configuration defaults, start and stop, and its counters
 * (include/kchat/consumer.h). The threads it starts live in
 * consumer_poll.c, consumer_topic.c and consumer_worker.c; what they share
 * is in consumer_int.h.
 */
#include "kchat/consumer.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kchat/error.h"
#include "consumer_int.h"

#define DEFAULT_RING_CAPACITY 1024
#define DEFAULT_MAX_BATCH     512
#define DEFAULT_TICK_MS       20
#define QUEUED_KBYTES_DEFAULT "65536"   /* librdkafka 2.0.2's defaults ... */
#define QUEUED_MIN_DEFAULT    "100000"
#define FETCH_WAIT_DEFAULT    "500"
#define QUEUED_KBYTES_KCHAT   "4096"    /* ... and what we lower them to */
#define QUEUED_MIN_KCHAT      "10000"
#define FETCH_WAIT_KCHAT      "100"

/* ------------------------------------------------------------------ */
/* Errors and logging                                                   */

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

void kchat__consumer_log_once(kchat_consumer *c, rd_kafka_resp_err_t err, const char *topic,
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

void kchat__consumer_log_message_error(kchat_consumer *c, const rd_kafka_message_t *m)
{
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
    kchat__consumer_log_once(c, m->err, m->rkt ? rd_kafka_topic_name(m->rkt) : NULL,
                             m->partition, rd_kafka_message_errstr(m));
}

/* ------------------------------------------------------------------ */
/* Configuration                                                        */

KCHAT_MUST_CHECK
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
KCHAT_MUST_CHECK
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
KCHAT_MUST_CHECK
static int conf_lower(rd_kafka_conf_t *conf, const char *name, const char *dflt,
                      const char *value, char *errstr, size_t size)
{
    char buf[64];
    size_t n = sizeof(buf);
    if (rd_kafka_conf_get(conf, name, buf, &n) == RD_KAFKA_CONF_OK && strcmp(buf, dflt) != 0)
        return KCHAT_OK;
    return conf_set(conf, name, value, errstr, size);
}

/* Make @p conf (a copy of the caller's) what the consumer needs: see
 * kchat_consumer_start() in consumer.h. */
KCHAT_MUST_CHECK
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
    rd_kafka_conf_set_rebalance_cb(conf, kchat__consumer_rebalance_cb);
    rd_kafka_conf_set_opaque(conf, c);
    return KCHAT_OK;
}

/* ------------------------------------------------------------------ */
/* Stop                                                                 */

/* Let the topic threads leave when there is no poll thread to do it (a
 * start that failed before creating it).
 * @locality the stopping thread (see consumer_destroy())
 * @locks takes c->mu (must not be held) */
static void release_topic_threads(kchat_consumer *c)
{
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

/* Stop and join every thread: the poll thread first (it revokes the
 * assignment and releases the topic threads), then the topic threads, then
 * the workers (which drain their rings before leaving).
 * @locality the stopping thread (see consumer_destroy()) */
static void join_threads(kchat_consumer *c)
{
    if (c->poll_started) {
        atomic_store(&c->stopping, true);
        pthread_mutex_lock(&c->mu);   /* the poll thread may be renewing the handle */
        if (c->cq)
            rd_kafka_queue_yield(c->cq);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->poll_thr, NULL);   /* revokes and releases the topic threads */
    } else if (c->topics) {
        release_topic_threads(c);
    }
    for (unsigned t = 0; c->topics && t < c->T; t++)
        if (c->topics[t].started)
            pthread_join(c->topics[t].thr, NULL);
    for (unsigned w = 0; c->workers && w < c->W; w++) {
        if (c->workers[w].started) {
            atomic_store(&c->workers[w].exit, true);
            kchat__consumer_worker_kick(&c->workers[w]);
            pthread_join(c->workers[w].thr, NULL);
        }
    }
}

/* Drop our queues, leave the group and destroy the handle. The rebalance
 * callback runs here, inside rd_kafka_consumer_close(), with c->closing set.
 * @locality the stopping thread, after join_threads(); or the poll thread
 *   renewing the handle (kchat__consumer_reopen())
 * @locks takes c->mu (must not be held) */
static void close_kafka(kchat_consumer *c)
{
    pthread_mutex_lock(&c->mu);
    if (c->cq)
        rd_kafka_queue_destroy(c->cq);
    c->cq = NULL;
    pthread_mutex_unlock(&c->mu);
    for (unsigned t = 0; c->topics && t < c->T; t++) {
        if (c->topics[t].q)
            rd_kafka_queue_destroy(c->topics[t].q);
        c->topics[t].q = NULL;
    }
    if (c->rk) {
        c->closing = true;
        rd_kafka_resp_err_t err = rd_kafka_consumer_close(c->rk);
        if (err && err != RD_KAFKA_RESP_ERR__FATAL)
            fprintf(stderr, "kchat consumer: close: %s\n", rd_kafka_err2str(err));
        rd_kafka_destroy(c->rk);
        c->rk = NULL;
        c->closing = false;
    }
}

/* Free the topics, rings and workers, then the consumer. */
static void free_pipeline(kchat_consumer *c)
{
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
    if (c->rk_conf)
        rd_kafka_conf_destroy(c->rk_conf);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->log_mu);
    free(c);
}

/* Stop and free everything; safe on a partly built consumer.
 * @locality the thread that calls kchat_consumer_stop() or
 *   kchat_consumer_start(), never one of the consumer's own */
static void consumer_destroy(kchat_consumer *c)
{
    join_threads(c);
    /* Nothing is left in the rings (the workers drain before leaving);
     * drop partition state the poll thread did not get to. */
    if (c->topics)
        kchat__consumer_release_partitions(c);
    if (c->assignment)
        rd_kafka_topic_partition_list_destroy(c->assignment);
    close_kafka(c);
    free_pipeline(c);
}

/* ------------------------------------------------------------------ */
/* Start                                                                */

/* A consumer with its settings (defaults applied), locks and counters, and
 * nothing else yet; NULL when out of memory. */
static kchat_consumer *consumer_new(const kchat_consumer_conf *cc)
{
    kchat_consumer *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
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
    atomic_init(&c->renewals, 0);
    atomic_init(&c->park_req, 0);
    atomic_init(&c->drain_req, 0);
    atomic_init(&c->consumed, 0);
    atomic_init(&c->paused_events, 0);
    atomic_init(&c->resumed_events, 0);
    atomic_init(&c->ring_fill_max, 0);
    atomic_init(&c->paused_now, 0);
    return c;
}

/* Allocate the workers, with their locks (no threads yet). */
KCHAT_MUST_CHECK
static int build_workers(kchat_consumer *c)
{
    for (unsigned w = 0; w < c->W; w++) {
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
        wk->lanes = calloc(c->T, sizeof(*wk->lanes));
        wk->batch = calloc(c->conf.max_batch, sizeof(*wk->batch));
        if (!wk->lanes || !wk->batch)
            return KCHAT_ENOMEM;
    }
    return KCHAT_OK;
}

/* Allocate the topics and the rings from each to every worker (no threads,
 * no librdkafka yet). */
KCHAT_MUST_CHECK
static int build_topics(kchat_consumer *c, const kchat_consumer_conf *cc)
{
    for (unsigned t = 0; t < c->T; t++) {
        struct ctopic *tp = &c->topics[t];
        tp->c = c;
        tp->idx = t;
        tp->name = strdup(cc->topics[t]);
        tp->touched = calloc(c->W, sizeof(*tp->touched));
        if (!tp->name || !tp->touched)
            return KCHAT_ENOMEM;
        for (unsigned w = 0; w < c->W; w++) {
            struct lane *ln = kchat__lane_of(c, t, w);
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

/* Allocate rings, topics, workers (no threads, no librdkafka yet). */
KCHAT_MUST_CHECK
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
    int rc = build_workers(c);
    return rc ? rc : build_topics(c, cc);
}

/* Create the librdkafka handle on a copy of @p rk_conf, and the queues:
 * the consumer queue (to yield the poll thread) and one per topic. */
KCHAT_MUST_CHECK
static int open_kafka(kchat_consumer *c, const rd_kafka_conf_t *rk_conf,
                      char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_dup(rk_conf);
    int rc = build_conf(c, conf, errstr, errstr_size);
    if (rc) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size);
    if (!c->rk) {
        rd_kafka_conf_destroy(conf);
        return KCHAT_ECONFIG;
    }
    /* the handle owns conf now */
    rd_kafka_poll_set_consumer(c->rk);
    rd_kafka_queue_t *cq = rd_kafka_queue_get_consumer(c->rk);
    pthread_mutex_lock(&c->mu);
    c->cq = cq;
    pthread_mutex_unlock(&c->mu);
    for (unsigned t = 0; t < c->T; t++) {
        c->topics[t].q = rd_kafka_queue_new(c->rk);
        if (!c->topics[t].q || !cq) {
            set_err(errstr, errstr_size, "%s", kchat_strerror(KCHAT_ENOMEM));
            return KCHAT_ENOMEM;
        }
    }
    return KCHAT_OK;
}

/* Start the workers, then the topic threads. */
KCHAT_MUST_CHECK
static int start_threads(kchat_consumer *c, char *errstr, size_t errstr_size)
{
    for (unsigned w = 0; w < c->W; w++) {
        if (pthread_create(&c->workers[w].thr, NULL, kchat__consumer_worker_main,
                           &c->workers[w])) {
            set_err(errstr, errstr_size, "cannot create a worker thread");
            return KCHAT_EIO;
        }
        c->workers[w].started = true;
    }
    for (unsigned t = 0; t < c->T; t++) {
        if (pthread_create(&c->topics[t].thr, NULL, kchat__consumer_topic_main,
                           &c->topics[t])) {
            set_err(errstr, errstr_size, "cannot create a topic thread");
            return KCHAT_EIO;
        }
        c->topics[t].started = true;
    }
    return KCHAT_OK;
}

/* Subscribe to every topic (the group join happens in the background; the
 * rebalance reaches us only once the poll thread polls). */
KCHAT_MUST_CHECK
static int subscribe(kchat_consumer *c, char *errstr, size_t errstr_size)
{
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new((int)c->T);
    if (!subs)
        return KCHAT_ENOMEM;
    for (unsigned t = 0; t < c->T; t++)
        rd_kafka_topic_partition_list_add(subs, c->topics[t].name, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t kerr = rd_kafka_subscribe(c->rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (kerr) {
        set_err(errstr, errstr_size, "subscribe: %s", rd_kafka_err2str(kerr));
        return KCHAT_EKAFKA;
    }
    return KCHAT_OK;
}

int kchat__consumer_reopen(kchat_consumer *c, char *errstr, size_t errstr_size)
{
    int rc;

    close_kafka(c);
    if ((rc = open_kafka(c, c->rk_conf, errstr, errstr_size)) != KCHAT_OK ||
        (rc = subscribe(c, errstr, errstr_size)) != KCHAT_OK) {
        close_kafka(c);
        return rc;
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

    kchat_consumer *c = consumer_new(cc);
    if (!c)
        return KCHAT_ENOMEM;
    if ((rc = build_pipeline(c, cc)) != KCHAT_OK) {
        set_err(errstr, errstr_size, "%s", kchat_strerror(rc));
        goto err_destroy;
    }
    /* Subscribe before any thread runs: a refused subscription must not
     * leave a callback called (the workers call idle() at once). Nothing
     * is assigned before the poll thread serves the rebalance. */
    if ((rc = open_kafka(c, rk_conf, errstr, errstr_size)) != KCHAT_OK ||
        (rc = subscribe(c, errstr, errstr_size)) != KCHAT_OK ||
        (rc = start_threads(c, errstr, errstr_size)) != KCHAT_OK)
        goto err_destroy;
    if (pthread_create(&c->poll_thr, NULL, kchat__consumer_poll_main, c)) {
        rc = KCHAT_EIO;
        set_err(errstr, errstr_size, "cannot create the poll thread");
        goto err_destroy;
    }
    c->poll_started = true;

    c->rk_conf = rk_conf;   /* ownership passed; kept to renew the handle */
    *out = c;
    return KCHAT_OK;

err_destroy:
    consumer_destroy(c);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Handle, readiness, counters                                          */

void kchat_consumer_stop(kchat_consumer *c)
{
    if (c)
        consumer_destroy(c);
}

void kchat_consumer_wake(kchat_consumer *c, unsigned worker)
{
    if (c != NULL && worker < c->W)
        kchat__consumer_worker_kick(&c->workers[worker]);
}

rd_kafka_t *kchat_consumer_handle(kchat_consumer *c)
{
    return c->rk;
}

bool kchat_consumer_lost(kchat_consumer *c)
{
    return c->lost || (c->rk && rd_kafka_assignment_lost(c->rk) == 1);
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
    out->renewals = atomic_load_explicit(&c->renewals, memory_order_relaxed);
}
