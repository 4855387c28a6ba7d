/*
 * The consumer's poll thread (include/kchat/consumer.h): the consumer's
 * membership of its group. It serves the consumer's main queue with
 * rd_kafka_consumer_poll(), which runs the rebalance callback here, so every
 * change of the assignment happens on this thread:
 *
 * - Assignment: `prepare()`, ask `start_offset()` for every partition, forward each
 *   partition's queue to its topic's queue, rd_kafka_assign(), `assigned()`.
 * - Revocation is a barrier: park the topic threads (they flush their
 *   stashes into the rings and wait), drain the workers (they process
 *   everything in the rings and ack), `revoked()`, clear the assignment and
 *   release the partitions, then let the topic threads go on.
 *
 * Changes to the partition tables happen only with the topic threads
 * parked (between park_all() and unpark_all()).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kchat/error.h"
#include "consumer_int.h"

#define RENEW_RETRY_MS 1000   /* between tries at a new handle */
#define STOP_POLLS     100    /* queued events answered while stopping, at most */

/* Wait until every worker has processed all that is in its rings now and
 * is out of process().
 * @locality poll thread, with every topic thread parked (no producer)
 * @locks takes c->mu (must not be held) */
static void drain_workers(kchat_consumer *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t gen = atomic_load(&c->drain_req) + 1;
    atomic_store(&c->drain_req, gen);
    pthread_mutex_unlock(&c->mu);
    for (unsigned w = 0; w < c->W; w++)
        if (c->workers[w].started)
            kchat__consumer_worker_kick(&c->workers[w]);
    pthread_mutex_lock(&c->mu);
    for (unsigned w = 0; w < c->W; w++)
        while (c->workers[w].started && c->workers[w].drain_ack < gen)
            pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

/* Stop every topic thread at the top of its loop, with its stashes flushed
 * into the rings; returns once all are parked.
 * @locality poll thread
 * @locks takes c->mu (must not be held) */
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

/* Release the parked topic threads; with @p leave they exit.
 * @locality poll thread, after park_all()
 * @locks takes c->mu (must not be held) */
static void unpark_all(kchat_consumer *c, bool leave)
{
    pthread_mutex_lock(&c->mu);
    c->unpark_gen = c->park_gen;
    c->topics_exit = leave;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static struct ctopic *topic_by_name(kchat_consumer *c, const char *name)
{
    for (unsigned t = 0; t < c->T; t++)
        if (strcmp(c->topics[t].name, name) == 0)
            return &c->topics[t];
    return NULL;
}

/* Make room in @p t's partition table for partitions 0..n-1.
 * @locality poll thread, with @p t's thread parked */
KCHAT_MUST_CHECK
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

void kchat__consumer_release_partitions(kchat_consumer *c)
{
    for (unsigned i = 0; i < c->T; i++) {
        struct ctopic *t = &c->topics[i];
        for (int32_t p = 0; p < t->n_parts; p++) {
            struct cpart *pp = &t->parts[p];
            if (pp->paused)
                kchat__consumer_part_resume(t, p, false);   /* unassigned next: no fetch */
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

/* Take the current assignment away, as a revoke does: drain the workers,
 * `revoked()`, clear the assignment, release the partitions.
 * @locality poll thread, with every topic thread parked */
static void revoke_parked(kchat_consumer *c)
{
    drain_workers(c);
    if (c->assignment && c->conf.revoked)
        c->conf.revoked(c->conf.opaque, c->assignment);
    rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, NULL);
    if (err)
        kchat__consumer_log_once(c, err, NULL, -1, "clearing the assignment failed");
    kchat__consumer_release_partitions(c);
    if (c->assignment) {
        rd_kafka_topic_partition_list_destroy(c->assignment);
        c->assignment = NULL;
    }
}

/* Prepare one partition of a new assignment: fill in its start offset
 * (`start_offset()`; RD_KAFKA_OFFSET_END when it cannot be consumed) and
 * forward its queue to its topic's queue.
 * @locality poll thread, with every topic thread parked */
static void part_assign(kchat_consumer *c, rd_kafka_topic_partition_t *e)
{
    struct ctopic *t = topic_by_name(c, e->topic);
    if (!t || e->partition < 0) {
        kchat__consumer_log_once(c, RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, e->topic, e->partition,
                                 "assigned a partition of a topic not subscribed");
        return;
    }
    if (topic_grow(t, e->partition + 1) != KCHAT_OK) {
        kchat__consumer_log_once(c, RD_KAFKA_RESP_ERR__CRIT_SYS_RESOURCE, e->topic,
                                 e->partition,
                                 "out of memory for the partition table: partition not consumed");
        e->offset = RD_KAFKA_OFFSET_END;
        return;
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
        kchat__consumer_log_once(c, RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION, e->topic,
                                 e->partition, "no queue for an assigned partition");
    pp->active = true;
    pp->paused = false;
    pp->next_offset = -1;
}

/* Apply the assignment @p parts (start offsets filled in here).
 * @locality poll thread (rebalance callback) */
static void on_assign(kchat_consumer *c, rd_kafka_topic_partition_list_t *parts)
{
    park_all(c);
    if (c->assignment)   /* eager protocol revokes first; be safe anyway */
        revoke_parked(c);
    if (c->conf.prepare)
        c->conf.prepare(c->conf.opaque, parts);

    for (int i = 0; i < parts->cnt; i++)
        part_assign(c, &parts->elems[i]);

    rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, parts);
    if (err)
        kchat__consumer_log_once(c, err, NULL, -1, "applying the assignment failed");
    c->assignment = rd_kafka_topic_partition_list_copy(parts);
    if (c->conf.assigned)
        c->conf.assigned(c->conf.opaque, parts);
    atomic_store(&c->ready, true);
    unpark_all(c, false);
}

/* Give up the current assignment.
 * @locality poll thread (rebalance callback) */
static void on_revoke(kchat_consumer *c)
{
    park_all(c);
    revoke_parked(c);
    unpark_all(c, false);
}

void kchat__consumer_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                  rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    kchat_consumer *c = opaque;
    if (c->closing || c->stop_revoked) {
        /* Stopping, after the last revocation, or inside
         * rd_kafka_consumer_close(): everything was revoked on our side
         * already; only answer librdkafka. Not once the group finished
         * terminating inside close: it waits for no answer then, and
         * would drop this one without a reply (stop_membership()). */
        if (c->closing && rd_kafka_consumer_closed(rk))
            return;
        rd_kafka_assign(rk, NULL);
        return;
    }
    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        if (atomic_load(&c->stopping))
            on_revoke(c);   /* stopping (stop_membership()): take nothing on */
        else
            on_assign(c, parts);
        break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        on_revoke(c);
        break;
    default:
        kchat__consumer_log_once(c, err, NULL, -1, "rebalance failed; assignment cleared");
        on_revoke(c);
        break;
    }
}

/* After a fatal error the handle reads nothing more (librdkafka 2.0.2
 * raises one when the group fences a static member that rejoined after its
 * session timed out: "Static consumer fenced by other consumer with same
 * group.instance.id"). Give up the assignment as lost, then build a new
 * handle that joins the group again: the topic threads stay parked until it
 * exists. Retries every RENEW_RETRY_MS while stopping is not asked.
 * @locality poll thread
 * @return false when stopping was asked before a new handle existed: the
 *   topic threads have been told to leave and there is nothing to revoke */
static bool renew(kchat_consumer *c)
{
    char reason[512], errstr[512];
    rd_kafka_resp_err_t err = rd_kafka_fatal_error(c->rk, reason, sizeof(reason));

    fprintf(stderr, "kchat consumer: fatal error %s: %s; giving up the assignment and "
                    "joining the group again with a new handle\n",
            rd_kafka_err2name(err), reason);
    atomic_store(&c->ready, false);
    park_all(c);
    c->lost = true;   /* the group may have given it to another */
    revoke_parked(c);
    c->lost = false;
    for (;;) {
        int rc = kchat__consumer_reopen(c, errstr, sizeof(errstr));
        if (rc == KCHAT_OK)
            break;
        fprintf(stderr, "kchat consumer: a new handle failed: %s (%s); retrying\n", errstr,
                kchat_strerror(rc));
        for (int ms = 0; ms < RENEW_RETRY_MS; ms += POLL_MS) {
            if (atomic_load(&c->stopping)) {
                unpark_all(c, true);
                return false;
            }
            struct timespec ts = {0, POLL_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    atomic_fetch_add(&c->renewals, 1);
    fprintf(stderr, "kchat consumer: a new consumer handle replaced the failed one\n");
    unpark_all(c, false);
    return true;
}

/* Log and drop what rd_kafka_consumer_poll() returned other than a fatal
 * error: an error, or a message of a partition not forwarded (cannot
 * happen: every assigned partition's queue goes to its topic thread).
 * @locality poll thread */
static void drop_polled(kchat_consumer *c, rd_kafka_message_t *m)
{
    if (m->err)
        kchat__consumer_log_message_error(c, m);
    else
        kchat__consumer_log_once(c, RD_KAFKA_RESP_ERR__STATE, rd_kafka_topic_name(m->rkt),
                                 m->partition, "message on the consumer queue dropped");
    rd_kafka_message_destroy(m);
}

/* Whether the handle is a static member of its group (group.instance.id
 * set): librdkafka does not send it a LeaveGroup when it closes, so that
 * a restarted node gets its partitions back without a rebalance.
 * @locality poll thread */
static bool static_member(kchat_consumer *c)
{
    char id[256];
    size_t len = sizeof(id);

    return rd_kafka_conf_get(rd_kafka_conf(c->rk), "group.instance.id", id, &len) ==
               RD_KAFKA_CONF_OK && id[0] != '\0';
}

/* Answer, through the rebalance callback, every rebalance event queued
 * for this handle now (at most STOP_POLLS). A fatal error is only logged:
 * the handle is closed next anyway.
 * @locality poll thread */
static void stop_drain(kchat_consumer *c)
{
    for (int i = 0; i < STOP_POLLS && c->cq && rd_kafka_queue_length(c->cq) > 0; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 0);
        if (m)
            drop_polled(c, m);
    }
}

/* Stopping, before the topic threads leave: unsubscribe (a member that is
 * not static; a static one stays in the group, as closing would leave
 * it), answer what that and any rebalance begun meanwhile queued, revoke
 * what is still assigned, and answer what queued during that revocation.
 *
 * Why: a rebalance event still queued when rd_kafka_consumer_close()
 * unsubscribes is one the group stops waiting for (its join state goes
 * back to init) while close still hands it to the rebalance callback.
 * That callback's rd_kafka_assign() could then be served after the group
 * had finished terminating, which librdkafka 2.10.1 drops without a
 * reply: the stop never returned (regression 0054). A member that
 * unsubscribed here and answered its events leaves close nothing to ask;
 * a static member leaves close only what a rebalance begun in the moment
 * between the last drain and close queues, and the callback skips the
 * call once the group has terminated.
 * @locality poll thread */
static void stop_membership(kchat_consumer *c)
{
    if (!static_member(c)) {
        rd_kafka_resp_err_t err = rd_kafka_unsubscribe(c->rk);
        if (err)
            kchat__consumer_log_once(c, err, NULL, -1, "leaving the group failed");
    }
    stop_drain(c);   /* what unsubscribing queued is queued once it returns */
    park_all(c);
    revoke_parked(c);
    c->stop_revoked = true;
    stop_drain(c);
}

void *kchat__consumer_poll_main(void *arg)
{
    kchat_consumer *c = arg;
    while (!atomic_load(&c->stopping)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, POLL_MS);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
            rd_kafka_message_destroy(m);
            if (!renew(c))
                return NULL;
            continue;
        }
        drop_polled(c, m);
    }
    /* Stopping: give up the assignment here, on the thread that owns it. */
    stop_membership(c);
    unpark_all(c, true);
    return NULL;
}
