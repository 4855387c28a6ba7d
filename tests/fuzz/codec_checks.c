/*
 * The codec's promises, checked on one fuzz input (codec_checks.h).
 */
#include "fuzz/codec_checks.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/error.h"

_Noreturn void fuzz_check_failed(const char *file, int line, const char *what)
{
    fprintf(stderr, "fuzz: check failed at %s:%d: %s\n", file, line, what);
    fflush(stderr);
    abort();
}

/* Encodes v in format f and decodes it back: the result must equal v, and
 * encoding it again must give the same bytes. */
static void check_round_trip(kchat_fmt f, const json_t *v)
{
    char *buf, *again;
    size_t len, again_len;
    json_t *back;

    int rc = kchat_codec_encode(f, v, &buf, &len);
    if (rc == KCHAT_ENOMEM)
        return;
    FUZZ_CHECK(rc == KCHAT_OK && buf && len > 0);
    rc = kchat_codec_decode(f, buf, len, &back);
    if (rc == KCHAT_ENOMEM) {
        free(buf);
        return;
    }
    FUZZ_CHECK(rc == KCHAT_OK);
    FUZZ_CHECK(json_equal(v, back));
    rc = kchat_codec_encode(f, back, &again, &again_len);
    json_decref(back);
    if (rc == KCHAT_ENOMEM) {
        free(buf);
        return;
    }
    FUZZ_CHECK(rc == KCHAT_OK);
    FUZZ_CHECK(again_len == len && memcmp(again, buf, len) == 0);
    free(again);
    free(buf);
}

static json_t *fuzz_value(kchat_fmt f, const uint8_t *data, size_t size)
{
    json_t *v = NULL;
    int rc = kchat_codec_decode(f, data, size, &v);
    FUZZ_CHECK(rc == KCHAT_OK || rc == KCHAT_EDECODE || rc == KCHAT_ENOMEM);
    FUZZ_CHECK((rc == KCHAT_OK) == (v != NULL));
    if (!v)
        return NULL;
    check_round_trip(KCHAT_FMT_JSON, v);
    check_round_trip(KCHAT_FMT_MSGPACK, v);
    return v;
}

/* A NUL-terminated field of at most max bytes, strict UTF-8. */
static void check_text(const char *s, size_t size, size_t max)
{
    const char *nul = memchr(s, '\0', size);
    FUZZ_CHECK(nul != NULL);
    size_t len = (size_t)(nul - s);
    FUZZ_CHECK(len <= max);
    FUZZ_CHECK(kchat_utf8_valid(s, len));
}

static void check_id(const char *s, size_t size)
{
    const char *nul = memchr(s, '\0', size);
    FUZZ_CHECK(nul != NULL);
    FUZZ_CHECK(kchat_valid_id(s, (size_t)(nul - s)));
}

static void check_request(const kchat_request *r, kchat_op op)
{
    FUZZ_CHECK(r->op == op);
    check_id(r->user_id, sizeof r->user_id);
    FUZZ_CHECK(strcmp(r->user_id, FUZZ_KEY) == 0);
    check_text(r->user_pw, sizeof r->user_pw, 128);
    check_text(r->email, sizeof r->email, 254);
    check_text(r->user_name, sizeof r->user_name, 64);
    check_text(r->user_status, sizeof r->user_status, 256);
    check_text(r->room_id, sizeof r->room_id, 64);
    check_text(r->room_name, sizeof r->room_name, 128);
    check_text(r->message, sizeof r->message, 4096);
    FUZZ_CHECK(r->message_len == strlen(r->message));
    check_text(r->client_msg_id, sizeof r->client_msg_id, 64);
    FUZZ_CHECK(r->n_friends <= KCHAT_MAX_FRIENDS);
    for (size_t i = 0; i < r->n_friends; i++) {
        check_id(r->friend_ids[i], sizeof r->friend_ids[i]);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(r->friend_ids[i], r->friend_ids[j]) != 0);
    }
    FUZZ_CHECK(!r->has_before_seq || r->before_seq >= 1);
    FUZZ_CHECK(r->limit >= 1 && r->limit <= 100);

    bool friends = op == KCHAT_OP_ADD_FRIEND || op == KCHAT_OP_ADD_ROOM ||
                   op == KCHAT_OP_ROOM_INVITE;
    FUZZ_CHECK(friends == (r->n_friends > 0));
    if (op == KCHAT_OP_ADD_FRIEND)
        for (size_t i = 0; i < r->n_friends; i++)
            FUZZ_CHECK(strcmp(r->friend_ids[i], r->user_id) != 0);
    if (op == KCHAT_OP_ADD_CHAT || op == KCHAT_OP_HISTORY || op == KCHAT_OP_ROOM_READ ||
        op == KCHAT_OP_ROOM_INVITE || op == KCHAT_OP_ROOM_LEAVE)
        check_id(r->room_id, sizeof r->room_id);
    if (op == KCHAT_OP_ROOM_READ)
        FUZZ_CHECK(r->read_seq >= 0);
    if (op == KCHAT_OP_ADD_CHAT)
        FUZZ_CHECK(r->message_len >= 1);
}

static void fuzz_request(kchat_op op, kchat_fmt f, const uint8_t *data, size_t size)
{
    kchat_request req;
    char err[128];
    kchat_wire_err e = kchat_request_parse(op, f, FUZZ_KEY, strlen(FUZZ_KEY), data, size, &req,
                                           err, sizeof err);
    FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL);
    if (e == KCHAT_WIRE_OK) {
        FUZZ_CHECK(err[0] == '\0');
        check_request(&req, op);
        return;
    }
    FUZZ_CHECK(e == KCHAT_WIRE_BAD_REQUEST || e == KCHAT_WIRE_TOO_LARGE ||
               e == KCHAT_WIRE_INTERNAL);
    FUZZ_CHECK((e == KCHAT_WIRE_TOO_LARGE) == (size > KCHAT_MAX_VALUE));
    FUZZ_CHECK(err[0] != '\0');
}

/* The size check comes first: the input padded with spaces (JSON
 * whitespace) to one byte over the limit is TOO_LARGE, whatever it holds.
 * (A seed over 64 KiB would do the same, but would make libFuzzer try
 * inputs that large all the time.) */
static void fuzz_too_large(kchat_fmt f, const uint8_t *data, size_t size)
{
    static char *padded;   /* KCHAT_MAX_VALUE + 1 spaces between calls */
    enum { PADDED = KCHAT_MAX_VALUE + 1 };
    kchat_request req;
    char err[128];

    if (size > KCHAT_MAX_VALUE)
        return;
    if (padded == NULL) {
        FUZZ_CHECK((padded = malloc(PADDED)) != NULL);
        memset(padded, ' ', PADDED);
    }
    if (size > 0)
        memcpy(padded, data, size);
    kchat_wire_err e = kchat_request_parse((kchat_op)(size % KCHAT_OP__COUNT), f, FUZZ_KEY,
                                           strlen(FUZZ_KEY), padded, PADDED, &req, err,
                                           sizeof err);
    memset(padded, ' ', size);
    FUZZ_CHECK(e == KCHAT_WIRE_TOO_LARGE);
    FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0');
}

json_t *fuzz_codec_input(kchat_fmt f, const uint8_t *data, size_t size)
{
    json_t *v = fuzz_value(f, data, size);
    for (int op = 0; op < KCHAT_OP__COUNT; op++)
        fuzz_request((kchat_op)op, f, data, size);
    fuzz_too_large(f, data, size);

    /* Also without a message buffer, which must be allowed. */
    kchat_request req;
    kchat_wire_err pe = kchat_request_parse((kchat_op)(size % KCHAT_OP__COUNT), f, data, size,
                                            data, size, &req, NULL, 0);
    FUZZ_CHECK(pe == KCHAT_WIRE_OK || pe == KCHAT_WIRE_BAD_REQUEST || pe == KCHAT_WIRE_TOO_LARGE
               || pe == KCHAT_WIRE_INTERNAL /* only when memory ran out */);

    kchat_fmt fmt;
    int rc = kchat_fmt_from_content_type(data, size, &fmt);
    FUZZ_CHECK(rc == KCHAT_OK || rc == KCHAT_EDECODE);
    return v;
}
