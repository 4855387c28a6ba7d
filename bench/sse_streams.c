/*
 * bench/sse_streams.c - the event streams of the event-stream benchmark
 * (bench/sse.c): steps 3 and 5, opening this process's GET /api/events
 * streams (each on its own connection) and recording the `chat` events
 * that arrive on them. Runs on the only process, or with --procs > 1 on
 * each child.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "sse.h"

/* This process's streams: all of them, or with --procs > 1 on child c
 * streams c, c+N, c+2N, ... (none on the parent). */
stream *g_streams;
int g_nlocal;          /* how many */
static int g_open_max; /* how many may open at once */
static int g_open_next;
int g_open_inflight, g_opened, g_open_failed, g_dropped;
int g_open_status[6]; /* 0 = no response, 1xx..5xx */

int64_t g_received, g_dups, g_unknown;
int64_t *g_lat; /* ns, one per arrival */
size_t g_nlat, g_caplat;

/* ---------------------------------------------------------------------- */
/* streams                                                                 */
/* ---------------------------------------------------------------------- */

static void open_more(void);

/* Send time of message k, 0 when not sent (yet). Any process: a child
 * reads it from the shared region, where the parent wrote it before the
 * POST. */
static int64_t msg_sent_ns(long k)
{
    if (g_sh.hdr && g_is_child)
        return atomic_load_explicit(&g_sh.sent_ns[k], memory_order_acquire);
    return g_msgs[k].sent_ns;
}

/* One more arrival of message k (counted in the shared region on a child). */
static void msg_arrived(long k)
{
    if (g_sh.hdr)
        atomic_fetch_add_explicit(&g_sh.received[k], 1, memory_order_relaxed);
    else
        g_msgs[k].received++;
}

/* User u has d more open streams; a child also counts them in its row of
 * the shared region, which the parent reads to know what to expect. */
static void user_streams_add(int u, int d)
{
    g_users[u].nstreams += d;
    if (g_sh.hdr)
        atomic_fetch_add_explicit(&g_sh.nstreams[(size_t)g_proc * (size_t)opt.users + (size_t)u], d,
                                  memory_order_relaxed);
}

static void stream_record(stream *s, const char *data, int64_t t)
{
    const char *p = strstr(data, "\"clientMsgId\":\"b");
    char *end;
    long k;

    if (p == NULL) {
        s->bad++;
        g_unknown++;
        return;
    }
    k = strtol(p + 16, &end, 10);
    if (end == p + 16 || *end != '"' || k < 0 || k >= opt.messages || msg_sent_ns(k) == 0) {
        s->bad++;
        g_unknown++;
        return;
    }
    if (s->seen[k >> 3] & (1u << (k & 7))) {
        s->dups++;
        g_dups++;
        return;
    }
    s->seen[k >> 3] |= (uint8_t)(1u << (k & 7));
    s->events++;
    g_received++;
    msg_arrived(k);
    if (g_nlat == g_caplat) {
        g_caplat = g_caplat ? g_caplat * 2 : 65536;
        g_lat = realloc(g_lat, g_caplat * sizeof(*g_lat));
        if (g_lat == NULL) {
            fprintf(stderr, "sse: out of memory\n");
            exit(2);
        }
    }
    g_lat[g_nlat++] = t - msg_sent_ns(k);
}

static void stream_chunk_cb(struct evhttp_request *req, void *arg)
{
    stream *s = arg;
    int64_t t = now_ns();
    char *line;
    size_t n;

    if (s->status != 200)
        return; /* an error body; libevent drains it */
    evbuffer_add_buffer(s->buf, evhttp_request_get_input_buffer(req));
    while ((line = evbuffer_readln(s->buf, &n, EVBUFFER_EOL_LF)) != NULL) {
        if (n && line[n - 1] == '\r')
            line[--n] = '\0';
        if (n == 0)
            s->in_chat = false; /* end of one event */
        else if (!strncmp(line, "event:", 6))
            s->in_chat = !strcmp(line + 6 + (line[6] == ' '), "chat");
        else if (s->in_chat && !strncmp(line, "data:", 5))
            stream_record(s, line + 5, t);
        free(line);
    }
}

static int stream_header_cb(struct evhttp_request *req, void *arg)
{
    stream *s = arg;
    int code = evhttp_request_get_response_code(req);

    s->status = code;
    g_open_inflight--;
    if (code == 200) {
        s->opened = true;
        g_opened++;
        user_streams_add(s->user, 1);
    } else {
        g_open_failed++;
        g_open_status[code / 100 >= 1 && code / 100 <= 5 ? code / 100 : 0]++;
        if (g_open_failed <= MAX_ERR_PRINT)
            fprintf(stderr, "sse: stream %d (user %s) got status %d\n", s->idx,
                    g_users[s->user].id, code);
    }
    if (!g_stopping)
        open_more();
    return 0;
}

static void stream_error_cb(enum evhttp_request_error err, void *arg)
{
    stream *s = arg;
    static const char *names[] = {"timeout", "eof", "invalid header", "buffer error",
                                  "request cancelled", "data too long"};

    if (g_stopping)
        return;
    if ((int)err >= 0 && (size_t)err < sizeof(names) / sizeof(names[0]) && (s->opened || g_open_failed < MAX_ERR_PRINT))
        fprintf(stderr, "sse: stream %d (user %s, %s) error: %s\n", s->idx, g_users[s->user].id,
                s->opened ? "open" : "opening", names[err]);
}

static void stream_done_cb(struct evhttp_request *req, void *arg)
{
    stream *s = arg;

    (void)req;
    if (s->done)
        return;
    s->done = true;
    s->req = NULL;
    if (g_stopping)
        return;
    if (s->status == 0) { /* never got headers: connection failure */
        g_open_inflight--;
        g_open_failed++;
        g_open_status[0]++;
        if (g_open_failed <= MAX_ERR_PRINT)
            fprintf(stderr, "sse: stream %d (user %s): no response\n", s->idx, g_users[s->user].id);
        open_more();
    } else if (s->opened) {
        g_dropped++;
        user_streams_add(s->user, -1);
        if (g_dropped <= MAX_ERR_PRINT)
            fprintf(stderr, "sse: stream %d (user %s) ENDED by the server after %" PRId64
                    " events (t=%.3f s)\n", s->idx, g_users[s->user].id, s->events,
                    (double)now_ns() / 1e9);
    }
}

/* Start opening streams until g_open_max are opening. */
static void open_more(void)
{
    while (g_open_next < g_nlocal && g_open_inflight < g_open_max) {
        stream *s = &g_streams[g_open_next++];
        struct evhttp_request *req;
        struct evkeyvalq *h;
        char hostport[300];

        g_open_inflight++;
        if ((s->evcon = new_conn()) == NULL || (req = evhttp_request_new(stream_done_cb, s)) == NULL) {
            g_open_inflight--;
            g_open_failed++;
            g_open_status[0]++;
            s->done = true;
            continue;
        }
        evhttp_request_set_header_cb(req, stream_header_cb);
        evhttp_request_set_chunked_cb(req, stream_chunk_cb);
        evhttp_request_set_error_cb(req, stream_error_cb);
        h = evhttp_request_get_output_headers(req);
        snprintf(hostport, sizeof(hostport), "%s:%d", g_host, g_port);
        evhttp_add_header(h, "Host", hostport);
        evhttp_add_header(h, "Accept", "text/event-stream");
        evhttp_add_header(h, "Cookie", g_users[s->user].cookie);
        s->req = req;
        if (evhttp_make_request(s->evcon, req, EVHTTP_REQ_GET, "/api/events") != 0) {
            /* libevent freed req */
            s->req = NULL;
            s->done = true;
            g_open_inflight--;
            g_open_failed++;
            g_open_status[0]++;
        }
    }
}

static bool opens_done(void)
{
    return g_open_next >= g_nlocal && g_open_inflight == 0;
}

/* Streams of this process that did not answer (yet). */
int open_unanswered(void)
{
    return g_open_inflight + (g_nlocal - g_open_next);
}

/* How many streams child c of --procs holds (all with one process). */
int streams_of(int c)
{
    return opt.streams > c ? (opt.streams - c - 1) / opt.procs + 1 : 0;
}

/* Set up this process's streams: stream i belongs to user i % U and to
 * process i % procs; also its share of --open-inflight. Runs on the only
 * process or on a child. */
void make_streams(void)
{
    g_nlocal = streams_of(g_proc);
    g_open_max = opt.open_inflight / opt.procs + (g_proc < opt.open_inflight % opt.procs);
    if (g_open_max < 1)
        g_open_max = 1;
    g_streams = xcalloc((size_t)g_nlocal, sizeof(*g_streams));
    for (int j = 0; j < g_nlocal; j++) {
        g_streams[j].idx = g_proc + j * opt.procs;
        g_streams[j].user = g_streams[j].idx % opt.users;
        g_streams[j].buf = evbuffer_new();
        g_streams[j].seen = xcalloc((size_t)opt.messages / 8 + 1, 1);
    }
}

/* Open this process's streams (made by make_streams) and wait until each
 * answered, at most --setup-timeout after t0. Only process or child. */
void open_phase(int64_t t0)
{
    open_more();
    if (!run_until(opens_done, t0 + (int64_t)opt.setup_timeout_s * 1000000000))
        fprintf(stderr, "sse: opening: %d of %d streams still unanswered after the timeout\n",
                open_unanswered(), g_nlocal);
}
