/*
 * Regression 0039 (fixed by this branch's "gateway: Origin check" and
 * "gateway: CSP and X-Frame-Options headers" commits; issue 12, attack 6): a
 * page on another port of the same host (same site, so SameSite=Strict does
 * not stop the cookie) logged the user out with a no-cors POST: the gateway
 * checked no Origin. And nothing stopped another page from framing the chat
 * page (clickjacking): the CSP was a <meta> tag, which cannot say
 * frame-ancestors, and there was no X-Frame-Options. Raw requests with the
 * victim's cookie: before the fix the cross-origin logout got 200 and the
 * session was gone, and GET / had neither header.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "support/raw.h"

static kc_proc *g_dev;
static char g_base[256];
static int g_port;

static int setup(void **state)
{
    (void)state;
    g_dev = kr_dev_start("r0039", NULL, g_base, sizeof(g_base), &g_port);
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

/* A browser's no-cors POST /api/logout with @p cookie and @p extra headers. */
static int logout_from(const char *cookie, const char *extra, char *out, size_t size)
{
    char req[1024];

    snprintf(req, sizeof(req),
             "POST /api/logout HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nCookie: %s\r\n%s"
             "Content-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
             g_port, cookie, extra);
    kr_exchange(g_port, req, strlen(req), out, size, 5000, NULL);
    return kr_status(out);
}

static void test_cross_origin_logout_refused(void **state)
{
    char cookie[256], extra[256], out[8192];
    kh_browser b;
    kc_user u;
    kh_resp *r = kr_signup_login(&b, &u, "r39", g_base);

    (void)state;
    assert_int_equal(r->status, 200);
    kh_resp_free(r);
    kr_cookie_line(&b, cookie, sizeof(cookie));
    assert_true(cookie[0] != '\0');
    /* another port of the same host: same site, another origin */
    snprintf(extra, sizeof(extra), "Origin: http://127.0.0.1:%d\r\nSec-Fetch-Site: same-site\r\n",
             g_port + 1);
    if (logout_from(cookie, extra, out, sizeof(out)) != 403)
        fail_msg("a cross-origin logout was answered:\n%s", out);
    assert_non_null(strstr(out, "\"FORBIDDEN\""));
    /* a page that hides its origin */
    if (logout_from(cookie, "Origin: null\r\n", out, sizeof(out)) != 403)
        fail_msg("a logout with Origin: null was answered:\n%s", out);
    /* the session still works */
    r = kh_do(&b, "GET", "/api/friends", NULL);
    assert_int_equal(r->status, 200);
    kh_resp_free(r);
}

static void test_page_cannot_be_framed(void **state)
{
    const char *paths[] = {"/", "/app.js"};
    char req[256], out[65536], v[1024];

    (void)state;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                 paths[i]);
        kr_exchange(g_port, req, strlen(req), out, sizeof(out), 5000, NULL);
        assert_int_equal(kr_status(out), 200);
        if (!kr_header(out, "X-Frame-Options", v, sizeof(v)) || strcmp(v, "DENY"))
            fail_msg("GET %s: no X-Frame-Options: DENY", paths[i]);
        if (!kr_header(out, "Content-Security-Policy", v, sizeof(v)) ||
            !strstr(v, "frame-ancestors 'none'") || !strstr(v, "default-src 'self'"))
            fail_msg("GET %s: no CSP header with frame-ancestors 'none'", paths[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cross_origin_logout_refused),
        cmocka_unit_test(test_page_cannot_be_framed),
    };
    return cmocka_run_group_tests_name("0039 cross-origin logout and framing", tests, setup,
                                       teardown);
}
