/*
 * Fuzz harness for the gateway's HTTP side (src/gateway/: http.c, api.c,
 * pending.c, sse.c, static.c, metrics.c and deadline.c, through libevent's
 * evhttp): every input is the byte stream a
 * client sends on one connection (request lines, headers, bodies, several
 * pipelined requests, anything at all).
 *
 * The gateway runs in-process, with no network and no Kafka broker:
 *  - its real evhttp server with its real callbacks (kchat__gw_http_setup())
 *    on an event_base that this harness drives itself, one non-blocking
 *    pass at a time;
 *  - the connection comes through a listening AF_UNIX socket in Linux's
 *    abstract namespace (no file, no port) handed to evhttp with
 *    evhttp_bind_listener(), the way the gateway's own TCP listener hands
 *    it connections: libevent 2.1 has no public call that takes an
 *    already-connected socket;
 *  - the producing side is a real librdkafka producer without
 *    bootstrap.servers: kchat__gw_pending_send() produces as usual, librdkafka queues
 *    the record and never connects; the harness purges the queue after each
 *    input. A consumer made the same way serves GET /metrics;
 *  - the backend is played by the harness: whenever the connection is idle
 *    with calls waiting in the pending table, it hands the loop what the
 *    Kafka thread would (kchat__gw_handle_item()): a response record
 *    (success or an error), an undecodable one, a failed delivery, or the
 *    call's timeout, chosen from a hash of the input so that an input
 *    always replays the same way, or by the request's `X-Fuzz-Answer`
 *    header (answer_pending()). Every event stream that opens gets an
 *    event, a repeat of it and an event with a bad type; then the streams
 *    end as at a stop (kchat__gw_shutdown_http()). Only when nothing is
 *    waiting does the client shut down its write side, so pipelined
 *    requests are all served.
 *
 * The seam: kchat_gateway_start() binds a TCP port and starts the loop and
 * Kafka threads, so setup() fills a struct kchat_gateway (gateway_int.h)
 * itself, as kchat_gateway_start() does, marks it ready and starts no
 * thread. Nothing in src/ exists for the harness. A field that the HTTP side
 * comes to need must be set in setup() too. Not covered: the catch-up of a
 * resumed stream (it needs a broker): the live position of every partition
 * is 0 at each input, so a Last-Event-ID is always "at or ahead".
 *
 * Checked after each input, besides "no crash, no leak, no undefined
 * behaviour":
 *  - the server closed the connection, with no call pending, no stream
 *    open and no connection left on the request-deadline list;
 *  - what it sent is a sequence of responses: a status line "HTTP/x.y NNN
 *    reason" (libevent repeats the request's version) with a status of 100
 *    to 599, "Name: value" header lines, a body delimited by
 *    Content-Length, by chunks, or by the end of the connection;
 *  - a body labelled application/json is one JSON object, without
 *    `sessionId` (PROTOCOL.md section 8: the cookie only); at 400 and above
 *    it carries a non-empty errorCode and an errorMessage, below 400 no
 *    errorCode but "";
 *  - every Set-Cookie is the kchat_session cookie, HttpOnly, SameSite=Strict,
 *    Path=/, or the login guard's kchat_device cookie (32 hex digits,
 *    HttpOnly, SameSite=Strict, Path=/api/login, Max-Age of a year);
 *  - in an event stream, every event has an `id: P-OFFSET` (offsets rising,
 *    so nothing is repeated), an `event:` of [A-Za-z0-9_-], and `data:` that
 *    is one JSON object.
 *
 * Built with libFuzzer (clang -fsanitize=fuzzer -DKCHAT_LIBFUZZER, `make
 * fuzz`) or, with gcc, linked to replay_main.c (`make check`). Run it from
 * the repository root: static files are served from ./web. Seeds:
 * tests/fuzz/corpus/http/. KCHAT_FUZZ_TRACE=1 prints what the server
 * answered to each input.
 */
#include "gateway/gateway_int.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/listener.h>
#include <jansson.h>
#include <sodium.h>

#include "fuzz/codec_checks.h"
#include "kchat/codec.h"
#include "kchat/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define IDLE_PASSES 3        /* loop passes without I/O before the client acts */
#define MAX_PASSES 1000000   /* a connection still open after this many hangs */
#define STUCK_PASSES 64      /* idle passes with nothing left to do: a hang */
#define OUT_CHECK_MAX (8u << 20) /* answers beyond this are read, not checked */

/* ---- The gateway, set up once ------------------------------------------- */

static struct {
    kchat_config cfg;
    kchat_gateway *gw;
    struct sockaddr_un addr;
    socklen_t addr_len;
} fz;

/* A librdkafka client without bootstrap.servers: it never connects. */
static rd_kafka_t *offline_client(rd_kafka_type_t type)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    FUZZ_CHECK(rd_kafka_conf_set(conf, "client.id", "kchat-fuzz-http", errstr,
                                 sizeof errstr) == RD_KAFKA_CONF_OK);
    /* "No bootstrap.servers configured" is a warning (level 4). */
    FUZZ_CHECK(rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr) ==
               RD_KAFKA_CONF_OK);
    if (type == RD_KAFKA_PRODUCER) {
        /* Queued records never time out: each input purges them. */
        FUZZ_CHECK(rd_kafka_conf_set(conf, "message.timeout.ms", "0", errstr, sizeof errstr) ==
                   RD_KAFKA_CONF_OK);
    } else {
        FUZZ_CHECK(rd_kafka_conf_set(conf, "group.id", "kchat-fuzz-http", errstr,
                                     sizeof errstr) == RD_KAFKA_CONF_OK);
        FUZZ_CHECK(rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr,
                                     sizeof errstr) == RD_KAFKA_CONF_OK);
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        fprintf(stderr, "fuzz_http: rd_kafka_new: %s\n", errstr);
        abort();
    }
    return rk;
}

/* What kchat_gateway_start() does, less the TCP listener and the threads. */
static void setup(void)
{
    kchat_gateway *gw;

    signal(SIGPIPE, SIG_IGN); /* as src/main.c does */
    FUZZ_CHECK(sodium_init() >= 0);
    FUZZ_CHECK(kchat_config_init(&fz.cfg) == KCHAT_OK);
    FUZZ_CHECK((gw = calloc(1, sizeof *gw)) != NULL);
    gw->cfg = &fz.cfg;
    gw->sse_max_total = fz.cfg.sse_max_total;
    pthread_mutex_init(&gw->lock, NULL);
    pthread_mutex_init(&gw->cu_lock, NULL);
    pthread_cond_init(&gw->ready_cond, NULL);
    gw->next_stream_id = 1;
    FUZZ_CHECK(kchat__gw_catchup_init(gw) == KCHAT_OK);
    FUZZ_CHECK(kchat__gw_streams_init(gw) == KCHAT_OK);
    FUZZ_CHECK((gw->brokers = strdup("")) != NULL);
    FUZZ_CHECK((gw->pending = calloc((size_t)fz.cfg.max_pending, sizeof *gw->pending)) != NULL);
    {
        char err[256];
        FUZZ_CHECK(kchat__gw_guard_new(&fz.cfg, &gw->guard, err, sizeof(err)) == KCHAT_OK);
    }
    FUZZ_CHECK((gw->base = event_base_new()) != NULL);
    FUZZ_CHECK((gw->http = evhttp_new(gw->base)) != NULL);
    kchat__gw_http_setup(gw);
    gw->event_partitions = fz.cfg.partitions;
    FUZZ_CHECK((gw->events_next = calloc((size_t)gw->event_partitions,
                                         sizeof *gw->events_next)) != NULL);
    gw->producer = offline_client(RD_KAFKA_PRODUCER);
    gw->consumer = offline_client(RD_KAFKA_CONSUMER);
    atomic_store(&gw->ready, true);

    /* The listener: "\0kchat-fuzz-http-PID" in the abstract namespace. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(fd >= 0);
    fz.addr.sun_family = AF_UNIX;
    int n = snprintf(fz.addr.sun_path + 1, sizeof fz.addr.sun_path - 1, "kchat-fuzz-http-%ld",
                     (long)getpid());
    fz.addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    FUZZ_CHECK(bind(fd, (struct sockaddr *)&fz.addr, fz.addr_len) == 0);
    FUZZ_CHECK(listen(fd, 16) == 0);
    struct evconnlistener *lev = evconnlistener_new(gw->base, NULL, NULL,
                                                    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                                    -1, fd);
    FUZZ_CHECK(lev != NULL);
    FUZZ_CHECK(evhttp_bind_listener(gw->http, lev) != NULL);
    fz.gw = gw;
}

/* ---- The backend's side -------------------------------------------------- */

/* FNV-1a: which answers an input gets. */
static uint64_t input_hash(const uint8_t *data, size_t size)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * UINT64_C(0x100000001b3);
    return h;
}

static gw_item *new_item(int kind, const char *data)
{
    gw_item *it = calloc(1, sizeof *it);
    FUZZ_CHECK(it != NULL);
    it->kind = kind;
    if (data) {
        it->len = strlen(data);
        FUZZ_CHECK((it->data = malloc(it->len + 1)) != NULL);
        memcpy(it->data, data, it->len + 1);
    }
    return it;
}

/* A success body for op, as the backend would send it. */
static const char *success_body(int op, int kind)
{
    if (kind == GW_PEND_SSE || op == KCHAT_OP_SEARCH_FRIEND)
        return "{\"isSuccess\":true,\"errorCode\":\"\",\"friends\":[{\"userId\":\"bob\"}]}";
    switch (op) {
    case KCHAT_OP_LOGIN:
        return "{\"isSuccess\":true,\"errorCode\":\"\",\"userId\":\"alice\","
               "\"sessionId\":\"s3ss10n-Fz_0\"}";
    case KCHAT_OP_SEARCH_ROOM:
        return "{\"isSuccess\":true,\"errorCode\":\"\",\"rooms\":[{\"roomId\":\"r-1\"}]}";
    case KCHAT_OP_HISTORY:
        return "{\"isSuccess\":true,\"errorCode\":\"\",\"messages\":[{\"seq\":1,"
               "\"message\":\"hi \\u00e9\"}]}";
    case KCHAT_OP_ADD_ROOM:
        return "{\"isSuccess\":true,\"errorCode\":\"\",\"roomId\":\"r-2\"}";
    case KCHAT_OP_ADD_CHAT:
        return "{\"isSuccess\":true,\"errorCode\":\"\",\"seq\":7}";
    default:
        return "{\"isSuccess\":true,\"errorCode\":\"\"}";
    }
}

/* Answers one waiting call; choice picks how (see answer_pending()). */
static void answer(kchat_gateway *gw, gw_pending *p, uint64_t choice)
{
    static const char *const codes[] = {
        "BAD_REQUEST", "UNAUTHENTICATED", "BAD_CREDENTIALS", "NOT_A_FRIEND", "NOT_A_MEMBER",
        "USER_NOT_FOUND", "ROOM_NOT_FOUND", "ALREADY_EXISTS", "TOO_LARGE", "INTERNAL",
        "SOME_NEW_CODE",
    };
    enum { N_CODES = sizeof codes / sizeof codes[0] };
    uint64_t detail = choice / 6;
    char body[256];
    gw_item *it;

    switch (choice % 6) {
    case 0:
    case 1:
        it = new_item(GW_ITEM_RESPONSE, success_body(p->op, p->kind));
        break;
    case 2:
        snprintf(body, sizeof body,
                 "{\"isSuccess\":false,\"errorCode\":\"%s\",\"errorMessage\":\"No.\"%s}",
                 codes[detail % N_CODES],
                 detail / N_CODES % 2 ? ",\"retryAfterMs\":1500" : "");
        it = new_item(GW_ITEM_RESPONSE, body);
        break;
    case 3:
        it = new_item(GW_ITEM_RESPONSE, detail % 2 ? "[1,2]" : "\x01not json");
        break;
    case 4:
        it = new_item(GW_ITEM_DR_FAIL, NULL);
        break;
    default: /* the call's own timer fires */
        if (p->timer != NULL) {
            event_active(p->timer, EV_TIMEOUT, 1);
            return;
        }
        it = new_item(GW_ITEM_DR_FAIL, NULL);
        break;
    }
    it->op = p->op;
    snprintf(it->cid, sizeof it->cid, "%s", p->cid);
    kchat__gw_handle_item(gw, it);
}

/*
 * Answers every waiting call; false if there was none. How a call is
 * answered: a request header `X-Fuzz-Answer: N` (read by this harness
 * only, so seeds can ask for a path) or else the input's hash picks N, and
 *   N % 6 = 0, 1: success;  2: error code number N / 6 % 11 of the list in
 *   answer(), with retryAfterMs when N / 66 is odd;  3: a body that is not
 *   a JSON object;  4: failed delivery;  5: the call's timeout.
 */
static bool answer_pending(kchat_gateway *gw, uint64_t seed, uint64_t *k)
{
    bool any = false;

    for (int i = 0; i < gw->cfg->max_pending && gw->n_pending > 0; i++) {
        gw_pending *p = &gw->pending[i];
        uint64_t choice;
        const char *want;
        if (p->req == NULL)
            continue;
        any = true;
        /* Counted per call, not per slot: which slot a call gets depends on
         * the inputs before it. */
        choice = seed + (*k)++ * UINT64_C(0x9e3779b97f4a7c15);
        want = evhttp_find_header(evhttp_request_get_input_headers(p->req), "X-Fuzz-Answer");
        if (want != NULL)
            choice = strtoull(want, NULL, 10);
        answer(gw, p, choice);
    }
    return any;
}

/* One chat-events record for a stream's user. */
static void feed_event(kchat_gateway *gw, const gw_stream *s, int64_t offset, const char *type)
{
    gw_item *it = new_item(GW_ITEM_EVENT, "{\"type\":\"chat\",\"roomId\":\"r-1\",\"seq\":1,"
                                          "\"message\":\"hello \\u00e9\"}");
    snprintf(it->user, sizeof it->user, "%s", s->user);
    snprintf(it->type, sizeof it->type, "%s", type);
    it->partition = s->partition;
    it->offset = offset;
    kchat__gw_handle_item(gw, it);
}

static gw_stream *stream_find(kchat_gateway *gw, uint64_t id)
{
    gw_stream *s = gw->streams;
    while (s && s->id != id)
        s = s->next;
    return s;
}

/* Every stream opened since the last call gets an event, its repeat (which
 * must not be delivered) and one with a type unfit for an `event:` line;
 * false if there was no new stream. */
static bool feed_streams(kchat_gateway *gw, uint64_t *fed_up_to)
{
    uint64_t ids[16];
    size_t n = 0;

    for (gw_stream *s = gw->streams; s && n < sizeof ids / sizeof ids[0]; s = s->next)
        if (s->id > *fed_up_to)
            ids[n++] = s->id;
    for (size_t i = 0; i < n; i++) {
        gw_stream *s = stream_find(gw, ids[i]);
        int64_t at = s->next_offset;
        /* A delivery may end the stream (overflow): look it up each time. */
        feed_event(gw, s, at, "chat");
        if ((s = stream_find(gw, ids[i])) != NULL)
            feed_event(gw, s, at, "chat");
        if ((s = stream_find(gw, ids[i])) != NULL)
            feed_event(gw, s, at + 1, "x\ny: z");
        if (ids[i] > *fed_up_to)
            *fed_up_to = ids[i];
    }
    return n > 0;
}

/* ---- The client's side --------------------------------------------------- */

typedef struct output {
    char *buf;
    size_t len, cap;
    bool too_big;   /* more than OUT_CHECK_MAX: the rest is read, not kept */
} output;

static void output_add(output *o, const char *b, size_t n)
{
    if (n == 0)
        return;
    if (o->too_big || n > OUT_CHECK_MAX - o->len) {
        o->too_big = true;
        return;
    }
    if (o->len + n > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->len + n)
            cap *= 2;
        FUZZ_CHECK((o->buf = realloc(o->buf, cap)) != NULL);
        o->cap = cap;
    }
    memcpy(o->buf + o->len, b, n);
    o->len += n;
}

/* Runs one connection: writes the input, plays the backend, and reads the
 * answers into out until the server closes the connection. */
static void drive(kchat_gateway *gw, int fd, const uint8_t *data, size_t size, output *out)
{
    uint64_t seed = input_hash(data, size), k = 0, fed_up_to = 0;
    size_t written = 0;
    bool write_done = false, shut = false, closed = false;
    int idle = 0, stuck = 0;

    for (long pass = 0; !closed; pass++) {
        bool moved = false;
        char buf[16384];
        ssize_t n;

        FUZZ_CHECK(pass < MAX_PASSES); /* the server is busy for ever */
        event_base_loop(gw->base, EVLOOP_NONBLOCK);
        while (!write_done && written < size) {
            n = write(fd, data + written, size - written);
            if (n > 0) {
                written += (size_t)n;
                moved = true;
            } else {
                /* EAGAIN: the server is not reading now; anything else:
                 * it closed, and will be read as closed below. */
                if (n < 0 && errno != EAGAIN && errno != EINTR)
                    write_done = true;
                break;
            }
        }
        if (written == size)
            write_done = true;
        while ((n = read(fd, buf, sizeof buf)) > 0) {
            output_add(out, buf, (size_t)n);
            moved = true;
        }
        /* ECONNRESET: the server closed with unread input (AF_UNIX). */
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            closed = true;
        if (moved || closed || ++idle < IDLE_PASSES) {
            if (moved)
                idle = stuck = 0;
            continue;
        }
        idle = 0;
        if (answer_pending(gw, seed, &k) || feed_streams(gw, &fed_up_to))
            continue;
        if (gw->streams) {
            kchat__gw_shutdown_http(gw);
            continue;
        }
        if (!shut) {
            /* Nothing waits: the client is done (or the server stopped
             * reading the rest of its input). */
            shutdown(fd, SHUT_WR);
            shut = write_done = true;
            continue;
        }
        FUZZ_CHECK(++stuck < STUCK_PASSES); /* neither closed nor busy */
    }

    /* Calls still waiting belong to a connection that failed under them:
     * their answers free them. */
    if (gw->n_pending > 0 || gw->streams)
        kchat__gw_shutdown_http(gw);
    for (int i = 0; i < IDLE_PASSES; i++)
        event_base_loop(gw->base, EVLOOP_NONBLOCK);
    FUZZ_CHECK(gw->n_pending == 0);
    FUZZ_CHECK(gw->streams == NULL && gw->n_streams == 0);
    /* The deadline timer holds a reference on the connection's bufferevent
     * for http-request-timeout seconds: let it go now. */
    kchat__gw_deadline_release(gw);
    FUZZ_CHECK(gw->conns == NULL);
}

/* ---- Checking the answers ------------------------------------------------ */

/* The next CRLF-terminated line of [*p, end): its start and length, *p moved
 * past it; false if there is no complete line. */
static bool next_line(const char **p, const char *end, const char **line, size_t *len)
{
    for (const char *q = *p; q + 1 < end; q++)
        if (q[0] == '\r' && q[1] == '\n') {
            *line = *p;
            *len = (size_t)(q - *p);
            *p = q + 2;
            return true;
        }
    return false;
}

static bool starts_with_ci(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && strncasecmp(s, prefix, n) == 0;
}

static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A JSON body: one object; errorCode as the status says; no sessionId. */
static void check_json_body(int status, const char *body, size_t len)
{
    json_t *v = NULL;

    FUZZ_CHECK(kchat_codec_decode(KCHAT_FMT_JSON, body, len, &v) == KCHAT_OK);
    FUZZ_CHECK(json_is_object(v));
    FUZZ_CHECK(json_object_get(v, "sessionId") == NULL);
    json_t *code = json_object_get(v, "errorCode");
    if (status >= 400) {
        FUZZ_CHECK(json_is_string(code) && json_string_length(code) > 0);
        FUZZ_CHECK(json_is_string(json_object_get(v, "errorMessage")));
    } else {
        FUZZ_CHECK(code == NULL || (json_is_string(code) && json_string_length(code) == 0));
    }
    json_decref(v);
}

/* An event stream's text: events of id, event and data lines. */
static void check_event_stream(const char *body, size_t len)
{
    const char *p = body, *end = body + len;
    long long last_offset = -2;
    int last_part = -1;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n > 6 && !strncmp(p, "data: ", 6)) {
            json_t *v = NULL;
            FUZZ_CHECK(kchat_codec_decode(KCHAT_FMT_JSON, p + 6, n - 6, &v) == KCHAT_OK);
            FUZZ_CHECK(json_is_object(v));
            json_decref(v);
        } else if (n > 4 && !strncmp(p, "id: ", 4)) {
            char id[48];
            int part;
            long long off;
            char tail;
            FUZZ_CHECK(n - 4 < sizeof id);
            memcpy(id, p + 4, n - 4);
            id[n - 4] = '\0';
            FUZZ_CHECK(sscanf(id, "%d-%lld%c", &part, &off, &tail) == 2);
            FUZZ_CHECK(last_part < 0 || part == last_part);
            FUZZ_CHECK(off > last_offset); /* nothing repeated */
            last_part = part;
            last_offset = off;
        } else if (n > 7 && !strncmp(p, "event: ", 7)) {
            for (size_t i = 7; i < n; i++)
                FUZZ_CHECK((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') ||
                           (p[i] >= '0' && p[i] <= '9') || p[i] == '_' || p[i] == '-');
        }
        p += n + (nl ? 1 : 0);
    }
}

/* Removes the chunked framing of [p, end) into *body; returns the bytes
 * the framing took, or 0 if it is incomplete. */
static size_t dechunk(const char *p, const char *end, output *body)
{
    const char *start = p;
    for (;;) {
        const char *line;
        size_t len, size = 0;
        if (!next_line(&p, end, &line, &len))
            return 0;
        FUZZ_CHECK(len > 0 && len <= 16);
        for (size_t i = 0; i < len; i++) {
            const char *hex = "0123456789abcdef", *d = strchr(hex, line[i] | 0x20);
            FUZZ_CHECK(line[i] && d != NULL);
            size = size * 16 + (size_t)(d - hex);
        }
        if (size == 0)
            return next_line(&p, end, &line, &len) && len == 0 ? (size_t)(p - start) : 0;
        if ((size_t)(end - p) < size + 2)
            return 0;
        output_add(body, p, size);
        FUZZ_CHECK(p[size] == '\r' && p[size + 1] == '\n');
        p += size + 2;
    }
}

/* Checks the response at the start of [p, end); returns its length. */
static size_t check_response(const char *p, const char *end)
{
    const char *start = p, *line;
    size_t len, content_length = 0;
    bool has_length = false, chunked = false, json = false, sse = false;
    int status;

    /* "HTTP/x.y NNN Reason": libevent repeats the request's version
     * numbers, whatever they were. */
    FUZZ_CHECK(next_line(&p, end, &line, &len));
    FUZZ_CHECK(len >= 13 && !strncmp(line, "HTTP/", 5));
    const char *sp = memchr(line, ' ', len);
    FUZZ_CHECK(sp != NULL && line + len - sp >= 5);
    FUZZ_CHECK(sp[1] >= '1' && sp[1] <= '5' && sp[2] >= '0' && sp[2] <= '9' &&
               sp[3] >= '0' && sp[3] <= '9' && sp[4] == ' ');
    status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');

    for (;;) {
        FUZZ_CHECK(next_line(&p, end, &line, &len)); /* the headers end */
        if (len == 0)
            break;
        const char *colon = memchr(line, ':', len);
        FUZZ_CHECK(colon != NULL && colon > line);
        for (const char *c = line; c < colon; c++)
            FUZZ_CHECK(is_tchar(*c));
        const char *value = colon + 1;
        size_t vlen = len - (size_t)(value - line);
        while (vlen > 0 && *value == ' ')
            value++, vlen--;
        for (size_t i = 0; i < vlen; i++)
            FUZZ_CHECK(value[i] != '\0' && value[i] != '\r' && value[i] != '\n');
        if (starts_with_ci(line, len, "Content-Length:")) {
            FUZZ_CHECK(!has_length && vlen > 0 && vlen < 12);
            for (size_t i = 0; i < vlen; i++) {
                FUZZ_CHECK(value[i] >= '0' && value[i] <= '9');
                content_length = content_length * 10 + (size_t)(value[i] - '0');
            }
            has_length = true;
        } else if (starts_with_ci(line, len, "Transfer-Encoding:")) {
            FUZZ_CHECK(vlen == 7 && !strncasecmp(value, "chunked", 7));
            chunked = true;
        } else if (starts_with_ci(line, len, "Content-Type:")) {
            json = starts_with_ci(value, vlen, "application/json");
            sse = starts_with_ci(value, vlen, "text/event-stream");
        } else if (starts_with_ci(line, len, "Set-Cookie:") &&
                   starts_with_ci(value, vlen, "kchat_device=")) {
            /* the login guard's device cookie: 32 hex digits, then exactly these */
            static const char attrs[] =
                "; HttpOnly; SameSite=Strict; Path=/api/login; Max-Age=31536000";
            const size_t at = strlen("kchat_device=");
            FUZZ_CHECK(vlen == at + 32 + strlen(attrs));
            for (size_t i = at; i < at + 32; i++)
                FUZZ_CHECK(isxdigit((unsigned char)value[i]));
            FUZZ_CHECK(!strncmp(value + at + 32, attrs, strlen(attrs)));
        } else if (starts_with_ci(line, len, "Set-Cookie:")) {
            static const char attrs[] = "; HttpOnly; SameSite=Strict; Path=/";
            FUZZ_CHECK(starts_with_ci(value, vlen, "kchat_session="));
            const char *semi = memchr(value, ';', vlen);
            FUZZ_CHECK(semi != NULL && (size_t)(value + vlen - semi) >= strlen(attrs) &&
                       !strncmp(semi, attrs, strlen(attrs)));
        }
    }
    FUZZ_CHECK(!(has_length && chunked));

    output body = {0};
    if (chunked) {
        size_t used = dechunk(p, end, &body);
        FUZZ_CHECK(used > 0); /* the last chunk came */
        p += used;
    } else if (has_length) {
        FUZZ_CHECK((size_t)(end - p) >= content_length);
        output_add(&body, p, content_length);
        p += content_length;
    } else if (end - p >= 5 && !strncmp(p, "HTTP/", 5)) {
        /* No body (HEAD, 1xx, 204, 304): the next response follows. */
    } else {
        /* Delimited by the end of the connection (HTTP/1.0). */
        output_add(&body, p, (size_t)(end - p));
        p = end;
    }
    if (!body.too_big && body.len > 0) {
        if (json)
            check_json_body(status, body.buf, body.len);
        if (sse)
            check_event_stream(body.buf, body.len);
    }
    free(body.buf);
    return (size_t)(p - start);
}

static void check_output(const output *out)
{
    if (out->too_big || out->len == 0)
        return;
    const char *p = out->buf, *end = out->buf + out->len;
    while (p < end)
        p += check_response(p, end);
}

/* ---- The entry point ----------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    output out = {0};
    kchat_gateway *gw;
    int fd;

    if (fz.gw == NULL)
        setup();
    gw = fz.gw;
    /* Every input starts from the same live positions. */
    memset(gw->events_next, 0, (size_t)gw->event_partitions * sizeof *gw->events_next);

    FUZZ_CHECK((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) >= 0);
    FUZZ_CHECK(connect(fd, (struct sockaddr *)&fz.addr, fz.addr_len) == 0);
    drive(gw, fd, data, size, &out);
    close(fd);
    /* The records kchat__gw_pending_send() produced: drop them, none is delivered. */
    rd_kafka_purge(gw->producer, RD_KAFKA_PURGE_F_QUEUE);
    rd_kafka_poll(gw->producer, 0);

    /* KCHAT_FUZZ_TRACE=1: show what the server answered. */
    if (getenv("KCHAT_FUZZ_TRACE") != NULL) {
        fprintf(stderr, "---- %zu bytes in, %zu bytes out%s:\n", size, out.len,
                out.too_big ? " (too many to check)" : "");
        fwrite(out.buf ? out.buf : "", 1, out.len, stderr);
        fprintf(stderr, "\n----\n");
    }
    check_output(&out);
    free(out.buf);
    return 0;
}
