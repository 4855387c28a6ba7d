/*
 * The gateway's edge (docs/security.md, "The gateway's edge"), tested as an
 * attacker writes requests: raw bytes on a socket to 127.0.0.1, the answer
 * read back as bytes. The bugs issue 12 named have their own programs in
 * tests/regress (0037 to 0043); this covers the rest of the edge:
 * Transfer-Encoding framing, the Origin rules (own origin, no Origin,
 * --allow-origin, Sec-Fetch-Site, reads), a kept-alive connection idle past
 * the request deadline, and a body whose known fields are over their limits.
 *
 * One `kchat dev` serves every test. Every wait is bounded.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "support/raw.h"

#define ALLOWED "http://chat.example.test:8443"

static kc_proc *g_dev;
static char g_base[256];
static int g_port;

static int group_setup(void **state)
{
    const char *extra[] = {"--allow-origin", "https://other.example.test, " ALLOWED,
                           "--http-request-timeout", "2", "--http-idle-timeout", "6", NULL};

    (void)state;
    g_dev = kr_dev_start("edge", extra, g_base, sizeof(g_base), &g_port);
    return g_dev ? 0 : -1;
}

static int group_teardown(void **state)
{
    int rc = 0;

    (void)state;
    if (g_dev) {
        rc = kc_proc_stop(g_dev, SIGTERM, 15, NULL);
        kc_proc_free(g_dev);
    }
    return rc;
}

/* Send @p req on a fresh connection; the answer into @p out. */
static int exchange(const char *req, char *out, size_t size, bool *closed)
{
    kr_exchange(g_port, req, strlen(req), out, size, 3000, closed);
    return kr_status(out);
}

static void test_transfer_encoding(void **state)
{
    char out[8192];
    bool closed = false;
    int st;

    (void)state;
    /* Content-Length with Transfer-Encoding: 400, then close */
    assert_int_equal(exchange("POST /api/logout HTTP/1.1\r\nHost: x\r\n"
                              "Content-Type: application/json\r\nContent-Length: 2\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                              out, sizeof(out), &closed),
                     400);
    assert_true(closed);
    assert_int_equal(kr_answers(out), 1);
    /* a coding the gateway does not decode: 501, then close */
    assert_int_equal(exchange("POST /api/logout HTTP/1.1\r\nHost: x\r\n"
                              "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                              out, sizeof(out), &closed),
                     501);
    assert_true(closed);
    /* (libevent itself refuses a repeated Transfer-Encoding) */
    st = exchange("POST /api/logout HTTP/1.1\r\nHost: x\r\n"
                  "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                  out, sizeof(out), &closed);
    assert_true(st == 400 || st == 501);
    assert_int_equal(kr_answers(out), 1);
    assert_true(closed);
    /* chunked alone is framed: the answer is the route's (401, no cookie) */
    assert_int_equal(exchange("POST /api/logout HTTP/1.1\r\nHost: x\r\n"
                              "Content-Type: application/json\r\n"
                              "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                              "2\r\n{}\r\n0\r\n\r\n",
                              out, sizeof(out), NULL),
                     401);
}

/* POST /api/logout without a cookie, with @p headers: 403 when the Origin
 * check refuses it, 401 (no session) when it passes. */
static int logout_with(const char *headers)
{
    char req[1024], out[8192];

    snprintf(req, sizeof(req),
             "POST /api/logout HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%sContent-Length: 0\r\n"
             "Connection: close\r\n\r\n",
             g_port, headers);
    return exchange(req, out, sizeof(out), NULL);
}

static void test_origin_rules(void **state)
{
    char h[256], req[512], out[8192];

    (void)state;
    assert_int_equal(logout_with(""), 401);   /* curl, scripts: no Origin */
    snprintf(h, sizeof(h), "Origin: http://127.0.0.1:%d\r\nSec-Fetch-Site: same-origin\r\n",
             g_port);
    assert_int_equal(logout_with(h), 401);    /* the page itself */
    snprintf(h, sizeof(h), "Origin: https://127.0.0.1:%d\r\n", g_port);
    assert_int_equal(logout_with(h), 401);    /* behind a TLS proxy */
    assert_int_equal(logout_with("Origin: " ALLOWED "\r\nSec-Fetch-Site: cross-site\r\n"), 401);
    assert_int_equal(logout_with("Origin: https://other.example.test\r\n"), 401);
    assert_int_equal(logout_with("Origin: http://evil.example.test\r\n"), 403);
    assert_int_equal(logout_with("Origin: " ALLOWED ".evil\r\n"), 403);
    snprintf(h, sizeof(h), "Origin: http://127.0.0.1:%d.evil\r\n", g_port);
    assert_int_equal(logout_with(h), 403);
    assert_int_equal(logout_with("Sec-Fetch-Site: cross-site\r\n"), 403);
    /* a PUT too */
    snprintf(req, sizeof(req),
             "PUT /api/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: http://evil.example.test\r\n"
             "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
             g_port);
    assert_int_equal(exchange(req, out, sizeof(out), NULL), 403);
    assert_non_null(strstr(out, "\"FORBIDDEN\""));
    /* reads are not checked: the event stream and GETs answer as before */
    snprintf(req, sizeof(req),
             "GET /api/friends HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: http://evil.example.test\r\n"
             "Connection: close\r\n\r\n",
             g_port);
    assert_int_equal(exchange(req, out, sizeof(out), NULL), 401);
    snprintf(req, sizeof(req),
             "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: http://evil.example.test\r\n"
             "Connection: close\r\n\r\n",
             g_port);
    assert_int_equal(exchange(req, out, sizeof(out), NULL), 401);
}

/* A kept-alive connection may stay idle past the request deadline (2 s)
 * within the idle timeout (6 s): the deadline runs only while a request is
 * due. */
static void test_idle_keep_alive_not_cut(void **state)
{
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    char out[4096];
    bool closed = false;
    int fd = kr_connect(g_port);

    (void)state;
    assert_true(fd >= 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
        kr_read(fd, out, sizeof(out), 500, &closed);
        assert_int_equal(kr_status(out), 200);
        assert_false(closed);
        kc_sleep_ms(3500);   /* idle past the deadline */
    }
    /* pipelined: two requests at once, both answered */
    {
        char two[256];
        snprintf(two, sizeof(two), "%s%s", req, req);
        assert_int_equal(send(fd, two, strlen(two), MSG_NOSIGNAL), (ssize_t)strlen(two));
        kr_read(fd, out, sizeof(out), 800, &closed);
        if (kr_answers(out) != 2)
            fail_msg("two pipelined requests got (%s):\n%s", closed ? "closed" : "open", out);
    }
    close(fd);
}

/* A body within 64 KiB whose known field is far over its own limit is
 * refused 400 by the gateway (not 413: the client sent under 64 KiB). */
static void test_known_field_over_limit(void **state)
{
    char cookie[256], *req, out[8192];
    size_t size = 65000, n;
    kh_browser b;
    kc_user u;
    kh_resp *r = kr_signup_login(&b, &u, "edge1", g_base);

    (void)state;
    assert_int_equal(r->status, 200);
    kh_resp_free(r);
    kr_cookie_line(&b, cookie, sizeof(cookie));
    req = malloc(size + 1024);
    assert_non_null(req);
    n = (size_t)snprintf(req, 1024,
                         "PUT /api/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nCookie: %s\r\n"
                         "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                         "Connection: close\r\n\r\n{\"userStatus\":\"",
                         g_port, cookie, size);
    memset(req + n, 's', size - strlen("{\"userStatus\":\"") - 2);
    n += size - strlen("{\"userStatus\":\"") - 2;
    memcpy(req + n, "\"}", 3);
    kr_exchange(g_port, req, strlen(req), out, sizeof(out), 5000, NULL);
    free(req);
    if (kr_status(out) != 400)
        fail_msg("a 65,000-byte userStatus got:\n%s", out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transfer_encoding),
        cmocka_unit_test(test_origin_rules),
        cmocka_unit_test(test_idle_keep_alive_not_cut),
        cmocka_unit_test(test_known_field_over_limit),
    };
    return cmocka_run_group_tests_name("test_edge", tests, group_setup, group_teardown);
}
