/*
 * Event streams (Server-Sent Events), on the loop thread.
 *
 * GET /api/events opens a stream once a session-checked request succeeded
 * (api.c). Every chat-events record is keyed by its recipient, so all of a
 * user's events are in one partition P; an event's id is `P-OFFSET`. A
 * stream opened with `Last-Event-ID: P-OFFSET` behind the live position
 * starts a catch-up thread (catchup.c) that reads the user's records of P
 * from OFFSET + 1 up to the live position; live records for the stream are
 * held meanwhile and delivered after it, so there is no gap and no repeat
 * (next_offset drops anything already sent). A stream whose client falls
 * behind by more than sse-buffer-kb is closed (the browser resumes with
 * Last-Event-ID); a stream idle for 10 s gets a comment line (the tick
 * that checks runs every 2 s). A Last-Event-ID past the end of the log (the
 * log was reset) cannot be resumed: the stream starts live and its first
 * event is `event: reset`, on which the page re-reads its rooms.
 *
 * Streams are in one list (the tick, the stop) and in a table by a keyed
 * hash of their user, so an event costs the recipient's streams, not all
 * of them. An event is framed once (`id:`, `event:`, `data:`) and that
 * frame copied to each of the recipient's streams.
 */
#include "gateway/gateway_int.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>

#include <sodium.h>

#include "kchat/error.h"
#include "kchat/kafka.h"

#define GW_SSE_SNDBUF (64 * 1024)   /* kernel send buffer of an event stream */
#define GW_SSE_IDLE 10.0            /* seconds without a write before a keep-alive */

_Static_assert(sizeof(((kchat_gateway *)0)->stream_key) == crypto_shorthash_KEYBYTES,
               "stream_key is a crypto_shorthash key");

int kchat__gw_streams_init(kchat_gateway *gw)
{
    size_t buckets = 64;

    while (buckets < (size_t)gw->sse_max_total && buckets < ((size_t)1 << 20))
        buckets <<= 1;
    crypto_shorthash_keygen(gw->stream_key);
    if ((gw->stream_tab = calloc(buckets, sizeof(*gw->stream_tab))) == NULL)
        return KCHAT_ENOMEM;
    gw->stream_buckets = buckets;
    return KCHAT_OK;
}

void kchat__gw_streams_free(kchat_gateway *gw)
{
    free(gw->stream_tab);
    gw->stream_tab = NULL;
}

/* The bucket of gw->stream_tab that holds @p user's streams.
 * @locality loop thread */
static gw_stream **user_bucket(kchat_gateway *gw, const char *user)
{
    unsigned char h[crypto_shorthash_BYTES];
    uint64_t v;

    crypto_shorthash(h, (const unsigned char *)user, strlen(user), gw->stream_key);
    memcpy(&v, h, sizeof(v));
    return &gw->stream_tab[v & (gw->stream_buckets - 1)];
}

/* @locality loop thread */
static void stream_free_held(gw_stream *s)
{
    kchat__gw_items_free(s->held);
    s->held = s->held_tail = NULL;
    s->held_bytes = 0;
}

/* Take @p s off gw->streams and off its user's bucket of gw->stream_tab,
 * and free it; its user may go offline (presence.c). @locality loop thread */
static void stream_unlink(kchat_gateway *gw, gw_stream *s)
{
    if (s->present)
        kchat__gw_presence_close(gw, s->user);
    if (s->prev)
        s->prev->next = s->next;
    else
        gw->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (s->uprev)
        s->uprev->unext = s->unext;
    else   /* the head of its bucket (every stream is in the table) */
        *user_bucket(gw, s->user) = s->unext;
    if (s->unext)
        s->unext->uprev = s->uprev;
    gw->n_streams--;
    stream_free_held(s);
    free(s);
}

/* We end the stream: the connection stays ours to finish.
 * @locality loop thread */
static void stream_close(kchat_gateway *gw, gw_stream *s)
{
    if (s->evcon)
        evhttp_connection_set_closecb(s->evcon, NULL, NULL);
    if (s->req)
        evhttp_send_reply_end(s->req);
    stream_unlink(gw, s);
}

/* The client went away: libevent detached the request from the connection,
 * so ending the reply frees it.
 * @locality loop thread (evhttp close callback) */
static void stream_closed_cb(struct evhttp_connection *evcon, void *arg)
{
    gw_stream *s = arg;

    (void)evcon;
    s->evcon = NULL;
    if (s->req)
        evhttp_send_reply_end(s->req);
    s->req = NULL;
    stream_unlink(s->gw, s);
}

/* Stream @p id of @p user, or NULL if it ended. @locality loop thread */
static gw_stream *stream_by_id(kchat_gateway *gw, const char *user, uint64_t id)
{
    for (gw_stream *s = *user_bucket(gw, user); s; s = s->unext)
        if (s->id == id)
            return s;
    return NULL;
}

/* Write @p len bytes at @p p as one chunk (framed as HTTP/1.1 chunked
 * coding when the reply is, as evhttp_send_reply_chunk() would); false (and
 * the stream closed) when its buffer overflows.
 *
 * The bytes are queued on the connection's bufferevent, which writes them
 * on a later turn of the loop. Sending them at once (one sendmsg() when
 * nothing was queued) was measured and is slower by an order of magnitude
 * at 19,488 streams (docs/gateway.md, "Tried and dropped").
 * @locality loop thread */
static bool stream_write(kchat_gateway *gw, gw_stream *s, const void *p, size_t len)
{
    struct bufferevent *bev = s->evcon ? evhttp_connection_get_bufferevent(s->evcon) : NULL;
    size_t queued = bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
    char head[24];

    if (queued + len > (size_t)gw->cfg->sse_buffer_kb * 1024) {
        gw->counters.sse_overflows++;
        stream_close(gw, s);
        return false;
    }
    s->last_write = kchat__gw_now();
    if (bev == NULL || len == 0)
        return true;
    /* evhttp_send_reply_start() armed the bufferevent for writing */
    if (s->chunked)
        bufferevent_write(bev, head, (size_t)snprintf(head, sizeof(head), "%zx\r\n", len));
    bufferevent_write(bev, p, len);
    if (s->chunked)
        bufferevent_write(bev, "\r\n", 2);
    return true;
}

/* The text of event @p it on a stream, in a malloc()ed *@p out of
 * *@p len bytes: `id: P-OFFSET`, `event: TYPE` (`message` if the record's
 * type is empty or not a plain word), `data: JSON`, a blank line.
 * @return false when out of memory. @locality loop thread */
static bool event_frame(const gw_item *it, char **out, size_t *len)
{
    const char *type = it->type;
    char head[96];
    int n;

    for (const char *c = type; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-')
            type = "message";
    n = snprintf(head, sizeof(head), "id: %d-%" PRId64 "\nevent: %s\ndata: ", (int)it->partition,
                 it->offset, type[0] ? type : "message");
    if (n < 0 || (size_t)n >= sizeof(head) || (*out = malloc((size_t)n + it->len + 2)) == NULL)
        return false;
    memcpy(*out, head, (size_t)n);
    if (it->len > 0)
        memcpy(*out + n, it->data, it->len);
    memcpy(*out + n + it->len, "\n\n", 2);
    *len = (size_t)n + it->len + 2;
    return true;
}

/* Send event @p it, framed as @p frame (@p len bytes), unless the stream
 * has had it; false if that closed the stream. @locality loop thread */
static bool stream_deliver_frame(kchat_gateway *gw, gw_stream *s, const gw_item *it,
                                 const char *frame, size_t len)
{
    if (it->offset < s->next_offset)
        return true;
    s->next_offset = it->offset + 1;
    if (!stream_write(gw, s, frame, len))
        return false;
    gw->counters.events_delivered++;
    return true;
}

/* Send one event unless the stream has had it; false if that closed the
 * stream. An event that cannot be framed (out of memory) is skipped, as
 * before: the stream goes on. @locality loop thread */
static bool stream_deliver(kchat_gateway *gw, gw_stream *s, const gw_item *it)
{
    char *frame;
    size_t len;
    bool ok;

    if (it->offset < s->next_offset)
        return true;
    if (!event_frame(it, &frame, &len)) {
        s->next_offset = it->offset + 1;
        return true;
    }
    ok = stream_deliver_frame(gw, s, it, frame, len);
    free(frame);
    return ok;
}

/* Keep a copy of a live event until the catch-up ends; the stream closes if
 * that takes more than its buffer. @locality loop thread */
static void stream_hold(kchat_gateway *gw, gw_stream *s, const gw_item *it)
{
    gw_item *c = malloc(sizeof(*c));

    if (c == NULL || (c->data = NULL, *c = *it, (c->data = malloc(it->len + 1)) == NULL)) {
        free(c);
        stream_close(gw, s);
        return;
    }
    memcpy(c->data, it->data, it->len + 1);
    c->next = NULL;
    if (s->held_tail)
        s->held_tail->next = c;
    else
        s->held = c;
    s->held_tail = c;
    s->held_bytes += it->len + 64;
    if (s->held_bytes > (size_t)gw->cfg->sse_buffer_kb * 1024) {
        gw->counters.sse_overflows++;
        stream_close(gw, s);
    }
}

/* @locality loop thread */
static int user_streams(kchat_gateway *gw, const char *user)
{
    int n = 0;

    for (gw_stream *s = *user_bucket(gw, user); s; s = s->unext)
        n += !strcmp(s->user, user);
    return n;
}

bool kchat__gw_stream_may_open(kchat_gateway *gw, struct evhttp_request *req, const char *user,
                               double started)
{
    if (gw->n_streams >= gw->sse_max_total || user_streams(gw, user) >= gw->cfg->sse_max_per_user) {
        kchat__gw_reply_error(gw, req, GW_ROUTE_events, 429, "TOO_MANY_STREAMS",
                              "Too many event streams are open.", started);
        return false;
    }
    return true;
}

/* Where new stream @p s starts: at the live position; or, for a
 * Last-Event-ID `P-OFFSET` of its partition, after OFFSET: at once if that
 * is not behind the live position (another gateway may be ahead of us),
 * else after a catch-up up to the live position.
 * @return KCHAT_OK; KCHAT_ENOMEM: the catch-up cannot start.
 * @locality loop thread */
static KCHAT_MUST_CHECK int stream_start_at(kchat_gateway *gw, gw_stream *s,
                                            const char *last_event_id)
{
    int part = -1;
    long long off = -2;
    char tail;
    int64_t live;

    s->next_offset = gw->events_next[s->partition];
    if (last_event_id[0] == '\0' ||
        sscanf(last_event_id, "%d-%lld%c", &part, &off, &tail) != 2 ||
        part != s->partition || off < -1)
        return KCHAT_OK;
    live = s->next_offset;
    if (off + 1 > live) {
        /* Ahead of what this gateway has seen: another gateway may be a
         * little ahead (then the records come soon), but an offset past the
         * partition's end as the consumer last fetched it was never written
         * (the embedded broker restarted, the topic was reset). Waiting for
         * the log to reach it would silence the stream: start live and tell
         * the page (issue 12, attack 7). */
        int64_t lo = 0, hi = 0;
        if (rd_kafka_get_watermark_offsets(gw->consumer, KCHAT_TOPIC_EVENTS, s->partition, &lo,
                                           &hi) != RD_KAFKA_RESP_ERR_NO_ERROR)
            hi = live;
        if (off + 1 > (hi > live ? hi : live)) {
            s->reset = true;
            gw->counters.stream_resets++;
            return KCHAT_OK;
        }
    }
    s->next_offset = off + 1;
    if (off + 1 >= live)
        return KCHAT_OK;   /* nothing to catch up, nothing to repeat */
    s->catching_up = true;
    return kchat__gw_catchup_start(gw, s->id, s->user, s->partition, off + 1, live);
}

/* The headers of an event stream, a small kernel send buffer, and no
 * Nagle delay.
 * @locality loop thread */
static void stream_prepare(struct evhttp_request *req, struct evhttp_connection *evcon)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Accel-Buffering", "no");
    /* Ending a stream (overflow, logout, stop) closes its connection too.
     * An HTTP/1.0 request that asked for keep-alive would make libevent
     * add "Connection: keep-alive" and "Content-Length: 0" to this reply,
     * and a client would read the stream as the next reply
     * (tests/fuzz/regress/http-003): forget that it asked. */
    while (evhttp_remove_header(evhttp_request_get_input_headers(req), "Connection") == 0)
        ;
    evhttp_add_header(h, "Connection", "close");
    if (evcon != NULL) {
        /* Bound what the kernel holds for a stream too, so a reader that
         * stops reading overflows the stream buffer after kilobytes, not
         * after the megabytes an autotuned send buffer would take. */
        struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
        int sndbuf = GW_SSE_SNDBUF;
        /* Each write is a whole event: with Nagle's algorithm on, an
         * event that follows another before the reader acknowledged it
         * would wait for that ack, which a reader may delay (40 ms at
         * least on Linux). Fails harmlessly on a socket that is not TCP. */
        int nodelay = 1;
        if (bev != NULL && bufferevent_getfd(bev) >= 0) {
            setsockopt(bufferevent_getfd(bev), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
            setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &nodelay,
                       sizeof(nodelay));
        }
    }
}

void kchat__gw_stream_open(kchat_gateway *gw, const gw_pending *call, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    gw_stream *s, **bucket;
    struct timeval wt = {60, 0};
    char hello[160];
    int n;

    if (!kchat__gw_stream_may_open(gw, req, call->user, call->started))
        return;
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        kchat__gw_reply_error(gw, req, GW_ROUTE_events, 500, "INTERNAL", "Out of memory.",
                              call->started);
        return;
    }
    s->gw = gw;
    s->id = gw->next_stream_id++;
    s->req = req;
    s->evcon = evcon;
    snprintf(s->user, sizeof(s->user), "%s", call->user);
    snprintf(s->session, sizeof(s->session), "%s", call->session);
    s->partition = kchat_partition_for_key(s->user, strlen(s->user), gw->event_partitions);
    if (stream_start_at(gw, s, call->last_event_id) != KCHAT_OK) {
        free(s);
        kchat__gw_reply_error(gw, req, GW_ROUTE_events, 503, "UNAVAILABLE", "Cannot resume now.",
                              call->started);
        return;
    }
    s->next = gw->streams;
    if (gw->streams)
        gw->streams->prev = s;
    gw->streams = s;
    bucket = user_bucket(gw, s->user);
    s->unext = *bucket;
    if (*bucket)
        (*bucket)->uprev = s;
    *bucket = s;
    gw->n_streams++;
    stream_prepare(req, evcon);
    evhttp_send_reply_start(req, 200, "OK");
    /* evhttp chose chunked coding (HTTP/1.1) or none (HTTP/1.0, then the
     * close ends the body); stream_write() frames as it chose. The route
     * is GET only (api.c), so the reply has a body. */
    s->chunked = evhttp_find_header(evhttp_request_get_output_headers(req),
                                    "Transfer-Encoding") != NULL;
    kchat__gw_count(gw, GW_ROUTE_events, 200, call->started);
    if (evcon == NULL) { /* the client is gone already */
        s->evcon = NULL;
        stream_close(gw, s);
        return;
    }
    evhttp_connection_set_closecb(evcon, stream_closed_cb, s);
    s->present = true;   /* from here on, every end of the stream goes through stream_unlink() */
    kchat__gw_presence_open(gw, s->user);
    bufferevent_set_timeouts(evhttp_connection_get_bufferevent(evcon), NULL, &wt);
    n = snprintf(hello, sizeof(hello), "retry: 2000\n: stream open\n\n");
    if (s->reset) /* the id moves the browser's Last-Event-ID to the live position */
        n += snprintf(hello + n, sizeof(hello) - (size_t)n,
                      "event: reset\nid: %d-%" PRId64 "\ndata: {\"partition\":%d}\n\n",
                      (int)s->partition, s->next_offset - 1, (int)s->partition);
    stream_write(gw, s, hello, (size_t)n);   /* false: closed on overflow */
}

void kchat__gw_streams_event(kchat_gateway *gw, const gw_item *it)
{
    gw_stream *s, *next;
    char *frame = NULL;
    size_t len = 0;

    if (gw->events_next && it->partition < gw->event_partitions &&
        gw->events_next[it->partition] < it->offset + 1)
        gw->events_next[it->partition] = it->offset + 1;
    for (s = *user_bucket(gw, it->user); s; s = next) {
        next = s->unext;
        if (strcmp(s->user, it->user) != 0)
            continue;
        if (s->catching_up) {
            stream_hold(gw, s, it);
        } else if (frame != NULL || event_frame(it, &frame, &len)) {
            stream_deliver_frame(gw, s, it, frame, len); /* false: closed, and unlinked */
        } else if (it->offset >= s->next_offset) {
            s->next_offset = it->offset + 1;   /* out of memory: skipped, as stream_deliver() */
        }
    }
    free(frame);
}

void kchat__gw_stream_catchup_item(kchat_gateway *gw, const gw_item *it)
{
    gw_stream *s = stream_by_id(gw, it->user, it->stream_id);

    if (s != NULL)
        stream_deliver(gw, s, it);   /* false: closed on overflow */
}

void kchat__gw_stream_catchup_done(kchat_gateway *gw, const gw_item *it)
{
    gw_stream *s = stream_by_id(gw, it->user, it->stream_id);
    gw_item *h, *hn;

    if (s == NULL)
        return;
    if (!it->ok) { /* the browser resumes from what it has */
        stream_close(gw, s);
        return;
    }
    s->catching_up = false;
    h = s->held;
    s->held = s->held_tail = NULL;
    s->held_bytes = 0;
    for (; h; h = hn) {
        hn = h->next;
        if (s && !stream_deliver(gw, s, h))
            s = NULL;
        free(h->data);
        free(h);
    }
}

void kchat__gw_streams_end_session(kchat_gateway *gw, const char *user, const char *session)
{
    gw_stream *s, *next;

    for (s = *user_bucket(gw, user); s; s = next) {
        next = s->unext;
        if (!strcmp(s->session, session) && !strcmp(s->user, user))
            stream_close(gw, s);
    }
}

void kchat__gw_streams_tick(kchat_gateway *gw)
{
    double now = kchat__gw_now();
    gw_stream *s, *next;

    for (s = gw->streams; s; s = next) {
        next = s->next;
        if (now - s->last_write >= GW_SSE_IDLE)
            stream_write(gw, s, ": keepalive\n\n", 13);   /* false: closed on overflow */
    }
}

void kchat__gw_streams_close_all(kchat_gateway *gw)
{
    while (gw->streams)
        stream_close(gw, gw->streams);
}
