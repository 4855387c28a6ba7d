/*
 * Regression: a gateway out of file descriptors must not spin.
 *
 * Found by bench/run-sse.sh at 19,900 streams: accept() failed with EMFILE,
 * libevent retried at once in a loop, one core went to 100% and the log grew
 * by 900 MB a minute. The gateway now pauses accepting for a moment instead,
 * logs that at most once a second, and serves again once descriptors free up.
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
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>

#include "support/http.h"
#include "support/kclient.h"

#define NOFILE 192          /* the gateway's hard limit in this test */
#define CLIENTS 400         /* more connections than it can accept */

/* CPU seconds (user + system) used so far by process @p pid. */
static double cpu_seconds(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    if (fgets(buf, sizeof(buf), f) == NULL || (p = strrchr(buf, ')')) == NULL) {
        fclose(f);
        return -1;
    }
    fclose(f);
    /* fields after the command: state(3) ... utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static size_t count_lines_with(const char *path, const char *needle)
{
    size_t len = 0, n = 0;
    char *text = kc_read_file(path, &len), *p = text;

    while (p && (p = strstr(p, needle)) != NULL) {
        n++;
        p += strlen(needle);
    }
    free(text);
    return n;
}

static void test_out_of_descriptors_pauses_accepts(void **state)
{
    char *wrapper = kc_tmppath("kchat-nofile.sh"), *data = kc_tmppath("nofile-data");
    char *urlfile = kc_tmppath("nofile.url"), *url, real[4096];
    const char *args[] = {"dev", "--http", "127.0.0.1:0", "--data", data, "--url-file", urlfile,
                          "--pwhash-ops", "1", "--pwhash-mem", "8192", NULL};
    struct sockaddr_in sa = {.sin_family = AF_INET};
    int fds[CLIENTS], opened = 0, port = 0;
    double cpu0, cpu1, base0, base1;
    size_t lines0, lines1;
    kh_browser b;
    kh_resp *r;
    kc_proc *p;
    FILE *f;

    (void)state;
    /* run kchat under a low descriptor limit through a wrapper script */
    if (realpath(kc_bin(), real) == NULL)
        fail_msg("no kchat binary at %s", kc_bin());
    f = fopen(wrapper, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\nexec prlimit --nofile=%d:%d %s \"$@\"\n", NOFILE, NOFILE, real);
    fclose(f);
    chmod(wrapper, 0755);
    setenv("KCHAT_BIN", wrapper, 1);
    p = kc_proc_start("nofile", args, urlfile, 60);
    assert_non_null(p);
    url = kc_read_file(urlfile, NULL);
    assert_non_null(url);
    assert_int_equal(sscanf(url, "http://127.0.0.1:%d/", &port), 1);
    url[strcspn(url, "\n")] = '\0';

    /* what the idle process uses anyway (sanitizer builds use a lot) */
    base0 = cpu_seconds(kc_proc_pid(p));
    kc_sleep_ms(3000);
    base1 = cpu_seconds(kc_proc_pid(p));
    assert_true(base0 >= 0 && base1 >= 0);

    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < CLIENTS; i++) {
        struct timeval tv = {2, 0};   /* a full backlog makes connect() wait */
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] < 0)
            break;
        setsockopt(fds[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            close(fds[i]);
            break;
        }
        opened++;
    }
    assert_true(opened >= NOFILE);
    /* hold them: a spinning accept loop would burn a whole core and flood
     * the log; a paused one logs about once a second */
    kc_sleep_ms(500);
    cpu0 = cpu_seconds(kc_proc_pid(p));
    lines0 = count_lines_with(kc_proc_log(p), "pausing accepts");
    kc_sleep_ms(3000);
    cpu1 = cpu_seconds(kc_proc_pid(p));
    lines1 = count_lines_with(kc_proc_log(p), "pausing accepts");
    assert_true(cpu0 >= 0 && cpu1 >= 0);
    /* a spinning accept loop adds a whole core: about 3 CPU s in 3 s */
    if ((cpu1 - cpu0) - (base1 - base0) > 1.5)
        fail_msg("gateway used %.2f CPU s in 3 s while out of descriptors (%.2f when idle)",
                 cpu1 - cpu0, base1 - base0);
    assert_true(lines1 >= 1);
    if (lines1 - lines0 > 6)
        fail_msg("%zu 'pausing accepts' lines in 3 s", lines1 - lines0);
    assert_int_equal(count_lines_with(kc_proc_log(p), "Error from accept"), 0);

    for (int i = 0; i < opened; i++)
        close(fds[i]);
    /* once descriptors are free again, it serves */
    kh_browser_init(&b, "after", url);
    r = NULL;
    for (int tries = 0; tries < 50; tries++) {
        kh_resp_free(r);
        r = kh_do(&b, "GET", "/healthz", NULL);
        if (r->status == 200)
            break;
        kc_sleep_ms(200);
    }
    assert_int_equal(r->status, 200);
    kh_resp_free(r);
    assert_int_equal(kc_proc_stop(p, SIGTERM, 15, NULL), 0);
    kc_proc_free(p);
    free(url);
    free(wrapper);
    free(data);
    free(urlfile);
}

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
        cmocka_unit_test(test_out_of_descriptors_pauses_accepts),
        cmocka_unit_test(test_trickling_client_is_dropped),
        cmocka_unit_test(test_slow_reader_stream_is_closed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
