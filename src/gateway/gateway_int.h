/*
 * Private to src/gateway: the gateway's state and the calls between its
 * files, one section per file.
 *
 *   gateway.c   life cycle: start, stop, the loop thread, the listener
 *   kafka.c     the Kafka side: client settings, the producer's delivery
 *               reports, the Kafka thread that reads replies and events
 *   catchup.c   shared, capped catch-up readers of resumed event streams
 *   handoff.c   the queue from those threads to the loop thread
 *   http.c      evhttp set-up, dispatch by path, writing replies
 *   api.c       the API routes of PROTOCOL.md section 8
 *   pending.c   calls waiting for the backend's answer (by kchat-cid)
 *   sse.c       event streams (Server-Sent Events)
 *   static.c    the chat page's files
 *   metrics.c   GET /metrics, /healthz, /readyz and the counters
 *   deadline.c  the deadline of every request of every connection
 *   origin.c    the Origin check of state-changing calls
 *   presence.c  the presence records of open event streams (kchat-presence)
 *
 * Threads, and what goes from one to another:
 *  - the loop thread (gateway.c, loop_main()) runs libevent: every HTTP
 *    callback and timer, and so the pending table, the event streams and
 *    the metrics. Fields and functions marked [loop] are for it alone
 *    (and for the stopping thread once the loop thread has ended).
 *  - the Kafka thread (kafka.c, kchat__gw_kafka_main()) polls the reply
 *    consumer and the producer. Each response record, each chat-events
 *    record and each failed delivery report becomes a malloc()ed gw_item
 *    that kchat__gw_push() appends to gw->q_head under gw->lock, waking the
 *    loop with event_active(gw->notify_ev) (libevent's pthread locking is
 *    on); on the loop, the queue is taken whole and each item handled and
 *    freed (handoff.c).
 *  - catch-up threads (catchup.c), started by the loop for a stream opened
 *    with Last-Event-ID, push their records and an end item the same way.
 *  - the thread that calls kchat_gateway_start() and kchat_gateway_stop()
 *    (the owner) sets gw->stopping and activates gw->stop_ev, whose callback
 *    ends the loop; it joins the loop and Kafka threads and waits for the
 *    catch-up threads (gw->catchups) before it frees anything.
 *  - the other way, the loop produces requests with rd_kafka_producev() and
 *    reads the consumer's positions for /metrics: librdkafka calls that any
 *    thread may make.
 *  - gw->ready, gw->kafka_down and gw->stopping are atomics read by all.
 */
#ifndef KCHAT_GATEWAY_INT_H
#define KCHAT_GATEWAY_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "kchat/auth.h"
#include "kchat/codec.h"
#include "kchat/config.h"
#include "guard.h"
#include "kchat/error.h"
#include "kchat/gateway.h"
#include "kchat/ops_http.h"
#include "kchat/presence.h"

/* ---- routes and counters (metrics.c) ------------------------------------ */

/** Every route, as named in the `route` label of
 *  kchat_gateway_http_requests_total. */
#define GW_ROUTES(X) X(users) X(login) X(logout) X(status) X(friends_get) \
    X(friends_post) X(rooms_get) X(rooms_post) X(messages_get) X(messages_post) \
    X(room_read) X(room_invite) X(room_leave) \
    X(events) X(static) X(healthz) X(readyz) X(metrics) X(not_found)
enum gw_route {
#define GW__R(n) GW_ROUTE_##n,
    GW_ROUTES(GW__R)
#undef GW__R
    GW_ROUTE__COUNT
};
#define GW_N_STATUS 17   /**< the counted statuses, and "other" */
#define GW_N_BUCKETS 12  /**< latency buckets, and +Inf */

/**
 * The gateway's plain counters: X(field, metric name, help text). One table
 * makes the fields of gw_counters and their lines in GET /metrics, in this
 * order.
 */
#define GW_COUNTERS(X)                                                          \
    X(events_delivered, "kchat_gateway_events_delivered_total",                 \
      "Events written to streams.")                                             \
    X(sse_overflows, "kchat_gateway_sse_overflows_total",                       \
      "Streams closed because their client fell behind.")                       \
    X(timeouts, "kchat_gateway_timeouts_total",                                 \
      "Calls the backend did not answer in time.")                              \
    X(request_deadline, "kchat_gateway_request_deadline_total",                 \
      "Connections closed because their request did not arrive in time.")      \
    X(stream_resets, "kchat_gateway_stream_resets_total",                       \
      "Streams resumed from a Last-Event-ID past the end of the log (reset).")   \
    X(presence_records, "kchat_gateway_presence_records_total",                 \
      "Presence records (online, offline, beat, gone) handed to the producer.")

/** The counters of GW_COUNTERS. [loop] */
typedef struct gw_counters {
#define GW__COUNTER_FIELD(field, name, help) uint64_t field;
    GW_COUNTERS(GW__COUNTER_FIELD)
#undef GW__COUNTER_FIELD
} gw_counters;

/* ---- the gateway --------------------------------------------------------- */

struct cu_job;
struct cu_reader;
struct gw_item;
struct gw_pending;
struct gw_stream;
typedef struct gw_presence_user gw_presence_user;

struct kchat_gateway {
    /* set by kchat_gateway_start(), read-only afterwards */
    const kchat_config *cfg;
    int sse_max_total;           /**< cfg->sse_max_total, lowered to fit RLIMIT_NOFILE */
    int process;                 /**< which of cfg->gateway_processes this is, from 0 */
    char *brokers;
    char url[160];
    kchat_auth *auth;            /**< --secret-file's keys, or NULL: nothing signed or sealed */
    _Atomic(kchat_metrics_fn) metrics_fn; /**< extra metrics (the backend's in `kchat dev`) */
    _Atomic(void *) metrics_arg;

    /* libevent; the loop thread runs gw->base */
    struct event_base *base;
    struct evhttp *http;
    struct event *notify_ev;     /**< active: the queue has items */
    struct event *stop_ev;       /**< active: stop the loop */
    struct event *tick_ev;       /**< every few seconds: heartbeats */
    pthread_t loop_thread, kafka_thread;
    bool loop_started, kafka_started;
    struct gw_conn *conns;       /**< [loop] connections under the request deadline */
    gw_guard *guard;             /**< [loop] login guard: device cookies, per-address limit */

    /* Kafka; the handles are librdkafka's and thread-safe */
    rd_kafka_t *producer;
    rd_kafka_t *consumer;
    atomic_bool stopping;
    atomic_bool ready;
    atomic_bool kafka_down;
    atomic_int catchups;         /**< catch-up reader threads running */
    atomic_int cu_consumers;     /**< their Kafka consumers (at most cfg->catchup_max) */
    atomic_int cu_consumers_peak; /**< the most there ever were at once */
    pthread_mutex_t cu_lock;     /**< guards cu_queue and cu_readers (catchup.c) */
    struct cu_job *cu_queue;     /**< catch-ups waiting for a reader */
    struct cu_reader *cu_readers; /**< cfg->catchup_max reader slots */
    int event_partitions;        /**< of chat-events; set before ready */
    int presence_partitions;     /**< of kchat-presence; set before ready */
    int64_t *events_next;        /**< [loop after ready] next live offset per partition */

    /* the hand-off queue (handoff.c) */
    pthread_mutex_t lock;        /**< guards q_head, q_tail and ready_cond */
    pthread_cond_t ready_cond;
    struct gw_item *q_head, *q_tail;

    /* calls and streams [loop] */
    struct gw_pending *pending;  /**< cfg->max_pending slots */
    int n_pending;
    int pending_hint;            /**< where to look for a free slot first */
    struct gw_stream *streams;
    int n_streams;
    uint64_t next_stream_id;
    struct gw_stream **stream_tab; /**< the streams again, by a keyed hash of their user */
    size_t stream_buckets;       /**< a power of two */
    unsigned char stream_key[16]; /**< the hash's key: user ids cannot be aimed at a bucket */

    /* presence (presence.c) [loop] */
    char presence_id[KCHAT_PRESENCE_GW_LEN + 1]; /**< this start's gateway id (hex) */
    gw_presence_user **presence_tab; /**< users online here, by murmur2 of the id */
    size_t presence_buckets;     /**< a power of two */
    int presence_users;          /**< in presence_tab: streams open or offline pending */
    bool presence_stopped;       /**< gone was sent: no more records */
    struct event *presence_beat_ev; /**< every KCHAT_PRESENCE_BEAT_MS */
    atomic_uint_fast64_t presence_failed; /**< records Kafka did not take (any thread) */

    /* metrics [loop] */
    uint64_t requests[GW_ROUTE__COUNT][GW_N_STATUS];
    uint64_t latency[GW_N_BUCKETS];
    double latency_sum;
    uint64_t latency_count;
    gw_counters counters;
};

/* ---- gateway.c ----------------------------------------------------------- */

/** Monotonic seconds. @locality any thread */
double kchat__gw_now(void);

/* Whether record @p m (a response or an event) carries this deployment's
 * MAC; always true without --secret-file. A record that does not is
 * counted and logged (kchat_auth_verify()).
 * @locality the Kafka thread or a catch-up thread */
bool kchat__gw_record_authentic(kchat_gateway *gw, const rd_kafka_message_t *m);

/* ---- kafka.c ------------------------------------------------------------- */

/**
 * @brief Make the producer and the reply consumer (gw->producer,
 *        gw->consumer), with the delivery-report and error callbacks.
 * @return KCHAT_OK; KCHAT_ECONFIG (a bad -X property), KCHAT_EKAFKA;
 *         @p errstr says why. What was made stays in @p gw for
 *         kchat_gateway_stop() to free.
 * @locality the owner, before the Kafka thread starts
 */
KCHAT_MUST_CHECK int kchat__gw_kafka_open(kchat_gateway *gw, char *errstr, size_t errstr_size);

/**
 * @brief Settings shared by every client of the gateway: brokers, -X
 *        properties, the error callback (opaque: @p gw).
 * @return a new conf for rd_kafka_new(), or NULL with @p errstr set.
 * @locality any thread
 */
rd_kafka_conf_t *kchat__gw_kafka_conf(kchat_gateway *gw, char *errstr, size_t errstr_size);

/** @brief Consumer settings: a unique group id, nothing committed, from the
 *         start when no offset is given; @p eof: report partition ends.
 *  @locality any thread */
void kchat__gw_consumer_conf(rd_kafka_conf_t *conf, bool eof);

/** @brief fetch.wait.max.ms of a gateway consumer: the mock cluster's value
 *         or Kafka's, asking the cluster id for at most @p timeout_ms.
 *  @locality any thread (blocks up to @p timeout_ms) */
void kchat__gw_fetch_wait_conf(kchat_gateway *gw, rd_kafka_conf_t *conf, int timeout_ms);

/**
 * @brief A GW_ITEM_EVENT or GW_ITEM_CATCHUP item from a chat-events record:
 *        user from the key, type, partition, offset, the value as compact
 *        JSON in `data`.
 * @return a malloc()ed item the caller owns, or NULL (no key, a value that
 *         does not decode to an object, out of memory).
 * @locality any thread (the Kafka thread and the catch-up threads)
 */
struct gw_item *kchat__gw_event_item(const rd_kafka_message_t *m, int kind);

/**
 * @brief The Kafka thread: make sure the topics exist (retrying until it
 *        works or the gateway stops), assign every partition of the response
 *        topics and chat-events from the end, set gw->ready, then hand every
 *        record to the loop until gw->stopping.
 * @locality the Kafka thread (pthread_create() by kchat_gateway_start())
 * @locks takes gw->lock (must not be held) to publish gw->ready
 */
void *kchat__gw_kafka_main(void *arg);

/* ---- origin.c ------------------------------------------------------------ */

/**
 * @brief Whether @p req may change state as its origin asks: true for GET
 *        and HEAD; for POST, PUT and DELETE true when its Origin is listed in
 *        --allow-origin, or, unless Sec-Fetch-Site says cross-site, when it
 *        has no Origin (not a browser's cross-origin call) or an Origin of
 *        http:// or https:// and the request's own Host.
 * @locality loop thread
 */
bool kchat__gw_origin_ok(kchat_gateway *gw, struct evhttp_request *req);

/* ---- presence.c: what the backends learn of open event streams ---------- */

/**
 * @brief Pick this start's gateway id, make the user table and arm the beat
 *        timer (it sends nothing before gw->ready).
 * @return KCHAT_OK or KCHAT_ENOMEM (what was made stays for
 *         kchat__gw_presence_free()).
 * @locality the owner, before the loop thread starts (gw->base exists)
 */
KCHAT_MUST_CHECK int kchat__gw_presence_init(kchat_gateway *gw);

/**
 * @brief A stream of @p user opened: `online` if it is their first here and
 *        no close of theirs is within the debounce (else nothing, and a
 *        pending offline is called off).
 * @locality loop thread
 */
void kchat__gw_presence_open(kchat_gateway *gw, const char *user);

/**
 * @brief A stream of @p user (one kchat__gw_presence_open() counted)
 *        closed: if it was their last here, `offline` in
 *        #KCHAT_PRESENCE_DEBOUNCE_MS unless one reopens before, with `at`
 *        the time of this close.
 * @locality loop thread
 */
void kchat__gw_presence_close(kchat_gateway *gw, const char *user);

/**
 * @brief The clean stop, once the streams have ended: `offline` for every
 *        user still in the table (at once), then `gone` to every partition;
 *        nothing is produced afterwards. kchat_gateway_stop() flushes.
 * @locality loop thread (stop_cb()), before the producer is destroyed
 */
void kchat__gw_presence_stop(kchat_gateway *gw);

/** @brief Free the table and the timers (nothing is produced).
 *  @locality the owner, after the loop thread has ended */
void kchat__gw_presence_free(kchat_gateway *gw);

/* ---- catchup.c ----------------------------------------------------------- */

/**
 * @brief Queue the catch-up of stream @p stream_id: a shared reader
 *        (at most cfg->catchup_max at once, one partition each) reads @p
 *        user's records of chat-events partition @p partition from @p from
 *        up to @p to and pushes them (GW_ITEM_CATCHUP), then
 *        GW_ITEM_CATCHUP_DONE (not ok if it did not get there within 10 s
 *        of this call, waiting for a reader included).
 * @return KCHAT_OK; KCHAT_ENOMEM (no memory, no thread): then nothing is
 *         pushed.
 * @locality loop thread
 * @locks takes gw->cu_lock
 */
KCHAT_MUST_CHECK int kchat__gw_catchup_start(kchat_gateway *gw, uint64_t stream_id,
                                             const char *user, int32_t partition, int64_t from,
                                             int64_t to);

/** @brief Make the cfg->catchup_max reader slots.
 *  @return KCHAT_OK or KCHAT_ENOMEM. @locality the owner, at start */
KCHAT_MUST_CHECK int kchat__gw_catchup_init(kchat_gateway *gw);

/** @brief Free the catch-ups no reader took and the reader slots.
 *  @locality the owner, once gw->catchups is 0 */
void kchat__gw_catchup_free(kchat_gateway *gw);

/* ---- handoff.c: from the Kafka and catch-up threads to the loop ---------- */

/** Kinds of gw_item. */
enum gw_item_kind {
    GW_ITEM_RESPONSE,      /**< a response record: cid, op, data */
    GW_ITEM_DR_FAIL,       /**< a request the producer could not deliver: cid */
    GW_ITEM_EVENT,         /**< a live chat-events record */
    GW_ITEM_CATCHUP,       /**< a chat-events record read for one stream */
    GW_ITEM_CATCHUP_DONE,  /**< that stream's catch-up ended (ok says how) */
};

/** One hand-off to the loop thread; whoever holds it frees it (data too). */
typedef struct gw_item {
    struct gw_item *next;
    int kind;
    int op;                /**< response: the kchat_op */
    bool ok;               /**< catch-up done: read up to the live position */
    char cid[72];
    char user[72];         /**< event: the record key (recipient); catch-up: the stream's user */
    char type[16];         /**< event: the record's `type` */
    int32_t partition;
    int64_t offset;
    uint64_t stream_id;    /**< catch-up: the stream it was read for (of `user`) */
    char *data;            /**< malloc()ed JSON (NUL-terminated), may be NULL */
    size_t len;
} gw_item;

/**
 * @brief Queue @p it for the loop thread and wake it. Takes @p it.
 * @locality any thread
 * @locks takes gw->lock (must not be held)
 */
void kchat__gw_push(kchat_gateway *gw, gw_item *it);

/**
 * @brief Take every queued item and handle each (kchat__gw_handle_item()).
 * @locality loop thread
 * @locks takes gw->lock (must not be held)
 */
void kchat__gw_drain(kchat_gateway *gw);

/** @brief Handle one item (answer its call, feed its streams) and free it.
 *  @locality loop thread */
void kchat__gw_handle_item(kchat_gateway *gw, gw_item *it);

/** @brief Free a list of items (linked by `next`) and their data.
 *  @locality any thread that owns the list */
void kchat__gw_items_free(gw_item *list);

/** @brief Free what is left in the queue.
 *  @locality the owner, once no other thread is left to push */
void kchat__gw_queue_free(kchat_gateway *gw);

/* ---- http.c -------------------------------------------------------------- */

/** @brief Set evhttp's limits and install the request callback.
 *  @locality the owner before the loop thread starts */
void kchat__gw_http_setup(kchat_gateway *gw);

/**
 * @brief Send a complete reply and count it (route, status, time since
 *        @p started; 0: no time). @p body may be NULL; it stays the
 *        caller's. Adds nosniff, no-store (but for static files) and
 *        Content-Length; a HEAD reply gets no body.
 * @locality loop thread
 */
void kchat__gw_reply(kchat_gateway *gw, struct evhttp_request *req, int route, int code,
                     const char *ctype, struct evbuffer *body, double started);

/** @brief kchat__gw_reply() with @p v as compact JSON. @locality loop thread */
void kchat__gw_reply_json(kchat_gateway *gw, struct evhttp_request *req, int route, int code,
                          json_t *v, double started);

/** @brief An error reply of PROTOCOL.md section 8: {isSuccess: false,
 *         errorCode: @p err, errorMessage: @p msg}. @locality loop thread */
void kchat__gw_reply_error(kchat_gateway *gw, struct evhttp_request *req, int route, int code,
                           const char *err, const char *msg, double started);

/** @brief Answer every pending call with 503 and end every stream.
 *  @locality loop thread; or the owner when the loop never ran */
void kchat__gw_shutdown_http(kchat_gateway *gw);

/* ---- api.c --------------------------------------------------------------- */

/** @brief Serve @p path under /api: check method, cookie and body, then
 *         send the Kafka request (or answer at once).
 *  @locality loop thread */
void kchat__gw_api_handle(kchat_gateway *gw, struct evhttp_request *req, const char *path,
                          double started);

/** @brief Answer the call a GW_ITEM_RESPONSE item is for, if it is still
 *         waiting here; open its stream for GET /api/events.
 *  @locality loop thread */
void kchat__gw_api_answer(kchat_gateway *gw, const gw_item *it);

/* ---- pending.c: calls waiting for their answer ---------------------------- */

/** What a pending call does with its answer. */
enum gw_pending_kind { GW_PEND_API, GW_PEND_SSE };

/** A call waiting for its response: a slot of gw->pending. [loop] */
typedef struct gw_pending {
    kchat_gateway *gw;
    struct evhttp_request *req;  /**< NULL: free slot */
    uint32_t gen;                /**< bumped on every use of the slot */
    int kind;
    int route;
    int op;
    char cid[48];
    char user[72];
    char session[136];
    char last_event_id[48];      /**< SSE: the request's Last-Event-ID */
    gw_login login;              /**< a login's device digest and client address */
    struct event *timer;
    double started;              /**< monotonic seconds */
} gw_pending;

/**
 * @brief Produce @p body as the request of @p op, keyed by @p user, with a
 *        fresh kchat-cid and @p session (and, for a login, @p login's device
 *        digest in kchat-device; NULL: none), and wait for its answer (or
 *        http-timeout-ms). Answers @p req itself when it cannot: not ready,
 *        table full, body not encodable or too large, produce refused.
 * @locality loop thread
 */
void kchat__gw_pending_send(kchat_gateway *gw, struct evhttp_request *req, int route, int kind,
                            kchat_op op, const char *user, const char *session,
                            const gw_login *login, const json_t *body, double started);

/**
 * @brief Take the call waiting for @p cid out of the table.
 * @param[out] call a copy of the call (its timer is gone).
 * @return its request, now the caller's to answer; NULL if no call waits
 *         for @p cid (another gateway's, a repeat, or too late).
 * @locality loop thread
 */
struct evhttp_request *kchat__gw_pending_take(kchat_gateway *gw, const char *cid,
                                              gw_pending *call);

/** @brief The producer could not deliver @p cid's request: answer 503.
 *  @locality loop thread */
void kchat__gw_pending_fail(kchat_gateway *gw, const char *cid);

/** @brief Answer every waiting call with 503 (the gateway is stopping).
 *  @locality loop thread; or the owner when the loop never ran */
void kchat__gw_pending_cancel_all(kchat_gateway *gw);

/* ---- sse.c: event streams ------------------------------------------------- */

/** An open event stream. [loop] */
typedef struct gw_stream {
    struct gw_stream *next, *prev;
    struct gw_stream *unext, *uprev; /**< the same bucket of gw->stream_tab */
    kchat_gateway *gw;
    uint64_t id;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    char user[72];
    char session[136];
    int32_t partition;           /**< chat-events partition of the user */
    int64_t next_offset;         /**< deliver only records at or after it */
    bool catching_up;            /**< live records are held until the catch-up ends */
    bool reset;                  /**< its Last-Event-ID was past the log's end: it
                                      starts live with an `event: reset` */
    bool present;                /**< counted by kchat__gw_presence_open() */
    bool chunked;                /**< the reply is in HTTP/1.1 chunked coding */
    gw_item *held, *held_tail;
    size_t held_bytes;
    double last_write;
} gw_stream;

/**
 * @brief Make the table of streams by user (sized for gw->sse_max_total).
 * @return KCHAT_OK or KCHAT_ENOMEM (what was made stays for
 *         kchat__gw_streams_free()).
 * @locality the owner, before the loop thread starts
 */
KCHAT_MUST_CHECK int kchat__gw_streams_init(kchat_gateway *gw);

/** @brief Free what kchat__gw_streams_init() made (the streams have ended).
 *  @locality the owner, after the loop thread has ended */
void kchat__gw_streams_free(kchat_gateway *gw);

/** @brief Whether @p user may open another stream (per user and in
 *         total); if not, @p req is answered 429 TOO_MANY_STREAMS.
 *  @locality loop thread */
bool kchat__gw_stream_may_open(kchat_gateway *gw, struct evhttp_request *req, const char *user,
                               double started);

/** @brief Open the event stream @p call asked for (its session was just
 *         checked), resuming after its Last-Event-ID if it gave one.
 *  @locality loop thread */
void kchat__gw_stream_open(kchat_gateway *gw, const gw_pending *call,
                           struct evhttp_request *req);

/** @brief A live chat-events record: advance the live position, deliver it
 *         to its user's streams (or hold it for those catching up).
 *  @locality loop thread */
void kchat__gw_streams_event(kchat_gateway *gw, const gw_item *it);

/** @brief A record a catch-up read for its stream: deliver it.
 *  @locality loop thread */
void kchat__gw_stream_catchup_item(kchat_gateway *gw, const gw_item *it);

/** @brief A stream's catch-up ended: deliver what was held, or close the
 *         stream if it did not read up to the live position.
 *  @locality loop thread */
void kchat__gw_stream_catchup_done(kchat_gateway *gw, const gw_item *it);

/** @brief End the streams of @p user's @p session (it logged out).
 *  @locality loop thread */
void kchat__gw_streams_end_session(kchat_gateway *gw, const char *user, const char *session);

/** @brief A keep-alive comment on every stream idle for 10 s.
 *  @locality loop thread */
void kchat__gw_streams_tick(kchat_gateway *gw);

/** @brief End every stream.
 *  @locality loop thread; or the owner when the loop never ran */
void kchat__gw_streams_close_all(kchat_gateway *gw);

/* ---- static.c ------------------------------------------------------------ */

/** @brief Serve the file of web-dir that @p raw (the request path) names.
 *  @locality loop thread */
void kchat__gw_static_handle(kchat_gateway *gw, struct evhttp_request *req, const char *raw,
                             double started);

/* ---- metrics.c ----------------------------------------------------------- */

/** @brief Count a reply: route, status, and its latency when @p started > 0.
 *  @locality loop thread */
void kchat__gw_count(kchat_gateway *gw, int route, int code, double started);

/** @brief GET /healthz: 200 while the loop runs. @locality loop thread */
void kchat__gw_healthz(kchat_gateway *gw, struct evhttp_request *req, double started);

/** @brief GET /readyz: 200 once Kafka is ready, else 503.
 *  @locality loop thread */
void kchat__gw_readyz(kchat_gateway *gw, struct evhttp_request *req, double started);

/** @brief GET /metrics: Prometheus text, then kchat_gateway_set_metrics()'s.
 *  @locality loop thread */
void kchat__gw_metrics(kchat_gateway *gw, struct evhttp_request *req, double started);

/* ---- deadline.c: every connection must deliver each request within
 * http-request-timeout seconds ---------------------------------------------- */

/** @brief Give every new connection its deadline timer (evhttp's bufferevent
 *         callback). @locality the owner before the loop thread starts */
void kchat__gw_deadline_setup(kchat_gateway *gw);

/** @brief A request of @p req's connection reached the handler: its
 *         deadline no longer applies; it starts again with the first byte
 *         after the answer (evhttp's on-complete callback of @p req is
 *         taken for that). @locality loop thread */
void kchat__gw_deadline_seen(kchat_gateway *gw, struct evhttp_request *req);

/** @brief Free every deadline timer.
 *  @locality the owner, after the loop thread has ended */
void kchat__gw_deadline_release(kchat_gateway *gw);

#endif /* KCHAT_GATEWAY_INT_H */
