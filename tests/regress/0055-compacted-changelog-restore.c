/*
 * Regression 0055 (fixed by this commit): a shard restored from a compacted
 * kchat-changelog lost committed data. A restore applies a transaction's
 * changes once it has read the one numbered like the transaction's last
 * (kchat-cl-last), and dropped a transaction followed by another before
 * that change came, taking it for one its writer never finished. But a
 * transaction's changes are sorted by table and key, and its last one is
 * nearly always a key a later transaction writes again (a command stream's
 * mark, an outbox page deleted once delivered): compaction removes it, and
 * every restore after that dropped the rest of the transaction, users and
 * chat messages included. Kafka compacts only rolled segments (7 days or
 * 1 GB by default), so no test or benchmark run ever met it.
 *
 * The test compacts by hand: `kchat serve` on a mock cluster, users on every
 * shard, friends, a room, chat sends, a clean stop; then every compacted
 * topic of kchat's (the changelog, kchat-meta, the directory, room
 * summaries) is copied to a second mock cluster as Kafka's log cleaner
 * would leave it: of each key, only its last record. `kchat serve` on the
 * second cluster with an empty data directory restores every shard from
 * that, and after its clean stop every shard must hold exactly the tables
 * the first run left (the changelog's own table and counter aside). It
 * checks that the copy did remove the last change of some transactions
 * whose other changes stayed. Seen failing on the code before the fix:
 * shards restored without users, sessions and messages (rows missing in
 * the comparison).
 */
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
#include <librdkafka/rdkafka_mock.h>

#include "kchat/kafka.h"
#include "kchat/store.h"
#include "kchat/topics.h"
#include "support/kassert.h"
#include "support/kclient.h"
#include "support/mockfault.h"

#define PARTITIONS 4

/* what the test started, so that a failed assertion still cleans up */
static kc_proc *g_srv;
static kc_client *g_client;
static rd_kafka_t *g_host[2];
static rd_kafka_mock_cluster_t *g_mock[2];

static int teardown(void **state)
{
    (void)state;
    kc_client_free(g_client);
    g_client = NULL;
    kc_proc_free(g_srv);
    g_srv = NULL;
    for (int i = 0; i < 2; i++) {
        kc_mock_cluster_free(g_mock[i], g_host[i]);
        g_mock[i] = NULL;
        g_host[i] = NULL;
    }
    return 0;
}

/* Mock cluster @p i with kchat's topics, as `kchat broker` makes them. */
static const char *mock_start(int i)
{
    g_mock[i] = kc_mock_cluster_new(1, 3, &g_host[i]);
    for (size_t t = 0; t < kchat_topic_count(); t++)
        assert_int_equal(rd_kafka_mock_topic_create(g_mock[i], kchat_topic_name(t),
                                                    PARTITIONS, 1), 0);
    return rd_kafka_mock_cluster_bootstraps(g_mock[i]);
}

/* A user of shard @p shard, registered and logged in. */
static void user_in(kc_user *u, int shard)
{
    for (int tries = 0; tries < 500; tries++) {
        kc_user_init(u, "compacted");
        if (kchat_partition_for_key(u->id, strlen(u->id), PARTITIONS) == shard)
            break;
    }
    assert_true(kc_user_register(g_client, u));
    assert_true(kc_user_login(g_client, u));
}

/* ---- compacting a topic by hand ---- */

/* The compacted topics of kchat: copied, compacted, to the second cluster. */
static const kchat_topic_id compacted_ids[] = {KCHAT_T_CHANGELOG, KCHAT_T_META,
                                               KCHAT_T_DIRECTORY, KCHAT_T_ROOMS};
#define N_COMPACTED (sizeof(compacted_ids) / sizeof(compacted_ids[0]))
#define compacted(t) kchat_topic(compacted_ids[t])

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

static uint64_t header_u64(const struct rec *r, const char *name)
{
    const void *v;
    size_t len;
    char buf[24];

    if (r->hdrs == NULL || rd_kafka_header_get_last(r->hdrs, name, &v, &len) ||
        len == 0 || len >= sizeof(buf))
        return 0;
    memcpy(buf, v, len);
    buf[len] = '\0';
    return strtoull(buf, NULL, 10);
}

/* Read every partition of the compacted topics of @p brokers to its end
 * (committed records only, as a restore reads them). */
static void read_all(const char *brokers, struct part_log logs[N_COMPACTED][PARTITIONS])
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(16);
    rd_kafka_t *rk;
    int eof = 0;
    bool at_end[N_COMPACTED][PARTITIONS] = {{false}};
    int64_t deadline = kc_now_ms() + 30000;

    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", "regress-0055", errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "isolation.level", "read_committed", errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    assert_non_null(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr)));
    for (size_t t = 0; t < N_COMPACTED; t++)
        for (int p = 0; p < PARTITIONS; p++)
            rd_kafka_topic_partition_list_add(tp, compacted(t), p)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, tp), 0);
    rd_kafka_topic_partition_list_destroy(tp);
    while (eof < (int)(N_COMPACTED * PARTITIONS) && kc_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        size_t t = 0;

        if (m == NULL)
            continue;
        while (t < N_COMPACTED && strcmp(rd_kafka_topic_name(m->rkt), compacted(t)))
            t++;
        assert_true(t < N_COMPACTED && m->partition >= 0 && m->partition < PARTITIONS);
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (!at_end[t][m->partition]) {
                at_end[t][m->partition] = true;
                eof++;
            }
            rd_kafka_message_destroy(m);
        } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_message_destroy(m);
        } else {
            struct part_log *l = &logs[t][m->partition];
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
            rd_kafka_message_destroy(m);
        }
    }
    assert_int_equal(eof, N_COMPACTED * PARTITIONS);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/* Whether record @p i of @p l has a later record of the same key: the log
 * cleaner would remove it. */
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

/* Produce what compaction leaves of @p logs to @p brokers, partition by
 * partition, in order; the number of changelog transactions that lost
 * their last change while keeping another in *@p torn. Frees @p logs. */
static size_t copy_compacted(const char *brokers, struct part_log logs[N_COMPACTED][PARTITIONS],
                             size_t *torn)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    size_t kept = 0;

    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr,
                                       sizeof(errstr)), RD_KAFKA_CONF_OK);
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    assert_non_null(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)));
    *torn = 0;
    for (size_t t = 0; t < N_COMPACTED; t++) {
        for (int p = 0; p < PARTITIONS; p++) {
            struct part_log *l = &logs[t][p];
            bool *gone = calloc(l->n + 1, sizeof(*gone));

            assert_non_null(gone);
            for (size_t i = 0; i < l->n; i++)
                gone[i] = superseded(l, i);
            for (size_t i = 0; t == 0 && i < l->n; i++) {
                /* the last change of a transaction gone: was another kept? */
                uint64_t last = header_u64(&l->r[i], KCHAT_HDR_CL_LAST);
                if (!gone[i] || last == 0 || header_u64(&l->r[i], KCHAT_HDR_CL_SEQ) != last)
                    continue;
                for (size_t j = 0; j < i; j++)
                    if (!gone[j] && header_u64(&l->r[j], KCHAT_HDR_CL_LAST) == last) {
                        ++*torn;
                        break;
                    }
            }
            for (size_t i = 0; i < l->n; i++) {
                struct rec *r = &l->r[i];

                if (!gone[i]) {
                    assert_int_equal(rd_kafka_producev(
                                         rk, RD_KAFKA_V_TOPIC(compacted(t)),
                                         RD_KAFKA_V_PARTITION(p),
                                         RD_KAFKA_V_KEY(r->key, r->key_len),
                                         RD_KAFKA_V_VALUE(r->value, r->value ? r->value_len : 0),
                                         RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                         RD_KAFKA_V_HEADERS(r->hdrs), RD_KAFKA_V_END),
                                     RD_KAFKA_RESP_ERR_NO_ERROR);
                    r->hdrs = NULL;   /* the producer's now */
                    kept++;
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
    return kept;
}

/* ---- comparing the shards ---- */

/* Every (table, key, value) of a store as text, but for what the second
 * run writes of its own when it serves after the restore: its input
 * offsets (the second cluster's request topics are empty, so it moves them
 * to what that cluster has), the cluster's id, the outbox counter (it
 * publishes at start), and the changelog's own table and counter. */
struct dump {
    char *buf;
    size_t len, cap;
    int table;
};

static int dump_one(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    struct dump *d = arg;
    size_t need = 32 + 2 * (kl + vl);

    static const char *const own[] = {"i:changelog", "i:outbox_seq", "s:cluster_id"};

    for (size_t i = 0; d->table == KCHAT_TBL_META && i < sizeof(own) / sizeof(own[0]); i++)
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

static char *dump_shard(const char *data, int p, size_t *rows)
{
    char path[4096];
    struct dump d = {0};
    kchat_store *s;
    kchat_txn *t;

    snprintf(path, sizeof(path), "%s/shard-%04d", data, p);
    assert_int_equal(kchat_store_open(path, NULL, &s), KCHAT_OK);
    assert_int_equal(kchat_txn_begin(s, false, &t), KCHAT_OK);
    for (d.table = 0; d.table < KCHAT_TBL__COUNT; d.table++)
        if (d.table != KCHAT_TBL_CHANGELOG && d.table != KCHAT_TBL_OFFSETS)
            assert_int_equal(kchat_txn_scan(t, (kchat_table)d.table, NULL, 0, false,
                                            dump_one, &d), KCHAT_OK);
    kchat_txn_abort(t);
    kchat_store_close(s);
    *rows = 0;
    for (size_t i = 0; i < d.len; i++)
        *rows += d.buf[i] == '\n';
    return d.buf ? d.buf : strdup("");
}

/* Print the rows of @p a that @p b lacks, prefixed with @p tag. */
static void rows_missing(const char *tag, const char *a, const char *b)
{
    for (const char *line = a; *line != '\0';) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line + 1) : strlen(line);
        bool found = false;

        for (const char *q = b; !found && (q = strstr(q, "")) != NULL && *q != '\0';) {
            const char *qe = strchr(q, '\n');
            size_t ql = qe ? (size_t)(qe - q + 1) : strlen(q);
            found = ql == len && memcmp(q, line, len) == 0;
            q += ql;
        }
        if (!found)
            fprintf(stderr, "%s %.*s%s", tag, (int)(len > 200 ? 200 : len), line,
                    len > 200 ? "...\n" : "");
        line += len;
    }
}

/* How many times @p needle occurs in file @p path. */
static size_t occurrences(const char *path, const char *needle)
{
    size_t len, n = 0;
    char *text = kc_read_file(path, &len);

    for (const char *p = text; p != NULL && (p = strstr(p, needle)) != NULL; p++)
        n++;
    free(text);
    return n;
}

static void test_restore_from_compacted_changelog(void **state)
{
    static struct part_log logs[N_COMPACTED][PARTITIONS];
    char *data = kc_tmppath("source"), *restored = kc_tmppath("restored"), room[65], said[96];
    const char *brokers;
    kc_user u[PARTITIONS + 2];
    size_t kept, torn, rows_total = 0;
    int64_t deadline;

    (void)state;
    /* the source: a workload, a clean stop */
    brokers = mock_start(0);
    g_srv = kc_serve_start("source-serve", data, brokers, PARTITIONS, NULL);
    assert_non_null(g_srv);
    g_client = kc_client_new(brokers, KC_FROM_END);
    for (int i = 0; i < PARTITIONS + 2; i++)
        user_in(&u[i], i % PARTITIONS);
    const char *friends[] = {u[1].id, u[2].id, u[3].id, NULL};
    assert_true(kc_add_friends(g_client, &u[0], friends));
    assert_true(kc_create_room(g_client, &u[0], friends, "compacted room", room));
    for (int i = 0; i < 20; i++)
        assert_true(kc_chat(g_client, &u[i % 4], room, "kept", NULL) == i + 1);
    assert_true(kc_proc_stop_clean(g_srv, 30));
    kc_proc_free(g_srv);
    g_srv = NULL;
    kc_client_free(g_client);
    g_client = NULL;

    /* the compacted copy */
    read_all(brokers, logs);
    brokers = mock_start(1);
    kept = copy_compacted(brokers, logs, &torn);
    fprintf(stderr, "0055: %zu records kept by compaction; %zu changelog transactions lost "
            "their last change and kept others\n", kept, torn);
    assert_true(torn > 0);

    /* restored from it */
    g_srv = kc_serve_start_ex("restored-serve", restored, brokers, PARTITIONS, NULL, 90);
    assert_non_null(g_srv);
    snprintf(said, sizeof(said), "restored from %s", KCHAT_TOPIC_CHANGELOG);
    deadline = kc_now_ms() + 60000;
    while (occurrences(kc_proc_log(g_srv), said) < PARTITIONS && kc_now_ms() < deadline)
        kc_sleep_ms(100);
    assert_int_equal(occurrences(kc_proc_log(g_srv), said), PARTITIONS);
    /* no transaction taken for one its writer never finished */
    assert_int_equal(occurrences(kc_proc_log(g_srv), ", 0 of unfinished transactions dropped"),
                     PARTITIONS);
    assert_true(kc_proc_stop_clean(g_srv, 30));
    kc_proc_free(g_srv);
    g_srv = NULL;

    for (int p = 0; p < PARTITIONS; p++) {
        size_t rows, rows_got;
        char *want = dump_shard(data, p, &rows), *got = dump_shard(restored, p, &rows_got);

        if (strcmp(want, got) != 0) {
            fprintf(stderr, "shard %d: %zu rows, restored from the compacted changelog: %zu\n",
                    p, rows, rows_got);
            rows_missing("  lost:", want, got);
            rows_missing("  extra:", got, want);
        }
        assert_string_equal(want, got);
        rows_total += rows;
        free(want);
        free(got);
    }
    fprintf(stderr, "0055: %d shards restored whole (%zu rows)\n", PARTITIONS, rows_total);
    free(data);
    free(restored);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_restore_from_compacted_changelog, teardown),
    };
    return cmocka_run_group_tests_name("0055 compacted changelog restore", tests, NULL, NULL);
}
