/*
 * Regression 0029 (fixed by 0a23e42): kchat_consumer_start() started its
 * workers before subscribing, so when rd_kafka_subscribe() refused (here an
 * invalid regex topic "^[") the workers had already called idle(), although
 * a failed start promises that no callback has been called. 20 failed
 * starts made 29 idle() calls before the fix; none now.
 *
 * A unit test of src/pipeline/consumer.c (moved from
 * tests/unit/test_consumer.c, test_failed_start_calls_no_callback): the
 * subscription is refused before any connection, so no broker is needed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "kchat/consumer.h"
#include "kchat/error.h"

static atomic_uint idle_calls;

static void noop_process(void *opaque, unsigned worker, rd_kafka_message_t **msgs, size_t n)
{
    (void)opaque;
    (void)worker;
    (void)msgs;
    (void)n;
}

static void count_idle(void *opaque, unsigned worker)
{
    (void)opaque;
    (void)worker;
    atomic_fetch_add(&idle_calls, 1);
}

static void test_failed_start_calls_no_callback(void **state)
{
    (void)state;
    const char *const bad[] = {"^["};
    kchat_consumer_conf cc = {.topics = bad, .n_topics = 1, .n_workers = 2,
                              .process = noop_process, .idle = count_idle, .tick_ms = 1};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    kchat_consumer *c = NULL;
    char err[256];

    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", "127.0.0.1:1", err, sizeof(err)),
                     RD_KAFKA_CONF_OK);   /* nothing there: no broker is needed */
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", "failed-start", err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "log_level", "2", err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(kchat_consumer_start(&cc, conf, &c, err, sizeof(err)), KCHAT_EKAFKA);
        assert_non_null(strstr(err, "subscribe"));
        assert_null(c);
    }
    assert_int_equal(atomic_load(&idle_calls), 0);
    rd_kafka_conf_destroy(conf);   /* still ours after a failed start */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failed_start_calls_no_callback),
    };
    return cmocka_run_group_tests_name("0029 failed consumer start called idle()", tests, NULL,
                                       NULL);
}
