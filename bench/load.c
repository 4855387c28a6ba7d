/*
 * bench/load.c - closed-loop load generator for kchat (PROTOCOL.md v1).
 *
 * One thread, one producer, one consumer (manual assignment, no consumer
 * group). Setup registers --users users, logs them in, makes each room
 * creator follow the members it needs and creates --rooms rooms of 2..4
 * members. The load phase then keeps at most --inflight user-add-chat
 * requests outstanding until --requests were sent, measuring each request
 * from produce (CLOCK_MONOTONIC) to the receipt of its response (matched by
 * the kchat-cid header).
 *
 * Every wait is bounded: each setup step by --setup-timeout, each chat
 * request by --request-timeout, the whole run by --duration-max (then
 * sending stops and in-flight requests get at most DRAIN_GRACE_MS more).
 *
 * Exit status: 0 every sent request answered with success; 1 responses
 * missing (unanswered within --request-timeout or the drain grace, or the
 * produce failed); 3 every request answered but some with isSuccess false or
 * an inconsistent seq; 2 usage, connection or setup failure. Requests never
 * sent because --duration-max (or SIGINT/SIGTERM) stopped the run early are
 * reported but do not by themselves make the exit status non-zero.
 *
 * Build: make -f Makefile -f bench/bench.mk build/bench/load  (or include
 * bench/bench.mk from the Makefile).
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

#define MAX_ERR_PRINT   5
#define DRAIN_GRACE_MS  5000
#define MSG_BYTES       100
#define FRIENDS_PER_REQ 100   /* PROTOCOL.md §2: friendId list 1..100 */
#define CID_MAX         64

/* ---------------------------------------------------------------------- */
/* options                                                                 */
/* ---------------------------------------------------------------------- */

static struct {
    const char *bootstrap;
    const char *bootstrap_file;
    int users;
    int rooms;
    long requests;
    int inflight;
    int duration_max_s;
    uint64_t seed;
    bool seed_set;
    int setup_timeout_s;
    int request_timeout_ms;
    int linger_ms;
    int verbose;
    const char *samples_file;
} opt = {
    .users = 20,
    .rooms = 10,
    .requests = 20000,
    .inflight = 256,
    .duration_max_s = 120,
    .setup_timeout_s = 30,
    .request_timeout_ms = 10000,
    .linger_ms = 1,
};

static volatile sig_atomic_t g_interrupted;

static void on_signal(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

/* ---------------------------------------------------------------------- */
/* time, rng                                                               */
/* ---------------------------------------------------------------------- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t now_ms(void)
{
    return now_ns() / 1000000LL;
}

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
    char *session;          /* from login */
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
    int64_t t0_ns;          /* at produce */
    int64_t ack_ns;         /* at the delivery report (0: not yet) */
    int room;               /* load phase: the room written to */
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
static int64_t *g_lat_ns;           /* load phase samples */
static long g_nlat;
static FILE *g_samples;             /* --samples-file */
static int64_t g_load_t0_ns;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("load: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (p == NULL)
        die("out of memory");
    return p;
}

/* ---------------------------------------------------------------------- */
/* Kafka setup                                                             */
/* ---------------------------------------------------------------------- */

static void conf_set(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char err[512];
    if (rd_kafka_conf_set(c, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK)
        die("config %s=%s: %s", k, v, err);
}

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
            g_slots[s].ack_ns = now_ns();
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

static const char *const g_resp_topics[] = {
    "user-add-response", "login-response", "user-add-friend-response",
    "user-add-room-response", "user-add-chat-response",
};
#define N_RESP_TOPICS (sizeof(g_resp_topics) / sizeof(g_resp_topics[0]))

static void kafka_init(void)
{
    char err[512];
    char v[32];

    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    conf_set(pc, "bootstrap.servers", opt.bootstrap);
    conf_set(pc, "client.id", "kchat-bench-load");
    conf_set(pc, "partitioner", "murmur2_random");   /* PROTOCOL.md §1 */
    conf_set(pc, "acks", "all");
    snprintf(v, sizeof(v), "%d", opt.linger_ms);
    conf_set(pc, "linger.ms", v);
    conf_set(pc, "message.timeout.ms", "30000");
    conf_set(pc, "enable.idempotence", "false");
    conf_set(pc, "queue.buffering.max.messages", "1000000");
    rd_kafka_conf_set_dr_msg_cb(pc, dr_cb);
    rd_kafka_conf_set_log_cb(pc, log_cb);
    g_prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof(err));
    if (g_prod == NULL)
        die("producer: %s", err);

    /* Warm the producer's metadata cache for the request topics, so the
     * first request of each kind is not held back by a topic lookup. */
    static const char *const req_topics[] = {
        "user-add-request", "login-request", "user-add-friend-request",
        "user-add-room-request", "user-add-chat-request",
    };
    for (size_t i = 0; i < sizeof(req_topics) / sizeof(req_topics[0]); i++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(g_prod, req_topics[i], NULL);
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
    conf_set(cc, "bootstrap.servers", opt.bootstrap);
    conf_set(cc, "client.id", "kchat-bench-load-cons");
    conf_set(cc, "group.id", gid);
    conf_set(cc, "enable.auto.commit", "false");
    conf_set(cc, "enable.auto.offset.store", "false");
    conf_set(cc, "enable.partition.eof", "false");
    conf_set(cc, "auto.offset.reset", "latest");
    conf_set(cc, "fetch.wait.max.ms", "5");
    conf_set(cc, "fetch.error.backoff.ms", "20");
    rd_kafka_conf_set_log_cb(cc, log_cb);
    g_cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err));
    if (g_cons == NULL)
        die("consumer: %s", err);

    /* Wait (bounded) until the response topics exist, then assign all their
     * partitions at the current high watermark: an explicit offset, so no
     * response produced after this point can be missed however late the
     * fetcher starts. */
    int64_t deadline = now_ms() + 30000;
    rd_kafka_topic_partition_list_t *tpl = NULL;
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(g_cons, 1, NULL, &md, 5000);
        size_t found = 0;
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            tpl = rd_kafka_topic_partition_list_new(64);
            for (size_t w = 0; w < N_RESP_TOPICS; w++)
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
            if (found == N_RESP_TOPICS)
                break;
            rd_kafka_topic_partition_list_destroy(tpl);
            tpl = NULL;
        }
        if (now_ms() >= deadline)
            die("only %zu of %zu response topics exist at %s after 30 s (%s)", found,
                N_RESP_TOPICS, opt.bootstrap, rd_kafka_err2str(e));
        usleep(200000);
    }
    for (int i = 0; i < tpl->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &tpl->elems[i];
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(g_cons, tp->topic, tp->partition, &lo, &hi, 5000);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            die("watermarks of %s[%d]: %s", tp->topic, (int)tp->partition, rd_kafka_err2str(e));
        tp->offset = hi;
    }
    rd_kafka_resp_err_t ae = rd_kafka_assign(g_cons, tpl);
    if (ae != RD_KAFKA_RESP_ERR_NO_ERROR)
        die("assign: %s", rd_kafka_err2str(ae));
    fprintf(stderr, "load: consuming %d partitions of %zu response topics from their end\n",
            tpl->cnt, N_RESP_TOPICS);
    rd_kafka_topic_partition_list_destroy(tpl);
}

/* ---------------------------------------------------------------------- */
/* slots and correlation ids                                               */
/* ---------------------------------------------------------------------- */

static void slots_init(int n)
{
    g_nslots = n;
    g_slots = xcalloc((size_t)n, sizeof(*g_slots));
    g_free = xcalloc((size_t)n, sizeof(*g_free));
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

/* Produce @p body (stolen) for slot @p s; true when queued. */
static bool send_req(int s, const char *topic, const char *key, const char *session,
                     json_t *body)
{
    char cid[CID_MAX];
    make_cid(cid, sizeof(cid), s);
    char *val = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (val == NULL)
        die("json_dumps failed");
    size_t vlen = strlen(val);
    uint64_t tag = ((uint64_t)g_slots[s].gen << 32) | (uint32_t)s;
    rd_kafka_resp_err_t e;
    int64_t give_up = now_ms() + 10000;
    g_slots[s].t0_ns = now_ns();
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
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || now_ms() >= give_up)
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

/* Poll the consumer for up to @p timeout_ms, handling every response of this
 * run with @p fn (which releases the slot). */
static void pump(int timeout_ms, resp_fn fn)
{
    rd_kafka_poll(g_prod, 0);
    int64_t t_end = now_ms() + timeout_ms;
    bool first = true;
    for (;;) {
        int wait = 0;
        if (first) {
            int64_t left = t_end - now_ms();
            wait = left > 0 ? (int)left : 0;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(g_cons, wait);
        if (m == NULL)
            break;
        first = false;
        int64_t t1 = now_ns();
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
        json_error_t je;
        json_t *body = json_loadb(m->payload, m->len, 0, &je);
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
        fn(s, rd_kafka_topic_name(m->rkt), body, t1);
        json_decref(body);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_poll(g_prod, 0);
}

/* Expire requests older than @p timeout_ms. */
static void expire(int timeout_ms, const char *what)
{
    int64_t limit = now_ns() - (int64_t)timeout_ms * 1000000LL;
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
    int64_t start = now_ms();
    int64_t deadline = start + (int64_t)opt.setup_timeout_s * 1000;
    if (deadline > g_deadline_ms)
        deadline = g_deadline_ms;
    while (in_flight() > 0 && now_ms() < deadline && !g_interrupted)
        pump(20, fn);
    if (in_flight() > 0) {
        g_missing += in_flight();
        fprintf(stderr, "load: setup %s: %d of %ld responses missing after %.1f s\n", phase,
                in_flight(), expected, (double)(now_ms() - start) / 1000.0);
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
            die("out of memory");
    }
    u->friends[u->nfriends++] = f;
}

static void setup(void)
{
    int U = opt.users, R = opt.rooms;
    g_users = xcalloc((size_t)U, sizeof(*g_users));
    g_rooms = xcalloc((size_t)R, sizeof(*g_rooms));
    for (int i = 0; i < U; i++) {
        snprintf(g_users[i].id, sizeof(g_users[i].id), "ld-%s-u%d", g_run, i);
        snprintf(g_users[i].pw, sizeof(g_users[i].pw), "Pw-%016" PRIx64, rng_next());
    }
    /* room plan: creator round-robin, 1..3 random distinct friends */
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
    }

    int64_t t0 = now_ms();
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
        if (!send_req(s, "user-add-request", g_users[i].id, NULL, b))
            slot_release(s);
    }
    if (!setup_wait("user-add", U, on_user_add))
        die("setup failed at user-add");

    /* 2. login */
    g_phase = "login";
    reset_counters();
    for (int i = 0; i < U; i++) {
        int s = slot_take();
        g_slots[s].user = i;
        json_t *b = json_pack("{s:s, s:s}", "userId", g_users[i].id, "userPw", g_users[i].pw);
        if (!send_req(s, "login-request", g_users[i].id, NULL, b))
            slot_release(s);
    }
    if (!setup_wait("login", U, on_login))
        die("setup failed at login");

    /* 3. friends: each creator follows the members of its rooms */
    g_phase = "user-add-friend";
    reset_counters();
    long nfr = 0;
    for (int i = 0; i < U; i++) {
        user *u = &g_users[i];
        for (int off = 0; off < u->nfriends; off += FRIENDS_PER_REQ) {
            int s = slot_take();
            if (s < 0)
                die("internal: out of setup slots");
            g_slots[s].user = i;
            json_t *arr = json_array();
            for (int k = off; k < u->nfriends && k < off + FRIENDS_PER_REQ; k++)
                json_array_append_new(arr, json_string(g_users[u->friends[k]].id));
            json_t *b = json_pack("{s:s, s:o}", "userId", u->id, "friendId", arr);
            if (!send_req(s, "user-add-friend-request", u->id, u->session, b))
                slot_release(s);
            nfr++;
        }
    }
    if (!setup_wait("user-add-friend", nfr, on_add_friend))
        die("setup failed at user-add-friend");

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
        if (!send_req(s, "user-add-room-request", u->id, u->session, b))
            slot_release(s);
    }
    if (!setup_wait("user-add-room", R, on_add_room))
        die("setup failed at user-add-room");
    slots_free();
    fprintf(stderr, "load: setup done in %.2f s: %d users, %d rooms, %ld friend requests\n",
            (double)(now_ms() - t0) / 1000.0, U, R, nfr);
}

/* ---------------------------------------------------------------------- */
/* load phase                                                              */
/* ---------------------------------------------------------------------- */

static void on_chat(int s, const char *topic, json_t *body, int64_t t1)
{
    (void)topic;
    slot *sl = &g_slots[s];
    g_lat_ns[g_nlat++] = t1 - sl->t0_ns;
    if (g_samples != NULL)
        fprintf(g_samples, "%.3f %.3f %.3f %d %d %s\n",
                (double)(sl->t0_ns - g_load_t0_ns) / 1e6, (double)(t1 - sl->t0_ns) / 1e6,
                sl->ack_ns ? (double)(sl->ack_ns - sl->t0_ns) / 1e6 : -1.0, sl->room, sl->user,
                json_is_true(json_object_get(body, "isSuccess")) ? "ok" : "err");
    if (json_is_true(json_object_get(body, "isSuccess"))) {
        room *r = &g_rooms[sl->room];
        json_t *jseq = json_object_get(body, "seq");
        const char *rid = json_string_value(json_object_get(body, "roomId"));
        const char *wid = json_string_value(json_object_get(body, "writerId"));
        if (!json_is_integer(jseq) || json_integer_value(jseq) < 1 || rid == NULL ||
            strcmp(rid, r->id) != 0 || wid == NULL || strcmp(wid, g_users[sl->user].id) != 0) {
            g_err++;
            if (g_err_printed++ < MAX_ERR_PRINT) {
                char *txt = json_dumps(body, JSON_COMPACT);
                fprintf(stderr, "load: chat success with wrong seq/roomId/writerId: %s\n",
                        txt ? txt : "?");
                free(txt);
            }
        } else {
            g_ok++;
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
                    die("out of memory");
                memset(r->seen + r->seen_cap, 0, nc - r->seen_cap);
                r->seen_cap = nc;
            }
            if (r->seen[seq])
                r->dup_seq++;
            r->seen[seq] = 1;
        }
    } else {
        g_err++;
        report_error("chat", g_users[sl->user].id, body);
    }
    slot_release(s);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct_ms(const int64_t *v, long n, double p)
{
    if (n == 0)
        return 0.0;
    /* nearest rank */
    long rank = (long)((p / 100.0) * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)v[rank - 1] / 1e6;
}

static int load_phase(void)
{
    slots_init(opt.inflight);
    reset_counters();
    g_lat_ns = xcalloc((size_t)opt.requests, sizeof(*g_lat_ns));
    g_nlat = 0;
    char msg[MSG_BYTES + 1];
    char cmid[65];
    long sent = 0;
    bool stopped_by_deadline = false;
    int64_t t_start = now_ns();
    g_load_t0_ns = t_start;
    if (opt.samples_file != NULL) {
        g_samples = fopen(opt.samples_file, "w");
        if (g_samples == NULL)
            die("cannot write %s: %s", opt.samples_file, strerror(errno));
        fprintf(g_samples, "# send_ms_since_start latency_ms produce_ack_ms room user result\n");
    }
    int64_t last_expire = now_ms();
    int64_t last_progress = now_ms();
    int64_t drain_deadline = INT64_MAX;

    for (;;) {
        int64_t nms = now_ms();
        if (!stopped_by_deadline && (nms >= g_deadline_ms || g_interrupted)) {
            stopped_by_deadline = true;
            drain_deadline = nms + DRAIN_GRACE_MS;
            fprintf(stderr, "load: %s after %ld of %ld requests; draining %d in flight\n",
                    g_interrupted ? "interrupted" : "--duration-max reached", sent,
                    opt.requests, in_flight());
        }
        while (!stopped_by_deadline && sent < opt.requests && g_nfree > 0) {
            int ri = (int)rng_below((uint32_t)opt.rooms);
            room *r = &g_rooms[ri];
            int ui = r->members[rng_below((uint32_t)r->nmembers)];
            user *u = &g_users[ui];
            int s = slot_take();
            g_slots[s].room = ri;
            g_slots[s].user = ui;
            int n = snprintf(msg, sizeof(msg), "bench message %ld from %s to room %d: ", sent,
                             u->id, ri);
            if (n < 0)
                n = 0;
            for (int k = n; k < MSG_BYTES; k++)
                msg[k] = (char)('a' + (k % 26));
            msg[MSG_BYTES] = '\0';
            snprintf(cmid, sizeof(cmid), "%s-m%ld", g_run, sent);
            json_t *b = json_pack("{s:s, s:s, s:s, s:s}", "roomId", r->id, "writerId", u->id,
                                  "message", msg, "clientMsgId", cmid);
            sent++;
            if (!send_req(s, "user-add-chat-request", u->id, u->session, b)) {
                g_missing++;
                slot_release(s);
            }
        }
        if (in_flight() == 0 && (sent >= opt.requests || stopped_by_deadline))
            break;
        if (stopped_by_deadline && now_ms() >= drain_deadline) {
            g_missing += in_flight();
            fprintf(stderr, "load: %d requests still unanswered after the drain grace\n",
                    in_flight());
            break;
        }
        long before = g_ok + g_err;
        pump(5, on_chat);
        nms = now_ms();
        if (g_ok + g_err != before)
            last_progress = nms;
        if (nms - last_expire >= 100) {
            expire(opt.request_timeout_ms, "chat");
            last_expire = nms;
        }
        if (opt.verbose && nms - last_progress > 2000) {
            fprintf(stderr, "load: no response for 2 s (%d in flight, %ld sent)\n", in_flight(),
                    sent);
            last_progress = nms;
        }
    }
    int64_t t_end = now_ns();
    if (g_samples != NULL) {
        fclose(g_samples);
        g_samples = NULL;
    }
    double secs = (double)(t_end - t_start) / 1e9;

    qsort(g_lat_ns, (size_t)g_nlat, sizeof(*g_lat_ns), cmp_i64);
    double p50 = pct_ms(g_lat_ns, g_nlat, 50), p90 = pct_ms(g_lat_ns, g_nlat, 90),
           p99 = pct_ms(g_lat_ns, g_nlat, 99), p999 = pct_ms(g_lat_ns, g_nlat, 99.9),
           mx = g_nlat ? (double)g_lat_ns[g_nlat - 1] / 1e6 : 0.0;
    double mean = 0;
    for (long i = 0; i < g_nlat; i++)
        mean += (double)g_lat_ns[i];
    mean = g_nlat ? mean / (double)g_nlat / 1e6 : 0.0;
    double rps = secs > 0 ? (double)g_ok / secs : 0.0;

    /* seq check: per room the successful answers must carry 1..ok exactly
     * (rooms are fresh and every clientMsgId unique). */
    long seq_bad_rooms = 0;
    for (int r = 0; r < opt.rooms; r++) {
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

    printf("load: config users=%d rooms=%d inflight=%d seed=%" PRIu64 " run=%s\n", opt.users,
           opt.rooms, opt.inflight, opt.seed, g_run);
    printf("load: throughput %.1f ok responses/s over %.3f s (%ld sent, %ld ok, %ld errors, "
           "%ld missing, %ld late, %ld produce failures)\n",
           rps, secs, sent, g_ok, g_err, g_missing, g_late, g_produce_fail);
    printf("load: latency ms (%ld samples): mean=%.3f p50=%.3f p90=%.3f p99=%.3f p99.9=%.3f "
           "max=%.3f\n",
           g_nlat, mean, p50, p90, p99, p999, mx);
    printf("load: seq check: %s (%ld of %d rooms inconsistent)\n",
           seq_bad_rooms ? "FAILED" : "ok", seq_bad_rooms, opt.rooms);
    if (g_err_printed > MAX_ERR_PRINT)
        printf("load: (%ld further error responses not printed)\n",
               g_err_printed - MAX_ERR_PRINT);
    printf("load: op=chat requests=%ld ok=%ld errors=%ld seconds=%.3f rps=%.0f p50_ms=%.3f "
           "p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f\n",
           sent, g_ok, g_err, secs, rps, p50, p90, p99, p999, mx);
    fflush(stdout);

    long unsent = opt.requests - sent;
    if (unsent > 0)
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
            "  --users U            users to register (default 20, >= 2)\n"
            "  --rooms R            rooms of 2..4 members (default 10)\n"
            "  --requests N         chat requests of the load phase (default 20000)\n"
            "  --inflight K         most requests outstanding (default 256)\n"
            "  --duration-max S     stop sending after S s of total run time (default 120)\n"
            "  --seed N             RNG seed (default: from time and pid)\n"
            "  --setup-timeout S    bound of each setup step (default 30)\n"
            "  --request-timeout MS a chat request unanswered this long is missing (default "
            "10000)\n"
            "  --linger-ms MS       producer linger.ms (default 1)\n"
            "  --samples-file F     one line per answered request: send time, latency, produce ack\n"
            "  --verbose            librdkafka debug-level logs, stall notices\n"
            "exit: 0 all ok; 1 responses missing; 3 error responses or bad seqs; 2 setup/usage\n"
            "(requests left unsent by --duration-max are reported, not an error)\n");
}

static long parse_long(const char *s, const char *what, long lo, long hi)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi)
        die("bad %s '%s' (want %ld..%ld)", what, s, lo, hi);
    return v;
}

static char *read_bootstrap_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        die("cannot open bootstrap file %s: %s", path, strerror(errno));
    char buf[4096];
    if (fgets(buf, sizeof(buf), f) == NULL) {
        fclose(f);
        die("bootstrap file %s is empty", path);
    }
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    if (buf[0] == '\0')
        die("bootstrap file %s is empty", path);
    return strdup(buf);
}

int main(int argc, char **argv)
{
    enum {
        O_BOOT = 1000, O_BOOTF, O_USERS, O_ROOMS, O_REQ, O_INFL, O_DUR, O_SEED, O_SETUP,
        O_RTO, O_LINGER, O_VERB, O_SAMPLES, O_HELP
    };
    static const struct option lo[] = {
        {"bootstrap", required_argument, NULL, O_BOOT},
        {"bootstrap-file", required_argument, NULL, O_BOOTF},
        {"users", required_argument, NULL, O_USERS},
        {"rooms", required_argument, NULL, O_ROOMS},
        {"requests", required_argument, NULL, O_REQ},
        {"inflight", required_argument, NULL, O_INFL},
        {"duration-max", required_argument, NULL, O_DUR},
        {"seed", required_argument, NULL, O_SEED},
        {"setup-timeout", required_argument, NULL, O_SETUP},
        {"request-timeout", required_argument, NULL, O_RTO},
        {"linger-ms", required_argument, NULL, O_LINGER},
        {"verbose", no_argument, NULL, O_VERB},
        {"samples-file", required_argument, NULL, O_SAMPLES},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case O_BOOT: opt.bootstrap = optarg; break;
        case O_BOOTF: opt.bootstrap_file = optarg; break;
        case O_USERS: opt.users = (int)parse_long(optarg, "--users", 2, 1000000); break;
        case O_ROOMS: opt.rooms = (int)parse_long(optarg, "--rooms", 1, 1000000); break;
        case O_REQ: opt.requests = parse_long(optarg, "--requests", 0, 1000000000L); break;
        case O_INFL: opt.inflight = (int)parse_long(optarg, "--inflight", 1, 1000000); break;
        case O_DUR: opt.duration_max_s = (int)parse_long(optarg, "--duration-max", 1, 86400); break;
        case O_SEED: {
            char *end = NULL;
            errno = 0;
            opt.seed = strtoull(optarg, &end, 0);
            if (errno || end == optarg || *end != '\0')
                die("bad --seed '%s'", optarg);
            opt.seed_set = true;
            break;
        }
        case O_SETUP: opt.setup_timeout_s = (int)parse_long(optarg, "--setup-timeout", 1, 3600); break;
        case O_RTO: opt.request_timeout_ms = (int)parse_long(optarg, "--request-timeout", 1, 3600000); break;
        case O_LINGER: opt.linger_ms = (int)parse_long(optarg, "--linger-ms", 0, 900000); break;
        case O_VERB: opt.verbose = 1; break;
        case O_SAMPLES: opt.samples_file = optarg; break;
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
        opt.bootstrap = boot_owned = read_bootstrap_file(opt.bootstrap_file);
    if (opt.bootstrap == NULL) {
        usage(stderr);
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    g_deadline_ms = now_ms() + (int64_t)opt.duration_max_s * 1000;
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
    fprintf(stderr, "load: bootstrap %s, run %s, seed %" PRIu64 "\n", opt.bootstrap, g_run,
            opt.seed);

    kafka_init();
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
    free(boot_owned);
    return rc;
}
