/*
 * The protocol's names: operations and their topics, wire error codes and
 * content types (PROTOCOL.md sections 1, 3 and 5).
 */
#include <string.h>

#include "kchat/codec.h"
#include "kchat/error.h"
#include "names_int.h"

/* Row n of PROTOCOL.md section 3, indexed by kchat_op. */
static const struct op_topics {
    const char *request;
    const char *response;
} op_topics[] = {
    [KCHAT_OP_USER_ADD]      = {"user-add-request", "user-add-response"},
    [KCHAT_OP_LOGIN]         = {"login-request", "login-response"},
    [KCHAT_OP_LOGOUT]        = {"logout-request", "logout-response"},
    [KCHAT_OP_STATUS]        = {"user-status-change-request", "user-status-change-response"},
    [KCHAT_OP_ADD_FRIEND]    = {"user-add-friend-request", "user-add-friend-response"},
    [KCHAT_OP_SEARCH_FRIEND] = {"user-search-friend-request", "user-search-friend-response"},
    [KCHAT_OP_ADD_ROOM]      = {"user-add-room-request", "user-add-room-response"},
    [KCHAT_OP_SEARCH_ROOM]   = {"user-search-room-request", "user-search-room-response"},
    [KCHAT_OP_ADD_CHAT]      = {"user-add-chat-request", "user-add-chat-response"},
    [KCHAT_OP_HISTORY]       = {"room-history-request", "room-history-response"},
    [KCHAT_OP_ROOM_READ]     = {"room-read-request", "room-read-response"},
    [KCHAT_OP_ROOM_INVITE]   = {"room-invite-request", "room-invite-response"},
    [KCHAT_OP_ROOM_LEAVE]    = {"room-leave-request", "room-leave-response"},
};
_Static_assert(sizeof op_topics / sizeof op_topics[0] == KCHAT_OP__COUNT,
               "one topic pair per operation");

static const char *const wire_err_names[] = {
    [KCHAT_WIRE_OK]              = "",
    [KCHAT_WIRE_BAD_REQUEST]     = "BAD_REQUEST",
    [KCHAT_WIRE_UNAUTHENTICATED] = "UNAUTHENTICATED",
    [KCHAT_WIRE_BAD_CREDENTIALS] = "BAD_CREDENTIALS",
    [KCHAT_WIRE_ALREADY_EXISTS]  = "ALREADY_EXISTS",
    [KCHAT_WIRE_USER_NOT_FOUND]  = "USER_NOT_FOUND",
    [KCHAT_WIRE_NOT_A_FRIEND]    = "NOT_A_FRIEND",
    [KCHAT_WIRE_ROOM_NOT_FOUND]  = "ROOM_NOT_FOUND",
    [KCHAT_WIRE_NOT_A_MEMBER]    = "NOT_A_MEMBER",
    [KCHAT_WIRE_TOO_LARGE]       = "TOO_LARGE",
    [KCHAT_WIRE_INTERNAL]        = "INTERNAL",
};
_Static_assert(sizeof wire_err_names / sizeof wire_err_names[0] == KCHAT_WIRE_INTERNAL + 1,
               "one name per wire error");

/* Media types, matched without case; several may name one format. */
static const struct media_type {
    const char *name;
    kchat_fmt fmt;
} media_types[] = {
    {"application/json", KCHAT_FMT_JSON},
    {"application/msgpack", KCHAT_FMT_MSGPACK},
    {"application/x-msgpack", KCHAT_FMT_MSGPACK},
};

const char *kchat_wire_err_name(kchat_wire_err e)
{
    if ((unsigned)e > KCHAT_WIRE_INTERNAL)
        return wire_err_names[KCHAT_WIRE_INTERNAL];
    return wire_err_names[e];
}

const char *kchat__op_plain_topic(kchat_op op, bool response)
{
    if ((unsigned)op >= KCHAT_OP__COUNT)
        return NULL;
    return response ? op_topics[op].response : op_topics[op].request;
}

const char *kchat_op_request_topic(kchat_op op)
{
    return kchat__op_topic(op, false);
}

const char *kchat_op_response_topic(kchat_op op)
{
    return kchat__op_topic(op, true);
}

int kchat_op_from_request_topic(const char *topic, kchat_op *out)
{
    if (!out)
        return KCHAT_EINVAL;
    if (!topic)
        return KCHAT_ENOTFOUND;
    for (unsigned op = 0; op < KCHAT_OP__COUNT; op++) {
        if (strcmp(topic, kchat__op_topic((kchat_op)op, false)) == 0) {
            *out = (kchat_op)op;
            return KCHAT_OK;
        }
    }
    return KCHAT_ENOTFOUND;
}

const char *kchat_fmt_content_type(kchat_fmt f)
{
    switch (f) {
    case KCHAT_FMT_JSON:
        return "application/json";
    case KCHAT_FMT_MSGPACK:
        return "application/msgpack";
    }
    return NULL;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Case-insensitive for ASCII letters only, whatever the locale. */
static bool ascii_case_equal(const char *s, size_t len, const char *lower)
{
    if (strlen(lower) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (ascii_lower(s[i]) != lower[i])
            return false;
    }
    return true;
}

int kchat_fmt_from_content_type(const void *ct, size_t len, kchat_fmt *out)
{
    if (!out)
        return KCHAT_EINVAL;
    const char *s = ct;
    if (!s)
        len = 0;

    /* The media type is what precedes any parameters, blanks trimmed. */
    const char *semi = len ? memchr(s, ';', len) : NULL;
    size_t n = semi ? (size_t)(semi - s) : len;
    while (n > 0 && is_blank(s[0])) {
        s++;
        n--;
    }
    while (n > 0 && is_blank(s[n - 1]))
        n--;

    if (n == 0 && !semi) {
        *out = KCHAT_FMT_JSON;
        return KCHAT_OK;
    }
    for (size_t i = 0; i < sizeof media_types / sizeof media_types[0]; i++) {
        if (ascii_case_equal(s, n, media_types[i].name)) {
            *out = media_types[i].fmt;
            return KCHAT_OK;
        }
    }
    return KCHAT_EDECODE;
}
