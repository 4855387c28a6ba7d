/* Unit tests of the shared Kafka helpers and of the option table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "kchat/config.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

/* Vectors of the Java client's Utils.murmur2, which every producer of a
 * kchat request must agree with. */
static void test_murmur2_java_vectors(void **state)
{
    static const struct { const char *key; int32_t want; } v[] = {
        {"21", -973932308},
        {"foobar", -790332482},
        {"a-little-bit-long-string", -985981536},
        {"a-little-bit-longer-string", -1486304829},
        {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
        {"abc", 479470107},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        assert_int_equal((int32_t)kchat_murmur2(v[i].key, strlen(v[i].key)), v[i].want);
}

static void test_partition_for_key(void **state)
{
    (void)state;
    for (int32_t n = 1; n <= 64; n++) {
        int32_t p = kchat_partition_for_key("alice", 5, n);
        assert_true(p >= 0 && p < n);
        assert_int_equal(p, (int32_t)((kchat_murmur2("alice", 5) & 0x7fffffff) % (uint32_t)n));
    }
}

static void test_conf_kv(void **state)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[256], val[64];
    size_t len = sizeof(val);

    (void)state;
    assert_int_equal(kchat_kafka_conf_kv(conf, "linger.ms=7", err, sizeof(err)), KCHAT_OK);
    assert_int_equal(rd_kafka_conf_get(conf, "linger.ms", val, &len), RD_KAFKA_CONF_OK);
    assert_string_equal(val, "7");
    assert_int_equal(kchat_kafka_conf_kv(conf, "no-equals", err, sizeof(err)), KCHAT_ECONFIG);
    assert_int_equal(kchat_kafka_conf_kv(conf, "=x", err, sizeof(err)), KCHAT_ECONFIG);
    assert_int_equal(kchat_kafka_conf_kv(conf, "no.such.property=1", err, sizeof(err)),
                     KCHAT_ECONFIG);
    assert_non_null(strstr(err, "no.such.property"));
    rd_kafka_conf_destroy(conf);
}

static int parse(kchat_config *c, char *errstr, size_t n, int argc, ...)
{
    char *argv[32];
    va_list ap;

    va_start(ap, argc);
    for (int i = 0; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    return kchat_config_parse_args(c, argc, argv, 0, errstr, n);
}

static void test_config_defaults_and_flags(void **state)
{
    kchat_config c;
    char err[256];

    (void)state;
    assert_int_equal(kchat_config_init(&c), KCHAT_OK);
    assert_string_equal(c.brokers, "");
    assert_string_equal(c.data_dir, "./data");
    assert_int_equal(c.partitions, 8);
    assert_true(c.session_check);
    assert_int_equal(c.session_idle, 604800);
    assert_int_equal(parse(&c, err, sizeof(err), 7, "--partitions", "4", "--data=/tmp/x",
                           "-X", "linger.ms=3", "--no-session-check", "-Xacks=all"), KCHAT_OK);
    assert_int_equal(c.partitions, 4);
    assert_string_equal(c.data_dir, "/tmp/x");
    assert_false(c.session_check);
    assert_int_equal(c.n_x, 2);
    assert_string_equal(c.x[0], "linger.ms=3");
    assert_string_equal(c.x[1], "acks=all");
    kchat_config_release(&c);
}

static void test_config_errors(void **state)
{
    kchat_config c;
    char err[256];

    (void)state;
    assert_int_equal(kchat_config_init(&c), KCHAT_OK);
    assert_int_equal(parse(&c, err, sizeof(err), 1, "--nope"), KCHAT_ECONFIG);
    assert_non_null(strstr(err, "nope"));
    assert_int_equal(parse(&c, err, sizeof(err), 2, "--partitions", "0"), KCHAT_ECONFIG);
    assert_int_equal(parse(&c, err, sizeof(err), 2, "--partitions", "8x"), KCHAT_ECONFIG);
    assert_int_equal(parse(&c, err, sizeof(err), 1, "--partitions"), KCHAT_ECONFIG);
    assert_int_equal(parse(&c, err, sizeof(err), 2, "--events-format", "xml"), KCHAT_ECONFIG);
    assert_int_equal(parse(&c, err, sizeof(err), 2, "--session-check", "maybe"), KCHAT_ECONFIG);
    assert_int_equal(parse(&c, err, sizeof(err), 1, "stray"), KCHAT_ECONFIG);
    assert_int_equal(parse(&c, err, sizeof(err), 1, "--help"), 1);
    kchat_config_release(&c);
}

static void test_config_file_then_flags(void **state)
{
    char path[] = "/tmp/kchat-config-XXXXXX", err[256];
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    kchat_config c;

    (void)state;
    assert_non_null(f);
    fprintf(f, "# a comment\n\npartitions = 16\nworkers=3\nkafka.linger.ms = 9\n"
               "X = acks=1\ndata = /srv/kchat\n");
    fclose(f);
    assert_int_equal(kchat_config_init(&c), KCHAT_OK);
    /* the flag wins over the file whatever their order */
    assert_int_equal(parse(&c, err, sizeof(err), 4, "--partitions", "2", "--config", path),
                     KCHAT_OK);
    assert_int_equal(c.partitions, 2);
    assert_int_equal(c.workers, 3);
    assert_string_equal(c.data_dir, "/srv/kchat");
    assert_int_equal(c.n_x, 2);
    assert_string_equal(c.x[0], "linger.ms=9");
    assert_string_equal(c.x[1], "acks=1");
    kchat_config_release(&c);

    f = fopen(path, "w");
    fprintf(f, "unknown = 1\n");
    fclose(f);
    assert_int_equal(kchat_config_init(&c), KCHAT_OK);
    assert_int_equal(parse(&c, err, sizeof(err), 2, "--config", path), KCHAT_ECONFIG);
    assert_non_null(strstr(err, ":1:"));
    kchat_config_release(&c);
    assert_int_equal(kchat_config_init(&c), KCHAT_OK);
    assert_int_equal(parse(&c, err, sizeof(err), 2, "--config", "/nonexistent/kchat.conf"),
                     KCHAT_EIO);
    kchat_config_release(&c);
    unlink(path);
}

/* --fetch-wait-ms: -1 picks by broker kind, a value applies everywhere,
 * and -X fetch.wait.max.ms wins over both (the caller then sets nothing). */
static void test_config_fetch_wait(void **state)
{
    kchat_config c;
    char err[256];

    (void)state;
    assert_true(kchat_kafka_is_mock_cluster("mockCluster1fc2db720c00"));
    assert_false(kchat_kafka_is_mock_cluster("MkU3OEVBNTcwNTJENDM2Qk"));
    assert_false(kchat_kafka_is_mock_cluster(NULL));
    assert_int_equal(kchat_config_init(&c), KCHAT_OK);
    assert_int_equal(c.fetch_wait_ms, -1);
    assert_int_equal(kchat_config_fetch_wait_ms(&c, true), KCHAT_FETCH_WAIT_MOCK_MS);
    assert_int_equal(kchat_config_fetch_wait_ms(&c, false), KCHAT_FETCH_WAIT_KAFKA_MS);
    assert_int_equal(parse(&c, err, sizeof(err), 2, "--fetch-wait-ms", "250"), KCHAT_OK);
    assert_int_equal(kchat_config_fetch_wait_ms(&c, true), 250);
    assert_int_equal(kchat_config_fetch_wait_ms(&c, false), 250);
    assert_int_equal(parse(&c, err, sizeof(err), 2, "-X", "fetch.wait.max.msx=1"), KCHAT_OK);
    assert_int_equal(kchat_config_fetch_wait_ms(&c, false), 250);
    assert_int_equal(parse(&c, err, sizeof(err), 2, "-X", "fetch.wait.max.ms=7"), KCHAT_OK);
    assert_int_equal(kchat_config_fetch_wait_ms(&c, true), -1);
    assert_int_equal(kchat_config_fetch_wait_ms(&c, false), -1);
    assert_int_equal(parse(&c, err, sizeof(err), 2, "--fetch-wait-ms", "-2"), KCHAT_ECONFIG);
    kchat_config_release(&c);
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(kchat_strerror(KCHAT_OK), "success");
    assert_string_equal(kchat_errname(KCHAT_EMAPFULL), "EMAPFULL");
    assert_string_equal(kchat_strerror(12345), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_murmur2_java_vectors),
        cmocka_unit_test(test_partition_for_key),
        cmocka_unit_test(test_conf_kv),
        cmocka_unit_test(test_config_defaults_and_flags),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_config_file_then_flags),
        cmocka_unit_test(test_config_fetch_wait),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
