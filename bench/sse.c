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
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

#define MAX_ERR_PRINT 8
#define MAX_PIDS 64
#define MAX_PROCS 64
/* what the parent allows its children beyond their own bounds (reporting) */
#define GRACE_NS ((int64_t)10 * 1000000000)

/* The shared region holds atomics that two processes use at once. */
#if ATOMIC_INT_LOCK_FREE != 2 || ATOMIC_LONG_LOCK_FREE != 2 || ATOMIC_LLONG_LOCK_FREE != 2
#error "sse.c needs lock-free int and 64-bit atomics"
#endif

static struct {
    const char *url;
    int users, streams, rooms, group, messages, conns, open_inflight, procs;
    double rate;
    int duration_max_s, setup_timeout_s, drain_ms, settle_ms, verbose;
    long pids[MAX_PIDS]; /* --pid: the gateway's processes */
    int npids;
} opt = {
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

static struct event_base *g_base;
static char g_host[256];
static int g_port;
static int64_t g_deadline_ns;
static volatile sig_atomic_t g_interrupted;
static bool g_stopping;

static int64_t now_ns(void)
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
/* data                                                                    */
/* ---------------------------------------------------------------------- */

typedef struct user {
    char id[32];
    char cookie[256]; /* "kchat_session=..." */
    int nstreams;     /* streams opened (200) for this user */
} user;

typedef struct room {
    char id[80];
    int *members; /* user indices, members[0] is the creator */
    int nmembers;
} room;

typedef struct stream {
    int idx;
    int user;
    struct evhttp_connection *evcon;
    struct evhttp_request *req;
    int status;  /* 0 until the response headers arrived */
    bool opened; /* got 200 */
    bool done;   /* request finished (failed open or stream ended) */
    struct evbuffer *buf;
    bool in_chat; /* current SSE event is `event: chat` */
    uint8_t *seen; /* bitset over message indices */
    int64_t events, dups, bad;
} stream;

typedef struct msg {
    int64_t sent_ns;
    int64_t answered_ns;
    int room;
    int status; /* HTTP status of the POST, 0 = none yet, -1 = failed */
    int64_t received;
} msg;

static user *g_users;
static room *g_rooms;
static msg *g_msgs;
static struct evhttp_connection **g_pool;
static int g_pool_next;

static int g_outstanding; /* setup requests in flight */
static int g_setup_errors;

/* This process's streams: all of them, or with --procs > 1 on child c
 * streams c, c+N, c+2N, ... (none on the parent). */
static stream *g_streams;
static int g_nlocal, g_open_max; /* how many; how many may open at once */
static int g_open_next, g_open_inflight, g_opened, g_open_failed, g_dropped;
static int g_open_status[6]; /* 0 = no response, 1xx..5xx */

static int g_sent, g_post_ok, g_post_failed, g_post_pending;
static int64_t g_expected, g_received, g_dups, g_unknown;
static int64_t *g_lat; /* ns, one per arrival */
static size_t g_nlat, g_caplat;
static int64_t *g_post_lat;
static size_t g_npost_lat;
static struct event *g_tick;

/* --procs > 1: what one child hands the parent, once when its streams are
 * opened (before writing 'O') and once at its end (before exiting). */
typedef struct counts {
    int opened, open_failed, open_status[6], unanswered, dropped;
    int64_t received, dups, unknown;
    size_t nlat;  /* latency samples it left in its part of the lat area */
    double cpu_s; /* its own CPU time so far */
} counts;

/* --procs > 1: one child's slot in the shared region. */
typedef struct slot {
    _Atomic int64_t expected; /* parent -> child: events due on its streams */
    counts open, final;       /* child -> parent */
    _Atomic int finished;     /* child -> parent: `final` and its samples are written */
    size_t lat_off, lat_cap;  /* its part of the lat area (set before the fork) */
} slot;

/* --procs > 1: head of the shared region. */
typedef struct shared_hdr {
    _Atomic int send_done;       /* the parent has sent all it will send */
    _Atomic int sent;            /* ... that many messages */
    _Atomic int64_t send_end_ns; /* ... and its last one at this time */
    _Atomic int abort;           /* the parent asks the children to stop now */
} shared_hdr;

/* --procs > 1: the shared region, mapped before the fork (same addresses in
 * every process); hdr is NULL with one process. */
static struct {
    shared_hdr *hdr;
    slot *slots;               /* [procs] */
    _Atomic int64_t *sent_ns;  /* [messages] send time, 0 = not sent */
    _Atomic int64_t *received; /* [messages] arrivals over all children */
    _Atomic int *nstreams;     /* [procs][users] open streams per child and user */
    int64_t *lat;              /* [streams * messages] latency samples, ns */
    size_t size;
} g_sh;

/* --procs > 1, on the parent: its children. */
typedef struct child {
    pid_t pid;
    int fd; /* read end of its pipe */
    struct event *ev;
    bool open_reported, exited;
} child;

static int g_proc;         /* this process's child index (0 with one process) */
static bool g_is_child;
static pid_t g_parent_pid;
static child *g_children;
static int g_children_left;
static bool g_child_failed; /* a child died without handing over its results */
static double g_children_cpu_s;
static int64_t g_drain_end_ns;

/* ---------------------------------------------------------------------- */
/* helpers                                                                 */
/* ---------------------------------------------------------------------- */

static void *xcalloc(size_t n, size_t sz)
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

/* kB of VmRSS (or VmHWM) of process pid, -1 when unknown. */
static long pid_status_kb(long pid, const char *field)
{
    char path[64], line[256];
    size_t flen = strlen(field);
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, field, flen) && line[flen] == ':') {
            kb = strtol(line + flen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* kB of VmRSS (or VmHWM) summed over the --pid processes, -1 when unknown
 * (no --pid, or one of them unreadable). Runs on the parent. */
static long proc_status_kb(const char *field)
{
    long sum = 0, kb;

    if (opt.npids == 0)
        return -1;
    for (int i = 0; i < opt.npids; i++) {
        if ((kb = pid_status_kb(opt.pids[i], field)) < 0)
            return -1;
        sum += kb;
    }
    return sum;
}

/* utime + stime of process pid in seconds, -1 when unknown. */
static double pid_cpu_s(long pid)
{
    char path[64], buf[2048], *p;
    unsigned long ut, st;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    if ((p = strrchr(buf, ')')) == NULL)
        return -1;
    /* fields after ")": state(3) ... utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* utime + stime summed over the --pid processes in seconds, -1 when
 * unknown. Runs on the parent. */
static double proc_cpu_s(void)
{
    double sum = 0, s;

    if (opt.npids == 0)
        return -1;
    for (int i = 0; i < opt.npids; i++) {
        if ((s = pid_cpu_s(opt.pids[i])) < 0)
            return -1;
        sum += s;
    }
    return sum;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* Every 100 ms, so that the loop returns to look at deadlines. With
 * --procs > 1 it also carries a stop: the parent, once interrupted, asks the
 * children to stop; a child stops when asked or when the parent is gone. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
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
static bool run_until(bool (*done)(void), int64_t deadline)
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

static struct evhttp_connection *pool_conn(void)
{
    struct evhttp_connection *c = g_pool[g_pool_next];
    g_pool_next = (g_pool_next + 1) % opt.conns;
    return c;
}

static struct evhttp_connection *new_conn(void)
{
    struct evhttp_connection *c = evhttp_connection_base_new(g_base, NULL, g_host, (unsigned short)g_port);
    if (c) {
        evhttp_connection_set_timeout(c, 600);
        evhttp_connection_set_retries(c, 0);
    }
    return c;
}

/* Make a request; body NULL for none. false when it could not be queued. */
static bool http_call(struct evhttp_connection *c, enum evhttp_cmd_type method, const char *path,
                      const char *cookie, const char *body,
                      void (*cb)(struct evhttp_request *, void *), void *arg)
{
    struct evhttp_request *req = evhttp_request_new(cb, arg);
    struct evkeyvalq *h;
    char hostport[300];

    if (req == NULL)
        return false;
    h = evhttp_request_get_output_headers(req);
    snprintf(hostport, sizeof(hostport), "%s:%d", g_host, g_port);
    evhttp_add_header(h, "Host", hostport);
    if (cookie && cookie[0])
        evhttp_add_header(h, "Cookie", cookie);
    if (body) {
        evhttp_add_header(h, "Content-Type", "application/json");
        evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    }
    return evhttp_make_request(c, req, method, path) == 0;
}

static int resp_code(struct evhttp_request *req)
{
    return req ? evhttp_request_get_response_code(req) : 0;
}

static void resp_body(struct evhttp_request *req, char *out, size_t cap)
{
    struct evbuffer *b = req ? evhttp_request_get_input_buffer(req) : NULL;
    size_t n = b ? evbuffer_get_length(b) : 0;

    if (n >= cap)
        n = cap - 1;
    if (n)
        evbuffer_copyout(b, out, n);
    out[n] = '\0';
}

static void setup_error(const char *what, int idx, struct evhttp_request *req)
{
    char body[300];

    g_setup_errors++;
    if (g_setup_errors <= MAX_ERR_PRINT) {
        resp_body(req, body, sizeof(body));
        fprintf(stderr, "sse: %s %d failed: status %d %s\n", what, idx, resp_code(req), body);
    }
}

static bool setup_done(void)
{
    return g_outstanding == 0;
}

static bool setup_phase(const char *name, int64_t t0)
{
    if (!run_until(setup_done, t0 + (int64_t)opt.setup_timeout_s * 1000000000)) {
        fprintf(stderr, "sse: %s: %d requests unanswered after %d s\n", name, g_outstanding,
                opt.setup_timeout_s);
        return false;
    }
    if (g_setup_errors) {
        fprintf(stderr, "sse: %s: %d errors\n", name, g_setup_errors);
        return false;
    }
    fprintf(stderr, "sse: %s done in %.2f s\n", name, (double)(now_ns() - t0) / 1e9);
    return true;
}

/* ---------------------------------------------------------------------- */
/* setup                                                                   */
/* ---------------------------------------------------------------------- */

static void on_register(struct evhttp_request *req, void *arg)
{
    int i = (int)(intptr_t)arg;
    int code = resp_code(req);

    g_outstanding--;
    if (code != 201 && code != 409)
        setup_error("register", i, req);
}

static void on_login(struct evhttp_request *req, void *arg)
{
    int i = (int)(intptr_t)arg;
    const char *sc;

    g_outstanding--;
    if (resp_code(req) != 200) {
        setup_error("login", i, req);
        return;
    }
    /* The login may also set the device cookie (kchat_device): take the
     * session's, whichever Set-Cookie comes first. */
    sc = NULL;
    for (struct evkeyval *h = evhttp_request_get_input_headers(req)->tqh_first; h;
         h = h->next.tqe_next)
        if (!evutil_ascii_strcasecmp(h->key, "Set-Cookie") &&
            !strncmp(h->value, "kchat_session=", 14))
            sc = h->value;
    if (sc == NULL) {
        setup_error("login (no cookie)", i, req);
        return;
    }
    snprintf(g_users[i].cookie, sizeof(g_users[i].cookie), "%.*s", (int)strcspn(sc, ";"), sc);
}

static void on_friends(struct evhttp_request *req, void *arg)
{
    g_outstanding--;
    if (resp_code(req) != 200)
        setup_error("add-friend", (int)(intptr_t)arg, req);
}

static void on_room(struct evhttp_request *req, void *arg)
{
    int r = (int)(intptr_t)arg;
    char body[1024];
    const char *p;
    size_t n;

    g_outstanding--;
    if (resp_code(req) != 201) {
        setup_error("add-room", r, req);
        return;
    }
    resp_body(req, body, sizeof(body));
    if ((p = strstr(body, "\"roomId\"")) == NULL || (p = strchr(p + 8, '"')) == NULL ||
        (n = strcspn(p + 1, "\"")) == 0 || n >= sizeof(g_rooms[r].id)) {
        setup_error("add-room (no roomId)", r, req);
        return;
    }
    memcpy(g_rooms[r].id, p + 1, n);
    g_rooms[r].id[n] = '\0';
}

static bool do_setup(void)
{
    char body[2048];
    int64_t t0;
    unsigned tag = (unsigned)(time(NULL) ^ getpid()) & 0xffffff;

    g_users = xcalloc((size_t)opt.users, sizeof(*g_users));
    for (int i = 0; i < opt.users; i++)
        snprintf(g_users[i].id, sizeof(g_users[i].id), "sse%06x_%d", tag, i);

    t0 = now_ns();
    for (int i = 0; i < opt.users; i++) {
        snprintf(body, sizeof(body),
                 "{\"userId\":\"%s\",\"userPw\":\"password-%d\",\"email\":\"%s@bench.invalid\","
                 "\"userName\":\"SSE bench %d\"}", g_users[i].id, i, g_users[i].id, i);
        if (!http_call(pool_conn(), EVHTTP_REQ_POST, "/api/users", NULL, body, on_register,
                       (void *)(intptr_t)i))
            return false;
        g_outstanding++;
    }
    if (!setup_phase("register", t0))
        return false;

    t0 = now_ns();
    for (int i = 0; i < opt.users; i++) {
        snprintf(body, sizeof(body), "{\"userId\":\"%s\",\"userPw\":\"password-%d\"}",
                 g_users[i].id, i);
        if (!http_call(pool_conn(), EVHTTP_REQ_POST, "/api/login", NULL, body, on_login,
                       (void *)(intptr_t)i))
            return false;
        g_outstanding++;
    }
    if (!setup_phase("login", t0))
        return false;

    /* room r: creator r % U, members the next group-1 users */
    g_rooms = xcalloc((size_t)opt.rooms, sizeof(*g_rooms));
    for (int r = 0; r < opt.rooms; r++) {
        room *rm = &g_rooms[r];
        rm->nmembers = opt.group;
        rm->members = xcalloc((size_t)opt.group, sizeof(int));
        for (int k = 0; k < opt.group; k++)
            rm->members[k] = (r + k) % opt.users;
    }
    /* friends: each creator follows its rooms' members, one call per room */
    t0 = now_ns();
    for (int r = 0; r < opt.rooms; r++) {
        room *rm = &g_rooms[r];
        size_t n = (size_t)snprintf(body, sizeof(body), "{\"friendId\":[");
        for (int k = 1; k < rm->nmembers; k++)
            n += (size_t)snprintf(body + n, sizeof(body) - n, "%s\"%s\"", k > 1 ? "," : "",
                                  g_users[rm->members[k]].id);
        snprintf(body + n, sizeof(body) - n, "]}");
        if (!http_call(pool_conn(), EVHTTP_REQ_POST, "/api/friends",
                       g_users[rm->members[0]].cookie, body, on_friends, (void *)(intptr_t)r))
            return false;
        g_outstanding++;
    }
    if (!setup_phase("add-friend", t0))
        return false;

    t0 = now_ns();
    for (int r = 0; r < opt.rooms; r++) {
        room *rm = &g_rooms[r];
        size_t n = (size_t)snprintf(body, sizeof(body), "{\"roomName\":\"sse-%d\",\"friendId\":[", r);
        for (int k = 1; k < rm->nmembers; k++)
            n += (size_t)snprintf(body + n, sizeof(body) - n, "%s\"%s\"", k > 1 ? "," : "",
                                  g_users[rm->members[k]].id);
        snprintf(body + n, sizeof(body) - n, "]}");
        if (!http_call(pool_conn(), EVHTTP_REQ_POST, "/api/rooms", g_users[rm->members[0]].cookie,
                       body, on_room, (void *)(intptr_t)r))
            return false;
        g_outstanding++;
    }
    return setup_phase("add-room", t0);
}

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
static int open_unanswered(void)
{
    return g_open_inflight + (g_nlocal - g_open_next);
}

/* How many streams child c of --procs holds (all with one process). */
static int streams_of(int c)
{
    return opt.streams > c ? (opt.streams - c - 1) / opt.procs + 1 : 0;
}

/* Set up this process's streams: stream i belongs to user i % U and to
 * process i % procs; also its share of --open-inflight. Runs on the only
 * process or on a child. */
static void make_streams(void)
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
static void open_phase(int64_t t0)
{
    open_more();
    if (!run_until(opens_done, t0 + (int64_t)opt.setup_timeout_s * 1000000000))
        fprintf(stderr, "sse: opening: %d of %d streams still unanswered after the timeout\n",
                open_unanswered(), g_nlocal);
}

/* ---------------------------------------------------------------------- */
/* sending                                                                 */
/* ---------------------------------------------------------------------- */

static int64_t g_send_t0;

static void on_post(struct evhttp_request *req, void *arg)
{
    int k = (int)(intptr_t)arg;
    int code = resp_code(req);

    g_post_pending--;
    g_msgs[k].answered_ns = now_ns();
    g_msgs[k].status = code ? code : -1;
    if (code == 201) {
        g_post_ok++;
        g_post_lat[g_npost_lat++] = g_msgs[k].answered_ns - g_msgs[k].sent_ns;
    } else {
        g_post_failed++;
        if (g_post_failed <= MAX_ERR_PRINT) {
            char body[300];
            resp_body(req, body, sizeof(body));
            fprintf(stderr, "sse: message %d: status %d %s\n", k, code, body);
        }
    }
}

/* Count the events a message to room rm will cause: one per open stream of
 * each member. With --procs > 1 (on the parent) the streams are the
 * children's: each child's share also goes to its slot, so that it knows
 * when it has all. */
static void add_expected(const room *rm)
{
    for (int m = 0; m < rm->nmembers; m++) {
        int u = rm->members[m];

        if (g_sh.hdr == NULL) {
            g_expected += g_users[u].nstreams;
            continue;
        }
        for (int c = 0; c < opt.procs; c++) {
            int n = atomic_load_explicit(&g_sh.nstreams[(size_t)c * (size_t)opt.users + (size_t)u],
                                         memory_order_relaxed);
            g_expected += n;
            atomic_fetch_add_explicit(&g_sh.slots[c].expected, n, memory_order_relaxed);
        }
    }
}

/* Send message g_sent (only process or parent). */
static void send_one(void)
{
    int k = g_sent;
    int r = k % opt.rooms;
    room *rm = &g_rooms[r];
    char body[256], path[160];

    snprintf(path, sizeof(path), "/api/rooms/%s/messages", rm->id);
    snprintf(body, sizeof(body), "{\"message\":\"sse bench message %d\",\"clientMsgId\":\"b%d\"}", k, k);
    g_msgs[k].room = r;
    add_expected(rm);
    g_msgs[k].sent_ns = now_ns();
    if (g_sh.hdr) /* before the POST: no event can arrive before it */
        atomic_store_explicit(&g_sh.sent_ns[k], g_msgs[k].sent_ns, memory_order_release);
    g_sent++;
    if (!http_call(pool_conn(), EVHTTP_REQ_POST, path, g_users[rm->members[0]].cookie, body, on_post,
                   (void *)(intptr_t)k)) {
        g_post_failed++;
        g_msgs[k].status = -1;
        return;
    }
    g_post_pending++;
}

static void send_tick(evutil_socket_t fd, short what, void *arg)
{
    int64_t due;

    (void)fd, (void)what, (void)arg;
    due = (int64_t)((double)(now_ns() - g_send_t0) / 1e9 * opt.rate) + 1;
    if (due > opt.messages)
        due = opt.messages;
    while (g_sent < due)
        send_one();
}

static bool sends_done(void)
{
    return g_sent >= opt.messages || g_child_failed;
}

static bool drained(void)
{
    return g_post_pending == 0 && g_received >= g_expected;
}

/* ---------------------------------------------------------------------- */
/* processes (--procs > 1)                                                 */
/* ---------------------------------------------------------------------- */

static const struct timeval g_tick_tv = {0, 100000};

/* Reserve n bytes (64-byte aligned) at *off of the region being laid out;
 * returns their offset. */
static size_t shm_part(size_t *off, size_t n)
{
    size_t at = *off;

    *off += (n + 63) & ~(size_t)63;
    return at;
}

/* Map the shared region, lay it out and give each child its part of the
 * latency area (room for one sample per stream and message); false when it
 * cannot. Runs on the parent before the fork. */
static bool shm_map(void)
{
    size_t off = 0, o_slots, o_sent, o_recv, o_nstr, o_lat, nlat, lat_off = 0;
    char *base;

    if ((size_t)opt.streams > SIZE_MAX / 32 / ((size_t)opt.messages + 1)) {
        fprintf(stderr, "sse: %d streams x %d messages: too many to keep\n", opt.streams,
                opt.messages);
        return false;
    }
    nlat = (size_t)opt.streams * (size_t)opt.messages;
    shm_part(&off, sizeof(shared_hdr));
    o_slots = shm_part(&off, (size_t)opt.procs * sizeof(slot));
    o_sent = shm_part(&off, (size_t)opt.messages * sizeof(_Atomic int64_t));
    o_recv = shm_part(&off, (size_t)opt.messages * sizeof(_Atomic int64_t));
    o_nstr = shm_part(&off, (size_t)opt.procs * (size_t)opt.users * sizeof(_Atomic int));
    o_lat = shm_part(&off, nlat * sizeof(int64_t));
    /* pages are only used once written: MAP_NORESERVE, the samples rarely
     * fill the worst case */
    base = mmap(NULL, off, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        fprintf(stderr, "sse: mmap of %zu bytes: %s\n", off, strerror(errno));
        return false;
    }
    g_sh.size = off;
    g_sh.hdr = (void *)base;
    g_sh.slots = (void *)(base + o_slots);
    g_sh.sent_ns = (void *)(base + o_sent);
    g_sh.received = (void *)(base + o_recv);
    g_sh.nstreams = (void *)(base + o_nstr);
    g_sh.lat = (void *)(base + o_lat);
    atomic_init(&g_sh.hdr->send_done, 0);
    atomic_init(&g_sh.hdr->sent, 0);
    atomic_init(&g_sh.hdr->send_end_ns, 0);
    atomic_init(&g_sh.hdr->abort, 0);
    for (int k = 0; k < opt.messages; k++) {
        atomic_init(&g_sh.sent_ns[k], 0);
        atomic_init(&g_sh.received[k], 0);
    }
    for (size_t i = 0; i < (size_t)opt.procs * (size_t)opt.users; i++)
        atomic_init(&g_sh.nstreams[i], 0);
    for (int c = 0; c < opt.procs; c++) {
        slot *sl = &g_sh.slots[c];
        atomic_init(&sl->expected, 0);
        atomic_init(&sl->finished, 0);
        sl->lat_off = lat_off;
        sl->lat_cap = (size_t)streams_of(c) * (size_t)opt.messages;
        lat_off += sl->lat_cap;
    }
    return true;
}

/* Copy this process's counters into *c. Runs on a child. */
static void fill_counts(counts *c)
{
    c->opened = g_opened;
    c->open_failed = g_open_failed;
    memcpy(c->open_status, g_open_status, sizeof(c->open_status));
    c->unanswered = open_unanswered();
    c->dropped = g_dropped;
    c->received = g_received;
    c->dups = g_dups;
    c->unknown = g_unknown;
    c->nlat = g_nlat;
    c->cpu_s = self_cpu_s();
}

/* The parent said sending finished, and every event due on this child's
 * streams arrived or the drain is over. Runs on a child. */
static bool child_done(void)
{
    slot *sl = &g_sh.slots[g_proc];

    if (!atomic_load_explicit(&g_sh.hdr->send_done, memory_order_acquire))
        return false;
    return g_received >= atomic_load(&sl->expected) ||
           now_ns() >= atomic_load(&g_sh.hdr->send_end_ns) + (int64_t)opt.drain_ms * 1000000;
}

/* Child g_proc of --procs: make its own loop, open its streams, leave the
 * open counts in its slot and write 'O' to wfd; record events until
 * child_done (or --duration-max, SIGINT, the parent asking or gone); leave
 * its counts and samples in the shared region and exit 0 (2 when it could
 * not run). Runs on a child; never returns. */
static _Noreturn void child_main(int wfd)
{
    slot *sl = &g_sh.slots[g_proc];

    g_is_child = true;
    if ((g_base = event_base_new()) == NULL ||
        (g_tick = event_new(g_base, -1, EV_PERSIST, tick_cb, NULL)) == NULL) {
        fprintf(stderr, "sse: process %d: no event loop\n", g_proc);
        _exit(2);
    }
    event_add(g_tick, &g_tick_tv);
    make_streams();
    open_phase(now_ns());
    fill_counts(&sl->open);
    atomic_thread_fence(memory_order_release); /* the parent reads them after the 'O' */
    if (write(wfd, "O", 1) != 1)
        _exit(2); /* the parent is gone */
    run_until(child_done, INT64_MAX);
    g_stopping = true;
    if (g_nlat > sl->lat_cap) /* cannot be: one sample per stream and message */
        g_nlat = sl->lat_cap;
    if (g_nlat)
        memcpy(g_sh.lat + sl->lat_off, g_lat, g_nlat * sizeof(*g_lat));
    fill_counts(&sl->final);
    atomic_store_explicit(&sl->finished, 1, memory_order_release);
    _exit(0); /* the kernel closes the streams */
}

/* Child ch's pipe reached EOF: it exited. Reap it; a child that did not
 * exit 0 with its results handed over sets g_child_failed. Runs on the
 * parent. */
static void reap_child(child *ch)
{
    int c = (int)(ch - g_children), st = 0;
    pid_t r;

    while ((r = waitpid(ch->pid, &st, 0)) < 0 && errno == EINTR)
        ;
    ch->exited = true;
    g_children_left--;
    if (r == ch->pid && WIFEXITED(st) && WEXITSTATUS(st) == 0 &&
        atomic_load_explicit(&g_sh.slots[c].finished, memory_order_acquire))
        return;
    g_child_failed = true;
    if (r != ch->pid)
        fprintf(stderr, "sse: process %d (pid %ld): waitpid: %s\n", c, (long)ch->pid,
                strerror(errno));
    else if (WIFSIGNALED(st))
        fprintf(stderr, "sse: process %d (pid %ld) killed by signal %d\n", c, (long)ch->pid,
                WTERMSIG(st));
    else
        fprintf(stderr, "sse: process %d (pid %ld) exited (status %d) without its results\n", c,
                (long)ch->pid, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* Child arg's pipe is readable: 'O' (its streams answered) or EOF (it
 * exited). Runs on the parent. */
static void child_pipe_cb(evutil_socket_t fd, short what, void *arg)
{
    child *ch = arg;
    char b[16];
    ssize_t n = read(fd, b, sizeof(b));

    (void)what;
    if (n > 0) {
        if (memchr(b, 'O', (size_t)n)) {
            atomic_thread_fence(memory_order_acquire); /* its open counts */
            ch->open_reported = true;
        }
        return;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    event_del(ch->ev);
    reap_child(ch);
}

/* Something went wrong with the children (one died, or they did not
 * answer in time): say why, kill those left, reap them and exit 2. Runs on
 * the parent. */
static _Noreturn void fail_children(const char *why)
{
    fprintf(stderr, "sse: %s; stopping the processes left\n", why);
    for (int c = 0; g_children && c < opt.procs; c++) {
        child *ch = &g_children[c];
        if (ch->pid > 0 && !ch->exited) {
            kill(ch->pid, SIGKILL);
            while (waitpid(ch->pid, NULL, 0) < 0 && errno == EINTR)
                ;
        }
    }
    exit(2);
}

/* Drop the setup loop and its connections (a child must not share them),
 * map the shared region and fork the children, each with a pipe to the
 * parent; then make a fresh loop, tick and pool for sending, with an event
 * on each pipe. False when something failed. Runs on the parent. */
static bool spawn_children(void)
{
    for (int i = 0; i < opt.conns; i++)
        evhttp_connection_free(g_pool[i]);
    event_free(g_tick);
    event_base_free(g_base);
    g_base = NULL;
    if (!shm_map())
        return false;
    g_children = xcalloc((size_t)opt.procs, sizeof(*g_children));
    g_parent_pid = getpid();
    fflush(stdout);
    fflush(stderr);
    for (int c = 0; c < opt.procs; c++) {
        int p[2];
        pid_t pid;

        if (pipe(p) != 0) {
            perror("sse: pipe");
            return false;
        }
        if ((pid = fork()) < 0) {
            perror("sse: fork");
            close(p[0]);
            close(p[1]);
            return false;
        }
        if (pid == 0) {
            close(p[0]);
            for (int j = 0; j < c; j++) /* the pipes of the older children */
                close(g_children[j].fd);
            g_proc = c;
            child_main(p[1]);
        }
        close(p[1]);
        g_children[c].pid = pid;
        g_children[c].fd = p[0];
        g_children_left++;
    }
    if ((g_base = event_base_new()) == NULL ||
        (g_tick = event_new(g_base, -1, EV_PERSIST, tick_cb, NULL)) == NULL)
        return false;
    event_add(g_tick, &g_tick_tv);
    for (int i = 0; i < opt.conns; i++)
        if ((g_pool[i] = new_conn()) == NULL)
            return false;
    for (int c = 0; c < opt.procs; c++) {
        child *ch = &g_children[c];
        if ((ch->ev = event_new(g_base, ch->fd, EV_READ | EV_PERSIST, child_pipe_cb, ch)) == NULL ||
            event_add(ch->ev, NULL) != 0)
            return false;
    }
    return true;
}

/* Run the loop until *done says so or the deadline (at most --duration-max
 * plus GRACE_NS) passes. Unlike run_until, SIGINT does not cut it short:
 * tick_cb passes the stop on to the children, which then end and report.
 * Runs on the parent. */
static bool wait_children(bool (*done)(void), int64_t deadline)
{
    if (deadline > g_deadline_ns + GRACE_NS)
        deadline = g_deadline_ns + GRACE_NS;
    while (!done()) {
        if (now_ns() >= deadline)
            return false;
        event_base_loop(g_base, EVLOOP_ONCE);
    }
    return true;
}

static bool children_opened(void)
{
    if (g_child_failed)
        return true;
    for (int c = 0; c < opt.procs; c++)
        if (!g_children[c].open_reported)
            return false;
    return true;
}

/* Every child ended, and the POSTs are answered or the drain is over. */
static bool children_drained(void)
{
    return g_child_failed ||
           (g_children_left == 0 && (g_post_pending == 0 || now_ns() >= g_drain_end_ns));
}

/* Set this process's stream counters to the sum of the children's open
 * (final false) or final counts; g_open_inflight then stands for all the
 * streams still unanswered (the parent has none of its own). Runs on the
 * parent. */
static void merge_counts(bool final)
{
    g_opened = g_open_failed = g_open_inflight = g_dropped = 0;
    memset(g_open_status, 0, sizeof(g_open_status));
    g_received = g_dups = g_unknown = 0;
    for (int c = 0; c < opt.procs; c++) {
        const counts *n = final ? &g_sh.slots[c].final : &g_sh.slots[c].open;
        g_opened += n->opened;
        g_open_failed += n->open_failed;
        for (int i = 0; i < 6; i++)
            g_open_status[i] += n->open_status[i];
        g_open_inflight += n->unanswered;
        g_dropped += n->dropped;
        g_received += n->received;
        g_dups += n->dups;
        g_unknown += n->unknown;
    }
}

/* Wait for the children's open reports, at most --setup-timeout (plus
 * GRACE_NS) after t0, and take their counts; exit 2 when one died or did
 * not report. Runs on the parent. */
static void wait_open_reports(int64_t t0)
{
    if (!wait_children(children_opened, t0 + (int64_t)opt.setup_timeout_s * 1000000000 + GRACE_NS))
        fail_children("processes did not report their streams opened in time");
    if (g_child_failed)
        fail_children("a process died while opening its streams");
    merge_counts(false);
}

/* Tell the children sending finished, wait until they ended (and the POSTs
 * are answered, at most until the drain end), then take over their final
 * counts, samples, open streams per user and arrivals per message as if
 * this process had run the streams; exit 2 when a child died or hung. Runs
 * on the parent. */
static void drain_children(int64_t t_send_end)
{
    size_t n = 0;

    atomic_store(&g_sh.hdr->sent, g_sent);
    atomic_store(&g_sh.hdr->send_end_ns, t_send_end);
    atomic_store_explicit(&g_sh.hdr->send_done, 1, memory_order_release);
    g_drain_end_ns = t_send_end + (int64_t)opt.drain_ms * 1000000;
    if (g_drain_end_ns > g_deadline_ns)
        g_drain_end_ns = g_deadline_ns;
    if (!wait_children(children_drained, g_drain_end_ns + GRACE_NS))
        fail_children("processes did not end after the drain");
    if (g_child_failed)
        fail_children("a process died before handing over its results");

    merge_counts(true);
    for (int c = 0; c < opt.procs; c++) {
        const slot *sl = &g_sh.slots[c];
        n += sl->final.nlat < sl->lat_cap ? sl->final.nlat : sl->lat_cap;
    }
    g_lat = xcalloc(n, sizeof(*g_lat));
    g_caplat = n;
    for (int c = 0; c < opt.procs; c++) {
        const slot *sl = &g_sh.slots[c];
        size_t k = sl->final.nlat < sl->lat_cap ? sl->final.nlat : sl->lat_cap;
        memcpy(g_lat + g_nlat, g_sh.lat + sl->lat_off, k * sizeof(*g_lat));
        g_nlat += k;
        g_children_cpu_s += sl->final.cpu_s - sl->open.cpu_s;
    }
    for (int u = 0; u < opt.users; u++) {
        g_users[u].nstreams = 0;
        for (int c = 0; c < opt.procs; c++)
            g_users[u].nstreams += atomic_load(&g_sh.nstreams[(size_t)c * (size_t)opt.users + (size_t)u]);
    }
    for (int k = 0; k < opt.messages; k++)
        g_msgs[k].received = atomic_load(&g_sh.received[k]);
}

/* Free what spawn_children made (the children have exited). Runs on the
 * parent. */
static void free_children(void)
{
    for (int c = 0; c < opt.procs; c++) {
        if (g_children[c].ev)
            event_free(g_children[c].ev);
        close(g_children[c].fd);
    }
    free(g_children);
    munmap(g_sh.hdr, g_sh.size);
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
