/*
 * The deployment's data set id, kept in Kafka (docs/scaling.md, "One
 * deployment"): nodes that start together on an empty cluster must agree
 * on one, so it cannot come from a data directory alone.
 *
 * kchat-meta (one partition, compacted) holds claims: key "dataset/<id>",
 * value <id>. A node reads the partition from the beginning to its end; the
 * claim at the lowest offset is the deployment's. When there is none, the
 * node writes its own candidate (the changelog's data set for a deployment
 * made before kchat-meta, else its data directory's, else a new one) and
 * reads again: whichever claim Kafka put first wins, on every node. Claims
 * have distinct keys, so compaction never removes the first one.
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors.h"
#include "changelog.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

#define META_TIMEOUT_MS 30000   /* Kafka's answer to one step */
#define CLAIM_PREFIX "dataset/"

/* Whether @p m is a well-formed claim; its id in @p id. */
static bool claim_of(const rd_kafka_message_t *m, char id[33])
{
    const char *v = m->payload;
    size_t plen = strlen(CLAIM_PREFIX);

    if (m->err || v == NULL || m->len != 32 || m->key_len != plen + 32 ||
        memcmp(m->key, CLAIM_PREFIX, plen) != 0 ||
        memcmp((const char *)m->key + plen, v, 32) != 0)
        return false;
    for (size_t i = 0; i < 32; i++)
        if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f')))
            return false;
    memcpy(id, v, 32);
    id[32] = '\0';
    return true;
}

/* The first claim in kchat-meta, in @p id ("" when none).
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
static int first_claim(kchat_backend *be, char id[33], char *errstr, size_t len)
{
    rd_kafka_conf_t *conf = kchat__kafka_conf(be, errstr, len);
    rd_kafka_topic_partition_list_t *tp;
    rd_kafka_t *rk;
    int64_t lo, hi, deadline = kchat__monotonic_us() / 1000 + META_TIMEOUT_MS;
    rd_kafka_resp_err_t err;
    int rc = KCHAT_OK;

    id[0] = '\0';
    if (conf == NULL)
        return KCHAT_ECONFIG;
    if (rd_kafka_conf_set(conf, "group.id", "kchat-meta-reader", errstr, len) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, len)) {
        rd_kafka_conf_destroy(conf);
        return KCHAT_ECONFIG;
    }
    if ((rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, len)) == NULL) {
        rd_kafka_conf_destroy(conf);
        return KCHAT_EKAFKA;
    }
    /* A topic just created may have no leader yet: ask until the deadline. */
    while ((err = rd_kafka_query_watermark_offsets(rk, KCHAT_TOPIC_META, 0, &lo, &hi,
                                                   META_TIMEOUT_MS)) != 0 &&
           kchat__monotonic_us() / 1000 < deadline)
        kchat__sleep_ms(200);
    if (err) {
        snprintf(errstr, len, "cannot read the end of %s: %s", KCHAT_TOPIC_META,
                 rd_kafka_err2str(err));
        rc = KCHAT_EKAFKA;
        goto out_destroy;
    }
    if (hi <= lo)
        goto out_destroy;
    tp = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tp, KCHAT_TOPIC_META, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    err = rd_kafka_assign(rk, tp);
    rd_kafka_topic_partition_list_destroy(tp);
    while (!err && id[0] == '\0') {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        bool at_end = false;

        if (m != NULL) {
            if (!m->err)
                at_end = m->offset >= hi - 1;
            /* A claim without the deployment's MAC is no claim. */
            if ((be->auth == NULL || m->err || kchat_auth_verify(be->auth, m, "data set claims")) &&
                claim_of(m, id))
                at_end = true;
            rd_kafka_message_destroy(m);
        }
        if (at_end)
            break;
        if (kchat__monotonic_us() / 1000 > deadline) {
            snprintf(errstr, len, "cannot read %s to its end", KCHAT_TOPIC_META);
            rc = KCHAT_EKAFKA;
            break;
        }
    }
    rd_kafka_assign(rk, NULL);
out_destroy:
    rd_kafka_destroy(rk);
    return rc;
}

/* Write the claim of @p id to kchat-meta and wait for Kafka to have it.
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
static int claim_write(kchat_backend *be, const char *id, char *errstr, size_t len)
{
    rd_kafka_conf_t *conf = kchat__kafka_conf(be, errstr, len);
    rd_kafka_t *rk;
    rd_kafka_headers_t *hdrs;
    char key[64];
    rd_kafka_resp_err_t err;

    if (conf == NULL)
        return KCHAT_ECONFIG;
    if (rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, len)) {
        rd_kafka_conf_destroy(conf);
        return KCHAT_ECONFIG;
    }
    if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, len)) == NULL) {
        rd_kafka_conf_destroy(conf);
        return KCHAT_EKAFKA;
    }
    snprintf(key, sizeof(key), CLAIM_PREFIX "%s", id);
    hdrs = rd_kafka_headers_new(1);
    if (be->auth != NULL && kchat_auth_sign(be->auth, KCHAT_TOPIC_META, key, strlen(key), id,
                                            strlen(id), hdrs) != KCHAT_OK) {
        rd_kafka_headers_destroy(hdrs);
        rd_kafka_destroy(rk);
        snprintf(errstr, len, "cannot sign the data set claim");
        return KCHAT_EKAFKA;
    }
    err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(KCHAT_TOPIC_META), RD_KAFKA_V_PARTITION(0),
                            RD_KAFKA_V_KEY(key, strlen(key)),
                            RD_KAFKA_V_VALUE((void *)id, strlen(id)),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
                            RD_KAFKA_V_END);
    if (err)
        rd_kafka_headers_destroy(hdrs);   /* taken only on success */
    if (!err)
        err = rd_kafka_flush(rk, META_TIMEOUT_MS);
    rd_kafka_destroy(rk);
    if (err) {
        snprintf(errstr, len, "cannot write the data set claim to %s: %s", KCHAT_TOPIC_META,
                 rd_kafka_err2str(err));
        return KCHAT_EKAFKA;
    }
    return KCHAT_OK;
}

int kchat__deployment_dataset(kchat_backend *be, const char *local, char out[33], char *errstr,
                              size_t len)
{
    char candidate[33];
    int rc;

    out[0] = '\0';
    if (!be->changelog)
        return KCHAT_OK;
    if ((rc = first_claim(be, out, errstr, len)) != KCHAT_OK || out[0] != '\0')
        return rc;
    /* No claim yet: a deployment made before kchat-meta has its data set
     * in the changelog; else this data directory's; else a new one. */
    if ((rc = kchat__changelog_dataset(be, candidate, errstr, len)) != KCHAT_OK)
        return rc;
    if (candidate[0] == '\0' && local[0] != '\0')
        memcpy(candidate, local, sizeof(candidate));
    if (candidate[0] == '\0') {
        unsigned char raw[16];

        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(candidate, sizeof(candidate), raw, sizeof(raw));
    }
    if ((rc = claim_write(be, candidate, errstr, len)) != KCHAT_OK ||
        (rc = first_claim(be, out, errstr, len)) != KCHAT_OK)
        return rc;
    if (out[0] == '\0') {
        snprintf(errstr, len, "%s holds no data set claim after writing one", KCHAT_TOPIC_META);
        return KCHAT_EKAFKA;
    }
    fprintf(stderr, "kchat: data set %s claimed in %s%s\n", out, KCHAT_TOPIC_META,
            strcmp(out, candidate) ? " by another node" : "");
    return KCHAT_OK;
}
