/*
 * The codec's promises, checked on one fuzz input: shared by the codec
 * harnesses fuzz_json.c and fuzz_msgpack.c (and usable by any other).
 *
 * Every check that fails prints what broke and where, then abort()s, so
 * libFuzzer (or replay_main.c) keeps the input and reports it.
 */
#ifndef KCHAT_FUZZ_CODEC_CHECKS_H
#define KCHAT_FUZZ_CODEC_CHECKS_H

#include <stddef.h>
#include <stdint.h>

#include "kchat/codec.h"

/** The record key every request parse uses; the seed corpora act as this user. */
#define FUZZ_KEY "alice"

/** A broken promise: print it and abort(), so the input is kept. */
#define FUZZ_CHECK(cond)                                   \
    do {                                                   \
        if (!(cond))                                       \
            fuzz_check_failed(__FILE__, __LINE__, #cond);  \
    } while (0)

/**
 * @brief Print "fuzz: check failed at FILE:LINE: WHAT" to stderr and abort().
 * @note Never returns.
 */
_Noreturn void fuzz_check_failed(const char *file, int line, const char *what);

/**
 * @brief Run one input through every codec promise for format @p f.
 *
 * The input is read:
 *  - as one value (kchat_codec_decode()): it decodes or is rejected with
 *    #KCHAT_EDECODE, never anything else; a decoded value re-encodes in
 *    either format, decodes back equal (json_equal()), and re-encodes to
 *    the very same bytes (the encoders are deterministic);
 *  - as the request body of every operation (kchat_request_parse() with the
 *    key #FUZZ_KEY): a success holds only NUL-terminated, in-limit, valid
 *    fields (ids valid, friend ids distinct, limit 1..100, ...) and an empty
 *    message; a rejection is BAD_REQUEST, TOO_LARGE or INTERNAL with a
 *    message, and always leaves the message buffer NUL-terminated;
 *  - padded with spaces to one byte over #KCHAT_MAX_VALUE: TOO_LARGE with a
 *    message, whatever the input holds (the size is checked first);
 *  - once more as a body without a message buffer (allowed), with the input
 *    itself as the record key;
 *  - as a `content-type` header value (kchat_fmt_from_content_type()).
 *
 * @param[in] f the format the input is read in.
 * @param[in] data the input; never read past @p size.
 * @param[in] size its length.
 * @return the decoded value (a new reference the caller releases with
 *         json_decref()), or NULL when the input is not one value in @p f.
 */
json_t *fuzz_codec_input(kchat_fmt f, const uint8_t *data, size_t size);

#endif /* KCHAT_FUZZ_CODEC_CHECKS_H */
