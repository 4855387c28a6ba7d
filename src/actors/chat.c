/* Chat messages and history. The writer's shard checks the session, then the
 * room's shard (directly when it is the same shard, else through an internal
 * command) checks the room and membership, assigns the next seq, stores the
 * message, publishes the room's new lastSeq (summaries.c) and fans the
 * `chat` event out to every participant. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors.h"
#include "ops.h"
#include "rooms.h"
#include "replicas.h"
#include "kchat/error.h"

#define ROOM_KEY_MAX 65
#define MSG_KEY_LEN(room_len) ((room_len) + 1 + 8)
#define IDEM_KEY_MAX (64 + 1 + 64 + 1 + 64)

static size_t msg_key(unsigned char *out, const char *room_id, uint64_t seq)
{
    size_t rl = strlen(room_id);
    memcpy(out, room_id, rl);
    out[rl] = '\0';
    kchat_store_be64(seq, out + rl + 1);
    return MSG_KEY_LEN(rl);
}

static size_t idem_key(char *out, const char *room_id, const char *writer_id, const char *cmid)
{
    return (size_t)snprintf(out, IDEM_KEY_MAX + 1, "%s%c%s%c%s", room_id, 0, writer_id, 0, cmid);
}

/* @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int chat_reply(struct ctx *c, const json_t *msg, const char *room_id)
{
    return kchat__reply_ok(c, json_pack("{s:s, s:O, s:O, s:O, s:O}", "roomId", room_id,
                                        "writerId", json_object_get(msg, "writerId"),
                                        "seq", json_object_get(msg, "seq"),
                                        "createdAt", json_object_get(msg, "createdAt"),
                                        "clientMsgId", json_object_get(msg, "clientMsgId")));
}

int kchat__room_chat(struct ctx *c, const char *room_id, const char *writer_id,
                     const char *message, size_t message_len, const char *client_msg_id)
{
    unsigned char mkey[MSG_KEY_LEN(64)];
    char ikey[IDEM_KEY_MAX + 1], ts[25], seqbuf[8];
    size_t il = 0;
    json_t *room, *msg;
    json_int_t seq;
    const void *v;
    size_t vl;
    int rc;

    if ((room = kchat__room_for_member(c, room_id, writer_id, &rc)) == NULL)
        return rc;
    if (client_msg_id[0] != '\0') {
        il = idem_key(ikey, room_id, writer_id, client_msg_id);
        if (kchat_txn_get(c->txn, KCHAT_TBL_IDEM, ikey, il, &v, &vl) == KCHAT_OK && vl == 8) {
            /* a repeat: answer as the first send did, store nothing */
            uint64_t first = kchat_store_rd_be64(v);
            json_decref(room);
            msg = kchat__get_json(c->txn, KCHAT_TBL_MESSAGES, mkey,
                                  msg_key(mkey, room_id, first));
            if (msg == NULL)
                return kchat__reply_err(c, KCHAT_WIRE_INTERNAL, "Message %llu of room %s is "
                                        "missing.", (unsigned long long)first, room_id);
            rc = chat_reply(c, msg, room_id);
            json_decref(msg);
            return rc;
        }
    }
    seq = json_integer_value(json_object_get(room, "lastSeq")) + 1;
    kchat_iso8601(c->now_ms, ts);
    msg = json_pack("{s:I, s:s, s:s%, s:s, s:s}", "seq", seq, "writerId", writer_id,
                    "message", message, message_len, "createdAt", ts,
                    "clientMsgId", client_msg_id);
    if (msg == NULL) {
        json_decref(room);
        return KCHAT_ENOMEM;
    }
    json_object_set_new(room, "lastSeq", json_integer(seq));
    /* Storing a message moves its writer's read cursor to it (no `read`
     * event: the `chat` event says as much). */
    rc = kchat__room_set_read(room, writer_id, seq);
    if (rc == KCHAT_OK)
        rc = kchat__put_json(c->txn, KCHAT_TBL_MESSAGES, mkey,
                             msg_key(mkey, room_id, (uint64_t)seq), msg);
    if (rc == KCHAT_OK)
        rc = kchat__room_store(c, room);
    if (rc == KCHAT_OK && il) {
        kchat_store_be64((uint64_t)seq, (unsigned char *)seqbuf);
        rc = kchat_txn_put(c->txn, KCHAT_TBL_IDEM, ikey, il, seqbuf, 8);
    }
    if (rc == KCHAT_OK)
        rc = chat_reply(c, msg, room_id);
    if (rc == KCHAT_OK) {   /* one chat event, encoded once, to every participant */
        json_object_set_new(msg, "type", json_string("chat"));
        json_object_set_new(msg, "roomId", json_string(room_id));
        rc = kchat__event_to_each(c, json_incref(msg), json_object_get(room, "participants"));
    }
    json_decref(msg);
    json_decref(room);
    return rc;
}

int kchat__op_add_chat(struct ctx *c)
{
    const kchat_request *r = c->req;
    uint32_t target = kchat__shard_of(c->be, r->room_id);
    int rc;

    if (!kchat__session_ok(c, &rc))
        return rc;
    if (target == c->sh->id)
        return kchat__room_chat(c, r->room_id, r->user_id, r->message, r->message_len,
                                r->client_msg_id);
    return kchat__command(c, target, r->room_id,
                          json_pack("{s:s, s:s, s:s, s:s%, s:s}", "op", "chat",
                                    "roomId", r->room_id, "writerId", r->user_id,
                                    "message", r->message, r->message_len,
                                    "clientMsgId", r->client_msg_id));
}

int kchat__cmd_chat(struct ctx *c, const json_t *cmd)
{
    json_t *m = json_object_get(cmd, "message");
    const char *room_id = json_string_value(json_object_get(cmd, "roomId"));
    const char *cmid = json_string_value(json_object_get(cmd, "clientMsgId"));

    if (room_id == NULL || !json_is_string(m) || cmid == NULL)
        return KCHAT_EDECODE;
    return kchat__room_chat(c, room_id, c->user_id, json_string_value(m), json_string_length(m),
                            cmid);
}

/* The messages a history scan found, newest first: their stored JSON texts
 * one after another in @p text, where message i begins at at[i]. */
struct history_scan {
    char *text;
    size_t len, cap;
    size_t *at;
    size_t n, cap_at;
    int limit;
    int rc;             /* KCHAT_ENOMEM when a copy failed */
};

/* Whether @p v (@p vl bytes) looks like a stored message: a JSON object's
 * text, UTF-8 without NUL. Only the ends are looked at, not the inside:
 * the store holds what kchat__room_chat() wrote, and a history answer
 * carries it as it is (kchat__reply_ok_with_json()); this keeps a
 * truncated or overwritten record out of it, as decoding it did. */
static bool message_text_ok(const char *v, size_t vl)
{
    return vl >= 2 && v[0] == '{' && v[vl - 1] == '}' && memchr(v, '\0', vl) == NULL &&
           kchat_utf8_valid(v, vl);
}

/* kchat_txn_scan_range() callback: copy one message's text (LMDB's copy is
 * good only until the transaction writes).
 * @locality worker that owns the shard scanned */
static int history_one(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    struct history_scan *hs = arg;

    (void)k;
    (void)kl;
    if (!message_text_ok(v, vl))
        return 0;   /* skipped, as a message that does not decode always was */
    if (hs->n == hs->cap_at) {
        size_t cap = hs->cap_at ? 2 * hs->cap_at : 64;
        size_t *nv = realloc(hs->at, cap * sizeof(*nv));
        if (nv == NULL)
            goto err_nomem;
        hs->at = nv;
        hs->cap_at = cap;
    }
    if (vl > hs->cap - hs->len) {
        size_t cap = hs->cap ? hs->cap : 4096;
        char *nt;

        while (vl > cap - hs->len)
            cap *= 2;
        if ((nt = realloc(hs->text, cap)) == NULL)
            goto err_nomem;
        hs->text = nt;
        hs->cap = cap;
    }
    memcpy(hs->text + hs->len, v, vl);
    hs->at[hs->n++] = hs->len;
    hs->len += vl;
    return (int)hs->n >= hs->limit ? 1 : 0;

err_nomem:
    hs->rc = KCHAT_ENOMEM;
    return 1;
}

/* The messages of @p hs as one JSON array, oldest first, in @p *out
 * (malloc()ed, @p *out_len bytes). KCHAT_ENOMEM. */
KCHAT_MUST_CHECK
static int history_array(const struct history_scan *hs, char **out, size_t *out_len)
{
    size_t size = hs->len + hs->n + 2, pos = 0;   /* the texts, commas, brackets */
    char *buf = malloc(size);

    if (buf == NULL)
        return KCHAT_ENOMEM;
    buf[pos++] = '[';
    for (size_t i = hs->n; i-- > 0;) {   /* scanned newest first */
        size_t end = i + 1 < hs->n ? hs->at[i + 1] : hs->len;

        if (i + 1 < hs->n)
            buf[pos++] = ',';
        memcpy(buf + pos, hs->text + hs->at[i], end - hs->at[i]);
        pos += end - hs->at[i];
    }
    buf[pos++] = ']';
    *out = buf;
    *out_len = pos;
    return KCHAT_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* `reads` of room-history: {userId, readSeq} of every participant of
 * @p room, sorted by userId (a new array; NULL: out of memory). */
static json_t *room_reads(const json_t *room)
{
    json_t *parts = json_object_get(room, "participants"), *out;
    size_t n = json_array_size(parts), i;
    const char **ids = malloc((n ? n : 1) * sizeof(*ids));

    if (ids == NULL || (out = json_array()) == NULL) {
        free(ids);
        return NULL;
    }
    for (i = 0; i < n; i++)
        ids[i] = json_string_value(json_array_get(parts, i));
    qsort(ids, n, sizeof(*ids), cmp_str);
    for (i = 0; i < n; i++)
        json_array_append_new(out, json_pack("{s:s, s:I}", "userId", ids[i], "readSeq",
                                             kchat__room_read_seq(room, ids[i])));
    free(ids);
    return out;
}

int kchat__room_history(struct ctx *c, const char *room_id, const char *user_id,
                        int64_t before_seq, int limit)
{
    struct history_scan hs = {.limit = limit, .rc = KCHAT_OK};
    json_t *reads;
    unsigned char prefix[ROOM_KEY_MAX], bound[MSG_KEY_LEN(64)];
    size_t pl = strlen(room_id) + 1, bl = 0, len = 0;
    json_t *room;
    char *messages = NULL;
    int rc;

    if ((room = kchat__room_for_member(c, room_id, user_id, &rc)) == NULL)
        return rc;
    memcpy(prefix, room_id, pl);
    if (before_seq > 0)
        bl = msg_key(bound, room_id, (uint64_t)before_seq);
    rc = kchat_txn_scan_range(c->txn, KCHAT_TBL_MESSAGES, prefix, pl, bl ? bound : NULL, bl,
                              true, history_one, &hs);
    if (rc >= 0 && hs.rc != KCHAT_OK)
        rc = hs.rc;
    if (rc >= 0)
        rc = history_array(&hs, &messages, &len);
    free(hs.text);
    free(hs.at);
    if (rc < 0) {
        json_decref(room);
        return rc;
    }
    reads = room_reads(room);
    json_decref(room);
    if (reads == NULL) {
        free(messages);
        return KCHAT_ENOMEM;
    }
    /* the messages last, as stored: none is decoded to be encoded again */
    rc = kchat__reply_ok_with_json(c, json_pack("{s:s, s:o}", "roomId", room_id, "reads", reads),
                                   "messages", messages, len);
    free(messages);
    return rc;
}

int kchat__op_history(struct ctx *c)
{
    const kchat_request *r = c->req;
    uint32_t target = kchat__shard_of(c->be, r->room_id);
    int rc;

    if (!kchat__session_ok(c, &rc))
        return rc;
    if (target == c->sh->id)
        return kchat__room_history(c, r->room_id, r->user_id,
                                   r->has_before_seq ? r->before_seq : 0, r->limit);
    return kchat__command(c, target, r->room_id,
                          json_pack("{s:s, s:s, s:s, s:I, s:i}", "op", "history",
                                    "roomId", r->room_id, "userId", r->user_id,
                                    "beforeSeq", (json_int_t)(r->has_before_seq ? r->before_seq : 0),
                                    "limit", r->limit));
}

int kchat__cmd_history(struct ctx *c, const json_t *cmd)
{
    const char *room_id = json_string_value(json_object_get(cmd, "roomId"));
    json_int_t before = json_integer_value(json_object_get(cmd, "beforeSeq"));
    json_int_t limit = json_integer_value(json_object_get(cmd, "limit"));

    if (room_id == NULL || limit < 1 || limit > 100)
        return KCHAT_EDECODE;
    return kchat__room_history(c, room_id, c->user_id, before, (int)limit);
}
