/*
 * The API of PROTOCOL.md section 8, on the loop thread: which path and
 * method make which Kafka request, who the caller is (the kchat_session
 * cookie, or the body's userId for sign-up and login), and how the
 * backend's answer becomes an HTTP answer (status, cookie, Retry-After, or
 * the start of an event stream).
 */
#include "gateway/gateway_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "kchat/codec.h"
#include "kchat/error.h"

#define GW_MAX_BODY (64 * 1024)

/* ---- identity ---- */

/* The `kchat_session` cookie split into user id and session id; false if
 * there is none or it is malformed (@p user and @p session may then hold
 * anything).
 * @locality loop thread (it reads @p req) */
static bool session_from_cookie(struct evhttp_request *req, char *user, size_t ulen,
                                char *session, size_t slen)
{
    const char *c = evhttp_find_header(evhttp_request_get_input_headers(req), "Cookie");
    const char *p, *end, *dot;

    if (c == NULL)
        return false;
    for (p = c; (p = strstr(p, "kchat_session=")) != NULL; p++)
        if (p == c || p[-1] == ' ' || p[-1] == ';')
            break;
    if (p == NULL)
        return false;
    p += strlen("kchat_session=");
    end = p + strcspn(p, "; ");
    for (dot = end; dot > p && dot[-1] != '.'; dot--)
        ;
    if (dot <= p + 1 || dot == end)
        return false;
    if (!kchat_valid_id(p, (size_t)(dot - 1 - p)) || (size_t)(dot - 1 - p) >= ulen ||
        (size_t)(end - dot) >= slen || end - dot > 128)
        return false;
    memcpy(user, p, (size_t)(dot - 1 - p));
    user[dot - 1 - p] = '\0';
    memcpy(session, dot, (size_t)(end - dot));
    session[end - dot] = '\0';
    for (char *s = session; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
            return false;
    return true;
}

/* Set the session cookie, or clear it when @p user is NULL.
 * @locality loop thread */
static void set_cookie(kchat_gateway *gw, struct evhttp_request *req, const char *user,
                       const char *session)
{
    char buf[512];

    /* Max-Age: the session's idle time (--session-idle), so that the browser
     * forgets the cookie when the backend would have expired the session */
    if (user)
        snprintf(buf, sizeof(buf),
                 "kchat_session=%s.%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%ld", user,
                 session, gw->cfg->session_idle);
    else
        snprintf(buf, sizeof(buf),
                 "kchat_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Set-Cookie", buf);
}

/* ---- routes ---- */

/* What a path and method ask for. */
typedef struct api_route {
    int route;              /* GW_ROUTE_*; GW_ROUTE_not_found: no such path */
    int kind;               /* GW_PEND_API, or GW_PEND_SSE for the event stream */
    kchat_op op;            /* the Kafka request it makes */
    bool method_ok;         /* the method is allowed on this path */
    bool needs_auth;        /* the cookie names the caller (else the body's userId) */
    bool has_body, body_optional;
    char room[72];          /* /api/rooms/ID/...: the room id of the path; "" if not valid */
} api_route;

/* Whether @p route names its room in the path (/api/rooms/ID/...). */
static bool has_room(int route)
{
    return route == GW_ROUTE_messages_get || route == GW_ROUTE_messages_post ||
           route == GW_ROUTE_room_read || route == GW_ROUTE_room_invite ||
           route == GW_ROUTE_room_leave;
}

/* The room id of /api/rooms/ID/... (@p id .. @p slash), decoded; "" if it
 * is not a valid id. */
static void room_from_path(const char *id, const char *slash, char *room, size_t size)
{
    char *dec;
    size_t dlen = 0;
    char tmp[256];

    room[0] = '\0';
    if ((size_t)(slash - id) >= sizeof(tmp))
        return;
    memcpy(tmp, id, (size_t)(slash - id));
    tmp[slash - id] = '\0';
    if ((dec = evhttp_uridecode(tmp, 0, &dlen)) != NULL) {
        if (kchat_valid_id(dec, dlen) && dlen < size)
            memcpy(room, dec, dlen + 1);
        free(dec);
    }
}

/* The routes of PROTOCOL.md section 8. */
static void route_match(const char *path, enum evhttp_cmd_type cmd, api_route *r)
{
    bool get = cmd == EVHTTP_REQ_GET, post = cmd == EVHTTP_REQ_POST, put = cmd == EVHTTP_REQ_PUT;
    bool del = cmd == EVHTTP_REQ_DELETE;

    memset(r, 0, sizeof(*r));
    r->route = GW_ROUTE_not_found, r->kind = GW_PEND_API, r->op = KCHAT_OP__COUNT;
    r->needs_auth = true;
    if (!strcmp(path, "/api/users")) {
        r->route = GW_ROUTE_users, r->op = KCHAT_OP_USER_ADD, r->method_ok = post;
        r->needs_auth = false, r->has_body = true;
    } else if (!strcmp(path, "/api/login")) {
        r->route = GW_ROUTE_login, r->op = KCHAT_OP_LOGIN, r->method_ok = post;
        r->needs_auth = false, r->has_body = true;
    } else if (!strcmp(path, "/api/logout")) {
        r->route = GW_ROUTE_logout, r->op = KCHAT_OP_LOGOUT, r->method_ok = post;
        r->has_body = true, r->body_optional = true;
    } else if (!strcmp(path, "/api/status")) {
        r->route = GW_ROUTE_status, r->op = KCHAT_OP_STATUS, r->method_ok = put;
        r->has_body = true;
    } else if (!strcmp(path, "/api/friends")) {
        r->route = get ? GW_ROUTE_friends_get : GW_ROUTE_friends_post;
        r->op = get ? KCHAT_OP_SEARCH_FRIEND : KCHAT_OP_ADD_FRIEND;
        r->method_ok = get || post, r->has_body = post;
    } else if (!strcmp(path, "/api/rooms")) {
        r->route = get ? GW_ROUTE_rooms_get : GW_ROUTE_rooms_post;
        r->op = get ? KCHAT_OP_SEARCH_ROOM : KCHAT_OP_ADD_ROOM;
        r->method_ok = get || post, r->has_body = post;
    } else if (!strcmp(path, "/api/events")) {
        /* The stream opens once a session-checked request succeeded. */
        r->route = GW_ROUTE_events, r->op = KCHAT_OP_SEARCH_FRIEND, r->method_ok = get;
        r->kind = GW_PEND_SSE;
    } else if (!strncmp(path, "/api/rooms/", 11)) {
        const char *id = path + 11, *slash = strchr(id, '/');
        if (slash == NULL || slash == id)
            return;
        if (!strcmp(slash, "/messages")) {
            r->route = get ? GW_ROUTE_messages_get : GW_ROUTE_messages_post;
            r->op = get ? KCHAT_OP_HISTORY : KCHAT_OP_ADD_CHAT;
            r->method_ok = get || post, r->has_body = post;
        } else if (!strcmp(slash, "/read")) {           /* v1.1 */
            r->route = GW_ROUTE_room_read, r->op = KCHAT_OP_ROOM_READ;
            r->method_ok = post, r->has_body = true;
        } else if (!strcmp(slash, "/members")) {
            r->route = GW_ROUTE_room_invite, r->op = KCHAT_OP_ROOM_INVITE;
            r->method_ok = post, r->has_body = true;
        } else if (!strcmp(slash, "/members/me")) {     /* no body: the caller leaves */
            r->route = GW_ROUTE_room_leave, r->op = KCHAT_OP_ROOM_LEAVE;
            r->method_ok = del;
        } else {
            return;
        }
        room_from_path(id, slash, r->room, sizeof(r->room));
    }
}

/* 405 with the Allow header of the path. @locality loop thread */
static void method_not_allowed(kchat_gateway *gw, struct evhttp_request *req, int route,
                               double started)
{
    const char *allow = route == GW_ROUTE_status ? "PUT"
                        : route == GW_ROUTE_events ? "GET"
                        : route == GW_ROUTE_room_leave ? "DELETE"
                        : (route == GW_ROUTE_users || route == GW_ROUTE_login ||
                           route == GW_ROUTE_logout || route == GW_ROUTE_room_read ||
                           route == GW_ROUTE_room_invite) ? "POST" : "GET, POST";

    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    kchat__gw_reply_error(gw, req, route, 405, "METHOD_NOT_ALLOWED",
                          "Method not allowed on this path.", started);
}

/* ---- request bodies ---- */

/* Whether @p req says its body is application/json.
 * @locality loop thread */
static bool is_json_ctype(struct evhttp_request *req)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    size_t n = strlen("application/json");

    if (ct == NULL)
        return false;
    while (*ct == ' ')
        ct++;
    return !strncasecmp(ct, "application/json", n) &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* The request body as a JSON object; NULL after answering the request.
 * @locality loop thread */
static json_t *read_body(kchat_gateway *gw, struct evhttp_request *req, int route,
                         bool optional, double started)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    json_t *v = NULL;

    if (optional && len == 0)
        return json_object();
    if (!is_json_ctype(req)) {
        kchat__gw_reply_error(gw, req, route, 415, "UNSUPPORTED_MEDIA_TYPE",
                              "The body must be application/json.", started);
        return NULL;
    }
    if (len > GW_MAX_BODY) {
        kchat__gw_reply_error(gw, req, route, 413, "TOO_LARGE", "The body is over 64 KiB.",
                              started);
        return NULL;
    }
    if (kchat_codec_decode(KCHAT_FMT_JSON, evbuffer_pullup(in, -1), len, &v) != KCHAT_OK ||
        !json_is_object(v)) {
        json_decref(v);
        kchat__gw_reply_error(gw, req, route, 400, "BAD_REQUEST",
                              "The body must be a JSON object.", started);
        return NULL;
    }
    return v;
}

/* Query parameter @p name, if given, as an integer in @p body; *bad when
 * it is not an integer. */
static void query_int(const struct evkeyvalq *q, const char *name, json_t *body, bool *bad)
{
    const char *v = evhttp_find_header(q, name);
    char *end;
    long long n;

    if (v == NULL || v[0] == '\0')
        return;
    errno = 0;
    n = strtoll(v, &end, 10);
    if (errno || *end != '\0') {
        *bad = true;
        return;
    }
    json_object_set_new(body, name, json_integer(n));
}

/* beforeSeq and limit of GET /api/rooms/ID/messages into @p body; false if
 * they are not integers.
 * @locality loop thread */
static bool history_query(struct evhttp_request *req, json_t *body)
{
    struct evkeyvalq q;
    const char *qs = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    bool bad = false;

    if (evhttp_parse_query_str(qs ? qs : "", &q) != 0)
        bad = true;
    query_int(&q, "beforeSeq", body, &bad);
    query_int(&q, "limit", body, &bad);
    evhttp_clear_headers(&q);
    return !bad;
}

/* Who asks, into @p body: the body's userId for sign-up and login (then
 * also into @p user, with no session), else the cookie's user as userId
 * (writerId for a message), and the room of the /api/rooms/ID/... routes
 * (and the query of the history). False after answering the request.
 * @locality loop thread */
static bool fill_body(kchat_gateway *gw, struct evhttp_request *req, const api_route *r,
                      char *user, size_t ulen, char *session, json_t *body, double started)
{
    if (!r->needs_auth) {
        json_t *uid = json_object_get(body, "userId");
        if (!json_is_string(uid) ||
            !kchat_valid_id(json_string_value(uid), json_string_length(uid))) {
            kchat__gw_reply_error(gw, req, r->route, 400, "BAD_REQUEST",
                                  "userId must be 1 to 64 characters of [A-Za-z0-9_.-].", started);
            return false;
        }
        snprintf(user, ulen, "%s", json_string_value(uid));
        session[0] = '\0';
    } else if (r->op == KCHAT_OP_ADD_CHAT) {
        json_object_del(body, "userId");
        json_object_set_new(body, "writerId", json_string(user));
        json_object_set_new(body, "roomId", json_string(r->room));
    } else {
        json_object_set_new(body, "userId", json_string(user));
        if (has_room(r->route))
            json_object_set_new(body, "roomId", json_string(r->room));
        if (r->op == KCHAT_OP_HISTORY) {
            if (!history_query(req, body)) {
                kchat__gw_reply_error(gw, req, r->route, 400, "BAD_REQUEST",
                                      "beforeSeq and limit must be integers.", started);
                return false;
            }
        }
    }
    return true;
}

void kchat__gw_api_handle(kchat_gateway *gw, struct evhttp_request *req, const char *path,
                          double started)
{
    char user[72] = "", session[136] = "";
    bool authed = session_from_cookie(req, user, sizeof(user), session, sizeof(session));
    api_route r;
    gw_login login;
    json_t *body;

    route_match(path, evhttp_request_get_command(req), &r);
    if (has_room(r.route) && r.room[0] == '\0' && r.method_ok) {
        kchat__gw_reply_error(gw, req, r.route, 400, "BAD_REQUEST", "The room id is not valid.",
                              started);
        return;
    }
    if (r.route == GW_ROUTE_not_found) {
        kchat__gw_reply_error(gw, req, r.route, 404, "NOT_FOUND", "No such path.", started);
        return;
    }
    if (!r.method_ok) {
        method_not_allowed(gw, req, r.route, started);
        return;
    }
    if (!kchat__gw_origin_ok(gw, req)) {
        kchat__gw_reply_error(gw, req, r.route, 403, "FORBIDDEN",
                              "Calls from this origin are not allowed.", started);
        return;
    }
    if (!r.has_body)
        body = json_object();
    else if ((body = read_body(gw, req, r.route, r.body_optional, started)) == NULL)
        return;
    if (r.needs_auth && !authed) {
        kchat__gw_reply_error(gw, req, r.route, 401, "UNAUTHENTICATED", "Log in first.", started);
        goto out;
    }
    if (!fill_body(gw, req, &r, user, sizeof(user), session, body, started))
        goto out;
    if (r.kind == GW_PEND_SSE && !kchat__gw_stream_may_open(gw, req, user, started))
        goto out;
    if (r.op == KCHAT_OP_LOGIN && !kchat__gw_guard_login(gw, req, &login, started))
        goto out;   /* guard.c: per-address limit, device cookie */
    kchat__gw_pending_send(gw, req, r.route, r.kind, r.op, user, session,
                           r.op == KCHAT_OP_LOGIN ? &login : NULL, body, started);
out:
    json_decref(body);
}

/* ---- answers ---- */

/* The HTTP status of a wire error code (PROTOCOL.md section 8). */
static int wire_status(const char *code)
{
    static const struct { const char *name; int status; } map[] = {
        {"BAD_REQUEST", 400},    {"UNAUTHENTICATED", 401}, {"BAD_CREDENTIALS", 401},
        {"NOT_A_FRIEND", 403},   {"NOT_A_MEMBER", 403},    {"USER_NOT_FOUND", 404},
        {"ROOM_NOT_FOUND", 404}, {"ALREADY_EXISTS", 409},  {"TOO_LARGE", 413},
        {"INTERNAL", 500},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (!strcmp(map[i].name, code))
            return map[i].status;
    return 500;
}

/* A login refused because its user id is locked after too many failures
 * (docs/security.md): still 401 BAD_CREDENTIALS, as PROTOCOL.md section 8
 * maps it, with a Retry-After telling when to retry.
 * @locality loop thread */
static void retry_after(struct evhttp_request *req, const json_t *v)
{
    json_int_t ms = json_integer_value(json_object_get(v, "retryAfterMs"));
    char secs[24];

    snprintf(secs, sizeof(secs), "%lld", ms > 0 ? (long long)(ms + 999) / 1000 : 1LL);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", secs);
}

void kchat__gw_api_answer(kchat_gateway *gw, const gw_item *it)
{
    gw_pending call;
    struct evhttp_request *req = kchat__gw_pending_take(gw, it->cid, &call);
    json_t *v = NULL, *code, *sid;
    int status;
    bool ok;

    if (req == NULL)
        return; /* another gateway's, a repeat, or too late */
    if (kchat_codec_decode(KCHAT_FMT_JSON, it->data, it->len, &v) != KCHAT_OK ||
        !json_is_object(v)) {
        json_decref(v);
        kchat__gw_reply_error(gw, req, call.route, 500, "INTERNAL",
                              "The backend's answer does not decode.", call.started);
        return;
    }
    code = json_object_get(v, "errorCode");
    ok = json_is_true(json_object_get(v, "isSuccess")) &&
         (!json_is_string(code) || json_string_value(code)[0] == '\0');
    if (ok)
        status = (call.op == KCHAT_OP_USER_ADD || call.op == KCHAT_OP_ADD_ROOM ||
                  call.op == KCHAT_OP_ADD_CHAT) ? 201 : 200;
    else
        status = wire_status(json_is_string(code) ? json_string_value(code) : "");
    if (!ok && call.op == KCHAT_OP_LOGIN && json_is_integer(json_object_get(v, "retryAfterMs")))
        retry_after(req, v);
    if (!ok && call.op == KCHAT_OP_LOGIN && status == 401)
        kchat__gw_guard_login_failed(gw, &call.login);
    if (call.kind == GW_PEND_SSE) {
        if (ok)
            kchat__gw_stream_open(gw, &call, req);
        else
            kchat__gw_reply_json(gw, req, GW_ROUTE_events, status, v, call.started);
        json_decref(v);
        return;
    }
    sid = json_object_get(v, "sessionId");
    if (call.op == KCHAT_OP_LOGIN && ok && json_is_string(sid))
        set_cookie(gw, req, call.user, json_string_value(sid));
    json_object_del(v, "sessionId");   /* the cookie only (PROTOCOL.md section 8) */
    if (call.op == KCHAT_OP_LOGOUT) {
        set_cookie(gw, req, NULL, NULL);
        if (ok) /* that session's streams end with it */
            kchat__gw_streams_end_session(gw, call.user, call.session);
    }
    kchat__gw_reply_json(gw, req, call.route, status, v, call.started);
    json_decref(v);
}
