/* The operations listener (include/kchat/ops_http.h). */
#include "kchat/ops_http.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>

#include "kchat/error.h"

/* A listener: its own event base and thread. */
struct kchat_ops_http {
    struct event_base *base;
    struct evhttp *http;
    pthread_t thread;
    kchat_metrics_fn metrics;
    kchat_ready_fn ready;
    void *arg;
};

/* Answer @p req with @p body as @p ctype.
 * @locality the listener's thread */
static void send_text(struct evhttp_request *req, int code, const char *reason,
                      const char *ctype, const char *body, size_t len)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add(b, body, len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
}

/* Every request: /healthz, /readyz, /metrics, or 404/405.
 * @locality the listener's thread (evhttp callback) */
static void on_request(struct evhttp_request *req, void *arg)
{
    kchat_ops_http *h = arg;
    const char *path = evhttp_request_get_uri(req);
    char *text = NULL;
    size_t len = 0;
    FILE *out;

    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        send_text(req, 405, "Method Not Allowed", "text/plain", "GET only\n", 9);
    } else if (!strcmp(path, "/healthz")) {
        send_text(req, 200, "OK", "text/plain", "ok\n", 3);
    } else if (!strcmp(path, "/readyz")) {
        if (h->ready == NULL || h->ready(h->arg))
            send_text(req, 200, "OK", "text/plain", "ready\n", 6);
        else
            send_text(req, 503, "Service Unavailable", "text/plain", "not ready\n", 10);
    } else if (!strcmp(path, "/metrics") && (out = open_memstream(&text, &len)) != NULL) {
        h->metrics(h->arg, out);
        fclose(out);
        send_text(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text, len);
        free(text);
    } else {
        send_text(req, 404, "Not Found", "text/plain", "not found\n", 10);
    }
}

/* Runs the event base until kchat_ops_http_stop() ends it.
 * @locality the listener's thread (pthread_create() by kchat_ops_http_start()) */
static void *ops_main(void *arg)
{
    kchat_ops_http *h = arg;
    event_base_dispatch(h->base);
    return NULL;
}

/* @p addr split into a host (non-empty, shorter than @p size) and a port
 * of 0 to 65535; false if it is not `host:port`. */
static bool split_addr(const char *addr, char *host, size_t size, uint16_t *port)
{
    const char *colon = strrchr(addr, ':');
    char *end;
    long p;

    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= size)
        return false;
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || p < 0 || p > 65535)
        return false;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    *port = (uint16_t)p;
    return true;
}

int kchat_ops_http_start(const char *addr, kchat_metrics_fn metrics, kchat_ready_fn ready,
                         void *arg, kchat_ops_http **out, char *errstr, size_t errstr_size)
{
    kchat_ops_http *h;
    char host[256];
    uint16_t port;
    int rc = KCHAT_EIO;

    if (!split_addr(addr, host, sizeof(host), &port)) {
        snprintf(errstr, errstr_size, "metrics address must be host:port, got \"%s\"", addr);
        return KCHAT_ECONFIG;
    }
    if ((h = calloc(1, sizeof(*h))) == NULL)
        return KCHAT_ENOMEM;
    evthread_use_pthreads();   /* before the base: the stop comes from another thread */
    h->metrics = metrics;
    h->ready = ready;
    h->arg = arg;
    if ((h->base = event_base_new()) == NULL || (h->http = evhttp_new(h->base)) == NULL) {
        snprintf(errstr, errstr_size, "cannot set up libevent");
        rc = KCHAT_ENOMEM;
        goto err_free;
    }
    evhttp_set_gencb(h->http, on_request, h);
    evhttp_set_timeout(h->http, 10);
    if (evhttp_bind_socket(h->http, host, port) != 0) {
        snprintf(errstr, errstr_size, "cannot listen on %s", addr);
        goto err_free;
    }
    if (pthread_create(&h->thread, NULL, ops_main, h) != 0) {
        snprintf(errstr, errstr_size, "cannot start the metrics thread");
        goto err_free;
    }
    *out = h;
    return KCHAT_OK;

err_free:
    if (h->http)
        evhttp_free(h->http);
    if (h->base)
        event_base_free(h->base);
    free(h);
    return rc;
}

void kchat_ops_http_stop(kchat_ops_http *h)
{
    if (h == NULL)
        return;
    /* Not event_base_loopbreak(): the loop forgets a break asked for before
     * it started, and a stop right after the start would wait for ever.
     * loopexit is an event, run whenever the loop gets to it. */
    event_base_loopexit(h->base, NULL);
    pthread_join(h->thread, NULL);
    evhttp_free(h->http);
    event_base_free(h->base);
    free(h);
}
