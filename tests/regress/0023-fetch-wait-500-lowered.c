/*
 * Regression 0023 (fixed by 803c527): the consumer lowers fetch.wait.max.ms
 * from librdkafka's default (500 ms) to 100 ms when the caller left it at
 * that default, and it could not tell "left at the default" from "set to
 * 500": `kchat serve --fetch-wait-ms 500` (or -X fetch.wait.max.ms=500) ran
 * with 100. A caller that chose its wait now says so (keep_fetch_wait).
 *
 * A unit test of src/pipeline/consumer.c: it reads back the setting of the
 * consumer it started and stops it at once, so no broker is needed (the
 * bootstrap is a closed port). (Moved from tests/unit/test_consumer.c,
 * test_fetch_wait_kept; its conf trimmed to what the consumer needs.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include <librdkafka/rdkafka.h>

#include "kchat/consumer.h"
#include "kchat/error.h"

#define NT 3                 /* topics */

static const char *const topic_names[NT] = {"kc-req-a", "kc-req-b", "kc-internal"};

static rd_kafka_conf_t *consumer_rk_conf(const char *group)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {
        {"bootstrap.servers", "127.0.0.1:1"},   /* nothing there: no broker is needed */
        {"log_level", "2"},                      /* so quiet its refused connections */
        {"group.id", group},
        {"session.timeout.ms", "6000"},
        {"heartbeat.interval.ms", "100"},
    };
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
        assert_int_equal(rd_kafka_conf_set(conf, kv[i][0], kv[i][1], err, sizeof(err)),
                         RD_KAFKA_CONF_OK);
    return conf;
}

static void noop_process(void *opaque, unsigned worker, rd_kafka_message_t **msgs, size_t n)
{
    (void)opaque;
    (void)worker;
    (void)msgs;
    (void)n;
}

/* A fetch wait the caller set to librdkafka's default (500 ms) was taken as
 * unset and lowered to 100 ms, so `kchat serve --fetch-wait-ms 500` (or
 * -X fetch.wait.max.ms=500) ran with 100. */
static void test_fetch_wait_kept(void **state)
{
    (void)state;
    for (int keep = 0; keep < 2; keep++) {
        kchat_consumer_conf cc = {.topics = topic_names, .n_topics = NT, .n_workers = 1,
                                  .process = noop_process, .keep_fetch_wait = keep};
        rd_kafka_conf_t *conf = consumer_rk_conf(keep ? "fetch-wait-kept" : "fetch-wait-lowered");
        kchat_consumer *c = NULL;
        char err[256], v[32];
        size_t n = sizeof(v);

        assert_int_equal(rd_kafka_conf_set(conf, "fetch.wait.max.ms", "500", err, sizeof(err)),
                         RD_KAFKA_CONF_OK);
        assert_int_equal(kchat_consumer_start(&cc, conf, &c, err, sizeof(err)), KCHAT_OK);
        assert_int_equal(rd_kafka_conf_get(rd_kafka_conf(kchat_consumer_handle(c)),
                                           "fetch.wait.max.ms", v, &n), RD_KAFKA_CONF_OK);
        assert_string_equal(v, keep ? "500" : "100");
        kchat_consumer_stop(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fetch_wait_kept),
    };
    return cmocka_run_group_tests_name("0023 fetch wait of 500 ms lowered", tests, NULL, NULL);
}
