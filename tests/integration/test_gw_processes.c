/*
 * test_gw_processes: `kchat gateway --gateway-processes N`, one gateway
 * address served by N processes (SO_REUSEPORT), beside `kchat broker` and
 * `kchat serve`:
 *
 *  - /metrics says which process answered (kchat_gateway_process_index),
 *    and 200 scrapes reach both;
 *  - more event streams than one process may hold: the gateway runs under a
 *    descriptor limit of NOFILE, which leaves each process NOFILE - 512
 *    streams (fit_descriptor_limit()), and STREAMS streams of one user all
 *    open (200), both processes hold some, and a chat message reaches each
 *    stream once;
 *  - SIGTERM to the gateway stops every process cleanly: exit status 0 and
 *    no process left;
 *  - one process dying stops the others: exit status 1, none left;
 *  - `kchat dev --gateway-processes 2` is refused (one process by nature).
 */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "support/http.h"
#include "support/kassert.h"
#include "support/kclient.h"
#include "support/raw.h"

#define CHECK KC_CHECK
#define PARTS 4
#define NOFILE 600     /* each process: 600 - 512 = 88 streams */
#define PER_PROCESS 88
#define STREAMS 120    /* more than one process may hold, well under two */
#define WAIT_MS 15000

static kc_proc *g_broker, *g_srv;
static char *g_data;

static int group_setup(void **state)
{
    (void)state;
    g_data = kc_tmppath("gw-processes-data");
    kc_rm_rf(g_data);
    if ((g_broker = kc_broker_start("gw-processes-broker", PARTS)) == NULL)
        return -1;
    g_srv = kc_serve_start("gw-processes-serve", g_data, kc_proc_bootstrap(g_broker), PARTS,
                           NULL);
    return g_srv != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    kc_proc_end(g_srv, 10);
    kc_proc_end(g_broker, 10);
    free(g_data);
    return 0;
}

/* ---- helpers ---- */

/* Start `kchat gateway --gateway-processes @p n` under a descriptor limit of
 * NOFILE (through a prlimit wrapper, as regression 0010 does); its base URL
 * in @p base. */
static kc_proc *gateway_start(const char *name, int n, char *base, size_t size)
{
    char *wrapper = kc_nofile_wrapper(NOFILE), nbuf[16];
    const char *saved = getenv("KCHAT_BIN");
    char *keep = saved ? strdup(saved) : NULL;
    const char *gx[] = {"--brokers", kc_proc_bootstrap(g_srv), "--gateway-processes", nbuf,
                        "--sse-max-per-user", "1000", NULL};
    kc_proc *p;

    snprintf(nbuf, sizeof(nbuf), "%d", n);
    setenv("KCHAT_BIN", wrapper, 1);
    p = kc_gateway_start(name, gx, base, size);
    if (keep != NULL)
        setenv("KCHAT_BIN", keep, 1);
    else
        unsetenv("KCHAT_BIN");
    free(keep);
    free(wrapper);
    CHECK(p != NULL, "the gateway with %d processes did not start", n);
    return p;
}

/* The children of process @p pid, up to @p max, in @p out; how many. */
static int children_of(pid_t pid, pid_t *out, int max)
{
    char path[96], *text;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
    if ((text = kc_read_file(path, NULL)) == NULL)
        return 0;
    for (char *s = text, *end; n < max; s = end) {
        long v = strtol(s, &end, 10);
        if (end == s)
            break;
        out[n++] = (pid_t)v;
    }
    free(text);
    return n;
}

/* Open descriptors of process @p pid, -1 when it is gone. */
static int fds_of(pid_t pid)
{
    char path[64];
    struct dirent *e;
    int n = 0;
    DIR *d;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    if ((d = opendir(path)) == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static bool alive(pid_t pid)
{
    return kill(pid, 0) == 0;
}

/* Wait (WAIT_MS at most) until none of @p pids runs. */
static bool all_gone(const pid_t *pids, int n)
{
    for (int t = 0; t < WAIT_MS / 50; t++) {
        int live = 0;
        for (int i = 0; i < n; i++)
            live += alive(pids[i]);
        if (live == 0)
            return true;
        usleep(50 * 1000);
    }
    return false;
}

/* Send @p sig to gateway @p gw (0: none) and wait @p timeout_s for it to
 * end with exit status @p want, and its @p n processes @p kids with it. */
static void expect_end(kc_proc *gw, int sig, int timeout_s, int want, const pid_t *kids, int n)
{
    int status = 0;

    CHECK(kc_proc_stop(gw, sig, timeout_s, &status) == 0,
          "the gateway did not end within %d s of signal %d", timeout_s, sig);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == want, "the gateway %s, want exit status %d",
          kc_status_str(status), want);
    CHECK(all_gone(kids, n), "a gateway process outlived the gateway");
}

/* ---- tests ---- */

static void test_streams_beyond_one_process(void **state)
{
    char base[256], room[72], path[256];
    pid_t kids[4];
    int before[2], after[2];
    kh_sse *s[STREAMS];
    kr_user a, b;
    kc_proc *gw;
    const char *text = "to every stream of every process";

    (void)state;
    gw = gateway_start("gw-processes-2", 2, base, sizeof(base));
    CHECK(children_of(kc_proc_pid(gw), kids, 4) == 2, "the gateway runs %d processes, want 2",
          children_of(kc_proc_pid(gw), kids, 4));
    CHECK(kc_file_count(kc_proc_log(gw), "at most 88 event streams") == 2,
          "each process should say it holds at most %d streams", PER_PROCESS);
    for (int i = 0; i < 2; i++)
        before[i] = fds_of(kids[i]);

    /* a scrape reaches either process, which says which it is */
    bool seen[2] = {false, false};
    for (int i = 0; i < 200 && !(seen[0] && seen[1]); i++) {
        double n = -1, index = -1;
        CHECK(kh_metric(base, "kchat_gateway_processes", &n) && n == 2,
              "kchat_gateway_processes is %.0f, want 2", n);
        CHECK(kh_metric(base, "kchat_gateway_process_index", &index) && (index == 0 || index == 1),
              "kchat_gateway_process_index is %.0f", index);
        seen[(int)index] = true;
    }
    CHECK(seen[0] && seen[1], "200 scrapes reached only process %d", seen[0] ? 0 : 1);

    kr_user_new(&a, "gwpa", base);
    kr_user_new(&b, "gwpb", base);
    kr_room_of_two(&a, &b, room, sizeof(room));
    kh_resp *r;

    for (int i = 0; i < STREAMS; i++) {
        s[i] = kh_sse_open(&b.b, "/api/events", NULL, 10000);
        if (kh_sse_status(s[i]) != 200)
            kh_sse_dump(s[i], "stream did not open");
        CHECK(kh_sse_status(s[i]) == 200, "stream %d of %d: %ld (one process holds %d)", i,
              STREAMS, kh_sse_status(s[i]), PER_PROCESS);
    }
    for (int i = 0; i < 2; i++) {
        after[i] = fds_of(kids[i]);
        CHECK(after[i] - before[i] >= 10, "process %d holds %d more descriptors with %d "
              "streams open: the kernel did not spread them", i, after[i] - before[i], STREAMS);
    }

    snprintf(path, sizeof(path), "/api/rooms/%s/messages", room);
    r = kh_do(&a.b, "POST", path, json_pack("{s:s}", "message", text));
    CHECK(r->status == 201, "send: %ld", r->status);
    kh_resp_free(r);
    for (int i = 0; i < STREAMS; i++) {
        const kh_event *e = kh_sse_wait(s[i], 0, kh_is_chat, (void *)text, WAIT_MS);
        if (e == NULL)
            kh_sse_dump(s[i], "no chat event");
        CHECK(e != NULL, "stream %d got no chat event", i);
    }
    usleep(300 * 1000);   /* a repeat would come right behind */
    for (int i = 0; i < STREAMS; i++)
        CHECK(kh_sse_chats(s[i], text) == 1, "stream %d got the message %d times", i,
              kh_sse_chats(s[i], text));
    for (int i = 0; i < STREAMS; i++)
        kh_sse_close(s[i]);

    expect_end(gw, SIGTERM, 40, 0, kids, 2);
    CHECK(kc_file_count(kc_proc_log(gw), ": stopping") == 3,
          "the parent and both processes should log their stop");
    kc_proc_free(gw);
}

static void test_one_dying_stops_the_rest(void **state)
{
    char base[256];
    pid_t kids[4];
    kc_proc *gw;

    (void)state;
    gw = gateway_start("gw-processes-3", 3, base, sizeof(base));
    CHECK(children_of(kc_proc_pid(gw), kids, 4) == 3, "the gateway runs %d processes, want 3",
          children_of(kc_proc_pid(gw), kids, 4));
    CHECK(kill(kids[1], SIGKILL) == 0, "kill process 1");
    expect_end(gw, 0, WAIT_MS / 1000, 1, kids, 3);   /* signal 0: it must end by itself */
    CHECK(kc_file_count(kc_proc_log(gw), "was killed by signal 9") == 1,
          "the gateway should say which process died and how");
    kc_proc_free(gw);
}

static void test_dev_refuses_processes(void **state)
{
    char cmd[4096];
    int status = -1;
    char *out;

    (void)state;
    snprintf(cmd, sizeof(cmd), "%s dev --gateway-processes 2 --http 127.0.0.1:0 2>&1", kc_bin());
    out = kc_run_capture(cmd, NULL, &status);
    assert_non_null(out);
    CHECK(status == 2, "kchat dev --gateway-processes 2 exited %d, want 2: %s", status, out);
    CHECK(strstr(out, "--gateway-processes") != NULL, "no word of the option: %s", out);
    free(out);
    snprintf(cmd, sizeof(cmd), "%s gateway --brokers 127.0.0.1:1 --gateway-processes 65 2>&1",
             kc_bin());
    out = kc_run_capture(cmd, NULL, &status);
    assert_non_null(out);
    CHECK(status == 2, "--gateway-processes 65 exited %d, want 2: %s", status, out);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streams_beyond_one_process),
        cmocka_unit_test(test_one_dying_stops_the_rest),
        cmocka_unit_test(test_dev_refuses_processes),
    };
    return cmocka_run_group_tests_name("gw_processes", tests, group_setup, group_teardown);
}
