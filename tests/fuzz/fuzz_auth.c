/*
 * Fuzz harness for the openers of sealed records (include/kchat/auth.h):
 * kchat_auth_open() on a sealed value and kchat_auth_open_session() on a
 * `kchat-session` text, both read from records anyone with write access to
 * a topic can write. Whatever the input, neither may read out of bounds or
 * open what was not sealed with the key; and what the harness seals itself
 * from the input must open to the same bytes, and only for the record it
 * was sealed for.
 *
 * The input's first byte picks what the rest is: 0 a sealed value, 1 a
 * session text, 2 a plaintext to seal and open, 3 a session id to seal and
 * open. Built with libFuzzer (`make fuzz`) or, with gcc, linked to
 * replay_main.c (`make check`). Seeds: tests/fuzz/corpus/auth/.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kchat/auth.h"

#define TOPIC "user-search-room-request"
#define KEY "alice"
#define CID "g1-2-0123456789abcdef"
#define NOW_MS 1796380000000LL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_auth: %s\n", what);
    abort();
}

/* One key for the whole run, from a secret file written once. */
static kchat_auth *keys(void)
{
    static kchat_auth *a;
    char path[] = "/tmp/kchat-fuzz-auth-XXXXXX", err[256];

    if (a != NULL)
        return a;
    int fd = mkstemp(path);
    if (fd < 0 || close(fd) != 0 || unlink(path) != 0 ||
        kchat_auth_keygen(path, err, sizeof(err)) != KCHAT_OK ||
        kchat_auth_load(path, &a, err, sizeof(err)) != KCHAT_OK)
        fail("cannot make a secret");
    unlink(path);
    return a;
}

static void open_value(kchat_auth *a, const uint8_t *d, size_t n)
{
    unsigned char *out = NULL;
    size_t len = 0;

    if (kchat_auth_open(a, KCHAT_SEAL_REQUEST, TOPIC, KEY, 5, CID, strlen(CID), d, n, &out,
                        &len) == KCHAT_OK)
        fail("a value never sealed opened");
    if (out != NULL)
        fail("a refused open left a buffer");
}

static void open_session(kchat_auth *a, const uint8_t *d, size_t n)
{
    static const char plain[] = "{\"userId\":\"alice\"}";
    unsigned char *sealed;
    size_t sl;
    char sid[129];

    if (kchat_auth_seal(a, KCHAT_SEAL_REQUEST, TOPIC, KEY, 5, CID, strlen(CID), plain,
                        strlen(plain), &sealed, &sl) != KCHAT_OK)
        fail("cannot seal");
    if (kchat_auth_open_session(a, TOPIC, KEY, 5, sealed, sl, d, n, NOW_MS, sid) == KCHAT_OK)
        fail("a session text never sealed opened");
    free(sealed);
}

static void round_trip(kchat_auth *a, const uint8_t *d, size_t n)
{
    unsigned char *sealed, *out;
    size_t sl, len;

    if (kchat_auth_seal(a, KCHAT_SEAL_RESPONSE, TOPIC, KEY, 5, CID, strlen(CID), d, n, &sealed,
                        &sl) != KCHAT_OK || sl != n + KCHAT_SEAL_OVERHEAD)
        fail("cannot seal");
    if (kchat_auth_open(a, KCHAT_SEAL_RESPONSE, TOPIC, KEY, 5, CID, strlen(CID), sealed, sl,
                        &out, &len) != KCHAT_OK || len != n || memcmp(out, d, n) != 0 ||
        out[len] != '\0')
        fail("a sealed value did not open to itself");
    free(out);
    if (kchat_auth_open(a, KCHAT_SEAL_REQUEST, TOPIC, KEY, 5, CID, strlen(CID), sealed, sl, &out,
                        &len) == KCHAT_OK ||
        kchat_auth_open(a, KCHAT_SEAL_RESPONSE, TOPIC, KEY, 5, "x", 1, sealed, sl, &out,
                        &len) == KCHAT_OK)
        fail("a sealed value opened for another use or record");
    if (sl > 1) {
        sealed[sl - 1] ^= 1;
        if (kchat_auth_open(a, KCHAT_SEAL_RESPONSE, TOPIC, KEY, 5, CID, strlen(CID), sealed, sl,
                            &out, &len) == KCHAT_OK)
            fail("a damaged seal opened");
    }
    free(sealed);
}

static void session_trip(kchat_auth *a, const uint8_t *d, size_t n)
{
    char sid[129], got[129], text[KCHAT_SEALED_SESSION_MAX];
    unsigned char *sealed = NULL, *other = NULL;
    size_t sl = 0, ol = 0;
    const char plain[] = "{}";

    if (n > 128)
        n = 128;
    for (size_t i = 0; i < n; i++)
        sid[i] = (char)('a' + d[i] % 26);
    sid[n] = '\0';
    if (kchat_auth_seal(a, KCHAT_SEAL_REQUEST, TOPIC, KEY, 5, CID, strlen(CID), plain, 2,
                        &sealed, &sl) != KCHAT_OK ||
        kchat_auth_seal(a, KCHAT_SEAL_REQUEST, TOPIC, KEY, 5, CID, strlen(CID), plain, 2,
                        &other, &ol) != KCHAT_OK)
        fail("cannot seal");
    if (kchat_auth_seal_session(a, TOPIC, KEY, 5, sealed, sl, sid, NOW_MS, text) != KCHAT_OK)
        fail("cannot seal a session");
    if (kchat_auth_open_session(a, TOPIC, KEY, 5, sealed, sl, text, strlen(text), NOW_MS + 1000,
                                got) != KCHAT_OK || strcmp(got, sid) != 0)
        fail("a sealed session did not open to itself");
    if (kchat_auth_open_session(a, TOPIC, KEY, 5, other, ol, text, strlen(text), NOW_MS, got) ==
            KCHAT_OK ||
        kchat_auth_open_session(a, TOPIC, "bob", 3, sealed, sl, text, strlen(text), NOW_MS,
                                got) == KCHAT_OK)
        fail("a session proof opened for another request");
    if (kchat_auth_open_session(a, TOPIC, KEY, 5, sealed, sl, text, strlen(text),
                                NOW_MS + KCHAT_SEALED_SESSION_MAX_AGE_MS + 1, got) == KCHAT_OK)
        fail("a stale session proof opened");
    free(sealed);
    free(other);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kchat_auth *a = keys();

    if (size < 1)
        return 0;
    switch (data[0] % 4) {
    case 0: open_value(a, data + 1, size - 1); break;
    case 1: open_session(a, data + 1, size - 1); break;
    case 2: round_trip(a, data + 1, size - 1); break;
    default: session_trip(a, data + 1, size - 1); break;
    }
    return 0;
}
