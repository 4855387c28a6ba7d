/* The gateway's HTTP side, all on the loop thread: the API of PROTOCOL.md
 * section 8, the pending table, event streams, static files, health and
 * metrics. */
#include "gateway/gateway_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <sodium.h>

#include "kchat/codec.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

#define GW_MAX_BODY (64 * 1024)
#define GW_READ_BODY_MAX (1024 * 1024)
#define GW_SSE_SNDBUF (64 * 1024)   /* kernel send buffer of an event stream */

static const char *const route_names[] = {
#define GW__N(n) #n,
    GW_ROUTES(GW__N)
#undef GW__N
};

static const int status_codes[GW_N_STATUS - 1] = {200, 201, 204, 304, 400, 401, 403, 404,
                                                  405, 409, 413, 415, 429, 500, 503, 504};
static const double buckets[GW_N_BUCKETS - 1] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                 0.1,   0.25,   0.5,   1,    5};

static const char *reason(int code)
{
    switch (code) {
    case 200: return "OK";
    case 201: return "Created";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

static void count(kchat_gateway *gw, int route, int code, double started)
{
    int i;

    for (i = 0; i < GW_N_STATUS - 1 && status_codes[i] != code; i++)
        ;
    gw->m_requests[route][i]++;
    if (started > 0) {
        double d = kchat__gw_now() - started;
        int b;
        for (b = 0; b < GW_N_BUCKETS - 1 && d > buckets[b]; b++)
            ;
        gw->m_latency[b]++;
        gw->m_latency_sum += d;
        gw->m_latency_count++;
    }
}

/* Send a complete reply; @p body may be NULL. */
static void reply(kchat_gateway *gw, struct evhttp_request *req, int route, int code,
                  const char *ctype, struct evbuffer *body, double started)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    if (ctype)
        evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    if (route != GW_ROUTE_static)
        evhttp_add_header(h, "Cache-Control", "no-store");
    /* A HEAD reply has no body, but libevent 2.1 writes the one it is
     * given (without a Content-Length): the client would read it as the
     * start of the next reply (tests/fuzz/regress/http-001). And libevent
     * adds Content-Length only for HTTP/1.x, yet keeps an "HTTP/0.9" one
     * with "Connection: keep-alive" open: always say it (http-002). */
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        body = NULL;
    } else {
        char len[24];
        snprintf(len, sizeof(len), "%zu", body ? evbuffer_get_length(body) : (size_t)0);
        evhttp_add_header(h, "Content-Length", len);
    }
    evhttp_send_reply(req, code, reason(code), body);
    count(gw, route, code, started);
}

static void reply_json(kchat_gateway *gw, struct evhttp_request *req, int route, int code,
                       json_t *v, double started)
{
    struct evbuffer *b = evbuffer_new();
    char *out = NULL;
    size_t len = 0;

    if (b && kchat_codec_encode(KCHAT_FMT_JSON, v, &out, &len) == KCHAT_OK)
        evbuffer_add(b, out, len);
    free(out);
    reply(gw, req, route, code, "application/json", b, started);
    if (b)
        evbuffer_free(b);
}

static void reply_error(kchat_gateway *gw, struct evhttp_request *req, int route, int code,
                        const char *err, const char *msg, double started)
{
    json_t *v = json_pack("{s:b,s:s,s:s}", "isSuccess", 0, "errorCode", err, "errorMessage", msg);

    reply_json(gw, req, route, code, v, started);
    json_decref(v);
}

static int wire_status(const char *code)
{
    static const struct { const char *name; int status; } map[] = {
        {"BAD_REQUEST", 400},    {"UNAUTHENTICATED", 401}, {"BAD_CREDENTIALS", 401},
        {"NOT_A_FRIEND", 403},   {"NOT_A_MEMBER", 403},    {"USER_NOT_FOUND", 404},
        {"ROOM_NOT_FOUND", 404}, {"ALREADY_EXISTS", 409},  {"TOO_LARGE", 413},
        {"INTERNAL", 500},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (!strcmp(map[i].name, code))
            return map[i].status;
    return 500;
}

/* ---- cookies and identity ---- */

/* The `kchat_session` cookie split into user id and session id. */
static bool session_from_cookie(struct evhttp_request *req, char *user, size_t ulen,
                                char *session, size_t slen)
{
    const char *c = evhttp_find_header(evhttp_request_get_input_headers(req), "Cookie");
    const char *p, *end, *dot;

    if (c == NULL)
        return false;
    for (p = c; (p = strstr(p, "kchat_session=")) != NULL; p++)
        if (p == c || p[-1] == ' ' || p[-1] == ';')
            break;
    if (p == NULL)
        return false;
    p += strlen("kchat_session=");
    end = p + strcspn(p, "; ");
    for (dot = end; dot > p && dot[-1] != '.'; dot--)
        ;
    if (dot <= p + 1 || dot == end)
        return false;
    if (!kchat_valid_id(p, (size_t)(dot - 1 - p)) || (size_t)(dot - 1 - p) >= ulen ||
        (size_t)(end - dot) >= slen || end - dot > 128)
        return false;
    memcpy(user, p, (size_t)(dot - 1 - p));
    user[dot - 1 - p] = '\0';
    memcpy(session, dot, (size_t)(end - dot));
    session[end - dot] = '\0';
    for (char *s = session; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
            return false;
    return true;
}

static void set_cookie(struct evhttp_request *req, const char *user, const char *session)
{
    char buf[512];

    if (user)
        snprintf(buf, sizeof(buf), "kchat_session=%s.%s; HttpOnly; SameSite=Strict; Path=/",
                 user, session);
    else
        snprintf(buf, sizeof(buf),
                 "kchat_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Set-Cookie", buf);
}

/* ---- the pending table ---- */

static gw_pending *pending_find(kchat_gateway *gw, const char *cid)
{
    char *end;
    unsigned long slot = strtoul(cid + 1, &end, 16);
    gw_pending *p;

    if (cid[0] != 'g' || *end != '-' || slot >= (unsigned long)gw->cfg->max_pending)
        return NULL;
    p = &gw->pending[slot];
    return p->req && !strcmp(p->cid, cid) ? p : NULL;
}

static void pending_release(kchat_gateway *gw, gw_pending *p)
{
    if (p->timer)
        event_free(p->timer);
    p->timer = NULL;
    p->req = NULL;
    p->gen++;
    gw->n_pending--;
}

static void timeout_fire(kchat_gateway *gw, gw_pending *p)
{
    struct evhttp_request *req = p->req;
    int route = p->route;
    double started = p->started;

    pending_release(gw, p);
    gw->m_timeouts++;
    if (atomic_load(&gw->kafka_down))
        reply_error(gw, req, route, 503, "UNAVAILABLE", "Kafka is unreachable.", started);
    else
        reply_error(gw, req, route, 504, "TIMEOUT", "The backend did not answer in time.",
                    started);
}

static void pending_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_pending *p = arg;

    (void)fd;
    (void)what;
    if (p->req)
        timeout_fire(p->gw, p);
}

/* ---- event streams ---- */

static void stream_free_held(gw_stream *s)
{
    gw_item *it, *next;

    for (it = s->held; it; it = next) {
        next = it->next;
        free(it->data);
        free(it);
    }
    s->held = s->held_tail = NULL;
    s->held_bytes = 0;
}

static void stream_unlink(kchat_gateway *gw, gw_stream *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        gw->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    gw->n_streams--;
    stream_free_held(s);
    free(s);
}

/* We end the stream: the connection stays ours to finish. */
static void stream_close(kchat_gateway *gw, gw_stream *s)
{
    if (s->evcon)
        evhttp_connection_set_closecb(s->evcon, NULL, NULL);
    if (s->req)
        evhttp_send_reply_end(s->req);
    stream_unlink(gw, s);
}

/* The client went away: libevent detached the request from the connection,
 * so ending the reply frees it. */
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

static gw_stream *stream_by_id(kchat_gateway *gw, uint64_t id)
{
    for (gw_stream *s = gw->streams; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

/* Write raw bytes; false (and the stream closed) when its buffer overflows. */
static bool stream_write(kchat_gateway *gw, gw_stream *s, struct evbuffer *b)
{
    struct bufferevent *bev = s->evcon ? evhttp_connection_get_bufferevent(s->evcon) : NULL;
    size_t queued = bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;

    if (queued + evbuffer_get_length(b) > (size_t)gw->cfg->sse_buffer_kb * 1024) {
        gw->m_sse_overflow++;
        stream_close(gw, s);
        return false;
    }
    evhttp_send_reply_chunk(s->req, b);
    s->last_write = kchat__gw_now();
    return true;
}

static bool stream_deliver(kchat_gateway *gw, gw_stream *s, const gw_item *it)
{
    struct evbuffer *b;
    const char *type = it->type;
    bool ok;

    if (it->offset < s->next_offset)
        return true;
    s->next_offset = it->offset + 1;
    for (const char *c = type; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-')
            type = "message";
    if ((b = evbuffer_new()) == NULL)
        return true;
    evbuffer_add_printf(b, "id: %d-%" PRId64 "\nevent: %s\ndata: ", (int)it->partition,
                        it->offset, type[0] ? type : "message");
    evbuffer_add(b, it->data, it->len);
    evbuffer_add(b, "\n\n", 2);
    ok = stream_write(gw, s, b);
    evbuffer_free(b);
    if (ok)
        gw->m_events++;
    return ok;
}

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
        gw->m_sse_overflow++;
        stream_close(gw, s);
    }
}

static int user_streams(kchat_gateway *gw, const char *user)
{
    int n = 0;

    for (gw_stream *s = gw->streams; s; s = s->next)
        n += !strcmp(s->user, user);
    return n;
}

static int stream_cap_check(kchat_gateway *gw, struct evhttp_request *req, const char *user,
                            double started)
{
    if (gw->n_streams >= gw->sse_max_total || user_streams(gw, user) >= gw->cfg->sse_max_per_user) {
        reply_error(gw, req, GW_ROUTE_events, 429, "TOO_MANY_STREAMS",
                    "Too many event streams are open.", started);
        return -1;
    }
    return 0;
}

static void stream_open(kchat_gateway *gw, gw_pending *p, struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct evbuffer *b;
    gw_stream *s;
    int part = -1;
    long long off = -2;
    char tail;
    struct timeval wt = {60, 0};

    if (stream_cap_check(gw, req, p->user, p->started) != 0)
        return;
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        reply_error(gw, req, GW_ROUTE_events, 500, "INTERNAL", "Out of memory.", p->started);
        return;
    }
    s->gw = gw;
    s->id = gw->next_stream_id++;
    s->req = req;
    s->evcon = evcon;
    snprintf(s->user, sizeof(s->user), "%s", p->user);
    snprintf(s->session, sizeof(s->session), "%s", p->session);
    s->partition = kchat_partition_for_key(s->user, strlen(s->user), gw->event_partitions);
    s->next_offset = gw->events_next[s->partition];
    if (p->last_event_id[0] &&
        sscanf(p->last_event_id, "%d-%lld%c", &part, &off, &tail) == 2 &&
        part == s->partition && off >= -1 && off + 1 >= s->next_offset) {
        /* The client is at or ahead of our live position (another gateway
         * may be ahead of us): nothing to catch up, nothing to repeat. */
        s->next_offset = off + 1;
    } else if (p->last_event_id[0] &&
        sscanf(p->last_event_id, "%d-%lld%c", &part, &off, &tail) == 2 &&
        part == s->partition && off >= -1 && off + 1 < s->next_offset) {
        int64_t live = s->next_offset;
        s->next_offset = off + 1;
        s->catching_up = true;
        if (kchat__gw_catchup_start(gw, s->id, s->user, s->partition, off + 1, live) != KCHAT_OK) {
            free(s);
            reply_error(gw, req, GW_ROUTE_events, 503, "UNAVAILABLE", "Cannot resume now.",
                        p->started);
            return;
        }
    }
    s->next = gw->streams;
    if (gw->streams)
        gw->streams->prev = s;
    gw->streams = s;
    gw->n_streams++;
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
        if (bev != NULL && bufferevent_getfd(bev) >= 0)
            setsockopt(bufferevent_getfd(bev), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    }
    evhttp_send_reply_start(req, 200, "OK");
    count(gw, GW_ROUTE_events, 200, p->started);
    if (evcon == NULL) { /* the client is gone already */
        s->evcon = NULL;
        stream_close(gw, s);
        return;
    }
    evhttp_connection_set_closecb(evcon, stream_closed_cb, s);
    bufferevent_set_timeouts(evhttp_connection_get_bufferevent(evcon), NULL, &wt);
    if ((b = evbuffer_new()) != NULL) {
        evbuffer_add_printf(b, "retry: 2000\n: stream open\n\n");
        stream_write(gw, s, b);
        evbuffer_free(b);
    }
}

/* ---- items from the Kafka threads ---- */

static void handle_response(kchat_gateway *gw, gw_item *it)
{
    gw_pending *p = pending_find(gw, it->cid);
    json_t *v = NULL, *code, *sid;
    struct evhttp_request *req;
    int status, success_status;
    bool ok;

    if (p == NULL)
        return; /* another gateway's, a repeat, or too late */
    req = p->req;
    if (kchat_codec_decode(KCHAT_FMT_JSON, it->data, it->len, &v) != KCHAT_OK ||
        !json_is_object(v)) {
        gw_pending copy = *p;
        pending_release(gw, p);
        json_decref(v);
        reply_error(gw, req, copy.route, 500, "INTERNAL", "The backend's answer does not decode.",
                    copy.started);
        return;
    }
    code = json_object_get(v, "errorCode");
    ok = json_is_true(json_object_get(v, "isSuccess")) &&
         (!json_is_string(code) || json_string_value(code)[0] == '\0');
    success_status = (p->op == KCHAT_OP_USER_ADD || p->op == KCHAT_OP_ADD_ROOM ||
                      p->op == KCHAT_OP_ADD_CHAT) ? 201 : 200;
    status = ok ? success_status : wire_status(json_is_string(code) ? json_string_value(code) : "");
    if (!ok && p->op == KCHAT_OP_LOGIN && json_is_integer(json_object_get(v, "retryAfterMs"))) {
        /* A login refused because its user id is locked after too many
         * failures (docs/security.md): still 401 BAD_CREDENTIALS, as
         * PROTOCOL.md §8 maps it, with a Retry-After telling when to retry. */
        json_int_t ms = json_integer_value(json_object_get(v, "retryAfterMs"));
        char secs[24];
        snprintf(secs, sizeof(secs), "%lld", ms > 0 ? (long long)(ms + 999) / 1000 : 1LL);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", secs);
    }
    if (p->kind == GW_PEND_SSE) {
        gw_pending copy = *p;
        pending_release(gw, p);
        if (ok)
            stream_open(gw, &copy, req);
        else
            reply_json(gw, req, GW_ROUTE_events, status, v, copy.started);
        json_decref(v);
        return;
    }
    sid = json_object_get(v, "sessionId");
    if (p->op == KCHAT_OP_LOGIN && ok && json_is_string(sid))
        set_cookie(req, p->user, json_string_value(sid));
    json_object_del(v, "sessionId");
    if (p->op == KCHAT_OP_LOGOUT) {
        set_cookie(req, NULL, NULL);
        if (ok) { /* that session's streams end with it */
            gw_stream *s, *next;
            for (s = gw->streams; s; s = next) {
                next = s->next;
                if (!strcmp(s->session, p->session) && !strcmp(s->user, p->user))
                    stream_close(gw, s);
            }
        }
    }
    {
        gw_pending copy = *p;
        pending_release(gw, p);
        reply_json(gw, req, copy.route, status, v, copy.started);
    }
    json_decref(v);
}

void kchat__gw_handle_item(kchat_gateway *gw, gw_item *it)
{
    gw_stream *s, *next;
    gw_pending *p;

    switch (it->kind) {
    case GW_ITEM_RESPONSE:
        handle_response(gw, it);
        break;
    case GW_ITEM_DR_FAIL:
        if ((p = pending_find(gw, it->cid)) != NULL) {
            struct evhttp_request *req = p->req;
            gw_pending copy = *p;
            pending_release(gw, p);
            reply_error(gw, req, copy.route, 503, "UNAVAILABLE",
                        "Kafka did not take the request.", copy.started);
        }
        break;
    case GW_ITEM_EVENT:
        if (gw->events_next && it->partition < gw->event_partitions &&
            gw->events_next[it->partition] < it->offset + 1)
            gw->events_next[it->partition] = it->offset + 1;
        for (s = gw->streams; s; s = next) {
            next = s->next;
            if (strcmp(s->user, it->user) != 0)
                continue;
            if (s->catching_up)
                stream_hold(gw, s, it);
            else
                stream_deliver(gw, s, it);
        }
        break;
    case GW_ITEM_CATCHUP:
        if ((s = stream_by_id(gw, it->stream_id)) != NULL)
            stream_deliver(gw, s, it);
        break;
    case GW_ITEM_CATCHUP_DONE:
        if ((s = stream_by_id(gw, it->stream_id)) == NULL)
            break;
        if (!it->ok) { /* the browser resumes from what it has */
            stream_close(gw, s);
            break;
        }
        s->catching_up = false;
        {
            gw_item *h = s->held, *hn;
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
        break;
    }
    free(it->data);
    free(it);
}

void kchat__gw_tick(kchat_gateway *gw)
{
    double now = kchat__gw_now();
    gw_stream *s, *next;

    for (s = gw->streams; s; s = next) {
        next = s->next;
        if (now - s->last_write >= 10.0) {
            struct evbuffer *b = evbuffer_new();
            if (b == NULL)
                continue;
            evbuffer_add_printf(b, ": keepalive\n\n");
            stream_write(gw, s, b);
            evbuffer_free(b);
        }
    }
}

void kchat__gw_shutdown_http(kchat_gateway *gw)
{
    for (int i = 0; i < gw->cfg->max_pending; i++) {
        gw_pending *p = &gw->pending[i];
        if (p->req) {
            struct evhttp_request *req = p->req;
            gw_pending copy = *p;
            pending_release(gw, p);
            reply_error(gw, req, copy.route, 503, "UNAVAILABLE", "The gateway is stopping.",
                        copy.started);
        }
    }
    while (gw->streams)
        stream_close(gw, gw->streams);
}

/* ---- sending requests ---- */

static void send_request(kchat_gateway *gw, struct evhttp_request *req, int route, int kind,
                         kchat_op op, const char *user, const char *session, json_t *body,
                         double started)
{
    struct timeval tv = {gw->cfg->http_timeout_ms / 1000, (gw->cfg->http_timeout_ms % 1000) * 1000};
    gw_pending *p = NULL;
    char *buf = NULL;
    size_t len = 0;
    uint64_t rnd;
    rd_kafka_resp_err_t err;
    int slot = -1;

    if (!atomic_load(&gw->ready)) {
        reply_error(gw, req, route, 503, "UNAVAILABLE", "The gateway is not connected to Kafka yet.",
                    started);
        return;
    }
    if (gw->n_pending >= gw->cfg->max_pending) {
        reply_error(gw, req, route, 503, "UNAVAILABLE", "Too many requests are waiting.", started);
        return;
    }
    if (kchat_codec_encode(KCHAT_FMT_JSON, body, &buf, &len) != KCHAT_OK) {
        reply_error(gw, req, route, 400, "BAD_REQUEST", "The body cannot be encoded.", started);
        return;
    }
    if (len > KCHAT_MAX_VALUE) {
        free(buf);
        reply_error(gw, req, route, 413, "TOO_LARGE", "The request is too large.", started);
        return;
    }
    for (int i = 0; i < gw->cfg->max_pending; i++) {
        int j = (gw->pending_hint + i) % gw->cfg->max_pending;
        if (gw->pending[j].req == NULL) {
            slot = j;
            break;
        }
    }
    p = &gw->pending[slot];
    gw->pending_hint = (slot + 1) % gw->cfg->max_pending;
    randombytes_buf(&rnd, sizeof(rnd));
    snprintf(p->cid, sizeof(p->cid), "g%x-%x-%016" PRIx64, (unsigned)slot, (unsigned)p->gen, rnd);
    p->gw = gw;
    p->kind = kind;
    p->route = route;
    p->op = (int)op;
    p->started = started;
    snprintf(p->user, sizeof(p->user), "%s", user);
    snprintf(p->session, sizeof(p->session), "%s", session ? session : "");
    p->last_event_id[0] = '\0';
    if (kind == GW_PEND_SSE) {
        const char *lei = evhttp_find_header(evhttp_request_get_input_headers(req), "Last-Event-ID");
        if (lei)
            snprintf(p->last_event_id, sizeof(p->last_event_id), "%s", lei);
    }
    err = rd_kafka_producev(gw->producer, RD_KAFKA_V_TOPIC(kchat_op_request_topic(op)),
                            RD_KAFKA_V_KEY(user, strlen(user)),
                            RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                            RD_KAFKA_V_HEADER(KCHAT_HDR_CID, p->cid, -1),
                            RD_KAFKA_V_HEADER(KCHAT_HDR_SESSION, p->session, -1),
                            RD_KAFKA_V_HEADER(KCHAT_HDR_CTYPE, "application/json", -1),
                            RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        free(buf);
        reply_error(gw, req, route, 503, "UNAVAILABLE", rd_kafka_err2str(err), started);
        return;
    }
    p->req = req;
    gw->n_pending++;
    if ((p->timer = evtimer_new(gw->base, pending_timeout_cb, p)) != NULL)
        evtimer_add(p->timer, &tv);
}

/* ---- the API ---- */

static bool is_json_ctype(struct evhttp_request *req)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    size_t n = strlen("application/json");

    if (ct == NULL)
        return false;
    while (*ct == ' ')
        ct++;
    return !strncasecmp(ct, "application/json", n) &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* The request body as a JSON object; NULL after answering the request. */
static json_t *read_body(kchat_gateway *gw, struct evhttp_request *req, int route,
                         bool optional, double started)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    json_t *v = NULL;

    if (optional && len == 0)
        return json_object();
    if (!is_json_ctype(req)) {
        reply_error(gw, req, route, 415, "UNSUPPORTED_MEDIA_TYPE",
                    "The body must be application/json.", started);
        return NULL;
    }
    if (len > GW_MAX_BODY) {
        reply_error(gw, req, route, 413, "TOO_LARGE", "The body is over 64 KiB.", started);
        return NULL;
    }
    if (optional && len == 0)
        return json_object();
    if (kchat_codec_decode(KCHAT_FMT_JSON, evbuffer_pullup(in, -1), len, &v) != KCHAT_OK ||
        !json_is_object(v)) {
        json_decref(v);
        reply_error(gw, req, route, 400, "BAD_REQUEST", "The body must be a JSON object.", started);
        return NULL;
    }
    return v;
}

static bool query_int(const struct evkeyvalq *q, const char *name, json_t *body, bool *bad)
{
    const char *v = evhttp_find_header(q, name);
    char *end;
    long long n;

    if (v == NULL || v[0] == '\0')
        return false;
    errno = 0;
    n = strtoll(v, &end, 10);
    if (errno || *end != '\0') {
        *bad = true;
        return false;
    }
    json_object_set_new(body, name, json_integer(n));
    return true;
}

static void handle_api(kchat_gateway *gw, struct evhttp_request *req, const char *path,
                       double started)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    bool get = cmd == EVHTTP_REQ_GET, post = cmd == EVHTTP_REQ_POST, put = cmd == EVHTTP_REQ_PUT;
    char user[72] = "", session[136] = "", room[72] = "";
    bool authed = session_from_cookie(req, user, sizeof(user), session, sizeof(session));
    int route = GW_ROUTE_not_found, kind = GW_PEND_API;
    kchat_op op = KCHAT_OP__COUNT;
    bool needs_auth = true, has_body = false, body_optional = false;
    bool method_ok = false;
    json_t *body = NULL;

    if (!strcmp(path, "/api/users")) {
        route = GW_ROUTE_users, op = KCHAT_OP_USER_ADD, method_ok = post;
        needs_auth = false, has_body = true;
    } else if (!strcmp(path, "/api/login")) {
        route = GW_ROUTE_login, op = KCHAT_OP_LOGIN, method_ok = post;
        needs_auth = false, has_body = true;
    } else if (!strcmp(path, "/api/logout")) {
        route = GW_ROUTE_logout, op = KCHAT_OP_LOGOUT, method_ok = post;
        has_body = true, body_optional = true;
    } else if (!strcmp(path, "/api/status")) {
        route = GW_ROUTE_status, op = KCHAT_OP_STATUS, method_ok = put, has_body = true;
    } else if (!strcmp(path, "/api/friends")) {
        route = get ? GW_ROUTE_friends_get : GW_ROUTE_friends_post;
        op = get ? KCHAT_OP_SEARCH_FRIEND : KCHAT_OP_ADD_FRIEND;
        method_ok = get || post, has_body = post;
    } else if (!strcmp(path, "/api/rooms")) {
        route = get ? GW_ROUTE_rooms_get : GW_ROUTE_rooms_post;
        op = get ? KCHAT_OP_SEARCH_ROOM : KCHAT_OP_ADD_ROOM;
        method_ok = get || post, has_body = post;
    } else if (!strcmp(path, "/api/events")) {
        route = GW_ROUTE_events, op = KCHAT_OP_SEARCH_FRIEND, method_ok = get;
        kind = GW_PEND_SSE;
    } else if (!strncmp(path, "/api/rooms/", 11)) {
        const char *id = path + 11, *slash = strchr(id, '/');
        if (slash && !strcmp(slash, "/messages") && slash > id) {
            char *dec;
            size_t dlen = 0;
            char tmp[256];
            if ((size_t)(slash - id) < sizeof(tmp)) {
                memcpy(tmp, id, (size_t)(slash - id));
                tmp[slash - id] = '\0';
                if ((dec = evhttp_uridecode(tmp, 0, &dlen)) != NULL) {
                    if (kchat_valid_id(dec, dlen) && dlen < sizeof(room))
                        memcpy(room, dec, dlen + 1);
                    free(dec);
                }
            }
            route = get ? GW_ROUTE_messages_get : GW_ROUTE_messages_post;
            op = get ? KCHAT_OP_HISTORY : KCHAT_OP_ADD_CHAT;
            method_ok = get || post, has_body = post;
            if (room[0] == '\0' && method_ok) {
                reply_error(gw, req, route, 400, "BAD_REQUEST", "The room id is not valid.", started);
                return;
            }
        }
    }
    if (route == GW_ROUTE_not_found) {
        reply_error(gw, req, route, 404, "NOT_FOUND", "No such path.", started);
        return;
    }
    if (!method_ok) {
        const char *allow = route == GW_ROUTE_status ? "PUT"
                            : route == GW_ROUTE_events ? "GET"
                            : (route == GW_ROUTE_users || route == GW_ROUTE_login ||
                               route == GW_ROUTE_logout) ? "POST" : "GET, POST";
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
        reply_error(gw, req, route, 405, "METHOD_NOT_ALLOWED", "Method not allowed on this path.",
                    started);
        return;
    }
    if (has_body) {
        if ((body = read_body(gw, req, route, body_optional, started)) == NULL)
            return;
    } else {
        body = json_object();
    }
    if (needs_auth && !authed) {
        reply_error(gw, req, route, 401, "UNAUTHENTICATED", "Log in first.", started);
        goto out;
    }
    if (!needs_auth) {
        json_t *uid = json_object_get(body, "userId");
        if (!json_is_string(uid) || !kchat_valid_id(json_string_value(uid), json_string_length(uid))) {
            reply_error(gw, req, route, 400, "BAD_REQUEST",
                        "userId must be 1 to 64 characters of [A-Za-z0-9_.-].", started);
            goto out;
        }
        snprintf(user, sizeof(user), "%s", json_string_value(uid));
        session[0] = '\0';
    } else if (op == KCHAT_OP_ADD_CHAT) {
        json_object_del(body, "userId");
        json_object_set_new(body, "writerId", json_string(user));
        json_object_set_new(body, "roomId", json_string(room));
    } else {
        json_object_set_new(body, "userId", json_string(user));
        if (op == KCHAT_OP_HISTORY) {
            struct evkeyvalq q;
            const char *qs = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
            bool bad = false;
            json_object_set_new(body, "roomId", json_string(room));
            if (evhttp_parse_query_str(qs ? qs : "", &q) != 0)
                bad = true;
            query_int(&q, "beforeSeq", body, &bad);
            query_int(&q, "limit", body, &bad);
            evhttp_clear_headers(&q);
            if (bad) {
                reply_error(gw, req, route, 400, "BAD_REQUEST",
                            "beforeSeq and limit must be integers.", started);
                goto out;
            }
        }
    }
    if (kind == GW_PEND_SSE && stream_cap_check(gw, req, user, started) != 0)
        goto out;
    send_request(gw, req, route, kind, op, user, session, body, started);
out:
    json_decref(body);
}

/* ---- static files ---- */

static const char *content_type(const char *path)
{
    static const struct { const char *ext, *type; } types[] = {
        {".html", "text/html; charset=utf-8"},  {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},    {".svg", "image/svg+xml"},
        {".png", "image/png"},                  {".ico", "image/x-icon"},
        {".json", "application/json"},          {".txt", "text/plain; charset=utf-8"},
        {".map", "application/json"},           {".webmanifest", "application/manifest+json"},
    };
    const char *dot = strrchr(path, '.');

    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (!strcasecmp(dot, types[i].ext))
                return types[i].type;
    return "application/octet-stream";
}

static void handle_static(kchat_gateway *gw, struct evhttp_request *req, const char *raw,
                          double started)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    char *path;
    size_t len = 0;
    char full[4096];
    struct stat st;
    struct evbuffer *b;
    int fd;
    bool safe = true;

    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        reply_error(gw, req, GW_ROUTE_static, 405, "METHOD_NOT_ALLOWED", "Only GET here.", started);
        return;
    }
    if ((path = evhttp_uridecode(raw, 0, &len)) == NULL) {
        reply_error(gw, req, GW_ROUTE_static, 400, "BAD_REQUEST", "Bad path.", started);
        return;
    }
    /* One leading '/', no NUL, no backslash, no empty, '.' or '..' segment,
     * no hidden file. */
    if (strlen(path) != len || path[0] != '/' || strchr(path, '\\'))
        safe = false;
    for (const char *seg = path + 1; safe && *seg; ) {
        const char *e = strchr(seg, '/');
        size_t n = e ? (size_t)(e - seg) : strlen(seg);
        if (n == 0 || seg[0] == '.')
            safe = false;
        seg += n + (e ? 1 : 0);
        if (e && *seg == '\0')
            safe = false;
    }
    if (!safe) {
        free(path);
        reply_error(gw, req, GW_ROUTE_static, 404, "NOT_FOUND", "No such file.", started);
        return;
    }
    snprintf(full, sizeof(full), "%s%s", gw->cfg->web_dir, strcmp(path, "/") ? path : "/index.html");
    free(path);
    fd = open(full, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        reply_error(gw, req, GW_ROUTE_static, 404, "NOT_FOUND", "No such file.", started);
        return;
    }
    if ((b = evbuffer_new()) == NULL || evbuffer_add_file(b, fd, 0, st.st_size) != 0) {
        if (b)
            evbuffer_free(b);
        else
            close(fd);
        reply_error(gw, req, GW_ROUTE_static, 500, "INTERNAL", "Cannot read the file.", started);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-cache");
    reply(gw, req, GW_ROUTE_static, 200, content_type(full), b, started);
    evbuffer_free(b);
}

/* ---- health and metrics ---- */

static void handle_metrics(kchat_gateway *gw, struct evhttp_request *req, double started)
{
    struct evbuffer *b = evbuffer_new();
    uint64_t cum = 0;

    if (b == NULL)
        return;
    evbuffer_add_printf(b, "# HELP kchat_gateway_http_requests_total HTTP requests answered, "
                           "by route and status.\n# TYPE kchat_gateway_http_requests_total counter\n");
    for (int r = 0; r < GW_ROUTE__COUNT; r++)
        for (int i = 0; i < GW_N_STATUS; i++)
            if (gw->m_requests[r][i])
            {
                char code[16];
                if (i == GW_N_STATUS - 1)
                    snprintf(code, sizeof(code), "other");
                else
                    snprintf(code, sizeof(code), "%d", status_codes[i]);
                evbuffer_add_printf(b, "kchat_gateway_http_requests_total{route=\"%s\",status=\"%s\"} %" PRIu64 "\n",
                                    route_names[r], code, gw->m_requests[r][i]);
            }
    evbuffer_add_printf(b, "# HELP kchat_gateway_http_request_duration_seconds Time from request "
                           "to answer (event streams: to the stream's start).\n"
                           "# TYPE kchat_gateway_http_request_duration_seconds histogram\n");
    for (int i = 0; i < GW_N_BUCKETS; i++) {
        cum += gw->m_latency[i];
        if (i < GW_N_BUCKETS - 1)
            evbuffer_add_printf(b, "kchat_gateway_http_request_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                                buckets[i], cum);
        else
            evbuffer_add_printf(b, "kchat_gateway_http_request_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    evbuffer_add_printf(b, "kchat_gateway_http_request_duration_seconds_sum %.6f\n"
                           "kchat_gateway_http_request_duration_seconds_count %" PRIu64 "\n",
                        gw->m_latency_sum, gw->m_latency_count);
    evbuffer_add_printf(b, "# HELP kchat_gateway_sse_streams Open event streams.\n"
                           "# TYPE kchat_gateway_sse_streams gauge\nkchat_gateway_sse_streams %d\n",
                        gw->n_streams);
    evbuffer_add_printf(b, "# HELP kchat_gateway_pending_replies Calls waiting for the backend.\n"
                           "# TYPE kchat_gateway_pending_replies gauge\nkchat_gateway_pending_replies %d\n",
                        gw->n_pending);
    evbuffer_add_printf(b, "# HELP kchat_gateway_events_delivered_total Events written to streams.\n"
                           "# TYPE kchat_gateway_events_delivered_total counter\n"
                           "kchat_gateway_events_delivered_total %" PRIu64 "\n", gw->m_events);
    evbuffer_add_printf(b, "# HELP kchat_gateway_sse_overflows_total Streams closed because their "
                           "client fell behind.\n# TYPE kchat_gateway_sse_overflows_total counter\n"
                           "kchat_gateway_sse_overflows_total %" PRIu64 "\n", gw->m_sse_overflow);
    evbuffer_add_printf(b, "# HELP kchat_gateway_timeouts_total Calls the backend did not answer "
                           "in time.\n# TYPE kchat_gateway_timeouts_total counter\n"
                           "kchat_gateway_timeouts_total %" PRIu64 "\n", gw->m_timeouts);
    evbuffer_add_printf(b, "# HELP kchat_gateway_request_deadline_total Connections closed "
                           "because their request did not arrive in time.\n"
                           "# TYPE kchat_gateway_request_deadline_total counter\n"
                           "kchat_gateway_request_deadline_total %" PRIu64 "\n",
                        gw->m_request_deadline);
    evbuffer_add_printf(b, "# HELP kchat_gateway_ready 1 once Kafka is reachable and the topics exist.\n"
                           "# TYPE kchat_gateway_ready gauge\nkchat_gateway_ready %d\n",
                        atomic_load(&gw->ready) ? 1 : 0);
    if (atomic_load(&gw->ready)) {
        /* Lag from librdkafka's cached high watermarks: no broker round trip. */
        rd_kafka_topic_partition_list_t *parts = NULL;
        int64_t lag = 0;
        if (rd_kafka_assignment(gw->consumer, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            rd_kafka_position(gw->consumer, parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            for (int i = 0; i < parts->cnt; i++) {
                int64_t lo = 0, hi = 0;
                if (parts->elems[i].offset >= 0 &&
                    rd_kafka_get_watermark_offsets(gw->consumer, parts->elems[i].topic,
                                                   parts->elems[i].partition, &lo, &hi) ==
                        RD_KAFKA_RESP_ERR_NO_ERROR && hi > parts->elems[i].offset)
                    lag += hi - parts->elems[i].offset;
            }
            evbuffer_add_printf(b, "# HELP kchat_gateway_consumer_lag Records of the response "
                                   "topics and chat-events not read yet (cached watermarks).\n"
                                   "# TYPE kchat_gateway_consumer_lag gauge\n"
                                   "kchat_gateway_consumer_lag %" PRId64 "\n", lag);
        }
        if (parts)
            rd_kafka_topic_partition_list_destroy(parts);
    }
    {
        kchat_metrics_fn fn = atomic_load(&gw->metrics_fn);
        char *text = NULL;
        size_t len = 0;
        FILE *out;
        if (fn != NULL && (out = open_memstream(&text, &len)) != NULL) {
            fn(atomic_load(&gw->metrics_arg), out);
            fclose(out);
            evbuffer_add(b, text, len);
            free(text);
        }
    }
    reply(gw, req, GW_ROUTE_metrics, 200, "text/plain; version=0.0.4; charset=utf-8", b, started);
    evbuffer_free(b);
}

static void gencb(struct evhttp_request *req, void *arg)
{
    kchat_gateway *gw = arg;
    double started = kchat__gw_now();
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;

    kchat__gw_deadline_seen(gw, req);
    if (path == NULL || path[0] == '\0')
        path = "/";
    if (!strncmp(path, "/api/", 5) || !strcmp(path, "/api")) {
        handle_api(gw, req, path, started);
    } else if (!strcmp(path, "/healthz")) {
        json_t *v = json_pack("{s:s}", "status", "ok");
        reply_json(gw, req, GW_ROUTE_healthz, 200, v, started);
        json_decref(v);
    } else if (!strcmp(path, "/readyz")) {
        bool ready = atomic_load(&gw->ready);
        json_t *v = ready ? json_pack("{s:s}", "status", "ready")
                          : json_pack("{s:s,s:s,s:s}", "status", "starting", "errorCode",
                                      "UNAVAILABLE", "errorMessage",
                                      "Kafka is not reachable or the topics do not exist yet.");
        reply_json(gw, req, GW_ROUTE_readyz, ready ? 200 : 503, v, started);
        json_decref(v);
    } else if (!strcmp(path, "/metrics")) {
        handle_metrics(gw, req, started);
    } else {
        handle_static(gw, req, path, started);
    }
}

void kchat__gw_http_setup(kchat_gateway *gw)
{
    /* Bodies up to 1 MiB are read so that anything over 64 KiB up to there
     * gets the JSON 413 of PROTOCOL.md; libevent 2.1 refuses anything larger
     * itself, also with 413 but with its own HTML body (it has no hook to
     * change that), before reading it. */
    evhttp_set_max_body_size(gw->http, GW_READ_BODY_MAX);
    evhttp_set_max_headers_size(gw->http, 16 * 1024);
    evhttp_set_timeout(gw->http, gw->cfg->http_idle_timeout);
    evhttp_set_allowed_methods(gw->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                             EVHTTP_REQ_HEAD | EVHTTP_REQ_DELETE);
    evhttp_set_default_content_type(gw->http, "application/json");
    evhttp_set_gencb(gw->http, gencb, gw);
    kchat__gw_deadline_setup(gw);
}
