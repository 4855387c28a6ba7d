/*
 * Fuzz harness for the decoder of outbox pages and their gone masks
 * (src/store/store_outbox.c): a page or mask damaged on disk, or restored
 * from a changelog someone wrote into, must be refused with KCHAT_EDECODE,
 * never read past its end. What a scan accepts must be consistent: the
 * count is what the scan visits, in ascending seqs inside the page, and
 * deleting every record it visited leaves the table empty.
 *
 * Input: byte 0 is the length of the mask (0: none; more than 16 is taken
 * as 16), then the mask's bytes, then the page's value. The page is put
 * under seq 100, its mask beside it. Built with libFuzzer (`make fuzz`) or,
 * with gcc, linked to replay_main.c (`make check`). Seeds:
 * tests/fuzz/corpus/outbox/.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FIRST 100

static kchat_store *store;

static void fail(const char *what, int rc)
{
    fprintf(stderr, "fuzz_outbox: %s: %s\n", what, kchat_strerror(rc));
    abort();
}

static void setup(void)
{
    char dir[] = "/tmp/kchat-fuzz-outbox.XXXXXX", path[64];
    kchat_store_opts o = {.map_size = (size_t)64 << 20, .no_sync = true};
    int rc;

    if (mkdtemp(dir) == NULL)
        fail("mkdtemp", KCHAT_EIO);
    snprintf(path, sizeof(path), "%s/store", dir);
    if ((rc = kchat_store_open(path, &o, &store)) != KCHAT_OK)
        fail("open", rc);
}

struct visit {
    uint64_t seq[64];
    size_t n;
};

static int visit(void *arg, uint64_t seq, const kchat_outbox_rec *r)
{
    struct visit *v = arg;
    volatile unsigned char sink = 0;

    if (seq < FIRST || seq >= FIRST + 64 || (v->n > 0 && seq <= v->seq[v->n - 1]))
        fail("a seq outside the page or out of order", KCHAT_EINVAL);
    if (r->topic == NULL || r->topic[0] == '\0' || r->n_headers > KCHAT_STORE_MAX_HEADERS)
        fail("a record the decoder should have refused", KCHAT_EINVAL);
    /* touch every byte it points to (ASan sees a read past the value) */
    for (size_t i = 0; i < r->key_len; i++)
        sink ^= ((const unsigned char *)r->key)[i];
    for (size_t i = 0; i < r->value_len; i++)
        sink ^= ((const unsigned char *)r->value)[i];
    for (size_t h = 0; h < r->n_headers; h++)
        for (size_t i = 0; i < r->headers[h].len; i++)
            sink ^= ((const unsigned char *)r->headers[h].value)[i];
    (void)sink;
    v->seq[v->n++] = seq;
    return 0;
}

static int count_key(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    (void)k;
    (void)kl;
    (void)v;
    (void)vl;
    (*(size_t *)arg)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char key[9];
    struct visit v = {.n = 0};
    size_t ml, n = 0, keys = 0;
    kchat_txn *t;
    int rc;

    if (store == NULL)
        setup();
    if (size < 1)
        return 0;
    ml = data[0] > 16 ? 16 : data[0];
    if (size < 1 + ml)
        return 0;
    if ((rc = kchat_txn_begin(store, true, &t)) != KCHAT_OK)
        fail("begin", rc);
    kchat_store_be64(FIRST, key);
    key[8] = 'g';
    if ((rc = kchat_txn_put(t, KCHAT_TBL_OUTBOX, key, 8, data + 1 + ml, size - 1 - ml)) ||
        (ml > 0 && (rc = kchat_txn_put(t, KCHAT_TBL_OUTBOX, key, 9, data + 1, ml))))
        fail("put", rc);

    rc = kchat_store_outbox_scan(t, 0, visit, &v);
    if (rc != KCHAT_OK && rc != KCHAT_EDECODE)
        fail("scan", rc);
    if (rc == KCHAT_OK) {
        if ((rc = kchat_store_outbox_count(t, &n)) != KCHAT_OK || n != v.n)
            fail("count differs from the scan", rc);
        for (size_t i = 0; i < v.n; i++)
            if ((rc = kchat_store_outbox_del(t, v.seq[i])) != KCHAT_OK)
                fail("a visited record cannot be deleted", rc);
        if ((rc = kchat_txn_scan(t, KCHAT_TBL_OUTBOX, NULL, 0, false, count_key, &keys)) ||
            keys != 0)
            fail("records gone, but keys left", rc);
    } else {
        /* deleting from a damaged page is refused too, never read past it */
        for (uint64_t seq = FIRST; seq < FIRST + 64; seq++) {
            rc = kchat_store_outbox_del(t, seq);
            if (rc != KCHAT_OK && rc != KCHAT_ENOTFOUND && rc != KCHAT_EDECODE)
                fail("del", rc);
        }
    }
    kchat_txn_abort(t);
    return 0;
}
