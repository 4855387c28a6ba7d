/**
 * @file gateway.h
 * @brief `kchat gateway`: the HTTP front of kchat (PROTOCOL.md section 8).
 *
 * The gateway speaks JSON over HTTP/1.1 (libevent's evhttp) and maps each API
 * call to one Kafka request of PROTOCOL.md section 3: key = the user id,
 * murmur2 partitioner, a fresh `kchat-cid`, the session from the
 * `kchat_session` cookie. It waits, without blocking other connections, for
 * the response carrying that `kchat-cid` and answers with its body. It keeps
 * no chat state: everything it knows comes through Kafka.
 *
 * Threads:
 *  - the loop thread runs libevent: every HTTP connection, every timer, the
 *    pending table, the event streams and the metrics live there;
 *  - the Kafka thread makes sure the topics exist, then reads every
 *    partition of the thirteen response topics and of `chat-events` (manual
 *    assign from the end, a unique group id, never committed, so several
 *    gateways side by side each see every reply) and hands each record to
 *    the loop thread through a locked queue and event_active();
 *  - short-lived catch-up threads read one `chat-events` partition from a
 *    stream's `Last-Event-ID` up to the live position.
 *
 * Cookie: `kchat_session=<userId>.<sessionId>` (`HttpOnly; SameSite=Strict;
 * Path=/`). The user id in it only chooses the key and fills
 * `userId`/`writerId`; the backend checks that the session belongs to that
 * user on every request, and an event stream is opened only after a
 * session-checked request (user-search-friend) succeeded.
 *
 * Presence: the loop thread tells the backends on `kchat-presence` which
 * users have event streams open here (include/kchat/presence.h: online,
 * offline 5 s after the last close, a beat to every partition every 5 s,
 * and offline + gone at kchat_gateway_stop()); docs/gateway.md "Presence".
 *
 * SSE event ids are `P-OFFSET`, the record's `chat-events` partition and
 * offset; a stream opened with `Last-Event-ID: P-OFFSET` first receives the
 * user's records of partition P after OFFSET, then the live feed, with no gap
 * and no repeat.
 */
#ifndef KCHAT_GATEWAY_H
#define KCHAT_GATEWAY_H

#include <stddef.h>
#include "kchat/config.h"
#include "kchat/error.h"
#include "kchat/ops_http.h"

/** A running gateway. Opaque. */
typedef struct kchat_gateway kchat_gateway;

/**
 * @brief Start a gateway: bind the HTTP address `cfg->http`, start the loop
 *        thread and the Kafka thread.
 *
 * Returns as soon as the socket listens: GET /healthz answers 200 from then
 * on, GET /readyz and the API answer 503 until the Kafka thread has made
 * sure the topics exist and assigned its partitions (see
 * kchat_gateway_wait_ready()). An unreachable cluster is retried until
 * kchat_gateway_stop().
 *
 * @param[in] cfg settings (http, web-dir, http-timeout-ms, max-pending,
 *            sse-*, partitions, replication, -X); must outlive the gateway.
 * @param[in] brokers bootstrap servers; copied.
 * @param[out] out the gateway; NULL on error.
 * @param[out] errstr one sentence on error.
 * @return KCHAT_OK; KCHAT_ECONFIG (bad address, bad -X property),
 *         KCHAT_EIO (cannot bind), KCHAT_EKAFKA, KCHAT_ENOMEM.
 * @note libevent's pthread locking is turned on process-wide by the first
 *       call.
 * @locality any thread; that thread (the owner) must be the one that calls
 *           kchat_gateway_stop().
 */
KCHAT_MUST_CHECK int kchat_gateway_start(const kchat_config *cfg, const char *brokers,
                        kchat_gateway **out, char *errstr, size_t errstr_size);

/**
 * @brief Start a gateway as kchat_gateway_start() does, but accept
 *        connections on @p listen_fd, a listening socket the caller made
 *        (kchat_gateway_listen()), instead of binding `cfg->http`.
 *
 * This is how `kchat gateway --gateway-processes N` runs one gateway per
 * process on one address: each process gets one of the N sockets.
 *
 * @param[in] listen_fd a listening, non-blocking socket, or -1 to bind
 *            `cfg->http` (then the same as kchat_gateway_start()). The
 *            gateway owns it from the call on: it is closed by
 *            kchat_gateway_stop(), or before an error is returned.
 * @param[in] process which of the `cfg->gateway_processes` processes this
 *            is, from 0; GET /metrics reports it
 *            (`kchat_gateway_process_index`), since a scrape of the shared
 *            address reaches whichever process the kernel picks.
 * @return as kchat_gateway_start().
 * @locality as kchat_gateway_start().
 */
KCHAT_MUST_CHECK int kchat_gateway_start_on(const kchat_config *cfg, const char *brokers,
                                            int listen_fd, int process, kchat_gateway **out,
                                            char *errstr, size_t errstr_size);

/**
 * @brief Open @p n listening sockets on one HTTP address, all with
 *        SO_REUSEPORT, so that @p n processes can each accept on one of
 *        them and the kernel spreads new connections over them.
 *
 * With port 0 the first socket gets a free port and the others take the
 * same one. The sockets are non-blocking and close-on-exec.
 *
 * @param[in] http "host:port" as `--http` takes it.
 * @param[in] n how many sockets, >= 1.
 * @param[out] fds @p n descriptors; the caller owns them.
 * @param[out] url "http://HOST:PORT/" of the address bound (the wildcard
 *             shown as 127.0.0.1).
 * @param[out] errstr one sentence on error; nothing stays open then.
 * @return KCHAT_OK; KCHAT_EINVAL (n < 1), KCHAT_ECONFIG (not host:port),
 *         KCHAT_EIO (cannot resolve, bind or listen).
 * @locality any thread.
 */
KCHAT_MUST_CHECK int kchat_gateway_listen(const char *http, int n, int *fds, char *url,
                                          size_t url_size, char *errstr, size_t errstr_size);

/**
 * @brief Wait until the gateway is ready (topics exist, partitions
 *        assigned, end offsets known).
 * @param[in] timeout_ms most milliseconds to wait; < 0 waits forever.
 * @return KCHAT_OK, or KCHAT_ETIMEDOUT.
 * @locality any thread but the gateway's own (it blocks).
 */
KCHAT_MUST_CHECK int kchat_gateway_wait_ready(kchat_gateway *gw, int timeout_ms);

/**
 * @brief The URL of the gateway, `http://HOST:PORT/`, with the port actually
 *        bound (useful with port 0).
 * @return a string owned by the gateway, valid until kchat_gateway_stop().
 * @locality any thread.
 */
const char *kchat_gateway_url(const kchat_gateway *gw);

/**
 * @brief Append another component's metrics to GET /metrics, e.g. the
 *        backend's in `kchat dev` (kchat_backend_metrics()).
 * @param[in] fn called on the gateway's loop thread for every /metrics
 *            request; NULL removes it. @p arg must outlive the gateway or
 *            the next call.
 * @locality any thread; takes effect for the next /metrics request.
 */
void kchat_gateway_set_metrics(kchat_gateway *gw, kchat_metrics_fn fn, void *arg);

/**
 * @brief Stop and free: stop listening, answer every waiting call with 503,
 *        end every event stream, produce `offline` for every user online
 *        here and `gone` to every partition of `kchat-presence`, stop the
 *        Kafka and catch-up threads, flush the producer (at most 2 s).
 *        NULL is ignored.
 * @locality the thread that called kchat_gateway_start(); never the loop
 *           thread (so never from a kchat_metrics_fn).
 */
void kchat_gateway_stop(kchat_gateway *gw);

#endif /* KCHAT_GATEWAY_H */
