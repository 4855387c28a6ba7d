/*
 * The gateway's Kafka side: client settings, the producer (requests are
 * produced on the loop thread, pending.c; its delivery reports come back
 * here), and the Kafka thread, which makes sure the topics exist, then reads
 * every partition of the ten response topics and of chat-events from the
 * end (manual assignment, a unique group id, nothing committed: gateways
 * side by side each see every reply) and hands each record to the loop
 * thread (handoff.c).
 */
#include "gateway/gateway_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "kchat/codec.h"
#include "kchat/error.h"
#include "kchat/kafka.h"
#include "kchat/topics.h"

/* librdkafka's error callback of every gateway client: says once that
 * Kafka is unreachable (gw->kafka_down, cleared by the next record or
 * delivery).
 * @locality the thread polling that client: the Kafka thread (producer and
 *           reply consumer), a catch-up thread (its consumer), or the owner
 *           in kchat_gateway_stop() (flush, close) */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kchat_gateway *gw = opaque;

    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        if (!atomic_exchange(&gw->kafka_down, true))
            fprintf(stderr, "kchat gateway: Kafka unreachable: %s\n", reason);
    }
}

/* The producer's delivery report: a request that could not be delivered
 * goes to the loop (GW_ITEM_DR_FAIL), which answers its call 503; a
 * presence record that could not is counted.
 * @locality the Kafka thread (rd_kafka_poll()), or the owner in
 *           kchat_gateway_stop() (rd_kafka_flush()) */
static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kchat_gateway *gw = opaque;
    const void *v;
    size_t len;
    gw_item *it;

    (void)rk;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        atomic_store(&gw->kafka_down, false);
        return;
    }
    if (m->rkt != NULL && !strcmp(rd_kafka_topic_name(m->rkt), KCHAT_TOPIC_PRESENCE)) {
        atomic_fetch_add(&gw->presence_failed, 1);   /* presence.c: the backend's timeouts */
        return;
    }
    if (kchat_header_get(m, KCHAT_HDR_CID, &v, &len) != 0 || len >= sizeof(it->cid))
        return;
    if ((it = calloc(1, sizeof(*it))) == NULL)
        return;
    it->kind = GW_ITEM_DR_FAIL;
    memcpy(it->cid, v, len);
    kchat__gw_push(gw, it);
}

rd_kafka_conf_t *kchat__gw_kafka_conf(kchat_gateway *gw, char *errstr, size_t len)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    if (rd_kafka_conf_set(conf, "bootstrap.servers", gw->brokers, errstr, len) ||
        rd_kafka_conf_set(conf, "client.id", "kchat-gateway", errstr, len) ||
        rd_kafka_conf_set(conf, "log_level", "3", errstr, len))
        goto err_destroy;
    for (int i = 0; i < gw->cfg->n_x; i++)
        if (kchat_kafka_conf_kv(conf, gw->cfg->x[i], errstr, len) != KCHAT_OK)
            goto err_destroy;
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, gw);
    return conf;
err_destroy:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* fetch.wait.max.ms of the gateway's consumers (kchat_config_fetch_wait_ms()):
 * by broker unless set, so it may ask for the cluster id, waiting at most
 * @p timeout_ms (unknown counts as Kafka). `kchat dev` without --brokers
 * runs on the embedded mock cluster. */
void kchat__gw_fetch_wait_conf(kchat_gateway *gw, rd_kafka_conf_t *conf, int timeout_ms)
{
    int ms = kchat_config_fetch_wait_ms(gw->cfg, false);
    int mock_ms = kchat_config_fetch_wait_ms(gw->cfg, true);
    char v[16];

    if (ms != mock_ms) {
        bool mock = gw->cfg->brokers[0] == '\0';
        if (!mock) {
            char *id = rd_kafka_clusterid(gw->producer, timeout_ms);
            mock = kchat_kafka_is_mock_cluster(id);
            if (id != NULL)
                rd_kafka_mem_free(gw->producer, id);
        }
        if (mock)
            ms = mock_ms;
    }
    snprintf(v, sizeof(v), "%d", ms);
    if (ms >= 0)
        rd_kafka_conf_set(conf, "fetch.wait.max.ms", v, NULL, 0);
}

void kchat__gw_consumer_conf(rd_kafka_conf_t *conf, bool eof)
{
    char gid[64];

    snprintf(gid, sizeof(gid), "kchat-gateway-%ld-%08x%08x", (long)getpid(),
             randombytes_random(), randombytes_random());
    rd_kafka_conf_set(conf, "group.id", gid, NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", NULL, 0);
    rd_kafka_conf_set(conf, "enable.partition.eof", eof ? "true" : "false", NULL, 0);
    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", NULL, 0);
}

int kchat__gw_kafka_open(kchat_gateway *gw, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf;
    char linger_timeout[32];

    if ((conf = kchat__gw_kafka_conf(gw, errstr, errstr_size)) == NULL)
        return KCHAT_ECONFIG;
    /* A request not delivered a second after its call timed out fails
     * (dr_msg_cb()). */
    snprintf(linger_timeout, sizeof(linger_timeout), "%d", gw->cfg->http_timeout_ms + 1000);
    if (rd_kafka_conf_set(conf, "partitioner", "murmur2_random", errstr, errstr_size) ||
        rd_kafka_conf_set(conf, "linger.ms", "1", errstr, errstr_size) ||
        rd_kafka_conf_set(conf, "message.timeout.ms", linger_timeout, errstr, errstr_size)) {
        rd_kafka_conf_destroy(conf);
        return KCHAT_ECONFIG;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    if ((gw->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size)) == NULL) {
        rd_kafka_conf_destroy(conf);
        return KCHAT_EKAFKA;
    }
    if ((conf = kchat__gw_kafka_conf(gw, errstr, errstr_size)) == NULL)
        return KCHAT_ECONFIG;
    kchat__gw_consumer_conf(conf, false);
    kchat__gw_fetch_wait_conf(gw, conf, 2000);   /* Kafka may not be up yet: then Kafka's wait */
    if ((gw->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size)) == NULL) {
        rd_kafka_conf_destroy(conf);
        return KCHAT_EKAFKA;
    }
    rd_kafka_poll_set_consumer(gw->consumer);
    return KCHAT_OK;
}

gw_item *kchat__gw_event_item(const rd_kafka_message_t *m, int kind)
{
    const void *ct;
    size_t ctlen;
    kchat_fmt fmt = KCHAT_FMT_JSON;
    json_t *v = NULL, *t;
    gw_item *it;
    char *out = NULL;
    size_t outlen = 0;

    if (m->key == NULL || m->key_len == 0 || m->key_len >= sizeof(it->user))
        return NULL;
    if (kchat_header_get(m, KCHAT_HDR_CTYPE, &ct, &ctlen) == 0 &&
        ctlen == strlen("application/msgpack") && !memcmp(ct, "application/msgpack", ctlen))
        fmt = KCHAT_FMT_MSGPACK;
    if (kchat_codec_decode(fmt, m->payload, m->len, &v) != KCHAT_OK || !json_is_object(v)) {
        json_decref(v);
        return NULL;
    }
    if ((it = calloc(1, sizeof(*it))) == NULL) {
        json_decref(v);
        return NULL;
    }
    it->kind = kind;
    memcpy(it->user, m->key, m->key_len);
    t = json_object_get(v, "type");
    snprintf(it->type, sizeof(it->type), "%s",
             json_is_string(t) ? json_string_value(t) : "message");
    it->partition = m->partition;
    it->offset = m->offset;
    /* Compact JSON holds no raw newline: one `data:` line. */
    if (kchat_codec_encode(KCHAT_FMT_JSON, v, &out, &outlen) != KCHAT_OK) {
        json_decref(v);
        free(it);
        return NULL;
    }
    json_decref(v);
    it->data = malloc(outlen + 1);
    if (it->data == NULL) {
        free(out);
        free(it);
        return NULL;
    }
    memcpy(it->data, out, outlen);
    it->data[outlen] = '\0';
    it->len = outlen;
    free(out);
    return it;
}

bool kchat__gw_record_authentic(kchat_gateway *gw, const rd_kafka_message_t *m)
{
    return gw->auth == NULL || kchat_auth_verify(gw->auth, m, "gateway");
}

/* The value of response @p m into it->data (NUL-terminated): opened when
 * the backend sealed it (a sealed response that does not open is dropped:
 * its call times out), else as it is.
 * @locality the Kafka thread */
static int response_value(kchat_gateway *gw, const rd_kafka_message_t *m, gw_item *it)
{
    unsigned char *plain;
    const void *v;
    size_t vl, plen;
    int rc;

    if (kchat_header_get(m, KCHAT_HDR_SEALED, &v, &vl) != 0) {
        if ((it->data = malloc(m->len + 1)) == NULL)
            return KCHAT_ENOMEM;
        memcpy(it->data, m->payload, m->len);
        it->data[m->len] = '\0';
        it->len = m->len;
        return KCHAT_OK;
    }
    if (gw->auth == NULL)
        return KCHAT_ECRYPTO;
    rc = kchat_auth_open(gw->auth, KCHAT_SEAL_RESPONSE, rd_kafka_topic_name(m->rkt), m->key,
                         m->key_len, it->cid, strlen(it->cid), m->payload ? m->payload : "",
                         m->len, &plain, &plen);
    if (rc != KCHAT_OK)
        return rc;
    it->data = (char *)plain;
    it->len = plen;
    return KCHAT_OK;
}

/* Hand one record to the loop: a chat-events record as an event, a
 * response carrying one of our kchat-cids as it is.
 * @locality the Kafka thread */
static void handle_record(kchat_gateway *gw, rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    gw_item *it;
    const void *v;
    size_t len;

    if (!strcmp(topic, KCHAT_TOPIC_EVENTS)) {
        if (kchat__gw_record_authentic(gw, m) &&
            (it = kchat__gw_event_item(m, GW_ITEM_EVENT)) != NULL)
            kchat__gw_push(gw, it);
        return;
    }
    if (kchat_header_get(m, KCHAT_HDR_CID, &v, &len) != 0 || len == 0 || len >= sizeof(it->cid))
        return;
    /* Only our own cids ("g..."), cheaply filtered before copying. */
    if (((const char *)v)[0] != 'g' || !kchat__gw_record_authentic(gw, m))
        return;
    if ((it = calloc(1, sizeof(*it))) == NULL)
        return;
    it->kind = GW_ITEM_RESPONSE;
    memcpy(it->cid, v, len);
    it->op = -1;
    for (int op = 0; op < KCHAT_OP__COUNT; op++)
        if (!strcmp(topic, kchat_op_response_topic((kchat_op)op)))
            it->op = op;
    if (response_value(gw, m, it) != KCHAT_OK) {
        free(it);
        return;
    }
    kchat__gw_push(gw, it);
}

/* Find every topic's partition count and its end offsets, then assign;
 * records chat-events' partition count and live positions (gw->events_next)
 * and kchat-presence's partition count for the loop, which reads them once
 * gw->ready is published.
 * @locality the Kafka thread, before gw->ready */
static KCHAT_MUST_CHECK int consumer_assign(kchat_gateway *gw, char *errstr, size_t len)
{
    const char *topics[KCHAT_OP__COUNT + 1];
    int n_topics = 0, rc = KCHAT_EKAFKA;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *parts;
    rd_kafka_resp_err_t err;

    for (int op = 0; op < KCHAT_OP__COUNT; op++)
        topics[n_topics++] = kchat_op_response_topic((kchat_op)op);
    topics[n_topics++] = KCHAT_TOPIC_EVENTS;
    err = rd_kafka_metadata(gw->consumer, 1, NULL, &md, 10000);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, len, "metadata: %s", rd_kafka_err2str(err));
        return KCHAT_EKAFKA;
    }
    parts = rd_kafka_topic_partition_list_new(64);
    for (int i = 0; i < n_topics; i++) {
        const struct rd_kafka_metadata_topic *t = NULL;
        for (int j = 0; j < md->topic_cnt; j++)
            if (!strcmp(md->topics[j].topic, topics[i]))
                t = &md->topics[j];
        if (t == NULL || t->partition_cnt <= 0) {
            snprintf(errstr, len, "topic %s is missing", topics[i]);
            goto out;
        }
        if (!strcmp(topics[i], KCHAT_TOPIC_EVENTS)) {
            gw->event_partitions = t->partition_cnt;
            free(gw->events_next);
            gw->events_next = calloc((size_t)t->partition_cnt, sizeof(int64_t));
            if (gw->events_next == NULL) {
                rc = KCHAT_ENOMEM;
                goto out;
            }
        }
        for (int p = 0; p < t->partition_cnt; p++) {
            int64_t lo = 0, hi = 0;
            err = rd_kafka_query_watermark_offsets(gw->consumer, topics[i], p, &lo, &hi, 10000);
            if (err) {
                snprintf(errstr, len, "offsets of %s [%d]: %s", topics[i], p,
                         rd_kafka_err2str(err));
                goto out;
            }
            rd_kafka_topic_partition_list_add(parts, topics[i], p)->offset = hi;
            if (!strcmp(topics[i], KCHAT_TOPIC_EVENTS))
                gw->events_next[p] = hi;
        }
    }
    /* kchat-presence is only written (presence.c), to every partition */
    for (int j = 0; j < md->topic_cnt; j++)
        if (!strcmp(md->topics[j].topic, KCHAT_TOPIC_PRESENCE))
            gw->presence_partitions = md->topics[j].partition_cnt;
    if (gw->presence_partitions <= 0) {
        snprintf(errstr, len, "topic %s is missing", KCHAT_TOPIC_PRESENCE);
        goto out;
    }
    if ((err = rd_kafka_assign(gw->consumer, parts)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, len, "assign: %s", rd_kafka_err2str(err));
        goto out;
    }
    rc = KCHAT_OK;
out:
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_metadata_destroy(md);
    return rc;
}

/* Until it works or the gateway stops: make sure the topics exist and
 * assign the reply consumer; then publish gw->ready.
 * @locality the Kafka thread
 * @locks takes gw->lock (must not be held) */
static void kafka_until_ready(kchat_gateway *gw)
{
    char errstr[512];
    int parts = 0;

    while (!atomic_load(&gw->stopping)) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err;
        errstr[0] = '\0';
        /* A quick reachability probe first: kchat_topics_ensure() blocks for
         * up to 30 s, which would hold up a stop. */
        err = rd_kafka_metadata(gw->producer, 0, NULL, &md, 1000);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(errstr, sizeof(errstr), "%s", rd_kafka_err2str(err));
        } else {
            rd_kafka_metadata_destroy(md);
            if (kchat_topics_ensure(gw->producer, gw->cfg->partitions, gw->cfg->replication,
                                    gw->cfg->login_retention_ms, &parts, errstr,
                                    sizeof(errstr)) == KCHAT_OK &&
                consumer_assign(gw, errstr, sizeof(errstr)) == KCHAT_OK)
                break;
        }
        fprintf(stderr, "kchat gateway: Kafka not ready (%s); retrying\n", errstr);
        for (int i = 0; i < 10 && !atomic_load(&gw->stopping); i++)
            usleep(100 * 1000);
    }
    if (!atomic_load(&gw->stopping)) {
        pthread_mutex_lock(&gw->lock);
        atomic_store(&gw->kafka_down, false);
        atomic_store(&gw->ready, true);
        pthread_cond_broadcast(&gw->ready_cond);
        pthread_mutex_unlock(&gw->lock);
    }
}

void *kchat__gw_kafka_main(void *arg)
{
    kchat_gateway *gw = arg;

    kafka_until_ready(gw);
    while (!atomic_load(&gw->stopping)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(gw->consumer, 50);
        rd_kafka_poll(gw->producer, 0);   /* the producer's callbacks */
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            atomic_store(&gw->kafka_down, false);
            handle_record(gw, m);
        }
        rd_kafka_message_destroy(m);
    }
    return NULL;
}
