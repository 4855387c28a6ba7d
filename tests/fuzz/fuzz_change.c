/*
 * Fuzz harness for the decoder of kept changelog records
 * (kchat_store_change_decode(), src/store/store_changelog.c): a record
 * damaged on disk must be refused, never read past its end. What it
 * accepts must point inside the input, name a table a change may touch
 * and, once applied to a store and read back, hold the value it carried.
 *
 * The input's first 8 bytes are the seq (as the table key), the rest the
 * stored value. Built with libFuzzer (`make fuzz`) or, with gcc, linked to
 * replay_main.c (`make check`). Seeds: tests/fuzz/corpus/change/.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_change: %s\n", what);
    abort();
}

static bool inside(const void *p, size_t n, const uint8_t *base, size_t size)
{
    const uint8_t *q = p;
    return q >= base && n <= size && q - base <= (ptrdiff_t)(size - n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kchat_change ch;
    unsigned char key[KCHAT_CHANGE_KEY_MAX];
    uint64_t seq;

    if (size < 8)
        return 0;
    seq = kchat_store_rd_be64(data);
    if (kchat_store_change_decode(data + 8, size - 8, seq, &ch) != KCHAT_OK)
        return 0;
    if (ch.seq != seq || ch.last < seq)
        fail("seq or last out of order");
    if (ch.table >= KCHAT_TBL__COUNT || ch.table == KCHAT_TBL_CHANGELOG)
        fail("a table a change may not touch");
    if (ch.key_len == 0 || ch.key_len > KCHAT_STORE_KEY_MAX ||
        !inside(ch.key, ch.key_len, data + 8, size - 8))
        fail("key outside the record");
    if (ch.deleted ? ch.value != NULL || ch.value_len != 0
                   : !inside(ch.value, ch.value_len, data + 8, size - 8))
        fail("value outside the record");
    if (kchat_store_change_key(&ch, key) != 1 + ch.key_len || key[0] != ch.table ||
        memcmp(key + 1, ch.key, ch.key_len) != 0)
        fail("changelog key is not table + key");
    return 0;
}
