/*
 * Regression 0042 (fixed by this branch's Origin-check commit, which also
 * gave the cookie its Max-Age; issue 12, item 9): the session cookie had no
 * Max-Age, so a browser kept it for the whole browser session whatever the
 * backend's session idle time. It now carries Max-Age = --session-idle (the
 * gateway reads the same option as the backend; default 7 days), and logout
 * clears it with Max-Age=0. Before the fix the login's Set-Cookie had no
 * Max-Age.
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

static void test_cookie_max_age(void **state)
{
    const char *extra[] = {"--session-idle", "4321", NULL};
    char base[256];
    int port = 0;
    kh_browser b;
    kc_user u;
    const char *sc;
    kh_resp *r;
    kc_proc *p = kr_dev_start("r0042", extra, base, sizeof(base), &port);

    (void)state;
    assert_non_null(p);
    r = kr_signup_login(&b, &u, "r42", base);
    assert_int_equal(r->status, 200);
    sc = kh_set_cookie(r, "kchat_session");
    assert_non_null(sc);
    if (!kh_cookie_has_attr(sc, "Max-Age", "4321"))
        fail_msg("the session cookie has no Max-Age=4321: %s", sc);
    kh_resp_free(r);
    r = kh_do(&b, "POST", "/api/logout", NULL);
    assert_int_equal(r->status, 200);
    sc = kh_set_cookie(r, "kchat_session");
    assert_non_null(sc);
    assert_true(kh_cookie_has_attr(sc, "Max-Age", "0"));
    kh_resp_free(r);
    assert_int_equal(kc_proc_stop(p, SIGTERM, 15, NULL), 0);
    kc_proc_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie_max_age),
    };
    return cmocka_run_group_tests_name("0042 session cookie without Max-Age", tests, NULL, NULL);
}
