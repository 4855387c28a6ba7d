/**
 * @file kafka.h
 * @brief Small Kafka helpers shared by the backend, the gateway and the tools:
 *        kchat's topic names (in this process's deployment:
 *        include/kchat/deployment.h), the Java-compatible murmur2 partitioner,
 *        header look-up and `-X key=value` configuration passthrough.
 *
 * Nothing here keeps state; every function may be called on any thread
 * (kchat_kafka_conf_kv() on a configuration no other thread uses meanwhile,
 * as librdkafka requires).
 */
#ifndef KCHAT_KAFKA_H
#define KCHAT_KAFKA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>

#include "kchat/deployment.h"
#include "kchat/error.h"

/** Delivery events for browsers and other readers (PROTOCOL.md §6). */
#define KCHAT_TOPIC_EVENTS (kchat_topic(KCHAT_T_EVENTS))
/** Records that could not be answered at all (PROTOCOL.md §5). */
#define KCHAT_TOPIC_DLQ (kchat_topic(KCHAT_T_DLQ))
/** Cross-shard commands, co-partitioned with the request topics. */
#define KCHAT_TOPIC_INTERNAL (kchat_topic(KCHAT_T_INTERNAL))
/** User profiles published by their owning shard (a compacted topic). */
#define KCHAT_TOPIC_DIRECTORY (kchat_topic(KCHAT_T_DIRECTORY))
/** Every change a shard commits (a compacted topic, partition = shard,
 *  co-partitioned with the request topics): key = table byte + store key,
 *  value = the key's value, or none (a tombstone) when it was deleted. */
#define KCHAT_TOPIC_CHANGELOG (kchat_topic(KCHAT_T_CHANGELOG))
/** The deployment's data set claims (one partition, compacted): the claim
 *  at the lowest offset names the data set every node serves. */
#define KCHAT_TOPIC_META (kchat_topic(KCHAT_T_META))
/** Room summaries (roomId, roomName, participants, lastSeq) published by
 *  the room's shard (a compacted topic, keyed by roomId). */
#define KCHAT_TOPIC_ROOMS (kchat_topic(KCHAT_T_ROOMS))
/** What gateways say about open event streams (co-partitioned with the
 *  request topics): a user's stream opening or closing, keyed by userId,
 *  and each gateway's heartbeat to every partition. The user's shard reads
 *  them to keep presence (docs/design.md "Presence"). */
#define KCHAT_TOPIC_PRESENCE (kchat_topic(KCHAT_T_PRESENCE))

/** Header names of PROTOCOL.md §1 and kchat's internal headers. */
#define KCHAT_HDR_CID         "kchat-cid"
#define KCHAT_HDR_SESSION     "kchat-session"
/** Optional on a login request: a digest naming the device (browser) that
 *  logs in (the gateway's device cookie, never the cookie itself). A known
 *  device has its own failure budget (docs/security.md, "Login throttling"). */
#define KCHAT_HDR_DEVICE      "kchat-device"
#define KCHAT_HDR_CTYPE       "content-type"
#define KCHAT_HDR_ERROR       "kchat-error"
#define KCHAT_HDR_SRC_SHARD   "kchat-src-shard"
#define KCHAT_HDR_SRC_SEQ     "kchat-src-seq"
/** An internal command's seq in the stream from its source shard to its
 *  target shard: 1, 2, 3, ... (see kchat_store_cmdseq_get()). */
#define KCHAT_HDR_CMD_SEQ     "kchat-cmd-seq"
/** The lowest seq of that stream its source still holds when it produces a
 *  command: everything below was applied by the target as the source last
 *  saw it. A target behind that (its data restored from an older copy)
 *  carries on from there instead of waiting for commands that are gone. */
#define KCHAT_HDR_CMD_BASE    "kchat-cmd-base"
/** The run (a random number a backend draws at each start) that numbered an
 *  internal command, and the seq of its stream the run numbered on from
 *  (every number given before, by any run, is at most that one). A target
 *  whose last command applied came from another run, beyond that seq, has
 *  applied a timeline the command's source does not know (the source was
 *  restored from an older copy): it does not apply it. */
#define KCHAT_HDR_CMD_RUN      "kchat-cmd-run"
#define KCHAT_HDR_CMD_RUN_FROM "kchat-cmd-run-from"
/** Marks a record of kchat-internal as an acknowledgement, not a command:
 *  its value is the shard that sends it (the target of a command stream),
 *  in the partition of the stream's source. With it: */
#define KCHAT_HDR_ACK         "kchat-ack"
/** ... the last seq of the stream it applied (kchat_store_cmdseq_get()), */
#define KCHAT_HDR_ACK_SEQ     "kchat-ack-seq"
/** ... and its outbox-seq watermark for the source (older kchat's commands,
 *  kchat_store_applied_get()). */
#define KCHAT_HDR_ACK_LEGACY  "kchat-ack-legacy"
/** ... and the run of the source that numbered the last command it
 *  applied (0: unknown), */
#define KCHAT_HDR_ACK_RUN     "kchat-ack-run"
/** The data set (data directory) that wrote an internal command, a
 *  directory record or a room summary; readers ignore those of another
 *  data set. */
#define KCHAT_HDR_DATASET     "kchat-dataset"
/** A changelog record's changelog seq, and the seq of the last change of
 *  the transaction it belongs to (a restore applies whole transactions). */
#define KCHAT_HDR_CL_SEQ      "kchat-cl-seq"
#define KCHAT_HDR_CL_LAST     "kchat-cl-last"

/**
 * @brief murmur2 of @p key exactly as the Java client and librdkafka's
 *        `murmur2_random` partitioner compute it (seed 0x9747b28c).
 * @locality any thread
 */
uint32_t kchat_murmur2(const void *key, size_t len);

/**
 * @brief The partition the Java client's default partitioner picks for a
 *        non-empty key: `(murmur2(key) & 0x7fffffff) % partition_cnt`.
 * @param[in] partition_cnt must be > 0.
 * @locality any thread
 */
int32_t kchat_partition_for_key(const void *key, size_t len, int32_t partition_cnt);

/**
 * @brief The last value of header @p name on @p msg.
 * @param[out] val points into the message's memory: valid as long as @p msg.
 * @return 0 when found (a header with a NULL value gives len 0), -1 when absent
 *         (then @p val and @p len are not set).
 * @locality any thread that may read @p msg
 */
KCHAT_MUST_CHECK
int kchat_header_get(const rd_kafka_message_t *msg, const char *name,
                     const void **val, size_t *len);

/**
 * @brief Apply one `key=value` property to a librdkafka configuration.
 * @param[out] errstr a sentence naming the property when it is refused.
 * @return KCHAT_OK, or KCHAT_ECONFIG when the text has no '=' or librdkafka
 *         refuses the property or value.
 * @locality any thread; @p conf must not be used by another thread meanwhile
 */
KCHAT_MUST_CHECK
int kchat_kafka_conf_kv(rd_kafka_conf_t *conf, const char *kv,
                        char *errstr, size_t errstr_size);

/**
 * @brief Whether @p cluster_id (from rd_kafka_clusterid()) names one of
 *        librdkafka's mock clusters ("mockCluster..."): the embedded broker
 *        and `kchat broker`.
 * @param[in] cluster_id may be NULL (unknown: false).
 * @locality any thread
 */
bool kchat_kafka_is_mock_cluster(const char *cluster_id);

#endif /* KCHAT_KAFKA_H */
