/*
 * Catch-up of resumed event streams: a few shared reader threads, each with a
 * consumer of its own, read chat-events for the streams opened with a
 * Last-Event-ID behind the live position, hand each stream's records to the
 * loop (GW_ITEM_CATCHUP) and then say how its catch-up ended
 * (GW_ITEM_CATCHUP_DONE). The loop holds the streams' live records meanwhile
 * (sse.c).
 *
 * Sharing and the cap (issue 12: every resumed stream used to start its own
 * consumer, ~7 threads, with no cap): a job is one stream's catch-up (its
 * user, partition, from and to offsets). At most --catchup-max readers run
 * at once; a reader serves one partition at a time, with every job of that
 * partition: a job arriving for a partition a reader serves joins it (the
 * reader seeks back if the job starts before its position), any other job
 * waits in a queue until a reader is free (or one can be started). A reader
 * with nothing to do ends. A job gives up 10 s after it was queued (the
 * stream is then closed and the browser resumes later), and at a stop. The
 * owner waits for gw->catchups (readers running) to reach 0 before freeing
 * the gateway.
 */
#include "gateway/gateway_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/error.h"
#include "kchat/kafka.h"

#define GW_CATCHUP_MAX_S 10.0   /* longest a job may wait and take */

/* One stream's catch-up. */
struct cu_job {
    struct cu_job *next;
    uint64_t stream_id;
    char user[72];
    size_t ulen;
    int32_t partition;
    int64_t next_off, to;       /* still to read: [next_off, to) */
    double deadline;
};

/* One reader slot; every field under gw->cu_lock. */
struct cu_reader {
    kchat_gateway *gw;
    bool running;               /* a thread runs in this slot */
    int32_t partition;          /* served, or -1 */
    struct cu_job *inbox;       /* jobs of that partition handed over */
};

/* Push the end of @p j's catch-up and free it. @locality a reader thread */
static void job_done(kchat_gateway *gw, struct cu_job *j, bool ok)
{
    gw_item *it = calloc(1, sizeof(*it));

    if (it != NULL) {
        it->kind = GW_ITEM_CATCHUP_DONE;
        it->stream_id = j->stream_id;
        memcpy(it->user, j->user, sizeof(it->user));   /* the stream is found by user and id */
        it->ok = ok;
        kchat__gw_push(gw, it);
    }
    free(j);
}

/* A consumer for the reader threads (partition end events on); NULL on
 * error. @locality a reader thread */
static rd_kafka_t *reader_consumer(kchat_gateway *gw)
{
    char errstr[256];
    rd_kafka_conf_t *conf = kchat__gw_kafka_conf(gw, errstr, sizeof(errstr));
    rd_kafka_t *rk;

    if (conf == NULL)
        return NULL;
    kchat__gw_consumer_conf(conf, true);
    kchat__gw_fetch_wait_conf(gw, conf, 1000);   /* the gateway is ready: known at once */
    if ((rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr))) == NULL) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

/* Read @p partition from @p off: a new assignment (librdkafka drops what it
 * fetched for the old one). Should it fail, nothing arrives and the jobs end
 * at their deadlines. @locality a reader thread */
static void reader_seek(rd_kafka_t *rk, int32_t partition, int64_t off)
{
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);

    rd_kafka_assign(rk, NULL);
    rd_kafka_topic_partition_list_add(parts, KCHAT_TOPIC_EVENTS, partition)->offset = off;
    rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
}

/* Record @p m (or a partition end at m->offset, @p eof) for every job of
 * *@p jobs it concerns; jobs that reached their end are done and unlinked.
 * @locality a reader thread */
static void reader_record(kchat_gateway *gw, struct cu_job **jobs, const rd_kafka_message_t *m,
                          bool eof)
{
    int authentic = -1;   /* checked once, when a job wants the record */

    for (struct cu_job **pj = jobs, *j; (j = *pj) != NULL;) {
        gw_item *it;
        if (!eof && m->offset >= j->next_off && m->offset < j->to) {
            if (m->key_len == j->ulen && !memcmp(m->key, j->user, j->ulen) &&
                (authentic >= 0 ? authentic
                                : (authentic = kchat__gw_record_authentic(gw, m))) &&
                (it = kchat__gw_event_item(m, GW_ITEM_CATCHUP)) != NULL) {
                it->stream_id = j->stream_id;
                kchat__gw_push(gw, it);
            }
            j->next_off = m->offset + 1;
        }
        /* done once the reader is past both its start and its end: a
         * record before its start (read for another job) does not count */
        int64_t past = eof ? m->offset : m->offset + 1;
        if (past >= j->to && past >= j->next_off) {
            *pj = j->next;
            job_done(gw, j, true);
        } else {
            pj = &j->next;
        }
    }
}

/* Serve @p r's partition until it has no job left (or the gateway stops).
 * @locality a reader thread */
static void reader_serve(kchat_gateway *gw, struct cu_reader *r, rd_kafka_t *rk)
{
    struct cu_job *jobs = NULL;
    int64_t pos = -1;   /* where the consumer reads next (-1: not assigned) */

    for (;;) {
        struct cu_job *in, *last = NULL;
        int64_t low = INT64_MAX;
        rd_kafka_message_t *m;
        double now = kchat__gw_now();

        pthread_mutex_lock(&gw->cu_lock);
        in = r->inbox;
        r->inbox = NULL;
        if (in == NULL && jobs == NULL) {
            r->partition = -1;   /* from now on new jobs of it queue */
            pthread_mutex_unlock(&gw->cu_lock);
            return;
        }
        pthread_mutex_unlock(&gw->cu_lock);
        for (struct cu_job *j = in; j; j = j->next) {
            if (j->next_off < low)
                low = j->next_off;
            last = j;
        }
        if (last) {
            last->next = jobs;
            jobs = in;
        }
        if (in && (pos < 0 || low < pos))
            reader_seek(rk, r->partition, pos = low);
        for (struct cu_job **pj = &jobs, *j; (j = *pj) != NULL;) {
            if (atomic_load(&gw->stopping) || now > j->deadline) {
                *pj = j->next;
                job_done(gw, j, false);
            } else {
                pj = &j->next;
            }
        }
        if (jobs == NULL || (m = rd_kafka_consumer_poll(rk, 100)) == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            reader_record(gw, &jobs, m, true);
            pos = m->offset;
        } else if (!m->err) {
            reader_record(gw, &jobs, m, false);
            pos = m->offset + 1;
        }
        rd_kafka_message_destroy(m);
    }
}

/* Give @p r the queued jobs of the partition of the oldest queued job.
 * @return false if the queue is empty. @locality a reader thread
 * @locks gw->cu_lock held */
static bool reader_take(kchat_gateway *gw, struct cu_reader *r)
{
    if (gw->cu_queue == NULL)
        return false;
    r->partition = gw->cu_queue->partition;
    for (struct cu_job **pj = &gw->cu_queue, *j; (j = *pj) != NULL;) {
        if (j->partition == r->partition) {
            *pj = j->next;
            j->next = r->inbox;
            r->inbox = j;
        } else {
            pj = &j->next;
        }
    }
    return true;
}

/* End every job of @p jobs (a list): not caught up. @locality a reader thread */
static void jobs_fail(kchat_gateway *gw, struct cu_job *jobs)
{
    while (jobs) {
        struct cu_job *next = jobs->next;
        job_done(gw, jobs, false);
        jobs = next;
    }
}

/* @locality a reader thread (pthread_create() by kchat__gw_catchup_start()) */
static void *reader_main(void *arg)
{
    struct cu_reader *r = arg;
    kchat_gateway *gw = r->gw;
    rd_kafka_t *rk = NULL;

    for (;;) {
        bool more;
        pthread_mutex_lock(&gw->cu_lock);
        more = reader_take(gw, r);
        if (!more && rk == NULL)
            r->running = false;   /* its consumer is gone: the slot is free */
        pthread_mutex_unlock(&gw->cu_lock);
        if (!more && rk == NULL)
            break;
        if (!more) {
            /* nothing queued: close the consumer, then look once more */
            rd_kafka_consumer_close(rk);
            rd_kafka_destroy(rk);
            rk = NULL;
            atomic_fetch_sub(&gw->cu_consumers, 1);
            continue;
        }
        if (rk == NULL && (rk = reader_consumer(gw)) != NULL) {
            int n = atomic_fetch_add(&gw->cu_consumers, 1) + 1;
            int peak = atomic_load(&gw->cu_consumers_peak);
            while (n > peak && !atomic_compare_exchange_weak(&gw->cu_consumers_peak, &peak, n))
                ;
        }
        if (rk == NULL) {
            struct cu_job *in;
            pthread_mutex_lock(&gw->cu_lock);
            in = r->inbox;
            r->inbox = NULL;
            r->partition = -1;
            pthread_mutex_unlock(&gw->cu_lock);
            jobs_fail(gw, in);
            continue;
        }
        reader_serve(gw, r, rk);
    }
    atomic_fetch_sub(&gw->catchups, 1);   /* the last touch of gw */
    return NULL;
}

int kchat__gw_catchup_start(kchat_gateway *gw, uint64_t stream_id, const char *user,
                            int32_t partition, int64_t from, int64_t to)
{
    struct cu_job *j = calloc(1, sizeof(*j));
    struct cu_reader *idle = NULL;
    int rc = KCHAT_OK;
    pthread_t t;

    if (j == NULL)
        return KCHAT_ENOMEM;
    j->stream_id = stream_id;
    snprintf(j->user, sizeof(j->user), "%s", user);
    j->ulen = strlen(j->user);
    j->partition = partition;
    j->next_off = from;
    j->to = to;
    j->deadline = kchat__gw_now() + GW_CATCHUP_MAX_S;
    pthread_mutex_lock(&gw->cu_lock);
    for (int i = 0; i < gw->cfg->catchup_max; i++) {
        struct cu_reader *r = &gw->cu_readers[i];
        if (r->running && r->partition == partition) {
            j->next = r->inbox;   /* shared: that reader takes it on */
            r->inbox = j;
            goto out;
        }
        if (!r->running && idle == NULL)
            idle = r;
    }
    {
        struct cu_job **tail = &gw->cu_queue;
        while (*tail)
            tail = &(*tail)->next;
        *tail = j;
    }
    if (idle != NULL) {
        idle->gw = gw;
        idle->running = true;
        idle->partition = -1;
        atomic_fetch_add(&gw->catchups, 1);
        if (pthread_create(&t, NULL, reader_main, idle) != 0) {
            atomic_fetch_sub(&gw->catchups, 1);
            idle->running = false;
            /* no thread: take the job back unless another reader may come */
            for (struct cu_job **pj = &gw->cu_queue; *pj; pj = &(*pj)->next)
                if (*pj == j) {
                    *pj = j->next;
                    break;
                }
            free(j);
            rc = KCHAT_ENOMEM;
            goto out;
        }
        pthread_detach(t);
    }
    /* else every slot is busy: the job waits for a reader to be free */
out:
    pthread_mutex_unlock(&gw->cu_lock);
    return rc;
}

int kchat__gw_catchup_init(kchat_gateway *gw)
{
    gw->cu_readers = calloc((size_t)gw->cfg->catchup_max, sizeof(*gw->cu_readers));
    return gw->cu_readers ? KCHAT_OK : KCHAT_ENOMEM;
}

void kchat__gw_catchup_free(kchat_gateway *gw)
{
    while (gw->cu_queue) {
        struct cu_job *j = gw->cu_queue;
        gw->cu_queue = j->next;
        free(j);
    }
    for (int i = 0; gw->cu_readers && i < gw->cfg->catchup_max; i++)
        while (gw->cu_readers[i].inbox) {
            struct cu_job *j = gw->cu_readers[i].inbox;
            gw->cu_readers[i].inbox = j->next;
            free(j);
        }
    free(gw->cu_readers);
    gw->cu_readers = NULL;
}
