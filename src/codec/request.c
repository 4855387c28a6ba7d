/*
 * kchat_request_parse(): one request body, decoded and checked against
 * PROTOCOL.md sections 2 and 3, into a flat kchat_request.
 *
 * Each operation has a small parser that takes its fields in order with
 * the take_*() helpers. A helper either copies a valid field into the
 * request or writes the reason into errmsg and returns false, so an
 * operation's parser is one chain of &&.
 *
 * Strings inside the decoded body are already strict UTF-8 without NUL
 * (kchat_codec_decode() guarantees it), so the helpers check only lengths
 * and the field-specific rules.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec_internal.h"
#include "kchat/error.h"

#define DEFAULT_LIMIT 50
#define MAX_LIMIT 100

/* The struct's arrays must hold each limit of PROTOCOL.md section 2 plus a NUL. */
#define FIELD_SIZE(field) sizeof(((kchat_request *)0)->field)
_Static_assert(FIELD_SIZE(user_id) == 64 + 1, "userId: 1..64 bytes");
_Static_assert(FIELD_SIZE(user_pw) == 128 + 1, "userPw: 8..128 bytes");
_Static_assert(FIELD_SIZE(email) == 254 + 1, "email: 3..254 bytes");
_Static_assert(FIELD_SIZE(user_name) == 64 + 1, "userName: 1..64 bytes");
_Static_assert(FIELD_SIZE(user_status) == 256 + 1, "userStatus: 0..256 bytes");
_Static_assert(FIELD_SIZE(room_id) == 64 + 1, "roomId: 1..64 bytes");
_Static_assert(FIELD_SIZE(room_name) == 128 + 1, "roomName: 0..128 bytes");
_Static_assert(FIELD_SIZE(message) == 4096 + 1, "message: 1..4096 bytes");
_Static_assert(FIELD_SIZE(client_msg_id) == 64 + 1, "clientMsgId: 0..64 bytes");
_Static_assert(FIELD_SIZE(friend_ids[0]) == 64 + 1, "friendId: 1..64 bytes");

/* The body being parsed and where its first fault is reported. */
typedef struct parser {
    const json_t *body;   /* an object */
    char *errmsg;         /* NULL when errmsg_size is 0 */
    size_t errmsg_size;
} parser;

/* Writes the reason for a rejection; always returns false. */
__attribute__((format(printf, 2, 3)))
static bool fail(parser *p, const char *fmt, ...)
{
    if (p->errmsg_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->errmsg, p->errmsg_size, fmt, ap);
        va_end(ap);
    }
    return false;
}

/* A field of the body, or NULL when it is absent or null. */
static const json_t *field(const parser *p, const char *name)
{
    const json_t *v = json_object_get(p->body, name);
    return json_is_null(v) ? NULL : v;
}

/* ---- Field helpers ------------------------------------------------------ */

static bool take_id(parser *p, const char *name, char dst[65])
{
    const json_t *v = field(p, name);
    if (!v)
        return fail(p, "%s is required.", name);
    if (!json_is_string(v) || !kchat_valid_id(json_string_value(v), json_string_length(v)))
        return fail(p, "%s must be 1 to 64 bytes of letters, digits, '_', '.' or '-'.", name);
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return true;
}

enum {
    TEXT_REQUIRED = 1 << 0,    /* absent is an error, not "" */
    TEXT_NO_CONTROL = 1 << 1,  /* no U+0000..U+001F, U+007F..U+009F */
    TEXT_NEEDS_AT = 1 << 2,    /* contains '@' */
};

/* How to check one string field. */
typedef struct text_rule {
    const char *name;   /* the field's key */
    size_t min, max;    /* its length in bytes */
    unsigned flags;     /* TEXT_* */
    const char *rule;   /* the sentence a violation reports */
} text_rule;

static const text_rule USER_PW = {
    "userPw", 8, 128, TEXT_REQUIRED, "userPw must be 8 to 128 bytes."};
static const text_rule EMAIL = {
    "email", 3, 254, TEXT_REQUIRED | TEXT_NEEDS_AT,
    "email must be 3 to 254 bytes of UTF-8 and contain '@'."};
static const text_rule USER_NAME = {
    "userName", 1, 64, TEXT_REQUIRED | TEXT_NO_CONTROL,
    "userName must be 1 to 64 bytes of UTF-8 without control characters."};
static const text_rule USER_STATUS = {
    "userStatus", 0, 256, TEXT_REQUIRED, "userStatus must be at most 256 bytes of UTF-8."};
static const text_rule STATUS_ALIAS = {
    "status", 0, 256, TEXT_REQUIRED, "status must be at most 256 bytes of UTF-8."};
static const text_rule ROOM_NAME = {
    "roomName", 0, 128, 0, "roomName must be at most 128 bytes of UTF-8."};
static const text_rule MESSAGE = {
    "message", 1, 4096, TEXT_REQUIRED, "message must be 1 to 4096 bytes of UTF-8."};
static const text_rule CLIENT_MSG_ID = {
    "clientMsgId", 0, 64, 0, "clientMsgId must be at most 64 bytes of UTF-8."};

/* Whether valid UTF-8 holds a C0 control, DEL or a C1 control (U+0080..U+009F,
 * which UTF-8 writes as C2 80..C2 9F). */
static bool has_control(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len; i++) {
        if (u[i] < 0x20 || u[i] == 0x7f)
            return true;
        /* In valid UTF-8 the byte after C2 is a continuation, 80..BF. */
        if (u[i] == 0xc2 && i + 1 < len && u[i + 1] <= 0x9f)
            return true;
    }
    return false;
}

/*
 * Copies the string field `rule` describes into dst (dst_size bytes, room
 * for rule->max and a NUL). An optional field that is absent leaves dst
 * empty. *present, if not NULL, tells whether the field was there.
 */
static bool take_text(parser *p, const text_rule *rule, char *dst, size_t dst_size, bool *present)
{
    assert(rule->max < dst_size);
    const json_t *v = field(p, rule->name);
    if (present)
        *present = v != NULL;
    if (!v) {
        if (rule->flags & TEXT_REQUIRED)
            return fail(p, "%s is required.", rule->name);
        return true;
    }
    if (!json_is_string(v))
        return fail(p, "%s", rule->rule);

    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len < rule->min || len > rule->max ||
        ((rule->flags & TEXT_NO_CONTROL) && has_control(s, len)) ||
        ((rule->flags & TEXT_NEEDS_AT) && !memchr(s, '@', len)))
        return fail(p, "%s", rule->rule);
    memcpy(dst, s, len + 1);
    return true;
}

/*
 * An integer, also given as a real with an integral value (50.0): some
 * encoders write every number as a float.
 */
static bool json_as_int64(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    if (!json_is_real(v))
        return false;
    double d = json_real_value(v);
    /* Range first: converting an out-of-range double is undefined.
     * Both bounds, -2^63 and 2^63, are exact doubles. */
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
        return false;
    int64_t i = (int64_t)d;
    if ((double)i != d)
        return false;
    *out = i;
    return true;
}

/* An optional integer field in [min, max]; absent leaves *out alone.
 * *present, if not NULL, tells whether the field was there. */
static bool take_int(parser *p, const char *name, int64_t min, int64_t max, const char *rule,
                     int64_t *out, bool *present)
{
    const json_t *v = field(p, name);
    if (present)
        *present = v != NULL;
    if (!v)
        return true;
    int64_t i;
    if (!json_as_int64(v, &i) || i < min || i > max)
        return fail(p, "%s", rule);
    *out = i;
    return true;
}

static bool has_friend(const kchat_request *r, const char *id)
{
    for (size_t i = 0; i < r->n_friends; i++) {
        if (strcmp(r->friend_ids[i], id) == 0)
            return true;
    }
    return false;
}

/*
 * `friendId`: a non-empty array of ids. Repeats are folded before counting,
 * so any number of raw entries is fine as long as at most KCHAT_MAX_FRIENDS
 * are distinct (the record size bounds the raw count, and so the
 * quadratic folding, to about 16 Ki x 100 comparisons).
 */
static bool take_friend_ids(parser *p, kchat_request *r)
{
    const json_t *list = field(p, "friendId");
    if (!list)
        return fail(p, "friendId is required.");
    if (!json_is_array(list) || json_array_size(list) == 0)
        return fail(p, "friendId must be a non-empty array of user ids.");

    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v) {
        if (!json_is_string(v) || !kchat_valid_id(json_string_value(v), json_string_length(v)))
            return fail(p, "friendId[%zu] must be 1 to 64 bytes of letters, digits, "
                           "'_', '.' or '-'.", i);
        const char *id = json_string_value(v);
        if (has_friend(r, id))
            continue;
        if (r->n_friends == KCHAT_MAX_FRIENDS)
            return fail(p, "friendId must hold at most %d distinct user ids.", KCHAT_MAX_FRIENDS);
        memcpy(r->friend_ids[r->n_friends++], id, json_string_length(v) + 1);
    }
    return true;
}

/* ---- Operations (PROTOCOL.md section 3) --------------------------------- */

static bool parse_user_add(parser *p, kchat_request *r)
{
    return take_id(p, "userId", r->user_id) &&
           take_text(p, &USER_PW, r->user_pw, sizeof r->user_pw, NULL) &&
           take_text(p, &EMAIL, r->email, sizeof r->email, NULL) &&
           take_text(p, &USER_NAME, r->user_name, sizeof r->user_name, NULL);
}

static bool parse_login(parser *p, kchat_request *r)
{
    return take_id(p, "userId", r->user_id) &&
           take_text(p, &USER_PW, r->user_pw, sizeof r->user_pw, NULL);
}

/* logout, user-search-friend, user-search-room */
static bool parse_user_only(parser *p, kchat_request *r)
{
    return take_id(p, "userId", r->user_id);
}

static bool parse_status(parser *p, kchat_request *r)
{
    /* `status` is the original server's name, used only without `userStatus`. */
    const text_rule *rule =
        field(p, "userStatus") || !field(p, "status") ? &USER_STATUS : &STATUS_ALIAS;
    return take_id(p, "userId", r->user_id) &&
           take_text(p, rule, r->user_status, sizeof r->user_status, NULL);
}

static bool parse_add_friend(parser *p, kchat_request *r)
{
    if (!take_id(p, "userId", r->user_id) || !take_friend_ids(p, r))
        return false;
    if (has_friend(r, r->user_id))
        return fail(p, "friendId must not contain userId itself.");
    return true;
}

static bool parse_add_room(parser *p, kchat_request *r)
{
    return take_id(p, "userId", r->user_id) && take_friend_ids(p, r) &&
           take_text(p, &ROOM_NAME, r->room_name, sizeof r->room_name, &r->has_room_name);
}

static bool parse_add_chat(parser *p, kchat_request *r)
{
    if (!take_id(p, "roomId", r->room_id) || !take_id(p, "writerId", r->user_id) ||
        !take_text(p, &MESSAGE, r->message, sizeof r->message, NULL) ||
        !take_text(p, &CLIENT_MSG_ID, r->client_msg_id, sizeof r->client_msg_id, NULL))
        return false;
    r->message_len = strlen(r->message);
    return true;
}

static bool parse_history(parser *p, kchat_request *r)
{
    int64_t limit = DEFAULT_LIMIT;
    if (!take_id(p, "userId", r->user_id) || !take_id(p, "roomId", r->room_id) ||
        !take_int(p, "beforeSeq", 1, INT64_MAX, "beforeSeq must be an integer of at least 1.",
                  &r->before_seq, &r->has_before_seq) ||
        !take_int(p, "limit", 1, MAX_LIMIT, "limit must be an integer from 1 to 100.", &limit,
                  NULL))
        return false;
    r->limit = (int)limit;
    return true;
}

static bool parse_room_read(parser *p, kchat_request *r)
{
    bool present = false;

    if (!take_id(p, "userId", r->user_id) || !take_id(p, "roomId", r->room_id) ||
        !take_int(p, "readSeq", 0, INT64_MAX, "readSeq must be an integer of at least 0.",
                  &r->read_seq, &present))
        return false;
    return present || fail(p, "readSeq is required.");
}

/* room-invite: the inviter may name themself (skipped as a participant). */
static bool parse_room_invite(parser *p, kchat_request *r)
{
    return take_id(p, "userId", r->user_id) && take_id(p, "roomId", r->room_id) &&
           take_friend_ids(p, r);
}

static bool parse_room_leave(parser *p, kchat_request *r)
{
    return take_id(p, "userId", r->user_id) && take_id(p, "roomId", r->room_id);
}

typedef bool (*op_parser)(parser *p, kchat_request *r);

static const op_parser op_parsers[] = {
    [KCHAT_OP_USER_ADD] = parse_user_add,
    [KCHAT_OP_LOGIN] = parse_login,
    [KCHAT_OP_LOGOUT] = parse_user_only,
    [KCHAT_OP_STATUS] = parse_status,
    [KCHAT_OP_ADD_FRIEND] = parse_add_friend,
    [KCHAT_OP_SEARCH_FRIEND] = parse_user_only,
    [KCHAT_OP_ADD_ROOM] = parse_add_room,
    [KCHAT_OP_SEARCH_ROOM] = parse_user_only,
    [KCHAT_OP_ADD_CHAT] = parse_add_chat,
    [KCHAT_OP_HISTORY] = parse_history,
    [KCHAT_OP_ROOM_READ] = parse_room_read,
    [KCHAT_OP_ROOM_INVITE] = parse_room_invite,
    [KCHAT_OP_ROOM_LEAVE] = parse_room_leave,
};
_Static_assert(sizeof op_parsers / sizeof op_parsers[0] == KCHAT_OP__COUNT,
               "one parser per operation");

/* ---- The body ----------------------------------------------------------- */

static const char *fmt_name(kchat_fmt f)
{
    return f == KCHAT_FMT_MSGPACK ? "msgpack" : "JSON";
}

/* {"userId": id}: the logout body the original server's bare id stands for. */
static kchat_wire_err bare_logout_body(parser *p, const char *id, size_t len, json_t **body)
{
    *body = json_pack("{s:s%}", "userId", id, len);
    if (!*body) {
        fail(p, "The server ran out of memory.");
        return KCHAT_WIRE_INTERNAL;
    }
    return KCHAT_WIRE_OK;
}

/*
 * Decodes the value into an object, applying logout's compatibility rule:
 * raw bytes that are a valid id, or a decoded string holding one, stand
 * for {"userId": id}. On success the caller owns *body.
 */
static kchat_wire_err decode_body(parser *p, kchat_op op, kchat_fmt f, const void *value,
                                  size_t value_len, json_t **body)
{
    bool logout = op == KCHAT_OP_LOGOUT;
    if (logout && kchat_valid_id(value, value_len))
        return bare_logout_body(p, value, value_len, body);

    const char *why = KCHAT__WHY_MALFORMED;
    int rc = kchat__codec_decode(f, value, value_len, body, &why);
    if (rc == KCHAT_EDECODE) {
        fail(p, "The request body is not valid %s: %s.", fmt_name(f), why);
        return KCHAT_WIRE_BAD_REQUEST;
    }
    if (rc != KCHAT_OK) {
        fail(p, rc == KCHAT_ENOMEM ? "The server ran out of memory."
                                   : "The body format is unknown.");
        return KCHAT_WIRE_INTERNAL;
    }

    json_t *v = *body;
    if (logout && json_is_string(v) && kchat_valid_id(json_string_value(v), json_string_length(v))) {
        kchat_wire_err e = bare_logout_body(p, json_string_value(v), json_string_length(v), body);
        json_decref(v);
        return e;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        *body = NULL;
        fail(p, "The request body must be an object (a JSON object or a msgpack map).");
        return KCHAT_WIRE_BAD_REQUEST;
    }
    return KCHAT_WIRE_OK;
}

static bool key_matches(parser *p, const void *key, size_t key_len, const kchat_request *r)
{
    const char *name = r->op == KCHAT_OP_ADD_CHAT ? "writerId" : "userId";
    if (!key)
        key_len = 0;
    if (key_len != strlen(r->user_id) || (key_len > 0 && memcmp(key, r->user_id, key_len) != 0))
        return fail(p, "The record key must equal %s.", name);
    return true;
}

kchat_wire_err kchat_request_parse(kchat_op op, kchat_fmt f, const void *key, size_t key_len,
                                   const void *value, size_t value_len, kchat_request *req,
                                   char *errmsg, size_t errmsg_size)
{
    parser p = {.body = NULL, .errmsg = errmsg, .errmsg_size = errmsg ? errmsg_size : 0};
    if (p.errmsg_size > 0)
        p.errmsg[0] = '\0';

    if (!req || (unsigned)op >= KCHAT_OP__COUNT) {
        fail(&p, "The server asked to parse %s.", req ? "an unknown operation" : "into no request");
        return KCHAT_WIRE_INTERNAL;
    }
    memset(req, 0, sizeof *req);
    req->op = op;
    req->limit = DEFAULT_LIMIT;

    if (value_len > KCHAT_MAX_VALUE) {
        fail(&p, "The record value is %zu bytes; at most %d are allowed.", value_len,
             KCHAT_MAX_VALUE);
        return KCHAT_WIRE_TOO_LARGE;
    }
    if (!value)
        value_len = 0;

    json_t *body;
    kchat_wire_err e = decode_body(&p, op, f, value, value_len, &body);
    if (e != KCHAT_WIRE_OK)
        return e;
    p.body = body;
    bool ok = op_parsers[op](&p, req) && key_matches(&p, key, key_len, req);
    json_decref(body);
    return ok ? KCHAT_WIRE_OK : KCHAT_WIRE_BAD_REQUEST;
}
