/* Unit tests of kchat_codec_add_member() and kchat_codec_add_json_member()
 * (include/kchat/codec.h): a member appended to an encoded object gives,
 * byte for byte, what kchat_codec_encode() gives for the object with that
 * member last, in JSON and msgpack, across the sizes where an encoding
 * changes shape (msgpack fixmap to map 16, fixstr to str 8 and str 16;
 * JSON's empty object). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kchat/codec.h"
#include "kchat/error.h"

/* An object of @p members members: "k0": 0, "k1": "one", "k2": [2], ... */
static json_t *object_of(size_t members)
{
    json_t *o = json_object();

    for (size_t i = 0; i < members; i++) {
        char k[24];
        snprintf(k, sizeof(k), "k%zu", i);
        json_object_set_new(o, k, i % 3 == 0 ? json_integer((json_int_t)i)
                                 : i % 3 == 1 ? json_string("one")
                                              : json_pack("[i]", (int)i));
    }
    return o;
}

static void assert_same_as_encode(kchat_fmt f, size_t members, const char *value)
{
    json_t *o = object_of(members);
    char *enc, *got, *want;
    size_t len, got_len, want_len;

    assert_int_equal(kchat_codec_encode(f, o, &enc, &len), KCHAT_OK);
    assert_int_equal(kchat_codec_add_member(f, enc, len, "userId", value, &got, &got_len),
                     KCHAT_OK);
    json_object_set_new(o, "userId", json_string(value));
    assert_int_equal(kchat_codec_encode(f, o, &want, &want_len), KCHAT_OK);
    if (got_len != want_len || memcmp(got, want, want_len) != 0)
        fprintf(stderr, "format %d, %zu members, value of %zu bytes: %zu bytes, want %zu\n",
                (int)f, members, strlen(value), got_len, want_len);
    assert_int_equal(got_len, want_len);
    assert_memory_equal(got, want, want_len);
    free(enc);
    free(got);
    free(want);
    json_decref(o);
}

static void test_same_bytes_as_encode(void **state)
{
    static const size_t members[] = {0, 1, 7, 14, 15, 16, 300};
    static const size_t lengths[] = {0, 1, 31, 32, 64, 255, 256};
    char value[300];

    (void)state;
    for (size_t f = 0; f < 2; f++)
        for (size_t m = 0; m < sizeof(members) / sizeof(members[0]); m++)
            for (size_t l = 0; l < sizeof(lengths) / sizeof(lengths[0]); l++) {
                memset(value, 'a' + (int)(l % 26), lengths[l]);
                value[lengths[l]] = '\0';
                assert_same_as_encode(f ? KCHAT_FMT_MSGPACK : KCHAT_FMT_JSON, members[m],
                                      value);
            }
    /* escapes and non-ASCII text are the encoder's own */
    assert_same_as_encode(KCHAT_FMT_JSON, 3, "quote \" backslash \\ tab \t snowman \xe2\x98\x83");
    assert_same_as_encode(KCHAT_FMT_MSGPACK, 3, "snowman \xe2\x98\x83");
}

static void test_refuses(void **state)
{
    char *out = (char *)1;
    size_t len = 1;

    (void)state;
    /* not an object's encoding */
    assert_int_equal(kchat_codec_add_member(KCHAT_FMT_JSON, "[1]", 3, "k", "v", &out, &len),
                     KCHAT_EINVAL);
    assert_null(out);
    assert_int_equal(len, 0);
    assert_int_equal(kchat_codec_add_member(KCHAT_FMT_JSON, "{", 1, "k", "v", &out, &len),
                     KCHAT_EINVAL);
    assert_int_equal(kchat_codec_add_member(KCHAT_FMT_MSGPACK, "\x91\x01", 2, "k", "v", &out,
                                            &len),
                     KCHAT_EINVAL);
    assert_int_equal(kchat_codec_add_member(KCHAT_FMT_MSGPACK, "", 0, "k", "v", &out, &len),
                     KCHAT_EINVAL);
    /* a value that is not UTF-8 */
    assert_int_equal(kchat_codec_add_member(KCHAT_FMT_JSON, "{}", 2, "k", "\xff", &out, &len),
                     KCHAT_EINVAL);
    assert_int_equal(kchat_codec_add_member((kchat_fmt)7, "{}", 2, "k", "v", &out, &len),
                     KCHAT_EINVAL);
    assert_int_equal(kchat_codec_add_member(KCHAT_FMT_JSON, "{}", 2, "k", "v", NULL, &len),
                     KCHAT_EINVAL);
}

/* A member given as JSON text: @p json is the codec's own JSON of @p v
 * (stolen), so the result is byte for byte the encoding of the object with
 * @p v last, in either format. */
static void assert_json_member_as_encode(kchat_fmt f, size_t members, json_t *v)
{
    json_t *o = object_of(members);
    char *enc, *text, *got, *want;
    size_t len, text_len, got_len, want_len;

    assert_int_equal(kchat_codec_encode(f, o, &enc, &len), KCHAT_OK);
    assert_int_equal(kchat_codec_encode(KCHAT_FMT_JSON, v, &text, &text_len), KCHAT_OK);
    assert_int_equal(kchat_codec_add_json_member(f, enc, len, "messages", text, text_len, &got,
                                                 &got_len),
                     KCHAT_OK);
    json_object_set_new(o, "messages", v);
    assert_int_equal(kchat_codec_encode(f, o, &want, &want_len), KCHAT_OK);
    if (got_len != want_len || memcmp(got, want, want_len) != 0)
        fprintf(stderr, "format %d, %zu members, a value of %zu bytes of JSON: %zu bytes, "
                "want %zu\n", (int)f, members, text_len, got_len, want_len);
    assert_int_equal(got_len, want_len);
    assert_memory_equal(got, want, want_len);
    free(enc);
    free(text);
    free(got);
    free(want);
    json_decref(o);
}

static void test_json_member_same_bytes_as_encode(void **state)
{
    static const size_t members[] = {0, 1, 14, 15, 16, 300};

    (void)state;
    for (size_t f = 0; f < 2; f++)
        for (size_t m = 0; m < sizeof(members) / sizeof(members[0]); m++) {
            kchat_fmt fmt = f ? KCHAT_FMT_MSGPACK : KCHAT_FMT_JSON;

            assert_json_member_as_encode(fmt, members[m], json_array());
            assert_json_member_as_encode(fmt, members[m], json_integer(7));
            assert_json_member_as_encode(
                fmt, members[m],
                json_pack("[{s:I, s:s, s:s}, {s:I, s:s, s:b}]", "seq", (json_int_t)1,
                          "message", "snowman \xe2\x98\x83 \"quoted\"", "writerId", "alice",
                          "seq", (json_int_t)2, "message", "", "edited", 1));
        }
}

static void test_json_member_refuses(void **state)
{
    char *out = (char *)1;
    size_t len = 1;

    (void)state;
    /* not an object's encoding */
    assert_int_equal(kchat_codec_add_json_member(KCHAT_FMT_JSON, "[1]", 3, "k", "1", 1, &out,
                                                 &len),
                     KCHAT_EINVAL);
    assert_null(out);
    assert_int_equal(len, 0);
    assert_int_equal(kchat_codec_add_json_member(KCHAT_FMT_MSGPACK, "\x91\x01", 2, "k", "1", 1,
                                                 &out, &len),
                     KCHAT_EINVAL);
    /* no value */
    assert_int_equal(kchat_codec_add_json_member(KCHAT_FMT_JSON, "{}", 2, "k", "", 0, &out,
                                                 &len),
                     KCHAT_EINVAL);
    assert_int_equal(kchat_codec_add_json_member(KCHAT_FMT_JSON, "{}", 2, "k", NULL, 1, &out,
                                                 &len),
                     KCHAT_EINVAL);
    /* a key that is not UTF-8 */
    assert_int_equal(kchat_codec_add_json_member(KCHAT_FMT_JSON, "{}", 2, "\xff", "1", 1, &out,
                                                 &len),
                     KCHAT_EINVAL);
    /* msgpack decodes the text: one that is not JSON is refused */
    assert_int_equal(kchat_codec_add_json_member(KCHAT_FMT_MSGPACK, "\x80", 1, "k", "[1,", 3,
                                                 &out, &len),
                     KCHAT_EDECODE);
    assert_null(out);
    assert_int_equal(kchat_codec_add_json_member((kchat_fmt)7, "{}", 2, "k", "1", 1, &out, &len),
                     KCHAT_EINVAL);
    assert_int_equal(kchat_codec_add_json_member(KCHAT_FMT_JSON, "{}", 2, "k", "1", 1, NULL,
                                                 &len),
                     KCHAT_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_bytes_as_encode),
        cmocka_unit_test(test_refuses),
        cmocka_unit_test(test_json_member_same_bytes_as_encode),
        cmocka_unit_test(test_json_member_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
