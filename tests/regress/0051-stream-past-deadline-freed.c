/*
 * Regression 0051 (fixed by the commit "gateway: a stream open past the
 * request deadline keeps its connection record"): the gateway's request
 * deadline (src/gateway/deadline.c) took a connection whose read callback
 * was gone as closed and freed its record. evhttp clears that callback
 * while it writes a response, and an event stream writes for as long as it
 * is open, so every stream open longer than --http-request-timeout lost its
 * record at the next tick; when the stream then ended (a logout, the
 * gateway's stop) the request's completion wrote to the freed record. The
 * browser test hit it once its steps outlasted the 10 s default: `kchat
 * dev` died with SIGSEGV at SIGTERM; under ASan, a heap-use-after-free in
 * request_done_cb at the logout.
 *
 * Here `kchat dev --http-request-timeout 1`: a user's event stream stays
 * open 3 s (three deadline ticks), the user logs out (which ends the
 * stream), then /healthz answers on a new connection and SIGTERM stops the
 * process with exit 0. Seen failing on the code before the fix under ASan
 * (`make SANITIZE=address,undefined`): the process died at the logout.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "support/raw.h"

static void test_stream_outlives_deadline(void **state)
{
    const char *extra[] = {"--http-request-timeout", "1", NULL};
    char base[256];
    int port = 0, status = 0;
    kh_browser a, h;
    kc_user ua;
    kh_resp *r;
    kh_sse *s;
    kc_proc *p = kr_dev_start("r0051", extra, base, sizeof(base), &port);

    (void)state;
    assert_non_null(p);
    r = kr_signup_login(&a, &ua, "r51", base);
    assert_int_equal(r->status, 200);
    kh_resp_free(r);
    s = kh_sse_open(&a, "/api/events", NULL, 5000);
    assert_int_equal(kh_sse_status(s), 200);
    kc_sleep_ms(3000);   /* three ticks of the deadline with the stream open */
    r = kh_do(&a, "POST", "/api/logout", NULL);
    assert_int_equal(r->status, 200);
    kh_resp_free(r);
    kh_sse_close(s);
    kh_browser_init(&h, "health", base);
    r = kh_do(&h, "GET", "/healthz", NULL);
    assert_int_equal(r->status, 200);
    kh_resp_free(r);
    assert_int_equal(kc_proc_stop(p, SIGTERM, 15, &status), 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("kchat dev ended with %s after SIGTERM, want exit 0", kc_status_str(status));
    kc_proc_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_outlives_deadline),
    };
    return cmocka_run_group_tests_name("0051 stream past the deadline freed", tests, NULL, NULL);
}
