/* The gateway's HTTP front, on the loop thread: evhttp's limits, the one
 * request callback that sends each path to its handler (api.c, metrics.c,
 * static.c), and how every reply is written and counted. */
#include "gateway/gateway_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "kchat/codec.h"
#include "kchat/error.h"

#define GW_READ_BODY_MAX (1024 * 1024)

static const char *reason(int code)
{
    switch (code) {
    case 200: return "OK";
    case 201: return "Created";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

void kchat__gw_reply(kchat_gateway *gw, struct evhttp_request *req, int route, int code,
                     const char *ctype, struct evbuffer *body, double started)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    if (ctype)
        evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    if (route != GW_ROUTE_static)
        evhttp_add_header(h, "Cache-Control", "no-store");
    /* A HEAD reply has no body, but libevent 2.1 writes the one it is
     * given (without a Content-Length): the client would read it as the
     * start of the next reply (tests/fuzz/regress/http-001). And libevent
     * adds Content-Length only for HTTP/1.x, yet keeps an "HTTP/0.9" one
     * with "Connection: keep-alive" open: always say it (http-002). */
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        body = NULL;
    } else {
        char len[24];
        snprintf(len, sizeof(len), "%zu", body ? evbuffer_get_length(body) : (size_t)0);
        evhttp_add_header(h, "Content-Length", len);
    }
    evhttp_send_reply(req, code, reason(code), body);
    kchat__gw_count(gw, route, code, started);
}

void kchat__gw_reply_json(kchat_gateway *gw, struct evhttp_request *req, int route, int code,
                          json_t *v, double started)
{
    struct evbuffer *b = evbuffer_new();
    char *out = NULL;
    size_t len = 0;

    if (b && kchat_codec_encode(KCHAT_FMT_JSON, v, &out, &len) == KCHAT_OK)
        evbuffer_add(b, out, len);
    free(out);
    kchat__gw_reply(gw, req, route, code, "application/json", b, started);
    if (b)
        evbuffer_free(b);
}

void kchat__gw_reply_error(kchat_gateway *gw, struct evhttp_request *req, int route, int code,
                           const char *err, const char *msg, double started)
{
    json_t *v = json_pack("{s:b,s:s,s:s}", "isSuccess", 0, "errorCode", err, "errorMessage", msg);

    kchat__gw_reply_json(gw, req, route, code, v, started);
    json_decref(v);
}

/* evhttp's callback for every request.
 * @locality loop thread (libevent callback) */
static void gencb(struct evhttp_request *req, void *arg)
{
    kchat_gateway *gw = arg;
    double started = kchat__gw_now();
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;

    kchat__gw_deadline_seen(gw, req);
    if (path == NULL || path[0] == '\0')
        path = "/";
    if (!strncmp(path, "/api/", 5) || !strcmp(path, "/api"))
        kchat__gw_api_handle(gw, req, path, started);
    else if (!strcmp(path, "/healthz"))
        kchat__gw_healthz(gw, req, started);
    else if (!strcmp(path, "/readyz"))
        kchat__gw_readyz(gw, req, started);
    else if (!strcmp(path, "/metrics"))
        kchat__gw_metrics(gw, req, started);
    else
        kchat__gw_static_handle(gw, req, path, started);
}

void kchat__gw_http_setup(kchat_gateway *gw)
{
    /* Bodies up to 1 MiB are read so that anything over 64 KiB up to there
     * gets the JSON 413 of PROTOCOL.md; libevent 2.1 refuses anything larger
     * itself, also with 413 but with its own HTML body (it has no hook to
     * change that), before reading it. */
    evhttp_set_max_body_size(gw->http, GW_READ_BODY_MAX);
    evhttp_set_max_headers_size(gw->http, 16 * 1024);
    evhttp_set_timeout(gw->http, gw->cfg->http_idle_timeout);
    evhttp_set_allowed_methods(gw->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                             EVHTTP_REQ_HEAD | EVHTTP_REQ_DELETE);
    evhttp_set_default_content_type(gw->http, "application/json");
    evhttp_set_gencb(gw->http, gencb, gw);
    kchat__gw_deadline_setup(gw);
}

void kchat__gw_shutdown_http(kchat_gateway *gw)
{
    kchat__gw_pending_cancel_all(gw);
    kchat__gw_streams_close_all(gw);
}
