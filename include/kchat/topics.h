/**
 * @file topics.h
 * @brief kchat's topics: the embedded broker that hosts them when no cluster
 *        is configured, and their creation and checking on any cluster.
 */
#ifndef KCHAT_TOPICS_H
#define KCHAT_TOPICS_H

#include <stddef.h>
#include <librdkafka/rdkafka.h>

#include "kchat/error.h"

/** An in-process Kafka cluster (librdkafka's mock cluster). Opaque. */
typedef struct kchat_embedded kchat_embedded;

/**
 * @brief Start an embedded cluster of @p brokers brokers on 127.0.0.1 and
 *        create every kchat topic on it with @p partitions partitions.
 *
 * The mock cluster keeps records in memory only (at most about 5 MB per
 * partition; older records are dropped) and does not answer the CreateTopics
 * admin request, which is why the topics are created here directly.
 * @param[out] out the running cluster; stop it with kchat_embedded_stop().
 * @return KCHAT_OK, KCHAT_EKAFKA (reason in @p errstr), KCHAT_ENOMEM.
 * @locality any thread; the cluster then runs on librdkafka's own threads
 */
KCHAT_MUST_CHECK
int kchat_embedded_start(int brokers, int partitions, kchat_embedded **out,
                         char *errstr, size_t errstr_size);

/** @brief The cluster's bootstrap servers; owned by the cluster.
 *  @locality any thread */
const char *kchat_embedded_bootstraps(const kchat_embedded *e);

/** @brief Stop the cluster and free it; every client of it should be gone. NULL ok.
 *  @locality any thread, once no other thread uses @p e */
void kchat_embedded_stop(kchat_embedded *e);

/**
 * @brief Make sure every kchat topic exists on the cluster @p rk talks to,
 *        creating the missing ones (CreateTopics) with @p partitions
 *        partitions and @p replication replicas (0: min(3, brokers)), and
 *        check that the request topics and `kchat-internal` are
 *        co-partitioned.
 * @param[in] login_retention_ms `retention.ms` given to `login-request`
 *            and `user-add-request` when they are created here (their
 *            records carry passwords); an existing topic keeps its own
 *            setting.
 * @param[out] actual_partitions their common partition count.
 * @return KCHAT_OK; KCHAT_EKAFKA when the cluster cannot be reached or a
 *         topic is missing after creation; KCHAT_ECONFIG when the
 *         co-partitioned topics have different partition counts. @p errstr
 *         says which.
 * @note Blocks for up to about 30 s.
 * @locality any thread; it calls rd_kafka_poll() on @p rk while it waits
 *           for new topics, so @p rk's callbacks may run on that thread
 */
KCHAT_MUST_CHECK
int kchat_topics_ensure(rd_kafka_t *rk, int partitions, int replication,
                        long login_retention_ms, int *actual_partitions,
                        char *errstr, size_t errstr_size);

/**
 * @brief The fewest replicas any partition of @p topic has on the cluster
 *        @p rk talks to (its replication factor, unless partitions were
 *        moved), from a metadata request.
 * @param[out] replicas the count; untouched on error.
 * @return KCHAT_OK; KCHAT_EKAFKA when the metadata cannot be read or the
 *         topic does not exist (@p errstr says which).
 * @note Blocks for up to 10 s.
 * @locality any thread
 */
KCHAT_MUST_CHECK
int kchat_topic_replicas(rd_kafka_t *rk, const char *topic, int *replicas, char *errstr,
                         size_t errstr_size);

/** @brief Number of topics kchat_topic_name() names. @locality any thread */
size_t kchat_topic_count(void);

/** @brief Name of topic @p i (0 <= i < kchat_topic_count()). Static.
 *  @locality any thread */
const char *kchat_topic_name(size_t i);

#endif /* KCHAT_TOPICS_H */
