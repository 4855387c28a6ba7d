/*
 * Regression 0059: a burst of connections to the gateway must not wait a
 * second for SYNs sent again.
 *
 * Found by the multi-process event-stream benchmark (bench/sse.c --procs 3):
 * opening 300 streams took 1.05 s instead of 0.07 s. The gateway listened
 * through evhttp_bind_socket(), whose backlog is 128: while its loop was
 * busy, the kernel's queue of connections waiting for accept() filled, it
 * dropped the SYNs past it (ListenOverflows 25) and those clients sent them
 * again only after a second. The gateway now makes its listening socket
 * itself with a backlog of SOMAXCONN.
 *
 * The test makes the loop busy for good: `kchat dev` is stopped (SIGSTOP)
 * and BURST connections are started at once. Those the backlog holds
 * complete their handshake without any accept(); with a backlog of 128
 * about 129 do, and the rest wait for their SYNs to be sent again. Then
 * the process is continued and must serve a request.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
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
#include "support/kassert.h"
#include "support/kclient.h"
#include "support/raw.h"

#define CHECK KC_CHECK
#define BURST 600            /* well past 128, well under the 4096 of SOMAXCONN here */
#define HANDSHAKE_MS 500     /* far under the 1 s of a SYN sent again */

/* Start a non-blocking connect() to 127.0.0.1:@p port; the socket, or -1. */
static int connect_start(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* net.core.somaxconn, the kernel's cap on any backlog (4096 here). */
static int somaxconn(void)
{
    char *t = kc_read_file("/proc/sys/net/core/somaxconn", NULL);
    int v = t ? atoi(t) : 0;

    free(t);
    return v > 0 ? v : 4096;
}

/* How many of @p fds completed their handshake within @p ms. */
static int connected_within(const int *fds, int n, int ms)
{
    struct pollfd pfd[BURST];
    int64_t end = kc_now_ms() + ms;
    int done = 0;

    for (int i = 0; i < n; i++)
        pfd[i] = (struct pollfd){.fd = fds[i], .events = POLLOUT};
    while (done < n && kc_now_ms() < end) {
        if (poll(pfd, (nfds_t)n, (int)(end - kc_now_ms())) <= 0)
            break;
        for (int i = 0; i < n; i++)
            if (pfd[i].fd >= 0 && (pfd[i].revents & POLLOUT)) {
                int err = 0;
                socklen_t l = sizeof(err);
                getsockopt(pfd[i].fd, SOL_SOCKET, SO_ERROR, &err, &l);
                done += err == 0;
                pfd[i].fd = -1;   /* poll() skips it from now on */
            }
    }
    return done;
}

static void test_burst_completes_while_the_loop_is_busy(void **state)
{
    char base[256];
    int port = 0, fds[BURST], opened = 0, connected, want;
    kc_proc *dev;
    kh_browser b;
    kh_resp *r;

    (void)state;
    dev = kr_dev_start("backlog-dev", NULL, base, sizeof(base), &port);
    assert_non_null(dev);
    CHECK(kill(kc_proc_pid(dev), SIGSTOP) == 0, "SIGSTOP kchat dev");
    for (int i = 0; i < BURST; i++)
        if ((fds[opened] = connect_start(port)) >= 0)
            opened++;
    CHECK(opened == BURST, "started %d connections of %d", opened, BURST);
    connected = connected_within(fds, opened, HANDSHAKE_MS);
    kill(kc_proc_pid(dev), SIGCONT);
    for (int i = 0; i < opened; i++)
        close(fds[i]);
    /* the backlog holds SOMAXCONN waiting connections, and one more */
    want = somaxconn() < BURST ? somaxconn() : BURST;
    CHECK(connected >= want, "%d of %d connections completed their handshake within %d ms "
          "while the gateway accepted none (want %d): its listen backlog is too short",
          connected, BURST, HANDSHAKE_MS, want);

    kh_browser_init(&b, "backlog", base);   /* and it serves on */
    r = kh_do(&b, "GET", "/healthz", NULL);
    CHECK(r->status == 200, "GET /healthz after the burst: %ld", r->status);
    kh_resp_free(r);
    CHECK(kr_dev_stop(dev) == 0, "kchat dev did not stop cleanly");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_completes_while_the_loop_is_busy),
    };
    return cmocka_run_group_tests_name("0059-listen-backlog-burst", tests, NULL, NULL);
}
