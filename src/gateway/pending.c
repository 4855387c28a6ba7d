/*
 * The pending table: calls waiting for the backend's answer, on the loop
 * thread.
 *
 * gw->pending has cfg->max_pending slots (a full table answers 503). A call
 * produces its request with a fresh kchat-cid `g<slot>-<gen>-<random>`
 * (hex): the response carrying it finds its slot at once, and the slot's
 * generation, bumped whenever the slot is freed, together with the random
 * part keeps a late or repeated answer from matching a later call. Every
 * call has a timer: after http-timeout-ms it is answered 504 TIMEOUT (503
 * when Kafka is unreachable). Responses reach the loop through the hand-off
 * queue (handoff.c); api.c turns them into HTTP answers.
 */
#include "gateway/gateway_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/keyvalq_struct.h>
#include <sodium.h>

#include "kchat/codec.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

/* The call waiting for @p cid, or NULL.
 * @locality loop thread */
static gw_pending *pending_find(kchat_gateway *gw, const char *cid)
{
    char *end;
    unsigned long slot = strtoul(cid + 1, &end, 16);
    gw_pending *p;

    if (cid[0] != 'g' || *end != '-' || slot >= (unsigned long)gw->cfg->max_pending)
        return NULL;
    p = &gw->pending[slot];
    return p->req && !strcmp(p->cid, cid) ? p : NULL;
}

/* Free @p p's slot; its request is left to the caller.
 * @locality loop thread */
static void pending_release(kchat_gateway *gw, gw_pending *p)
{
    if (p->timer)
        event_free(p->timer);
    p->timer = NULL;
    p->req = NULL;
    p->gen++;
    gw->n_pending--;
}

/* Take @p p out of the table and answer it with an error.
 * @locality loop thread */
static void pending_answer_error(kchat_gateway *gw, gw_pending *p, int code, const char *err,
                                 const char *msg)
{
    struct evhttp_request *req = p->req;
    int route = p->route;
    double started = p->started;

    pending_release(gw, p);
    kchat__gw_reply_error(gw, req, route, code, err, msg, started);
}

/* @p p's answer is overdue.
 * @locality loop thread (libevent timer callback) */
static void pending_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_pending *p = arg;
    kchat_gateway *gw = p->gw;

    (void)fd;
    (void)what;
    if (p->req == NULL)
        return;
    gw->counters.timeouts++;
    if (atomic_load(&gw->kafka_down))
        pending_answer_error(gw, p, 503, "UNAVAILABLE", "Kafka is unreachable.");
    else
        pending_answer_error(gw, p, 504, "TIMEOUT", "The backend did not answer in time.");
}

/* Milliseconds since the epoch: when a session proof was sealed. */
static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The headers of call @p p's request record, whose value is *@p buf: with a
 * deployment secret the value is replaced by its seal (the password in it
 * included), the session by a sealed proof bound to that value, and a MAC
 * covers it all (include/kchat/auth.h); without one, as PROTOCOL.md says.
 * NULL when it cannot be sealed (*@p buf is then freed).
 * @locality the loop thread */
static rd_kafka_headers_t *request_headers(kchat_gateway *gw, kchat_op op, const gw_pending *p,
                                           const char *user, char **buf, size_t *len)
{
    const char *topic = kchat_op_request_topic(op);
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(5);
    char proof[KCHAT_SEALED_SESSION_MAX];
    unsigned char *sealed;
    size_t sl;

    rd_kafka_header_add(hdrs, KCHAT_HDR_CID, -1, p->cid, -1);
    rd_kafka_header_add(hdrs, KCHAT_HDR_CTYPE, -1, "application/json", -1);
    if (p->login.device[0] != '\0')   /* a login naming its device (guard.c) */
        rd_kafka_header_add(hdrs, KCHAT_HDR_DEVICE, -1, p->login.device, -1);
    if (gw->auth == NULL) {
        rd_kafka_header_add(hdrs, KCHAT_HDR_SESSION, -1, p->session, -1);
        return hdrs;
    }
    if (kchat_auth_seal(gw->auth, KCHAT_SEAL_REQUEST, topic, user, strlen(user), p->cid,
                        strlen(p->cid), *buf, *len, &sealed, &sl) != KCHAT_OK)
        goto err_free;
    sodium_memzero(*buf, *len);
    free(*buf);
    *buf = (char *)sealed;
    *len = sl;
    if (p->session[0] != '\0') {
        if (kchat_auth_seal_session(gw->auth, topic, user, strlen(user), sealed, sl, p->session,
                                    wall_ms(), proof) != KCHAT_OK)
            goto err_free;
        rd_kafka_header_add(hdrs, KCHAT_HDR_SESSION, -1, proof, -1);
    }
    rd_kafka_header_add(hdrs, KCHAT_HDR_SEALED, -1, "1", 1);
    if (kchat_auth_sign(gw->auth, topic, user, strlen(user), *buf, *len, hdrs) != KCHAT_OK)
        goto err_free;
    return hdrs;

err_free:
    rd_kafka_headers_destroy(hdrs);
    free(*buf);
    *buf = NULL;
    return NULL;
}

/* A free slot; there is one when gw->n_pending < cfg->max_pending.
 * @locality loop thread */
static int pending_free_slot(kchat_gateway *gw)
{
    for (int i = 0; i < gw->cfg->max_pending; i++) {
        int j = (gw->pending_hint + i) % gw->cfg->max_pending;
        if (gw->pending[j].req == NULL)
            return j;
    }
    return -1;
}

/* @p body with only the fields PROTOCOL.md section 2 names, encoded as JSON
 * into a malloc()ed *out (the caller frees it).
 * @return KCHAT_OK, KCHAT_ENOMEM or the codec's error. */
static int encode_known(const json_t *body, char **out, size_t *len)
{
    static const char *const known[] = {"userId", "writerId", "roomId", "userPw", "userName",
                                        "email", "userStatus", "status", "message", "roomName",
                                        "friendId", "clientMsgId", "limit", "beforeSeq",
                                        "readSeq"};
    json_t *slim = json_object();
    int rc;

    if (slim == NULL)
        return KCHAT_ENOMEM;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        json_t *v = json_object_get(body, known[i]);
        if (v && json_object_set(slim, known[i], v) != 0) {
            json_decref(slim);
            return KCHAT_ENOMEM;
        }
    }
    rc = kchat_codec_encode(KCHAT_FMT_JSON, slim, out, len);
    json_decref(slim);
    return rc;
}

void kchat__gw_pending_send(kchat_gateway *gw, struct evhttp_request *req, int route, int kind,
                            kchat_op op, const char *user, const char *session,
                            const gw_login *login, const json_t *body, double started)
{
    struct timeval tv = {gw->cfg->http_timeout_ms / 1000, (gw->cfg->http_timeout_ms % 1000) * 1000};
    gw_pending *p = NULL;
    char *buf = NULL;
    size_t len = 0;
    uint64_t rnd;
    rd_kafka_headers_t *hdrs;
    rd_kafka_resp_err_t err;
    int slot;

    if (!atomic_load(&gw->ready)) {
        kchat__gw_reply_error(gw, req, route, 503, "UNAVAILABLE",
                              "The gateway is not connected to Kafka yet.", started);
        return;
    }
    if (gw->n_pending >= gw->cfg->max_pending) {
        kchat__gw_reply_error(gw, req, route, 503, "UNAVAILABLE", "Too many requests are waiting.",
                              started);
        return;
    }
    if (kchat_codec_encode(KCHAT_FMT_JSON, body, &buf, &len) != KCHAT_OK) {
        kchat__gw_reply_error(gw, req, route, 400, "BAD_REQUEST", "The body cannot be encoded.",
                              started);
        return;
    }
    if (len > KCHAT_MAX_VALUE) {
        /* The client's body was at most 64 KiB (api.c); what the gateway
         * added made the record larger. The backend ignores unknown fields:
         * leave them out. If the record is still too large, a known field is
         * over its own limit (PROTOCOL.md section 2), which the backend would
         * refuse as BAD_REQUEST. */
        free(buf);
        buf = NULL;
        if (encode_known(body, &buf, &len) != KCHAT_OK || len > KCHAT_MAX_VALUE) {
            free(buf);
            kchat__gw_reply_error(gw, req, route, 400, "BAD_REQUEST",
                                  "A field of the body is over its limit.", started);
            return;
        }
    }
    slot = pending_free_slot(gw);
    p = &gw->pending[slot];
    gw->pending_hint = (slot + 1) % gw->cfg->max_pending;
    randombytes_buf(&rnd, sizeof(rnd));
    snprintf(p->cid, sizeof(p->cid), "g%x-%x-%016" PRIx64, (unsigned)slot, (unsigned)p->gen, rnd);
    p->gw = gw;
    p->kind = kind;
    p->route = route;
    p->op = (int)op;
    p->started = started;
    snprintf(p->user, sizeof(p->user), "%s", user);
    snprintf(p->session, sizeof(p->session), "%s", session ? session : "");
    p->last_event_id[0] = '\0';
    if (login != NULL)
        p->login = *login;
    else
        memset(&p->login, 0, sizeof(p->login));
    if (kind == GW_PEND_SSE) {
        const char *lei = evhttp_find_header(evhttp_request_get_input_headers(req),
                                             "Last-Event-ID");
        if (lei)
            snprintf(p->last_event_id, sizeof(p->last_event_id), "%s", lei);
    }
    if ((hdrs = request_headers(gw, op, p, user, &buf, &len)) == NULL) {
        kchat__gw_reply_error(gw, req, route, 500, "INTERNAL", "The request cannot be sealed.",
                              started);
        return;
    }
    err = rd_kafka_producev(gw->producer, RD_KAFKA_V_TOPIC(kchat_op_request_topic(op)),
                            RD_KAFKA_V_KEY(user, strlen(user)),
                            RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(hdrs);   /* taken only on success */
        free(buf);
        kchat__gw_reply_error(gw, req, route, 503, "UNAVAILABLE", rd_kafka_err2str(err), started);
        return;
    }
    p->req = req;
    gw->n_pending++;
    if ((p->timer = evtimer_new(gw->base, pending_timeout_cb, p)) != NULL)
        evtimer_add(p->timer, &tv);
}

struct evhttp_request *kchat__gw_pending_take(kchat_gateway *gw, const char *cid,
                                              gw_pending *call)
{
    gw_pending *p = pending_find(gw, cid);
    struct evhttp_request *req;

    if (p == NULL)
        return NULL;
    req = p->req;
    *call = *p;
    pending_release(gw, p);
    call->timer = NULL;
    return req;
}

void kchat__gw_pending_fail(kchat_gateway *gw, const char *cid)
{
    gw_pending *p = pending_find(gw, cid);

    if (p != NULL)
        pending_answer_error(gw, p, 503, "UNAVAILABLE", "Kafka did not take the request.");
}

void kchat__gw_pending_cancel_all(kchat_gateway *gw)
{
    for (int i = 0; i < gw->cfg->max_pending; i++)
        if (gw->pending[i].req)
            pending_answer_error(gw, &gw->pending[i], 503, "UNAVAILABLE",
                                 "The gateway is stopping.");
}
