/*
 * Regression 0037 (fixed by this branch's "gateway: framing" commit; issue 12,
 * attack 4): a request with two different Content-Length headers was
 * accepted (the first won) and the bytes after that length were answered as
 * a second request: request smuggling behind any proxy that uses the other
 * length. `Content-Length: +22` was accepted too. RFC 9112 section 6.3 says
 * 400, and the connection must close so that nothing after it is read as a
 * request. Raw bytes on a socket; before the fix the first case got two
 * answers (200, then the smuggled 200) and the signed length a 200.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "support/raw.h"

static kc_proc *g_dev;
static char g_base[256];
static int g_port;

static int setup(void **state)
{
    (void)state;
    g_dev = kr_dev_start("r0037", NULL, g_base, sizeof(g_base), &g_port);
    return g_dev ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (g_dev) {
        kc_proc_stop(g_dev, SIGTERM, 15, NULL);
        kc_proc_free(g_dev);
    }
    return 0;
}

/* @p req must get exactly one answer, a 400, and then the connection closes. */
static void expect_400_closed(const char *req)
{
    char out[8192];
    bool closed = false;

    kr_exchange(g_port, req, strlen(req), out, sizeof(out), 3000, &closed);
    if (kr_answers(out) != 1 || kr_status(out) != 400 || !closed)
        fail_msg("expected one 400 and a close for\n%s\ngot (%s):\n%s", req,
                 closed ? "closed" : "still open", out);
}

static void test_differing_lengths(void **state)
{
    (void)state;
    /* the smuggled request is the second length's body */
    expect_400_closed("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                      "Content-Length: 34\r\n\r\n"
                      "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_400_closed("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 34\r\n"
                      "Content-Length: 0\r\n\r\n"
                      "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
}

static void test_malformed_lengths(void **state)
{
    (void)state;
    expect_400_closed("POST /api/logout HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Content-Length: +2\r\n\r\n{}");
    expect_400_closed("POST /api/logout HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Content-Length: 2\r\nContent-Length: 2x\r\n\r\n{}");
    expect_400_closed("POST /api/logout HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n");
    expect_400_closed("POST /api/logout HTTP/1.1\r\nHost: x\r\nContent-Length: 0x2\r\n\r\n{}");
}

static void test_same_length_twice_is_one(void **state)
{
    char out[8192];
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                      "Content-Length: 0\r\nConnection: close\r\n\r\n";

    (void)state;
    kr_exchange(g_port, req, strlen(req), out, sizeof(out), 3000, NULL);
    assert_int_equal(kr_status(out), 200);
    assert_int_equal(kr_answers(out), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_differing_lengths),
        cmocka_unit_test(test_malformed_lengths),
        cmocka_unit_test(test_same_length_twice_is_one),
    };
    return cmocka_run_group_tests_name("0037 two Content-Length headers smuggled a request",
                                       tests, setup, teardown);
}
