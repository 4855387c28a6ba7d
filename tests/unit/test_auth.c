/*
 * The deployment secret's file and seals (include/kchat/auth.h): keygen
 * writes 64 hex digits with mode 0600 and never overwrites; load refuses a
 * missing file, a file others may read, and anything but 64 hex digits;
 * two secrets never open each other's seals; a seal opens only for its own
 * use, topic, key and kchat-cid. (Record MACs are tried on Kafka by
 * tests/integration/test_forgery.c; the openers are fuzzed by
 * tests/fuzz/fuzz_auth.c.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "kchat/auth.h"

static char g_dir[] = "/tmp/kchat-test-auth-XXXXXX";

static char *path_of(const char *name)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", g_dir, name) > 0);
    return p;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static kchat_auth *fresh(const char *name)
{
    char *p = path_of(name), err[256];
    kchat_auth *a = NULL;

    unlink(p);
    assert_int_equal(kchat_auth_keygen(p, err, sizeof(err)), KCHAT_OK);
    assert_int_equal(kchat_auth_load(p, &a, err, sizeof(err)), KCHAT_OK);
    free(p);
    return a;
}

static void test_keygen_writes_a_private_file_once(void **state)
{
    char *p = path_of("k1"), err[256], text[80] = "";
    struct stat st;
    FILE *f;

    (void)state;
    unlink(p);
    assert_int_equal(kchat_auth_keygen(p, err, sizeof(err)), KCHAT_OK);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    f = fopen(p, "r");
    assert_non_null(f);
    assert_non_null(fgets(text, sizeof(text), f));
    fclose(f);
    assert_int_equal(strlen(text), 65);
    assert_int_equal(strspn(text, "0123456789abcdef"), 64);
    assert_int_equal(kchat_auth_keygen(p, err, sizeof(err)), KCHAT_EEXIST);
    free(p);
}

static void test_load_refuses_bad_files(void **state)
{
    static const struct { const char *text; mode_t mode; const char *says; } bad[] = {
        { "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 0644,
          "readable by others" },
        { "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 0640,
          "readable by others" },
        { "00112233445566778899aabbccddeeff\n", 0600, "64 hex digits" },
        { "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 0600,
          "64 hex digits" },
        { "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00\n", 0600,
          "64 hex digits" },
        { "", 0600, "64 hex digits" },
    };
    char *p = path_of("bad"), err[256];
    kchat_auth *a = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unlink(p);
        write_file(p, bad[i].text, bad[i].mode);
        err[0] = '\0';
        assert_int_equal(kchat_auth_load(p, &a, err, sizeof(err)), KCHAT_ECONFIG);
        assert_null(a);
        if (strstr(err, bad[i].says) == NULL)
            fail_msg("case %zu: \"%s\" does not say \"%s\"", i, err, bad[i].says);
    }
    unlink(p);
    assert_int_equal(kchat_auth_load(p, &a, err, sizeof(err)), KCHAT_ECONFIG);
    write_file(p, "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff \n", 0600);
    assert_int_equal(kchat_auth_load(p, &a, err, sizeof(err)), KCHAT_OK);
    kchat_auth_free(a);
    free(p);
}

static void test_seal_opens_only_for_its_record(void **state)
{
    kchat_auth *a = fresh("s1"), *b = fresh("s2");
    const char msg[] = "{\"userId\":\"alice\",\"userPw\":\"password1\"}";
    unsigned char *sealed, *out;
    size_t sl, ol;

    (void)state;
    assert_int_equal(kchat_auth_seal(a, KCHAT_SEAL_REQUEST, "login-request", "alice", 5, "c1", 2,
                                     msg, strlen(msg), &sealed, &sl), KCHAT_OK);
    assert_int_equal(sl, strlen(msg) + KCHAT_SEAL_OVERHEAD);
    assert_null(memmem(sealed, sl, "password1", 9));
    assert_int_equal(kchat_auth_open(a, KCHAT_SEAL_REQUEST, "login-request", "alice", 5, "c1", 2,
                                     sealed, sl, &out, &ol), KCHAT_OK);
    assert_int_equal(ol, strlen(msg));
    assert_memory_equal(out, msg, ol);
    free(out);
    /* another secret, use, topic, key or cid: no */
    assert_int_equal(kchat_auth_open(b, KCHAT_SEAL_REQUEST, "login-request", "alice", 5, "c1", 2,
                                     sealed, sl, &out, &ol), KCHAT_ECRYPTO);
    assert_int_equal(kchat_auth_open(a, KCHAT_SEAL_RESPONSE, "login-request", "alice", 5, "c1",
                                     2, sealed, sl, &out, &ol), KCHAT_ECRYPTO);
    assert_int_equal(kchat_auth_open(a, KCHAT_SEAL_REQUEST, "user-add-request", "alice", 5, "c1",
                                     2, sealed, sl, &out, &ol), KCHAT_ECRYPTO);
    assert_int_equal(kchat_auth_open(a, KCHAT_SEAL_REQUEST, "login-request", "alicf", 5, "c1", 2,
                                     sealed, sl, &out, &ol), KCHAT_ECRYPTO);
    assert_int_equal(kchat_auth_open(a, KCHAT_SEAL_REQUEST, "login-request", "alice", 5, "c2", 2,
                                     sealed, sl, &out, &ol), KCHAT_ECRYPTO);
    assert_int_equal(kchat_auth_rejected(a), 4);
    assert_int_equal(kchat_auth_rejected(b), 1);
    free(sealed);
    kchat_auth_free(a);
    kchat_auth_free(b);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(g_dir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    const char *names[] = { "k1", "bad", "s1", "s2" };
    (void)state;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char *p = path_of(names[i]);
        unlink(p);
        free(p);
    }
    return rmdir(g_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keygen_writes_a_private_file_once),
        cmocka_unit_test(test_load_refuses_bad_files),
        cmocka_unit_test(test_seal_opens_only_for_its_record),
    };
    return cmocka_run_group_tests_name("auth", tests, setup, teardown);
}
