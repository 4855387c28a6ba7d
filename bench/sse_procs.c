/*
 * bench/sse_procs.c - --procs > 1 of the event-stream benchmark
 * (bench/sse.c): the shared region (MAP_SHARED|MAP_ANONYMOUS), spawning the
 * children, each with a pipe to the parent, child_main(), reaping the
 * children and merging their counts and latency samples on the parent.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>

#include "sse.h"

/* what the parent allows its children beyond their own bounds (reporting) */
#define GRACE_NS ((int64_t)10 * 1000000000)

/* The shared region and the children: see their types in sse.h. */
shared g_sh;
int g_proc; /* this process's child index (0 with one process) */
bool g_is_child;
pid_t g_parent_pid;
child *g_children;
static int g_children_left;
bool g_child_failed; /* a child died without handing over its results */
double g_children_cpu_s;
static int64_t g_drain_end_ns;

/* ---------------------------------------------------------------------- */
/* processes (--procs > 1)                                                 */
/* ---------------------------------------------------------------------- */

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
_Noreturn void fail_children(const char *why)
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
bool spawn_children(void)
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
void wait_open_reports(int64_t t0)
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
void drain_children(int64_t t_send_end)
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
void free_children(void)
{
    for (int c = 0; c < opt.procs; c++) {
        if (g_children[c].ev)
            event_free(g_children[c].ev);
        close(g_children[c].fd);
    }
    free(g_children);
    munmap(g_sh.hdr, g_sh.size);
}
