/*
 * Catch-up of a resumed event stream: a short-lived thread with a consumer
 * of its own reads one chat-events partition from the stream's
 * Last-Event-ID up to the live position the stream was opened at, hands
 * the user's records to the loop (GW_ITEM_CATCHUP) and then says how it
 * ended (GW_ITEM_CATCHUP_DONE). The loop holds the stream's live records
 * meanwhile (sse.c). A catch-up gives up after 10 s or at a stop; the
 * owner waits for gw->catchups to reach 0 before freeing the gateway.
 */
#include "gateway/gateway_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/error.h"
#include "kchat/kafka.h"

#define GW_CATCHUP_MAX_S 10.0   /* longest a catch-up may take */

/* What a catch-up thread reads; the thread frees it. */
struct catchup {
    kchat_gateway *gw;
    uint64_t stream_id;
    char user[72];
    int32_t partition;
    int64_t from, to;
};

/* A consumer of @p c's partition from c->from; NULL on error.
 * @locality the catch-up thread */
static rd_kafka_t *catchup_consumer(const struct catchup *c)
{
    kchat_gateway *gw = c->gw;
    char errstr[256];
    rd_kafka_conf_t *conf = kchat__gw_kafka_conf(gw, errstr, sizeof(errstr));
    rd_kafka_topic_partition_list_t *parts;
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
    parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, KCHAT_TOPIC_EVENTS, c->partition)->offset = c->from;
    /* Should it fail, nothing arrives and the catch-up ends at its deadline. */
    rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    return rk;
}

/* Read up to c->to, pushing the user's records; true if it got there
 * before @p deadline (monotonic seconds).
 * @locality the catch-up thread */
static bool catchup_read(const struct catchup *c, rd_kafka_t *rk, double deadline)
{
    kchat_gateway *gw = c->gw;
    size_t ulen = strlen(c->user);
    gw_item *it;

    while (!atomic_load(&gw->stopping) && kchat__gw_now() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        bool end;
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            end = m->offset >= c->to;
            rd_kafka_message_destroy(m);
            if (end)
                return true;
            continue;
        }
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->offset >= c->to) {
            rd_kafka_message_destroy(m);
            return true;
        }
        if (m->key_len == ulen && !memcmp(m->key, c->user, ulen) &&
            kchat__gw_record_authentic(gw, m) &&
            (it = kchat__gw_event_item(m, GW_ITEM_CATCHUP)) != NULL) {
            it->stream_id = c->stream_id;
            kchat__gw_push(gw, it);
        }
        end = m->offset + 1 >= c->to;
        rd_kafka_message_destroy(m);
        if (end)
            return true;
    }
    return false;
}

/* @locality the catch-up thread (pthread_create() by kchat__gw_catchup_start()) */
static void *catchup_main(void *arg)
{
    struct catchup *c = arg;
    kchat_gateway *gw = c->gw;
    double deadline = kchat__gw_now() + GW_CATCHUP_MAX_S;
    rd_kafka_t *rk = catchup_consumer(c);
    bool ok = rk != NULL && catchup_read(c, rk, deadline);
    gw_item *it;

    if ((it = calloc(1, sizeof(*it))) != NULL) {
        it->kind = GW_ITEM_CATCHUP_DONE;
        it->stream_id = c->stream_id;
        it->ok = ok;
        kchat__gw_push(gw, it);
    }
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    free(c);
    atomic_fetch_sub(&gw->catchups, 1);
    return NULL;
}

int kchat__gw_catchup_start(kchat_gateway *gw, uint64_t stream_id, const char *user,
                            int32_t partition, int64_t from, int64_t to)
{
    struct catchup *c = calloc(1, sizeof(*c));
    pthread_t t;

    if (c == NULL)
        return KCHAT_ENOMEM;
    c->gw = gw;
    c->stream_id = stream_id;
    snprintf(c->user, sizeof(c->user), "%s", user);
    c->partition = partition;
    c->from = from;
    c->to = to;
    atomic_fetch_add(&gw->catchups, 1);
    if (pthread_create(&t, NULL, catchup_main, c) != 0) {
        atomic_fetch_sub(&gw->catchups, 1);
        free(c);
        return KCHAT_ENOMEM;
    }
    pthread_detach(t);
    return KCHAT_OK;
}
