/*
 * kchat_codec_decode() and kchat_codec_encode(): the JSON half (jansson)
 * and the checks both formats share. The msgpack half is in msgpack.c.
 */
#include <stdlib.h>
#include <string.h>

#include "codec_internal.h"
#include "kchat/error.h"

const char *kchat__string_problem(const char *s, size_t len)
{
    if (!kchat_utf8_valid(s, len))
        return KCHAT__WHY_UTF8;
    if (len > 0 && memchr(s, '\0', len))
        return KCHAT__WHY_NUL;
    return NULL;
}

/*
 * Why the codec would not accept v, a value found inside depth containers,
 * or NULL if it would: containers nested at most KCHAT_MAX_DEPTH deep,
 * strings and keys UTF-8 without NUL. Recursion stops at that depth, so a
 * cycle is reported as too deep rather than followed forever.
 */
static const char *value_problem(const json_t *v, int depth)
{
    const char *why = NULL;

    switch (json_typeof(v)) {
    case JSON_STRING:
        return kchat__string_problem(json_string_value(v), json_string_length(v));
    case JSON_ARRAY: {
        if (depth >= KCHAT_MAX_DEPTH)
            return KCHAT__WHY_DEPTH;
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item) {
            if ((why = value_problem(item, depth + 1)))
                return why;
        }
        return NULL;
    }
    case JSON_OBJECT: {
        if (depth >= KCHAT_MAX_DEPTH)
            return KCHAT__WHY_DEPTH;
        const char *key;
        size_t key_len;
        json_t *item;
        /* The iteration macro takes a non-const object; it does not modify it. */
        json_object_keylen_foreach((json_t *)v, key, key_len, item) {
            if ((why = kchat__string_problem(key, key_len)) || (why = value_problem(item, depth + 1)))
                return why;
        }
        return NULL;
    }
    default:
        return NULL;
    }
}

/* ---- JSON --------------------------------------------------------------- */

static const char *json_error_reason(const json_error_t *err)
{
    switch (json_error_code(err)) {
    case json_error_invalid_utf8:
        return KCHAT__WHY_UTF8;
    case json_error_null_character:
    case json_error_null_byte_in_key:
        return KCHAT__WHY_NUL;
    case json_error_duplicate_key:
        return KCHAT__WHY_DUPLICATE;
    case json_error_numeric_overflow:
        return KCHAT__WHY_RANGE;
    case json_error_stack_overflow:
        return KCHAT__WHY_DEPTH;
    case json_error_premature_end_of_input:
        return KCHAT__WHY_TRUNCATED;
    case json_error_end_of_input_expected:
        return KCHAT__WHY_TRAILING;
    default:
        return KCHAT__WHY_MALFORMED;
    }
}

KCHAT_MUST_CHECK
static int json_decode(const char *buf, size_t len, json_t **out, const char **why)
{
    json_error_t err;
    /* jansson rejects by itself: invalid UTF-8, \u0000, lone surrogates,
     * integers beyond json_int_t, trailing bytes; and duplicates with the flag. */
    json_t *v = json_loadb(buf, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
    if (!v) {
        if (json_error_code(&err) == json_error_out_of_memory)
            return KCHAT_ENOMEM;
        *why = json_error_reason(&err);
        return KCHAT_EDECODE;
    }
    /* jansson's own depth limit is 2048. */
    if ((*why = value_problem(v, 0))) {
        json_decref(v);
        return KCHAT_EDECODE;
    }
    *out = v;
    return KCHAT_OK;
}

/* A malloc()ed buffer that json_dump_callback() appends to. */
typedef struct grow_buf {
    char *data;
    size_t len;
    size_t cap;
} grow_buf;

static int grow_buf_append(const char *bytes, size_t n, void *arg)
{
    grow_buf *b = arg;
    if (n == 0)
        return 0;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (n > cap - b->len) {
            if (cap > SIZE_MAX / 2)
                return -1;
            cap *= 2;
        }
        char *data = realloc(b->data, cap);
        if (!data)
            return -1;
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    return 0;
}

KCHAT_MUST_CHECK
static int json_encode(const json_t *v, char **out, size_t *out_len)
{
    grow_buf b = {0};
    /* 17 significant digits make every double read back exactly. */
    size_t flags = JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17);
    /* The value was checked, so the only way to fail is running out of memory. */
    if (json_dump_callback(v, grow_buf_append, &b, flags) != 0) {
        free(b.data);
        return KCHAT_ENOMEM;
    }
    *out = b.data;
    *out_len = b.len;
    return KCHAT_OK;
}

/* ---- Public entry points ------------------------------------------------ */

int kchat__codec_decode(kchat_fmt f, const void *buf, size_t len, json_t **out,
                        const char **why)
{
    if (!out)
        return KCHAT_EINVAL;
    *out = NULL;
    if (!buf && len > 0)
        return KCHAT_EINVAL;
    if (f != KCHAT_FMT_JSON && f != KCHAT_FMT_MSGPACK)
        return KCHAT_EINVAL;
    if (len == 0) {
        *why = KCHAT__WHY_EMPTY;
        return KCHAT_EDECODE;
    }
    return f == KCHAT_FMT_JSON ? json_decode(buf, len, out, why)
                               : kchat__msgpack_decode(buf, len, out, why);
}

int kchat_codec_decode(kchat_fmt f, const void *buf, size_t len, json_t **out)
{
    const char *why;
    return kchat__codec_decode(f, buf, len, out, &why);
}

/* The member count of the msgpack map whose encoding begins at @p p, and
 * its header's length; 0 when @p p does not begin a map. */
static size_t mp_map_header(const unsigned char *p, size_t len, uint64_t *n)
{
    if (len >= 1 && p[0] >= 0x80 && p[0] <= 0x8f) {
        *n = p[0] & 0x0f;
        return 1;
    }
    if (len >= 3 && p[0] == 0xde) {
        *n = (uint64_t)p[1] << 8 | p[2];
        return 3;
    }
    if (len >= 5 && p[0] == 0xdf) {
        *n = (uint64_t)p[1] << 24 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 8 | p[4];
        return 5;
    }
    return 0;
}

/* The smallest msgpack map header for @p n members into @p p (5 bytes). */
static size_t mp_map_header_put(unsigned char *p, uint64_t n)
{
    if (n <= 15) {
        p[0] = (unsigned char)(0x80 | n);
        return 1;
    }
    if (n <= 0xffff) {
        p[0] = 0xde;
        p[1] = (unsigned char)(n >> 8);
        p[2] = (unsigned char)n;
        return 3;
    }
    p[0] = 0xdf;
    for (int i = 0; i < 4; i++)
        p[1 + i] = (unsigned char)(n >> (24 - 8 * i));
    return 5;
}

/* From @p enc (an object's encoding) and @p tail (a one-member object's),
 * the encoding of the first object with the member of the second added
 * after its last one, in @p *out (malloc()ed). Only the first and last
 * bytes of the JSON ones and the map headers of the msgpack ones are
 * looked at. KCHAT_EINVAL when either is not an object's encoding in @p f,
 * or @p enc already has 2^32 - 1 members; KCHAT_ENOMEM. */
KCHAT_MUST_CHECK
static int merge_member(kchat_fmt f, const char *enc, size_t len, const char *tail,
                        size_t tail_len, char **out, size_t *out_len)
{
    const unsigned char *e = (const unsigned char *)enc;
    size_t head, tail_head, size;
    uint64_t n = 0, one_n;
    char *buf;

    if (f == KCHAT_FMT_JSON) {
        /* "{...}" + {"key":value} -> "{...,"key":value}" */
        if (len < 2 || enc[0] != '{' || enc[len - 1] != '}' || tail_len < 2 ||
            tail[0] != '{' || tail[tail_len - 1] != '}')
            return KCHAT_EINVAL;
        head = len - 1 + (len > 2);   /* the members so far, and a comma */
        size = head + tail_len - 1;
        if ((buf = malloc(size)) == NULL)
            return KCHAT_ENOMEM;
        memcpy(buf, enc, len - 1);
        if (len > 2)
            buf[len - 1] = ',';
        memcpy(buf + head, tail + 1, tail_len - 1);
    } else {
        unsigned char hdr[5];
        size_t new_head;

        if ((head = mp_map_header(e, len, &n)) == 0 || n >= 0xffffffffu ||
            (tail_head = mp_map_header((const unsigned char *)tail, tail_len, &one_n)) == 0)
            return KCHAT_EINVAL;
        new_head = mp_map_header_put(hdr, n + 1);
        size = new_head + (len - head) + (tail_len - tail_head);
        if ((buf = malloc(size)) == NULL)
            return KCHAT_ENOMEM;
        memcpy(buf, hdr, new_head);
        memcpy(buf + new_head, enc + head, len - head);
        memcpy(buf + new_head + (len - head), tail + tail_head, tail_len - tail_head);
    }
    *out = buf;
    *out_len = size;
    return KCHAT_OK;
}

/* In @p *tail, the encoding in @p f of the object {@p key: @p v}.
 * Errors as kchat_codec_encode()'s. */
KCHAT_MUST_CHECK
static int encode_one_member(kchat_fmt f, const char *key, json_t *v, char **tail,
                             size_t *tail_len)
{
    json_t *one;
    int rc;

    if ((one = json_object()) == NULL) {
        json_decref(v);
        return KCHAT_ENOMEM;
    }
    if (v == NULL || json_object_set_new(one, key, v) != 0) {
        json_decref(one);
        return KCHAT_EINVAL;   /* a key or value jansson refused (not UTF-8) */
    }
    rc = kchat_codec_encode(f, one, tail, tail_len);
    json_decref(one);
    return rc;
}

/* Whether @p s (@p len bytes) is written as it is inside a JSON string:
 * printable ASCII but the quote and the backslash. */
static bool plain_text(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\')
            return false;
    }
    return true;
}

/* The msgpack str header of a string of @p len < 256 bytes into @p p, the
 * smallest (fixstr, else str 8), as msgpack-c writes it; its length. */
static size_t mp_short_str_header_put(unsigned char *p, size_t len)
{
    if (len < 32) {
        p[0] = (unsigned char)(0xa0 | len);
        return 1;
    }
    p[0] = 0xd9;
    p[1] = (unsigned char)len;
    return 2;
}

/* In @p tail (@p cap bytes), the encoding in @p f of {@p key: @p value}
 * written directly, byte for byte what kchat_codec_encode() gives, when
 * both strings need no escape (plain_text()) and it fits; its length, or 0
 * when it does not apply. An event's copies for each recipient are made so
 * without jansson (src/actors/reply.c). */
static size_t plain_member(kchat_fmt f, const char *key, const char *value, char *tail,
                           size_t cap)
{
    size_t kl = strlen(key), vl = strlen(value), n = 0;
    unsigned char *t = (unsigned char *)tail;

    if (kl > 255 || vl > 255 || cap < kl + vl + 16 || !plain_text(key, kl) ||
        !plain_text(value, vl))
        return 0;
    if (f == KCHAT_FMT_JSON) {
        t[n++] = '{';
        t[n++] = '"';
        memcpy(t + n, key, kl);
        n += kl;
        memcpy(t + n, "\":\"", 3);
        n += 3;
        memcpy(t + n, value, vl);
        n += vl;
        t[n++] = '"';
        t[n++] = '}';
        return n;
    }
    t[n++] = 0x81;   /* a map of one member */
    n += mp_short_str_header_put(t + n, kl);
    memcpy(t + n, key, kl);
    n += kl;
    n += mp_short_str_header_put(t + n, vl);
    memcpy(t + n, value, vl);
    return n + vl;
}

int kchat_codec_add_member(kchat_fmt f, const char *enc, size_t len, const char *key,
                           const char *value, char **out, size_t *out_len)
{
    char plain[544], *tail = NULL;
    size_t tail_len = 0;
    int rc;

    if (!out || !out_len || !enc || !key || !value)
        return KCHAT_EINVAL;
    *out = NULL;
    *out_len = 0;
    if (f != KCHAT_FMT_JSON && f != KCHAT_FMT_MSGPACK)
        return KCHAT_EINVAL;
    if ((tail_len = plain_member(f, key, value, plain, sizeof(plain))) > 0)
        return merge_member(f, enc, len, plain, tail_len, out, out_len);
    /* {key: value} alone, encoded and checked as any value */
    if ((rc = encode_one_member(f, key, json_string(value), &tail, &tail_len)) != KCHAT_OK)
        return rc;
    rc = merge_member(f, enc, len, tail, tail_len, out, out_len);
    free(tail);
    return rc;
}

int kchat_codec_add_json_member(kchat_fmt f, const char *enc, size_t len, const char *key,
                                const char *json, size_t json_len, char **out,
                                size_t *out_len)
{
    char *tail = NULL;
    size_t tail_len = 0;
    json_t *v;
    int rc;

    if (!out || !out_len || !enc || !key || (!json && json_len > 0))
        return KCHAT_EINVAL;
    *out = NULL;
    *out_len = 0;
    if (f == KCHAT_FMT_JSON) {
        /* {"key":null} encoded and checked as any value; its name, then
         * the text in place of its null, written straight after the
         * object's members: a history answer's messages are copied once */
        size_t kl, head, size;
        char *buf;

        if (len < 2 || enc[0] != '{' || enc[len - 1] != '}' || json_len == 0)
            return KCHAT_EINVAL;
        if ((rc = encode_one_member(f, key, json_null(), &tail, &tail_len)) != KCHAT_OK)
            return rc;
        kl = tail_len - 5;   /* up to and with the colon: {"key": */
        if (tail_len < 7 || memcmp(tail + kl, "null}", 5) != 0) {
            free(tail);
            return KCHAT_EINVAL;
        }
        head = len - 1 + (len > 2);   /* the members so far, and a comma */
        size = head + (kl - 1) + json_len + 1;
        if ((buf = malloc(size)) == NULL) {
            free(tail);
            return KCHAT_ENOMEM;
        }
        memcpy(buf, enc, len - 1);
        if (len > 2)
            buf[len - 1] = ',';
        memcpy(buf + head, tail + 1, kl - 1);
        memcpy(buf + head + kl - 1, json, json_len);
        buf[size - 1] = '}';
        free(tail);
        *out = buf;
        *out_len = size;
        return KCHAT_OK;
    }
    if (f != KCHAT_FMT_MSGPACK)
        return KCHAT_EINVAL;
    if ((rc = kchat_codec_decode(KCHAT_FMT_JSON, json, json_len, &v)) != KCHAT_OK)
        return rc;
    if ((rc = encode_one_member(f, key, v, &tail, &tail_len)) != KCHAT_OK)
        return rc;
    rc = merge_member(f, enc, len, tail, tail_len, out, out_len);
    free(tail);
    return rc;
}

int kchat_codec_encode(kchat_fmt f, const json_t *v, char **out, size_t *out_len)
{
    if (!out || !out_len)
        return KCHAT_EINVAL;
    *out = NULL;
    *out_len = 0;
    if (!v || (f != KCHAT_FMT_JSON && f != KCHAT_FMT_MSGPACK))
        return KCHAT_EINVAL;
    if (value_problem(v, 0))
        return KCHAT_EINVAL;
    return f == KCHAT_FMT_JSON ? json_encode(v, out, out_len)
                               : kchat__msgpack_encode(v, out, out_len);
}
