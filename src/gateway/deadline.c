/*
 * The request deadline: a connection must deliver a whole first request
 * within http-request-timeout seconds, however slowly it trickles bytes.
 *
 * evhttp's own timeout (http-idle-timeout) restarts with every byte read, so
 * a client sending one header byte a second would hold its connection for
 * ever. Every new connection gets a timer; if no request has reached the
 * handler when it fires, the socket is shut down and evhttp frees the
 * connection on the error that follows. A reference on the bufferevent keeps
 * it valid until the timer has run, whatever evhttp did meanwhile.
 *
 * Loop thread only.
 */
#include <stdlib.h>
#include <sys/socket.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "gateway/gateway_int.h"

struct gw_conn {
    struct gw_conn *prev, *next;   /* gw->conns: connections still on the clock */
    kchat_gateway *gw;
    struct bufferevent *bev;       /* referenced until the timer ran */
    struct event *timer;
    bool seen;                     /* a request reached the handler */
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
    event_free(c->timer);
    bufferevent_decref(c->bev);
    free(c);
}

/* The deadline of @p arg's connection: shut it down if no request came.
 * @locality loop thread (libevent timer callback) */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_conn *c = arg;
    evutil_socket_t sock = bufferevent_getfd(c->bev);

    (void)fd;
    (void)what;
    if (!c->seen && sock >= 0) {
        shutdown(sock, SHUT_RDWR);
        c->gw->counters.request_deadline++;
    }
    conn_release(c);
}

/* evhttp's bufferevent callback: a new connection, with its deadline.
 * @locality loop thread (evhttp accept callback) */
static struct bufferevent *bev_new(struct event_base *base, void *arg)
{
    kchat_gateway *gw = arg;
    struct timeval tv = {gw->cfg->http_request_timeout, 0};
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
    bufferevent_incref(bev);
    c->next = gw->conns;
    if (gw->conns)
        gw->conns->prev = c;
    gw->conns = c;
    evtimer_add(c->timer, &tv);
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
            c->seen = true;
            return;
        }
}

void kchat__gw_deadline_release(kchat_gateway *gw)
{
    while (gw->conns)
        conn_release(gw->conns);
}
