/*
 * The Origin check of state-changing calls (docs/security.md, "The
 * gateway's edge"): a page of another origin, even of the same site (another
 * port of the same host, where SameSite=Strict cookies still go), must not
 * make a logged-in browser post, put or delete.
 *
 * Loop thread only.
 */
#include "gateway/gateway_int.h"

#include <string.h>

#include <event2/http.h>
#include <event2/util.h>

/* Whether @p origin is one of the comma-separated origins of @p list. */
static bool listed(const char *list, const char *origin)
{
    size_t olen = strlen(origin);

    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        while (len && (*p == ' ' || *p == '\t'))
            p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '/'))
            len--;
        if (len == olen && len && !evutil_ascii_strncasecmp(p, origin, len))
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

/* Whether @p origin is http:// or https:// followed by exactly @p host. */
static bool same_origin(const char *origin, const char *host)
{
    const char *rest;

    if (host == NULL || *host == '\0')
        return false;
    if (!evutil_ascii_strncasecmp(origin, "http://", 7))
        rest = origin + 7;
    else if (!evutil_ascii_strncasecmp(origin, "https://", 8))
        rest = origin + 8;
    else
        return false;
    return !evutil_ascii_strcasecmp(rest, host);
}

bool kchat__gw_origin_ok(kchat_gateway *gw, struct evhttp_request *req)
{
    const struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *origin = evhttp_find_header(h, "Origin");
    const char *site = evhttp_find_header(h, "Sec-Fetch-Site");

    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_POST:
    case EVHTTP_REQ_PUT:
    case EVHTTP_REQ_DELETE:
        break;
    default:
        return true;   /* reads change nothing; the event stream is a read */
    }
    if (origin && listed(gw->cfg->allow_origin, origin))
        return true;
    if (site && !evutil_ascii_strcasecmp(site, "cross-site"))
        return false;
    if (origin == NULL)
        return true;   /* not a browser's cross-origin call: curl, scripts, tests */
    return same_origin(origin, evhttp_find_header(h, "Host"));
}
