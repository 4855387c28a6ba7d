/**
 * @file backend.h
 * @brief `kchat serve`: the backend process. It owns the LMDB shards, runs
 *        the actor workers behind the consumer pipeline, produces responses,
 *        events and commands from each shard's outbox, and keeps the local
 *        replica of the user directory and of the room summaries.
 *
 * Life cycle: kchat_backend_start() connects (or starts the embedded broker),
 * creates the topics, opens the shards, re-sends every outbox and starts
 * consuming; kchat_backend_stop() stops reading, drains the rings, commits,
 * flushes the producer and closes everything. Both from the main thread.
 */
#ifndef KCHAT_BACKEND_H
#define KCHAT_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "kchat/config.h"
#include "kchat/error.h"

typedef struct kchat_backend kchat_backend;

/**
 * Every counter of the backend, once: X(field, metric, help, stop) gives
 * the member of kchat_backend_stats, its Prometheus counter in
 * kchat_backend_metrics(), that counter's HELP text, and the text it adds
 * to the stop line (kchat_backend_stats_line(): a printf format with one
 * %llu, or NULL when it is not in that line). The stop line takes them in
 * this order.
 */
#define KCHAT_BACKEND_COUNTERS(X)                                                          \
    X(requests, "kchat_requests_total",                                                    \
      "Request records applied, any outcome.", "%llu requests")                            \
    X(errors, "kchat_request_errors_total",                                                \
      "Requests answered with an error code.", " (%llu errors")                            \
    X(bad_requests, "kchat_bad_requests_total",                                            \
      "Requests answered BAD_REQUEST.", ": %llu bad")                                      \
    X(too_large, "kchat_too_large_total",                                                  \
      "Requests answered TOO_LARGE.", ", %llu too large)")                                 \
    X(dead_letters, "kchat_dead_letters_total",                                            \
      "Records sent to kchat-dlq.", ", %llu dead letters")                                 \
    X(commands, "kchat_commands_total",                                                    \
      "Internal commands applied.", ", %llu commands")                                     \
    X(duplicates, "kchat_duplicate_commands_total",                                        \
      "Internal commands dropped as already applied.", ", %llu duplicate commands")        \
    X(local_commands, "kchat_commands_local_total",                                        \
      "Internal commands applied from the copy a shard of this process handed over in "    \
      "memory (a Kafka copy, if one was produced too, counts as a duplicate).", NULL)      \
    X(memory_only_commands, "kchat_commands_memory_only_total",                            \
      "Internal commands handed to a shard of this process in memory alone, not produced " \
      "to kchat-internal (nothing of their stream was in Kafka unapplied).", NULL)         \
    X(local_acks, "kchat_command_acks_local_total",                                        \
      "Acknowledgements of internal commands handed to their source shard in this "        \
      "process in memory instead of produced to kchat-internal.", NULL)                    \
    X(command_gaps, "kchat_command_gaps_total",                                            \
      "Internal commands that came before an earlier one of their stream, left for the "   \
      "source to send again.", NULL)                                                       \
    X(command_skips, "kchat_commands_skipped_total",                                       \
      "Internal commands their source no longer holds, skipped by a shard whose data is "  \
      "older than its source saw (a restore).", NULL)                                      \
    X(command_resends, "kchat_command_resends_total",                                      \
      "Internal commands produced again because their target had not applied them.", NULL) \
    X(acks, "kchat_command_acks_total",                                                    \
      "Acknowledgements of internal commands taken from their target shards.", NULL)       \
    X(stream_renumbers, "kchat_command_streams_renumbered_total",                          \
      "Command streams renumbered because their target had applied commands this shard "   \
      "never numbered (this shard restored from an older copy).", NULL)                    \
    X(command_forks, "kchat_commands_forked_total",                                        \
      "Internal commands not applied because their target had applied another run's "      \
      "commands past the point their run numbered on from (a restored source).", NULL)     \
    X(foreign_commands, "kchat_foreign_commands_total",                                    \
      "Internal commands of another data set (or untagged), ignored.", NULL)               \
    X(foreign_directory, "kchat_foreign_directory_records_total",                          \
      "kchat-directory records of another data set, ignored.", NULL)                       \
    X(foreign_rooms, "kchat_foreign_room_records_total",                                   \
      "kchat-rooms records of another data set (or untagged), ignored.", NULL)             \
    X(commits, "kchat_commits_total",                                                      \
      "Shard write transactions committed.", ", %llu commits")                             \
    X(upkeep_commits, "kchat_upkeep_commits_total",                                        \
      "Shard write transactions of upkeep alone, with no request or command: delivered "  \
      "outbox records and changes Kafka confirmed deleted.", NULL)                         \
    X(commit_failures, "kchat_commit_failures_total",                                      \
      "Shard commits that failed and were retried.", " (%llu failed)")                     \
    X(produced, "kchat_outbox_produced_total",                                             \
      "Outbox records handed to the producer.", ", %llu produced")                         \
    X(delivered, "kchat_outbox_delivered_total",                                           \
      "Outbox records confirmed by Kafka.", ", %llu delivered")                            \
    X(presence_changes, "kchat_presence_changes_total",                                    \
      "Users who came online or went offline (PROTOCOL.md section 6).", NULL)               \
    X(presence_refused, "kchat_presence_records_refused_total",                            \
      "kchat-presence records that do not decode, ignored.", NULL)                         \
    X(presence_stale, "kchat_presence_records_stale_total",                                \
      "kchat-presence online/offline records more than a minute old, ignored.", NULL)      \
    X(login_failures, "kchat_login_failures_total",                                        \
      "Logins answered BAD_CREDENTIALS after a password check (unknown user or wrong "     \
      "password).", NULL)                                                                  \
    X(logins_throttled, "kchat_logins_throttled_total",                                    \
      "Logins refused unchecked because the user id was locked after too many "            \
      "failures.", NULL)                                                                   \
    X(producer_restarts, "kchat_producer_restarts_total",                                  \
      "Producers replaced after a fatal error.", NULL)                                    \
    X(changes_produced, "kchat_changelog_produced_total",                                  \
      "Changes handed to the producer for kchat-changelog (again after a refusal too).",   \
      NULL)                                                                                \
    X(changes_coalesced, "kchat_changelog_coalesced_total",                                \
      "Changes not written to kchat-changelog because a later change of the same "         \
      "Kafka transaction writes the same key (compaction would keep only that one).",     \
      NULL)                                                                                \
    X(changes_acked, "kchat_changelog_acked_total",                                        \
      "Changes Kafka confirmed in kchat-changelog, in order.", NULL)                       \
    X(changelog_resends, "kchat_changelog_resends_total",                                  \
      "Times a shard produced its kept changes again: acquired with some, or after its "   \
      "changelog committer refused one.", NULL)                                            \
    X(restored_changes, "kchat_changelog_restored_total",                                  \
      "Changes applied from kchat-changelog to shards being caught up (acquired or "       \
      "followed as a standby).", NULL)                                                     \
    X(restore_records, "kchat_changelog_restore_records_total",                            \
      "Records of kchat-changelog read while catching shards up.", NULL)                   \
    X(restore_ms, "kchat_changelog_restore_milliseconds_total",                            \
      "Time spent reading kchat-changelog to catch shards up, in ms (the restore rate is " \
      "the records counter divided by this).", NULL)                                       \
    X(held_records, "kchat_changelog_held_records_total",                                  \
      "Answers, events and commands held back until Kafka had the changes they report.",   \
      NULL)                                                                                \
    X(handovers_in, "kchat_shards_acquired_total",                                         \
      "Shards this process took over at an assignment (restored as needed first).", NULL)  \
    X(handovers_out, "kchat_shards_released_total",                                        \
      "Shards this process gave up at a revocation.", NULL)                                \
    X(warm_acquires, "kchat_shards_acquired_warm_total",                                   \
      "Acquired shards whose local copy was current (nothing to restore or replay).",      \
      NULL)                                                                                \
    X(diverged, "kchat_shards_diverged_total",                                             \
      "Local shard copies set aside at an assignment: changes Kafka never had, while "     \
      "another owner wrote on.", NULL)                                                     \
    X(stale_copies, "kchat_shards_stale_copies_total",                                     \
      "Local shard copies set aside at an assignment because they were older than "        \
      "--changelog-copy-max-age: deletions made since may be gone from kchat-changelog.",  \
      NULL)                                                                                \
    X(unsynced_copies, "kchat_shards_unsynced_copies_total",                               \
      "Local shard copies set aside at the start because they were written without fsync " \
      "before the machine restarted: their last commits may be lost or torn.", NULL)       \
    X(fenced, "kchat_shards_fenced_total",                                                 \
      "Shards this process stopped serving because a newer owner fenced its changelog "    \
      "producer (it had been paused or cut off).", NULL)                                   \
    X(fenced_changes, "kchat_changelog_fenced_changes_total",                              \
      "Changes a fenced changelog producer could not write: they and the answers, events " \
      "and commands that report them are never let out.", NULL)                            \
    X(cl_txns, "kchat_changelog_transactions_total",                                       \
      "Kafka transactions committed to kchat-changelog (one per shard and commit round).", \
      NULL)                                                                                \
    X(cl_txn_us, "kchat_changelog_transaction_microseconds_total",                         \
      "Time from the start of a kchat-changelog transaction to its commit, summed, in "   \
      "microseconds (divided by the transactions counter: the mean).", NULL)               \
    X(cl_txn_aborts, "kchat_changelog_transaction_aborts_total",                           \
      "kchat-changelog transactions aborted and tried again.", NULL)

/** Counters of one backend, read with kchat_backend_get_stats(): one
 *  member per row of #KCHAT_BACKEND_COUNTERS, named by its first column. */
typedef struct kchat_backend_stats {
#define KCHAT__STATS_FIELD(field, metric, help, stop) uint64_t field;
    KCHAT_BACKEND_COUNTERS(KCHAT__STATS_FIELD)
#undef KCHAT__STATS_FIELD
} kchat_backend_stats;

/**
 * @brief Start the backend described by @p cfg (which must outlive it).
 * @return KCHAT_OK; KCHAT_ECONFIG (bad settings, topics not co-partitioned,
 *         data directory made for another partition count), KCHAT_EKAFKA
 *         (cluster unreachable), KCHAT_ESTORE/KCHAT_EIO (data directory).
 *         @p errstr says what went wrong in one sentence. On error nothing
 *         is left running.
 * @locality any thread: the one that later calls kchat_backend_stop()
 *           (the main thread in `kchat serve` and `kchat dev`)
 */
KCHAT_MUST_CHECK
int kchat_backend_start(const kchat_config *cfg, kchat_backend **out,
                        char *errstr, size_t errstr_size);

/**
 * @brief Whether the backend serves every shard it was given: false while
 *        its consumer waits for an assignment or restores shards it was
 *        given (`/readyz` of serve answers 503 then).
 * @locality any thread
 */
bool kchat_backend_ready(kchat_backend *be);

/** @brief Bootstrap servers in use (the embedded broker's when started);
 *  owned by the backend. @locality any thread */
const char *kchat_backend_bootstraps(const kchat_backend *be);

/**
 * @brief Write the backend's metrics in Prometheus text format: the counters
 *        above, consumer pauses and ring fill, producer queue, worker stall,
 *        commit latency and batch size histograms.
 * @locality any thread (the ops HTTP server's)
 * @locks takes the producer lock (shared) for the producer's queue length
 */
void kchat_backend_metrics(kchat_backend *be, FILE *out);

/** @brief Copy the counters (each read atomically, not all together).
 *  @locality any thread */
void kchat_backend_get_stats(kchat_backend *be, kchat_backend_stats *out);

/**
 * @brief The counters of @p st as the stop line says them: "N requests
 *        (N errors: N bad, N too large), N dead letters, N commands,
 *        N duplicate commands, N commits (N failed), N produced,
 *        N delivered" (the `stop` column of #KCHAT_BACKEND_COUNTERS).
 * @param[out] buf receives the text, NUL-terminated, cut to @p size.
 * @locality any thread
 */
void kchat_backend_stats_line(const kchat_backend_stats *st, char *buf, size_t size);

/**
 * @brief Stop and free. Clean stop: nothing read is left unapplied, and what
 *        Kafka did not confirm within 5 s stays in the outbox for the next start.
 * @param[in] be the backend, or NULL (nothing). Invalid afterwards.
 * @param[out] final when not NULL, the counters after the last flush.
 * @locality the thread that called kchat_backend_start(); no other thread
 *           may use @p be any more (stop the ops HTTP server first)
 */
void kchat_backend_stop(kchat_backend *be, kchat_backend_stats *final);

#endif /* KCHAT_BACKEND_H */
