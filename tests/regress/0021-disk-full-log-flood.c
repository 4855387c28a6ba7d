/*
 * Regression 0021 (fixed by 3fb6c37): a commit that failed (disk full) was
 * retried every 100 ms and logged at every retry, "batch of N not applied:
 * EIO; retrying": ten lines a second per shard for as long as the disk
 * stayed full, and LMDB reports a short write as EIO, so the line did not
 * even say the disk was full. A run of failures is now logged at once and
 * then every 10 s, with the free space of the data directory's disk.
 *
 * `kchat serve` (embedded broker) on a 4 MiB tmpfs (the test mounts it: it
 * needs root, as CI has) gets 4 KB chat sends until one is not answered;
 * then, over 4 s of failing retries, its log may grow by a few lines only,
 * and it must say how much is free and that the disk is full.
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
#include <unistd.h>
#include <cmocka.h>

#include "support/kclient.h"

#define PARTITIONS 4
#define MSG_BYTES  4000

static struct {
    kc_proc *srv;
    kc_client *c;
    char *mnt;
    bool mounted;
} g;

static int teardown(void **state)
{
    (void)state;
    kc_client_free(g.c);
    kc_proc_free(g.srv);
    if (g.mounted && umount2(g.mnt, MNT_DETACH) != 0)
        fprintf(stderr, "umount %s: %s\n", g.mnt, strerror(errno));
    free(g.mnt);
    return 0;
}

/* Lines of the server log about failed commits (either wording). */
static size_t failure_lines(void)
{
    char *text = kc_read_file(kc_proc_log(g.srv), NULL), *line = text, *next;
    size_t n = 0;

    for (; line != NULL && *line != '\0'; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        n += strstr(line, "kchat: shard ") != NULL &&
             (strstr(line, "cannot store a batch") != NULL || strstr(line, "not applied") != NULL);
    }
    free(text);
    return n;
}

static void test_disk_full_logged_rarely(void **state)
{
    static char text[MSG_BYTES + 1];
    char *data, room[65];
    kc_user a, b;
    size_t before, after;
    int sent = 0;

    (void)state;
    g.mnt = kc_tmppath("small-disk");
    mkdir(g.mnt, 0755);
    if (mount("kchat-test", g.mnt, "tmpfs", 0, "size=4m") != 0)
        fail_msg("cannot mount a 4 MiB tmpfs on %s: %s (this test needs root or "
                 "CAP_SYS_ADMIN)", g.mnt, strerror(errno));
    g.mounted = true;
    if (asprintf(&data, "%s/data", g.mnt) < 0)
        fail();
    g.srv = kc_serve_start("disk-log", data, KC_EMBEDDED, PARTITIONS, NULL);
    assert_non_null(g.srv);
    g.c = kc_client_new(kc_proc_bootstrap(g.srv), KC_FROM_END);
    assert_non_null(g.c);
    assert_true(kc_user_new(g.c, &a, "dlog"));
    assert_true(kc_user_new(g.c, &b, "dlog"));
    const char *f[] = { b.id, NULL };
    assert_true(kc_add_friends(g.c, &a, f));
    assert_true(kc_create_room(g.c, &a, f, "disk log", room));

    /* fill the disk: one send at a time until one gets no answer */
    memset(text, 'x', MSG_BYTES);
    for (;; sent++) {
        char cid[72];
        json_t *body = json_pack("{ss ss ss}", "roomId", room, "writerId", a.id, "message",
                                 text);
        assert_true(kc_send_req(g.c, "user-add-chat", a.id, a.session, NULL, body, cid));
        json_decref(body);
        if (kc_wait_cid(g.c, "user-add-chat", cid, 4000) == NULL)
            break;
        assert_true(sent < 2000);
    }
    fprintf(stderr, "0021: the disk is full after %d sends\n", sent);

    /* it retries every 100 ms: 40 retries in 4 s, a few lines at most */
    kc_sleep_ms(1000);
    before = failure_lines();
    kc_sleep_ms(4000);
    after = failure_lines();
    fprintf(stderr, "0021: %zu failed-commit lines in all, %zu in the last 4 s\n", after,
            after - before);
    if (after - before > PARTITIONS) {
        kc_proc_log_tail(g.srv, 20, stderr);
        fail_msg("%zu lines about failed commits in 4 s", after - before);
    }
    assert_true(after >= 1);
    assert_true(kc_file_contains(kc_proc_log(g.srv), "KiB free on its disk", 20));
    assert_true(kc_file_contains(kc_proc_log(g.srv), "the disk is full", 16));
    assert_true(kc_proc_pid(g.srv) > 0 && kill(kc_proc_pid(g.srv), 0) == 0);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_disk_full_logged_rarely, teardown),
    };
    return cmocka_run_group_tests_name("0021 full disk logged every 100 ms", tests, NULL, NULL);
}
