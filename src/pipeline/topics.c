/* The embedded broker and topic creation (include/kchat/topics.h). */
#include "kchat/topics.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <librdkafka/rdkafka_mock.h>

#include "kchat/codec.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

struct kchat_embedded {
    rd_kafka_t *host;                  /* the handle the mock cluster lives on */
    rd_kafka_mock_cluster_t *cluster;
};

static const kchat_topic_id extra_topics[] = {
    KCHAT_T_EVENTS, KCHAT_T_DLQ, KCHAT_T_INTERNAL, KCHAT_T_DIRECTORY,
    KCHAT_T_ROOMS, KCHAT_T_CHANGELOG, KCHAT_T_META, KCHAT_T_PRESENCE,
};
#define N_EXTRA (sizeof(extra_topics) / sizeof(extra_topics[0]))

size_t kchat_topic_count(void)
{
    return 2 * (size_t)KCHAT_OP__COUNT + N_EXTRA;
}

const char *kchat_topic_name(size_t i)
{
    if (i < (size_t)KCHAT_OP__COUNT)
        return kchat_op_request_topic((kchat_op)i);
    i -= KCHAT_OP__COUNT;
    if (i < (size_t)KCHAT_OP__COUNT)
        return kchat_op_response_topic((kchat_op)i);
    i -= KCHAT_OP__COUNT;
    return i < N_EXTRA ? kchat_topic(extra_topics[i]) : NULL;
}

/* Request topics, kchat-internal, kchat-changelog and kchat-presence must share one
 * partition count: partition p of each belongs to shard p. */
static bool co_partitioned(const char *name)
{
    kchat_op op;
    return kchat_op_from_request_topic(name, &op) == KCHAT_OK ||
           !strcmp(name, KCHAT_TOPIC_INTERNAL) || !strcmp(name, KCHAT_TOPIC_CHANGELOG) ||
           !strcmp(name, KCHAT_TOPIC_PRESENCE);
}

int kchat_embedded_start(int brokers, int partitions, kchat_embedded **out,
                         char *errstr, size_t errstr_size)
{
    kchat_embedded *e = calloc(1, sizeof(*e));
    rd_kafka_conf_t *conf;
    int replication = brokers < 3 ? brokers : 3;

    if (e == NULL)
        return KCHAT_ENOMEM;
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    e->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (e->host == NULL) {
        rd_kafka_conf_destroy(conf);
        goto err_free;
    }
    e->cluster = rd_kafka_mock_cluster_new(e->host, brokers);
    if (e->cluster == NULL) {
        snprintf(errstr, errstr_size, "cannot start the embedded mock cluster");
        goto err_destroy_host;
    }
    for (size_t i = 0; i < kchat_topic_count(); i++) {
        const char *name = kchat_topic_name(i);
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
            e->cluster, name, strcmp(name, KCHAT_TOPIC_META) ? partitions : 1, replication);
        if (err) {
            snprintf(errstr, errstr_size, "embedded broker: cannot create topic %s: %s",
                     name, rd_kafka_err2str(err));
            goto err_destroy_cluster;
        }
    }
    *out = e;
    return KCHAT_OK;

err_destroy_cluster:
    rd_kafka_mock_cluster_destroy(e->cluster);
err_destroy_host:
    rd_kafka_destroy(e->host);
err_free:
    free(e);
    return KCHAT_EKAFKA;
}

const char *kchat_embedded_bootstraps(const kchat_embedded *e)
{
    return rd_kafka_mock_cluster_bootstraps(e->cluster);
}

void kchat_embedded_stop(kchat_embedded *e)
{
    if (e == NULL)
        return;
    rd_kafka_mock_cluster_destroy(e->cluster);
    rd_kafka_destroy(e->host);
    free(e);
}

/* Partition count of every kchat topic per metadata; -1 when missing. */
KCHAT_MUST_CHECK
static int topics_describe(rd_kafka_t *rk, int *counts, int *broker_cnt,
                           char *errstr, size_t errstr_size)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, 10000);

    if (err) {
        snprintf(errstr, errstr_size, "cannot read cluster metadata: %s", rd_kafka_err2str(err));
        return KCHAT_EKAFKA;
    }
    *broker_cnt = md->broker_cnt;
    for (size_t i = 0; i < kchat_topic_count(); i++) {
        counts[i] = -1;
        for (int t = 0; t < md->topic_cnt; t++)
            if (!strcmp(md->topics[t].topic, kchat_topic_name(i)) && !md->topics[t].err)
                counts[i] = md->topics[t].partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
    return KCHAT_OK;
}

int kchat_topic_replicas(rd_kafka_t *rk, const char *topic, int *replicas, char *errstr,
                         size_t errstr_size)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t err;
    int fewest = -1;

    if (rkt == NULL) {
        snprintf(errstr, errstr_size, "topic %s: %s", topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        return KCHAT_EKAFKA;
    }
    err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    rd_kafka_topic_destroy(rkt);
    if (err) {
        snprintf(errstr, errstr_size, "cannot read the metadata of %s: %s", topic,
                 rd_kafka_err2str(err));
        return KCHAT_EKAFKA;
    }
    for (int t = 0; t < md->topic_cnt; t++) {
        if (strcmp(md->topics[t].topic, topic) != 0 || md->topics[t].err)
            continue;
        for (int p = 0; p < md->topics[t].partition_cnt; p++)
            if (fewest < 0 || md->topics[t].partitions[p].replica_cnt < fewest)
                fewest = md->topics[t].partitions[p].replica_cnt;
    }
    rd_kafka_metadata_destroy(md);
    if (fewest < 0) {
        snprintf(errstr, errstr_size, "topic %s has no partitions on the cluster", topic);
        return KCHAT_EKAFKA;
    }
    *replicas = fewest;
    return KCHAT_OK;
}

KCHAT_MUST_CHECK
static int topics_create(rd_kafka_t *rk, const int *counts, int partitions, int replication,
                         long login_retention_ms, char *errstr, size_t errstr_size)
{
    rd_kafka_NewTopic_t *nt[64];
    size_t n = 0;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_event_t *ev;
    char retention[24];
    int rc = KCHAT_OK;

    /* Passwords travel on login-request and user-add-request: keep their
     * records only that long. */
    snprintf(retention, sizeof(retention), "%ld", login_retention_ms);

    for (size_t i = 0; i < kchat_topic_count() && n < 64; i++) {
        const char *name = kchat_topic_name(i);
        if (counts[i] >= 0)
            continue;
        nt[n] = rd_kafka_NewTopic_new(name, strcmp(name, KCHAT_TOPIC_META) ? partitions : 1,
                                      replication, errstr, errstr_size);
        if (nt[n] == NULL) {
            rc = KCHAT_ECONFIG;
            goto out_destroy;
        }
        if (!strcmp(name, KCHAT_TOPIC_DIRECTORY) || !strcmp(name, KCHAT_TOPIC_ROOMS) ||
            !strcmp(name, KCHAT_TOPIC_CHANGELOG) || !strcmp(name, KCHAT_TOPIC_META))
            rd_kafka_NewTopic_set_config(nt[n], "cleanup.policy", "compact");
        /* Deletions stay this long after compaction reached them: a shard
         * copy older than --changelog-copy-max-age is restored whole. */
        if (!strcmp(name, KCHAT_TOPIC_CHANGELOG))
            rd_kafka_NewTopic_set_config(nt[n], "delete.retention.ms", "86400000");
        if (!strcmp(name, kchat_op_request_topic(KCHAT_OP_LOGIN)) ||
            !strcmp(name, kchat_op_request_topic(KCHAT_OP_USER_ADD)))
            rd_kafka_NewTopic_set_config(nt[n], "retention.ms", retention);
        /* Presence records matter for a minute at most (docs/design.md). */
        if (!strcmp(name, KCHAT_TOPIC_PRESENCE))
            rd_kafka_NewTopic_set_config(nt[n], "retention.ms", "3600000");
        n++;
    }
    if (n == 0)
        goto out_destroy;
    rd_kafka_CreateTopics(rk, nt, n, NULL, q);
    /* No answer is not fatal by itself: the mock never answers, and the
     * metadata check that follows decides. */
    ev = rd_kafka_queue_poll(q, 15000);
    if (ev == NULL) {
        fprintf(stderr, "kchat: CreateTopics got no answer within 15 s\n");
    } else {
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        size_t cnt = 0;
        const rd_kafka_topic_result_t **tr = res ? rd_kafka_CreateTopics_result_topics(res, &cnt)
                                                 : NULL;
        /* The embedded mock answers no CreateTopics: the metadata check that
         * follows is what decides. */
        for (size_t i = 0; i < cnt; i++) {
            rd_kafka_resp_err_t err = rd_kafka_topic_result_error(tr[i]);
            if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                fprintf(stderr, "kchat: creating topic %s: %s\n",
                        rd_kafka_topic_result_name(tr[i]), rd_kafka_err2str(err));
        }
        rd_kafka_event_destroy(ev);
    }
out_destroy:
    for (size_t i = 0; i < n; i++)
        rd_kafka_NewTopic_destroy(nt[i]);
    rd_kafka_queue_destroy(q);
    return rc;
}

/* Whether the existing co-partitioned topics share one partition count;
 * *common gets it (-1 when none exists yet). */
KCHAT_MUST_CHECK
static int check_co_partitioned(const int *counts, int *common, char *errstr, size_t errstr_size)
{
    const char *first = NULL;

    *common = -1;
    for (size_t i = 0; i < kchat_topic_count(); i++) {
        const char *name = kchat_topic_name(i);
        if (counts[i] < 0 || !co_partitioned(name))
            continue;
        if (*common < 0) {
            *common = counts[i];
            first = name;
        } else if (counts[i] != *common) {
            snprintf(errstr, errstr_size,
                     "topics are not co-partitioned: %s has %d partitions but %s has %d; "
                     "every request topic and %s must have the same count",
                     name, counts[i], first, *common, KCHAT_TOPIC_INTERNAL);
            return KCHAT_ECONFIG;
        }
    }
    return KCHAT_OK;
}

int kchat_topics_ensure(rd_kafka_t *rk, int partitions, int replication,
                        long login_retention_ms, int *actual_partitions,
                        char *errstr, size_t errstr_size)
{
    int counts[64], brokers = 0, rc, common = -1;
    bool missing = false;

    if ((rc = topics_describe(rk, counts, &brokers, errstr, errstr_size)) != KCHAT_OK)
        return rc;
    /* Refuse a mismatch among existing topics before creating anything. */
    if ((rc = check_co_partitioned(counts, &common, errstr, errstr_size)) != KCHAT_OK)
        return rc;
    if (common > 0)
        partitions = common;   /* new co-partitioned topics must match the old */
    for (size_t i = 0; i < kchat_topic_count(); i++)
        missing |= counts[i] < 0;
    if (missing) {
        if (replication <= 0)
            replication = brokers < 3 ? (brokers > 0 ? brokers : 1) : 3;
        if ((rc = topics_create(rk, counts, partitions, replication, login_retention_ms,
                                errstr, errstr_size)))
            return rc;
        /* Metadata of new topics can lag a little behind their creation. */
        for (int tries = 0; tries < 20; tries++) {
            missing = false;
            if ((rc = topics_describe(rk, counts, &brokers, errstr, errstr_size)) != KCHAT_OK)
                return rc;
            for (size_t i = 0; i < kchat_topic_count(); i++)
                missing |= counts[i] < 0;
            if (!missing)
                break;
            rd_kafka_poll(rk, 500);
        }
    }
    for (size_t i = 0; i < kchat_topic_count(); i++)
        if (counts[i] < 0) {
            snprintf(errstr, errstr_size, "topic %s does not exist and could not be created "
                     "(an embedded broker does not create topics on request: start it with "
                     "kchat broker, which creates them)", kchat_topic_name(i));
            return KCHAT_EKAFKA;
        }
    if ((rc = check_co_partitioned(counts, &common, errstr, errstr_size)) != KCHAT_OK)
        return rc;
    *actual_partitions = common;
    return KCHAT_OK;
}
