/* Read positions outside a partition: see offsets.h. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "kchat/store.h"
#include "offsets.h"

int64_t kc_stored_offset(const char *store_dir, const char *topic, int32_t partition,
                         int64_t move)
{
    kchat_store *s;
    kchat_txn *t;
    int64_t next = -1;

    assert_int_equal(kchat_store_open(store_dir, NULL, &s), KCHAT_OK);
    assert_int_equal(kchat_txn_begin(s, move > 0, &t), KCHAT_OK);
    assert_int_equal(kchat_store_offset_get(t, topic, partition, &next), KCHAT_OK);
    fprintf(stderr, "%s had stored %s [%d] up to %" PRId64 "%s\n", store_dir, topic,
            (int)partition, next, move > 0 ? ", now moved further" : "");
    if (move > 0) {
        assert_int_equal(kchat_store_offset_set(t, topic, partition, next + move), KCHAT_OK);
        assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    } else {
        kchat_txn_abort(t);
    }
    kchat_store_close(s);
    return next;
}

void kc_watermarks(const char *brokers, const char *topic, int32_t partition, int64_t *lo,
                   int64_t *hi)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;

    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    assert_non_null(rk);
    *lo = *hi = -1;
    assert_int_equal(rd_kafka_query_watermark_offsets(rk, topic, partition, lo, hi, 10000),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    fprintf(stderr, "%s [%d] holds %" PRId64 "..%" PRId64 "\n", topic, (int)partition, *lo,
            *hi);
    rd_kafka_destroy(rk);
}

void kc_push_out_oldest(kc_client *c, const char *topic, int32_t partition)
{
    char *value = malloc(KC_FILLER_RECORD);

    assert_non_null(value);
    memset(value, 'f', KC_FILLER_RECORD);
    for (int i = 0; i < KC_FILLER_COUNT; i++)
        assert_true(kc_send_raw(c, topic, partition, NULL, 0, value, KC_FILLER_RECORD, NULL, 0));
    free(value);
}
