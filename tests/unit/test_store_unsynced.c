/*
 * Unit tests of the unsynced mark (kchat_store_opts::unsynced,
 * kchat_store_unsynced_lost()): a store that commits without fsync says
 * so in a file naming this boot; a store that another boot left so is
 * refused, untouched, until it is moved aside.
 *
 * A lost boot is made by writing a mark that names another boot id: the
 * test cannot restart the machine.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>

#include "kchat/error.h"
#include "kchat/store.h"
#include "support/kclient.h"

typedef struct fx {
    char base[512];   /* the test's temporary directory */
    char dir[600];    /* base/shard: the store */
    char mark[700];   /* base/shard/unsynced */
} fx;

static int setup(void **state)
{
    const char *tmp = getenv("KCHAT_TEST_TMP");
    fx *f = calloc(1, sizeof *f);

    if (!f)
        return -1;
    snprintf(f->base, sizeof f->base, "%s/test_unsynced.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->base)) {
        free(f);
        return -1;
    }
    snprintf(f->dir, sizeof f->dir, "%s/shard", f->base);
    snprintf(f->mark, sizeof f->mark, "%s/unsynced", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;

    kc_rm_rf(f->base);
    free(f);
    return 0;
}

/* The contents of @p path into @p buf ("" when it cannot be read). */
static void slurp(const char *path, char *buf, size_t len)
{
    FILE *fp = fopen(path, "r");
    size_t n = fp ? fread(buf, 1, len - 1, fp) : 0;

    buf[n] = '\0';
    if (fp)
        fclose(fp);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

/* Put @p value under key "k" and commit. */
static void put_k(kchat_store *s, const char *value)
{
    kchat_txn *t;

    assert_int_equal(kchat_txn_begin(s, true, &t), KCHAT_OK);
    assert_int_equal(kchat_txn_put(t, KCHAT_TBL_USERS, "k", 1, value, strlen(value)), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
}

static void expect_k(const fx *f, const char *value)
{
    kchat_store *s;
    kchat_txn *t;
    const void *v;
    size_t vl;

    assert_int_equal(kchat_store_open(f->dir, NULL, &s), KCHAT_OK);
    assert_int_equal(kchat_txn_begin(s, false, &t), KCHAT_OK);
    assert_int_equal(kchat_txn_get(t, KCHAT_TBL_USERS, "k", 1, &v, &vl), KCHAT_OK);
    assert_int_equal(vl, strlen(value));
    assert_memory_equal(v, value, vl);
    kchat_txn_abort(t);
    kchat_store_close(s);
}

/* Opened unsynced, the store names this boot in its mark before it
 * commits anything; closed, it syncs and the mark is gone. */
static void test_mark_while_open(void **state)
{
    fx *f = *state;
    kchat_store_opts o = {.unsynced = true};
    char boot[128], mark[128];
    kchat_store *s;
    bool lost = true;

    slurp("/proc/sys/kernel/random/boot_id", boot, sizeof(boot));
    assert_true(strlen(boot) > 10);   /* kchat's unsynced stores need Linux's boot id */
    assert_int_equal(kchat_store_open(f->dir, &o, &s), KCHAT_OK);
    slurp(f->mark, mark, sizeof(mark));
    assert_string_equal(mark, boot);
    assert_int_equal(kchat_store_unsynced_lost(f->dir, &lost), KCHAT_OK);
    assert_false(lost);
    put_k(s, "one");
    kchat_store_close(s);
    assert_int_equal(access(f->mark, F_OK), -1);
    assert_int_equal(kchat_store_unsynced_lost(f->dir, &lost), KCHAT_OK);
    assert_false(lost);
    expect_k(f, "one");
}

/* A process that dies with the store open leaves the mark of this boot:
 * the next open, unsynced or not, takes the store with every commit; an
 * open that is not unsynced syncs it and removes the mark. */
static void test_killed_process_same_boot(void **state)
{
    fx *f = *state;
    int status;
    pid_t pid;

    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        kchat_store_opts o = {.unsynced = true};
        kchat_store *s;
        kchat_txn *t;

        if (kchat_store_open(f->dir, &o, &s) != KCHAT_OK ||
            kchat_txn_begin(s, true, &t) != KCHAT_OK ||
            kchat_txn_put(t, KCHAT_TBL_USERS, "k", 1, "kept", 4) != KCHAT_OK ||
            kchat_txn_commit(t) != KCHAT_OK)
            _exit(1);
        _exit(0);   /* no close: no sync, the mark stays */
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(access(f->mark, F_OK), 0);
    expect_k(f, "kept");
    assert_int_equal(access(f->mark, F_OK), -1);

    kchat_store_opts o = {.unsynced = true};
    kchat_store *s;

    assert_int_equal(kchat_store_open(f->dir, &o, &s), KCHAT_OK);
    put_k(s, "again");
    kchat_store_close(s);
    expect_k(f, "again");
}

/* A mark that names another boot: the machine restarted while the store
 * was open unsynced. Every open is refused and nothing in the directory
 * changes; once the mark is gone (the copy moved aside and made anew, or
 * an operator's decision) the store opens again. */
static void test_lost_boot_refused(void **state)
{
    fx *f = *state;
    kchat_store_opts unsynced = {.unsynced = true}, plain = {0};
    char data[700], mark[128];
    struct stat before, after;
    kchat_store *s = NULL;
    bool lost = false;

    assert_int_equal(kchat_store_open(f->dir, &unsynced, &s), KCHAT_OK);
    put_k(s, "one");
    kchat_store_close(s);
    write_file(f->mark, "00000000-1111-2222-3333-444444444444\n");
    snprintf(data, sizeof(data), "%s/data.mdb", f->dir);
    assert_int_equal(stat(data, &before), 0);

    assert_int_equal(kchat_store_unsynced_lost(f->dir, &lost), KCHAT_OK);
    assert_true(lost);
    s = NULL;
    assert_int_equal(kchat_store_open(f->dir, &unsynced, &s), KCHAT_EUNSYNCED);
    assert_null(s);
    assert_int_equal(kchat_store_open(f->dir, &plain, &s), KCHAT_EUNSYNCED);
    assert_int_equal(kchat_store_open(f->dir, NULL, &s), KCHAT_EUNSYNCED);
    assert_null(s);
    assert_int_equal(stat(data, &after), 0);
    assert_int_equal(after.st_size, before.st_size);
    assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
    assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
    slurp(f->mark, mark, sizeof(mark));
    assert_string_equal(mark, "00000000-1111-2222-3333-444444444444\n");

    assert_int_equal(unlink(f->mark), 0);
    expect_k(f, "one");
}

/* A mark that names no boot cannot be told from a lost one: refused. */
static void test_empty_mark_refused(void **state)
{
    fx *f = *state;
    kchat_store *s;
    bool lost = false;

    assert_int_equal(kchat_store_open(f->dir, NULL, &s), KCHAT_OK);
    kchat_store_close(s);
    write_file(f->mark, "");
    assert_int_equal(kchat_store_unsynced_lost(f->dir, &lost), KCHAT_OK);
    assert_true(lost);
    assert_int_equal(kchat_store_open(f->dir, NULL, &s), KCHAT_EUNSYNCED);
}

/* No directory, no mark: not lost; bad arguments: EINVAL. */
static void test_lost_arguments(void **state)
{
    fx *f = *state;
    bool lost = true;

    assert_int_equal(kchat_store_unsynced_lost(f->dir, &lost), KCHAT_OK);
    assert_false(lost);
    assert_int_equal(kchat_store_unsynced_lost(NULL, &lost), KCHAT_EINVAL);
    assert_int_equal(kchat_store_unsynced_lost(f->dir, NULL), KCHAT_EINVAL);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_mark_while_open),
        T(test_killed_process_same_boot),
        T(test_lost_boot_refused),
        T(test_empty_mark_refused),
        T(test_lost_arguments),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
