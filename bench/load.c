/*
 * bench/load.c - load generator for kchat (PROTOCOL.md v1) and for the echo
 * baseline (bench/echo.c).
 *
 * One thread, one producer, one consumer (manual assignment, no consumer
 * group). Two phases:
 *
 * Setup (kchat mode only): registers --users users, logs them in, makes each
 * room creator follow the members it needs and creates --rooms rooms of 2..4
 * members. With --echo there is no setup: the echo processor keeps no state,
 * so users, rooms (ids shaped like kchat's: "r" + 16 hex digits) and sessions
 * (32 hex digits) are made up locally, and every request still has the body
 * shape, size, key and headers it has against kchat.
 *
 * Load: --requests requests drawn from the operation mix (--mix, default
 * chat=90,history=5,rooms=5):
 *   chat     user-add-chat-request    {roomId, writerId, message (100 B),
 *                                      clientMsgId}, key writerId
 *   history  room-history-request     {userId, roomId, limit}, key userId
 *   rooms    user-search-room-request {userId}, key userId
 * each from a random member of a random room (rooms: a random user), keyed
 * by the acting user (murmur2 partitioner, PROTOCOL.md section 1), with the
 * kchat-cid, kchat-session and content-type headers. Two disciplines:
 *   closed loop (default): at most --inflight requests outstanding; a new one
 *     is sent as soon as one is answered. Latency runs from produce to the
 *     receipt of the response.
 *   open loop (--rate R): request k is scheduled at start + k/R (monotonic
 *     clock) whatever the answers do, and its latency runs from that
 *     *scheduled* time, so a stall that delays sending is counted in full
 *     (no coordinated omission). --inflight is then only a safety cap
 *     (default 10000); a send held back by it is late and counted so.
 * --warmup N: the first N requests are sent, answered and checked like the
 * others but left out of the figures: throughput counts the answers to the
 * later ones from the moment request N was sent (or scheduled), latencies
 * are theirs only. (A freshly started Kafka broker is slow until its JIT has
 * compiled the hot paths; whoever ran first would pay for it.)
 * --seconds S: the measured part ends S s after it began: nothing is sent
 * after that, and the requests in flight are awaited and counted. Runs of
 * programs that differ tenfold in speed then measure the same length of
 * time (a fixed count measured echo for 1.5 s and kchat for 15);
 * --requests is then only a cap (and sizes the latency table).
 * A response is matched to its request by the kchat-cid header. In kchat mode
 * it is also checked: isSuccess true, and for chat the room's seqs must come
 * out 1..n with no gap or repeat, roomId and writerId echoed; for history
 * roomId echoed and seqs ascending, at most limit; for rooms every room the
 * user created is listed. With --echo a response counts by its cid alone.
 *
 * Output: a one-line progress display on stderr (at most twice a second)
 * when stderr is a terminal; the summary on stdout, ending with one
 * machine-readable line
 *   result: mode=kchat|echo loop=closed|open inflight=N rate=R warmup=N
 *           sent=N ok=N err=N missing=N seconds=S rps=N p50_ms=X p90_ms=X
 *           p99_ms=X p999_ms=X max_ms=X
 * (sent, ok, err, missing: every request, warm-up included; seconds: the
 * measured part, drain included; rps: successful answers to measured
 * requests per second of it; rate is 0 in a closed loop), preceded by one
 * `result-op:` line per operation; --json FILE writes the same figures as
 * one JSON object.
 *
 * Every wait is bounded: each setup step by --setup-timeout, each request by
 * --request-timeout, the whole run by --duration-max (then sending stops and
 * in-flight requests get at most DRAIN_GRACE_MS more).
 *
 * Exit status: 0 every sent request answered with success; 1 responses
 * missing (unanswered within --request-timeout or the drain grace, or the
 * produce failed); 3 every request answered but some with isSuccess false or
 * inconsistent content; 2 usage, connection or setup failure. Requests never
 * sent because --duration-max (or SIGINT/SIGTERM) stopped the run early are
 * reported but do not by themselves make the exit status non-zero.
 *
 * Build: make build/bench/load (bench/bench.mk).
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

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "util.h"

#define MAX_ERR_PRINT    5
#define DRAIN_GRACE_MS   5000
#define MSG_BYTES        100
#define FRIENDS_PER_REQ  100   /* PROTOCOL.md §2: friendId list 1..100 */
#define CID_MAX          64
#define SESSION_HEX      32    /* kchat's session ids: 128 bits in hex */
#define PROGRESS_MS      500
#define OPEN_CAP_DEFAULT 10000

/* ---------------------------------------------------------------------- */
/* operations of the load phase                                           */
/* ---------------------------------------------------------------------- */

enum lop { LOP_CHAT, LOP_HISTORY, LOP_ROOMS, LOP__N };

static const struct {
    const char *name;       /* in --mix and in the results */
    const char *request;
    const char *response;
} g_lops[LOP__N] = {
    {"chat", "user-add-chat-request", "user-add-chat-response"},
    {"history", "room-history-request", "room-history-response"},
    {"rooms", "user-search-room-request", "user-search-room-response"},
};

/* ---------------------------------------------------------------------- */
/* options                                                                 */
/* ---------------------------------------------------------------------- */

static struct {
    const char *bootstrap;
    const char *bootstrap_file;
    int users;
    int rooms;
    long requests;
    int inflight;           /* closed loop: outstanding; open loop: cap */
    bool inflight_set;
    double rate;            /* > 0: open loop */
    int mix[LOP__N];        /* weights */
    int history_limit;
    long warmup;            /* first requests left out of the figures */
    double seconds;         /* > 0: the measured part sends for this long */
    bool echo;
    int duration_max_s;
    uint64_t seed;
    bool seed_set;
    int setup_timeout_s;
    int request_timeout_ms;
    int linger_ms;
    int verbose;
    int progress;           /* -1 auto (stderr is a terminal), 0 off, 1 on */
    const char *samples_file;
    const char *json_file;
} opt = {
    .users = 20,
    .rooms = 10,
    .requests = 20000,
    .inflight = 256,
    .mix = {90, 5, 5},
    .history_limit = 50,
    .duration_max_s = 120,
    .setup_timeout_s = 30,
    .request_timeout_ms = 10000,
    .linger_ms = 1,
    .progress = -1,
};

static volatile sig_atomic_t g_interrupted;

static void on_signal(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

/* ---------------------------------------------------------------------- */
/* rng                                                                     */
/* ---------------------------------------------------------------------- */

static uint64_t g_rng;

static uint64_t rng_next(void)
{
    /* xorshift64* */
    uint64_t x = g_rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    g_rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint32_t rng_below(uint32_t n)
{
    return (uint32_t)(rng_next() % n);
}

/* ---------------------------------------------------------------------- */
/* state                                                                   */
/* ---------------------------------------------------------------------- */

typedef struct user {
    char id[65];
    char pw[40];
    char *session;          /* from login (--echo: made up) */
    int *friends;           /* indices this user must follow */
    int nfriends, capfriends;
} user;

typedef struct room {
    char id[65];
    int members[4];         /* members[0] is the creator */
    int nmembers;
    /* seq check */
    uint8_t *seen;          /* seen[seq] for seq 1..seen_cap-1 */
    size_t seen_cap;
    int64_t ok;             /* successful chats to this room */
    int64_t max_seq;
    int64_t dup_seq;        /* seq answered twice */
} room;

enum slot_state { SLOT_FREE = 0, SLOT_BUSY };

typedef struct slot {
    enum slot_state state;
    uint32_t gen;
    int64_t t0_ns;          /* latency origin: produce, or the scheduled time */
    int64_t ack_ns;         /* at the delivery report (0: not yet) */
    int op;                 /* load phase: enum lop */
    long idx;               /* load phase: request number (warm-up: < --warmup) */
    int room;               /* load phase: the room written to or read */
    int user;               /* the acting user */
    int tag;                /* setup: caller's index (user or room) */
} slot;

static rd_kafka_t *g_prod, *g_cons;
static char g_run[24];              /* run prefix, unique per run */
static user *g_users;
static room *g_rooms;
static slot *g_slots;
static int *g_free;                 /* stack of free slot indices */
static int g_nslots, g_nfree;
static int64_t g_deadline_ms;       /* --duration-max, absolute */

/* counters of the current phase */
static long g_ok, g_err, g_missing, g_late, g_produce_fail, g_foreign, g_undecodable;
static long g_err_printed;
static long g_op_sent[LOP__N], g_op_ok[LOP__N], g_op_err[LOP__N];
static long g_meas_ok;              /* successful answers to measured requests */
static int64_t *g_lat_ns;           /* load phase samples ... */
static uint8_t *g_lat_op;           /* ... and their operation */
static long g_nlat;
static FILE *g_samples;             /* --samples-file */
static int64_t g_load_t0_ns;

/* ---------------------------------------------------------------------- */
/* Kafka setup                                                             */
/* ---------------------------------------------------------------------- */

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    if (level <= 4 || opt.verbose)
        fprintf(stderr, "load: rdkafka %s %s: %s\n", rd_kafka_name(rk), fac, buf);
}

static void slot_release(int s);

/* Delivery report: a failed produce can never be answered; count it. */
static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    uint64_t tag = (uint64_t)(uintptr_t)m->_private;
    int s = (int)(tag & 0xffffffffu);
    uint32_t gen = (uint32_t)(tag >> 32);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (s >= 0 && s < g_nslots && g_slots[s].state == SLOT_BUSY && g_slots[s].gen == gen)
            g_slots[s].ack_ns = util_now_ns();
        return;
    }
    if (g_produce_fail < MAX_ERR_PRINT)
        fprintf(stderr, "load: produce to %s failed: %s\n", rd_kafka_topic_name(m->rkt),
                rd_kafka_err2str(m->err));
    g_produce_fail++;
    if (s >= 0 && s < g_nslots && g_slots[s].state == SLOT_BUSY && g_slots[s].gen == gen) {
        g_missing++;
        slot_release(s);
    }
}

static const char *const g_req_topics[] = {
    "user-add-request", "login-request", "user-add-friend-request", "user-add-room-request",
    "user-add-chat-request", "room-history-request", "user-search-room-request",
};
static const char *const g_resp_topics[] = {
    "user-add-response", "login-response", "user-add-friend-response", "user-add-room-response",
    "user-add-chat-response", "room-history-response", "user-search-room-response",
};
#define N_TOPICS (sizeof(g_resp_topics) / sizeof(g_resp_topics[0]))

static void kafka_init(void)
{
    char err[512];
    char v[32];

    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    util_conf_set(pc, "bootstrap.servers", opt.bootstrap);
    util_conf_set(pc, "client.id", "kchat-bench-load");
    util_conf_set(pc, "partitioner", "murmur2_random");   /* PROTOCOL.md §1 */
    util_conf_set(pc, "acks", "all");
    snprintf(v, sizeof(v), "%d", opt.linger_ms);
    util_conf_set(pc, "linger.ms", v);
    util_conf_set(pc, "message.timeout.ms", "30000");
    util_conf_set(pc, "enable.idempotence", "false");
    util_conf_set(pc, "queue.buffering.max.messages", "1000000");
    rd_kafka_conf_set_dr_msg_cb(pc, dr_cb);
    rd_kafka_conf_set_log_cb(pc, log_cb);
    g_prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof(err));
    if (g_prod == NULL)
        util_die("producer: %s", err);

    /* Warm the producer's metadata cache for the request topics, so the
     * first request of each kind is not held back by a topic lookup. */
    for (size_t i = 0; i < N_TOPICS; i++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(g_prod, g_req_topics[i], NULL);
        const struct rd_kafka_metadata *md = NULL;
        if (rkt != NULL && rd_kafka_metadata(g_prod, 0, rkt, &md, 10000) ==
                               RD_KAFKA_RESP_ERR_NO_ERROR)
            rd_kafka_metadata_destroy(md);
        if (rkt != NULL)
            rd_kafka_topic_destroy(rkt);
    }

    /* Manual assignment only: group.id is set because librdkafka wants one
     * for a KafkaConsumer handle, but we never subscribe nor commit, so no
     * consumer group ever exists on the broker. */
    rd_kafka_conf_t *cc = rd_kafka_conf_new();
    char gid[96];
    snprintf(gid, sizeof(gid), "kchat-bench-nogroup-%s", g_run);
    util_conf_set(cc, "bootstrap.servers", opt.bootstrap);
    util_conf_set(cc, "client.id", "kchat-bench-load-cons");
    util_conf_set(cc, "group.id", gid);
    util_conf_set(cc, "enable.auto.commit", "false");
    util_conf_set(cc, "enable.auto.offset.store", "false");
    util_conf_set(cc, "enable.partition.eof", "false");
    util_conf_set(cc, "auto.offset.reset", "latest");
    util_conf_set(cc, "fetch.wait.max.ms", "5");
    util_conf_set(cc, "fetch.error.backoff.ms", "20");
    rd_kafka_conf_set_log_cb(cc, log_cb);
    g_cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err));
    if (g_cons == NULL)
        util_die("consumer: %s", err);

    /* Wait (bounded) until the response topics exist, then assign all their
     * partitions at the current high watermark: an explicit offset, so no
     * response produced after this point can be missed however late the
     * fetcher starts. */
    int64_t deadline = util_now_ms() + 30000;
    rd_kafka_topic_partition_list_t *tpl = NULL;
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(g_cons, 1, NULL, &md, 5000);
        size_t found = 0;
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            tpl = rd_kafka_topic_partition_list_new(64);
            for (size_t w = 0; w < N_TOPICS; w++)
                for (int i = 0; i < md->topic_cnt; i++) {
                    const struct rd_kafka_metadata_topic *t = &md->topics[i];
                    if (strcmp(t->topic, g_resp_topics[w]) != 0 || t->err ||
                        t->partition_cnt <= 0)
                        continue;
                    found++;
                    for (int p = 0; p < t->partition_cnt; p++)
                        rd_kafka_topic_partition_list_add(tpl, t->topic, t->partitions[p].id);
                }
            rd_kafka_metadata_destroy(md);
            if (found == N_TOPICS)
                break;
            rd_kafka_topic_partition_list_destroy(tpl);
            tpl = NULL;
        }
        if (util_now_ms() >= deadline)
            util_die("only %zu of %zu response topics exist at %s after 30 s (%s)", found,
                     N_TOPICS, opt.bootstrap, rd_kafka_err2str(e));
        usleep(200000);
    }
    for (int i = 0; i < tpl->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &tpl->elems[i];
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(g_cons, tp->topic, tp->partition, &lo, &hi, 5000);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            util_die("watermarks of %s[%d]: %s", tp->topic, (int)tp->partition,
                     rd_kafka_err2str(e));
        tp->offset = hi;
    }
    rd_kafka_resp_err_t ae = rd_kafka_assign(g_cons, tpl);
    if (ae != RD_KAFKA_RESP_ERR_NO_ERROR)
        util_die("assign: %s", rd_kafka_err2str(ae));
    fprintf(stderr, "load: consuming %d partitions of %zu response topics from their end\n",
            tpl->cnt, N_TOPICS);
    rd_kafka_topic_partition_list_destroy(tpl);
}

/* ---------------------------------------------------------------------- */
/* slots and correlation ids                                               */
/* ---------------------------------------------------------------------- */

static void slots_init(int n)
{
    g_nslots = n;
    g_slots = util_xcalloc((size_t)n, sizeof(*g_slots));
    g_free = util_xcalloc((size_t)n, sizeof(*g_free));
    g_nfree = 0;
    for (int i = n - 1; i >= 0; i--)
        g_free[g_nfree++] = i;
}

static void slots_free(void)
{
    free(g_slots);
    free(g_free);
    g_slots = NULL;
    g_free = NULL;
    g_nslots = g_nfree = 0;
}

static int slot_take(void)
{
    if (g_nfree == 0)
        return -1;
    int s = g_free[--g_nfree];
    g_slots[s].state = SLOT_BUSY;
    g_slots[s].gen++;
    return s;
}

static void slot_release(int s)
{
    g_slots[s].state = SLOT_FREE;
    g_free[g_nfree++] = s;
}

static int in_flight(void)
{
    return g_nslots - g_nfree;
}

/* cid = "<run>.<slot>.<gen>" */
static void make_cid(char *out, size_t size, int s)
{
    snprintf(out, size, "%s.%d.%u", g_run, s, g_slots[s].gen);
}

/* Parse a cid of this run; -1 if it belongs to someone else. */
static int parse_cid(const char *cid, size_t len, uint32_t *gen)
{
    size_t rl = strlen(g_run);
    if (len <= rl + 1 || len >= CID_MAX || memcmp(cid, g_run, rl) != 0 || cid[rl] != '.')
        return -1;
    char buf[CID_MAX];
    memcpy(buf, cid + rl + 1, len - rl - 1);
    buf[len - rl - 1] = '\0';
    char *end = NULL;
    errno = 0;
    long s = strtol(buf, &end, 10);
    if (errno || end == buf || *end != '.')
        return -1;
    char *end2 = NULL;
    unsigned long g = strtoul(end + 1, &end2, 10);
    if (end2 == end + 1 || *end2 != '\0')
        return -1;
    *gen = (uint32_t)g;
    return (s >= 0 && s < g_nslots) ? (int)s : -1;
}

/* ---------------------------------------------------------------------- */
/* produce                                                                 */
/* ---------------------------------------------------------------------- */

/* Produce @p body (stolen) for slot @p s, its latency measured from @p t0_ns
 * (0: now); true when queued. */
static bool send_req(int s, const char *topic, const char *key, const char *session,
                     json_t *body, int64_t t0_ns)
{
    char cid[CID_MAX];
    make_cid(cid, sizeof(cid), s);
    char *val = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (val == NULL)
        util_die("json_dumps failed");
    size_t vlen = strlen(val);
    uint64_t tag = ((uint64_t)g_slots[s].gen << 32) | (uint32_t)s;
    rd_kafka_resp_err_t e;
    int64_t give_up = util_now_ms() + 10000;
    g_slots[s].t0_ns = t0_ns ? t0_ns : util_now_ns();
    g_slots[s].ack_ns = 0;
    for (;;) {
        if (session != NULL)
            e = rd_kafka_producev(
                g_prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                RD_KAFKA_V_VALUE(val, vlen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_HEADER("kchat-cid", cid, (ssize_t)strlen(cid)),
                RD_KAFKA_V_HEADER("kchat-session", session, (ssize_t)strlen(session)),
                RD_KAFKA_V_HEADER("content-type", "application/json", 16),
                RD_KAFKA_V_OPAQUE((void *)(uintptr_t)tag), RD_KAFKA_V_END);
        else
            e = rd_kafka_producev(
                g_prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                RD_KAFKA_V_VALUE(val, vlen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_HEADER("kchat-cid", cid, (ssize_t)strlen(cid)),
                RD_KAFKA_V_HEADER("content-type", "application/json", 16),
                RD_KAFKA_V_OPAQUE((void *)(uintptr_t)tag), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || util_now_ms() >= give_up)
            break;
        rd_kafka_poll(g_prod, 10);
    }
    free(val);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (g_produce_fail < MAX_ERR_PRINT)
            fprintf(stderr, "load: produce to %s: %s\n", topic, rd_kafka_err2str(e));
        g_produce_fail++;
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------------- */
/* consume                                                                 */
/* ---------------------------------------------------------------------- */

/* Called with each response of this run; must release the slot. @p body is
 * NULL with --echo in the load phase (counted by cid, never decoded). */
typedef void (*resp_fn)(int s, const char *topic, json_t *body, int64_t t1_ns);

static void report_error(const char *what, const char *uid, json_t *body)
{
    if (g_err_printed >= MAX_ERR_PRINT) {
        g_err_printed++;
        return;
    }
    g_err_printed++;
    const char *code = json_string_value(json_object_get(body, "errorCode"));
    const char *msg = json_string_value(json_object_get(body, "errorMessage"));
    fprintf(stderr, "load: %s error for %s: errorCode=%s errorMessage=%s\n", what,
            uid ? uid : "?", code ? code : "(none)", msg ? msg : "(none)");
}

/* Poll the consumer for up to @p timeout_ms (until the first message; then
 * whatever is already there), handing every response of this run to @p fn.
 * With @p decode false the body is not parsed. */
static void pump(int timeout_ms, resp_fn fn, bool decode)
{
    rd_kafka_poll(g_prod, 0);
    int wait = timeout_ms > 0 ? timeout_ms : 0;
    for (;;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(g_cons, wait);
        if (m == NULL)
            break;
        wait = 0;
        int64_t t1 = util_now_ns();
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "load: consumer: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        rd_kafka_headers_t *hdrs = NULL;
        const void *cv = NULL;
        size_t cl = 0;
        int s = -1;
        uint32_t gen = 0;
        if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            rd_kafka_header_get_last(hdrs, "kchat-cid", &cv, &cl) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            cv != NULL)
            s = parse_cid(cv, cl, &gen);
        if (s < 0) {
            g_foreign++;
            rd_kafka_message_destroy(m);
            continue;
        }
        if (g_slots[s].state != SLOT_BUSY || g_slots[s].gen != gen) {
            g_late++;   /* answer after its timeout, or a repeat */
            rd_kafka_message_destroy(m);
            continue;
        }
        json_t *body = NULL;
        if (decode) {
            json_error_t je;
            body = json_loadb(m->payload, m->len, 0, &je);
            if (body == NULL || !json_is_object(body)) {
                g_undecodable++;
                if (g_undecodable <= MAX_ERR_PRINT)
                    fprintf(stderr, "load: undecodable response on %s: %.*s\n",
                            rd_kafka_topic_name(m->rkt), (int)(m->len > 200 ? 200 : m->len),
                            (const char *)m->payload);
                json_decref(body);
                g_err++;
                slot_release(s);
                rd_kafka_message_destroy(m);
                continue;
            }
        }
        fn(s, rd_kafka_topic_name(m->rkt), body, t1);
        json_decref(body);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_poll(g_prod, 0);
}

/* Expire requests older than @p timeout_ms. */
static void expire(int timeout_ms, const char *what)
{
    int64_t limit = util_now_ns() - (int64_t)timeout_ms * 1000000LL;
    for (int s = 0; s < g_nslots; s++)
        if (g_slots[s].state == SLOT_BUSY && g_slots[s].t0_ns < limit) {
            if (g_missing < MAX_ERR_PRINT)
                fprintf(stderr, "load: %s request of %s (cid %s.%d.%u) unanswered after %d ms\n",
                        what, g_users[g_slots[s].user].id, g_run, s, g_slots[s].gen, timeout_ms);
            g_missing++;
            slot_release(s);
        }
}

/* ---------------------------------------------------------------------- */
/* setup                                                                   */
/* ---------------------------------------------------------------------- */

static const char *g_phase;

static void reset_counters(void)
{
    g_ok = g_err = g_missing = g_late = g_produce_fail = g_undecodable = 0;
    g_err_printed = 0;
}

static bool check_ok(int s, json_t *body)
{
    json_t *ok = json_object_get(body, "isSuccess");
    if (json_is_true(ok)) {
        g_ok++;
        return true;
    }
    g_err++;
    report_error(g_phase, g_users[g_slots[s].user].id, body);
    return false;
}

static void on_user_add(int s, const char *topic, json_t *body, int64_t t1)
{
    (void)topic;
    (void)t1;
    check_ok(s, body);
    slot_release(s);
}

static void on_login(int s, const char *topic, json_t *body, int64_t t1)
{
    (void)topic;
    (void)t1;
    if (check_ok(s, body)) {
        const char *sid = json_string_value(json_object_get(body, "sessionId"));
        user *u = &g_users[g_slots[s].user];
        if (sid != NULL && sid[0] != '\0') {
            free(u->session);
            u->session = strdup(sid);
        } else {
            g_ok--;
            g_err++;
            fprintf(stderr, "load: login of %s succeeded without sessionId\n", u->id);
        }
    }
    slot_release(s);
}

static void on_add_friend(int s, const char *topic, json_t *body, int64_t t1)
{
    (void)topic;
    (void)t1;
    check_ok(s, body);
    slot_release(s);
}

static void on_add_room(int s, const char *topic, json_t *body, int64_t t1)
{
    (void)topic;
    (void)t1;
    if (check_ok(s, body)) {
        const char *rid = json_string_value(json_object_get(body, "roomId"));
        room *r = &g_rooms[g_slots[s].tag];
        if (rid != NULL && rid[0] != '\0' && strlen(rid) < sizeof(r->id)) {
            snprintf(r->id, sizeof(r->id), "%s", rid);
        } else {
            g_ok--;
            g_err++;
            fprintf(stderr, "load: room creation succeeded without a usable roomId\n");
        }
    }
    slot_release(s);
}

/* Wait until every setup request is answered or times out. */
static bool setup_wait(const char *phase, long expected, resp_fn fn)
{
    int64_t start = util_now_ms();
    int64_t deadline = start + (int64_t)opt.setup_timeout_s * 1000;
    if (deadline > g_deadline_ms)
        deadline = g_deadline_ms;
    while (in_flight() > 0 && util_now_ms() < deadline && !g_interrupted)
        pump(20, fn, true);
    if (in_flight() > 0) {
        g_missing += in_flight();
        fprintf(stderr, "load: setup %s: %d of %ld responses missing after %.1f s\n", phase,
                in_flight(), expected, (double)(util_now_ms() - start) / 1000.0);
    }
    bool good = g_ok == expected;
    fprintf(stderr, "load: setup %s: %ld ok, %ld errors, %ld missing, %ld produce failures\n",
            phase, g_ok, g_err, g_missing, g_produce_fail);
    return good;
}

static void user_need_friend(user *u, int f)
{
    for (int i = 0; i < u->nfriends; i++)
        if (u->friends[i] == f)
            return;
    if (u->nfriends == u->capfriends) {
        u->capfriends = u->capfriends ? u->capfriends * 2 : 8;
        u->friends = realloc(u->friends, (size_t)u->capfriends * sizeof(int));
        if (u->friends == NULL)
            util_die("out of memory");
    }
    u->friends[u->nfriends++] = f;
}

static void hex_random(char *out, size_t ndigits)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < ndigits; i++)
        out[i] = hx[rng_below(16)];
    out[ndigits] = '\0';
}

/* Users and the room plan: creator round-robin, 1..3 random distinct
 * friends. With --echo also the ids and sessions kchat would hand out. */
static void plan(void)
{
    int U = opt.users, R = opt.rooms;
    g_users = util_xcalloc((size_t)U, sizeof(*g_users));
    g_rooms = util_xcalloc((size_t)R, sizeof(*g_rooms));
    for (int i = 0; i < U; i++) {
        snprintf(g_users[i].id, sizeof(g_users[i].id), "ld-%s-u%d", g_run, i);
        snprintf(g_users[i].pw, sizeof(g_users[i].pw), "Pw-%016" PRIx64, rng_next());
        if (opt.echo) {
            g_users[i].session = util_xcalloc(SESSION_HEX + 1, 1);
            hex_random(g_users[i].session, SESSION_HEX);
        }
    }
    for (int r = 0; r < R; r++) {
        room *rm = &g_rooms[r];
        rm->members[0] = r % U;
        int want = 2 + (int)rng_below(3);
        if (want > U)
            want = U;
        rm->nmembers = 1;
        while (rm->nmembers < want) {
            int c = (int)rng_below((uint32_t)U);
            bool dup = false;
            for (int k = 0; k < rm->nmembers; k++)
                dup |= rm->members[k] == c;
            if (!dup)
                rm->members[rm->nmembers++] = c;
        }
        for (int k = 1; k < rm->nmembers; k++)
            user_need_friend(&g_users[rm->members[0]], rm->members[k]);
        if (opt.echo) {
            rm->id[0] = 'r';
            hex_random(rm->id + 1, 16);
        }
    }
}

/* kchat mode: register, log in, befriend, create the rooms. */
static void setup(void)
{
    int U = opt.users, R = opt.rooms;
    int64_t t0 = util_now_ms();
    int nslots = U > R ? U : R;
    long nfr_plan = 0;
    for (int i = 0; i < U; i++)
        nfr_plan += (g_users[i].nfriends + FRIENDS_PER_REQ - 1) / FRIENDS_PER_REQ;
    if (nfr_plan > nslots)
        nslots = (int)nfr_plan;
    slots_init(nslots);

    /* 1. register */
    g_phase = "user-add";
    reset_counters();
    for (int i = 0; i < U; i++) {
        int s = slot_take();
        g_slots[s].user = i;
        char email[96], name[80];
        snprintf(email, sizeof(email), "%s@bench.invalid", g_users[i].id);
        snprintf(name, sizeof(name), "Bench user %d", i);
        json_t *b = json_pack("{s:s, s:s, s:s, s:s}", "userId", g_users[i].id, "userPw",
                              g_users[i].pw, "email", email, "userName", name);
        if (!send_req(s, "user-add-request", g_users[i].id, NULL, b, 0))
            slot_release(s);
    }
    if (!setup_wait("user-add", U, on_user_add))
        util_die("setup failed at user-add");

    /* 2. login */
    g_phase = "login";
    reset_counters();
    for (int i = 0; i < U; i++) {
        int s = slot_take();
        g_slots[s].user = i;
        json_t *b = json_pack("{s:s, s:s}", "userId", g_users[i].id, "userPw", g_users[i].pw);
        if (!send_req(s, "login-request", g_users[i].id, NULL, b, 0))
            slot_release(s);
    }
    if (!setup_wait("login", U, on_login))
        util_die("setup failed at login");

    /* 3. friends: each creator follows the members of its rooms */
    g_phase = "user-add-friend";
    reset_counters();
    long nfr = 0;
    for (int i = 0; i < U; i++) {
        user *u = &g_users[i];
        for (int off = 0; off < u->nfriends; off += FRIENDS_PER_REQ) {
            int s = slot_take();
            if (s < 0)
                util_die("internal: out of setup slots");
            g_slots[s].user = i;
            json_t *arr = json_array();
            for (int k = off; k < u->nfriends && k < off + FRIENDS_PER_REQ; k++)
                json_array_append_new(arr, json_string(g_users[u->friends[k]].id));
            json_t *b = json_pack("{s:s, s:o}", "userId", u->id, "friendId", arr);
            if (!send_req(s, "user-add-friend-request", u->id, u->session, b, 0))
                slot_release(s);
            nfr++;
        }
    }
    if (!setup_wait("user-add-friend", nfr, on_add_friend))
        util_die("setup failed at user-add-friend");

    /* 4. rooms */
    g_phase = "user-add-room";
    reset_counters();
    for (int r = 0; r < R; r++) {
        room *rm = &g_rooms[r];
        user *u = &g_users[rm->members[0]];
        int s = slot_take();
        g_slots[s].user = rm->members[0];
        g_slots[s].tag = r;
        json_t *arr = json_array();
        for (int k = 1; k < rm->nmembers; k++)
            json_array_append_new(arr, json_string(g_users[rm->members[k]].id));
        char name[64];
        snprintf(name, sizeof(name), "bench room %d", r);
        json_t *b = json_pack("{s:s, s:o, s:s}", "userId", u->id, "friendId", arr, "roomName",
                              name);
        if (!send_req(s, "user-add-room-request", u->id, u->session, b, 0))
            slot_release(s);
    }
    if (!setup_wait("user-add-room", R, on_add_room))
        util_die("setup failed at user-add-room");
    slots_free();
    fprintf(stderr, "load: setup done in %.2f s: %d users, %d rooms, %ld friend requests\n",
            (double)(util_now_ms() - t0) / 1000.0, U, R, nfr);
}

/* ---------------------------------------------------------------------- */
/* load phase: checks of kchat's answers                                   */
/* ---------------------------------------------------------------------- */

/* Count one answer of slot @p s that failed a check; print the first few. */
static void load_bad(int s, const char *why, json_t *body)
{
    g_err++;
    g_op_err[g_slots[s].op]++;
    if (g_err_printed++ < MAX_ERR_PRINT) {
        char *txt = body ? json_dumps(body, JSON_COMPACT) : NULL;
        fprintf(stderr, "load: %s answer for %s: %s: %.300s\n", g_lops[g_slots[s].op].name,
                g_users[g_slots[s].user].id, why, txt ? txt : "?");
        free(txt);
    }
}

/* chat: roomId and writerId echoed, seq recorded for the per-room check. */
static bool check_chat(int s, json_t *body)
{
    slot *sl = &g_slots[s];
    room *r = &g_rooms[sl->room];
    json_t *jseq = json_object_get(body, "seq");
    const char *rid = json_string_value(json_object_get(body, "roomId"));
    const char *wid = json_string_value(json_object_get(body, "writerId"));
    if (!json_is_integer(jseq) || json_integer_value(jseq) < 1 || rid == NULL ||
        strcmp(rid, r->id) != 0 || wid == NULL || strcmp(wid, g_users[sl->user].id) != 0) {
        load_bad(s, "success with wrong seq/roomId/writerId", body);
        return false;
    }
    r->ok++;
    int64_t seq = json_integer_value(jseq);
    if (seq > r->max_seq)
        r->max_seq = seq;
    if ((size_t)seq >= r->seen_cap) {
        size_t nc = r->seen_cap ? r->seen_cap : 1024;
        while (nc <= (size_t)seq)
            nc *= 2;
        r->seen = realloc(r->seen, nc);
        if (r->seen == NULL)
            util_die("out of memory");
        memset(r->seen + r->seen_cap, 0, nc - r->seen_cap);
        r->seen_cap = nc;
    }
    if (r->seen[seq])
        r->dup_seq++;
    r->seen[seq] = 1;
    return true;
}

/* history: roomId echoed, at most limit messages, seqs ascending. */
static bool check_history(int s, json_t *body)
{
    room *r = &g_rooms[g_slots[s].room];
    const char *rid = json_string_value(json_object_get(body, "roomId"));
    json_t *msgs = json_object_get(body, "messages");
    if (rid == NULL || strcmp(rid, r->id) != 0 || !json_is_array(msgs) ||
        json_array_size(msgs) > (size_t)opt.history_limit) {
        load_bad(s, "success with wrong roomId or messages", body);
        return false;
    }
    json_int_t prev = 0;
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        json_t *jseq = json_object_get(m, "seq");
        if (!json_is_integer(jseq) || json_integer_value(jseq) <= prev) {
            load_bad(s, "messages not in ascending seq order", body);
            return false;
        }
        prev = json_integer_value(jseq);
    }
    return true;
}

/* rooms: every room the user created is listed. */
static bool check_rooms(int s, json_t *body)
{
    int ui = g_slots[s].user;
    json_t *rooms = json_object_get(body, "rooms");
    if (!json_is_array(rooms)) {
        load_bad(s, "success without a rooms list", body);
        return false;
    }
    for (int r = ui; r < opt.rooms; r += opt.users) {   /* creator of r is r % users */
        bool found = false;
        size_t i;
        json_t *e;
        json_array_foreach(rooms, i, e) {
            const char *rid = json_string_value(json_object_get(e, "roomId"));
            if (rid != NULL && strcmp(rid, g_rooms[r].id) == 0) {
                found = true;
                break;
            }
        }
        if (!found) {
            load_bad(s, "a room the user created is not listed", body);
            return false;
        }
    }
    return true;
}

static void on_load_resp(int s, const char *topic, json_t *body, int64_t t1)
{
    slot *sl = &g_slots[s];
    int op = sl->op;
    bool measured = sl->idx >= opt.warmup;
    if (measured) {
        g_lat_ns[g_nlat] = t1 - sl->t0_ns;
        g_lat_op[g_nlat++] = (uint8_t)op;
    }
    bool good;
    if (strcmp(topic, g_lops[op].response) != 0) {
        load_bad(s, "answer on the wrong topic", body);
        good = false;
    } else if (body == NULL) {            /* --echo: counted by its cid */
        good = true;
    } else if (!json_is_true(json_object_get(body, "isSuccess"))) {
        g_err++;
        g_op_err[op]++;
        report_error(g_lops[op].name, g_users[sl->user].id, body);
        good = false;
    } else if (op == LOP_CHAT) {
        good = check_chat(s, body);
    } else if (op == LOP_HISTORY) {
        good = check_history(s, body);
    } else {
        good = check_rooms(s, body);
    }
    if (good) {
        g_ok++;
        g_op_ok[op]++;
        g_meas_ok += measured;
    }
    if (g_samples != NULL)
        fprintf(g_samples, "%.3f %.3f %.3f %s %d %d %s\n",
                (double)(sl->t0_ns - g_load_t0_ns) / 1e6, (double)(t1 - sl->t0_ns) / 1e6,
                sl->ack_ns ? (double)(sl->ack_ns - sl->t0_ns) / 1e6 : -1.0, g_lops[op].name,
                sl->room, sl->user, good ? "ok" : "err");
    slot_release(s);
}

/* ---------------------------------------------------------------------- */
/* load phase                                                              */
/* ---------------------------------------------------------------------- */

static int pick_op(void)
{
    int total = 0;
    for (int i = 0; i < LOP__N; i++)
        total += opt.mix[i];
    int x = (int)rng_below((uint32_t)total);
    for (int i = 0; i < LOP__N; i++) {
        if (x < opt.mix[i])
            return i;
        x -= opt.mix[i];
    }
    return LOP_CHAT;
}

/* Send request number @p n of the load phase; latency from @p t0_ns (0: now). */
static void send_one(long n, int64_t t0_ns)
{
    char msg[MSG_BYTES + 1];
    char cmid[65];
    int op = pick_op();
    int ri = (int)rng_below((uint32_t)opt.rooms);
    room *r = &g_rooms[ri];
    int ui = op == LOP_ROOMS ? (int)rng_below((uint32_t)opt.users)
                             : r->members[rng_below((uint32_t)r->nmembers)];
    user *u = &g_users[ui];
    int s = slot_take();
    g_slots[s].op = op;
    g_slots[s].idx = n;
    g_slots[s].room = ri;
    g_slots[s].user = ui;
    json_t *b;
    if (op == LOP_CHAT) {
        int k = snprintf(msg, sizeof(msg), "bench message %ld from %s to room %d: ", n, u->id, ri);
        if (k < 0)
            k = 0;
        for (; k < MSG_BYTES; k++)
            msg[k] = (char)('a' + (k % 26));
        msg[MSG_BYTES] = '\0';
        snprintf(cmid, sizeof(cmid), "%s-m%ld", g_run, n);
        b = json_pack("{s:s, s:s, s:s, s:s}", "roomId", r->id, "writerId", u->id, "message", msg,
                      "clientMsgId", cmid);
    } else if (op == LOP_HISTORY) {
        b = json_pack("{s:s, s:s, s:i}", "userId", u->id, "roomId", r->id, "limit",
                      opt.history_limit);
    } else {
        b = json_pack("{s:s}", "userId", u->id);
    }
    g_op_sent[op]++;
    if (!send_req(s, g_lops[op].request, u->id, u->session, b, t0_ns)) {
        g_missing++;
        slot_release(s);
    }
}

static void progress(long sent, int64_t now, int64_t t_start, bool last)
{
    static int64_t last_ns;
    static long last_ok;
    if (!last && now - last_ns < (int64_t)PROGRESS_MS * 1000000)
        return;
    double dt = last_ns ? (double)(now - last_ns) / 1e9 : (double)(now - t_start) / 1e9;
    double inst = dt > 0 ? (double)(g_ok + g_err - last_ok) / dt : 0;
    fprintf(stderr, "\rload: %.1f s  sent %ld/%ld  ok %ld  err %ld  in flight %d  %.0f/s\033[K%s",
            (double)(now - t_start) / 1e9, sent, opt.requests, g_ok, g_err, in_flight(), inst,
            last ? "\n" : "");
    last_ns = now;
    last_ok = g_ok + g_err;
}

static json_t *lat_json(const util_lat *l)
{
    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "samples", (json_int_t)l->n,
                     "mean_ms", l->mean, "p50_ms", l->p50, "p90_ms", l->p90, "p99_ms", l->p99,
                     "p999_ms", l->p999, "max_ms", l->max);
}

static int load_phase(void)
{
    bool open = opt.rate > 0;
    slots_init(opt.inflight);
    reset_counters();
    g_lat_ns = util_xcalloc((size_t)opt.requests, sizeof(*g_lat_ns));
    g_lat_op = util_xcalloc((size_t)opt.requests, sizeof(*g_lat_op));
    g_nlat = 0;
    long sent = 0, cap_waits = 0;
    bool stopped = false, capped = false;
    bool show = opt.progress == 1 || (opt.progress < 0 && isatty(STDERR_FILENO));
    int64_t t_start = util_now_ns();
    int64_t t_last_send = t_start;
    int64_t t_meas = t_start;     /* start of the measured part: request --warmup sent */
    bool measuring = opt.warmup == 0;
    bool timed_out = false;       /* --seconds of the measured part have passed */
    g_load_t0_ns = t_start;
    if (opt.samples_file != NULL) {
        g_samples = fopen(opt.samples_file, "w");
        if (g_samples == NULL)
            util_die("cannot write %s: %s", opt.samples_file, strerror(errno));
        fprintf(g_samples,
                "# send_ms_since_start latency_ms produce_ack_ms op room user result\n");
    }
    int64_t last_expire = util_now_ms();
    int64_t last_progress = util_now_ms();
    int64_t drain_deadline = INT64_MAX;
    const double ns_per_req = open ? 1e9 / opt.rate : 0;
    int64_t next_ns = t_start;    /* open loop: schedule of request `sent` */

    for (;;) {
        int64_t nms = util_now_ms();
        if (!stopped && (nms >= g_deadline_ms || g_interrupted)) {
            stopped = true;
            drain_deadline = nms + DRAIN_GRACE_MS;
            if (show)
                fputc('\n', stderr);
            fprintf(stderr, "load: %s after %ld of %ld requests; draining %d in flight\n",
                    g_interrupted ? "interrupted" : "--duration-max reached", sent,
                    opt.requests, in_flight());
        }
        if (!timed_out && measuring && opt.seconds > 0 &&
            (double)(util_now_ns() - t_meas) >= opt.seconds * 1e9)
            timed_out = true;
        bool sending = !stopped && !timed_out && sent < opt.requests;
        if (!open) {
            while (sending && sent < opt.requests && g_nfree > 0) {
                if (sent == opt.warmup && sent > 0) {
                    t_meas = util_now_ns();
                    measuring = true;
                }
                send_one(sent, 0);
                sent++;
                t_last_send = util_now_ns();
            }
        } else {
            int64_t now = util_now_ns();
            while (sending && sent < opt.requests && next_ns <= now) {
                if (g_nfree == 0) {
                    if (!capped)
                        cap_waits++;
                    capped = true;
                    break;
                }
                capped = false;
                if (sent == opt.warmup && sent > 0) {
                    t_meas = next_ns;
                    measuring = true;
                }
                send_one(sent, next_ns);
                sent++;
                t_last_send = util_now_ns();
                next_ns = t_start + (int64_t)((double)sent * ns_per_req);
            }
        }
        if (in_flight() == 0 && (sent >= opt.requests || stopped || timed_out))
            break;
        if (stopped && util_now_ms() >= drain_deadline) {
            g_missing += in_flight();
            fprintf(stderr, "load: %d requests still unanswered after the drain grace\n",
                    in_flight());
            break;
        }
        /* Wait for answers: up to 5 ms, in an open loop no later than the
         * next scheduled send (a sub-millisecond wait is slept out). */
        int wait_ms = 5;
        if (open && sending && sent < opt.requests && !capped) {
            int64_t left = next_ns - util_now_ns();
            if (left <= 0) {
                wait_ms = 0;
            } else if (left < 1000000) {
                struct timespec ts = {0, (long)left};
                nanosleep(&ts, NULL);
                wait_ms = 0;
            } else {
                wait_ms = (int)(left / 1000000);
                if (wait_ms > 5)
                    wait_ms = 5;
            }
        }
        long before = g_ok + g_err;
        pump(wait_ms, on_load_resp, !opt.echo);
        nms = util_now_ms();
        if (g_ok + g_err != before)
            last_progress = nms;
        if (nms - last_expire >= 100) {
            expire(opt.request_timeout_ms, "load");
            last_expire = nms;
        }
        if (show)
            progress(sent, util_now_ns(), t_start, false);
        if (opt.verbose && nms - last_progress > 2000) {
            fprintf(stderr, "load: no response for 2 s (%d in flight, %ld sent)\n", in_flight(),
                    sent);
            last_progress = nms;
        }
    }
    int64_t t_end = util_now_ns();
    if (show)
        progress(sent, t_end, t_start, true);
    if (g_samples != NULL) {
        fclose(g_samples);
        g_samples = NULL;
    }
    double secs = (double)(t_end - t_start) / 1e9;
    double send_secs = (double)(t_last_send - t_start) / 1e9;
    double meas_secs = (double)(t_end - t_meas) / 1e9;
    double rps = meas_secs > 0 ? (double)g_meas_ok / meas_secs : 0.0;

    /* per operation: copy out its samples before the whole set is sorted */
    util_lat lop[LOP__N];
    int64_t *tmp = util_xcalloc((size_t)(g_nlat ? g_nlat : 1), sizeof(*tmp));
    for (int o = 0; o < LOP__N; o++) {
        long n = 0;
        for (long i = 0; i < g_nlat; i++)
            if (g_lat_op[i] == o)
                tmp[n++] = g_lat_ns[i];
        lop[o] = util_lat_summarize(tmp, n);
    }
    free(tmp);
    util_lat all = util_lat_summarize(g_lat_ns, g_nlat);

    /* seq check (kchat mode): per room the successful answers must carry
     * 1..ok exactly (rooms are fresh and every clientMsgId unique). */
    long seq_bad_rooms = 0;
    for (int r = 0; r < opt.rooms && !opt.echo; r++) {
        room *rm = &g_rooms[r];
        int64_t distinct = 0;
        for (size_t q = 1; q < rm->seen_cap; q++)
            distinct += rm->seen[q];
        if (rm->dup_seq != 0 || distinct != rm->ok || rm->max_seq != rm->ok) {
            if (seq_bad_rooms < MAX_ERR_PRINT)
                fprintf(stderr,
                        "load: room %s: %" PRId64 " ok answers, %" PRId64 " distinct seqs, max "
                        "seq %" PRId64 ", %" PRId64 " repeated seqs\n",
                        rm->id, rm->ok, distinct, rm->max_seq, rm->dup_seq);
            seq_bad_rooms++;
        }
    }

    const char *mode = opt.echo ? "echo" : "kchat", *loop = open ? "open" : "closed";
    printf("load: config mode=%s loop=%s users=%d rooms=%d inflight=%d rate=%.0f "
           "mix=chat:%d,history:%d,rooms:%d seed=%" PRIu64 " run=%s\n",
           mode, loop, opt.users, opt.rooms, opt.inflight, opt.rate, opt.mix[LOP_CHAT],
           opt.mix[LOP_HISTORY], opt.mix[LOP_ROOMS], opt.seed, g_run);
    printf("load: throughput %.1f ok responses/s over the measured %.3f s (%ld sent, %ld ok, "
           "%ld errors, %ld missing, %ld late, %ld produce failures; %ld warm-up requests, "
           "%.3f s in all)\n",
           rps, meas_secs, sent, g_ok, g_err, g_missing, g_late, g_produce_fail,
           opt.warmup < sent ? opt.warmup : sent, secs);
    if (open)
        printf("load: open loop: offered %.0f/s, sent at %.0f/s, %ld waits at the in-flight "
               "cap of %d\n",
               opt.rate, send_secs > 0 ? (double)sent / send_secs : 0.0, cap_waits,
               opt.inflight);
    printf("load: latency ms (%ld samples, from %s): mean=%.3f p50=%.3f p90=%.3f p99=%.3f "
           "p99.9=%.3f max=%.3f\n",
           all.n, open ? "the scheduled send time" : "produce", all.mean, all.p50, all.p90,
           all.p99, all.p999, all.max);
    if (!opt.echo)
        printf("load: seq check: %s (%ld of %d rooms inconsistent)\n",
               seq_bad_rooms ? "FAILED" : "ok", seq_bad_rooms, opt.rooms);
    if (g_err_printed > MAX_ERR_PRINT)
        printf("load: (%ld further error responses not printed)\n",
               g_err_printed - MAX_ERR_PRINT);
    for (int o = 0; o < LOP__N; o++)
        printf("result-op: op=%s sent=%ld ok=%ld err=%ld p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f "
               "p999_ms=%.3f max_ms=%.3f\n",
               g_lops[o].name, g_op_sent[o], g_op_ok[o], g_op_err[o], lop[o].p50, lop[o].p90,
               lop[o].p99, lop[o].p999, lop[o].max);
    printf("result: mode=%s loop=%s inflight=%d rate=%.0f warmup=%ld sent=%ld ok=%ld err=%ld "
           "missing=%ld seconds=%.3f rps=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f "
           "p999_ms=%.3f max_ms=%.3f\n",
           mode, loop, opt.inflight, opt.rate, opt.warmup, sent, g_ok, g_err, g_missing,
           meas_secs, rps, all.p50, all.p90, all.p99, all.p999, all.max);
    fflush(stdout);

    if (opt.json_file != NULL) {
        json_t *ops = json_object();
        for (int o = 0; o < LOP__N; o++) {
            json_t *j = lat_json(&lop[o]);
            json_object_set_new(j, "weight", json_integer(opt.mix[o]));
            json_object_set_new(j, "sent", json_integer(g_op_sent[o]));
            json_object_set_new(j, "ok", json_integer(g_op_ok[o]));
            json_object_set_new(j, "err", json_integer(g_op_err[o]));
            json_object_set_new(ops, g_lops[o].name, j);
        }
        json_t *j = lat_json(&all);
        json_t *top = json_pack(
            "{s:s, s:s, s:i, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:b, "
            "s:i, s:i, s:I, s:s, s:o}",
            "mode", mode, "loop", loop, "inflight", opt.inflight, "rate", opt.rate, "requests",
            (json_int_t)opt.requests, "warmup", (json_int_t)opt.warmup, "sent", (json_int_t)sent,
            "ok", (json_int_t)g_ok, "err", (json_int_t)g_err, "missing", (json_int_t)g_missing,
            "late", (json_int_t)g_late, "seconds", meas_secs, "total_seconds", secs, "rps", rps,
            "cap_waits", (json_int_t)cap_waits, "seq_ok", seq_bad_rooms == 0, "users", opt.users,
            "rooms", opt.rooms, "seed", (json_int_t)opt.seed, "run", g_run, "ops", ops);
        json_object_update(j, top);
        json_decref(top);
        if (json_dump_file(j, opt.json_file,
                           JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(10)) != 0)
            fprintf(stderr, "load: cannot write %s\n", opt.json_file);
        json_decref(j);
    }

    long unsent = opt.requests - sent;
    if (unsent > 0 && !timed_out)
        fprintf(stderr, "load: note: stopped early (%s): %ld of %ld requests never sent\n",
                g_interrupted ? "signal" : "--duration-max", unsent, opt.requests);
    if (g_missing > 0) {
        fprintf(stderr, "load: FAIL: %ld of %ld sent requests got no response\n", g_missing, sent);
        return 1;
    }
    if (g_err > 0 || seq_bad_rooms > 0)
        return 3;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* main                                                                    */
/* ---------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: load (--bootstrap B | --bootstrap-file F) [options]\n"
            "  --users U            users (default 20, >= 2)\n"
            "  --rooms R            rooms of 2..4 members (default 10)\n"
            "  --requests N         requests of the load phase (default 20000)\n"
            "  --warmup N           the first N of them are sent, answered and checked but\n"
            "                       left out of rps and latencies (default 0)\n"
            "  --seconds S          send no request after S s of the measured part (after\n"
            "                       the warm-up); --requests then only caps the run\n"
            "  --mix SPEC           operation weights (default chat=90,history=5,rooms=5)\n"
            "  --history-limit N    limit of each room-history request (default 50)\n"
            "  --inflight K         closed loop: requests outstanding (default 256);\n"
            "                       open loop: safety cap (default %d)\n"
            "  --rate R             open loop at R requests/s (default: closed loop)\n"
            "  --echo               against bench/echo: no setup, answers counted by cid\n"
            "  --duration-max S     stop sending after S s of total run time (default 120)\n"
            "  --seed N             RNG seed (default: from time and pid)\n"
            "  --setup-timeout S    bound of each setup step (default 30)\n"
            "  --request-timeout MS a request unanswered this long is missing (default 10000)\n"
            "  --linger-ms MS       producer linger.ms (default 1)\n"
            "  --json FILE          write the results as JSON\n"
            "  --samples-file F     one line per answered request: send time, latency, "
            "produce ack\n"
            "  --progress, --no-progress  one-line progress on stderr (default: if a terminal)\n"
            "  --verbose            librdkafka debug-level logs, stall notices\n"
            "exit: 0 all ok; 1 responses missing; 3 error responses or bad content; 2 setup/usage\n"
            "(requests left unsent by --duration-max are reported, not an error)\n",
            OPEN_CAP_DEFAULT);
}

/* --mix chat=90,history=5,rooms=5 (operations left out weigh 0). */
static void parse_mix(const char *spec)
{
    int w[LOP__N] = {0};
    char *copy = strdup(spec), *save = NULL;
    if (copy == NULL)
        util_die("out of memory");
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (eq == NULL)
            util_die("bad --mix item '%s' (want name=weight)", tok);
        *eq = '\0';
        int o = 0;
        while (o < LOP__N && strcmp(tok, g_lops[o].name) != 0)
            o++;
        if (o == LOP__N)
            util_die("unknown --mix operation '%s' (chat, history, rooms)", tok);
        w[o] = (int)util_parse_long(eq + 1, "--mix weight", 0, 1000000);
    }
    free(copy);
    int total = 0;
    for (int o = 0; o < LOP__N; o++)
        total += w[o];
    if (total <= 0)
        util_die("--mix '%s' has no positive weight", spec);
    memcpy(opt.mix, w, sizeof(w));
}

int main(int argc, char **argv)
{
    enum {
        O_BOOT = 1000, O_BOOTF, O_USERS, O_ROOMS, O_REQ, O_WARM, O_INFL, O_RATE, O_MIX, O_HLIM,
        O_ECHO,
        O_DUR, O_SECS, O_SEED, O_SETUP, O_RTO, O_LINGER, O_VERB, O_SAMPLES, O_JSON, O_PROG, O_NOPROG,
        O_HELP
    };
    static const struct option lo[] = {
        {"bootstrap", required_argument, NULL, O_BOOT},
        {"bootstrap-file", required_argument, NULL, O_BOOTF},
        {"users", required_argument, NULL, O_USERS},
        {"rooms", required_argument, NULL, O_ROOMS},
        {"requests", required_argument, NULL, O_REQ},
        {"warmup", required_argument, NULL, O_WARM},
        {"inflight", required_argument, NULL, O_INFL},
        {"rate", required_argument, NULL, O_RATE},
        {"mix", required_argument, NULL, O_MIX},
        {"history-limit", required_argument, NULL, O_HLIM},
        {"echo", no_argument, NULL, O_ECHO},
        {"duration-max", required_argument, NULL, O_DUR},
        {"seconds", required_argument, NULL, O_SECS},
        {"seed", required_argument, NULL, O_SEED},
        {"setup-timeout", required_argument, NULL, O_SETUP},
        {"request-timeout", required_argument, NULL, O_RTO},
        {"linger-ms", required_argument, NULL, O_LINGER},
        {"verbose", no_argument, NULL, O_VERB},
        {"samples-file", required_argument, NULL, O_SAMPLES},
        {"json", required_argument, NULL, O_JSON},
        {"progress", no_argument, NULL, O_PROG},
        {"no-progress", no_argument, NULL, O_NOPROG},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int c;
    util_prog = "load";
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case O_BOOT: opt.bootstrap = optarg; break;
        case O_BOOTF: opt.bootstrap_file = optarg; break;
        case O_USERS: opt.users = (int)util_parse_long(optarg, "--users", 2, 1000000); break;
        case O_ROOMS: opt.rooms = (int)util_parse_long(optarg, "--rooms", 1, 1000000); break;
        case O_REQ: opt.requests = util_parse_long(optarg, "--requests", 0, 1000000000L); break;
        case O_WARM: opt.warmup = util_parse_long(optarg, "--warmup", 0, 1000000000L); break;
        case O_INFL:
            opt.inflight = (int)util_parse_long(optarg, "--inflight", 1, 1000000);
            opt.inflight_set = true;
            break;
        case O_RATE: {
            char *end = NULL;
            errno = 0;
            opt.rate = strtod(optarg, &end);
            if (errno || end == optarg || *end != '\0' || !(opt.rate > 0) || opt.rate > 1e7)
                util_die("bad --rate '%s' (want requests/s, > 0)", optarg);
            break;
        }
        case O_MIX: parse_mix(optarg); break;
        case O_HLIM: opt.history_limit = (int)util_parse_long(optarg, "--history-limit", 1, 100); break;
        case O_ECHO: opt.echo = true; break;
        case O_SECS: {
            char *end = NULL;
            errno = 0;
            opt.seconds = strtod(optarg, &end);
            if (errno != 0 || end == optarg || *end != '\0' || !(opt.seconds > 0) ||
                opt.seconds > 86400)
                util_die("bad --seconds '%s' (want seconds, > 0)", optarg);
            break;
        }
        case O_DUR: opt.duration_max_s = (int)util_parse_long(optarg, "--duration-max", 1, 86400); break;
        case O_SEED: {
            char *end = NULL;
            errno = 0;
            opt.seed = strtoull(optarg, &end, 0);
            if (errno || end == optarg || *end != '\0')
                util_die("bad --seed '%s'", optarg);
            opt.seed_set = true;
            break;
        }
        case O_SETUP: opt.setup_timeout_s = (int)util_parse_long(optarg, "--setup-timeout", 1, 3600); break;
        case O_RTO: opt.request_timeout_ms = (int)util_parse_long(optarg, "--request-timeout", 1, 3600000); break;
        case O_LINGER: opt.linger_ms = (int)util_parse_long(optarg, "--linger-ms", 0, 900000); break;
        case O_VERB: opt.verbose = 1; break;
        case O_SAMPLES: opt.samples_file = optarg; break;
        case O_JSON: opt.json_file = optarg; break;
        case O_PROG: opt.progress = 1; break;
        case O_NOPROG: opt.progress = 0; break;
        case O_HELP: usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (opt.rate > 0 && !opt.inflight_set)
        opt.inflight = OPEN_CAP_DEFAULT;
    if (opt.warmup > 0 && opt.warmup >= opt.requests)
        util_die("--warmup %ld leaves none of the %ld --requests to measure", opt.warmup,
                 opt.requests);
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

    g_deadline_ms = util_now_ms() + (int64_t)opt.duration_max_s * 1000;
    if (!opt.seed_set) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        opt.seed = ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec ^
                   ((uint64_t)getpid() << 32);
    }
    g_rng = opt.seed ? opt.seed : 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 4; i++)
        (void)rng_next();
    /* run prefix: unique per run even with a fixed seed */
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t v = ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)(ts.tv_nsec / 1000) ^
                     ((uint64_t)getpid() << 40);
        static const char b36[] = "0123456789abcdefghijklmnopqrstuvwxyz";
        char tmp[16];
        int n = 0;
        do {
            tmp[n++] = b36[v % 36];
            v /= 36;
        } while (v && n < 12);
        for (int i = 0; i < n; i++)
            g_run[i] = tmp[n - 1 - i];
        g_run[n] = '\0';
    }
    fprintf(stderr, "load: bootstrap %s, run %s, seed %" PRIu64 ", %s mode\n", opt.bootstrap,
            g_run, opt.seed, opt.echo ? "echo" : "kchat");

    kafka_init();
    plan();
    if (!opt.echo)
        setup();
    int rc = load_phase();

    /* shutdown, bounded */
    rd_kafka_flush(g_prod, 2000);
    rd_kafka_destroy_flags(g_cons, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    rd_kafka_destroy(g_prod);
    for (int i = 0; i < opt.users; i++) {
        free(g_users[i].session);
        free(g_users[i].friends);
    }
    for (int r = 0; r < opt.rooms; r++)
        free(g_rooms[r].seen);
    free(g_users);
    free(g_rooms);
    free(g_lat_ns);
    free(g_lat_op);
    free(boot_owned);
    return rc;
}
