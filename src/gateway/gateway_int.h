/* Private to src/gateway: the gateway's state, shared by gateway.c (life
 * cycle, Kafka threads) and http.c (HTTP API, event streams, static files,
 * metrics). Fields marked [loop] are touched by the loop thread only. */
#ifndef KCHAT_GATEWAY_INT_H
#define KCHAT_GATEWAY_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>
#include <librdkafka/rdkafka.h>

#include "kchat/config.h"
#include "kchat/gateway.h"
#include "kchat/ops_http.h"

/** Kinds of gw_item, the records the Kafka threads hand to the loop. */
enum gw_item_kind {
    GW_ITEM_RESPONSE,      /**< a response record: cid, op, data */
    GW_ITEM_DR_FAIL,       /**< a request the producer could not deliver: cid */
    GW_ITEM_EVENT,         /**< a live chat-events record */
    GW_ITEM_CATCHUP,       /**< a chat-events record read for one stream */
    GW_ITEM_CATCHUP_DONE,  /**< that stream's catch-up ended (ok says how) */
};

/** One hand-off from a Kafka thread to the loop; the loop frees it. */
typedef struct gw_item {
    struct gw_item *next;
    int kind;
    int op;                /**< response: the kchat_op */
    bool ok;               /**< catch-up done: read up to the live position */
    char cid[72];
    char user[72];         /**< event: the record key (recipient) */
    char type[16];         /**< event: the record's `type` */
    int32_t partition;
    int64_t offset;
    uint64_t stream_id;    /**< catch-up: the stream it was read for */
    char *data;            /**< malloc()ed JSON (NUL-terminated), may be NULL */
    size_t len;
} gw_item;

/** What a pending call does with its answer. */
enum gw_pending_kind { GW_PEND_API, GW_PEND_SSE };

/** A call waiting for its response. [loop] */
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
    struct event *timer;
    double started;              /**< monotonic seconds */
} gw_pending;

/** An open event stream. [loop] */
typedef struct gw_stream {
    struct gw_stream *next, *prev;
    kchat_gateway *gw;
    uint64_t id;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    char user[72];
    char session[136];
    int32_t partition;           /**< chat-events partition of the user */
    int64_t next_offset;         /**< deliver only records at or after it */
    bool catching_up;            /**< live records are held until the catch-up ends */
    gw_item *held, *held_tail;
    size_t held_bytes;
    double last_write;
} gw_stream;

#define GW_ROUTES(X) X(users) X(login) X(logout) X(status) X(friends_get) \
    X(friends_post) X(rooms_get) X(rooms_post) X(messages_get) X(messages_post) \
    X(events) X(static) X(healthz) X(readyz) X(metrics) X(not_found)
enum gw_route {
#define GW__R(n) GW_ROUTE_##n,
    GW_ROUTES(GW__R)
#undef GW__R
    GW_ROUTE__COUNT
};
#define GW_N_STATUS 17
#define GW_N_BUCKETS 12

struct kchat_gateway {
    const kchat_config *cfg;
    int sse_max_total;           /**< cfg->sse_max_total, lowered to fit RLIMIT_NOFILE */
    struct gw_conn *conns;       /**< connections whose first request is still due */
    uint64_t m_request_deadline; /**< connections closed for a request not sent in time */
    _Atomic(kchat_metrics_fn) metrics_fn; /**< extra metrics (the backend's in `kchat dev`) */
    _Atomic(void *) metrics_arg;
    char *brokers;
    char url[160];

    struct event_base *base;
    struct evhttp *http;
    struct event *notify_ev;     /**< active: the queue has items */
    struct event *stop_ev;       /**< active: stop the loop */
    struct event *tick_ev;       /**< every few seconds: heartbeats */
    pthread_t loop_thread, kafka_thread;
    bool loop_started, kafka_started;

    rd_kafka_t *producer;
    rd_kafka_t *consumer;
    atomic_bool stopping;
    atomic_bool ready;
    atomic_bool kafka_down;
    atomic_int catchups;         /**< catch-up threads running */

    pthread_mutex_t lock;        /**< guards the queue, ready_cond */
    pthread_cond_t ready_cond;
    gw_item *q_head, *q_tail;

    int event_partitions;        /**< of chat-events; set before ready */
    int64_t *events_next;        /**< [loop after ready] next live offset per partition */

    gw_pending *pending;         /**< [loop] cfg->max_pending slots */
    int n_pending;
    int pending_hint;
    gw_stream *streams;          /**< [loop] */
    int n_streams;
    uint64_t next_stream_id;

    /* metrics [loop] */
    uint64_t m_requests[GW_ROUTE__COUNT][GW_N_STATUS];
    uint64_t m_latency[GW_N_BUCKETS];
    double m_latency_sum;
    uint64_t m_latency_count;
    uint64_t m_events;
    uint64_t m_sse_overflow;
    uint64_t m_timeouts;
};

/* gateway.c */
/** Queue @p it for the loop thread and wake it. Any thread; takes @p it. */
void kchat__gw_push(kchat_gateway *gw, gw_item *it);
/** Make an event item from a chat-events record; NULL when it has no key. */
gw_item *kchat__gw_event_item(const rd_kafka_message_t *m, int kind);
/** Start a catch-up thread for stream @p stream_id. [loop] */
int kchat__gw_catchup_start(kchat_gateway *gw, uint64_t stream_id, const char *user,
                            int32_t partition, int64_t from, int64_t to);
/** Monotonic seconds. */
double kchat__gw_now(void);

/* http.c */
/** Install the HTTP callbacks on gw->http. [loop or before it runs] */
void kchat__gw_http_setup(kchat_gateway *gw);
/** Handle one item from the queue and free it. [loop] */
void kchat__gw_handle_item(kchat_gateway *gw, gw_item *it);
/** Send heartbeats to idle streams. [loop] */
void kchat__gw_tick(kchat_gateway *gw);
/** Answer every pending call with 503 and end every stream. [loop] */
void kchat__gw_shutdown_http(kchat_gateway *gw);

/* deadline.c: every connection must deliver its first request within
 * http-request-timeout seconds (loop thread only). */
void kchat__gw_deadline_setup(kchat_gateway *gw);
void kchat__gw_deadline_seen(kchat_gateway *gw, struct evhttp_request *req);
void kchat__gw_deadline_release(kchat_gateway *gw);

#endif /* KCHAT_GATEWAY_INT_H */
