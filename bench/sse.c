/*
 * bench/sse.c - event-stream (SSE) capacity and delivery-latency benchmark
 * for the kchat HTTP gateway (PROTOCOL.md section 8).
 *
 * One thread, one libevent loop, libevent's evhttp client. Steps:
 *   1. register and log in --users users (keeps each kchat_session cookie);
 *   2. user i follows users i+1 .. i+g-1 (mod U) and creates room i with
 *      them (--rooms rooms, --group members each, default 3);
 *   3. opens --streams GET /api/events streams spread evenly over the users
 *      (each on its own connection, at most --open-inflight opening at once)
 *      and waits until every one answered (200 = opened, else failed);
 *   4. sends --messages chat messages, open loop at --rate msgs/s, round
 *      robin over the rooms, written by the room's creator, each with the
 *      unique clientMsgId "b<index>"; the send time (CLOCK_MONOTONIC) of
 *      each index is kept in a table;
 *   5. for every `chat` event on every stream records arrival - send, and
 *      waits (at most --drain-ms after the last send) until every expected
 *      event arrived.
 * Expected events of one message = sum over the room's members of the
 * streams that member has open.
 *
 * Every wait is bounded: setup steps by --setup-timeout, the whole run by
 * --duration-max.
 *
 * --procs N (N > 1) spreads the streams over N child processes, for when one
 * process may not hold enough descriptors. The parent does steps 1-2, drops
 * its loop and connections, maps a shared region (MAP_SHARED|MAP_ANONYMOUS)
 * and forks the children, each with a pipe to it. Child c makes its own
 * loop, opens streams c, c+N, c+2N, ... (step 3; its share of
 * --open-inflight), counts its open streams per user in the shared region
 * and writes 'O' to its pipe. The parent, on a fresh loop and pool, does
 * step 4, keeping each send time in the shared region before the POST and
 * adding each child's share of the expected events to the child's slot; it
 * then says "sending finished". Each child does step 5 on its streams until
 * it has its share or the drain ends, leaves its counts and latency samples
 * in the shared region and exits; the parent merges them and reports as
 * with one process. A child that dies or hangs makes the parent kill the
 * others and exit 2.
 *
 * Ends with one line:
 *   sse: streams=N opened=N events=N expected=N p50_ms=X p90_ms=X p99_ms=X
 *        max_ms=X rss_mb=N
 * Exit status: 0 all streams opened and every expected event arrived once;
 * 1 otherwise (failed opens, drops, missing or repeated events, failed
 * sends); 2 usage or setup failure.
 *
 * Files (one concept each; bench/bench.mk links them into one program):
 *   sse.h          the types, the shared-memory types, the options, the
 *                  globals and functions more than one file uses
 *   sse.c          options, main(), the loop and its tick, the report
 *   sse_pidstat.c  RSS and CPU time of the --pid processes (/proc) and of
 *                  this one
 *   sse_setup.c    the HTTP client (pool, requests, responses) and steps 1-2
 *   sse_streams.c  steps 3 and 5: opening the streams, recording events
 *   sse_send.c     step 4: sending the messages
 *   sse_procs.c    --procs > 1: the shared region, the children, their
 *                  pipes, reaping them, merging their counts and samples
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>

#include "sse.h"

#define MAX_PROCS 64

options opt = {
    .users = 100,
    .streams = 2000,
    .rooms = -1,
    .group = 3,
    .messages = 500,
    .conns = 32,
    .open_inflight = 200,
    .procs = 1,
    .rate = 50,
    .duration_max_s = 300,
    .setup_timeout_s = 60,
    .drain_ms = 10000,
    .settle_ms = 1000,
};

struct event_base *g_base;
char g_host[256];
int g_port;
int64_t g_deadline_ns;
static volatile sig_atomic_t g_interrupted;
bool g_stopping;
struct event *g_tick;
const struct timeval g_tick_tv = {0, 100000};

int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void on_signal(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

/* ---------------------------------------------------------------------- */
/* helpers                                                                 */
/* ---------------------------------------------------------------------- */

void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (p == NULL) {
        fprintf(stderr, "sse: out of memory\n");
        exit(2);
    }
    return p;
}

/* Raise the soft descriptor limit to the hard one and warn when it is too
 * low for the streams of one process. Runs on the parent before any fork:
 * the children inherit the limit. */
static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        perror("sse: getrlimit");
        return;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            perror("sse: setrlimit");
        else
            fprintf(stderr, "sse: RLIMIT_NOFILE soft %llu -> %llu\n", (unsigned long long)old,
                    (unsigned long long)rl.rlim_cur);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if (opt.procs == 1) {
        if ((rlim_t)opt.streams + (rlim_t)opt.conns + 64 > rl.rlim_cur)
            fprintf(stderr, "sse: WARNING: %d streams + %d pool connections need more fds than the "
                    "limit %llu; opens beyond it will fail\n", opt.streams, opt.conns,
                    (unsigned long long)rl.rlim_cur);
    } else {
        int per = (opt.streams + opt.procs - 1) / opt.procs;
        if ((rlim_t)per + 64 > rl.rlim_cur)
            fprintf(stderr, "sse: WARNING: %d streams per process (%d processes) need more fds "
                    "than the limit %llu; opens beyond it will fail\n", per, opt.procs,
                    (unsigned long long)rl.rlim_cur);
    }
}

/* Parse --pid: PID or PID,PID,...; false when malformed. Entries 0 are
 * skipped (a lone 0 reports nothing, as before). Runs on the parent. */
static bool parse_pids(const char *s)
{
    char *end;
    long p;

    opt.npids = 0;
    for (;;) {
        errno = 0;
        p = strtol(s, &end, 10);
        if (end == s || errno || p < 0)
            return false;
        if (p > 0) {
            if (opt.npids == MAX_PIDS)
                return false;
            opt.pids[opt.npids++] = p;
        }
        if (*end == '\0')
            return true;
        if (*end != ',')
            return false;
        s = end + 1;
    }
}

/* Every 100 ms, so that the loop returns to look at deadlines. With
 * --procs > 1 it also carries a stop: the parent, once interrupted, asks the
 * children to stop; a child stops when asked or when the parent is gone. */
void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (g_sh.hdr == NULL)
        return;
    if (!g_is_child) {
        if (g_interrupted)
            atomic_store(&g_sh.hdr->abort, 1);
    } else if (atomic_load(&g_sh.hdr->abort) || getppid() != g_parent_pid) {
        g_interrupted = 1;
    }
}

/* Run the loop until *done says so, the deadline passes or SIGINT. */
bool run_until(bool (*done)(void), int64_t deadline)
{
    if (deadline > g_deadline_ns)
        deadline = g_deadline_ns;
    while (!done()) {
        if (g_interrupted || now_ns() >= deadline)
            return false;
        event_base_loop(g_base, EVLOOP_ONCE);
    }
    return true;
}

/* ---------------------------------------------------------------------- */
/* report                                                                  */
/* ---------------------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct_ms(const int64_t *v, size_t n, double q)
{
    size_t i;

    if (n == 0)
        return 0;
    i = (size_t)(q * (double)n + 0.999999);
    if (i == 0)
        i = 1;
    if (i > n)
        i = n;
    return (double)v[i - 1] / 1e6;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sse --url http://HOST:PORT/ [options]\n"
            "  --users U          users (default 100)\n"
            "  --streams S        event streams in all, spread over the users (default 2000)\n"
            "  --rooms N          rooms (default: U); room i = users i..i+group-1 (mod U)\n"
            "  --group G          members per room, 2..U (default 3)\n"
            "  --messages M       chat messages to send (default 500)\n"
            "  --rate R           messages per second, open loop (default 50)\n"
            "  --conns C          keep-alive connections for the POSTs (default 32)\n"
            "  --open-inflight N  streams opening at once (default 200; split over --procs)\n"
            "  --procs N          spread the streams over N processes, 1..64 (default 1):\n"
            "                     stream i on process i %% N; for when one process may not\n"
            "                     hold --streams descriptors\n"
            "  --pid PID[,PID..]  the gateway's pid(s): report their RSS and CPU (summed\n"
            "                     over the pids, VmHWM too)\n"
            "  --setup-timeout S  bound of each setup step (default 60)\n"
            "  --drain-ms MS      wait for events after the last send (default 10000)\n"
            "  --settle-ms MS     pause between opening streams and sending (default 1000)\n"
            "  --duration-max S   bound of the whole run (default 300)\n");
}

int main(int argc, char **argv)
{
    enum { O_URL = 256, O_USERS, O_STREAMS, O_ROOMS, O_GROUP, O_MESSAGES, O_RATE, O_CONNS,
           O_OPENIN, O_PID, O_SETUP, O_DRAIN, O_SETTLE, O_DUR, O_PROCS, O_HELP };
    static const struct option lo[] = {
        {"url", required_argument, 0, O_URL},
        {"users", required_argument, 0, O_USERS},
        {"streams", required_argument, 0, O_STREAMS},
        {"rooms", required_argument, 0, O_ROOMS},
        {"group", required_argument, 0, O_GROUP},
        {"messages", required_argument, 0, O_MESSAGES},
        {"rate", required_argument, 0, O_RATE},
        {"conns", required_argument, 0, O_CONNS},
        {"open-inflight", required_argument, 0, O_OPENIN},
        {"pid", required_argument, 0, O_PID},
        {"setup-timeout", required_argument, 0, O_SETUP},
        {"drain-ms", required_argument, 0, O_DRAIN},
        {"settle-ms", required_argument, 0, O_SETTLE},
        {"duration-max", required_argument, 0, O_DUR},
        {"procs", required_argument, 0, O_PROCS},
        {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0},
    };
    int c, rc;
    bool drain_ok;
    struct event *sender;
    struct timeval send_tv;
    int64_t t_start, t0, t_open, t_send_end;
    double cpu0, cpu1, self0, self1;
    long rss_before, rss_open, rss_end, hwm;
    double p50 = 0, p90 = 0, p99 = 0, pmax = 0;

    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case O_URL: opt.url = optarg; break;
        case O_USERS: opt.users = atoi(optarg); break;
        case O_STREAMS: opt.streams = atoi(optarg); break;
        case O_ROOMS: opt.rooms = atoi(optarg); break;
        case O_GROUP: opt.group = atoi(optarg); break;
        case O_MESSAGES: opt.messages = atoi(optarg); break;
        case O_RATE: opt.rate = atof(optarg); break;
        case O_CONNS: opt.conns = atoi(optarg); break;
        case O_OPENIN: opt.open_inflight = atoi(optarg); break;
        case O_PID:
            if (!parse_pids(optarg)) {
                fprintf(stderr, "sse: --pid takes PID or PID,PID,...\n");
                return 2;
            }
            break;
        case O_SETUP: opt.setup_timeout_s = atoi(optarg); break;
        case O_DRAIN: opt.drain_ms = atoi(optarg); break;
        case O_SETTLE: opt.settle_ms = atoi(optarg); break;
        case O_DUR: opt.duration_max_s = atoi(optarg); break;
        case O_PROCS: opt.procs = atoi(optarg); break;
        case O_HELP: usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (opt.rooms < 0)
        opt.rooms = opt.users;
    if (opt.url == NULL || opt.users < 2 || opt.streams < 0 || opt.rooms < 1 || opt.group < 2 ||
        opt.group > opt.users || opt.group > 100 || opt.messages < 0 || opt.rate <= 0 ||
        opt.conns < 1 || opt.open_inflight < 1 || opt.setup_timeout_s < 1 || opt.drain_ms < 0 ||
        opt.settle_ms < 0 || opt.duration_max_s < 1 || opt.procs < 1 || opt.procs > MAX_PROCS) {
        usage(stderr);
        return 2;
    }
    if (sscanf(opt.url, "http://%255[^:/]:%d", g_host, &g_port) != 2 || g_port <= 0 || g_port > 65535) {
        fprintf(stderr, "sse: --url must be http://HOST:PORT/\n");
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();

    t_start = now_ns();
    g_deadline_ns = t_start + (int64_t)opt.duration_max_s * 1000000000;
    if ((g_base = event_base_new()) == NULL)
        return 2;
    g_tick = event_new(g_base, -1, EV_PERSIST, tick_cb, NULL);
    event_add(g_tick, &g_tick_tv);
    g_pool = xcalloc((size_t)opt.conns, sizeof(*g_pool));
    for (int i = 0; i < opt.conns; i++)
        if ((g_pool[i] = new_conn()) == NULL)
            return 2;
    g_msgs = xcalloc((size_t)opt.messages, sizeof(*g_msgs));
    g_post_lat = xcalloc((size_t)opt.messages, sizeof(*g_post_lat));

    fprintf(stderr, "sse: %s users=%d streams=%d rooms=%d group=%d messages=%d rate=%g", opt.url,
            opt.users, opt.streams, opt.rooms, opt.group, opt.messages, opt.rate);
    if (opt.procs > 1)
        fprintf(stderr, " procs=%d", opt.procs);
    fprintf(stderr, "\n");
    if (!do_setup()) {
        fprintf(stderr, "sse: setup failed\n");
        return 2;
    }

    /* open the streams: stream i belongs to user i % U (and to process
     * i % procs: there the children open them, and the parent waits) */
    rss_before = proc_status_kb("VmRSS");
    if (opt.procs > 1) {
        t0 = now_ns();
        if (!spawn_children())
            fail_children("could not start the processes");
        wait_open_reports(t0);
    } else {
        make_streams();
        t0 = now_ns();
        open_phase(t0);
    }
    t_open = now_ns();
    fprintf(stderr, "sse: streams requested=%d opened=%d failed=%d (no response %d, 4xx %d, 5xx %d) "
            "unanswered=%d in %.2f s; dropped so far %d\n", opt.streams, g_opened, g_open_failed,
            g_open_status[0], g_open_status[4], g_open_status[5],
            open_unanswered(), (double)(t_open - t0) / 1e9, g_dropped);
    /* settle: let keep-alives and late accepts happen */
    {
        int64_t until = now_ns() + (int64_t)opt.settle_ms * 1000000;
        while (!g_interrupted && !g_child_failed && now_ns() < until && now_ns() < g_deadline_ns)
            event_base_loop(g_base, EVLOOP_ONCE);
        if (g_child_failed)
            fail_children("a process died with its streams open");
    }
    rss_open = proc_status_kb("VmRSS");
    fprintf(stderr, "sse: gateway VmRSS before streams %ld kB, with %d streams open %ld kB\n",
            rss_before, g_opened - g_dropped, rss_open);

    /* send */
    cpu0 = proc_cpu_s();
    self0 = self_cpu_s();
    g_send_t0 = now_ns();
    {
        double iv = 1.0 / opt.rate;
        if (iv > 0.01)
            iv = 0.01;
        if (iv < 0.001)
            iv = 0.001;
        send_tv.tv_sec = 0;
        send_tv.tv_usec = (suseconds_t)(iv * 1e6);
    }
    sender = event_new(g_base, -1, EV_PERSIST, send_tick, NULL);
    event_add(sender, &send_tv);
    if (!run_until(sends_done, INT64_MAX) || g_sent < opt.messages)
        fprintf(stderr, "sse: sending stopped early (%s) after %d of %d messages\n",
                g_child_failed ? "a process died" : g_interrupted ? "interrupted" : "--duration-max",
                g_sent, opt.messages);
    event_del(sender);
    if (g_child_failed)
        fail_children("a process died while sending");
    t_send_end = now_ns();
    fprintf(stderr, "sse: sent %d messages in %.2f s (%.1f/s)\n", g_sent,
            (double)(t_send_end - g_send_t0) / 1e9,
            g_sent / ((double)(t_send_end - g_send_t0) / 1e9 + 1e-9));
    if (opt.procs > 1) {
        drain_children(t_send_end);
        drain_ok = g_post_pending == 0 && g_received >= g_expected;
    } else {
        drain_ok = run_until(drained, t_send_end + (int64_t)opt.drain_ms * 1000000);
    }
    if (!drain_ok)
        fprintf(stderr, "sse: drain: %d POSTs unanswered, %" PRId64 " of %" PRId64
                " events missing after %d ms\n", g_post_pending, g_expected - g_received,
                g_expected, opt.drain_ms);
    cpu1 = proc_cpu_s();
    self1 = self_cpu_s() + g_children_cpu_s; /* the children's since their streams opened */
    rss_end = proc_status_kb("VmRSS");
    hwm = proc_status_kb("VmHWM");
    {
        double wall = (double)(now_ns() - g_send_t0) / 1e9;
        if (cpu0 >= 0 && cpu1 >= 0)
            fprintf(stderr, "sse: gateway CPU during send+drain: %.2f s over %.2f s wall (%.0f%% of "
                    "one core); this client %.0f%%\n", cpu1 - cpu0, wall,
                    100 * (cpu1 - cpu0) / wall, 100 * (self1 - self0) / wall);
    }

    /* report */
    qsort(g_post_lat, g_npost_lat, sizeof(*g_post_lat), cmp_i64);
    qsort(g_lat, g_nlat, sizeof(*g_lat), cmp_i64);
    if (g_nlat) {
        p50 = pct_ms(g_lat, g_nlat, 0.50);
        p90 = pct_ms(g_lat, g_nlat, 0.90);
        p99 = pct_ms(g_lat, g_nlat, 0.99);
        pmax = (double)g_lat[g_nlat - 1] / 1e6;
    }
    {
        int missing_msgs = 0, first_missing = -1;
        for (int k = 0; k < g_sent; k++) {
            int64_t want = 0;
            for (int m = 0; m < g_rooms[g_msgs[k].room].nmembers; m++)
                want += g_users[g_rooms[g_msgs[k].room].members[m]].nstreams;
            if (g_msgs[k].received < want) {
                missing_msgs++;
                if (first_missing < 0)
                    first_missing = k;
            }
        }
        fprintf(stderr, "sse: POST /messages: ok=%d failed=%d unanswered=%d; p50=%.2f p99=%.2f "
                "max=%.2f ms\n", g_post_ok, g_post_failed, g_post_pending,
                pct_ms(g_post_lat, g_npost_lat, 0.5), pct_ms(g_post_lat, g_npost_lat, 0.99),
                g_npost_lat ? (double)g_post_lat[g_npost_lat - 1] / 1e6 : 0.0);
        fprintf(stderr, "sse: events expected=%" PRId64 " received=%" PRId64 " duplicates=%" PRId64
                " unrecognised=%" PRId64 "; messages short of arrivals: %d (first b%d)\n",
                g_expected, g_received, g_dups, g_unknown, missing_msgs, first_missing);
        fprintf(stderr, "sse: streams dropped by the server during the run: %d\n", g_dropped);
        fprintf(stderr, "sse: latency send->chat event over %zu arrivals: p50=%.2f p90=%.2f "
                "p99=%.2f max=%.2f ms\n", g_nlat, p50, p90, p99, pmax);
        fprintf(stderr, "sse: gateway VmRSS end %ld kB, VmHWM %ld kB\n", rss_end, hwm);
    }
    rc = (g_opened == opt.streams && g_dropped == 0 && g_received == g_expected && g_dups == 0 &&
          g_post_failed == 0 && g_post_pending == 0 && g_sent == opt.messages) ? 0 : 1;
    printf("sse: streams=%d opened=%d events=%" PRId64 " expected=%" PRId64
           " p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f rss_mb=%ld\n",
           opt.streams, g_opened, g_received, g_expected, p50, p90, p99, pmax,
           rss_end >= 0 ? (rss_end + 512) / 1024 : -1);
    fflush(stdout);

    /* teardown */
    g_stopping = true;
    for (int i = 0; i < g_nlocal; i++) {
        if (g_streams[i].evcon)
            evhttp_connection_free(g_streams[i].evcon);
        evbuffer_free(g_streams[i].buf);
        free(g_streams[i].seen);
    }
    for (int i = 0; i < opt.conns; i++)
        evhttp_connection_free(g_pool[i]);
    event_free(sender);
    if (g_children)
        free_children();
    event_free(g_tick);
    event_base_free(g_base);
    for (int r = 0; r < opt.rooms; r++)
        free(g_rooms[r].members);
    free(g_rooms);
    free(g_users);
    free(g_streams);
    free(g_msgs);
    free(g_lat);
    free(g_post_lat);
    free(g_pool);
    return rc;
}
