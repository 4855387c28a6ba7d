/*
 * Storage faults (PROTOCOL.md §7): the disk under `kchat serve`'s data
 * directory fills up under a stream of chat sends.
 *
 * The data directory is a 4 MiB tmpfs mounted by the test (so the test
 * needs root, as CI has; it says so and fails otherwise). The test checks:
 *  - when a commit fails with ENOSPC the server says so clearly in its log,
 *    answers nothing it could not store, keeps running and retries
 *    (back-pressure: its partitions pause rather than drop requests);
 *  - once space is added (the tmpfs is remounted larger) every request
 *    that was waiting is answered and stored once;
 *  - after a kill -9 and a restart on the same data, every acknowledged
 *    message is still there, seqs run 1..n with no gap, and new sends work.
 * LMDB's map full is handled by growing the map (tests/unit/test_store.c
 * covers growth and a map that cannot grow).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "support/kassert.h"
#include "support/kclient.h"

#define PARTITIONS  4
#define INFLIGHT    8
#define MAX_MSGS    4000
#define MSG_BYTES   4000          /* PROTOCOL.md §2: message up to 4096 bytes */
#define STALL_MS    4000          /* no answer for this long: the disk is full */

struct smsg {
    char cid[72];
    int64_t seq;
    int answers;
};

static struct {
    kc_client *c;
    kc_proc *srv;
    char *mnt, *data;
    bool mounted;
    kc_user a, b;
    char room[65];
    struct smsg m[MAX_MSGS];
    size_t n, scan, inflight;
    char prefix[48];
    int64_t last_answer_ms;
} g;

static void collect(void)
{
    size_t plen = strlen(g.prefix), cnt = kc_record_count(g.c);
    for (; g.scan < cnt; g.scan++) {
        const kc_record *r = kc_record_get(g.c, g.scan);
        if (r->cid == NULL || strncmp(r->cid, g.prefix, plen) != 0)
            continue;
        size_t i = strtoul(r->cid + plen, NULL, 10);
        if (i >= g.n)
            continue;
        json_int_t seq = r->body != NULL && json_is_true(json_object_get(r->body, "isSuccess")) ?
                         kc_int(r->body, "seq", -1) : -1;
        if (seq < 1)
            kc_record_dump(r, "test_storage: a chat send that did not succeed");
        assert_true(seq >= 1);
        if (g.m[i].answers++ == 0) {
            g.m[i].seq = seq;
            g.inflight--;
            g.last_answer_ms = kc_now_ms();
        } else {
            assert_int_equal(seq, g.m[i].seq);
        }
    }
}

static void send_one(void)
{
    static char text[MSG_BYTES + 1];
    if (text[0] == '\0')
        memset(text, 'x', MSG_BYTES);
    assert_true(g.n < MAX_MSGS);
    char cmid[24];
    snprintf(cmid, sizeof(cmid), "s%zu", g.n);
    memcpy(text, cmid, strlen(cmid));   /* each message its own text */
    snprintf(g.m[g.n].cid, sizeof(g.m[g.n].cid), "%s%zu", g.prefix, g.n);
    json_t *body = json_pack("{ss ss ss ss}", "roomId", g.room, "writerId", g.a.id,
                             "message", text, "clientMsgId", cmid);
    assert_true(kc_send_req(g.c, "user-add-chat", g.a.id, g.a.session, g.m[g.n].cid, body,
                            NULL));
    json_decref(body);
    g.n++;
    g.inflight++;
}

static void stream(int ms, bool send)
{
    int64_t end = kc_now_ms() + ms;
    do {
        collect();
        while (send && g.inflight < INFLIGHT)
            send_one();
        kc_sleep_ms(5);
    } while (kc_now_ms() < end);
}

/* Every answered send is in the room once with its seq; seqs 1..n. */
static void verify_history(void)
{
    size_t acked = 0;
    for (size_t i = 0; i < g.n; i++)
        acked += g.m[i].answers > 0;
    json_t *all = kc_history_all(g.c, &g.a, g.room), *e;
    size_t k;
    assert_non_null(all);
    json_array_foreach(all, k, e) {
        const char *cmid = kc_str(e, "clientMsgId");
        size_t mi = cmid != NULL && cmid[0] == 's' ? strtoul(cmid + 1, NULL, 10) : g.n;
        if (kc_int(e, "seq", -1) != (json_int_t)k + 1 || mi >= g.n ||
            g.m[mi].seq != (int64_t)k + 1) {
            fprintf(stderr, "test_storage: %s out of place, %zu acknowledged\n",
                    kc_dumps(e), acked);
            fail_msg("history does not match the acknowledged sends");
        }
    }
    assert_int_equal(json_array_size(all), acked);
    json_decref(all);
    fprintf(stderr, "test_storage: %zu acknowledged messages stored once, seqs 1..%zu\n",
            acked, acked);
}

static int teardown(void **state)
{
    (void)state;
    kc_client_free(g.c);
    kc_proc_free(g.srv);
    if (g.mounted && umount2(g.mnt, MNT_DETACH) != 0)
        fprintf(stderr, "test_storage: umount %s: %s\n", g.mnt, strerror(errno));
    free(g.mnt);
    free(g.data);
    return 0;
}

static void start_server(void)
{
    g.srv = kc_serve_start_ex("storage-serve", g.data, NULL, PARTITIONS, NULL, 60);
    assert_non_null(g.srv);
}

static void test_disk_full(void **state)
{
    (void)state;
    g.mnt = kc_tmppath("small-disk");
    mkdir(g.mnt, 0755);
    if (mount("kchat-test", g.mnt, "tmpfs", 0, "size=4m") != 0) {
        fprintf(stderr, "test_storage: cannot mount a 4 MiB tmpfs on %s: %s (this test "
                "needs root or CAP_SYS_ADMIN)\n", g.mnt, strerror(errno));
        fail();
    }
    g.mounted = true;
    if (asprintf(&g.data, "%s/data", g.mnt) < 0)
        fail();
    snprintf(g.prefix, sizeof(g.prefix), "disk-%d-%lld-", (int)getpid(),
             (long long)kc_wall_ms());

    start_server();
    g.c = kc_client_new(kc_proc_bootstrap(g.srv), KC_FROM_END);
    assert_non_null(g.c);
    assert_true(kc_user_new(g.c, &g.a, "disk"));
    assert_true(kc_user_new(g.c, &g.b, "disk"));
    const char *f[] = { g.b.id, NULL };
    assert_true(kc_add_friends(g.c, &g.a, f));
    assert_true(kc_create_room(g.c, &g.a, f, "disk", g.room));

    /* fill the disk: sends until nothing has been answered for STALL_MS */
    g.last_answer_ms = kc_now_ms();
    int64_t give_up = kc_now_ms() + 120000;
    while (kc_now_ms() - g.last_answer_ms < STALL_MS && kc_now_ms() < give_up)
        stream(100, g.n < MAX_MSGS - INFLIGHT);
    size_t answered = g.n - g.inflight;
    fprintf(stderr, "test_storage: disk full after %zu answered sends, %zu waiting\n",
            answered, g.inflight);
    assert_true(g.inflight > 0);
    assert_true(kc_now_ms() < give_up);

    /* the server is alive, says why, and answers nothing more */
    assert_true(kc_proc_pid(g.srv) > 0 && kill(kc_proc_pid(g.srv), 0) == 0);
    stream(1500, false);
    assert_int_equal(g.n - g.inflight, answered);
    const char *why = "the disk is full";
    if (!kc_file_contains(kc_proc_log(g.srv), why, strlen(why))) {
        kc_proc_log_tail(g.srv, 30, stderr);
        fail_msg("the server log does not say \"%s\"", why);
    }

    /* more space: everything waiting is answered */
    assert_int_equal(mount("kchat-test", g.mnt, "tmpfs", MS_REMOUNT, "size=64m"), 0);
    int64_t deadline = kc_now_ms() + 30000;
    while (g.inflight > 0 && kc_now_ms() < deadline)
        stream(50, false);
    assert_int_equal(g.inflight, 0);
    const char *back = "storing again";
    assert_true(kc_file_contains(kc_proc_log(g.srv), back, strlen(back)));
    verify_history();

    /* a crash now loses nothing acknowledged */
    kc_client_free(g.c);   /* its brokers die with this embedded server */
    g.c = NULL;
    kc_proc_stop(g.srv, SIGKILL, 5, NULL);
    kc_proc_free(g.srv);
    g.srv = NULL;
    start_server();
    g.c = kc_client_new(kc_proc_bootstrap(g.srv), KC_FROM_END);
    assert_non_null(g.c);
    g.scan = 0;
    char *s = kc_login(g.c, g.a.id, g.a.pw);
    assert_non_null(s);
    snprintf(g.a.session, sizeof(g.a.session), "%s", s);
    free(s);
    verify_history();
    /* and it takes new messages after the last seq */
    stream(500, true);
    deadline = kc_now_ms() + 30000;
    while (g.inflight > 0 && kc_now_ms() < deadline)
        stream(50, false);
    assert_int_equal(g.inflight, 0);
    verify_history();

    assert_true(kc_proc_stop_clean(g.srv, 20));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_disk_full, teardown),
    };
    return cmocka_run_group_tests_name("storage faults", tests, NULL, NULL);
}
