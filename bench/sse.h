/*
 * bench/sse.h - what the files of the event-stream benchmark share (see
 * bench/sse.c for what it does and how the files divide it): its data
 * types, the shared-memory types of --procs, the options, the globals more
 * than one file uses and the functions that cross files.
 *
 * "Parent" is the process that runs main(); with --procs > 1 its children
 * run child_main(). "Only process" is the parent with --procs 1.
 */
#ifndef KCHAT_BENCH_SSE_H
#define KCHAT_BENCH_SSE_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>
#include <sys/types.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>

#define MAX_ERR_PRINT 8
#define MAX_PIDS 64

/* The shared region holds atomics that two processes use at once. */
#if ATOMIC_INT_LOCK_FREE != 2 || ATOMIC_LONG_LOCK_FREE != 2 || ATOMIC_LLONG_LOCK_FREE != 2
#error "bench/sse needs lock-free int and 64-bit atomics"
#endif

/* The command-line options (defaults in sse.c). */
typedef struct options {
    const char *url;
    int users, streams, rooms, group, messages, conns, open_inflight, procs;
    double rate;
    int duration_max_s, setup_timeout_s, drain_ms, settle_ms, verbose;
    long pids[MAX_PIDS]; /* --pid: the gateway's processes */
    int npids;
} options;

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
typedef struct shared {
    shared_hdr *hdr;
    slot *slots;               /* [procs] */
    _Atomic int64_t *sent_ns;  /* [messages] send time, 0 = not sent */
    _Atomic int64_t *received; /* [messages] arrivals over all children */
    _Atomic int *nstreams;     /* [procs][users] open streams per child and user */
    int64_t *lat;              /* [streams * messages] latency samples, ns */
    size_t size;
} shared;

/* --procs > 1, on the parent: its children. */
typedef struct child {
    pid_t pid;
    int fd; /* read end of its pipe */
    struct event *ev;
    bool open_reported, exited;
} child;

/* ---------------------------------------------------------------------- */
/* globals                                                                 */
/* ---------------------------------------------------------------------- */

/* sse.c: the options and the loop */
extern options opt;
extern struct event_base *g_base;
extern char g_host[256];
extern int g_port;
extern int64_t g_deadline_ns;
extern bool g_stopping;
extern struct event *g_tick;
extern const struct timeval g_tick_tv;

/* sse_setup.c: the users, the rooms and the POST connections */
extern user *g_users;
extern room *g_rooms;
extern struct evhttp_connection **g_pool;

/* sse_streams.c: this process's streams: all of them, or with --procs > 1
 * on child c streams c, c+N, c+2N, ... (none on the parent); and what
 * arrived on them */
extern stream *g_streams;
extern int g_nlocal; /* how many */
extern int g_open_inflight, g_opened, g_open_failed, g_dropped;
extern int g_open_status[6]; /* 0 = no response, 1xx..5xx */
extern int64_t g_received, g_dups, g_unknown;
extern int64_t *g_lat; /* ns, one per arrival */
extern size_t g_nlat, g_caplat;

/* sse_send.c: the messages sent and their POSTs */
extern msg *g_msgs;
extern int g_sent, g_post_ok, g_post_failed, g_post_pending;
extern int64_t g_expected;
extern int64_t *g_post_lat;
extern size_t g_npost_lat;
extern int64_t g_send_t0;

/* sse_procs.c: --procs > 1 */
extern shared g_sh;
extern int g_proc; /* this process's child index (0 with one process) */
extern bool g_is_child;
extern pid_t g_parent_pid;
extern child *g_children;
extern bool g_child_failed; /* a child died without handing over its results */
extern double g_children_cpu_s;

/* ---------------------------------------------------------------------- */
/* functions                                                               */
/* ---------------------------------------------------------------------- */

/* sse.c */

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t now_ns(void);
/* calloc that exits 2 on failure; a zero count still returns memory. */
void *xcalloc(size_t n, size_t sz);
/* The loop's 100 ms tick: passes a stop between parent and children. */
void tick_cb(evutil_socket_t fd, short what, void *arg);
/* Run the loop until *done says so, the deadline passes or SIGINT. */
bool run_until(bool (*done)(void), int64_t deadline);

/* sse_pidstat.c */

/* kB of VmRSS (or VmHWM) summed over the --pid processes, -1 if unknown. */
long proc_status_kb(const char *field);
/* CPU seconds summed over the --pid processes, -1 if unknown. */
double proc_cpu_s(void);
/* This process's own CPU seconds (user + system). */
double self_cpu_s(void);

/* sse_setup.c */

/* The next keep-alive connection of the pool, round robin. */
struct evhttp_connection *pool_conn(void);
/* A new connection to the gateway, NULL when it cannot make one. */
struct evhttp_connection *new_conn(void);
/* Make a request; body NULL for none. false when it could not be queued. */
bool http_call(struct evhttp_connection *c, enum evhttp_cmd_type method, const char *path,
               const char *cookie, const char *body,
               void (*cb)(struct evhttp_request *, void *), void *arg);
/* The response's HTTP status, 0 when none. */
int resp_code(struct evhttp_request *req);
/* Copy the response's body, cut to cap - 1 bytes, into out. */
void resp_body(struct evhttp_request *req, char *out, size_t cap);
/* Register and log in the users, make friends and rooms. Parent. */
bool do_setup(void);

/* sse_streams.c */

/* Streams of this process that did not answer (yet). */
int open_unanswered(void);
/* How many streams child c of --procs holds (all with one process). */
int streams_of(int c);
/* Set up this process's streams. Only process or child. */
void make_streams(void);
/* Open them and wait until each answered. Only process or child. */
void open_phase(int64_t t0);

/* sse_send.c */

/* The sender's timer: sends the messages due by now. Parent. */
void send_tick(evutil_socket_t fd, short what, void *arg);
/* Every message sent, or a child died. Parent. */
bool sends_done(void);
/* The POSTs answered and every expected event arrived. Only process. */
bool drained(void);

/* sse_procs.c (all on the parent) */

/* Drop the setup loop, map the shared region, fork the children. */
bool spawn_children(void);
/* Say why, kill the children left, reap them and exit 2. */
_Noreturn void fail_children(const char *why);
/* Wait for the children's streams to be answered; take their counts. */
void wait_open_reports(int64_t t0);
/* Say sending ended, wait for the children, merge their results. */
void drain_children(int64_t t_send_end);
/* Free what spawn_children made and unmap the shared region. */
void free_children(void);

#endif
