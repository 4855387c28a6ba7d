/*
 * Regression 0010 (fixed by e7198a3): a gateway out of file descriptors must
 * not spin.
 *
 * Found by bench/run-sse.sh at 19,900 streams: accept() failed with EMFILE,
 * libevent retried at once in a loop, one core went to 100% and the log grew
 * by 900 MB a minute. The gateway now pauses accepting for a moment instead,
 * logs that at most once a second, and serves again once descriptors free up.
 * kchat dev runs under prlimit --nofile=192 and gets 400 connections (on
 * e7198a3^: 3.4 CPU s in 3 s). The CPU bound is judged against the idle
 * process's own use (0015, 1c32088).
 * (Moved from tests/integration/test_gateway_limits.c,
 * test_out_of_descriptors_pauses_accepts.)
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

static void test_out_of_descriptors_pauses_accepts(void **state)
{
    char *wrapper = kc_nofile_wrapper(NOFILE), *data = kc_tmppath("nofile-data");
    char *urlfile = kc_tmppath("nofile.url"), *url;
    const char *args[] = {"dev", "--http", "127.0.0.1:0", "--data", data, "--url-file", urlfile,
                          "--pwhash-ops", "1", "--pwhash-mem", "8192", NULL};
    struct sockaddr_in sa = {.sin_family = AF_INET};
    int fds[CLIENTS], opened = 0, port = 0;
    double cpu0, cpu1, base0, base1;
    size_t lines0, lines1;
    kh_browser b;
    kh_resp *r;
    kc_proc *p;

    (void)state;
    /* run kchat under a low descriptor limit through a wrapper script */
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
    lines0 = kc_file_count(kc_proc_log(p), "pausing accepts");
    kc_sleep_ms(3000);
    cpu1 = cpu_seconds(kc_proc_pid(p));
    lines1 = kc_file_count(kc_proc_log(p), "pausing accepts");
    assert_true(cpu0 >= 0 && cpu1 >= 0);
    /* a spinning accept loop adds a whole core: about 3 CPU s in 3 s */
    if ((cpu1 - cpu0) - (base1 - base0) > 1.5)
        fail_msg("gateway used %.2f CPU s in 3 s while out of descriptors (%.2f when idle)",
                 cpu1 - cpu0, base1 - base0);
    assert_true(lines1 >= 1);
    if (lines1 - lines0 > 6)
        fail_msg("%zu 'pausing accepts' lines in 3 s", lines1 - lines0);
    assert_int_equal(kc_file_count(kc_proc_log(p), "Error from accept"), 0);

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_out_of_descriptors_pauses_accepts),
    };
    return cmocka_run_group_tests_name("0010 accept loop spins out of descriptors", tests, NULL,
                                       NULL);
}
