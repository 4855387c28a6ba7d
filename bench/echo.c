/*
 * bench/echo.c - the echo processor: the benchmark's baseline.
 *
 * It stands where `kchat serve` stands, on the same broker, and does nothing
 * but what any request/response service on Kafka must do: read every record
 * of the ten `<op>-request` topics and answer it on `<op>-response`. Each
 * answer has the request's key (so the same murmur2 partition kchat's answer
 * would get), the request's `kchat-cid` and `content-type` headers copied,
 * and a value of the request's length: the JSON object
 *     {"isSuccess":true,"errorCode":"","errorMessage":"","pad":"xxx..."}
 * padded with 'x' to exactly the request's length (a request shorter than
 * 60 bytes gets the 51-byte object without the pad field). No decoding, no
 * state, no disk.
 * The body is JSON whatever the request's content-type said: bench/load.c
 * only sends JSON. The throughput and latency of load.c against this
 * program are what Kafka and the client library allow on this machine; the
 * ratio of kchat's figures to these is kchat's own cost (docs/bench.md).
 *
 * Settings matched with kchat serve, so that only kchat's work differs:
 * - producer (src/actors/backend.c producer_start): enable.idempotence=true
 *   (so acks=all and in-order retries), linger.ms=1 (kchat's --linger-ms
 *   default; --linger-ms here), partitioner=murmur2_random,
 *   message.timeout.ms=0, queue.buffering.max.messages=1000000; records are
 *   produced by topic name with RD_KAFKA_PARTITION_UA and a copied value,
 *   a full local queue is waited out, never dropped. librdkafka's batch
 *   settings (batch.num.messages, batch.size) are left at their defaults in
 *   both.
 * - consumer (src/actors/backend.c consumer_start, src/pipeline/consumer.c
 *   build_conf): one group member for all ten request topics,
 *   partition.assignment.strategy=range, session.timeout.ms=6000,
 *   heartbeat.interval.ms=1000, fetch.wait.max.ms=10,
 *   queued.max.messages.kbytes=4096, queued.min.messages=10000,
 *   enable.auto.commit=false, enable.auto.offset.store=false.
 * Differences, by design: one thread reads and answers (kchat has a thread
 * per topic, workers, and a producer poll thread); nothing is committed
 * anywhere (kchat keeps offsets in LMDB); at assignment every partition
 * starts at its current end (kchat starts at its stored offset), so an echo
 * started on a broker that already holds requests answers only new ones.
 *
 * usage: echo (--bootstrap B | --bootstrap-file F) [--partitions P]
 *             [--group-id G] [--linger-ms MS] [--ready-file F]
 *             [--duration-max S] [--verbose]
 * Missing kchat topics are created with P partitions (kchat's own
 * kchat_topics_ensure(), so they are exactly what `kchat serve` would make).
 * --ready-file is written (the bootstrap, one line) once the partitions are
 * assigned at their end offsets: a request produced after that is answered.
 * Runs until SIGTERM/SIGINT or --duration-max (default 3600 s), then
 * flushes (at most 5 s), leaves the group and prints
 *     echo: answered=N failed=N seconds=S
 * Exit status: 0; 1 when some answer could not be produced or delivered;
 * 2 usage or start-up failure.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "kchat/codec.h"
#include "kchat/kafka.h"
#include "kchat/topics.h"

#include "util.h"

#define FLUSH_MS       5000
#define MAX_ERR_PRINT  5

static const char BODY_HEAD[] = "{\"isSuccess\":true,\"errorCode\":\"\",\"errorMessage\":\"\"";
static const char PAD_HEAD[] = ",\"pad\":\"";

static struct {
    const char *bootstrap;
    const char *bootstrap_file;
    const char *group_id;
    const char *ready_file;
    int partitions;
    int linger_ms;
    int duration_max_s;
    int verbose;
} opt = {
    .group_id = "kchat-echo",
    .partitions = 8,
    .linger_ms = 1,
    .duration_max_s = 3600,
};

static volatile sig_atomic_t g_stop;
static rd_kafka_t *g_prod;
static long g_answered, g_failed, g_foreign;
static bool g_assigned;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    if (level <= 4 || opt.verbose)
        fprintf(stderr, "echo: rdkafka %s %s: %s\n", rd_kafka_name(rk), fac, buf);
}

/* Producer thread context (rd_kafka_poll on the main thread). */
static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    if (g_failed < MAX_ERR_PRINT)
        fprintf(stderr, "echo: delivery to %s failed: %s\n", rd_kafka_topic_name(m->rkt),
                rd_kafka_err2str(m->err));
    g_failed++;
}

/* Every partition starts at its high watermark, read now: an explicit
 * offset, so nothing produced after this point can be skipped however late
 * the fetcher starts (RD_KAFKA_OFFSET_END would be resolved later). */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void)opaque;
    if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_assign(rk, NULL);
        g_assigned = false;
        return;
    }
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(rk, tp->topic, tp->partition, &lo, &hi, 10000);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            /* The group's (absent) offset, then auto.offset.reset=latest:
             * may skip requests produced right now; say so. */
            fprintf(stderr, "echo: watermarks of %s[%d]: %s; starting at its end\n", tp->topic,
                    (int)tp->partition, rd_kafka_err2str(e));
            tp->offset = RD_KAFKA_OFFSET_END;
        } else {
            tp->offset = hi;
        }
    }
    rd_kafka_resp_err_t ae = rd_kafka_assign(rk, parts);
    if (ae != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "echo: assign: %s\n", rd_kafka_err2str(ae));
        return;
    }
    g_assigned = true;
    fprintf(stderr, "echo: assigned %d partitions at their end\n", parts->cnt);
}

static rd_kafka_t *producer_new(void)
{
    char err[512], v[16];
    rd_kafka_conf_t *c = rd_kafka_conf_new();

    util_conf_set(c, "bootstrap.servers", opt.bootstrap);
    util_conf_set(c, "client.id", "kchat-bench-echo");
    snprintf(v, sizeof(v), "%d", opt.linger_ms);
    util_conf_set(c, "enable.idempotence", "true");
    util_conf_set(c, "linger.ms", v);
    util_conf_set(c, "partitioner", "murmur2_random");
    util_conf_set(c, "message.timeout.ms", "0");
    util_conf_set(c, "queue.buffering.max.messages", "1000000");
    rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
    rd_kafka_conf_set_log_cb(c, log_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    if (rk == NULL)
        util_die("producer: %s", err);
    return rk;
}

static rd_kafka_t *consumer_new(void)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();

    util_conf_set(c, "bootstrap.servers", opt.bootstrap);
    util_conf_set(c, "client.id", "kchat-bench-echo");
    util_conf_set(c, "group.id", opt.group_id);
    util_conf_set(c, "session.timeout.ms", "6000");
    util_conf_set(c, "heartbeat.interval.ms", "1000");
    util_conf_set(c, "fetch.wait.max.ms", "10");
    util_conf_set(c, "enable.auto.commit", "false");
    util_conf_set(c, "enable.auto.offset.store", "false");
    util_conf_set(c, "partition.assignment.strategy", "range");
    util_conf_set(c, "queued.max.messages.kbytes", "4096");
    util_conf_set(c, "queued.min.messages", "10000");
    util_conf_set(c, "auto.offset.reset", "latest");
    rd_kafka_conf_set_rebalance_cb(c, rebalance_cb);
    rd_kafka_conf_set_log_cb(c, log_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (rk == NULL)
        util_die("consumer: %s", err);
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

/* Create the missing kchat topics with kchat's own code. */
static void topics_ensure(void)
{
    char err[512];
    int actual = 0;

    /* login-request's retention as kchat serve's default --login-retention-ms */
    if (kchat_topics_ensure(g_prod, opt.partitions, 0, 3600000L, &actual, err, sizeof(err)) != 0)
        util_die("topics: %s", err);
    if (actual != opt.partitions)
        fprintf(stderr, "echo: the topics exist with %d partitions (not %d)\n", actual,
                opt.partitions);
}

/* The answer's value in @p *buf (grown as needed): @p len bytes, or the
 * 51-byte unpadded object when @p len is below the 60 bytes of the shortest
 * padded one. Returns its length. */
static size_t body_make(char **buf, size_t *cap, size_t len)
{
    const size_t head = sizeof(BODY_HEAD) - 1, padh = sizeof(PAD_HEAD) - 1;
    const size_t bare = head + 1;              /* BODY_HEAD + "}" */
    const size_t padded_min = head + padh + 2; /* ... ,"pad":"" + "}" */
    size_t n = len >= padded_min ? len : bare;

    if (n + 1 > *cap) {
        char *nb = realloc(*buf, n + 1);
        if (nb == NULL)
            util_die("out of memory");
        *buf = nb;
        *cap = n + 1;
    }
    char *p = *buf;
    memcpy(p, BODY_HEAD, head);
    if (n == bare) {
        p[head] = '}';
    } else {
        memcpy(p + head, PAD_HEAD, padh);
        memset(p + head + padh, 'x', n - padded_min);
        memcpy(p + n - 2, "\"}", 2);
    }
    p[n] = '\0';
    return n;
}

/* Answer one request record. */
static void answer(const rd_kafka_message_t *m, char **buf, size_t *cap)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    kchat_op op;

    if (kchat_op_from_request_topic(topic, &op) != 0) {
        g_foreign++;
        return;
    }
    size_t n = body_make(buf, cap, m->len);
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);
    const void *v;
    size_t vl;
    if (kchat_header_get(m, KCHAT_HDR_CID, &v, &vl) == 0)
        rd_kafka_header_add(hdrs, KCHAT_HDR_CID, -1, v, (ssize_t)vl);
    if (kchat_header_get(m, KCHAT_HDR_CTYPE, &v, &vl) == 0)
        rd_kafka_header_add(hdrs, KCHAT_HDR_CTYPE, -1, v, (ssize_t)vl);
    /* producev owns the headers only when it succeeds. */
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            g_prod, RD_KAFKA_V_TOPIC(kchat_op_response_topic(op)),
            RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA), RD_KAFKA_V_KEY(m->key, m->key_len),
            RD_KAFKA_V_VALUE(*buf, n), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            g_answered++;
            return;
        }
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || g_stop) {
            if (g_failed < MAX_ERR_PRINT)
                fprintf(stderr, "echo: produce to %s: %s\n", kchat_op_response_topic(op),
                        rd_kafka_err2str(e));
            g_failed++;
            rd_kafka_headers_destroy(hdrs);
            return;
        }
        rd_kafka_poll(g_prod, 1);
    }
}

static void write_ready_file(void)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", opt.ready_file);
    FILE *f = fopen(tmp, "w");
    if (f == NULL || fprintf(f, "%s\n", opt.bootstrap) < 0 || fclose(f) != 0 ||
        rename(tmp, opt.ready_file) != 0)
        util_die("cannot write %s: %s", opt.ready_file, strerror(errno));
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: echo (--bootstrap B | --bootstrap-file F) [options]\n"
            "  --partitions P      partitions of topics created when missing (default 8)\n"
            "  --group-id G        consumer group (default kchat-echo)\n"
            "  --linger-ms MS      producer linger.ms (default 1, as kchat serve)\n"
            "  --ready-file F      write the bootstrap here once assigned\n"
            "  --duration-max S    exit after S s at the latest (default 3600)\n"
            "  --verbose           librdkafka debug-level logs\n"
            "Answers every request until SIGTERM/SIGINT; prints "
            "'echo: answered=N failed=N seconds=S'.\n");
}

int main(int argc, char **argv)
{
    enum { O_BOOT = 1000, O_BOOTF, O_PART, O_GROUP, O_LINGER, O_READY, O_DUR, O_VERB, O_HELP };
    static const struct option lo[] = {
        {"bootstrap", required_argument, NULL, O_BOOT},
        {"bootstrap-file", required_argument, NULL, O_BOOTF},
        {"partitions", required_argument, NULL, O_PART},
        {"group-id", required_argument, NULL, O_GROUP},
        {"linger-ms", required_argument, NULL, O_LINGER},
        {"ready-file", required_argument, NULL, O_READY},
        {"duration-max", required_argument, NULL, O_DUR},
        {"verbose", no_argument, NULL, O_VERB},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int c;

    util_prog = "echo";
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case O_BOOT: opt.bootstrap = optarg; break;
        case O_BOOTF: opt.bootstrap_file = optarg; break;
        case O_PART: opt.partitions = (int)util_parse_long(optarg, "--partitions", 1, 1024); break;
        case O_GROUP: opt.group_id = optarg; break;
        case O_LINGER: opt.linger_ms = (int)util_parse_long(optarg, "--linger-ms", 0, 1000); break;
        case O_READY: opt.ready_file = optarg; break;
        case O_DUR: opt.duration_max_s = (int)util_parse_long(optarg, "--duration-max", 1, 86400); break;
        case O_VERB: opt.verbose = 1; break;
        case O_HELP: usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    char *boot_owned = NULL;
    if (opt.bootstrap == NULL && opt.bootstrap_file != NULL)
        opt.bootstrap = boot_owned = util_read_bootstrap_file(opt.bootstrap_file);
    if (opt.bootstrap == NULL) {
        usage(stderr);
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int64_t t_start = util_now_ns();
    int64_t deadline = util_now_ms() + (int64_t)opt.duration_max_s * 1000;
    g_prod = producer_new();
    topics_ensure();
    rd_kafka_t *cons = consumer_new();
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(KCHAT_OP__COUNT);
    for (int i = 0; i < KCHAT_OP__COUNT; i++)
        rd_kafka_topic_partition_list_add(sub, kchat_op_request_topic((kchat_op)i),
                                          RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t se = rd_kafka_subscribe(cons, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (se != RD_KAFKA_RESP_ERR_NO_ERROR)
        util_die("subscribe: %s", rd_kafka_err2str(se));
    fprintf(stderr, "echo: bootstrap %s, group %s, answering the %d request topics\n",
            opt.bootstrap, opt.group_id, (int)KCHAT_OP__COUNT);

    char *buf = NULL;
    size_t cap = 0;
    bool ready_written = false;
    while (!g_stop) {
        if (util_now_ms() >= deadline) {
            fprintf(stderr, "echo: --duration-max reached\n");
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 100);
        if (!ready_written && g_assigned && opt.ready_file != NULL) {
            write_ready_file();
            ready_written = true;
        }
        for (unsigned k = 1; m != NULL; k++) {
            if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
                answer(m, &buf, &cap);
            else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "echo: consumer: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            if (k % 64 == 0)
                rd_kafka_poll(g_prod, 0);   /* delivery reports */
            m = g_stop ? NULL : rd_kafka_consumer_poll(cons, 0);
        }
        rd_kafka_poll(g_prod, 0);
    }

    rd_kafka_resp_err_t fe = rd_kafka_flush(g_prod, FLUSH_MS);
    if (fe != RD_KAFKA_RESP_ERR_NO_ERROR) {
        int left = rd_kafka_outq_len(g_prod);
        fprintf(stderr, "echo: %d answers still unsent after %d ms\n", left, FLUSH_MS);
        g_failed += left;
    }
    rd_kafka_consumer_close(cons);
    rd_kafka_destroy(cons);
    rd_kafka_destroy(g_prod);
    double secs = (double)(util_now_ns() - t_start) / 1e9;
    printf("echo: answered=%ld failed=%ld seconds=%.1f\n", g_answered, g_failed, secs);
    if (g_foreign)
        fprintf(stderr, "echo: %ld records on topics that are no request topic\n", g_foreign);
    free(buf);
    free(boot_owned);
    return g_failed ? 1 : 0;
}
