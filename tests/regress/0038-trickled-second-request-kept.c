/*
 * Regression 0038 (fixed by this branch's "gateway: a deadline for every
 * request" commit; issue 12, attack 5): the request deadline
 * (--http-request-timeout) covered only the first request of a connection,
 * so a client that sent one good request and then trickled the second one a
 * byte at a time, each byte within the idle timeout, held its connection for
 * ever; enough of them held every descriptor and /healthz stopped answering.
 * Here 8 such clients each send one request, read its answer, then trickle
 * the next one a byte every 300 ms: each must be cut within the deadline (2
 * s) plus slack, /healthz must answer meanwhile, and the deadline counter
 * must count all 8. Before the fix they all kept their connections for the
 * whole 8 s of trickling.
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

#include "support/http.h"
#include "support/raw.h"

#define N_CLIENTS 8

static void test_trickled_second_request_is_cut(void **state)
{
    const char *extra[] = {"--http-request-timeout", "2", "--http-idle-timeout", "5", NULL};
    const char *first = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    const char *second = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ";
    char base[256], buf[4096];
    int port = 0, fd[N_CLIENTS], healthz_ok = 0, healthz_tries = 0;
    int64_t t0, cut_ms[N_CLIENTS];
    double deadlines = -1;
    kh_browser b;
    kc_proc *p;

    (void)state;
    p = kr_dev_start("r0038", extra, base, sizeof(base), &port);
    assert_non_null(p);
    kh_browser_init(&b, "health", base);
    for (int i = 0; i < N_CLIENTS; i++) {
        fd[i] = kr_connect(port);
        assert_true(fd[i] >= 0);
        assert_int_equal(send(fd[i], first, strlen(first), MSG_NOSIGNAL), (ssize_t)strlen(first));
        kr_read(fd[i], buf, sizeof(buf), 300, NULL);
        assert_int_equal(kr_status(buf), 200);
        cut_ms[i] = -1;
    }
    /* trickle: one byte every 300 ms to each, for 8 s at most */
    t0 = kc_now_ms();
    for (int k = 0; kc_now_ms() - t0 < 8000; k++) {
        int open = 0;
        for (int i = 0; i < N_CLIENTS; i++) {
            char c = k < (int)strlen(second) ? second[k] : 'x';
            ssize_t n;
            if (cut_ms[i] >= 0)
                continue;
            n = send(fd[i], &c, 1, MSG_NOSIGNAL);
            if (n == 1)
                n = recv(fd[i], buf, sizeof(buf), MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN))
                cut_ms[i] = kc_now_ms() - t0;
            else
                open++;
        }
        if (k % 3 == 1) {
            kh_resp *r = kh_do(&b, "GET", "/healthz", NULL);
            healthz_tries++;
            healthz_ok += r->status == 200;
            kh_resp_free(r);
        }
        if (open == 0)
            break;
        kc_sleep_ms(300);
    }
    for (int i = 0; i < N_CLIENTS; i++) {
        close(fd[i]);
        if (cut_ms[i] < 0)
            fail_msg("client %d trickled its second request for 8 s (deadline 2 s)", i);
        assert_true(cut_ms[i] >= 1000 && cut_ms[i] <= 5000);
    }
    assert_true(healthz_tries > 0);
    assert_int_equal(healthz_ok, healthz_tries);
    assert_true(kh_metric(base, "kchat_gateway_request_deadline_total", &deadlines));
    assert_true(deadlines >= N_CLIENTS);
    assert_int_equal(kc_proc_stop(p, SIGTERM, 15, NULL), 0);
    kc_proc_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trickled_second_request_is_cut),
    };
    return cmocka_run_group_tests_name("0038 trickled second request kept its connection", tests,
                                       NULL, NULL);
}
