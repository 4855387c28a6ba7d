/*
 * Private to src/codec: the pieces codec.c, msgpack.c and request.c share.
 */
#ifndef KCHAT_CODEC_INTERNAL_H
#define KCHAT_CODEC_INTERNAL_H

#include "kchat/codec.h"

/*
 * Why a body did not decode: static phrases that complete the sentence
 * "The request body is not valid JSON: ...". They describe the fault and
 * never quote the input, which may hold a password.
 */
#define KCHAT__WHY_EMPTY      "it is empty"
#define KCHAT__WHY_MALFORMED  "it is malformed"
#define KCHAT__WHY_TRUNCATED  "it ends in the middle of a value"
#define KCHAT__WHY_TRAILING   "it has bytes after the value"
#define KCHAT__WHY_UTF8       "a string is not valid UTF-8"
#define KCHAT__WHY_NUL        "a string holds a NUL character"
#define KCHAT__WHY_DEPTH      "it is nested deeper than 32 levels"
#define KCHAT__WHY_DUPLICATE  "an object has the same key twice"
#define KCHAT__WHY_RANGE      "a number is out of range"
#define KCHAT__WHY_BINARY     "it holds msgpack bin or ext data"
#define KCHAT__WHY_KEY        "a map key is not a string"

/*
 * kchat_codec_decode(), and on KCHAT_EDECODE *why is set to one of the
 * KCHAT__WHY_* phrases (untouched otherwise). why must not be NULL.
 */
KCHAT_MUST_CHECK
int kchat__codec_decode(kchat_fmt f, const void *buf, size_t len, json_t **out,
                        const char **why);

/*
 * Whether a string is one the codec accepts in a value: strict UTF-8
 * without U+0000. Returns NULL when it is, else a KCHAT__WHY_* phrase.
 */
const char *kchat__string_problem(const char *s, size_t len);

/*
 * The msgpack halves of kchat_codec_decode() and kchat_codec_encode(), with
 * the same contracts. kchat__msgpack_encode() expects a value that
 * kchat_codec_encode() has already checked (depth and strings).
 */
KCHAT_MUST_CHECK
int kchat__msgpack_decode(const void *buf, size_t len, json_t **out, const char **why);
KCHAT_MUST_CHECK
int kchat__msgpack_encode(const json_t *v, char **out, size_t *out_len);

#endif /* KCHAT_CODEC_INTERNAL_H */
