/*
 * The request deadline: a connection must deliver each whole request within
 * http-request-timeout seconds, however slowly it trickles bytes: the first
 * from the moment it connects, each next one from its first byte.
 *
 * evhttp's own timeout (http-idle-timeout) restarts with every byte read, so
 * a client sending one header byte a second would hold its connection for
 * ever. Every new connection gets a timer; if no request has reached the
 * handler when it fires, the socket is shut down and evhttp frees the
 * connection on the error that follows. Once a request is answered the
 * connection is idle (evhttp's idle timeout is in charge) until a byte of the
 * next request arrives, which starts the deadline again (issue 12: the
 * deadline used to cover only the first request). A reference on the
 * bufferevent keeps it valid until a timer run finds that evhttp has let go
 * of it (its callbacks are gone); while a request is in the handler or the
 * connection is idle, the timer only comes back to look.
 *
 * Loop thread only.
 */
#include <stdlib.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "gateway/gateway_int.h"

enum conn_state {
    CONN_DUE,        /* a request is due: the deadline runs */
    CONN_SERVED,     /* a request is in the handler (a call, an event stream) */
    CONN_IDLE,       /* answered; no byte of the next request yet */
};

struct gw_conn {
    struct gw_conn *prev, *next;   /* gw->conns: connections still watched */
    kchat_gateway *gw;
    struct bufferevent *bev;       /* referenced until released */
    struct event *timer;
    struct evbuffer_cb_entry *input_cb; /* on the input buffer: a byte came */
    enum conn_state state;
};

/* Take @p c off gw->conns and free it.
 * @locality loop thread (or the owner once the loop has ended) */
static void conn_release(struct gw_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        c->gw->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->input_cb)
        evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->input_cb);
    event_free(c->timer);
    bufferevent_decref(c->bev);
    free(c);
}

/* (Re)start @p c's timer: http-request-timeout seconds. */
static void conn_arm(struct gw_conn *c)
{
    struct timeval tv = {c->gw->cfg->http_request_timeout, 0};

    evtimer_add(c->timer, &tv);
}

/* Whether evhttp has let go of @p c's connection: bufferevent_free() clears
 * every callback (our reference keeps the rest valid). Not the read
 * callback alone: evhttp clears that one while it writes a response, and an
 * event stream writes for as long as it is open (regression 0051: a stream
 * open past the deadline had its record freed under it). */
static bool conn_gone(const struct gw_conn *c)
{
    bufferevent_data_cb rd = NULL, wr = NULL;
    bufferevent_event_cb ev = NULL;

    bufferevent_getcb(c->bev, &rd, &wr, &ev, NULL);
    return rd == NULL && wr == NULL && ev == NULL;
}

/* The deadline of @p arg's connection: shut it down if its request did not
 * come; forget it if evhttp has closed it; else look again later.
 * @locality loop thread (libevent timer callback) */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_conn *c = arg;
    evutil_socket_t sock = bufferevent_getfd(c->bev);

    (void)fd;
    (void)what;
    if (conn_gone(c) || sock < 0) {
        conn_release(c);
    } else if (c->state == CONN_DUE) {
        shutdown(sock, SHUT_RDWR);
        c->gw->counters.request_deadline++;
        conn_release(c);
    } else {
        conn_arm(c);
    }
}

/* Bytes added to an idle connection's input: the next request started.
 * @locality loop thread (evbuffer callback, while evhttp reads) */
static void input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct gw_conn *c = arg;

    (void)buf;
    if (c->state == CONN_IDLE && info->n_added > 0) {
        c->state = CONN_DUE;
        conn_arm(c);
    }
}

/* A request of @p arg's connection was answered: idle until the next byte.
 * @locality loop thread (evhttp's on-complete callback) */
static void request_done_cb(struct evhttp_request *req, void *arg)
{
    struct gw_conn *c = arg;

    (void)req;
    c->state = CONN_IDLE;
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        c->state = CONN_DUE;   /* the next one is already here (pipelined) */
        conn_arm(c);
    }
}

/* evhttp's bufferevent callback: a new connection, with its deadline.
 * @locality loop thread (evhttp accept callback) */
static struct bufferevent *bev_new(struct event_base *base, void *arg)
{
    kchat_gateway *gw = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    struct gw_conn *c;

    if (bev == NULL)
        return NULL;
    if ((c = calloc(1, sizeof(*c))) == NULL ||
        (c->timer = evtimer_new(base, deadline_cb, c)) == NULL) {
        free(c);
        return bev;   /* served without a deadline rather than refused */
    }
    c->gw = gw;
    c->bev = bev;
    c->state = CONN_DUE;
    c->input_cb = evbuffer_add_cb(bufferevent_get_input(bev), input_cb, c);
    bufferevent_incref(bev);
    c->next = gw->conns;
    if (gw->conns)
        gw->conns->prev = c;
    gw->conns = c;
    conn_arm(c);
    return bev;
}

void kchat__gw_deadline_setup(kchat_gateway *gw)
{
    evhttp_set_bevcb(gw->http, bev_new, gw);
}

void kchat__gw_deadline_seen(kchat_gateway *gw, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;

    for (struct gw_conn *c = gw->conns; bev && c; c = c->next)
        if (c->bev == bev) {
            c->state = CONN_SERVED;
            evhttp_request_set_on_complete_cb(req, request_done_cb, c);
            return;
        }
}

void kchat__gw_deadline_release(kchat_gateway *gw)
{
    while (gw->conns)
        conn_release(gw->conns);
}
