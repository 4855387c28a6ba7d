/*
 * From a committed transaction to Kafka: a worker's new outbox records are
 * handed to the one idempotent producer; its delivery reports tell the
 * shards what to delete (Kafka has it) and what to produce again (Kafka
 * refused it for good) (outbox.c). A poller thread serves those reports and
 * replaces the producer after a fatal error.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors.h"
#include "changelog.h"
#include "replicas.h"
#include "streams.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

#define FLUSH_TIMEOUT_MS 5000
#define PRODUCER_RETIRE_MS 5000  /* a failed producer's purged records are reported within this */

/* ---- delivery opaque: kind (2 bits) | shard (14 bits) | seq (48 bits) ---- */

static void *opaque_pack(uint8_t kind, uint32_t shard, uint64_t seq)
{
    return (void *)(uintptr_t)((uint64_t)kind << 62 | (uint64_t)shard << 48 |
                               (seq & 0xffffffffffffULL));
}

static void opaque_unpack(void *op, uint8_t *kind, uint32_t *shard, uint64_t *seq)
{
    uint64_t v = (uint64_t)(uintptr_t)op;
    *kind = (uint8_t)(v >> 62);
    *shard = (uint32_t)(v >> 48) & 0x3fff;
    *seq = v & 0xffffffffffffULL;
}

/* ---- producing ---- */

/* The headers of outbox record @p r as produced: its own, then for a
 * command its source shard, outbox seq and stream base, and for a command,
 * directory record or room summary the data set; last, with a deployment
 * secret, the MAC of all of it (include/kchat/auth.h).
 * @locality worker that owns shard @p shard */
static rd_kafka_headers_t *produce_headers(kchat_backend *be, uint32_t shard, uint64_t seq,
                                           const kchat_outbox_rec *r)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(r->n_headers + 3);
    char num[24];

    for (size_t i = 0; i < r->n_headers; i++)
        rd_kafka_header_add(hdrs, r->headers[i].name, -1, r->headers[i].value,
                            (ssize_t)r->headers[i].len);
    if (r->kind == OUT_COMMAND) {
        uint64_t base = kchat__streams_base(be, &be->shards[shard], r);

        snprintf(num, sizeof(num), "%" PRIu32, shard);
        rd_kafka_header_add(hdrs, KCHAT_HDR_SRC_SHARD, -1, num, -1);
        snprintf(num, sizeof(num), "%" PRIu64, seq);
        rd_kafka_header_add(hdrs, KCHAT_HDR_SRC_SEQ, -1, num, -1);
        if (base > 0) {
            snprintf(num, sizeof(num), "%" PRIu64, base);
            rd_kafka_header_add(hdrs, KCHAT_HDR_CMD_BASE, -1, num, -1);
        }
    }
    /* Tagged when produced, so records an older kchat left in the outbox
     * leave tagged too (see dataset_open() in datadir.c). */
    if (r->kind == OUT_COMMAND || !strcmp(r->topic, KCHAT_TOPIC_DIRECTORY) ||
        !strcmp(r->topic, KCHAT_TOPIC_ROOMS))
        rd_kafka_header_add(hdrs, KCHAT_HDR_DATASET, -1, be->dataset, -1);
    if (be->auth != NULL &&
        kchat_auth_sign(be->auth, r->topic, r->key, r->key_len, r->value, r->value_len, hdrs) !=
            KCHAT_OK)
        fprintf(stderr, "kchat: cannot sign a record for %s: its readers will drop it\n",
                r->topic);
    return hdrs;
}

void kchat__produce(kchat_backend *be, uint32_t shard, uint64_t seq, const kchat_outbox_rec *r)
{
    rd_kafka_headers_t *hdrs = produce_headers(be, shard, seq, r);
    rd_kafka_resp_err_t err;

    kchat__streams_produced(be, &be->shards[shard], r);

    /* producev takes the headers only when it succeeds; on failure they are
     * still ours, so a retry reuses them. */
    pthread_rwlock_rdlock(&be->producer_lock);
    for (;;) {
        err = rd_kafka_producev(be->producer, RD_KAFKA_V_TOPIC(r->topic),
                                RD_KAFKA_V_PARTITION(r->partition >= 0 ? r->partition
                                                                       : RD_KAFKA_PARTITION_UA),
                                RD_KAFKA_V_KEY(r->key, r->key_len),
                                RD_KAFKA_V_VALUE((void *)r->value, r->value_len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_HEADERS(hdrs),
                                RD_KAFKA_V_OPAQUE(opaque_pack(r->kind, shard, seq)),
                                RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
            /* produced again by the next producer (see producer_replace()) */
            atomic_store(&be->producer_fatal, true);
            kchat__outbox_refused(&be->shards[shard], seq);
            rd_kafka_headers_destroy(hdrs);
            break;
        }
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            /* Left in the outbox: produced again at the next start. */
            fprintf(stderr, "kchat: cannot produce to %s: %s\n", r->topic, rd_kafka_err2str(err));
            rd_kafka_headers_destroy(hdrs);
            break;
        }
        kchat__sleep_ms(1);   /* the poller thread drains the queue */
    }
    pthread_rwlock_unlock(&be->producer_lock);
    atomic_fetch_add(&be->stats.produced, 1);
}

void kchat__out_rec_flush(kchat_backend *be, struct out_rec *r)
{
    kchat_outbox_rec rec = {
        .topic = r->topic, .partition = r->partition, .key = r->key,
        .key_len = r->key_len, .value = r->value, .value_len = r->value_len,
        .headers = r->hdr, .n_headers = r->n_hdr, .kind = r->kind,
    };

    if (r->committed_us > 0)
        kchat_hist_observe(&be->stage[KCHAT__STAGE_RELEASE],
                           (double)(kchat__monotonic_us() - r->committed_us) / 1e6);
    kchat__directory_write_through(be, r->topic, r->value, r->value_len);
    if (r->kind == OUT_COMMAND) {
        int rc = kchat__streams_pending_add(be, &be->shards[r->shard], r->seq, r->target,
                                            r->cseq);
        if (rc != KCHAT_OK)
            fprintf(stderr, "kchat: shard %u: command %" PRIu64 " not listed as pending "
                    "(%s); it stays in the outbox until the next start\n", r->shard,
                    r->seq, kchat_strerror(rc));
        /* In memory alone when nothing of its stream waits in Kafka (local.c);
         * else through Kafka, and in memory as a shortcut. */
        if (rc == KCHAT_OK && kchat__local_alone(be, r) && kchat__local_hand(be, r)) {
            atomic_fetch_add(&be->stats.memory_only_commands, 1);
        } else {
            kchat__produce(be, r->shard, r->seq, &rec);
            kchat__local_hand(be, r);
        }
    } else if (kchat__local_hand_ack(be, r)) {
        /* The ack went in memory: as good as Kafka having it. */
        atomic_fetch_add(&be->stats.local_acks, 1);
        kchat__outbox_delivered(&be->shards[r->shard], r->seq);
    } else {
        kchat__produce(be, r->shard, r->seq, &rec);
    }
    kchat__out_rec_release(r);
}

void kchat__worker_flush_out(kchat_backend *be, struct worker *w)
{
    kchat__room_summaries_write_through(be, w->out, w->n_out);
    for (size_t i = 0; i < w->n_out; i++)
        kchat__out_rec_flush(be, &w->out[i]);
    w->n_out = 0;
}

void kchat__worker_discard_out(struct worker *w)
{
    for (size_t i = 0; i < w->n_out; i++)
        kchat__out_rec_release(&w->out[i]);
    w->n_out = 0;
}

/* ---- delivery reports and errors ---- */

/* The producer's delivery-report callback: what Kafka has is deleted from
 * the outbox (a command only once its target applied it), what it refused
 * is produced again.
 * @locality the thread serving the producer's queue: the poller thread
 *           (also polling a failed producer in producer_replace()), or the
 *           stopping thread in kchat__producer_flush() */
static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kchat_backend *be = opaque;
    struct shard *sh;
    uint8_t kind;
    uint32_t shard;
    uint64_t seq;

    (void)rk;
    opaque_unpack(m->_private, &kind, &shard, &seq);
    if ((int)shard >= be->partitions)
        return;
    sh = &be->shards[shard];
    if (m->err) {
        fprintf(stderr, "kchat: delivery to %s failed (%s); will retry\n",
                rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
        kchat__outbox_refused(sh, seq);
        return;
    }
    atomic_fetch_add(&be->stats.delivered, 1);
    if (kind == OUT_COMMAND)
        return;   /* deleted once the target shard has applied it */
    {
        /* since producev() (the record's timestamp will not do: a broker
         * may answer with its log-append time, the mock cluster with 1234) */
        int64_t us = rd_kafka_message_latency(m);

        if (us >= 0)
            kchat_hist_observe(&be->stage[KCHAT__STAGE_ACK], (double)us / 1e6);
    }
    kchat__outbox_delivered(sh, seq);
}

/* The producer's error callback: a fatal error makes the poller replace it.
 * @locality the thread serving the producer's queue: the poller thread,
 *           the thread in kchat_topics_ensure() at start, or the stopping
 *           thread in kchat__producer_flush() */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kchat_backend *be = opaque;

    if (rd_kafka_fatal_error(rk, NULL, 0)) {
        fprintf(stderr, "kchat: FATAL producer error: %s (%s); replacing the producer\n",
                rd_kafka_err2str((rd_kafka_resp_err_t)err), reason);
        atomic_store(&be->producer_fatal, true);
    } else if (err != RD_KAFKA_RESP_ERR__TRANSPORT && err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        fprintf(stderr, "kchat: kafka: %s\n", reason);
}

/* ---- the producer and its poller ---- */

rd_kafka_conf_t *kchat__producer_conf(const kchat_backend *be, char *errstr, size_t len)
{
    rd_kafka_conf_t *conf = kchat__kafka_conf(be, errstr, len);
    char linger[16];

    if (conf == NULL)
        return NULL;
    snprintf(linger, sizeof(linger), "%d", be->cfg->linger_ms);
    if (rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, len) ||
        rd_kafka_conf_set(conf, "linger.ms", linger, errstr, len) ||
        rd_kafka_conf_set(conf, "partitioner", "murmur2_random", errstr, len) ||
        rd_kafka_conf_set(conf, "message.timeout.ms", "0", errstr, len) ||
        rd_kafka_conf_set(conf, "queue.buffering.max.messages", "1000000", errstr, len) ||
        /* The mock cluster of librdkafka 2.0.2 accepts a produce request
         * whose sequence skips one it has just refused, where Kafka answers
         * OUT_OF_ORDER_SEQUENCE_NUMBER; the idempotent producer then takes
         * the skipped records as delivered (regression 0035). With one
         * request in flight per connection no later one is there to be
         * accepted. */
        (be->mock_broker &&
         rd_kafka_conf_set(conf, "max.in.flight.requests.per.connection", "1", errstr, len))) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

/* A new producer in be->producer.
 * @locality the thread in kchat_backend_start(), or the poller thread
 * @locks the poller: be->producer_lock MUST be held exclusively */
KCHAT_MUST_CHECK
static int producer_new(kchat_backend *be, char *errstr, size_t len)
{
    rd_kafka_conf_t *conf = kchat__producer_conf(be, errstr, len);

    if (conf == NULL)
        return KCHAT_ECONFIG;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, be);
    if ((be->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, len)) == NULL) {
        rd_kafka_conf_destroy(conf);
        return KCHAT_EKAFKA;
    }
    return KCHAT_OK;
}

/* Swap a producer that failed for good (an idempotent producer's fatal
 * error: its sequence state is lost) for a new one. Its queued and
 * in-flight records are purged; their delivery reports (and those of
 * records produced while it was failing) put them on their shards' resend
 * lists, which the workers produce again on the new one (a command with
 * its whole stream, in order).
 * @locality the poller thread
 * @locks takes be->producer_lock exclusively */
static void producer_replace(kchat_backend *be)
{
    rd_kafka_t *old = be->producer;
    int64_t end = kchat__monotonic_us() / 1000 + PRODUCER_RETIRE_MS;
    char errstr[512];

    pthread_rwlock_wrlock(&be->producer_lock);
    rd_kafka_purge(old, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    while (rd_kafka_outq_len(old) > 0 && kchat__monotonic_us() / 1000 < end)
        rd_kafka_poll(old, 50);
    if (rd_kafka_outq_len(old) > 0)
        fprintf(stderr, "kchat: %d records of the failed producer not reported; they stay in "
                "the outbox until the next start\n", rd_kafka_outq_len(old));
    if (producer_new(be, errstr, sizeof(errstr)) != KCHAT_OK) {
        fprintf(stderr, "kchat: cannot make a new producer: %s; trying again in 1 s\n", errstr);
        be->producer = old;
        pthread_rwlock_unlock(&be->producer_lock);
        kchat__sleep_ms(1000);
        return;
    }
    atomic_store(&be->producer_fatal, false);
    pthread_rwlock_unlock(&be->producer_lock);
    rd_kafka_destroy(old);
    atomic_fetch_add(&be->stats.producer_restarts, 1);
    fprintf(stderr, "kchat: a new producer replaced the failed one; what it held is produced "
            "again\n");
}

/* The poller thread's main: serve delivery reports until the backend stops.
 * It is the only writer of be->producer, so it reads it without the lock.
 * @locality the poller thread */
static void *producer_poll_main(void *arg)
{
    kchat_backend *be = arg;
    while (!atomic_load(&be->stopping)) {
        rd_kafka_poll(be->producer, 50);
        if (atomic_load(&be->producer_fatal))
            producer_replace(be);
    }
    return NULL;
}

/* Read the cluster's id into be->cluster_id with the new producer. An
 * outside mock cluster (tests) is known only now: the producer is made
 * again with be->mock_broker set (the embedded broker set it before).
 * @locality the thread in kchat_backend_start(), before the poller starts */
KCHAT_MUST_CHECK
static int producer_for_cluster(kchat_backend *be, char *errstr, size_t len)
{
    char *cid = rd_kafka_clusterid(be->producer, 10000);

    if (cid == NULL) {
        snprintf(errstr, len, "cannot read the cluster id of %s", be->bootstraps);
        return KCHAT_EKAFKA;
    }
    snprintf(be->cluster_id, sizeof(be->cluster_id), "%s", cid);
    rd_kafka_mem_free(be->producer, cid);
    if (be->mock_broker || !kchat_kafka_is_mock_cluster(be->cluster_id))
        return KCHAT_OK;
    be->mock_broker = true;
    rd_kafka_destroy(be->producer);   /* it has produced nothing yet */
    be->producer = NULL;
    return producer_new(be, errstr, len);
}

int kchat__producer_start(kchat_backend *be, char *errstr, size_t len)
{
    int rc;

    be->mock_broker = be->embedded != NULL;
    if ((rc = producer_new(be, errstr, len)) != KCHAT_OK)
        return rc;
    if ((rc = producer_for_cluster(be, errstr, len)) != KCHAT_OK) {
        if (be->producer != NULL)
            rd_kafka_destroy(be->producer);
        be->producer = NULL;
        return rc;
    }
    if (pthread_create(&be->producer_poller, NULL, producer_poll_main, be) != 0) {
        snprintf(errstr, len, "cannot start the producer thread");
        rd_kafka_destroy(be->producer);
        be->producer = NULL;
        return KCHAT_ENOMEM;
    }
    be->poller_running = true;
    return KCHAT_OK;
}

void kchat__producer_flush(kchat_backend *be)
{
    /* the poller stops first: it may be replacing the producer */
    if (be->poller_running)
        pthread_join(be->producer_poller, NULL);
    be->poller_running = false;
    if (be->producer == NULL ||
        rd_kafka_flush(be->producer, FLUSH_TIMEOUT_MS) == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    fprintf(stderr, "kchat: %d records not confirmed at exit; they stay in the outbox "
                    "and are re-sent at the next start\n", rd_kafka_outq_len(be->producer));
    rd_kafka_purge(be->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(be->producer, 100);
}

void kchat__producer_close(kchat_backend *be)
{
    if (be->producer)
        rd_kafka_destroy(be->producer);
    be->producer = NULL;
}
