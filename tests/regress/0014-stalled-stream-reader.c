/*
 * Regression 0014 (fixed by d4d9f43): with an autotuned kernel send buffer a
 * reader that stopped reading its event stream let megabytes queue in the
 * kernel before the stream's own buffer filled, and calls slowed from 22 to
 * 157 ms meanwhile. Event streams now get a 64 KiB send buffer: a raw
 * socket that reads nothing is closed after ~50 events of 4 KB while the
 * writer keeps getting 201s. (On d4d9f43^ the same reader was cut off only
 * after 450 events, 8.7 s.)
 * (Moved from tests/integration/test_gateway_limits.c,
 * test_slow_reader_stream_is_closed, with its helpers.)
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

static void must(kh_resp *r, long status)
{
    if (r->status != status) {
        kh_resp_dump(r, "unexpected status");
        fail_msg("%s: %ld, expected %ld", r->what, r->status, status);
    }
}

static void user_new(kh_browser *b, const char *url, const char *tag, char *id, size_t n)
{
    kh_resp *r;

    kc_uid(id, n, tag);
    kh_browser_init(b, tag, url);
    r = kh_do(b, "POST", "/api/users", json_pack("{s:s, s:s, s:s, s:s}", "userId", id, "userPw",
                                                 "password-1", "email", "u@example.com",
                                                 "userName", tag));
    must(r, 201);
    kh_resp_free(r);
    r = kh_do(b, "POST", "/api/login", json_pack("{s:s, s:s}", "userId", id, "userPw",
                                                 "password-1"));
    must(r, 200);
    kh_resp_free(r);
}

static bool overflowed(kh_browser *b)
{
    kh_resp *m = kh_do(b, "GET", "/metrics", NULL);
    bool yes = m->status == 200 && m->body &&
               strstr(m->body, "kchat_gateway_sse_overflows_total ") &&
               !strstr(m->body, "kchat_gateway_sse_overflows_total 0\n");
    kh_resp_free(m);
    return yes;
}

/* A reader that reads nothing has its stream closed once its buffer is
 * full (it resumes with Last-Event-ID); the writer is not held up. */
static void test_slow_reader_stream_is_closed(void **state)
{
    char *data = kc_tmppath("slow-data"), *urlfile = kc_tmppath("slow.url"), *url;
    const char *args[] = {"dev", "--http", "127.0.0.1:0", "--data", data, "--url-file", urlfile,
                          "--pwhash-ops", "1", "--pwhash-mem", "8192", "--sse-buffer-kb", "16",
                          NULL};
    char a_id[65], b_id[65], path[160], req[1024], big[4001], buf[4096], room[65];
    struct sockaddr_in sa = {.sin_family = AF_INET};
    struct timeval tv = {0, 100000};
    int fd, port = 0, rcvbuf = 4096, sent = 0;
    bool eof = false, closed = false;
    kh_browser a, b;
    kh_resp *r;
    kc_proc *p;
    int64_t t0;

    (void)state;
    p = kc_proc_start("slow", args, urlfile, 60);
    assert_non_null(p);
    url = kc_read_file(urlfile, NULL);
    assert_non_null(url);
    url[strcspn(url, "\n")] = '\0';
    assert_int_equal(sscanf(url, "http://127.0.0.1:%d/", &port), 1);
    user_new(&a, url, "slowa", a_id, sizeof(a_id));
    user_new(&b, url, "slowb", b_id, sizeof(b_id));
    r = kh_do(&a, "POST", "/api/friends", json_pack("{s:[s]}", "friendId", b_id));
    must(r, 200);
    kh_resp_free(r);
    r = kh_do(&a, "POST", "/api/rooms", json_pack("{s:[s], s:s}", "friendId", b_id,
                                                  "roomName", "slow"));
    must(r, 201);
    snprintf(room, sizeof(room), "%s", json_string_value(json_object_get(r->json, "roomId")));
    kh_resp_free(r);

    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    snprintf(req, sizeof(req), "GET /api/events HTTP/1.1\r\nHost: x\r\nCookie: kchat_session=%s"
             "\r\n\r\n", kh_cookie_get(&b, "kchat_session"));
    assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    kc_sleep_ms(500);
    assert_false(overflowed(&a));

    memset(big, 'm', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(path, sizeof(path), "/api/rooms/%s/messages", room);
    t0 = kc_now_ms();
    /* ~4 KB per event until the kernel's socket buffers and the 16 KiB
     * stream buffer are full; bounded in count and time */
    while (!closed && sent < 2000 && kc_now_ms() - t0 < 120000) {
        static const char *const no_expect[] = {"Expect:", NULL};   /* no 100-continue wait */
        json_t *body = json_pack("{s:s}", "message", big);
        kh_req rq = {.method = "POST", .path = path, .json = body, .headers = no_expect};
        r = kh_request(&a, &rq);
        json_decref(body);
        must(r, 201);
        kh_resp_free(r);
        if (++sent % 50 == 0)
            closed = overflowed(&a);
    }
    if (!closed)
        fail_msg("no stream overflow after %d messages of 4000 bytes", sent);
    fprintf(stderr, "slow reader: stream closed after %d messages, %.1f s\n", sent,
            (double)(kc_now_ms() - t0) / 1000);
    /* Added with the move: 16 KiB of stream buffer, 64 KiB in the kernel and
     * the reader's 4 KiB overflow within ~50 events of 4 KB (seen: 50); with
     * an autotuned send buffer it took 450 on d4d9f43^. */
    if (sent > 200)
        fail_msg("the stream took %d events of 4000 bytes to overflow", sent);
    /* the connection was closed: draining it ends in EOF */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    t0 = kc_now_ms();
    while (!eof && kc_now_ms() - t0 < 30000) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            eof = true;
    }
    close(fd);
    assert_true(eof);
    assert_int_equal(kc_proc_stop(p, SIGTERM, 15, NULL), 0);
    kc_proc_free(p);
    free(url);
    free(data);
    free(urlfile);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_reader_stream_is_closed),
    };
    return cmocka_run_group_tests_name("0014 stalled event-stream reader", tests, NULL, NULL);
}
