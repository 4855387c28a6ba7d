/*
 * Regression 0008 (fixed by 58e5b98, a bug of the test support): the kchat
 * processes the tests spawn (kc_proc_start() in tests/support/kclient.c)
 * inherited every descriptor the test program had open without
 * close-on-exec: its log files, its Kafka client sockets. A server then held
 * the test's sockets and files open for as long as it ran (and past a kill
 * of the test, until its own end).
 *
 * The test opens a file and a socket without close-on-exec, starts
 * `kchat broker`, and reads the broker's /proc/PID/fd: neither may be there.
 */
#include <limits.h>
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "support/kclient.h"

/* Whether process @p pid has a descriptor for the same file as our @p fd. */
static bool holds_same_file(pid_t pid, int fd)
{
    char dir[64], path[PATH_MAX];
    struct stat mine, theirs;
    struct dirent *e;
    bool found = false;
    DIR *d;

    assert_int_equal(fstat(fd, &mine), 0);
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    d = opendir(dir);
    assert_non_null(d);
    while (!found && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        found = stat(path, &theirs) == 0 && theirs.st_dev == mine.st_dev &&
                theirs.st_ino == mine.st_ino;
    }
    closedir(d);
    return found;
}

static void test_spawned_server_inherits_no_fd(void **state)
{
    char *marker = kc_tmppath("inherited-marker"), *boot = kc_tmppath("fds.bootstrap");
    const char *args[] = {"broker", "--partitions", "1", "--bootstrap-file", boot, NULL};
    int file = open(marker, O_CREAT | O_RDWR, 0600);   /* no O_CLOEXEC, on purpose */
    int sock = socket(AF_INET, SOCK_STREAM, 0);       /* no SOCK_CLOEXEC either */
    kc_proc *p;

    (void)state;
    assert_true(file >= 0 && sock >= 0);
    p = kc_proc_start("fds-broker", args, boot, 30);
    assert_non_null(p);
    if (holds_same_file(kc_proc_pid(p), file))
        fail_msg("the spawned kchat holds the test's file %s", marker);
    if (holds_same_file(kc_proc_pid(p), sock))
        fail_msg("the spawned kchat holds the test's socket");
    assert_int_equal(kc_proc_stop(p, SIGTERM, 15, NULL), 0);
    kc_proc_free(p);
    close(sock);
    close(file);
    free(marker);
    free(boot);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spawned_server_inherits_no_fd),
    };
    return cmocka_run_group_tests_name("0008 spawned server inherits the test's descriptors",
                                       tests, NULL, NULL);
}
