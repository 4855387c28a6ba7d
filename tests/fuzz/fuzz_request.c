/*
 * Fuzz harness for the codec: every input is read as a request body for
 * every operation in both formats, as a bare value in both formats (with an
 * encode/decode round trip), and as a content-type header.
 *
 * Besides "does not crash", it checks the codec's promises and abort()s
 * when one breaks, so the fuzzer keeps the input:
 *  - a decoded value re-encodes in either format and decodes back equal;
 *  - a parsed request holds only NUL-terminated, in-limit, valid fields;
 *  - a rejection always comes with a message, a success never.
 *
 * Built with libFuzzer (clang -fsanitize=fuzzer -DKCHAT_LIBFUZZER) or, with
 * gcc, linked to replay_main.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/codec.h"
#include "kchat/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The record key every parse uses; the seed corpus acts as this user. */
#define FUZZ_KEY "alice"

/* A broken promise must crash, so the input is kept and reported. */
#define CHECK(cond)         \
    do {                    \
        if (!(cond))        \
            abort();        \
    } while (0)

/* Encodes v in format f and decodes it back: the result must equal v. */
static void check_round_trip(kchat_fmt f, const json_t *v)
{
    char *buf;
    size_t len;
    json_t *back;

    int rc = kchat_codec_encode(f, v, &buf, &len);
    if (rc == KCHAT_ENOMEM)
        return;
    CHECK(rc == KCHAT_OK && buf && len > 0);
    rc = kchat_codec_decode(f, buf, len, &back);
    free(buf);
    if (rc == KCHAT_ENOMEM)
        return;
    CHECK(rc == KCHAT_OK);
    CHECK(json_equal(v, back));
    json_decref(back);
}

static void fuzz_value(kchat_fmt f, const uint8_t *data, size_t size)
{
    json_t *v = NULL;
    int rc = kchat_codec_decode(f, data, size, &v);
    CHECK(rc == KCHAT_OK || rc == KCHAT_EDECODE || rc == KCHAT_ENOMEM);
    CHECK((rc == KCHAT_OK) == (v != NULL));
    if (!v)
        return;
    check_round_trip(KCHAT_FMT_JSON, v);
    check_round_trip(KCHAT_FMT_MSGPACK, v);
    json_decref(v);
}

/* A NUL-terminated field of at most max bytes, strict UTF-8. */
static void check_text(const char *s, size_t size, size_t max)
{
    const char *nul = memchr(s, '\0', size);
    CHECK(nul != NULL);
    size_t len = (size_t)(nul - s);
    CHECK(len <= max);
    CHECK(kchat_utf8_valid(s, len));
}

static void check_id(const char *s, size_t size)
{
    const char *nul = memchr(s, '\0', size);
    CHECK(nul != NULL);
    CHECK(kchat_valid_id(s, (size_t)(nul - s)));
}

static void check_request(const kchat_request *r, kchat_op op)
{
    CHECK(r->op == op);
    check_id(r->user_id, sizeof r->user_id);
    CHECK(strcmp(r->user_id, FUZZ_KEY) == 0);
    check_text(r->user_pw, sizeof r->user_pw, 128);
    check_text(r->email, sizeof r->email, 254);
    check_text(r->user_name, sizeof r->user_name, 64);
    check_text(r->user_status, sizeof r->user_status, 256);
    check_text(r->room_id, sizeof r->room_id, 64);
    check_text(r->room_name, sizeof r->room_name, 128);
    check_text(r->message, sizeof r->message, 4096);
    CHECK(r->message_len == strlen(r->message));
    check_text(r->client_msg_id, sizeof r->client_msg_id, 64);
    CHECK(r->n_friends <= KCHAT_MAX_FRIENDS);
    for (size_t i = 0; i < r->n_friends; i++) {
        check_id(r->friend_ids[i], sizeof r->friend_ids[i]);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(r->friend_ids[i], r->friend_ids[j]) != 0);
    }
    CHECK(!r->has_before_seq || r->before_seq >= 1);
    CHECK(r->limit >= 1 && r->limit <= 100);

    bool friends = op == KCHAT_OP_ADD_FRIEND || op == KCHAT_OP_ADD_ROOM;
    CHECK(friends == (r->n_friends > 0));
    if (op == KCHAT_OP_ADD_CHAT || op == KCHAT_OP_HISTORY)
        check_id(r->room_id, sizeof r->room_id);
    if (op == KCHAT_OP_ADD_CHAT)
        CHECK(r->message_len >= 1);
}

static void fuzz_request(kchat_op op, kchat_fmt f, const uint8_t *data, size_t size)
{
    kchat_request req;
    char err[128];
    kchat_wire_err e = kchat_request_parse(op, f, FUZZ_KEY, strlen(FUZZ_KEY), data, size, &req,
                                           err, sizeof err);
    CHECK(memchr(err, '\0', sizeof err) != NULL);
    if (e == KCHAT_WIRE_OK) {
        CHECK(err[0] == '\0');
        check_request(&req, op);
        return;
    }
    CHECK(e == KCHAT_WIRE_BAD_REQUEST || e == KCHAT_WIRE_TOO_LARGE || e == KCHAT_WIRE_INTERNAL);
    CHECK(err[0] != '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int f = KCHAT_FMT_JSON; f <= KCHAT_FMT_MSGPACK; f++) {
        fuzz_value((kchat_fmt)f, data, size);
        for (int op = 0; op < KCHAT_OP__COUNT; op++)
            fuzz_request((kchat_op)op, (kchat_fmt)f, data, size);
    }

    /* Also without a message buffer, which must be allowed. */
    kchat_request req;
    kchat_request_parse((kchat_op)(size % KCHAT_OP__COUNT), KCHAT_FMT_JSON, data, size, data,
                        size, &req, NULL, 0);

    kchat_fmt fmt;
    int rc = kchat_fmt_from_content_type(data, size, &fmt);
    CHECK(rc == KCHAT_OK || rc == KCHAT_EDECODE);
    return 0;
}
