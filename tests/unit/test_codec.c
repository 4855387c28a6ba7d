/*
 * Unit tests of the codec (include/kchat/codec.h): names, text helpers,
 * value decoding and encoding in both formats, and request validation
 * against every limit of PROTOCOL.md sections 2 and 3.
 *
 * Request tests build bodies as jansson values and parse them in both
 * formats (parse_both()), which also checks that JSON and msgpack agree on
 * every verdict, message and field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "kchat/codec.h"
#include "kchat/error.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* In -fsanitize=undefined builds, undefined behaviour fails the program
 * instead of printing a report and passing. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}

/* A byte string literal with its length, embedded NULs included. */
#define BYTES(lit) (lit), (sizeof(lit) - 1)

/* ======================================================================== */
/* Helpers                                                                  */
/* ======================================================================== */

static json_t *json_of(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &err);
    if (!v)
        fail_msg("test JSON does not parse: %s: %s", text, err.text);
    return v;
}

/* A string of n copies of c. */
static json_t *str_n(size_t n, char c)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    json_t *v = json_stringn(s, n);
    free(s);
    assert_non_null(v);
    return v;
}

/* A string of n bytes made of repeats of a multi-byte UTF-8 unit. */
static json_t *utf8_n(size_t n, const char *unit)
{
    size_t u = strlen(unit);
    assert_int_equal(n % u, 0);
    char *s = malloc(n + 1);
    assert_non_null(s);
    for (size_t i = 0; i < n; i += u)
        memcpy(s + i, unit, u);
    s[n] = '\0';
    json_t *v = json_stringn(s, n);
    free(s);
    assert_non_null(v);
    return v;
}

/* An email address of n >= 3 bytes: "a@eee...". */
static json_t *email_n(size_t n)
{
    json_t *tail = str_n(n - 2, 'e');
    json_t *v = json_sprintf("a@%s", json_string_value(tail));
    json_decref(tail);
    assert_non_null(v);
    return v;
}

/* `distinct` ids "f0", "f1", ..., the whole run `repeats` times. */
static json_t *id_list(size_t distinct, size_t repeats)
{
    json_t *list = json_array();
    for (size_t r = 0; r < repeats; r++) {
        for (size_t i = 0; i < distinct; i++) {
            char id[24];
            snprintf(id, sizeof id, "f%zu", i);
            json_array_append_new(list, json_string(id));
        }
    }
    return list;
}

static void assert_requests_equal(const kchat_request *a, const kchat_request *b)
{
    assert_int_equal(a->op, b->op);
    assert_string_equal(a->user_id, b->user_id);
    assert_string_equal(a->user_pw, b->user_pw);
    assert_string_equal(a->email, b->email);
    assert_string_equal(a->user_name, b->user_name);
    assert_string_equal(a->user_status, b->user_status);
    assert_string_equal(a->room_id, b->room_id);
    assert_string_equal(a->room_name, b->room_name);
    assert_int_equal(a->has_room_name, b->has_room_name);
    assert_string_equal(a->message, b->message);
    assert_int_equal(a->message_len, b->message_len);
    assert_string_equal(a->client_msg_id, b->client_msg_id);
    assert_int_equal(a->n_friends, b->n_friends);
    for (size_t i = 0; i < a->n_friends; i++)
        assert_string_equal(a->friend_ids[i], b->friend_ids[i]);
    assert_int_equal(a->before_seq, b->before_seq);
    assert_int_equal(a->has_before_seq, b->has_before_seq);
    assert_int_equal(a->limit, b->limit);
}

static kchat_wire_err parse_value(kchat_op op, kchat_fmt f, const char *key, const json_t *body,
                                  kchat_request *req, char *err, size_t err_size)
{
    char *buf;
    size_t len;
    assert_int_equal(kchat_codec_encode(f, body, &buf, &len), KCHAT_OK);
    kchat_wire_err e =
        kchat_request_parse(op, f, key, key ? strlen(key) : 0, buf, len, req, err, err_size);
    free(buf);
    return e;
}

/*
 * Parses body (a reference this takes) as JSON and as msgpack, asserts both
 * give the same verdict, message and request, and returns the verdict with
 * req and err (256 bytes) as parsed from JSON.
 */
static kchat_wire_err parse_both(kchat_op op, const char *key, json_t *body, kchat_request *req,
                                 char err[256])
{
    kchat_request mp_req;
    char mp_err[256];
    assert_non_null(body);
    kchat_wire_err e = parse_value(op, KCHAT_FMT_JSON, key, body, req, err, 256);
    kchat_wire_err mp_e = parse_value(op, KCHAT_FMT_MSGPACK, key, body, &mp_req, mp_err, 256);
    json_decref(body);
    assert_int_equal(e, mp_e);
    assert_string_equal(err, mp_err);
    if (e == KCHAT_WIRE_OK) {
        assert_string_equal(err, "");
        assert_requests_equal(req, &mp_req);
    } else {
        assert_true(strlen(err) > 0);
    }
    return e;
}

static void expect_ok(kchat_op op, const char *key, json_t *body, kchat_request *req)
{
    char err[256];
    kchat_wire_err e = parse_both(op, key, body, req, err);
    if (e != KCHAT_WIRE_OK)
        fail_msg("expected OK, got %s: %s", kchat_wire_err_name(e), err);
}

/* Expects BAD_REQUEST with a message containing `needle`. */
static void expect_bad(kchat_op op, const char *key, json_t *body, const char *needle)
{
    kchat_request req;
    char err[256];
    kchat_wire_err e = parse_both(op, key, body, &req, err);
    if (e != KCHAT_WIRE_BAD_REQUEST)
        fail_msg("expected BAD_REQUEST mentioning '%s', got %s: %s", needle,
                 kchat_wire_err_name(e), err);
    if (!strstr(err, needle))
        fail_msg("message '%s' does not mention '%s'", err, needle);
}

/* base (JSON text) with field set to value (a reference this takes). */
static json_t *with(const char *base, const char *field, json_t *value)
{
    json_t *body = json_of(base);
    assert_int_equal(json_object_set_new(body, field, value), 0);
    return body;
}

/* base (JSON text) without field. */
static json_t *without(const char *base, const char *field)
{
    json_t *body = json_of(base);
    assert_int_equal(json_object_del(body, field), 0);
    return body;
}

/* Raw bytes parsed in format f. */
static kchat_wire_err parse_raw(kchat_op op, kchat_fmt f, const char *key, const void *value,
                                size_t len, kchat_request *req, char err[256])
{
    return kchat_request_parse(op, f, key, key ? strlen(key) : 0, value, len, req, err, 256);
}

static const char USER_ADD[] =
    "{\"userId\":\"alice\",\"userPw\":\"correct horse\",\"email\":\"alice@example.com\","
    "\"userName\":\"Alice\"}";
static const char LOGIN[] = "{\"userId\":\"alice\",\"userPw\":\"correct horse\"}";
static const char STATUS[] = "{\"userId\":\"alice\",\"userStatus\":\"busy\"}";
static const char ADD_FRIEND[] = "{\"userId\":\"alice\",\"friendId\":[\"bob\",\"carol\"]}";
static const char ADD_ROOM[] =
    "{\"userId\":\"alice\",\"friendId\":[\"bob\"],\"roomName\":\"lunch\"}";
static const char ADD_CHAT[] =
    "{\"roomId\":\"r-1\",\"writerId\":\"alice\",\"message\":\"hi\",\"clientMsgId\":\"m1\"}";
static const char HISTORY[] = "{\"userId\":\"alice\",\"roomId\":\"r-1\"}";

/* ======================================================================== */
/* Names                                                                    */
/* ======================================================================== */

static void test_wire_err_names(void **state)
{
    (void)state;
    static const char *const names[] = {
        "", "BAD_REQUEST", "UNAUTHENTICATED", "BAD_CREDENTIALS", "ALREADY_EXISTS",
        "USER_NOT_FOUND", "NOT_A_FRIEND", "ROOM_NOT_FOUND", "NOT_A_MEMBER", "TOO_LARGE",
        "INTERNAL",
    };
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        assert_string_equal(kchat_wire_err_name((kchat_wire_err)i), names[i]);
    assert_string_equal(kchat_wire_err_name((kchat_wire_err)99), "INTERNAL");
    assert_string_equal(kchat_wire_err_name((kchat_wire_err)-1), "INTERNAL");
}

static void test_op_topics(void **state)
{
    (void)state;
    static const char *const stems[KCHAT_OP__COUNT] = {
        "user-add", "login", "logout", "user-status-change", "user-add-friend",
        "user-search-friend", "user-add-room", "user-search-room", "user-add-chat",
        "room-history", "room-read", "room-invite", "room-leave",
    };
    for (unsigned op = 0; op < KCHAT_OP__COUNT; op++) {
        char req[64], resp[64];
        snprintf(req, sizeof req, "%s-request", stems[op]);
        snprintf(resp, sizeof resp, "%s-response", stems[op]);
        assert_string_equal(kchat_op_request_topic((kchat_op)op), req);
        assert_string_equal(kchat_op_response_topic((kchat_op)op), resp);

        kchat_op found = KCHAT_OP__COUNT;
        assert_int_equal(kchat_op_from_request_topic(req, &found), KCHAT_OK);
        assert_int_equal(found, op);
        assert_int_equal(kchat_op_from_request_topic(resp, &found), KCHAT_ENOTFOUND);
    }
    assert_null(kchat_op_request_topic(KCHAT_OP__COUNT));
    assert_null(kchat_op_response_topic((kchat_op)-1));

    kchat_op op = KCHAT_OP_LOGIN;
    assert_int_equal(kchat_op_from_request_topic("User-Add-Request", &op), KCHAT_ENOTFOUND);
    assert_int_equal(kchat_op_from_request_topic("user-add-request ", &op), KCHAT_ENOTFOUND);
    assert_int_equal(kchat_op_from_request_topic("", &op), KCHAT_ENOTFOUND);
    assert_int_equal(kchat_op_from_request_topic(NULL, &op), KCHAT_ENOTFOUND);
    assert_int_equal(op, KCHAT_OP_LOGIN); /* untouched on error */
    assert_int_equal(kchat_op_from_request_topic("login-request", NULL), KCHAT_EINVAL);
}

static void expect_content_type(const char *ct, int rc, kchat_fmt fmt)
{
    kchat_fmt f = (kchat_fmt)42;
    int got = kchat_fmt_from_content_type(ct, ct ? strlen(ct) : 0, &f);
    if (got != rc)
        fail_msg("content-type '%s': rc %d, expected %d", ct ? ct : "(null)", got, rc);
    assert_int_equal(f, rc == KCHAT_OK ? fmt : (kchat_fmt)42);
}

static void test_content_type(void **state)
{
    (void)state;
    expect_content_type(NULL, KCHAT_OK, KCHAT_FMT_JSON);
    expect_content_type("", KCHAT_OK, KCHAT_FMT_JSON);
    expect_content_type("  ", KCHAT_OK, KCHAT_FMT_JSON);
    expect_content_type("application/json", KCHAT_OK, KCHAT_FMT_JSON);
    expect_content_type("Application/JSON", KCHAT_OK, KCHAT_FMT_JSON);
    expect_content_type("application/json; charset=utf-8", KCHAT_OK, KCHAT_FMT_JSON);
    expect_content_type(" application/json ;charset=UTF-8", KCHAT_OK, KCHAT_FMT_JSON);
    expect_content_type("\tapplication/json\t", KCHAT_OK, KCHAT_FMT_JSON);
    expect_content_type("application/msgpack", KCHAT_OK, KCHAT_FMT_MSGPACK);
    expect_content_type("APPLICATION/MSGPACK", KCHAT_OK, KCHAT_FMT_MSGPACK);
    expect_content_type("application/x-msgpack", KCHAT_OK, KCHAT_FMT_MSGPACK);
    expect_content_type("application/x-msgpack;v=1", KCHAT_OK, KCHAT_FMT_MSGPACK);

    expect_content_type("text/plain", KCHAT_EDECODE, 0);
    expect_content_type("application/jsonx", KCHAT_EDECODE, 0);
    expect_content_type("application/jso", KCHAT_EDECODE, 0);
    expect_content_type("application/", KCHAT_EDECODE, 0);
    expect_content_type("application / json", KCHAT_EDECODE, 0);
    expect_content_type("application/x-json", KCHAT_EDECODE, 0);
    expect_content_type(";charset=utf-8", KCHAT_EDECODE, 0);

    /* Not NUL-terminated: only len bytes count. */
    kchat_fmt f;
    assert_int_equal(kchat_fmt_from_content_type("application/jsonGARBAGE", 16, &f), KCHAT_OK);
    assert_int_equal(f, KCHAT_FMT_JSON);
    /* An embedded NUL is not a blank. */
    assert_int_equal(kchat_fmt_from_content_type(BYTES("application/json\0"), &f), KCHAT_EDECODE);
    assert_int_equal(kchat_fmt_from_content_type("application/json", 16, NULL), KCHAT_EINVAL);

    assert_string_equal(kchat_fmt_content_type(KCHAT_FMT_JSON), "application/json");
    assert_string_equal(kchat_fmt_content_type(KCHAT_FMT_MSGPACK), "application/msgpack");
    assert_null(kchat_fmt_content_type((kchat_fmt)7));
}

/* ======================================================================== */
/* Text helpers                                                             */
/* ======================================================================== */

static void test_valid_id(void **state)
{
    (void)state;
    char id[66];
    memset(id, 'a', sizeof id);
    assert_false(kchat_valid_id(id, 0));
    assert_true(kchat_valid_id(id, 1));
    assert_true(kchat_valid_id(id, 64));
    assert_false(kchat_valid_id(id, 65));
    assert_false(kchat_valid_id(NULL, 3));
    assert_true(kchat_valid_id("Az09_.-", 7));
    static const char *const bad[] = {"a b", "a/b", "a@b", "a:b", "a+b", "\xc3\xa9", "a\tb"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        assert_false(kchat_valid_id(bad[i], strlen(bad[i])));
    assert_false(kchat_valid_id(BYTES("ab\0")));
}

static void test_utf8_valid(void **state)
{
    (void)state;
    static const char *const good[] = {
        "", "plain ASCII",
        "\x7f",                /* U+007F */
        "\xc2\x80",            /* U+0080, first 2-byte */
        "\xdf\xbf",            /* U+07FF, last 2-byte */
        "\xe0\xa0\x80",        /* U+0800, first 3-byte */
        "\xed\x9f\xbf",        /* U+D7FF, just below the surrogates */
        "\xee\x80\x80",        /* U+E000, just above them */
        "\xef\xbf\xbf",        /* U+FFFF */
        "\xf0\x90\x80\x80",    /* U+10000, first 4-byte */
        "\xf4\x8f\xbf\xbf",    /* U+10FFFF, the last code point */
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
    };
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        if (!kchat_utf8_valid(good[i], strlen(good[i])))
            fail_msg("good[%zu] rejected", i);
    }
    static const char *const bad[] = {
        "\x80",                /* lone continuation */
        "\xbf",
        "\xc0\x80",            /* overlong U+0000 */
        "\xc0\xaf",            /* overlong '/' */
        "\xc1\xbf",            /* overlong U+007F */
        "\xe0\x80\x80",        /* overlong 3-byte */
        "\xe0\x9f\xbf",        /* overlong U+07FF */
        "\xf0\x80\x80\x80",    /* overlong 4-byte */
        "\xf0\x8f\xbf\xbf",    /* overlong U+FFFF */
        "\xed\xa0\x80",        /* U+D800, high surrogate */
        "\xed\xbf\xbf",        /* U+DFFF, low surrogate */
        "\xed\xa0\xbd\xed\xb8\x80", /* CESU-8 surrogate pair */
        "\xf4\x90\x80\x80",    /* U+110000 */
        "\xf5\x80\x80\x80",
        "\xf8\x88\x80\x80\x80", /* 5-byte form */
        "\xfe", "\xff",
        "\xc3",                /* truncated 2-byte */
        "\xe2\x82",            /* truncated 3-byte */
        "\xf0\x9f\x98",        /* truncated 4-byte */
        "ok\xe2\x82",          /* truncated at the end */
        "\xe2\x82\x41",        /* bad continuation */
        "\xc3\xc3\xa9",
        "\xf0\x9f\x98\x41",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        if (kchat_utf8_valid(bad[i], strlen(bad[i])))
            fail_msg("bad[%zu] accepted", i);
    }
    /* Length is honoured: a valid prefix of an invalid buffer. */
    assert_true(kchat_utf8_valid("ab\xff", 2));
    assert_false(kchat_utf8_valid("\xe2\x82\xac", 2));
    assert_true(kchat_utf8_valid(BYTES("a\0b"))); /* U+0000 is UTF-8 */
    assert_true(kchat_utf8_valid(NULL, 0));
    assert_false(kchat_utf8_valid(NULL, 1));
}

static void expect_iso(int64_t ms, const char *want)
{
    char out[25];
    memset(out, 'x', sizeof out);
    kchat_iso8601(ms, out);
    assert_int_equal(out[24], '\0');
    if (strcmp(out, want) != 0)
        fail_msg("%lld ms: got %s, expected %s", (long long)ms, out, want);
}

static void test_iso8601(void **state)
{
    (void)state;
    expect_iso(0, "1970-01-01T00:00:00.000Z");
    expect_iso(1795413600123, "2026-11-23T06:00:00.123Z");
    expect_iso(-1, "1969-12-31T23:59:59.999Z");
    expect_iso(-86400000, "1969-12-31T00:00:00.000Z");
    expect_iso(951827696789, "2000-02-29T12:34:56.789Z");
    expect_iso(1709251199999, "2024-02-29T23:59:59.999Z");
    expect_iso(4107542400000, "2100-03-01T00:00:00.000Z"); /* 2100 is no leap year */
    expect_iso(-2208988800000, "1900-01-01T00:00:00.000Z");
    expect_iso(-11670998400000, "1600-02-29T00:00:00.000Z");
    expect_iso(-62135596800000, "0001-01-01T00:00:00.000Z");
    /* Clamped to four-digit years. */
    expect_iso(-62167219200000, "0000-01-01T00:00:00.000Z");
    expect_iso(-62167219200001, "0000-01-01T00:00:00.000Z");
    expect_iso(INT64_MIN, "0000-01-01T00:00:00.000Z");
    expect_iso(253402300799999, "9999-12-31T23:59:59.999Z");
    expect_iso(253402300800000, "9999-12-31T23:59:59.999Z");
    expect_iso(INT64_MAX, "9999-12-31T23:59:59.999Z");
}

/* Cross-checks against the C library over random times from 1900 to 2200. */
static void test_iso8601_matches_gmtime(void **state)
{
    (void)state;
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t ms = -2208988800000 + (int64_t)(x % UINT64_C(9467280000000));
        time_t secs = (time_t)(ms / 1000 - (ms % 1000 < 0));
        struct tm tm;
        assert_non_null(gmtime_r(&secs, &tm));
        char want[64];
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(((ms % 1000) + 1000) % 1000));
        expect_iso(ms, want);
    }
}

/* ======================================================================== */
/* Decoding                                                                 */
/* ======================================================================== */

static int decode(kchat_fmt f, const void *buf, size_t len, json_t **out)
{
    return kchat_codec_decode(f, buf, len, out);
}

static void expect_decodes_to(kchat_fmt f, const void *buf, size_t len, const char *want_json)
{
    json_t *v = (json_t *)1, *want = json_of(want_json);
    int rc = decode(f, buf, len, &v);
    if (rc != KCHAT_OK)
        fail_msg("decode of %s failed: %d", want_json, rc);
    if (!json_equal(v, want)) {
        char *got = json_dumps(v, JSON_ENCODE_ANY);
        fail_msg("decoded %s, expected %s", got, want_json);
    }
    json_decref(v);
    json_decref(want);
}

static void expect_decode_fails(kchat_fmt f, const void *buf, size_t len, const char *what)
{
    json_t *v = (json_t *)1;
    int rc = decode(f, buf, len, &v);
    if (rc != KCHAT_EDECODE)
        fail_msg("%s: expected EDECODE, got %d", what, rc);
    assert_null(v);
}

#define JSON_OK(lit, want) expect_decodes_to(KCHAT_FMT_JSON, BYTES(lit), want)
#define JSON_BAD(lit) expect_decode_fails(KCHAT_FMT_JSON, BYTES(lit), lit)
#define MP_OK(lit, want) expect_decodes_to(KCHAT_FMT_MSGPACK, BYTES(lit), want)
#define MP_BAD(lit) expect_decode_fails(KCHAT_FMT_MSGPACK, BYTES(lit), #lit)

/* n nested openers then n closers; each level is a one-key object when
 * objects is set ({"k":{"k":...0}}), else a one-element array. */
static char *nested_json(int n, bool objects)
{
    char *s = malloc((size_t)n * 6 + 2);
    assert_non_null(s);
    char *p = s;
    for (int i = 0; i < n; i++)
        p += sprintf(p, "%s", objects ? "{\"k\":" : "[");
    *p++ = '0';
    for (int i = 0; i < n; i++)
        *p++ = objects ? '}' : ']';
    *p = '\0';
    return s;
}

static void test_decode_json(void **state)
{
    (void)state;
    JSON_OK("{\"a\":1,\"b\":[true,false,null,\"x\"],\"c\":1.5}",
            "{\"a\":1,\"b\":[true,false,null,\"x\"],\"c\":1.5}");
    JSON_OK("  {}  \n", "{}");
    JSON_OK("\"str\"", "\"str\"");
    JSON_OK("42", "42");
    JSON_OK("-9223372036854775808", "-9223372036854775808");
    JSON_OK("\"caf\xc3\xa9\"", "\"caf\\u00e9\"");
    JSON_OK("\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\"");
    JSON_OK("{\"\":0}", "{\"\":0}");

    JSON_BAD("");
    JSON_BAD("   ");
    JSON_BAD("{");
    JSON_BAD("{\"a\":1,}");
    JSON_BAD("{} x");
    JSON_BAD("{}{}");
    JSON_BAD("[1] 2");
    JSON_BAD("{'a':1}");
    JSON_BAD("NaN");
    JSON_BAD("9223372036854775808");           /* beyond int64 */
    JSON_BAD("{\"a\":1,\"a\":2}");             /* duplicate key */
    JSON_BAD("\"\\u0000\"");                   /* NUL escaped */
    JSON_BAD("{\"a\\u0000b\":1}");             /* NUL in a key */
    JSON_BAD("\"a\0b\"");                      /* NUL raw */
    JSON_BAD("\"\\ud800\"");                   /* lone surrogate escape */
    JSON_BAD("\"\\udc00x\"");
    JSON_BAD("\"\xc0\xaf\"");                  /* overlong */
    JSON_BAD("\"\xed\xa0\x80\"");              /* surrogate */
    JSON_BAD("\"\xf4\x90\x80\x80\"");          /* above U+10FFFF */
    JSON_BAD("\"\xe2\x82\"");                  /* truncated sequence */
    JSON_BAD("{\"\xff\":1}");                  /* invalid key */

    /* Arguments. */
    json_t *v = (json_t *)1;
    assert_int_equal(decode(KCHAT_FMT_JSON, NULL, 0, &v), KCHAT_EDECODE);
    assert_null(v);
    assert_int_equal(decode(KCHAT_FMT_JSON, NULL, 3, &v), KCHAT_EINVAL);
    assert_int_equal(decode((kchat_fmt)9, "{}", 2, &v), KCHAT_EINVAL);
    assert_int_equal(decode(KCHAT_FMT_JSON, "{}", 2, NULL), KCHAT_EINVAL);
    /* Never reads past len. */
    assert_int_equal(decode(KCHAT_FMT_JSON, "{}}", 2, &v), KCHAT_OK);
    json_decref(v);
}

static void test_decode_json_depth(void **state)
{
    (void)state;
    for (int objects = 0; objects <= 1; objects++) {
        char *ok = nested_json(KCHAT_MAX_DEPTH, objects);
        char *deep = nested_json(KCHAT_MAX_DEPTH + 1, objects);
        char *very_deep = nested_json(5000, objects); /* past jansson's own 2048 */
        json_t *v;
        assert_int_equal(decode(KCHAT_FMT_JSON, ok, strlen(ok), &v), KCHAT_OK);
        json_decref(v);
        assert_int_equal(decode(KCHAT_FMT_JSON, deep, strlen(deep), &v), KCHAT_EDECODE);
        assert_int_equal(decode(KCHAT_FMT_JSON, very_deep, strlen(very_deep), &v),
                         KCHAT_EDECODE);
        free(ok);
        free(deep);
        free(very_deep);
    }
}

static void test_decode_msgpack_scalars(void **state)
{
    (void)state;
    MP_OK("\x00", "0");
    MP_OK("\x7f", "127");
    MP_OK("\xff", "-1");
    MP_OK("\xe0", "-32");
    MP_OK("\xcc\xff", "255");
    MP_OK("\xcd\x01\x00", "256");
    MP_OK("\xce\x00\x01\x00\x00", "65536");
    MP_OK("\xcf\x00\x00\x00\x01\x00\x00\x00\x00", "4294967296");
    MP_OK("\xcf\x7f\xff\xff\xff\xff\xff\xff\xff", "9223372036854775807");
    MP_BAD("\xcf\x80\x00\x00\x00\x00\x00\x00\x00"); /* uint64 above INT64_MAX */
    MP_BAD("\xcf\xff\xff\xff\xff\xff\xff\xff\xff");
    MP_OK("\xd0\x7f", "127");
    MP_OK("\xd0\x80", "-128");
    MP_OK("\xd1\x80\x00", "-32768");
    MP_OK("\xd1\x7f\xff", "32767");
    MP_OK("\xd2\x80\x00\x00\x00", "-2147483648");
    MP_OK("\xd2\xff\xff\xff\xfe", "-2");
    MP_OK("\xd3\x80\x00\x00\x00\x00\x00\x00\x00", "-9223372036854775808");
    MP_OK("\xd3\xff\xff\xff\xff\xff\xff\xff\xff", "-1");
    MP_OK("\xd3\x7f\xff\xff\xff\xff\xff\xff\xff", "9223372036854775807");
    MP_OK("\xca\x3f\xc0\x00\x00", "1.5");
    MP_OK("\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", "1.5");
    MP_OK("\xcb\xc0\x09\x21\xfb\x54\x44\x2d\x18", "-3.141592653589793");
    MP_BAD("\xca\x7f\xc0\x00\x00");                 /* NaN */
    MP_BAD("\xca\x7f\x80\x00\x00");                 /* +inf */
    MP_BAD("\xcb\xff\xf0\x00\x00\x00\x00\x00\x00"); /* -inf */
    MP_OK("\xc0", "null");
    MP_OK("\xc2", "false");
    MP_OK("\xc3", "true");
    MP_OK("\xa0", "\"\"");
    MP_OK("\xa3" "abc", "\"abc\"");
    MP_OK("\xd9\x03" "abc", "\"abc\"");
    MP_OK("\xda\x00\x03" "abc", "\"abc\"");
    MP_OK("\xdb\x00\x00\x00\x03" "abc", "\"abc\"");
    MP_OK("\xa2\xc3\xa9", "\"\\u00e9\"");
    MP_BAD("\xa2\xc0\xaf");          /* overlong */
    MP_BAD("\xa3\xed\xa0\x80");      /* surrogate */
    MP_BAD("\xa2\xe2\x82");          /* truncated sequence */
    MP_BAD("\xa3" "a\0b");           /* NUL */
    MP_BAD("\xc4\x01\x00");          /* bin 8 */
    MP_BAD("\xc5\x00\x01\x00");      /* bin 16 */
    MP_BAD("\xc6\x00\x00\x00\x01\x00"); /* bin 32 */
    MP_BAD("\xc7\x01\x01\x00");      /* ext 8 */
    MP_BAD("\xd4\x01\x00");          /* fixext 1 */
    MP_BAD("\xd6\xff\x00\x00\x00\x00"); /* timestamp 32 */
    MP_BAD("\xc1");                  /* never used */
    MP_BAD("");
    MP_BAD("\x01\x02");              /* trailing byte */
    MP_BAD("\xc0\xc0");
}

static void test_decode_msgpack_containers(void **state)
{
    (void)state;
    MP_OK("\x90", "[]");
    MP_OK("\x80", "{}");
    MP_OK("\x92\x01\xa1x", "[1,\"x\"]");
    MP_OK("\xdc\x00\x02\x01\x02", "[1,2]");
    MP_OK("\xdd\x00\x00\x00\x01\xc0", "[null]");
    MP_OK("\x81\xa1" "a\x01", "{\"a\":1}");
    MP_OK("\xde\x00\x01\xa1" "a\x01", "{\"a\":1}");
    MP_OK("\xdf\x00\x00\x00\x01\xa1" "a\x01", "{\"a\":1}");
    MP_OK("\x81\xd9\x01" "a\x90", "{\"a\":[]}");
    MP_OK("\x81\xa0\xc3", "{\"\":true}");
    MP_OK("\x82\xa1" "a\x81\xa1" "b\xc0\xa1" "c\x91\x91\x90",
          "{\"a\":{\"b\":null},\"c\":[[[]]]}");
    MP_BAD("\x81\x01\x01");          /* int key */
    MP_BAD("\x81\xc0\x01");          /* nil key */
    MP_BAD("\x81\xc4\x01" "a\x01");  /* bin key */
    MP_BAD("\x82\xa1" "a\x01\xa1" "a\x02"); /* duplicate key */
    MP_BAD("\x81\xa1\x00\x01");      /* NUL in key */
    MP_BAD("\x81\xa1\xff\x01");      /* invalid UTF-8 key */
    MP_BAD("\x92\x01");              /* missing element */
    MP_BAD("\x81\xa1" "a");          /* missing value */
    MP_BAD("\x91\xc1");              /* bad element */
    /* Counts far beyond the input fail without allocating for them. */
    MP_BAD("\xdd\xff\xff\xff\xff");
    MP_BAD("\xdf\xff\xff\xff\xff");
    MP_BAD("\xdb\xff\xff\xff\xff");
    MP_BAD("\xdd\xff\xff\xff\xff\x01\x02\x03");
}

/* Every proper prefix of a valid message is truncated, and fails. */
static void test_decode_msgpack_truncated(void **state)
{
    (void)state;
    static const char msg[] =
        "\x84\xa6userId\xa5" "alice\xa8" "friendId\x92\xa3" "bob\xd9\x05" "carol"
        "\xa5limit\xcd\x01\x00\xa1x\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00";
    json_t *v;
    assert_int_equal(decode(KCHAT_FMT_MSGPACK, msg, sizeof msg - 1, &v), KCHAT_OK);
    json_decref(v);
    for (size_t len = 0; len < sizeof msg - 1; len++) {
        /* A heap copy of exactly len bytes, so a sanitizer sees any over-read. */
        char *copy = malloc(len ? len : 1);
        memcpy(copy, msg, len);
        expect_decode_fails(KCHAT_FMT_MSGPACK, copy, len, "prefix");
        free(copy);
    }
}

static void test_decode_msgpack_depth(void **state)
{
    (void)state;
    unsigned char buf[2 * (KCHAT_MAX_DEPTH + 1) + 1];
    json_t *v;
    for (int maps = 0; maps <= 1; maps++) {
        for (int depth = KCHAT_MAX_DEPTH; depth <= KCHAT_MAX_DEPTH + 1; depth++) {
            size_t n = 0;
            for (int i = 0; i < depth; i++) {
                if (maps) {
                    buf[n++] = 0x81; /* {"" : ...} */
                    buf[n++] = 0xa0;
                } else {
                    buf[n++] = 0x91; /* [...] */
                }
            }
            buf[n++] = 0x00;
            int want = depth <= KCHAT_MAX_DEPTH ? KCHAT_OK : KCHAT_EDECODE;
            assert_int_equal(decode(KCHAT_FMT_MSGPACK, buf, n, &v), want);
            if (want == KCHAT_OK)
                json_decref(v);
        }
    }
}

/* ======================================================================== */
/* Encoding                                                                 */
/* ======================================================================== */

static void expect_encoding(kchat_fmt f, const json_t *v, const char *want, size_t want_len)
{
    char *out;
    size_t len;
    assert_int_equal(kchat_codec_encode(f, v, &out, &len), KCHAT_OK);
    assert_int_equal(len, want_len);
    assert_memory_equal(out, want, want_len);
    free(out);
}

static void test_encode_json(void **state)
{
    (void)state;
    json_t *v = json_pack("{s:i, s:[b, b, n, s], s:f, s:s}", "a", 1, "b", 1, 0, "x\xc3\xa9", "c",
                          1.5, "d", "q\"\\\n");
    expect_encoding(KCHAT_FMT_JSON, v,
                    BYTES("{\"a\":1,\"b\":[true,false,null,\"x\xc3\xa9\"],\"c\":1.5,"
                          "\"d\":\"q\\\"\\\\\\n\"}"));
    json_decref(v);

    v = json_integer(-7);
    expect_encoding(KCHAT_FMT_JSON, v, BYTES("-7"));
    json_decref(v);
    v = json_real(0.1);
    expect_encoding(KCHAT_FMT_JSON, v, BYTES("0.10000000000000001"));
    json_decref(v);
    v = json_real(2.0);
    expect_encoding(KCHAT_FMT_JSON, v, BYTES("2.0"));
    json_decref(v);
}

static void test_encode_msgpack(void **state)
{
    (void)state;
    json_t *v = json_pack("{s:i, s:[b, n, s], s:i}", "a", 1, "b", 1, "x", "c", -1);
    expect_encoding(KCHAT_FMT_MSGPACK, v,
                    BYTES("\x83\xa1" "a\x01\xa1" "b\x93\xc3\xc0\xa1x\xa1" "c\xff"));
    json_decref(v);

    static const struct {
        json_int_t i;
        const char *bytes;
        size_t len;
    } ints[] = {
        {127, BYTES("\x7f")},
        {128, BYTES("\xcc\x80")},
        {-32, BYTES("\xe0")},
        {-33, BYTES("\xd0\xdf")},
        {65536, BYTES("\xce\x00\x01\x00\x00")},
        {INT64_MIN, BYTES("\xd3\x80\x00\x00\x00\x00\x00\x00\x00")},
        {INT64_MAX, BYTES("\xcf\x7f\xff\xff\xff\xff\xff\xff\xff")},
    };
    for (size_t i = 0; i < ARRAY_LEN(ints); i++) {
        v = json_integer(ints[i].i);
        expect_encoding(KCHAT_FMT_MSGPACK, v, ints[i].bytes, ints[i].len);
        json_decref(v);
    }

    v = json_real(1.5);
    expect_encoding(KCHAT_FMT_MSGPACK, v, BYTES("\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00"));
    json_decref(v);
    v = str_n(32, 'z'); /* one past fixstr */
    char want[34] = "\xd9\x20";
    memset(want + 2, 'z', 32);
    expect_encoding(KCHAT_FMT_MSGPACK, v, want, 34);
    json_decref(v);
}

static void expect_round_trip(kchat_fmt f, const json_t *v)
{
    char *out;
    size_t len;
    json_t *back;
    assert_int_equal(kchat_codec_encode(f, v, &out, &len), KCHAT_OK);
    assert_int_equal(kchat_codec_decode(f, out, len, &back), KCHAT_OK);
    free(out);
    assert_true(json_equal(v, back));
    json_decref(back);
}

static void test_round_trip(void **state)
{
    (void)state;
    json_t *v = json_of(
        "{\"userId\":\"alice\",\"n\":[0,-1,127,128,-32,-33,255,256,65535,65536,-129,"
        "-32768,-32769,2147483647,-2147483648,4294967296,9223372036854775807,"
        "-9223372036854775808],\"r\":[0.0,-0.5,1e300,-2.5e-300,3.141592653589793],"
        "\"s\":[\"\",\"caf\\u00e9\",\"\\ud83d\\ude00\",\"line\\nbreak\"],"
        "\"o\":{\"\":null,\"t\":true,\"f\":false,\"nested\":{\"a\":[[],{}]}}}");
    json_object_set_new(v, "long", str_n(70000, 'q'));
    json_object_set_new(v, "many", id_list(70000, 1));
    expect_round_trip(KCHAT_FMT_JSON, v);
    expect_round_trip(KCHAT_FMT_MSGPACK, v);

    /* Across formats: JSON -> value -> msgpack -> value. */
    char *out;
    size_t len;
    json_t *mid, *back;
    assert_int_equal(kchat_codec_encode(KCHAT_FMT_JSON, v, &out, &len), KCHAT_OK);
    assert_int_equal(kchat_codec_decode(KCHAT_FMT_JSON, out, len, &mid), KCHAT_OK);
    free(out);
    assert_int_equal(kchat_codec_encode(KCHAT_FMT_MSGPACK, mid, &out, &len), KCHAT_OK);
    assert_int_equal(kchat_codec_decode(KCHAT_FMT_MSGPACK, out, len, &back), KCHAT_OK);
    free(out);
    assert_true(json_equal(v, back));
    json_decref(mid);
    json_decref(back);
    json_decref(v);

    for (int depth = 0; depth <= KCHAT_MAX_DEPTH; depth += KCHAT_MAX_DEPTH) {
        char *text = nested_json(depth, true);
        v = json_of(text);
        free(text);
        expect_round_trip(KCHAT_FMT_JSON, v);
        expect_round_trip(KCHAT_FMT_MSGPACK, v);
        json_decref(v);
    }
}

static void expect_encode_refused(const json_t *v)
{
    char *out = (char *)1;
    size_t len = 1;
    for (int f = KCHAT_FMT_JSON; f <= KCHAT_FMT_MSGPACK; f++) {
        assert_int_equal(kchat_codec_encode((kchat_fmt)f, v, &out, &len), KCHAT_EINVAL);
        assert_null(out);
        assert_int_equal(len, 0);
    }
}

static void test_encode_refuses(void **state)
{
    (void)state;
    char *text = nested_json(KCHAT_MAX_DEPTH + 1, false);
    json_t *v = json_loads(text, 0, NULL);
    free(text);
    expect_encode_refused(v);
    json_decref(v);

    v = json_stringn("a\0b", 3);
    expect_encode_refused(v);
    json_decref(v);

    v = json_stringn_nocheck("\xc0\xaf", 2);
    expect_encode_refused(v);
    json_decref(v);

    v = json_object();
    json_object_setn_new_nocheck(v, "k\0", 2, json_true());
    expect_encode_refused(v);
    json_decref(v);

    /* A cycle: a contains b contains a. */
    json_t *a = json_array(), *b = json_array();
    json_array_append(b, a);
    json_array_append(a, b);
    expect_encode_refused(a);
    json_array_clear(b);
    json_decref(b);
    json_decref(a);

    char *out;
    size_t len;
    v = json_true();
    assert_int_equal(kchat_codec_encode((kchat_fmt)5, v, &out, &len), KCHAT_EINVAL);
    assert_int_equal(kchat_codec_encode(KCHAT_FMT_JSON, NULL, &out, &len), KCHAT_EINVAL);
    assert_int_equal(kchat_codec_encode(KCHAT_FMT_JSON, v, NULL, &len), KCHAT_EINVAL);
    assert_int_equal(kchat_codec_encode(KCHAT_FMT_JSON, v, &out, NULL), KCHAT_EINVAL);
}

/* ======================================================================== */
/* Requests: the envelope                                                   */
/* ======================================================================== */

static void test_request_too_large(void **state)
{
    (void)state;
    kchat_request req;
    char err[256];
    /* A valid body padded with blanks to exactly the limit is fine ... */
    char *buf = malloc(KCHAT_MAX_VALUE + 1);
    memset(buf, ' ', KCHAT_MAX_VALUE + 1);
    memcpy(buf, LOGIN, strlen(LOGIN));
    assert_int_equal(parse_raw(KCHAT_OP_LOGIN, KCHAT_FMT_JSON, "alice", buf, KCHAT_MAX_VALUE,
                               &req, err),
                     KCHAT_WIRE_OK);
    /* ... one byte more is TOO_LARGE, before any decoding. */
    assert_int_equal(parse_raw(KCHAT_OP_LOGIN, KCHAT_FMT_JSON, "alice", buf,
                               KCHAT_MAX_VALUE + 1, &req, err),
                     KCHAT_WIRE_TOO_LARGE);
    assert_non_null(strstr(err, "65537 bytes"));
    assert_int_equal(parse_raw(KCHAT_OP_LOGIN, KCHAT_FMT_MSGPACK, "alice", buf,
                               KCHAT_MAX_VALUE + 1, &req, err),
                     KCHAT_WIRE_TOO_LARGE);
    free(buf);

    /* The same in msgpack, with a long unknown field. */
    json_t *body = with(LOGIN, "padding", str_n(KCHAT_MAX_VALUE, 'p'));
    assert_int_equal(parse_value(KCHAT_OP_LOGIN, KCHAT_FMT_MSGPACK, "alice", body, &req, err, 256),
                     KCHAT_WIRE_TOO_LARGE);
    json_decref(body);
}

static void test_request_body_not_decodable(void **state)
{
    (void)state;
    kchat_request req;
    char err[256];
    assert_int_equal(parse_raw(KCHAT_OP_LOGIN, KCHAT_FMT_JSON, "alice", BYTES("{\"userId\":"),
                               &req, err),
                     KCHAT_WIRE_BAD_REQUEST);
    assert_string_equal(err, "The request body is not valid JSON: it ends in the middle of a value.");
    assert_int_equal(parse_raw(KCHAT_OP_LOGIN, KCHAT_FMT_JSON, "alice", "", 0, &req, err),
                     KCHAT_WIRE_BAD_REQUEST);
    assert_string_equal(err, "The request body is not valid JSON: it is empty.");
    assert_int_equal(parse_raw(KCHAT_OP_LOGIN, KCHAT_FMT_JSON, "alice", NULL, 0, &req, err),
                     KCHAT_WIRE_BAD_REQUEST);
    assert_int_equal(parse_raw(KCHAT_OP_LOGIN, KCHAT_FMT_JSON, "alice",
                               BYTES("{\"userId\":\"alice\",\"userPw\":\"pass\xed\xa0\x80word\"}"),
                               &req, err),
                     KCHAT_WIRE_BAD_REQUEST);
    assert_string_equal(err, "The request body is not valid JSON: a string is not valid UTF-8.");
    assert_int_equal(parse_raw(KCHAT_OP_LOGIN, KCHAT_FMT_JSON, "alice",
                               BYTES("{\"userId\":\"alice\",\"userId\":\"bob\"}"), &req, err),
                     KCHAT_WIRE_BAD_REQUEST);
    assert_non_null(strstr(err, "same key twice"));
    assert_int_equal(parse_raw(KCHAT_OP_LOGIN, KCHAT_FMT_MSGPACK, "alice",
                               BYTES("\x81\xa6userId\xc4\x05" "alice"), &req, err),
                     KCHAT_WIRE_BAD_REQUEST);
    assert_string_equal(err, "The request body is not valid msgpack: it holds msgpack bin or ext data.");
    /* JSON bytes read as msgpack. */
    assert_int_equal(parse_raw(KCHAT_OP_LOGIN, KCHAT_FMT_MSGPACK, "alice", LOGIN, strlen(LOGIN),
                               &req, err),
                     KCHAT_WIRE_BAD_REQUEST);
    assert_non_null(strstr(err, "not valid msgpack"));
    /* The reason never quotes the input (which may hold a password). */
    assert_int_equal(parse_raw(KCHAT_OP_LOGIN, KCHAT_FMT_JSON, "alice",
                               BYTES("{\"userId\":\"alice\",\"userPw\":hunter2hunter2}"), &req,
                               err),
                     KCHAT_WIRE_BAD_REQUEST);
    assert_null(strstr(err, "hunter2"));
}

static void test_request_not_an_object(void **state)
{
    (void)state;
    expect_bad(KCHAT_OP_LOGIN, "alice", json_of("[\"alice\"]"), "must be an object");
    expect_bad(KCHAT_OP_LOGIN, "alice", json_of("\"alice\""), "must be an object");
    expect_bad(KCHAT_OP_USER_ADD, "alice", json_of("42"), "must be an object");
    expect_bad(KCHAT_OP_HISTORY, "alice", json_of("null"), "must be an object");

    kchat_request req;
    char err[256];
    assert_int_equal(parse_raw(KCHAT_OP_LOGIN, KCHAT_FMT_MSGPACK, "alice", BYTES("\x91\x01"),
                               &req, err),
                     KCHAT_WIRE_BAD_REQUEST);
    assert_string_equal(err, "The request body must be an object (a JSON object or a msgpack map).");
}

static void test_request_key(void **state)
{
    (void)state;
    kchat_request req;
    expect_ok(KCHAT_OP_LOGIN, "alice", json_of(LOGIN), &req);
    expect_bad(KCHAT_OP_LOGIN, "bob", json_of(LOGIN), "The record key must equal userId.");
    expect_bad(KCHAT_OP_LOGIN, "alic", json_of(LOGIN), "record key");
    expect_bad(KCHAT_OP_LOGIN, "alice2", json_of(LOGIN), "record key");
    expect_bad(KCHAT_OP_LOGIN, "Alice", json_of(LOGIN), "record key");
    expect_bad(KCHAT_OP_LOGIN, NULL, json_of(LOGIN), "record key");
    expect_bad(KCHAT_OP_LOGIN, "", json_of(LOGIN), "record key");

    /* The key is compared byte for byte over key_len: an extra NUL differs. */
    char err[256];
    assert_int_equal(kchat_request_parse(KCHAT_OP_LOGIN, KCHAT_FMT_JSON, BYTES("alice\0"), LOGIN,
                                         strlen(LOGIN), &req, err, sizeof err),
                     KCHAT_WIRE_BAD_REQUEST);
    /* NULL key with a length counts as empty. */
    assert_int_equal(kchat_request_parse(KCHAT_OP_LOGIN, KCHAT_FMT_JSON, NULL, 5, LOGIN,
                                         strlen(LOGIN), &req, err, sizeof err),
                     KCHAT_WIRE_BAD_REQUEST);

    /* Chat is keyed by writerId, not by a userId in the body. */
    expect_ok(KCHAT_OP_ADD_CHAT, "alice", with(ADD_CHAT, "userId", json_string("bob")), &req);
    expect_bad(KCHAT_OP_ADD_CHAT, "bob", with(ADD_CHAT, "userId", json_string("bob")),
               "The record key must equal writerId.");
    /* Field errors come before the key check. */
    expect_bad(KCHAT_OP_LOGIN, "bob", without(LOGIN, "userPw"), "userPw is required.");
}

static void test_request_arguments(void **state)
{
    (void)state;
    kchat_request req;
    char err[256];
    assert_int_equal(kchat_request_parse(KCHAT_OP__COUNT, KCHAT_FMT_JSON, "alice", 5, LOGIN,
                                         strlen(LOGIN), &req, err, sizeof err),
                     KCHAT_WIRE_INTERNAL);
    assert_int_equal(kchat_request_parse((kchat_op)-1, KCHAT_FMT_JSON, "alice", 5, LOGIN,
                                         strlen(LOGIN), &req, err, sizeof err),
                     KCHAT_WIRE_INTERNAL);
    assert_int_equal(kchat_request_parse(KCHAT_OP_LOGIN, KCHAT_FMT_JSON, "alice", 5, LOGIN,
                                         strlen(LOGIN), NULL, err, sizeof err),
                     KCHAT_WIRE_INTERNAL);
    assert_true(strlen(err) > 0);
    assert_int_equal(kchat_request_parse(KCHAT_OP_LOGIN, (kchat_fmt)3, "alice", 5, LOGIN,
                                         strlen(LOGIN), &req, err, sizeof err),
                     KCHAT_WIRE_INTERNAL);

    /* errmsg may be absent, or too small: it is truncated, never overrun. */
    assert_int_equal(kchat_request_parse(KCHAT_OP_LOGIN, KCHAT_FMT_JSON, "bob", 3, LOGIN,
                                         strlen(LOGIN), &req, NULL, 0),
                     KCHAT_WIRE_BAD_REQUEST);
    char small[9];
    memset(small, 'x', sizeof small);
    assert_int_equal(kchat_request_parse(KCHAT_OP_LOGIN, KCHAT_FMT_JSON, "bob", 3, LOGIN,
                                         strlen(LOGIN), &req, small, 8),
                     KCHAT_WIRE_BAD_REQUEST);
    assert_string_equal(small, "The rec");
    assert_int_equal(small[8], 'x');
    /* Success clears a previous message. */
    strcpy(err, "stale");
    assert_int_equal(kchat_request_parse(KCHAT_OP_LOGIN, KCHAT_FMT_JSON, "alice", 5, LOGIN,
                                         strlen(LOGIN), &req, err, sizeof err),
                     KCHAT_WIRE_OK);
    assert_string_equal(err, "");
}

/* ======================================================================== */
/* Requests: the fields                                                     */
/* ======================================================================== */

/* userId rules, checked through any operation keyed by userId. */
static void check_user_id_rules(kchat_op op, const char *base)
{
    kchat_request req;
    char id64[65];
    memset(id64, 'u', 64);
    id64[64] = '\0';

    expect_bad(op, "alice", without(base, "userId"), "userId is required.");
    expect_bad(op, "alice", with(base, "userId", json_null()), "userId is required.");
    expect_bad(op, "", with(base, "userId", json_string("")), "userId must be 1 to 64 bytes");
    expect_ok(op, "u", with(base, "userId", json_string("u")), &req);
    assert_string_equal(req.user_id, "u");
    expect_ok(op, id64, with(base, "userId", str_n(64, 'u')), &req);
    assert_string_equal(req.user_id, id64);
    expect_bad(op, "alice", with(base, "userId", str_n(65, 'u')), "userId must be 1 to 64 bytes");
    expect_bad(op, "a b", with(base, "userId", json_string("a b")), "userId must");
    expect_bad(op, "a/b", with(base, "userId", json_string("a/b")), "userId must");
    expect_bad(op, "alice", with(base, "userId", json_string("\xc3\xa9")), "userId must");
    expect_bad(op, "42", with(base, "userId", json_integer(42)), "userId must");
    expect_bad(op, "alice", with(base, "userId", json_of("[\"alice\"]")), "userId must");
}

static void test_user_add(void **state)
{
    (void)state;
    kchat_request req;
    expect_ok(KCHAT_OP_USER_ADD, "alice", json_of(USER_ADD), &req);
    assert_int_equal(req.op, KCHAT_OP_USER_ADD);
    assert_string_equal(req.user_id, "alice");
    assert_string_equal(req.user_pw, "correct horse");
    assert_string_equal(req.email, "alice@example.com");
    assert_string_equal(req.user_name, "Alice");
    assert_int_equal(req.limit, 50);
    assert_int_equal(req.n_friends, 0);

    /* Unknown fields are ignored. */
    expect_ok(KCHAT_OP_USER_ADD, "alice", with(USER_ADD, "extra", json_of("{\"x\":[1]}")), &req);
    check_user_id_rules(KCHAT_OP_USER_ADD, USER_ADD);
}

static void test_user_pw(void **state)
{
    (void)state;
    kchat_request req;
    static const kchat_op ops[] = {KCHAT_OP_USER_ADD, KCHAT_OP_LOGIN};
    static const char *const bases[] = {USER_ADD, LOGIN};
    const char *rule = "userPw must be 8 to 128 bytes.";
    for (size_t i = 0; i < ARRAY_LEN(ops); i++) {
        expect_bad(ops[i], "alice", without(bases[i], "userPw"), "userPw is required.");
        expect_bad(ops[i], "alice", with(bases[i], "userPw", str_n(7, 'p')), rule);
        expect_ok(ops[i], "alice", with(bases[i], "userPw", str_n(8, 'p')), &req);
        assert_int_equal(strlen(req.user_pw), 8);
        expect_ok(ops[i], "alice", with(bases[i], "userPw", str_n(128, 'p')), &req);
        assert_int_equal(strlen(req.user_pw), 128);
        expect_bad(ops[i], "alice", with(bases[i], "userPw", str_n(129, 'p')), rule);
        expect_bad(ops[i], "alice", with(bases[i], "userPw", json_integer(12345678)), rule);
        /* Any UTF-8 counts in bytes: 4 x 2-byte = 8 bytes. */
        expect_ok(ops[i], "alice", with(bases[i], "userPw", utf8_n(8, "\xc3\xa9")), &req);
    }
    /* The password never appears in a message. */
    kchat_request r;
    char err[256];
    assert_int_equal(parse_both(KCHAT_OP_LOGIN, "alice",
                                with(LOGIN, "userPw", json_string("short1")), &r, err),
                     KCHAT_WIRE_BAD_REQUEST);
    assert_null(strstr(err, "short1"));
}

static void test_email(void **state)
{
    (void)state;
    kchat_request req;
    const char *rule = "email must be 3 to 254 bytes of UTF-8 and contain '@'.";
    expect_bad(KCHAT_OP_USER_ADD, "alice", without(USER_ADD, "email"), "email is required.");
    expect_bad(KCHAT_OP_USER_ADD, "alice", with(USER_ADD, "email", json_string("a@")), rule);
    expect_ok(KCHAT_OP_USER_ADD, "alice", with(USER_ADD, "email", json_string("a@b")), &req);
    assert_string_equal(req.email, "a@b");

    expect_ok(KCHAT_OP_USER_ADD, "alice", with(USER_ADD, "email", email_n(254)), &req);
    assert_int_equal(strlen(req.email), 254);
    expect_bad(KCHAT_OP_USER_ADD, "alice", with(USER_ADD, "email", email_n(255)), rule);
    expect_bad(KCHAT_OP_USER_ADD, "alice", with(USER_ADD, "email", json_string("no-at-sign")),
               rule);
    expect_bad(KCHAT_OP_USER_ADD, "alice", with(USER_ADD, "email", json_true()), rule);
}

static void test_user_name(void **state)
{
    (void)state;
    kchat_request req;
    const char *rule = "userName must be 1 to 64 bytes of UTF-8 without control characters.";
    expect_bad(KCHAT_OP_USER_ADD, "alice", without(USER_ADD, "userName"), "userName is required.");
    expect_bad(KCHAT_OP_USER_ADD, "alice", with(USER_ADD, "userName", json_string("")), rule);
    expect_ok(KCHAT_OP_USER_ADD, "alice", with(USER_ADD, "userName", json_string("A")), &req);
    expect_ok(KCHAT_OP_USER_ADD, "alice", with(USER_ADD, "userName", str_n(64, 'n')), &req);
    assert_int_equal(strlen(req.user_name), 64);
    expect_bad(KCHAT_OP_USER_ADD, "alice", with(USER_ADD, "userName", str_n(65, 'n')), rule);
    /* The limit is in bytes: 32 two-byte characters fit, 33 do not. */
    expect_ok(KCHAT_OP_USER_ADD, "alice", with(USER_ADD, "userName", utf8_n(64, "\xc3\xa9")),
              &req);
    expect_bad(KCHAT_OP_USER_ADD, "alice", with(USER_ADD, "userName", utf8_n(66, "\xc3\xa9")),
               rule);
    expect_ok(KCHAT_OP_USER_ADD, "alice",
              with(USER_ADD, "userName", json_string("Zo\xc3\xab \xf0\x9f\x98\x80")), &req);
    expect_ok(KCHAT_OP_USER_ADD, "alice",
              with(USER_ADD, "userName", json_string("no\xc2\xa0" "break")), &req); /* U+00A0 */

    static const char *const controls[] = {
        "a\x01", "\x1f", "tab\there", "new\nline", "cr\r", "del\x7f",
        "c1\xc2\x80", "nel\xc2\x85", "c1\xc2\x9f",
    };
    for (size_t i = 0; i < ARRAY_LEN(controls); i++)
        expect_bad(KCHAT_OP_USER_ADD, "alice",
                   with(USER_ADD, "userName", json_string(controls[i])), rule);
    expect_bad(KCHAT_OP_USER_ADD, "alice", with(USER_ADD, "userName", json_integer(1)), rule);
}

static void test_login(void **state)
{
    (void)state;
    kchat_request req;
    expect_ok(KCHAT_OP_LOGIN, "alice", json_of(LOGIN), &req);
    assert_int_equal(req.op, KCHAT_OP_LOGIN);
    assert_string_equal(req.user_id, "alice");
    assert_string_equal(req.user_pw, "correct horse");
    assert_string_equal(req.email, "");
    check_user_id_rules(KCHAT_OP_LOGIN, LOGIN);
}

static void test_logout(void **state)
{
    (void)state;
    kchat_request req;
    char err[256];
    expect_ok(KCHAT_OP_LOGOUT, "alice", json_of("{\"userId\":\"alice\"}"), &req);
    assert_string_equal(req.user_id, "alice");
    check_user_id_rules(KCHAT_OP_LOGOUT, "{\"userId\":\"alice\"}");

    /* Compatibility: the bare id, as raw bytes, in either format. */
    for (int f = KCHAT_FMT_JSON; f <= KCHAT_FMT_MSGPACK; f++) {
        memset(&req, 0xa5, sizeof req);
        assert_int_equal(parse_raw(KCHAT_OP_LOGOUT, (kchat_fmt)f, "alice", BYTES("alice"), &req,
                                   err),
                         KCHAT_WIRE_OK);
        assert_string_equal(req.user_id, "alice");
        assert_int_equal(req.op, KCHAT_OP_LOGOUT);
        assert_string_equal(req.user_pw, "");
        assert_int_equal(parse_raw(KCHAT_OP_LOGOUT, (kchat_fmt)f, "bob", BYTES("alice"), &req,
                                   err),
                         KCHAT_WIRE_BAD_REQUEST);
        assert_string_equal(err, "The record key must equal userId.");
    }
    /* Digits are an id too, though they also read as a JSON number. */
    assert_int_equal(parse_raw(KCHAT_OP_LOGOUT, KCHAT_FMT_JSON, "123", BYTES("123"), &req, err),
                     KCHAT_WIRE_OK);
    assert_string_equal(req.user_id, "123");
    /* A 64-byte bare id is fine, 65 bytes is no id (and no JSON). */
    char id[66];
    memset(id, 'i', sizeof id);
    id[64] = '\0';
    assert_int_equal(parse_raw(KCHAT_OP_LOGOUT, KCHAT_FMT_JSON, id, id, 64, &req, err),
                     KCHAT_WIRE_OK);
    assert_int_equal(parse_raw(KCHAT_OP_LOGOUT, KCHAT_FMT_JSON, id, id, 65, &req, err),
                     KCHAT_WIRE_BAD_REQUEST);
    assert_int_equal(parse_raw(KCHAT_OP_LOGOUT, KCHAT_FMT_JSON, "alice", BYTES("al ice"), &req,
                               err),
                     KCHAT_WIRE_BAD_REQUEST);

    /* A JSON string or msgpack str holding an id. */
    expect_ok(KCHAT_OP_LOGOUT, "alice", json_string("alice"), &req);
    assert_string_equal(req.user_id, "alice");
    assert_int_equal(parse_raw(KCHAT_OP_LOGOUT, KCHAT_FMT_JSON, "alice", BYTES(" \"alice\" "),
                               &req, err),
                     KCHAT_WIRE_OK);
    expect_bad(KCHAT_OP_LOGOUT, "alice", json_string("al ice"), "must be an object");
    expect_bad(KCHAT_OP_LOGOUT, "alice", json_string(""), "must be an object");
    expect_bad(KCHAT_OP_LOGOUT, "alice", json_of("[\"alice\"]"), "must be an object");

    /* Only logout has the compatibility rule. */
    assert_int_equal(parse_raw(KCHAT_OP_SEARCH_FRIEND, KCHAT_FMT_JSON, "alice", BYTES("alice"),
                               &req, err),
                     KCHAT_WIRE_BAD_REQUEST);
    expect_bad(KCHAT_OP_SEARCH_ROOM, "alice", json_string("alice"), "must be an object");
}

static void test_status(void **state)
{
    (void)state;
    kchat_request req;
    const char *rule = "userStatus must be at most 256 bytes of UTF-8.";
    expect_ok(KCHAT_OP_STATUS, "alice", json_of(STATUS), &req);
    assert_string_equal(req.user_status, "busy");
    check_user_id_rules(KCHAT_OP_STATUS, STATUS);

    expect_ok(KCHAT_OP_STATUS, "alice", with(STATUS, "userStatus", json_string("")), &req);
    assert_string_equal(req.user_status, "");
    expect_ok(KCHAT_OP_STATUS, "alice", with(STATUS, "userStatus", str_n(256, 's')), &req);
    assert_int_equal(strlen(req.user_status), 256);
    expect_bad(KCHAT_OP_STATUS, "alice", with(STATUS, "userStatus", str_n(257, 's')), rule);
    expect_ok(KCHAT_OP_STATUS, "alice",
              with(STATUS, "userStatus", utf8_n(256, "\xf0\x9f\x98\x80")), &req);
    expect_bad(KCHAT_OP_STATUS, "alice", with(STATUS, "userStatus", json_integer(1)), rule);
    expect_ok(KCHAT_OP_STATUS, "alice", with(STATUS, "userStatus", json_string("tab\tok")), &req);

    /* `status` is accepted when userStatus is absent (or null)... */
    const char *alias = "{\"userId\":\"alice\",\"status\":\"away\"}";
    expect_ok(KCHAT_OP_STATUS, "alice", json_of(alias), &req);
    assert_string_equal(req.user_status, "away");
    expect_ok(KCHAT_OP_STATUS, "alice", with(alias, "userStatus", json_null()), &req);
    assert_string_equal(req.user_status, "away");
    expect_ok(KCHAT_OP_STATUS, "alice", with(alias, "status", str_n(256, 's')), &req);
    expect_bad(KCHAT_OP_STATUS, "alice", with(alias, "status", str_n(257, 's')),
               "status must be at most 256 bytes of UTF-8.");
    expect_bad(KCHAT_OP_STATUS, "alice", with(alias, "status", json_false()), "status must");
    /* ... and userStatus wins when both are there. */
    expect_ok(KCHAT_OP_STATUS, "alice", with(alias, "userStatus", json_string("busy")), &req);
    assert_string_equal(req.user_status, "busy");
    expect_bad(KCHAT_OP_STATUS, "alice", with(alias, "userStatus", json_integer(3)), rule);
    expect_bad(KCHAT_OP_STATUS, "alice", without(STATUS, "userStatus"), "userStatus is required.");
}

/* friendId rules shared by user-add-friend and user-add-room. */
static void check_friend_list_rules(kchat_op op, const char *base)
{
    kchat_request req;
    const char *elem = "must be 1 to 64 bytes of letters, digits, '_', '.' or '-'.";
    expect_bad(op, "alice", without(base, "friendId"), "friendId is required.");
    expect_bad(op, "alice", with(base, "friendId", json_array()),
               "friendId must be a non-empty array of user ids.");
    expect_bad(op, "alice", with(base, "friendId", json_string("bob")),
               "friendId must be a non-empty array");
    expect_bad(op, "alice", with(base, "friendId", json_of("{\"0\":\"bob\"}")),
               "friendId must be a non-empty array");
    expect_bad(op, "alice", with(base, "friendId", json_of("[\"bob\",7]")), "friendId[1] must");
    expect_bad(op, "alice", with(base, "friendId", json_of("[\"bob\",\"b b\"]")), elem);
    expect_bad(op, "alice", with(base, "friendId", json_of("[\"\"]")), "friendId[0] must");
    expect_bad(op, "alice", with(base, "friendId", json_of("[null]")), "friendId[0] must");
    json_t *long_id = json_array();
    json_array_append_new(long_id, str_n(65, 'f'));
    expect_bad(op, "alice", with(base, "friendId", long_id), "friendId[0] must");
    json_t *max_id = json_array();
    json_array_append_new(max_id, str_n(64, 'f'));
    expect_ok(op, "alice", with(base, "friendId", max_id), &req);
    assert_int_equal(strlen(req.friend_ids[0]), 64);

    /* One id; then repeats folded in first-seen order. */
    expect_ok(op, "alice", with(base, "friendId", json_of("[\"bob\"]")), &req);
    assert_int_equal(req.n_friends, 1);
    expect_ok(op, "alice",
              with(base, "friendId", json_of("[\"dan\",\"bob\",\"dan\",\"carol\",\"bob\"]")), &req);
    assert_int_equal(req.n_friends, 3);
    assert_string_equal(req.friend_ids[0], "dan");
    assert_string_equal(req.friend_ids[1], "bob");
    assert_string_equal(req.friend_ids[2], "carol");

    /* 100 distinct ids are fine, 101 are not; repeats do not count. */
    expect_ok(op, "alice", with(base, "friendId", id_list(100, 1)), &req);
    assert_int_equal(req.n_friends, 100);
    assert_string_equal(req.friend_ids[0], "f0");
    assert_string_equal(req.friend_ids[99], "f99");
    expect_bad(op, "alice", with(base, "friendId", id_list(101, 1)),
               "friendId must hold at most 100 distinct user ids.");
    expect_ok(op, "alice", with(base, "friendId", id_list(100, 3)), &req);
    assert_int_equal(req.n_friends, 100);
    expect_bad(op, "alice", with(base, "friendId", id_list(101, 2)), "at most 100 distinct");
}

static void test_add_friend(void **state)
{
    (void)state;
    kchat_request req;
    expect_ok(KCHAT_OP_ADD_FRIEND, "alice", json_of(ADD_FRIEND), &req);
    assert_string_equal(req.user_id, "alice");
    assert_int_equal(req.n_friends, 2);
    assert_string_equal(req.friend_ids[0], "bob");
    assert_string_equal(req.friend_ids[1], "carol");
    check_user_id_rules(KCHAT_OP_ADD_FRIEND, ADD_FRIEND);
    check_friend_list_rules(KCHAT_OP_ADD_FRIEND, ADD_FRIEND);
    /* Befriending yourself is BAD_REQUEST (PROTOCOL.md section 3). */
    expect_bad(KCHAT_OP_ADD_FRIEND, "alice",
               with(ADD_FRIEND, "friendId", json_of("[\"bob\",\"alice\"]")),
               "friendId must not contain userId itself.");
}

static void test_search(void **state)
{
    (void)state;
    kchat_request req;
    static const kchat_op ops[] = {KCHAT_OP_SEARCH_FRIEND, KCHAT_OP_SEARCH_ROOM};
    for (size_t i = 0; i < ARRAY_LEN(ops); i++) {
        expect_ok(ops[i], "alice", json_of("{\"userId\":\"alice\",\"friendId\":7}"), &req);
        assert_int_equal(req.op, ops[i]);
        assert_string_equal(req.user_id, "alice");
        assert_int_equal(req.n_friends, 0);
        check_user_id_rules(ops[i], "{\"userId\":\"alice\"}");
    }
}

static void test_add_room(void **state)
{
    (void)state;
    kchat_request req;
    const char *rule = "roomName must be at most 128 bytes of UTF-8.";
    expect_ok(KCHAT_OP_ADD_ROOM, "alice", json_of(ADD_ROOM), &req);
    assert_string_equal(req.user_id, "alice");
    assert_int_equal(req.n_friends, 1);
    assert_string_equal(req.friend_ids[0], "bob");
    assert_true(req.has_room_name);
    assert_string_equal(req.room_name, "lunch");
    check_user_id_rules(KCHAT_OP_ADD_ROOM, ADD_ROOM);
    check_friend_list_rules(KCHAT_OP_ADD_ROOM, ADD_ROOM);

    expect_ok(KCHAT_OP_ADD_ROOM, "alice", without(ADD_ROOM, "roomName"), &req);
    assert_false(req.has_room_name);
    assert_string_equal(req.room_name, "");
    expect_ok(KCHAT_OP_ADD_ROOM, "alice", with(ADD_ROOM, "roomName", json_null()), &req);
    assert_false(req.has_room_name);
    expect_ok(KCHAT_OP_ADD_ROOM, "alice", with(ADD_ROOM, "roomName", json_string("")), &req);
    assert_true(req.has_room_name);
    assert_string_equal(req.room_name, "");
    expect_ok(KCHAT_OP_ADD_ROOM, "alice", with(ADD_ROOM, "roomName", str_n(128, 'r')), &req);
    assert_int_equal(strlen(req.room_name), 128);
    expect_bad(KCHAT_OP_ADD_ROOM, "alice", with(ADD_ROOM, "roomName", str_n(129, 'r')), rule);
    expect_ok(KCHAT_OP_ADD_ROOM, "alice",
              with(ADD_ROOM, "roomName", utf8_n(128, "\xf0\x9f\x8d\x95")), &req);
    expect_bad(KCHAT_OP_ADD_ROOM, "alice",
               with(ADD_ROOM, "roomName", utf8_n(132, "\xf0\x9f\x8d\x95")), rule);
    expect_bad(KCHAT_OP_ADD_ROOM, "alice", with(ADD_ROOM, "roomName", json_integer(5)), rule);
}

/* roomId rules, for user-add-chat and room-history. */
static void check_room_id_rules(kchat_op op, const char *base)
{
    kchat_request req;
    expect_bad(op, "alice", without(base, "roomId"), "roomId is required.");
    expect_bad(op, "alice", with(base, "roomId", json_string("")), "roomId must be 1 to 64 bytes");
    expect_ok(op, "alice", with(base, "roomId", json_string("r")), &req);
    assert_string_equal(req.room_id, "r");
    expect_ok(op, "alice", with(base, "roomId", str_n(64, 'r')), &req);
    assert_int_equal(strlen(req.room_id), 64);
    expect_bad(op, "alice", with(base, "roomId", str_n(65, 'r')), "roomId must");
    expect_bad(op, "alice", with(base, "roomId", json_string("room 1")), "roomId must");
    expect_bad(op, "alice", with(base, "roomId", json_integer(1)), "roomId must");
}

static void test_add_chat(void **state)
{
    (void)state;
    kchat_request req;
    const char *rule = "message must be 1 to 4096 bytes of UTF-8.";
    expect_ok(KCHAT_OP_ADD_CHAT, "alice", json_of(ADD_CHAT), &req);
    assert_int_equal(req.op, KCHAT_OP_ADD_CHAT);
    assert_string_equal(req.room_id, "r-1");
    assert_string_equal(req.user_id, "alice");
    assert_string_equal(req.message, "hi");
    assert_int_equal(req.message_len, 2);
    assert_string_equal(req.client_msg_id, "m1");
    check_room_id_rules(KCHAT_OP_ADD_CHAT, ADD_CHAT);

    /* writerId follows the id rules. */
    expect_bad(KCHAT_OP_ADD_CHAT, "alice", without(ADD_CHAT, "writerId"), "writerId is required.");
    expect_bad(KCHAT_OP_ADD_CHAT, "alice", with(ADD_CHAT, "writerId", str_n(65, 'w')),
               "writerId must be 1 to 64 bytes");
    char w64[65];
    memset(w64, 'w', 64);
    w64[64] = '\0';
    expect_ok(KCHAT_OP_ADD_CHAT, w64, with(ADD_CHAT, "writerId", str_n(64, 'w')), &req);
    assert_string_equal(req.user_id, w64);

    /* message */
    expect_bad(KCHAT_OP_ADD_CHAT, "alice", without(ADD_CHAT, "message"), "message is required.");
    expect_bad(KCHAT_OP_ADD_CHAT, "alice", with(ADD_CHAT, "message", json_string("")), rule);
    expect_ok(KCHAT_OP_ADD_CHAT, "alice", with(ADD_CHAT, "message", json_string("x")), &req);
    assert_int_equal(req.message_len, 1);
    expect_ok(KCHAT_OP_ADD_CHAT, "alice", with(ADD_CHAT, "message", str_n(4096, 'm')), &req);
    assert_int_equal(req.message_len, 4096);
    assert_int_equal(strlen(req.message), 4096);
    expect_bad(KCHAT_OP_ADD_CHAT, "alice", with(ADD_CHAT, "message", str_n(4097, 'm')), rule);
    expect_ok(KCHAT_OP_ADD_CHAT, "alice",
              with(ADD_CHAT, "message", utf8_n(4095, "\xe2\x82\xac")), &req);
    assert_int_equal(req.message_len, 4095);
    expect_bad(KCHAT_OP_ADD_CHAT, "alice",
               with(ADD_CHAT, "message", utf8_n(4098, "\xe2\x82\xac")), rule);
    expect_ok(KCHAT_OP_ADD_CHAT, "alice",
              with(ADD_CHAT, "message", json_string("two\nlines\tand a tab")), &req);
    expect_bad(KCHAT_OP_ADD_CHAT, "alice", with(ADD_CHAT, "message", json_of("[\"hi\"]")), rule);

    /* clientMsgId: optional, 0..64 bytes of any UTF-8. */
    const char *cm_rule = "clientMsgId must be at most 64 bytes of UTF-8.";
    expect_ok(KCHAT_OP_ADD_CHAT, "alice", without(ADD_CHAT, "clientMsgId"), &req);
    assert_string_equal(req.client_msg_id, "");
    expect_ok(KCHAT_OP_ADD_CHAT, "alice", with(ADD_CHAT, "clientMsgId", json_null()), &req);
    assert_string_equal(req.client_msg_id, "");
    expect_ok(KCHAT_OP_ADD_CHAT, "alice", with(ADD_CHAT, "clientMsgId", json_string("")), &req);
    expect_ok(KCHAT_OP_ADD_CHAT, "alice", with(ADD_CHAT, "clientMsgId", str_n(64, 'c')), &req);
    assert_int_equal(strlen(req.client_msg_id), 64);
    expect_bad(KCHAT_OP_ADD_CHAT, "alice", with(ADD_CHAT, "clientMsgId", str_n(65, 'c')), cm_rule);
    expect_ok(KCHAT_OP_ADD_CHAT, "alice",
              with(ADD_CHAT, "clientMsgId", json_string("id with spaces/\xc3\xa9")), &req);
    assert_string_equal(req.client_msg_id, "id with spaces/\xc3\xa9");
    expect_bad(KCHAT_OP_ADD_CHAT, "alice", with(ADD_CHAT, "clientMsgId", json_integer(7)), cm_rule);
}

static void test_history(void **state)
{
    (void)state;
    kchat_request req;
    const char *seq_rule = "beforeSeq must be an integer of at least 1.";
    const char *limit_rule = "limit must be an integer from 1 to 100.";
    expect_ok(KCHAT_OP_HISTORY, "alice", json_of(HISTORY), &req);
    assert_string_equal(req.user_id, "alice");
    assert_string_equal(req.room_id, "r-1");
    assert_false(req.has_before_seq);
    assert_int_equal(req.limit, 50);
    check_user_id_rules(KCHAT_OP_HISTORY, HISTORY);
    check_room_id_rules(KCHAT_OP_HISTORY, HISTORY);

    expect_bad(KCHAT_OP_HISTORY, "alice", with(HISTORY, "beforeSeq", json_integer(0)), seq_rule);
    expect_bad(KCHAT_OP_HISTORY, "alice", with(HISTORY, "beforeSeq", json_integer(-1)), seq_rule);
    expect_ok(KCHAT_OP_HISTORY, "alice", with(HISTORY, "beforeSeq", json_integer(1)), &req);
    assert_true(req.has_before_seq);
    assert_int_equal(req.before_seq, 1);
    expect_ok(KCHAT_OP_HISTORY, "alice", with(HISTORY, "beforeSeq", json_integer(INT64_MAX)),
              &req);
    assert_int_equal(req.before_seq, INT64_MAX);
    expect_ok(KCHAT_OP_HISTORY, "alice", with(HISTORY, "beforeSeq", json_null()), &req);
    assert_false(req.has_before_seq);
    /* Integral reals count as integers; others do not. */
    expect_ok(KCHAT_OP_HISTORY, "alice", with(HISTORY, "beforeSeq", json_real(7.0)), &req);
    assert_int_equal(req.before_seq, 7);
    expect_bad(KCHAT_OP_HISTORY, "alice", with(HISTORY, "beforeSeq", json_real(7.5)), seq_rule);
    expect_bad(KCHAT_OP_HISTORY, "alice", with(HISTORY, "beforeSeq", json_real(0.0)), seq_rule);
    expect_bad(KCHAT_OP_HISTORY, "alice", with(HISTORY, "beforeSeq", json_real(1e300)), seq_rule);
    expect_bad(KCHAT_OP_HISTORY, "alice",
               with(HISTORY, "beforeSeq", json_real(9223372036854775808.0)), seq_rule);
    expect_ok(KCHAT_OP_HISTORY, "alice",
              with(HISTORY, "beforeSeq", json_real(9223372036854774784.0)), &req);
    assert_int_equal(req.before_seq, INT64_C(9223372036854774784));
    expect_bad(KCHAT_OP_HISTORY, "alice", with(HISTORY, "beforeSeq", json_string("5")), seq_rule);
    expect_bad(KCHAT_OP_HISTORY, "alice", with(HISTORY, "beforeSeq", json_true()), seq_rule);

    expect_bad(KCHAT_OP_HISTORY, "alice", with(HISTORY, "limit", json_integer(0)), limit_rule);
    expect_ok(KCHAT_OP_HISTORY, "alice", with(HISTORY, "limit", json_integer(1)), &req);
    assert_int_equal(req.limit, 1);
    expect_ok(KCHAT_OP_HISTORY, "alice", with(HISTORY, "limit", json_integer(100)), &req);
    assert_int_equal(req.limit, 100);
    expect_bad(KCHAT_OP_HISTORY, "alice", with(HISTORY, "limit", json_integer(101)), limit_rule);
    expect_bad(KCHAT_OP_HISTORY, "alice", with(HISTORY, "limit", json_integer(INT64_MIN)),
               limit_rule);
    expect_ok(KCHAT_OP_HISTORY, "alice", with(HISTORY, "limit", json_real(20.0)), &req);
    assert_int_equal(req.limit, 20);
    expect_bad(KCHAT_OP_HISTORY, "alice", with(HISTORY, "limit", json_real(20.5)), limit_rule);
    expect_bad(KCHAT_OP_HISTORY, "alice", with(HISTORY, "limit", json_string("20")), limit_rule);
    expect_ok(KCHAT_OP_HISTORY, "alice", with(HISTORY, "limit", json_null()), &req);
    assert_int_equal(req.limit, 50);

    /* NaN and infinities cannot arrive (neither format decodes them). */
    kchat_request r;
    char err[256];
    assert_int_equal(parse_raw(KCHAT_OP_HISTORY, KCHAT_FMT_JSON, "alice",
                               BYTES("{\"userId\":\"alice\",\"roomId\":\"r\",\"limit\":1e999}"),
                               &r, err),
                     KCHAT_WIRE_BAD_REQUEST);
}

/* Hand-written msgpack, independent of the encoder, through the parser. */
static void test_request_msgpack_bytes(void **state)
{
    (void)state;
    kchat_request req;
    char err[256];
    static const char chat[] =
        "\x84\xa6roomId\xa3r-1\xa8writerId\xa5" "alice\xa7message\xda\x00\x05hello"
        "\xab" "clientMsgId\xd9\x02m1";
    assert_int_equal(parse_raw(KCHAT_OP_ADD_CHAT, KCHAT_FMT_MSGPACK, "alice", BYTES(chat), &req,
                               err),
                     KCHAT_WIRE_OK);
    assert_string_equal(req.message, "hello");
    assert_string_equal(req.client_msg_id, "m1");

    static const char history[] =
        "\x84\xa6userId\xa5" "alice\xa6roomId\xa1r\xa9" "beforeSeq\xcf\x00\x00\x00\x01\x00\x00"
        "\x00\x00\xa5limit\xcb\x40\x24\x00\x00\x00\x00\x00\x00";
    assert_int_equal(parse_raw(KCHAT_OP_HISTORY, KCHAT_FMT_MSGPACK, "alice", BYTES(history), &req,
                               err),
                     KCHAT_WIRE_OK);
    assert_int_equal(req.before_seq, INT64_C(4294967296));
    assert_int_equal(req.limit, 10);

    static const char int_key[] = "\x82\xa6userId\xa5" "alice\x01\x02";
    assert_int_equal(parse_raw(KCHAT_OP_LOGOUT, KCHAT_FMT_MSGPACK, "alice", BYTES(int_key), &req,
                               err),
                     KCHAT_WIRE_BAD_REQUEST);
    assert_string_equal(err, "The request body is not valid msgpack: a map key is not a string.");

    static const char fixstr_id[] = "\xa5" "alice";
    assert_int_equal(parse_raw(KCHAT_OP_LOGOUT, KCHAT_FMT_MSGPACK, "alice", BYTES(fixstr_id),
                               &req, err),
                     KCHAT_WIRE_OK);
    assert_string_equal(req.user_id, "alice");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_err_names),
        cmocka_unit_test(test_op_topics),
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_valid_id),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_iso8601),
        cmocka_unit_test(test_iso8601_matches_gmtime),
        cmocka_unit_test(test_decode_json),
        cmocka_unit_test(test_decode_json_depth),
        cmocka_unit_test(test_decode_msgpack_scalars),
        cmocka_unit_test(test_decode_msgpack_containers),
        cmocka_unit_test(test_decode_msgpack_truncated),
        cmocka_unit_test(test_decode_msgpack_depth),
        cmocka_unit_test(test_encode_json),
        cmocka_unit_test(test_encode_msgpack),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_request_too_large),
        cmocka_unit_test(test_request_body_not_decodable),
        cmocka_unit_test(test_request_not_an_object),
        cmocka_unit_test(test_request_key),
        cmocka_unit_test(test_request_arguments),
        cmocka_unit_test(test_user_add),
        cmocka_unit_test(test_user_pw),
        cmocka_unit_test(test_email),
        cmocka_unit_test(test_user_name),
        cmocka_unit_test(test_login),
        cmocka_unit_test(test_logout),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_add_friend),
        cmocka_unit_test(test_search),
        cmocka_unit_test(test_add_room),
        cmocka_unit_test(test_add_chat),
        cmocka_unit_test(test_history),
        cmocka_unit_test(test_request_msgpack_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
