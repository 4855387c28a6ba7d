/**
 * @file backend.h
 * @brief `kchat serve`: the backend process. It owns the LMDB shards, runs
 *        the actor workers behind the consumer pipeline, produces responses,
 *        events and commands from each shard's outbox, and keeps the local
 *        replica of the user directory.
 *
 * Life cycle: kchat_backend_start() connects (or starts the embedded broker),
 * creates the topics, opens the shards, re-sends every outbox and starts
 * consuming; kchat_backend_stop() stops reading, drains the rings, commits,
 * flushes the producer and closes everything. Both from the main thread.
 */
#ifndef KCHAT_BACKEND_H
#define KCHAT_BACKEND_H

#include <stdint.h>
#include <stdio.h>
#include "kchat/config.h"

typedef struct kchat_backend kchat_backend;

/** Counters of one backend, read with kchat_backend_get_stats(). */
typedef struct kchat_backend_stats {
    uint64_t requests;        /**< request records applied (any outcome) */
    uint64_t errors;          /**< of which answered with an error code */
    uint64_t bad_requests;    /**< answered BAD_REQUEST */
    uint64_t too_large;       /**< answered TOO_LARGE */
    uint64_t dead_letters;    /**< sent to kchat-dlq */
    uint64_t commands;        /**< internal commands applied */
    uint64_t duplicates;      /**< internal commands dropped as already applied */
    uint64_t commits;         /**< shard write transactions committed */
    uint64_t commit_failures; /**< commits that failed and were retried */
    uint64_t produced;        /**< outbox records handed to the producer */
    uint64_t delivered;       /**< outbox records confirmed by Kafka */
} kchat_backend_stats;

/**
 * @brief Start the backend described by @p cfg (which must outlive it).
 * @return KCHAT_OK; KCHAT_ECONFIG (bad settings, topics not co-partitioned,
 *         data directory made for another partition count), KCHAT_EKAFKA
 *         (cluster unreachable), KCHAT_ESTORE/KCHAT_EIO (data directory).
 *         @p errstr says what went wrong in one sentence.
 */
int kchat_backend_start(const kchat_config *cfg, kchat_backend **out,
                        char *errstr, size_t errstr_size);

/** @brief Bootstrap servers in use (the embedded broker's when started). */
const char *kchat_backend_bootstraps(const kchat_backend *be);

/**
 * @brief Write the backend's metrics in Prometheus text format: the counters
 *        above, consumer pauses and ring fill, producer queue, worker stall,
 *        commit latency and batch size histograms. Any thread.
 */
void kchat_backend_metrics(kchat_backend *be, FILE *out);

/** @brief Copy the counters. Any thread. */
void kchat_backend_get_stats(kchat_backend *be, kchat_backend_stats *out);

/**
 * @brief Stop and free. Clean stop: nothing read is left unapplied, and what
 *        Kafka did not confirm within 5 s stays in the outbox for the next start.
 * @param[out] final when not NULL, the counters after the last flush.
 */
void kchat_backend_stop(kchat_backend *be, kchat_backend_stats *final);

#endif /* KCHAT_BACKEND_H */
