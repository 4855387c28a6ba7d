/* The gateway's HTTP front, on the loop thread: evhttp's limits, the one
 * request callback that sends each path to its handler (api.c, metrics.c,
 * static.c), and how every reply is written and counted. */
#include "gateway/gateway_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <jansson.h>

#include "kchat/codec.h"
#include "kchat/error.h"

#define GW_READ_BODY_MAX (1024 * 1024)

/* The chat page's policy: its own scripts, styles and calls only, and no
 * page may frame it (clickjacking). */
#define GW_CSP "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " \
               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; " \
               "frame-ancestors 'none'"

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
    case 501: return "Not Implemented";
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
    /* On every reply, the page's files and the API alike (docs/security.md,
     * "The gateway's edge"): a <meta> policy cannot say frame-ancestors. */
    evhttp_add_header(h, "Content-Security-Policy", GW_CSP);
    evhttp_add_header(h, "X-Frame-Options", "DENY");
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

/* Whether @p v is 1*DIGIT (RFC 9110 section 8.6): no sign, no space. */
static bool all_digits(const char *v)
{
    if (v == NULL || *v == '\0')
        return false;
    for (; *v; v++)
        if (*v < '0' || *v > '9')
            return false;
    return true;
}

/* The framing of @p req as RFC 9112 section 6.3 wants it, or why not:
 * every Content-Length 1*DIGIT and all of them the same, no
 * Transfer-Encoding together with one, and a Transfer-Encoding only as the
 * single word "chunked" (the one coding libevent decodes). evhttp framed
 * the body by the first Content-Length, so a request failing this is
 * answered and its connection closed before the rest is read as another
 * request (request smuggling).
 * @return NULL if the framing is sound, else the message of the 400/501;
 *         *code the status.
 * @locality loop thread */
static const char *bad_framing(struct evhttp_request *req, int *code)
{
    const struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *cl = NULL;
    int n_te = 0;

    *code = 400;
    for (const struct evkeyval *kv = h->tqh_first; kv; kv = kv->next.tqe_next) {
        if (!evutil_ascii_strcasecmp(kv->key, "Content-Length")) {
            if (!all_digits(kv->value))
                return "Content-Length must be digits only.";
            if (cl && strcmp(cl, kv->value))
                return "Two different Content-Length headers.";
            cl = kv->value;
        } else if (!evutil_ascii_strcasecmp(kv->key, "Transfer-Encoding")) {
            if (++n_te > 1 || evutil_ascii_strcasecmp(kv->value, "chunked")) {
                *code = 501;
                return "Only Transfer-Encoding: chunked is implemented.";
            }
        }
    }
    if (cl && n_te)
        return "Content-Length and Transfer-Encoding together.";
    return NULL;
}

/* evhttp's callback for every request.
 * @locality loop thread (libevent callback) */
static void gencb(struct evhttp_request *req, void *arg)
{
    kchat_gateway *gw = arg;
    double started = kchat__gw_now();
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;

    const char *why;
    int code;

    kchat__gw_deadline_seen(gw, req);
    if ((why = bad_framing(req, &code)) != NULL) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        kchat__gw_reply_error(gw, req, GW_ROUTE_not_found, code,
                              code == 400 ? "BAD_REQUEST" : "NOT_IMPLEMENTED", why, started);
        return;
    }
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
