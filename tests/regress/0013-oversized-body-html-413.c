/*
 * Regression 0013 (fixed by 656ee38): PROTOCOL.md §8 answers a body over
 * 64 KiB with 413 and the JSON error body {errorCode: TOO_LARGE, ...}. The
 * gateway let evhttp read bodies only up to 128 KiB, and evhttp refuses a
 * larger one itself, with a 413 whose body is libevent's HTML page: a body
 * of 128 KiB to 1 MiB got no JSON. The gateway now reads up to 1 MiB.
 *
 * `kchat dev`; POST /api/users with JSON bodies of 200,000 and 1,000,000
 * bytes: 413, application/json, errorCode TOO_LARGE, a message, isSuccess
 * false. (Past 1 MiB libevent's own 413 remains: docs/gateway.md.)
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "support/http.h"
#include "support/kclient.h"

static kc_proc *g_dev;

static int teardown(void **state)
{
    (void)state;
    kc_proc_free(g_dev);
    g_dev = NULL;
    return 0;
}

/* POST /api/users with a JSON body of exactly @p size bytes. */
static void post_expect_json_413(kh_browser *b, size_t size)
{
    static const char head[] = "{\"userId\":\"big-user\",\"pad\":\"", tail[] = "\"}";
    char *body = malloc(size);
    const char *ctype, *code, *msg;
    kh_resp *r;

    assert_non_null(body);
    assert_true(size > sizeof(head) + sizeof(tail));
    memset(body, 'p', size);
    memcpy(body, head, sizeof(head) - 1);
    memcpy(body + size - (sizeof(tail) - 1), tail, sizeof(tail) - 1);
    r = kh_request(b, &(kh_req){.method = "POST", .path = "/api/users", .raw = body,
                                .raw_len = size});
    free(body);
    ctype = kh_header_get(r, "Content-Type", 0);
    code = kc_str(r->json, "errorCode");
    msg = kc_str(r->json, "errorMessage");
    if (r->status != 413 || ctype == NULL || strncmp(ctype, "application/json", 16) != 0 ||
        code == NULL || strcmp(code, "TOO_LARGE") != 0 || msg == NULL || msg[0] == '\0' ||
        json_is_true(json_object_get(r->json, "isSuccess"))) {
        kh_resp_dump(r, "not the JSON 413");
        fail_msg("a body of %zu bytes: status %ld, not the JSON 413 TOO_LARGE", size,
                 r->status);
    }
    kh_resp_free(r);
}

static void test_oversized_body_gets_json_413(void **state)
{
    char *data = kc_tmppath("big-data"), *urlfile = kc_tmppath("big.url"), *url;
    const char *args[] = {"dev", "--http", "127.0.0.1:0", "--data", data, "--url-file", urlfile,
                          "--pwhash-ops", "1", "--pwhash-mem", "8192", NULL};
    kh_browser b;

    (void)state;
    g_dev = kc_proc_start("big", args, urlfile, 60);
    assert_non_null(g_dev);
    url = kc_read_file(urlfile, NULL);
    assert_non_null(url);
    url[strcspn(url, "\n")] = '\0';
    kh_browser_init(&b, "big", url);
    post_expect_json_413(&b, 200000);
    post_expect_json_413(&b, 1000000);
    assert_int_equal(kc_proc_stop(g_dev, SIGTERM, 15, NULL), 0);
    free(url);
    free(data);
    free(urlfile);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_oversized_body_gets_json_413, teardown),
    };
    return cmocka_run_group_tests_name("0013 oversized body gets the HTML 413", tests, NULL,
                                       NULL);
}
