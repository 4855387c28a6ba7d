/*
 * Regression 0041 (fixed by this branch's "gateway: bodies up to 64 KiB as
 * sent" commit; issue 12, item 9): a 65,535-byte body was refused 413 as
 * over 64 KiB because the gateway adds the caller's userId before it checks
 * the size of the record it writes. The limit is on what the client sent:
 * a body of exactly 65,536 bytes (PUT /api/status padded with an unknown
 * field, which PROTOCOL.md says is ignored) must succeed, one of 65,537 bytes
 * must get 413 TOO_LARGE. Raw requests; before the fix the 65,536- and
 * 65,535-byte bodies got 413.
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

/* PUT /api/status with a body of exactly @p size bytes; its status. */
static int put_status(int port, const char *cookie, size_t size, char *out, size_t out_size)
{
    const char *head = "{\"userStatus\":\"padded\",\"pad\":\"";
    size_t hlen = strlen(head), req_len;
    char *body = malloc(size + 1), *req = malloc(size + 1024);
    int n;

    assert_non_null(body);
    assert_non_null(req);
    assert_true(size > hlen + 2);
    memcpy(body, head, hlen);
    memset(body + hlen, 'p', size - hlen - 2);
    memcpy(body + size - 2, "\"}", 2);
    body[size] = '\0';
    n = snprintf(req, 1024,
                 "PUT /api/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nCookie: %s\r\n"
                 "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n",
                 port, cookie, size);
    memcpy(req + n, body, size);
    req_len = (size_t)n + size;
    kr_exchange(port, req, req_len, out, out_size, 10000, NULL);
    free(body);
    free(req);
    return kr_status(out);
}

static void test_64k_body_as_sent(void **state)
{
    char base[256], cookie[256], out[8192];
    int port = 0, st;
    kh_browser b;
    kc_user u;
    kh_resp *r;
    kc_proc *p = kr_dev_start("r0041", NULL, base, sizeof(base), &port);

    (void)state;
    assert_non_null(p);
    r = kr_signup_login(&b, &u, "r41", base);
    assert_int_equal(r->status, 200);
    kh_resp_free(r);
    kr_cookie_line(&b, cookie, sizeof(cookie));
    if ((st = put_status(port, cookie, 65535, out, sizeof(out))) != 200)
        fail_msg("a 65,535-byte body got %d:\n%s", st, out);
    if ((st = put_status(port, cookie, 65536, out, sizeof(out))) != 200)
        fail_msg("a 65,536-byte body got %d:\n%s", st, out);
    if ((st = put_status(port, cookie, 65537, out, sizeof(out))) != 413)
        fail_msg("a 65,537-byte body got %d:\n%s", st, out);
    assert_non_null(strstr(out, "\"TOO_LARGE\""));
    /* the status set by the 64 KiB body is the user's */
    r = kh_do(&b, "POST", "/api/login", json_pack("{ss ss}", "userId", u.id, "userPw", u.pw));
    assert_int_equal(r->status, 200);
    assert_non_null(strstr(r->body, "\"padded\""));
    kh_resp_free(r);
    assert_int_equal(kc_proc_stop(p, SIGTERM, 15, NULL), 0);
    kc_proc_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_64k_body_as_sent),
    };
    return cmocka_run_group_tests_name("0041 a 64 KiB body was refused as too large", tests, NULL,
                                       NULL);
}
