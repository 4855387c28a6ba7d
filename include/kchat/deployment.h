/**
 * @file deployment.h
 * @brief The deployment a process serves, and so the names of its topics.
 *
 * Every node and gateway of one deployment uses the same topics. The
 * default deployment, `kchat`, uses the names of PROTOCOL.md (e.g.
 * `login-request`, `chat-events`) and kchat's own (`kchat-internal`,
 * `kchat-changelog`, ...). Any other deployment NAME prefixes every one of
 * them with `NAME.` (`acme.login-request`, `acme.kchat-changelog`), so
 * that several deployments share one Kafka cluster and stay apart: none
 * reads another's requests, commands, directory, changelog or data set
 * claim (docs/operations.md, "Several deployments on one cluster").
 *
 * The deployment is process-wide: kchat_deployment_set() is called once,
 * by the main thread, before any other kchat function starts a thread;
 * every other function here may then be called on any thread.
 */
#ifndef KCHAT_DEPLOYMENT_H
#define KCHAT_DEPLOYMENT_H

#include <stdbool.h>

#include "kchat/error.h"

/** The longest deployment name (characters). */
#define KCHAT_DEPLOYMENT_MAX 40

/** The deployment whose topics carry PROTOCOL.md's names unprefixed. */
#define KCHAT_DEPLOYMENT_DEFAULT "kchat"

/** kchat's topics besides the request and response topics of each
 *  operation (which kchat_op_request_topic() and kchat_op_response_topic()
 *  name). */
typedef enum kchat_topic_id {
    KCHAT_T_EVENTS,      /**< chat-events (PROTOCOL.md §6) */
    KCHAT_T_DLQ,         /**< kchat-dlq (PROTOCOL.md §5) */
    KCHAT_T_INTERNAL,    /**< kchat-internal: cross-shard commands */
    KCHAT_T_DIRECTORY,   /**< kchat-directory: user profiles */
    KCHAT_T_CHANGELOG,   /**< kchat-changelog: every change of every shard */
    KCHAT_T_META,        /**< kchat-meta: the data set claims */
    KCHAT_T_ROOMS,       /**< kchat-rooms: room summaries */
    KCHAT_T_PRESENCE,    /**< kchat-presence: gateways' open event streams */
    KCHAT_T__COUNT       /**< number of topics, not a topic */
} kchat_topic_id;

/**
 * @brief Serve deployment @p name from now on: its topic names are what
 *        kchat_topic() and kchat_op_*_topic() return.
 * @param[in] name 1 to #KCHAT_DEPLOYMENT_MAX letters, digits, `_` or `-`;
 *            copied.
 * @return #KCHAT_OK, or #KCHAT_EINVAL for a name outside that set (the
 *         deployment is then unchanged).
 * @locality the main thread, before any other kchat call starts a thread
 */
KCHAT_MUST_CHECK
int kchat_deployment_set(const char *name);

/**
 * @brief The deployment's name (#KCHAT_DEPLOYMENT_DEFAULT until
 *        kchat_deployment_set()).
 * @return a static string.
 * @locality any thread
 */
const char *kchat_deployment_name(void);

/**
 * @brief The name of topic @p t in this deployment.
 * @return a static string, or NULL if @p t is outside the enum.
 * @locality any thread
 */
const char *kchat_topic(kchat_topic_id t);

/**
 * @brief @p plain, a topic name of the default deployment, as this
 *        deployment names it, written to @p out.
 * @return @p out, or NULL if it does not fit in @p size bytes.
 * @locality any thread
 */
char *kchat_deployment_topic_name(const char *plain, char *out, size_t size);

#endif /* KCHAT_DEPLOYMENT_H */
