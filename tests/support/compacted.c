/*
 * kchat's compacted topics as Kafka's log cleaner leaves them, and shard
 * stores as text (compacted.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "compacted.h"
#include "kclient.h"
#include "mockfault.h"
#include "kchat/kafka.h"
#include "kchat/store.h"
#include "kchat/topics.h"

/* The compacted topics, in the order kc_compacted keeps them. */
static const kchat_topic_id topic_ids[] = {KCHAT_T_CHANGELOG, KCHAT_T_META, KCHAT_T_DIRECTORY,
                                           KCHAT_T_ROOMS};
#define N_TOPICS (sizeof(topic_ids) / sizeof(topic_ids[0]))
#define CHANGELOG 0   /* its index in topic_ids */

/* A record read, copied out of its consumer (which cannot be destroyed
 * while a message of its is kept). */
struct rec {
    void *key, *value;            /* value NULL: a tombstone */
    size_t key_len, value_len;
    rd_kafka_headers_t *hdrs;     /* NULL: none */
};

/* Every record of one partition, in log order. */
struct part_log {
    struct rec *r;
    size_t n, cap;
};

struct kc_compacted {
    int partitions;
    struct part_log *logs;        /* [topic * partitions + partition] */
};

static uint64_t header_u64(const struct rec *r, const char *name)
{
    const void *v;
    size_t len;
    char buf[24];

    if (r->hdrs == NULL || rd_kafka_header_get_last(r->hdrs, name, &v, &len) || len == 0 ||
        len >= sizeof(buf))
        return 0;
    memcpy(buf, v, len);
    buf[len] = '\0';
    return strtoull(buf, NULL, 10);
}

static void keep(struct part_log *l, const rd_kafka_message_t *m)
{
    struct rec *r;
    rd_kafka_headers_t *h = NULL;

    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        assert_non_null(l->r = realloc(l->r, l->cap * sizeof(*l->r)));
    }
    r = &l->r[l->n++];
    *r = (struct rec){.key_len = m->key_len, .value_len = m->len};
    assert_non_null(r->key = malloc(m->key_len + 1));
    memcpy(r->key, m->key, m->key_len);
    if (m->payload != NULL) {
        assert_non_null(r->value = malloc(m->len + 1));
        memcpy(r->value, m->payload, m->len);
    }
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
        r->hdrs = rd_kafka_headers_copy(h);
}

const char *kc_compacted_cluster(int partitions, rd_kafka_mock_cluster_t **mock,
                                 rd_kafka_t **host)
{
    *mock = kc_mock_cluster_new(1, 3, host);
    for (size_t t = 0; t < kchat_topic_count(); t++)
        assert_int_equal(rd_kafka_mock_topic_create(*mock, kchat_topic_name(t), partitions, 1),
                         0);
    return rd_kafka_mock_cluster_bootstraps(*mock);
}

void kc_two_clusters_free(kc_two_clusters *t)
{
    kc_client_free(t->client);
    kc_proc_free(t->srv);
    for (int i = 0; i < 2; i++)
        kc_mock_cluster_free(t->mock[i], t->host[i]);
    *t = (kc_two_clusters){0};
}

kc_compacted *kc_compacted_read(const char *brokers, int partitions)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(16);
    rd_kafka_t *rk;
    kc_compacted *c = calloc(1, sizeof(*c));
    bool *at_end = calloc(N_TOPICS * (size_t)partitions, sizeof(*at_end));
    size_t eof = 0;
    int64_t deadline = kc_now_ms() + 30000;

    assert_non_null(c);
    assert_non_null(at_end);
    c->partitions = partitions;
    assert_non_null(c->logs = calloc(N_TOPICS * (size_t)partitions, sizeof(*c->logs)));
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", "kc-compacted", errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "isolation.level", "read_committed", errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    assert_non_null(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr)));
    for (size_t t = 0; t < N_TOPICS; t++)
        for (int p = 0; p < partitions; p++)
            rd_kafka_topic_partition_list_add(tp, kchat_topic(topic_ids[t]), p)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, tp), 0);
    rd_kafka_topic_partition_list_destroy(tp);
    while (eof < N_TOPICS * (size_t)partitions && kc_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        size_t t = 0, i;

        if (m == NULL)
            continue;
        while (t < N_TOPICS && strcmp(rd_kafka_topic_name(m->rkt), kchat_topic(topic_ids[t])))
            t++;
        assert_true(t < N_TOPICS && m->partition >= 0 && m->partition < partitions);
        i = t * (size_t)partitions + (size_t)m->partition;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (!at_end[i]) {
                at_end[i] = true;
                eof++;
            }
        } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            keep(&c->logs[i], m);
        }
        rd_kafka_message_destroy(m);
    }
    assert_int_equal(eof, N_TOPICS * (size_t)partitions);
    free(at_end);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return c;
}

/* Whether record @p i of @p l has a later record of the same key. */
static bool superseded(const struct part_log *l, size_t i)
{
    const struct rec *a = &l->r[i];

    for (size_t j = i + 1; j < l->n; j++) {
        const struct rec *b = &l->r[j];
        if (b->key_len == a->key_len && memcmp(b->key, a->key, a->key_len) == 0)
            return true;
    }
    return false;
}

/* Changelog transactions of @p l whose last change is @p gone and that
 * keep another. */
static size_t torn(const struct part_log *l, const bool *gone)
{
    size_t n = 0;

    for (size_t i = 0; i < l->n; i++) {
        uint64_t last = header_u64(&l->r[i], KCHAT_HDR_CL_LAST);
        if (!gone[i] || last == 0 || header_u64(&l->r[i], KCHAT_HDR_CL_SEQ) != last)
            continue;
        for (size_t j = 0; j < i; j++)
            if (!gone[j] && header_u64(&l->r[j], KCHAT_HDR_CL_LAST) == last) {
                n++;
                break;
            }
    }
    return n;
}

kc_compacted_counts kc_compacted_copy(kc_compacted *c, const char *brokers,
                                      bool tombstones_expired)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    kc_compacted_counts k = {0};

    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    assert_non_null(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)));
    for (size_t t = 0; t < N_TOPICS; t++) {
        for (int p = 0; p < c->partitions; p++) {
            struct part_log *l = &c->logs[t * (size_t)c->partitions + (size_t)p];
            bool *gone = calloc(l->n + 1, sizeof(*gone));

            assert_non_null(gone);
            for (size_t i = 0; i < l->n; i++) {
                if (superseded(l, i)) {
                    gone[i] = true;
                    k.superseded++;
                } else if (tombstones_expired && l->r[i].value == NULL) {
                    gone[i] = true;
                    k.tombstones++;
                }
            }
            if (t == CHANGELOG)
                k.torn += torn(l, gone);
            for (size_t i = 0; i < l->n; i++) {
                struct rec *r = &l->r[i];

                if (!gone[i]) {
                    assert_int_equal(rd_kafka_producev(
                                         rk, RD_KAFKA_V_TOPIC(kchat_topic(topic_ids[t])),
                                         RD_KAFKA_V_PARTITION(p),
                                         RD_KAFKA_V_KEY(r->key, r->key_len),
                                         RD_KAFKA_V_VALUE(r->value, r->value ? r->value_len : 0),
                                         RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                         RD_KAFKA_V_HEADERS(r->hdrs), RD_KAFKA_V_END),
                                     RD_KAFKA_RESP_ERR_NO_ERROR);
                    r->hdrs = NULL;   /* the producer's now */
                    k.kept++;
                }
                if (r->hdrs != NULL)
                    rd_kafka_headers_destroy(r->hdrs);
                free(r->key);
                free(r->value);
            }
            free(l->r);
            free(gone);
        }
    }
    assert_int_equal(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
    free(c->logs);
    free(c);
    return k;
}

/* ---- shards as text ---- */

struct dump {
    char *buf;
    size_t len, cap;
    int table;
    bool as_served;   /* leave out what a node changes as it serves on */
};

static int dump_one(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    static const char *const own[] = {"i:changelog", "i:outbox_seq", "s:cluster_id"};
    struct dump *d = arg;
    size_t need = 32 + 2 * (kl + vl), n_own = d->as_served ? sizeof(own) / sizeof(own[0]) : 1;

    for (size_t i = 0; d->table == KCHAT_TBL_META && i < n_own; i++)
        if (kl == strlen(own[i]) && memcmp(k, own[i], kl) == 0)
            return 0;
    if (d->len + need > d->cap) {
        d->cap = 2 * (d->len + need);
        assert_non_null(d->buf = realloc(d->buf, d->cap));
    }
    d->len += (size_t)sprintf(d->buf + d->len, "%d:", d->table);
    for (size_t i = 0; i < kl; i++)
        d->len += (size_t)sprintf(d->buf + d->len, "%02x", ((const unsigned char *)k)[i]);
    d->buf[d->len++] = '=';
    for (size_t i = 0; i < vl; i++)
        d->len += (size_t)sprintf(d->buf + d->len, "%02x", ((const unsigned char *)v)[i]);
    d->buf[d->len++] = '\n';
    d->buf[d->len] = '\0';
    return 0;
}

char *kc_store_dump(kchat_store *s, bool as_served, size_t *rows)
{
    struct dump d = {.as_served = as_served};
    kchat_txn *t;

    assert_int_equal(kchat_txn_begin(s, false, &t), KCHAT_OK);
    for (d.table = 0; d.table < KCHAT_TBL__COUNT; d.table++) {
        if (d.table == KCHAT_TBL_CHANGELOG ||
            (as_served && (d.table == KCHAT_TBL_OFFSETS || d.table == KCHAT_TBL_OUTBOX ||
                           d.table == KCHAT_TBL_APPLIED)))
            continue;
        assert_int_equal(kchat_txn_scan(t, (kchat_table)d.table, NULL, 0, false, dump_one, &d),
                         KCHAT_OK);
    }
    kchat_txn_abort(t);
    *rows = 0;
    for (size_t i = 0; i < d.len; i++)
        *rows += d.buf[i] == '\n';
    return d.buf ? d.buf : strdup("");
}

/* kc_store_dump(.., true, ..) of shard @p shard of data directory @p data_dir. */
static char *shard_dump(const char *data_dir, int shard, size_t *rows)
{
    char path[4096], *text;
    kchat_store *s;

    snprintf(path, sizeof(path), "%s/shard-%04d", data_dir, shard);
    assert_int_equal(kchat_store_open(path, NULL, &s), KCHAT_OK);
    text = kc_store_dump(s, true, rows);
    kchat_store_close(s);
    return text;
}

/* The length of the line at @p p, its newline included. */
static size_t line_len(const char *p)
{
    const char *end = strchr(p, '\n');
    return end ? (size_t)(end - p + 1) : strlen(p);
}

/* Print each line of @p a that @p b lacks, after @p tag. */
static void dump_missing(const char *tag, const char *a, const char *b)
{
    for (const char *line = a; *line != '\0';) {
        size_t len = line_len(line);
        bool found = false;

        for (const char *q = b; !found && *q != '\0'; q += line_len(q))
            found = line_len(q) == len && memcmp(q, line, len) == 0;
        if (!found)
            fprintf(stderr, "%s %.*s%s", tag, (int)(len > 200 ? 200 : len), line,
                    len > 200 ? "...\n" : "");
        line += len;
    }
}

size_t kc_shards_compare(const char *want, const char *got, int partitions, const char *extra)
{
    size_t total = 0;

    for (int p = 0; p < partitions; p++) {
        size_t rows, rows_got;
        char *a = shard_dump(want, p, &rows), *b = shard_dump(got, p, &rows_got);

        if (strcmp(a, b) != 0) {
            fprintf(stderr, "shard %d: %zu rows, %zu in %s\n", p, rows, rows_got, got);
            dump_missing("  lost:", a, b);
            dump_missing(extra, b, a);
        }
        assert_string_equal(a, b);
        total += rows;
        free(a);
        free(b);
    }
    return total;
}

void kc_wait_restored_whole(const kc_proc *srv, int partitions)
{
    char said[96];
    int64_t deadline = kc_now_ms() + 60000;

    snprintf(said, sizeof(said), "restored from %s", KCHAT_TOPIC_CHANGELOG);
    while (kc_file_count(kc_proc_log(srv), said) < (size_t)partitions && kc_now_ms() < deadline)
        kc_sleep_ms(100);
    assert_int_equal(kc_file_count(kc_proc_log(srv), said), partitions);
    /* no transaction taken for one its writer never finished */
    assert_int_equal(kc_file_count(kc_proc_log(srv), ", 0 of unfinished transactions dropped"),
                     partitions);
}
