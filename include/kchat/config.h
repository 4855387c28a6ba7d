/**
 * @file config.h
 * @brief kchat's settings: one table gives every option its name, type,
 *        default and description, and that table drives the command-line
 *        flags (`--name value`), the config file (`name = value`), `--help`
 *        and docs/configuration.md (`kchat config-doc`).
 *
 * Precedence: defaults < config file (`--config FILE`) < flags, whatever
 * their order on the command line.
 *
 * Threads: the module has no state of its own; a #kchat_config is not
 * locked, so it is filled on one thread (in practice main's, at start) and
 * only read afterwards, from any thread.
 */
#ifndef KCHAT_CONFIG_H
#define KCHAT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "kchat/error.h"

/** Most `-X key=value` librdkafka properties kept. */
#define KCHAT_CONFIG_MAX_X 64

/** Every setting of `kchat serve` and `kchat broker`. Strings are owned by
 *  the struct (kchat_config_release() frees them) and never NULL. */
typedef struct kchat_config {
    char *brokers;          /**< bootstrap servers; "" = start the embedded broker */
    char *data_dir;         /**< LMDB shards and the directory replica live here */
    char *bootstrap_file;   /**< "" = none; else the bootstrap is written here when ready */
    char *deployment;       /**< the deployment (include/kchat/deployment.h) */
    char *group_id;         /**< consumer group of the backend; "": kchat_config_group() */
    char *secret_file;      /**< "" = none (dev: DATA/secret); else the deployment secret */
    char *events_format;    /**< "json" or "msgpack" for chat-events */
    char *changelog;        /**< "on", "off" or "auto" (on unless on the embedded broker) */
    char *shard_sync;       /**< "auto", "kafka" or "always" (datadir.c) */
    int standby_replicas;   /**< warm copies kept of each shard by other nodes */
    long changelog_copy_max_age; /**< seconds a shard's copy may lag kchat-changelog and
                                      still catch up by its later changes alone */
    bool local_commands;    /**< commands to shards of this process also in memory */
    int partitions;         /**< partitions of every co-partitioned topic */
    int replication;        /**< 0 = min(3, brokers) */
    int embedded_brokers;   /**< brokers of the embedded mock cluster */
    int workers;            /**< actor workers; 0 = number of online CPUs */
    int ring_capacity;      /**< slots of each (topic, worker) ring */
    int max_batch;          /**< most requests per group commit per worker */
    int linger_ms;          /**< producer linger */
    int fetch_wait_ms;      /**< consumers' fetch.wait.max.ms; -1 = by broker
                                 (kchat_config_fetch_wait_ms()) */
    int map_size_mb;        /**< LMDB map size per shard */
    long pwhash_ops;        /**< Argon2id opslimit */
    long pwhash_mem;        /**< Argon2id memlimit in bytes */
    long session_idle;      /**< seconds a session may stay unused */
    bool session_check;     /**< false: accept requests without a session (original front end) */
    int login_max_failures; /**< failed logins of one user id within login_window that lock it */
    int login_window;       /**< seconds over which failed logins are counted */
    int login_lockout;      /**< seconds a locked user id is refused; 0 = no throttling */
    int login_addr_max_failures; /**< gateway: failed logins of one client address within
                                      login_addr_window that bring 429 */
    int login_addr_window;  /**< gateway: seconds over which they are counted */
    char *trusted_proxy;    /**< gateway: comma-separated ADDRESS[/BITS] of proxies whose
                                 X-Forwarded-For / Forwarded is believed; "" = none */
    long login_retention_ms; /**< retention.ms of login-request and user-add-request when
                                  kchat creates them (their records carry passwords) */
    /* gateway (`kchat gateway`, `kchat dev`) */
    char *http;             /**< HTTP listen address host:port; port 0 = any free port */
    char *metrics_http;     /**< serve: "" = off; else host:port of /healthz, /readyz, /metrics */
    char *url_file;         /**< "" = none; else the gateway's URL is written here when ready */
    char *web_dir;          /**< directory of the chat page's static files */
    char *allow_origin;     /**< "" or comma-separated origins allowed to make
                                 state-changing calls besides the gateway's own */
    int http_timeout_ms;    /**< wait for a backend answer before 504 */
    int http_idle_timeout;  /**< seconds an HTTP connection may stay idle between reads */
    int http_request_timeout; /**< seconds a connection has to deliver each request */
    int max_pending;        /**< most requests waiting for a backend answer (full: 503) */
    int sse_max_per_user;   /**< most open event streams per user */
    int sse_max_total;      /**< most open event streams in all */
    int catchup_max;        /**< most catch-up readers (Kafka consumers) at once */
    int sse_buffer_kb;      /**< output buffer of one event stream; overflow closes it */
    int gateway_processes;  /**< `kchat gateway`: processes sharing the --http address */
    char *x[KCHAT_CONFIG_MAX_X]; /**< `-X key=value` passthrough, in order */
    int n_x;
} kchat_config;

/**
 * @brief Fill @p c with the defaults.
 * @return KCHAT_OK or KCHAT_ENOMEM (then @p c holds nothing to release).
 * @locality any thread; no other thread may use @p c meanwhile
 */
KCHAT_MUST_CHECK
int kchat_config_init(kchat_config *c);

/**
 * @brief Free the strings of @p c; it may be initialised again.
 * @locality any thread, once no other thread uses @p c
 */
void kchat_config_release(kchat_config *c);

/**
 * @brief Parse `argv[first..argc)`: `--config FILE` first, then every flag.
 * @param[out] errstr a sentence naming the bad option or line.
 * @return KCHAT_OK; KCHAT_ECONFIG for an unknown option, a missing or
 *         invalid value, or an unreadable config file; 1 when `--help` was
 *         given (the caller prints kchat_config_usage() and exits 0).
 * @locality any thread; no other thread may use @p c meanwhile
 */
KCHAT_MUST_CHECK
int kchat_config_parse_args(kchat_config *c, int argc, char **argv, int first,
                            char *errstr, size_t errstr_size);

/**
 * @brief Apply a config file of `name = value` lines (`#` comments).
 * @return KCHAT_OK, KCHAT_EIO when it cannot be read, KCHAT_ECONFIG as above.
 * @locality any thread; no other thread may use @p c meanwhile
 */
KCHAT_MUST_CHECK
int kchat_config_load_file(kchat_config *c, const char *path,
                           char *errstr, size_t errstr_size);

/** @brief Print every option with its default and description.
 *  @locality any thread */
void kchat_config_usage(FILE *out, const char *command);

/** @brief Print docs/configuration.md, generated from the option table.
 *  @locality any thread */
void kchat_config_markdown(FILE *out);

/** fetch.wait.max.ms of `--fetch-wait-ms -1` on librdkafka's mock cluster,
 *  which delays a fetch that found nothing by the whole wait even when
 *  records arrive meanwhile. */
#define KCHAT_FETCH_WAIT_MOCK_MS 10
/** ... and on a Kafka cluster, which answers a waiting fetch at once when
 *  a record arrives (fetch.min.bytes 1). */
#define KCHAT_FETCH_WAIT_KAFKA_MS 100

/**
 * @brief The backend's consumer group: `--group-id`, or when that is
 *        empty, the deployment's name (`--deployment`).
 * @return a string owned by @p c.
 * @locality any thread
 */
const char *kchat_config_group(const kchat_config *c);

/**
 * @brief The fetch.wait.max.ms kchat's consumers (the backend's request
 *        consumer, the gateway's reply, event and catch-up consumers) set.
 * @param[in] mock whether the cluster is librdkafka's mock cluster (the
 *            embedded broker or `kchat broker`; see
 *            kchat_kafka_is_mock_cluster()).
 * @return -1 when a `-X fetch.wait.max.ms=...` is given (it applies as is and
 *         the caller sets nothing); else `--fetch-wait-ms`, or when that is
 *         -1, #KCHAT_FETCH_WAIT_MOCK_MS or #KCHAT_FETCH_WAIT_KAFKA_MS by
 *         @p mock.
 * @locality any thread
 */
int kchat_config_fetch_wait_ms(const kchat_config *c, bool mock);

#endif /* KCHAT_CONFIG_H */
