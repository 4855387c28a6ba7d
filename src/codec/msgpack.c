/*
 * msgpack <-> jansson values.
 *
 * Decoding reads the bytes directly instead of using msgpack-c's unpacker,
 * which reserves memory for every element a container header claims before
 * reading any (see the caveats in codec.h). Here every length is checked
 * against the bytes left, nothing is reserved ahead, and values are built
 * as they are read, so memory stays proportional to the input.
 *
 * Encoding uses msgpack-c's packer and its malloc()-backed sbuffer.
 */
#include <math.h>
#include <msgpack.h>
#include <string.h>

#include "codec_internal.h"
#include "kchat/error.h"

/* The unread part of the input, and why decoding stopped. */
typedef struct mp_reader {
    const unsigned char *p;
    size_t left;
    const char *why;
} mp_reader;

KCHAT_MUST_CHECK
static int mp_fail(mp_reader *r, const char *why)
{
    r->why = why;
    return KCHAT_EDECODE;
}

/* Consumes n bytes, or fails if fewer are left. */
KCHAT_MUST_CHECK
static int mp_take(mp_reader *r, size_t n, const unsigned char **bytes)
{
    if (n > r->left)
        return mp_fail(r, KCHAT__WHY_TRUNCATED);
    *bytes = r->p;
    r->p += n;
    r->left -= n;
    return KCHAT_OK;
}

/* Consumes a big-endian unsigned integer of width 1, 2, 4 or 8 bytes. */
KCHAT_MUST_CHECK
static int mp_take_uint(mp_reader *r, size_t width, uint64_t *out)
{
    const unsigned char *b;
    int rc = mp_take(r, width, &b);
    if (rc != KCHAT_OK)
        return rc;
    uint64_t v = 0;
    for (size_t i = 0; i < width; i++)
        v = v << 8 | b[i];
    *out = v;
    return KCHAT_OK;
}

/* The two's-complement value of the low `bits` bits of u, without
 * relying on implementation-defined conversions. */
static int64_t sign_extend(uint64_t u, unsigned bits)
{
    uint64_t sign = UINT64_C(1) << (bits - 1);
    if (!(u & sign))
        return (int64_t)(u & (sign - 1));
    /* u - 2^bits == -((2^bits - 1 - u) + 1); the inner term fits in int64. */
    return -(int64_t)(~u & (sign - 1)) - 1;
}

/* Stores a new value, or reports that jansson ran out of memory. */
KCHAT_MUST_CHECK
static int mp_made(json_t *v, json_t **out)
{
    if (!v)
        return KCHAT_ENOMEM;
    *out = v;
    return KCHAT_OK;
}

KCHAT_MUST_CHECK
static int mp_int(mp_reader *r, size_t width, bool is_signed, json_t **out)
{
    uint64_t u;
    int rc = mp_take_uint(r, width, &u);
    if (rc != KCHAT_OK)
        return rc;
    if (is_signed)
        return mp_made(json_integer(sign_extend(u, (unsigned)width * 8)), out);
    if (u > INT64_MAX)
        return mp_fail(r, KCHAT__WHY_RANGE);
    return mp_made(json_integer((json_int_t)u), out);
}

KCHAT_MUST_CHECK
static int mp_float(mp_reader *r, size_t width, json_t **out)
{
    uint64_t u;
    int rc = mp_take_uint(r, width, &u);
    if (rc != KCHAT_OK)
        return rc;
    double d;
    if (width == 4) {
        uint32_t u32 = (uint32_t)u;
        float f;
        memcpy(&f, &u32, sizeof f);
        d = f;
    } else {
        memcpy(&d, &u, sizeof d);
    }
    if (!isfinite(d))
        return mp_fail(r, KCHAT__WHY_RANGE);
    return mp_made(json_real(d), out);
}

/* Consumes a str payload of len bytes, checked as every codec string is. */
KCHAT_MUST_CHECK
static int mp_str_bytes(mp_reader *r, uint64_t len, const char **s)
{
    const unsigned char *b;
    if (len > r->left)
        return mp_fail(r, KCHAT__WHY_TRUNCATED);
    int rc = mp_take(r, (size_t)len, &b);
    if (rc != KCHAT_OK)
        return rc;
    const char *why = kchat__string_problem((const char *)b, (size_t)len);
    if (why)
        return mp_fail(r, why);
    *s = (const char *)b;
    return KCHAT_OK;
}

KCHAT_MUST_CHECK
static int mp_str(mp_reader *r, uint64_t len, json_t **out)
{
    const char *s;
    int rc = mp_str_bytes(r, len, &s);
    if (rc != KCHAT_OK)
        return rc;
    return mp_made(json_stringn_nocheck(s, (size_t)len), out);
}

/* Consumes a map key, which must be a str (fixstr, str 8, 16 or 32). */
KCHAT_MUST_CHECK
static int mp_key(mp_reader *r, const char **key, size_t *key_len)
{
    const unsigned char *b;
    uint64_t len = 0;
    int rc = mp_take(r, 1, &b);
    if (rc != KCHAT_OK)
        return rc;
    if ((b[0] & 0xe0) == 0xa0)
        len = b[0] & 0x1f;
    else if (b[0] >= 0xd9 && b[0] <= 0xdb)
        rc = mp_take_uint(r, (size_t)1 << (b[0] - 0xd9), &len);
    else
        return mp_fail(r, KCHAT__WHY_KEY);
    if (rc == KCHAT_OK)
        rc = mp_str_bytes(r, len, key);
    if (rc == KCHAT_OK)
        *key_len = (size_t)len;
    return rc;
}

KCHAT_MUST_CHECK
static int mp_value(mp_reader *r, int depth, json_t **out);

/* Reads n elements into a new array; depth counts its enclosing containers. */
KCHAT_MUST_CHECK
static int mp_array(mp_reader *r, uint64_t n, int depth, json_t **out)
{
    if (depth >= KCHAT_MAX_DEPTH)
        return mp_fail(r, KCHAT__WHY_DEPTH);
    json_t *array = json_array();
    if (!array)
        return KCHAT_ENOMEM;
    /* Each element takes at least one byte, so a false count fails as soon
     * as the input runs out; nothing is allocated from n itself. */
    for (uint64_t i = 0; i < n; i++) {
        json_t *item;
        int rc = mp_value(r, depth + 1, &item);
        if (rc == KCHAT_OK && json_array_append_new(array, item) != 0)
            rc = KCHAT_ENOMEM;
        if (rc != KCHAT_OK) {
            json_decref(array);
            return rc;
        }
    }
    *out = array;
    return KCHAT_OK;
}

/* Reads n key/value pairs into a new object; depth as for mp_array(). */
KCHAT_MUST_CHECK
static int mp_map(mp_reader *r, uint64_t n, int depth, json_t **out)
{
    if (depth >= KCHAT_MAX_DEPTH)
        return mp_fail(r, KCHAT__WHY_DEPTH);
    json_t *object = json_object();
    if (!object)
        return KCHAT_ENOMEM;
    for (uint64_t i = 0; i < n; i++) {
        const char *key;
        size_t key_len;
        json_t *item;
        int rc = mp_key(r, &key, &key_len);
        if (rc == KCHAT_OK && json_object_getn(object, key, key_len))
            rc = mp_fail(r, KCHAT__WHY_DUPLICATE);
        if (rc == KCHAT_OK)
            rc = mp_value(r, depth + 1, &item);
        /* The _new setter releases item itself when it fails. */
        if (rc == KCHAT_OK && json_object_setn_new_nocheck(object, key, key_len, item) != 0)
            rc = KCHAT_ENOMEM;
        if (rc != KCHAT_OK) {
            json_decref(object);
            return rc;
        }
    }
    *out = object;
    return KCHAT_OK;
}

/* Decodes the container whose header is first byte `type` and whose count
 * field is `width` bytes wide (0 for fix types, whose count is in `type`). */
KCHAT_MUST_CHECK
static int mp_container(mp_reader *r, unsigned char type, size_t width, bool is_map, int depth,
                        json_t **out)
{
    uint64_t n = type & 0x0f;
    if (width > 0) {
        int rc = mp_take_uint(r, width, &n);
        if (rc != KCHAT_OK)
            return rc;
    }
    return is_map ? mp_map(r, n, depth, out) : mp_array(r, n, depth, out);
}

/*
 * Decodes one value of any type. depth is the number of containers around
 * it; containers refuse to open past KCHAT_MAX_DEPTH, which bounds the
 * recursion. The format's first-byte table, in order:
 *   00-7f fixint  80-8f fixmap  90-9f fixarray  a0-bf fixstr  c0 nil
 *   c1 never used  c2/c3 false/true  c4-c6 bin  c7-c9 ext  ca/cb float
 *   cc-cf uint 8..64  d0-d3 int 8..64  d4-d8 fixext  d9-db str 8..32
 *   dc/dd array 16/32  de/df map 16/32  e0-ff negative fixint
 */
KCHAT_MUST_CHECK
static int mp_value(mp_reader *r, int depth, json_t **out)
{
    const unsigned char *b;
    int rc = mp_take(r, 1, &b);
    if (rc != KCHAT_OK)
        return rc;
    unsigned char t = b[0];

    if (t <= 0x7f)
        return mp_made(json_integer(t), out);
    if (t >= 0xe0)
        return mp_made(json_integer((json_int_t)t - 0x100), out);
    if (t <= 0x8f)
        return mp_container(r, t, 0, true, depth, out);
    if (t <= 0x9f)
        return mp_container(r, t, 0, false, depth, out);
    if (t <= 0xbf)
        return mp_str(r, t & 0x1f, out);
    if (t >= 0xcc && t <= 0xcf)
        return mp_int(r, (size_t)1 << (t - 0xcc), false, out);
    if (t >= 0xd0 && t <= 0xd3)
        return mp_int(r, (size_t)1 << (t - 0xd0), true, out);
    if (t >= 0xd9 && t <= 0xdb) {
        uint64_t len;
        rc = mp_take_uint(r, (size_t)1 << (t - 0xd9), &len);
        return rc == KCHAT_OK ? mp_str(r, len, out) : rc;
    }
    switch (t) {
    case 0xc0:
        return mp_made(json_null(), out);
    case 0xc2:
        return mp_made(json_false(), out);
    case 0xc3:
        return mp_made(json_true(), out);
    case 0xca:
        return mp_float(r, 4, out);
    case 0xcb:
        return mp_float(r, 8, out);
    case 0xdc:
    case 0xdd:
        return mp_container(r, t, t == 0xdc ? 2 : 4, false, depth, out);
    case 0xde:
    case 0xdf:
        return mp_container(r, t, t == 0xde ? 2 : 4, true, depth, out);
    case 0xc1:
        return mp_fail(r, KCHAT__WHY_MALFORMED);
    default: /* c4-c9, d4-d8 */
        return mp_fail(r, KCHAT__WHY_BINARY);
    }
}

int kchat__msgpack_decode(const void *buf, size_t len, json_t **out, const char **why)
{
    mp_reader r = {.p = buf, .left = len, .why = KCHAT__WHY_MALFORMED};
    json_t *v = NULL;
    int rc = mp_value(&r, 0, &v);
    if (rc == KCHAT_OK && r.left > 0) {
        json_decref(v);
        rc = mp_fail(&r, KCHAT__WHY_TRAILING);
    }
    if (rc == KCHAT_EDECODE)
        *why = r.why;
    *out = rc == KCHAT_OK ? v : NULL;
    return rc;
}

/* ---- Encoding ----------------------------------------------------------- */

KCHAT_MUST_CHECK
static int pack_value(msgpack_packer *pk, const json_t *v);

KCHAT_MUST_CHECK
static int pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    if (msgpack_pack_str(pk, len) != 0)
        return -1;
    return msgpack_pack_str_body(pk, s, len);
}

KCHAT_MUST_CHECK
static int pack_array(msgpack_packer *pk, const json_t *v)
{
    size_t i;
    const json_t *item;
    if (msgpack_pack_array(pk, json_array_size(v)) != 0)
        return -1;
    json_array_foreach(v, i, item) {
        if (pack_value(pk, item) != 0)
            return -1;
    }
    return 0;
}

KCHAT_MUST_CHECK
static int pack_object(msgpack_packer *pk, const json_t *v)
{
    const char *key;
    size_t key_len;
    json_t *item;
    if (msgpack_pack_map(pk, json_object_size(v)) != 0)
        return -1;
    /* The iteration macro takes a non-const object; it does not modify it. */
    json_object_keylen_foreach((json_t *)v, key, key_len, item) {
        if (pack_str(pk, key, key_len) != 0 || pack_value(pk, item) != 0)
            return -1;
    }
    return 0;
}

/* Recursion is bounded: kchat_codec_encode() checked the depth first. */
KCHAT_MUST_CHECK
static int pack_value(msgpack_packer *pk, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return pack_object(pk, v);
    case JSON_ARRAY:
        return pack_array(pk, v);
    case JSON_STRING:
        return pack_str(pk, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return msgpack_pack_int64(pk, json_integer_value(v));
    case JSON_REAL:
        return msgpack_pack_double(pk, json_real_value(v));
    case JSON_TRUE:
        return msgpack_pack_true(pk);
    case JSON_FALSE:
        return msgpack_pack_false(pk);
    case JSON_NULL:
        return msgpack_pack_nil(pk);
    }
    return -1;
}

int kchat__msgpack_encode(const json_t *v, char **out, size_t *out_len)
{
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);

    /* The only failure left is the sbuffer's realloc(). */
    if (pack_value(&pk, v) != 0) {
        msgpack_sbuffer_destroy(&sbuf);
        return KCHAT_ENOMEM;
    }
    *out_len = sbuf.size;
    *out = msgpack_sbuffer_release(&sbuf);
    return KCHAT_OK;
}
