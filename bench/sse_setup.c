/*
 * bench/sse_setup.c - the HTTP client of the event-stream benchmark
 * (bench/sse.c): the pool of keep-alive connections, requests and their
 * responses (new_conn() also on the children, for their streams); and the
 * setup (steps 1-2): register and log in the users, make friends, create
 * the rooms, on the parent.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

#include "sse.h"

user *g_users;
room *g_rooms;
struct evhttp_connection **g_pool;
static int g_pool_next;

static int g_outstanding; /* setup requests in flight */
static int g_setup_errors;

/* ---------------------------------------------------------------------- */
/* HTTP client                                                             */
/* ---------------------------------------------------------------------- */

struct evhttp_connection *pool_conn(void)
{
    struct evhttp_connection *c = g_pool[g_pool_next];
    g_pool_next = (g_pool_next + 1) % opt.conns;
    return c;
}

struct evhttp_connection *new_conn(void)
{
    struct evhttp_connection *c = evhttp_connection_base_new(g_base, NULL, g_host, (unsigned short)g_port);
    if (c) {
        evhttp_connection_set_timeout(c, 600);
        evhttp_connection_set_retries(c, 0);
    }
    return c;
}

/* Make a request; body NULL for none. false when it could not be queued. */
bool http_call(struct evhttp_connection *c, enum evhttp_cmd_type method, const char *path,
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

int resp_code(struct evhttp_request *req)
{
    return req ? evhttp_request_get_response_code(req) : 0;
}

void resp_body(struct evhttp_request *req, char *out, size_t cap)
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

/* The JSON array of room @p rm's members but its creator, then "}", into
 * @p out (@p size bytes): the end of a body naming them as friendId. */
static void friend_ids(const room *rm, char *out, size_t size)
{
    size_t n = (size_t)snprintf(out, size, "[");

    for (int k = 1; k < rm->nmembers && n < size; k++)
        n += (size_t)snprintf(out + n, size - n, "%s\"%s\"", k > 1 ? "," : "",
                              g_users[rm->members[k]].id);
    if (n < size)
        snprintf(out + n, size - n, "]}");
}

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

bool do_setup(void)
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
        size_t n = (size_t)snprintf(body, sizeof(body), "{\"friendId\":");
        friend_ids(rm, body + n, sizeof(body) - n);
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
        size_t n = (size_t)snprintf(body, sizeof(body), "{\"roomName\":\"sse-%d\",\"friendId\":", r);
        friend_ids(rm, body + n, sizeof(body) - n);
        if (!http_call(pool_conn(), EVHTTP_REQ_POST, "/api/rooms", g_users[rm->members[0]].cookie,
                       body, on_room, (void *)(intptr_t)r))
            return false;
        g_outstanding++;
    }
    return setup_phase("add-room", t0);
}
