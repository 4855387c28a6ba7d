/* Answers, events and commands: everything an operation sends goes through
 * the shard's outbox in the open transaction (directory records too, from
 * directory.c); producer.c produces it once the transaction has committed. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>

#include "actors.h"
#include "streams.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

int64_t kchat__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint32_t kchat__shard_of(const kchat_backend *be, const char *id)
{
    return (uint32_t)kchat_partition_for_key(id, strlen(id), be->partitions);
}

json_t *kchat__get_json(kchat_txn *t, kchat_table tb, const void *key, size_t kl)
{
    const void *v;
    size_t vl;

    if (kchat_txn_get(t, tb, key, kl, &v, &vl) != KCHAT_OK)
        return NULL;
    return json_loadb(v, vl, JSON_DISABLE_EOF_CHECK, NULL);
}

int kchat__put_json(kchat_txn *t, kchat_table tb, const void *key, size_t kl, const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT);
    int rc;

    if (s == NULL)
        return KCHAT_ENOMEM;
    rc = kchat_txn_put(t, tb, key, kl, s, strlen(s));
    free(s);
    return rc;
}

void kchat__out_rec_release(struct out_rec *r)
{
    free(r->topic);
    free(r->key);
    free(r->value);
    free(r->hdr_buf);
}

int kchat__out_append(struct ctx *c, uint8_t kind, uint32_t target, const char *topic,
                      int32_t partition, const void *key, size_t key_len,
                      const void *value, size_t value_len,
                      const kchat_header *hdrs, size_t n_hdrs)
{
    struct worker *w = c->w;
    kchat_outbox_rec rec = {
        .topic = topic, .partition = partition, .key = key, .key_len = key_len,
        .value = value, .value_len = value_len, .headers = hdrs, .n_headers = n_hdrs,
        .kind = kind,
    };
    struct out_rec *r;
    size_t hdr_bytes = 0;
    char *p;
    uint64_t seq;
    int rc;

    if (n_hdrs > KCHAT_STORE_MAX_HEADERS)
        return KCHAT_EINVAL;
    if (w->n_out == w->cap_out) {
        size_t cap = w->cap_out ? 2 * w->cap_out : 64;
        struct out_rec *nv = realloc(w->out, cap * sizeof(*nv));
        if (nv == NULL)
            return KCHAT_ENOMEM;
        w->out = nv;
        w->cap_out = cap;
    }
    if ((rc = kchat_store_outbox_append(c->txn, &rec, &seq)) != KCHAT_OK)
        return rc;

    r = &w->out[w->n_out];
    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i < n_hdrs; i++)
        hdr_bytes += strlen(hdrs[i].name) + 1 + hdrs[i].len;
    r->topic = strdup(topic);
    r->key = key_len ? malloc(key_len) : NULL;
    r->value = malloc(value_len ? value_len : 1);
    r->hdr_buf = malloc(hdr_bytes ? hdr_bytes : 1);
    if (r->topic == NULL || (key_len && r->key == NULL) || r->value == NULL ||
        r->hdr_buf == NULL) {
        kchat__out_rec_release(r);
        return KCHAT_ENOMEM;
    }
    r->shard = c->sh->id;
    r->seq = seq;
    r->kind = kind;
    r->target = target;
    r->partition = partition;
    if (key_len)
        memcpy(r->key, key, key_len);
    r->key_len = key_len;
    memcpy(r->value, value, value_len);
    r->value_len = value_len;
    p = r->hdr_buf;
    for (size_t i = 0; i < n_hdrs; i++) {
        size_t nl = strlen(hdrs[i].name) + 1;
        memcpy(p, hdrs[i].name, nl);
        r->hdr[i].name = p;
        p += nl;
        memcpy(p, hdrs[i].value, hdrs[i].len);
        r->hdr[i].value = p;
        r->hdr[i].len = hdrs[i].len;
        p += hdrs[i].len;
    }
    r->n_hdr = n_hdrs;
    w->n_out++;
    return KCHAT_OK;
}

/* Append @p buf (@p len bytes of the answer's encoding; consumed, wiped
 * when sealed) as the response.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int reply_send_encoded(struct ctx *c, char *buf, size_t len)
{
    const char *ct = kchat_fmt_content_type(c->fmt);
    const char *topic = kchat_op_response_topic(c->op);
    kchat_header hdrs[3];
    size_t n = 0;
    int rc;

    if (c->cid_len)
        hdrs[n++] = (kchat_header){KCHAT_HDR_CID, c->cid, c->cid_len};
    hdrs[n++] = (kchat_header){KCHAT_HDR_CTYPE, ct, strlen(ct)};
    if (c->sealed && c->be->auth != NULL) {
        /* Sealed for the gateway that asked: a login's sessionId is
         * readable neither on Kafka nor in the outbox. */
        unsigned char *sealed;
        size_t sl;

        rc = kchat_auth_seal(c->be->auth, KCHAT_SEAL_RESPONSE, topic, c->user_id,
                             strlen(c->user_id), c->cid, c->cid_len, buf, len, &sealed, &sl);
        sodium_memzero(buf, len);
        free(buf);
        if (rc != KCHAT_OK)
            return rc;
        buf = (char *)sealed;
        len = sl;
        hdrs[n++] = (kchat_header){KCHAT_HDR_SEALED, "1", 1};
    }
    rc = kchat__out_append(c, OUT_REPLY, 0, topic, -1, c->user_id, strlen(c->user_id), buf, len,
                           hdrs, n);
    free(buf);
    return rc;
}

/* Encode @p body in the answer's format and append it as the response.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int reply_send(struct ctx *c, json_t *body)
{
    size_t len;
    char *buf;
    int rc;

    if ((rc = kchat_codec_encode(c->fmt, body, &buf, &len)) != KCHAT_OK)
        return rc;
    return reply_send_encoded(c, buf, len);
}

/* Add the members of every success to @p body.
 * @locality worker that owns c->sh */
static void set_ok(struct ctx *c, json_t *body)
{
    json_object_set_new(body, "userId", json_string(c->user_id));
    json_object_set_new(body, "isSuccess", json_true());
    json_object_set_new(body, "errorCode", json_string(""));
    json_object_set_new(body, "errorMessage", json_string(""));
}

int kchat__reply_ok(struct ctx *c, json_t *body)
{
    int rc;

    if (body == NULL && (body = json_object()) == NULL)
        return KCHAT_ENOMEM;
    set_ok(c, body);
    rc = reply_send(c, body);
    json_decref(body);
    return rc;
}

int kchat__reply_ok_with_json(struct ctx *c, json_t *body, const char *key, const char *json,
                              size_t json_len)
{
    char *enc, *buf;
    size_t len, buf_len;
    int rc;

    if (body == NULL && (body = json_object()) == NULL)
        return KCHAT_ENOMEM;
    set_ok(c, body);
    rc = kchat_codec_encode(c->fmt, body, &enc, &len);
    json_decref(body);
    if (rc != KCHAT_OK)
        return rc;
    rc = kchat_codec_add_json_member(c->fmt, enc, len, key, json, json_len, &buf, &buf_len);
    free(enc);
    if (rc != KCHAT_OK)
        return rc;
    return reply_send_encoded(c, buf, buf_len);
}

/* @locality worker that owns c->sh */
KCHAT_MUST_CHECK __attribute__((format(printf, 4, 0)))
static int reply_err_v(struct ctx *c, kchat_wire_err e, json_t *extra, const char *fmt,
                       va_list ap)
{
    char msg[512];
    json_t *body;
    int rc;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    body = extra ? extra : json_object();
    if (body == NULL)
        return KCHAT_ENOMEM;
    json_object_set_new(body, "userId", json_string(c->user_id));
    json_object_set_new(body, "isSuccess", json_false());
    json_object_set_new(body, "errorCode", json_string(kchat_wire_err_name(e)));
    json_object_set_new(body, "errorMessage", json_string(msg));
    atomic_fetch_add(&c->be->stats.errors, 1);
    if (e == KCHAT_WIRE_BAD_REQUEST)
        atomic_fetch_add(&c->be->stats.bad_requests, 1);
    else if (e == KCHAT_WIRE_TOO_LARGE)
        atomic_fetch_add(&c->be->stats.too_large, 1);
    rc = reply_send(c, body);
    json_decref(body);
    return rc;
}

int kchat__reply_err(struct ctx *c, kchat_wire_err e, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = reply_err_v(c, e, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

int kchat__reply_err_with(struct ctx *c, kchat_wire_err e, json_t *extra, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = reply_err_v(c, e, extra, fmt, ap);
    va_end(ap);
    return rc;
}

int kchat__event(struct ctx *c, const char *user_id, json_t *event)
{
    const char *ct = kchat_fmt_content_type(c->be->events_fmt);
    kchat_header hdr = {KCHAT_HDR_CTYPE, ct, strlen(ct)};
    size_t len;
    char *buf;
    int rc;

    json_object_set_new(event, "userId", json_string(user_id));
    rc = kchat_codec_encode(c->be->events_fmt, event, &buf, &len);
    json_decref(event);
    if (rc != KCHAT_OK)
        return rc;
    rc = kchat__out_append(c, OUT_REPLY, 0, KCHAT_TOPIC_EVENTS, -1, user_id, strlen(user_id),
                           buf, len, &hdr, 1);
    free(buf);
    return rc;
}

int kchat__event_to_each(struct ctx *c, json_t *event, const json_t *users)
{
    kchat_fmt f = c->be->events_fmt;
    const char *ct = kchat_fmt_content_type(f);
    kchat_header hdr = {KCHAT_HDR_CTYPE, ct, strlen(ct)};
    const json_t *u;
    size_t i, len, one_len;
    char *enc, *one;
    int rc = kchat_codec_encode(f, event, &enc, &len);

    json_decref(event);
    if (rc != KCHAT_OK)
        return rc;
    json_array_foreach(users, i, u) {
        const char *id = json_string_value(u);

        if (id == NULL) {
            rc = KCHAT_EINVAL;
            break;
        }
        if ((rc = kchat_codec_add_member(f, enc, len, "userId", id, &one, &one_len)) != KCHAT_OK)
            break;
        rc = kchat__out_append(c, OUT_REPLY, 0, KCHAT_TOPIC_EVENTS, -1, id, strlen(id), one,
                               one_len, &hdr, 1);
        free(one);
        if (rc != KCHAT_OK)
            break;
    }
    free(enc);
    return rc;
}

int kchat__command(struct ctx *c, uint32_t target, const char *key, json_t *cmd)
{
    kchat_header hdr[3];
    uint64_t cseq = 0;
    char num[24], run[24], from[24], *s;
    struct cmd_link *l;
    int rc;

    json_object_set_new(cmd, "fmt", json_integer(c->fmt));
    if (c->cid_len) {
        char hex[129];
        for (size_t i = 0; i < c->cid_len; i++)
            sprintf(hex + 2 * i, "%02x", (unsigned char)c->cid[i]);
        json_object_set_new(cmd, "cid", json_string(hex));
    }
    s = json_dumps(cmd, JSON_COMPACT);
    json_decref(cmd);
    if (s == NULL)
        return KCHAT_ENOMEM;
    /* The command's seq in this shard's stream to @p target travels in a
     * header kept with the outbox copy, so every re-send carries the same
     * one; the target applies only the next seq it expects (commands.c).
     * The source shard and data set are added when it is produced. Room to
     * list it as pending is made now: after the commit, an unlisted command
     * would be neither produced again nor counted in its stream's base.
     * Every record of the batch so far may be a command: room for them all. */
    if ((rc = kchat__streams_reserve(c->be, c->sh, c->w->n_out + 1)) == KCHAT_OK)
        rc = kchat_store_cmdseq_get(c->txn, KCHAT_CMDSEQ_SENT, target, &cseq);
    if (rc == KCHAT_OK)
        rc = kchat_store_cmdseq_set(c->txn, KCHAT_CMDSEQ_SENT, target, ++cseq);
    if (rc == KCHAT_OK) {
        /* The run that numbers it, and where this run's numbering began:
         * every number given before, by any run, is at most that. */
        l = &c->sh->links[target];
        if (!l->run_from_set) {
            l->run_from = cseq - 1;
            l->run_from_set = true;
        }
        snprintf(num, sizeof(num), "%" PRIu64, cseq);
        snprintf(run, sizeof(run), "%" PRIu64, kchat__run_id(c));
        snprintf(from, sizeof(from), "%" PRIu64, l->run_from);
        hdr[0] = (kchat_header){KCHAT_HDR_CMD_SEQ, num, strlen(num)};
        hdr[1] = (kchat_header){KCHAT_HDR_CMD_RUN, run, strlen(run)};
        hdr[2] = (kchat_header){KCHAT_HDR_CMD_RUN_FROM, from, strlen(from)};
        rc = kchat__out_append(c, OUT_COMMAND, target, KCHAT_TOPIC_INTERNAL, (int32_t)target,
                               key, strlen(key), s, strlen(s), hdr,
                               kchat__run_id(c) != 0 ? 3 : 1);
    }
    if (rc == KCHAT_OK)
        c->w->out[c->w->n_out - 1].cseq = cseq;
    free(s);
    return rc;
}
