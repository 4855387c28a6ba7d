/**
 * @file ops_http.h
 * @brief A small HTTP listener for operations: `GET /healthz`, `GET /readyz`
 *        and `GET /metrics` (Prometheus text), for processes that have no
 *        gateway, such as `kchat serve --metrics-http ADDR`.
 */
#ifndef KCHAT_OPS_HTTP_H
#define KCHAT_OPS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "kchat/error.h"

/** A running listener. Opaque. */
typedef struct kchat_ops_http kchat_ops_http;

/** Writes the process's metrics (Prometheus text) to @p out, which the
 *  caller owns. Called on the listener's own thread (or, for
 *  kchat_gateway_set_metrics(), the gateway's loop thread), one call at a
 *  time. */
typedef void (*kchat_metrics_fn)(void *arg, FILE *out);
/** Whether the process is ready (readyz 200) or not (503). Called on the
 *  listener's thread. */
typedef bool (*kchat_ready_fn)(void *arg);

/**
 * @brief Listen on @p addr (`host:port`) on a thread of its own.
 * @param[in] metrics, ready callbacks (ready may be NULL: always ready);
 *            @p arg is passed to both and must outlive the listener.
 * @param[out] out the listener, to be freed with kchat_ops_http_stop().
 * @return KCHAT_OK; KCHAT_ECONFIG (bad address), KCHAT_EIO (cannot bind or
 *         start the thread), KCHAT_ENOMEM. @p errstr says which.
 * @locality any thread; turns libevent's pthread locking on process-wide.
 */
KCHAT_MUST_CHECK int kchat_ops_http_start(const char *addr, kchat_metrics_fn metrics,
                                          kchat_ready_fn ready, void *arg, kchat_ops_http **out,
                                          char *errstr, size_t errstr_size);

/** @brief Stop listening, join the thread, free. NULL is ignored.
 *  @locality any thread but the listener's own (so never from a callback). */
void kchat_ops_http_stop(kchat_ops_http *h);

#endif /* KCHAT_OPS_HTTP_H */
