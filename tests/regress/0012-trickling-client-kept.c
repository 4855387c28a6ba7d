/*
 * Regression 0012 (fixed by faf44c1): evhttp's timeout restarts with every
 * byte, so a client trickling one header byte a second kept its connection
 * for ever. Each connection must now deliver its first request within
 * --http-request-timeout (faf44c1's message: before it, the trickler kept
 * its connection for the whole 9 s of the test).
 * (Moved from tests/integration/test_gateway_limits.c,
 * test_trickling_client_is_dropped.)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>

#include "support/http.h"
#include "support/kclient.h"

/* A client that trickles its request a byte at a time, each byte well within
 * the idle timeout, is cut off by the request deadline. */
static void test_trickling_client_is_dropped(void **state)
{
    char *data = kc_tmppath("trickle-data"), *urlfile = kc_tmppath("trickle.url"), *url;
    const char *args[] = {"dev", "--http", "127.0.0.1:0", "--data", data, "--url-file", urlfile,
                          "--pwhash-ops", "1", "--pwhash-mem", "8192",
                          "--http-request-timeout", "2", "--http-idle-timeout", "5", NULL};
    struct sockaddr_in sa = {.sin_family = AF_INET};
    struct timeval tv = {0, 200000};
    const char *head = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    int fd, port = 0;
    int64_t t0, closed_ms = -1;
    kh_browser b;
    kh_resp *r;
    kc_proc *p;

    (void)state;
    p = kc_proc_start("trickle", args, urlfile, 60);
    assert_non_null(p);
    url = kc_read_file(urlfile, NULL);
    assert_non_null(url);
    assert_int_equal(sscanf(url, "http://127.0.0.1:%d/", &port), 1);
    url[strcspn(url, "\n")] = '\0';
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    t0 = kc_now_ms();
    /* one header byte every 400 ms: never idle for 5 s, never a whole request */
    for (int i = 0; kc_now_ms() - t0 < 9000; i++) {
        char c = i < (int)strlen(head) ? head[i] : 'x', buf[64];
        ssize_t n;
        if (send(fd, &c, 1, MSG_NOSIGNAL) != 1) {
            closed_ms = kc_now_ms() - t0;
            break;
        }
        n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            closed_ms = kc_now_ms() - t0;
            break;
        }
        kc_sleep_ms(200);
    }
    close(fd);
    if (closed_ms < 0)
        fail_msg("a trickling client kept its connection for 9 s (request deadline 2 s)");
    assert_true(closed_ms >= 1500 && closed_ms <= 5000);
    /* ordinary calls still work */
    kh_browser_init(&b, "after", url);
    r = kh_do(&b, "GET", "/healthz", NULL);
    assert_int_equal(r->status, 200);
    kh_resp_free(r);
    r = kh_do(&b, "GET", "/metrics", NULL);
    assert_int_equal(r->status, 200);
    assert_non_null(strstr(r->body, "kchat_gateway_request_deadline_total 1"));
    kh_resp_free(r);
    assert_int_equal(kc_proc_stop(p, SIGTERM, 15, NULL), 0);
    kc_proc_free(p);
    free(url);
    free(data);
    free(urlfile);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trickling_client_is_dropped),
    };
    return cmocka_run_group_tests_name("0012 trickling client kept its connection", tests, NULL,
                                       NULL);
}
