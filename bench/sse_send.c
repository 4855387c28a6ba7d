/*
 * bench/sse_send.c - the sending of the event-stream benchmark
 * (bench/sse.c): step 4, the chat messages POSTed open loop at --rate,
 * round robin over the rooms, each with its send time and the events it
 * will cause. Runs on the parent.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include <event2/http.h>
#include <event2/util.h>

#include "sse.h"

msg *g_msgs;
int g_sent, g_post_ok, g_post_failed, g_post_pending;
int64_t g_expected;
int64_t *g_post_lat;
size_t g_npost_lat;
int64_t g_send_t0;

/* ---------------------------------------------------------------------- */
/* sending                                                                 */
/* ---------------------------------------------------------------------- */

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

void send_tick(evutil_socket_t fd, short what, void *arg)
{
    int64_t due;

    (void)fd, (void)what, (void)arg;
    due = (int64_t)((double)(now_ns() - g_send_t0) / 1e9 * opt.rate) + 1;
    if (due > opt.messages)
        due = opt.messages;
    while (g_sent < due)
        send_one();
}

bool sends_done(void)
{
    return g_sent >= opt.messages || g_child_failed;
}

bool drained(void)
{
    return g_post_pending == 0 && g_received >= g_expected;
}
