/* Unit tests of the gateway's presence records (src/gateway/presence.c,
 * included to reach its static functions) on librdkafka's mock cluster:
 * many users in one partition make a beat of several records of at most
 * 500 ids that together list each of them once, a partition with none
 * gets one empty beat, a user whose last stream closed is still listed
 * and a reopen says nothing, and the stop gives one offline per user and
 * then one gone per partition. (Timings, signing and the HTTP side:
 * tests/integration/test_gw_presence.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gateway/presence.c"

#include <librdkafka/rdkafka_mock.h>   /* after rdkafka.h */
#include "support/kclient.h"
#include "support/mockfault.h"

#define NP 2          /* partitions of kchat-presence here */
#define NU 1100       /* users, all of partition 0: 500 + 500 + 100 per beat */

static struct {
    rd_kafka_t *mock_rk;
    rd_kafka_mock_cluster_t *mc;
    kchat_config cfg;
    kchat_gateway *gw;
    char users[NU][16];
} fx;

/* Every record of kchat-presence so far, as JSON values with their
 * partition in "_p" (a new array). */
static json_t *read_all(void)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(NP);
    json_t *all = json_array();
    int eofs = 0;

    assert_int_equal(rd_kafka_flush(fx.gw->producer, 10000), 0);
    rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(fx.mc), err,
                      sizeof(err));
    rd_kafka_conf_set(conf, "group.id", "test-gw-presence", err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err));
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    assert_non_null(c);
    rd_kafka_poll_set_consumer(c);
    for (int p = 0; p < NP; p++)
        rd_kafka_topic_partition_list_add(tp, KCHAT_TOPIC_PRESENCE, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(c, tp), 0);
    rd_kafka_topic_partition_list_destroy(tp);
    int64_t deadline = kc_now_ms() + 20000;
    while (eofs < NP && kc_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eofs++;
        } else {
            assert_int_equal(m->err, 0);
            json_t *v = json_loadb(m->payload, m->len, 0, NULL);
            assert_non_null(v);
            json_object_set_new(v, "_p", json_integer(m->partition));
            json_object_set_new(v, "_key", json_stringn(m->key, m->key_len));
            json_array_append_new(all, v);
        }
        rd_kafka_message_destroy(m);
    }
    assert_int_equal(eofs, NP);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return all;
}

/* Records of @p kind from index @p from on. */
static size_t count_kind(const json_t *all, size_t from, const char *kind)
{
    size_t n = 0;
    for (size_t i = from; i < json_array_size(all); i++)
        n += !strcmp(kc_str(json_array_get(all, i), "kind"), kind);
    return n;
}

static int setup(void **state)
{
    (void)state;
    char err[512];
    rd_kafka_conf_t *conf;

    fx.mc = kc_mock_cluster_new(1, 4, &fx.mock_rk);
    if (rd_kafka_mock_topic_create(fx.mc, KCHAT_TOPIC_PRESENCE, NP, 1) != 0)
        return -1;
    fx.cfg.sse_max_total = 16;
    if ((fx.gw = calloc(1, sizeof(*fx.gw))) == NULL ||
        (fx.gw->base = event_base_new()) == NULL)
        return -1;
    fx.gw->cfg = &fx.cfg;
    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(fx.mc),
                          err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof(err)) ||
        (fx.gw->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) == NULL)
        return -1;
    fx.gw->presence_partitions = NP;
    atomic_store(&fx.gw->ready, true);
    /* NU ids of partition 0 (as the Java client's partitioner has it) */
    for (int i = 0, n = 0; n < NU; i++) {
        char id[16];
        snprintf(id, sizeof(id), "u%d", i);
        if (kc_partition_for(id, NP) == 0)
            memcpy(fx.users[n++], id, sizeof(id));
    }
    return kchat__gw_presence_init(fx.gw) == KCHAT_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kchat__gw_presence_free(fx.gw);
    rd_kafka_destroy(fx.gw->producer);
    event_base_free(fx.gw->base);
    free(fx.gw);
    kc_mock_cluster_free(fx.mc, fx.mock_rk);
    return 0;
}

static void test_beat_split_and_stop(void **state)
{
    (void)state;
    kchat_gateway *gw = fx.gw;

    assert_int_equal((int)strlen(gw->presence_id), KCHAT_PRESENCE_GW_LEN);
    for (int i = 0; i < NU; i++)
        kchat__gw_presence_open(gw, fx.users[i]);
    kchat__gw_presence_open(gw, fx.users[0]);       /* a second tab */
    kchat__gw_presence_close(gw, fx.users[0]);      /* one of two: still open */
    kchat__gw_presence_close(gw, fx.users[1]);      /* the last: offline pending */
    kchat__gw_presence_close(gw, fx.users[2]);
    kchat__gw_presence_open(gw, fx.users[2]);       /* reopened within the debounce */
    assert_int_equal(gw->presence_users, NU);
    presence_beat(gw);

    json_t *all = read_all();
    assert_int_equal(count_kind(all, 0, "online"), NU);
    assert_int_equal(count_kind(all, 0, "offline"), 0);
    /* the beat: 3 records on partition 0 (500, 500, 100), one empty on 1 */
    char *seen = calloc(NU, 1);
    size_t beats0 = 0, beats1 = 0, listed = 0;
    for (size_t i = 0; i < json_array_size(all); i++) {
        json_t *r = json_array_get(all, i), *u;
        size_t k;
        if (strcmp(kc_str(r, "kind"), "beat") != 0)
            continue;
        assert_string_equal(kc_str(r, "gateway"), gw->presence_id);
        assert_string_equal(kc_str(r, "_key"), gw->presence_id);
        json_t *users = json_object_get(r, "users");
        assert_true(json_array_size(users) <= KCHAT_PRESENCE_BEAT_MAX);
        if (kc_int(r, "_p", -1) == 1) {
            beats1++;
            assert_int_equal(json_array_size(users), 0);
            continue;
        }
        beats0++;
        json_array_foreach(users, k, u) {
            int idx = -1;
            for (int j = 0; j < NU && idx < 0; j++)
                if (!strcmp(fx.users[j], json_string_value(u)))
                    idx = j;
            assert_true(idx >= 0);
            assert_false(seen[idx]);   /* listed once */
            seen[idx] = 1;
            listed++;
        }
    }
    free(seen);
    assert_int_equal(beats0, 3);
    assert_int_equal(beats1, 1);
    assert_int_equal(listed, NU);   /* users[1], offline pending, included */

    /* the stop: an offline per user, then a gone per partition, last */
    size_t mark = json_array_size(all);
    json_decref(all);
    kchat__gw_presence_stop(gw);
    kchat__gw_presence_open(gw, "late");            /* after the stop: nothing */
    all = read_all();
    /* (read again from the start: partitions interleave differently) */
    assert_int_equal(count_kind(all, 0, "offline"), NU);
    assert_int_equal(count_kind(all, 0, "gone"), NP);
    assert_int_equal(count_kind(all, 0, "online"), NU);
    assert_int_equal(json_array_size(all), mark + NU + NP);
    for (int p = 0; p < NP; p++) {
        json_t *last = NULL;
        for (size_t i = 0; i < json_array_size(all); i++)
            if (kc_int(json_array_get(all, i), "_p", -1) == p)
                last = json_array_get(all, i);
        assert_non_null(last);
        assert_string_equal(kc_str(last, "kind"), "gone");
    }
    assert_int_equal(gw->presence_users, 0);
    json_decref(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_beat_split_and_stop),
    };
    return cmocka_run_group_tests_name("gw_presence", tests, setup, teardown);
}
