/*
 * Fuzz harness for JSON request bodies: every input is read as one JSON
 * value and as the JSON body of every operation, with the promises of
 * codec_checks.h (round trips into both formats, stable re-encoding, fields
 * of a parsed request within their limits, rejections with a message).
 *
 * Built with libFuzzer (clang -fsanitize=fuzzer -DKCHAT_LIBFUZZER, `make
 * fuzz`) or, with gcc, linked to replay_main.c (`make check`). Seeds:
 * tests/fuzz/corpus/json/.
 */
#include <stdint.h>

#include "fuzz/codec_checks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_decref(fuzz_codec_input(KCHAT_FMT_JSON, data, size));
    return 0;
}
