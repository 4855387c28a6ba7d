/*
 * Embedded broker only (CI time): the records are the gateway's own; the
 * backend reads them on real Kafka in test_acl.
 *
 * test_gw_presence: what a gateway writes to kchat-presence about its event
 * streams (include/kchat/presence.h; PROTOCOL.md section 6), read straight
 * from the topic by a consumer of every partition. `kchat serve` and
 * `kchat gateway` run with the suite's deployment secret; browsers sign up,
 * log in and open `GET /api/events` streams.
 *
 *  - a user's first stream gives one `online` (key and userId the user, the
 *    partition murmur2 picks, `at` when it opened); a second tab gives none;
 *  - closing one of two tabs gives nothing; closing the last gives `offline`
 *    about 5 s later, its `at` the time of the close (within 1 s);
 *  - a stream closed and reopened within 2 s gives neither an offline nor a
 *    second online;
 *  - beats every ~5 s to every partition, keyed by the gateway id, listing
 *    each online user in their own partition only (an empty list where a
 *    partition has none); the gateway's presence gauge and counter;
 *  - every record carries a kchat-mac that verifies with the secret (and a
 *    copy with its value changed does not);
 *  - SIGTERM: `offline` for every user still online (at once), then `gone`
 *    to every partition after them, and a clean exit.
 *
 * End to end with the backend's side of presence: test_gw_v11.c.
 *
 * Linked with libkchat for kchat_auth_verify() only (Makefile INT_WHITEBOX).
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "kchat/auth.h"
#include "support/http.h"
#include "support/kassert.h"
#include "support/kclient.h"
#include "support/raw.h"

#define PARTS 4
#define TOPIC "kchat-presence"
#define MAX_RECS 4096
#define BEAT_MS 5000
#define DEBOUNCE_MS 5000

#define CHECK KC_CHECK

static kc_proc *g_broker, *g_srv, *g_gw;
static char g_base[256];
static char *g_data;
static char g_gwid[32];          /* the gateway's id, from its first record */
static int g_parts;              /* of kchat-presence */

/* ---- the presence consumer: a thread copying every record ---- */

typedef struct prec {
    int32_t partition;
    int64_t offset;
    int64_t ts;                  /* the record's CreateTime (the gateway's clock) */
    char key[96];
    char ctype[40];
    json_t *v;                   /* the value, NULL if not a JSON object */
    bool mac_ok;                 /* kchat_auth_verify() passed */
    bool tamper_refused;         /* the same record with one value byte changed did not */
} prec;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    prec recs[MAX_RECS];
    size_t n;
    bool stop;
    pthread_t thread;
    rd_kafka_t *rk;
    kchat_auth *auth;
} g_pc = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

/* Copy @p m into g_pc.recs, with what its MAC says. */
static void pc_add(rd_kafka_message_t *m)
{
    prec r = { .partition = m->partition, .offset = m->offset };
    rd_kafka_timestamp_type_t tt;
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t vl;

    r.ts = rd_kafka_message_timestamp(m, &tt);
    snprintf(r.key, sizeof(r.key), "%.*s", (int)(m->key_len < 95 ? m->key_len : 95),
             m->key ? (const char *)m->key : "");
    if (rd_kafka_message_headers(m, &h) == 0 &&
        rd_kafka_header_get_last(h, "content-type", &v, &vl) == 0 && v != NULL)
        snprintf(r.ctype, sizeof(r.ctype), "%.*s", (int)(vl < 39 ? vl : 39), (const char *)v);
    r.v = kc_json_from_bytes(m->payload, m->len);
    if (r.v != NULL && !json_is_object(r.v)) {
        json_decref(r.v);
        r.v = NULL;
    }
    r.mac_ok = kchat_auth_verify(g_pc.auth, m, "test_gw_presence");
    if (m->len > 0) {
        /* the same headers over a value with one byte changed */
        char *copy = malloc(m->len);
        void *orig = m->payload;
        memcpy(copy, orig, m->len);
        copy[m->len / 2] ^= 0x01;
        m->payload = copy;
        r.tamper_refused = !kchat_auth_verify(g_pc.auth, m, "test_gw_presence (tampered)");
        m->payload = orig;
        free(copy);
    }
    pthread_mutex_lock(&g_pc.lock);
    if (g_pc.n < MAX_RECS)
        g_pc.recs[g_pc.n++] = r;
    else
        json_decref(r.v);
    pthread_cond_broadcast(&g_pc.cond);
    pthread_mutex_unlock(&g_pc.lock);
}

static void *pc_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&g_pc.lock);
        bool stop = g_pc.stop;
        pthread_mutex_unlock(&g_pc.lock);
        if (stop)
            break;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(g_pc.rk, 100);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
            pc_add(m);
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

/* Assign every partition of kchat-presence from the beginning and start
 * the thread; false after saying why. */
static bool pc_start(const char *bootstrap)
{
    char err[256], gid[64];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_partition_list_t *tp;

    if (kchat_auth_load(kc_secret_file(), &g_pc.auth, err, sizeof(err)) != KCHAT_OK) {
        fprintf(stderr, "test_gw_presence: secret: %s\n", err);
        return false;
    }
    snprintf(gid, sizeof(gid), "kchat-test-presence-%d", (int)getpid());
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", gid, err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_conf_set(conf, "fetch.wait.max.ms", "50", err, sizeof(err));
    if ((g_pc.rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err))) == NULL) {
        fprintf(stderr, "test_gw_presence: consumer: %s\n", err);
        return false;
    }
    rd_kafka_poll_set_consumer(g_pc.rk);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(g_pc.rk, TOPIC, NULL);
    if (rd_kafka_metadata(g_pc.rk, 0, rkt, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt <= 0) {
        fprintf(stderr, "test_gw_presence: no topic %s\n", TOPIC);
        if (md)
            rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        return false;
    }
    g_parts = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    if (g_parts > 64) {   /* the tests' arrays */
        fprintf(stderr, "test_gw_presence: %d partitions\n", g_parts);
        rd_kafka_topic_destroy(rkt);
        return false;
    }
    rd_kafka_topic_destroy(rkt);
    tp = rd_kafka_topic_partition_list_new(g_parts);
    for (int p = 0; p < g_parts; p++)
        rd_kafka_topic_partition_list_add(tp, TOPIC, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t e = rd_kafka_assign(g_pc.rk, tp);
    rd_kafka_topic_partition_list_destroy(tp);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return false;
    return pthread_create(&g_pc.thread, NULL, pc_main, NULL) == 0;
}

static void pc_stop(void)
{
    if (g_pc.rk == NULL)
        return;
    pthread_mutex_lock(&g_pc.lock);
    g_pc.stop = true;
    pthread_mutex_unlock(&g_pc.lock);
    pthread_join(g_pc.thread, NULL);
    rd_kafka_consumer_close(g_pc.rk);
    rd_kafka_destroy(g_pc.rk);
    g_pc.rk = NULL;
    for (size_t i = 0; i < g_pc.n; i++)
        json_decref(g_pc.recs[i].v);
    kchat_auth_free(g_pc.auth);
}

/* Records so far (a mark for later scans). */
static size_t pc_count(void)
{
    pthread_mutex_lock(&g_pc.lock);
    size_t n = g_pc.n;
    pthread_mutex_unlock(&g_pc.lock);
    return n;
}

/* Record @p i (< pc_count()): stable once listed. */
static const prec *pc_get(size_t i)
{
    pthread_mutex_lock(&g_pc.lock);
    const prec *r = i < g_pc.n ? &g_pc.recs[i] : NULL;
    pthread_mutex_unlock(&g_pc.lock);
    return r;
}

typedef bool (*prec_fn)(const prec *r, const void *arg);

/* The first record at index >= *@p from matching @p fn within @p timeout_ms
 * (*@p from is moved past it), or NULL. */
static const prec *pc_wait(size_t *from, prec_fn fn, const void *arg, int timeout_ms)
{
    int64_t deadline = kc_now_ms() + timeout_ms;

    for (;;) {
        size_t n = pc_count();
        for (; *from < n; (*from)++) {
            const prec *r = pc_get(*from);
            if (fn(r, arg)) {
                (*from)++;
                return r;
            }
        }
        if (kc_now_ms() >= deadline)
            return NULL;
        pthread_mutex_lock(&g_pc.lock);
        if (g_pc.n == n) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&g_pc.cond, &g_pc.lock, &ts);
        }
        pthread_mutex_unlock(&g_pc.lock);
    }
}

/* Records at index >= @p from matching @p fn, now. */
static size_t pc_matching(size_t from, prec_fn fn, const void *arg)
{
    size_t n = pc_count(), k = 0;
    for (size_t i = from; i < n; i++)
        k += fn(pc_get(i), arg);
    return k;
}

static const char *kind_of(const prec *r)
{
    const char *k = r->v ? kc_str(r->v, "kind") : NULL;
    return k ? k : "";
}

static bool is_kind(const prec *r, const char *kind)
{
    return !strcmp(kind_of(r), kind);
}

/* ---- predicates ---- */

typedef struct want {
    const char *kind;            /* online, offline, beat, gone */
    const char *user;            /* online/offline: the user; beat: listed (NULL: any) */
    int32_t partition;           /* beat: -1 any */
    int64_t min_at;              /* beat: `at` at least this */
} want;

static bool users_has(const json_t *users, const char *user)
{
    size_t i;
    json_t *u;
    json_array_foreach(users, i, u) if (json_is_string(u) && !strcmp(json_string_value(u), user))
        return true;
    return false;
}

static bool matches(const prec *r, const void *arg)
{
    const want *w = arg;
    if (!is_kind(r, w->kind))
        return false;
    if (!strcmp(w->kind, "online") || !strcmp(w->kind, "offline"))
        return w->user == NULL || !strcmp(kc_str(r->v, "userId") ? kc_str(r->v, "userId") : "",
                                          w->user);
    if (w->partition >= 0 && r->partition != w->partition)
        return false;
    if (kc_int(r->v, "at", 0) < w->min_at)
        return false;
    return w->user == NULL || users_has(json_object_get(r->v, "users"), w->user);
}

/* ---- checks of one record ---- */

static bool is_hex16(const char *s)
{
    if (s == NULL || strlen(s) != 16)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

/* A record of the gateway as presence.h says: JSON, signed, its id, key
 * and partition right for its kind. */
static void check_record(const prec *r)
{
    CHECK(r->v != NULL, "a record of %s [%d] @%lld is not a JSON object", TOPIC,
          (int)r->partition, (long long)r->offset);
    CHECK(r->mac_ok, "%s record [%d] @%lld does not verify with the secret", kind_of(r),
          (int)r->partition, (long long)r->offset);
    CHECK(r->tamper_refused, "a changed copy of %s [%d] @%lld verifies", kind_of(r),
          (int)r->partition, (long long)r->offset);
    CHECK(!strcmp(r->ctype, "application/json"), "content-type \"%s\"", r->ctype);
    const char *g = kc_str(r->v, "gateway");
    CHECK(is_hex16(g), "gateway id \"%s\" is not 16 hex digits", g ? g : "(none)");
    CHECK(json_is_integer(json_object_get(r->v, "at")), "no integer at in %s", kc_dumps(r->v));
    if (g_gwid[0] == '\0')
        snprintf(g_gwid, sizeof(g_gwid), "%s", g);
    CHECK(!strcmp(g, g_gwid), "two gateway ids: %s and %s", g, g_gwid);
    if (is_kind(r, "online") || is_kind(r, "offline")) {
        const char *u = kc_str(r->v, "userId");
        CHECK(u != NULL && !strcmp(r->key, u), "key %s, userId %s", r->key, u ? u : "(none)");
        CHECK(r->partition == kc_partition_for(u, g_parts), "%s of %s in partition %d, not %d",
              kind_of(r), u, (int)r->partition, (int)kc_partition_for(u, g_parts));
        CHECK(json_object_size(r->v) == 4, "fields of %s", kc_dumps(r->v));
    } else if (is_kind(r, "beat") || is_kind(r, "gone")) {
        CHECK(!strcmp(r->key, g_gwid), "%s keyed %s, not the gateway id", kind_of(r), r->key);
        if (is_kind(r, "beat")) {
            json_t *users = json_object_get(r->v, "users"), *u;
            size_t i;
            CHECK(json_is_array(users) && json_array_size(users) <= 500, "users of %s",
                  kc_dumps(r->v));
            json_array_foreach(users, i, u) {
                CHECK(json_is_string(u), "a user id that is no string in %s", kc_dumps(r->v));
                CHECK(kc_partition_for(json_string_value(u), g_parts) == r->partition,
                      "beat of partition %d lists %s (partition %d)", (int)r->partition,
                      json_string_value(u), (int)kc_partition_for(json_string_value(u), g_parts));
            }
        }
    } else {
        CHECK(false, "unknown kind in %s", kc_dumps(r->v));
    }
}

/* check_record() on every record from @p from on. */
static void check_all(size_t from)
{
    for (size_t i = from, n = pc_count(); i < n; i++)
        check_record(pc_get(i));
}

/* ---- set-up ---- */

static int group_setup(void **state)
{
    (void)state;
    g_data = kc_tmppath("gw-presence-data");
    kc_rm_rf(g_data);
    g_broker = kc_broker_start("gw-presence-broker", PARTS);
    if (g_broker == NULL)
        return -1;
    g_srv = kc_serve_start("gw-presence-serve", g_data, kc_proc_bootstrap(g_broker), PARTS,
                           NULL);
    if (g_srv == NULL)
        return -1;
    const char *gx[] = { "--brokers", kc_proc_bootstrap(g_srv), NULL };
    g_gw = kc_gateway_start("gw-presence-gw", gx, g_base, sizeof(g_base));
    if (g_gw == NULL)
        return -1;
    return pc_start(kc_proc_bootstrap(g_srv)) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    pc_stop();
    kc_proc_end(g_gw, 10);
    kc_proc_end(g_srv, 10);
    kc_proc_end(g_broker, 10);
    free(g_data);
    return 0;
}

/* ---- helpers ---- */

/* An event stream of @p u; *@p before / *@p after the wall clock around its
 * opening. */
static kh_sse *open_stream(kr_user *u, int64_t *before, int64_t *after)
{
    int64_t b = kc_wall_ms();
    kh_sse *s = kh_sse_open(&u->b, "/api/events", NULL, 10000);
    CHECK(kh_sse_status(s) == 200, "stream of %s: %ld", u->u.id, kh_sse_status(s));
    if (before)
        *before = b;
    if (after)
        *after = kc_wall_ms();
    return s;
}

/* Close @p s; *@p before / *@p after the wall clock around it. */
static void close_stream(kh_sse *s, int64_t *before, int64_t *after)
{
    int64_t b = kc_wall_ms();
    kh_sse_close(s);
    if (before)
        *before = b;
    if (after)
        *after = kc_wall_ms();
}

/* Wait for @p w from *@p from on (up to @p timeout_ms) and check it. */
static const prec *expect(size_t *from, const want *w, int timeout_ms)
{
    const prec *r = pc_wait(from, matches, w, timeout_ms);
    CHECK(r != NULL, "no %s record (user %s, partition %d, at >= %lld) within %d ms", w->kind,
          w->user ? w->user : "any", (int)w->partition, (long long)w->min_at, timeout_ms);
    check_record(r);
    return r;
}

/* Wait for the beat of @p user's partition listing them, sent at or after
 * @p min_at: every record of that partition before it has been read. */
static const prec *beat_after(const char *user, int64_t min_at)
{
    size_t from = 0;
    want w = { "beat", user, kc_partition_for(user, g_parts), min_at };
    return expect(&from, &w, (int)(min_at - kc_wall_ms()) + 3 * BEAT_MS);
}

static double metric(const char *name)
{
    double v = -1;
    CHECK(kh_metric(g_base, name, &v), "no metric %s", name);
    return v;
}

/* ---- tests ---- */

static void test_topic_partitions(void **state)
{
    (void)state;
    assert_int_equal(g_parts, PARTS);
}

/* first stream: online; a second tab: nothing more */
static void test_online_once(void **state)
{
    (void)state;
    kr_user a;
    int64_t t0, t1;
    size_t from = pc_count(), mark;
    kr_user_new(&a, "pra", g_base);

    kh_sse *s1 = open_stream(&a, &t0, &t1);
    want on = { "online", a.u.id, -1, 0 };
    const prec *r = expect(&from, &on, 10000);
    int64_t at = kc_int(r->v, "at", 0);
    CHECK(at >= t0 - 1000 && at <= t1 + 1000, "online at %lld, opened in [%lld, %lld]",
          (long long)at, (long long)t0, (long long)t1);
    CHECK(r->partition == kc_partition_for(a.u.id, g_parts), "online in partition %d",
          (int)r->partition);

    mark = pc_count();
    kh_sse *s2 = open_stream(&a, NULL, &t1);
    /* a beat sent after the second tab opened lists the user: anything the
     * second tab made would have been read before it */
    beat_after(a.u.id, t1 + 500);
    CHECK(pc_matching(from, matches, &on) == 0, "a second online for a second tab of %s",
          a.u.id);
    want off = { "offline", a.u.id, -1, 0 };
    CHECK(pc_matching(mark, matches, &off) == 0, "offline while two tabs are open");
    CHECK(metric("kchat_gateway_presence_users") == 1, "presence gauge %g, want 1",
          metric("kchat_gateway_presence_users"));

    /* closing one of the two: nothing, even after the debounce */
    int64_t c0;
    mark = pc_count();
    close_stream(s2, &c0, NULL);
    beat_after(a.u.id, c0 + DEBOUNCE_MS + 1500);
    CHECK(pc_matching(mark, matches, &off) == 0, "offline after closing one of two tabs");
    CHECK(pc_matching(mark, matches, &on) == 0, "online after closing one of two tabs");

    /* closing the last: offline ~5 s later, at the time of the close */
    int64_t c1;
    mark = pc_count();
    close_stream(s1, &c0, &c1);
    size_t f = mark;
    r = expect(&f, &off, DEBOUNCE_MS + 10000);
    at = kc_int(r->v, "at", 0);
    CHECK(at >= c0 - 1000 && at <= c1 + 1000, "offline at %lld, closed in [%lld, %lld]",
          (long long)at, (long long)c0, (long long)c1);
    CHECK(r->ts - at >= DEBOUNCE_MS - 500 && r->ts - at <= DEBOUNCE_MS + 2500,
          "offline produced %lld ms after the close, want ~%d", (long long)(r->ts - at),
          DEBOUNCE_MS);
    CHECK(r->partition == kc_partition_for(a.u.id, g_parts), "offline in partition %d",
          (int)r->partition);
    CHECK(pc_matching(mark, matches, &off) == 1, "more than one offline");
    CHECK(metric("kchat_gateway_presence_users") == 0, "presence gauge %g, want 0",
          metric("kchat_gateway_presence_users"));
    check_all(from);
}

/* closed and reopened within 2 s: neither offline nor a second online */
static void test_reopen_within_debounce(void **state)
{
    (void)state;
    kr_user a;
    int64_t c0, o1;
    size_t from = pc_count(), mark;
    kr_user_new(&a, "prr", g_base);
    want on = { "online", a.u.id, -1, 0 }, off = { "offline", a.u.id, -1, 0 };

    kh_sse *s = open_stream(&a, NULL, NULL);
    expect(&from, &on, 10000);
    mark = pc_count();
    close_stream(s, &c0, NULL);
    s = open_stream(&a, NULL, &o1);
    CHECK(o1 - c0 < 2000, "the reopen took %lld ms", (long long)(o1 - c0));
    beat_after(a.u.id, c0 + DEBOUNCE_MS + 2000);
    CHECK(pc_matching(mark, matches, &off) == 0, "offline for a stream reopened at once");
    CHECK(pc_matching(mark, matches, &on) == 0, "a second online for a stream reopened at once");

    /* and it still ends: offline after the last close */
    mark = pc_count();
    close_stream(s, NULL, NULL);
    size_t f = mark;
    expect(&f, &off, DEBOUNCE_MS + 10000);
    check_all(mark);
}

/* beats: every ~5 s, every partition, each user in their own partition */
static void test_beats(void **state)
{
    (void)state;
    enum { NU = 3 };
    kr_user u[NU];
    kh_sse *s[NU];
    bool used[64] = { false };
    size_t from = pc_count();
    int64_t t_open = 0;

    for (int i = 0; i < NU; i++) {
        char tag[16];
        snprintf(tag, sizeof(tag), "prb%d", i);
        kr_user_new(&u[i], tag, g_base);
        s[i] = open_stream(&u[i], NULL, &t_open);
        used[kc_partition_for(u[i].u.id, g_parts)] = true;
    }
    /* three beats of every partition, all sent after the last stream opened */
    int64_t deadline = kc_now_ms() + 5 * BEAT_MS;
    int64_t ats[64][3];
    int got[64] = { 0 };
    size_t i = from;
    for (;;) {
        bool all = true;
        for (int p = 0; p < g_parts; p++)
            all = all && got[p] >= 3;
        if (all || kc_now_ms() > deadline)
            break;
        want w = { "beat", NULL, -1, t_open + 100 };
        const prec *r = pc_wait(&i, matches, &w, 1000);
        if (r == NULL)
            continue;
        check_record(r);
        if (got[r->partition] >= 3)
            continue;
        /* one beat per partition per round here (never more than 500 users) */
        ats[r->partition][got[r->partition]++] = kc_int(r->v, "at", 0);
        json_t *users = json_object_get(r->v, "users");
        for (int k = 0; k < NU; k++) {
            bool mine = kc_partition_for(u[k].u.id, g_parts) == r->partition;
            CHECK(users_has(users, u[k].u.id) == mine, "%s %s in the beat of partition %d: %s",
                  u[k].u.id, mine ? "missing" : "listed", (int)r->partition, kc_dumps(r->v));
        }
        if (!used[r->partition])
            CHECK(json_array_size(users) == 0, "users in the beat of partition %d: %s",
                  (int)r->partition, kc_dumps(r->v));
    }
    for (int p = 0; p < g_parts; p++) {
        CHECK(got[p] >= 3, "%d beat(s) of partition %d within %d ms", got[p], p, 5 * BEAT_MS);
        for (int k = 1; k < 3; k++)
            CHECK(ats[p][k] - ats[p][k - 1] >= BEAT_MS - 1500 &&
                  ats[p][k] - ats[p][k - 1] <= BEAT_MS + 2500,
                  "beats of partition %d %lld ms apart", p,
                  (long long)(ats[p][k] - ats[p][k - 1]));
    }
    CHECK(metric("kchat_gateway_presence_users") == NU, "presence gauge %g, want %d",
          metric("kchat_gateway_presence_users"), NU);
    CHECK(metric("kchat_gateway_presence_records_total") >= (double)pc_count(),
          "presence records counted %g, %zu read", metric("kchat_gateway_presence_records_total"),
          pc_count());
    CHECK(metric("kchat_gateway_presence_failed_total") == 0, "presence records failed");
    for (int k = 0; k < NU; k++)
        close_stream(s[k], NULL, NULL);
    /* their offlines, before the next test */
    for (int k = 0; k < NU; k++) {
        size_t f = from;
        want off = { "offline", u[k].u.id, -1, 0 };
        expect(&f, &off, DEBOUNCE_MS + 10000);
    }
}

/* SIGTERM: offline for whoever is online (at once), then gone everywhere */
static void test_clean_stop(void **state)
{
    (void)state;
    kr_user a, b;
    size_t from = pc_count();
    int64_t bc0, bc1;
    kr_user_new(&a, "prsa", g_base);
    kr_user_new(&b, "prsb", g_base);
    want on_a = { "online", a.u.id, -1, 0 }, on_b = { "online", b.u.id, -1, 0 };

    kh_sse *sa = open_stream(&a, NULL, NULL);
    kh_sse *sa2 = open_stream(&a, NULL, NULL);
    kh_sse *sb = open_stream(&b, NULL, NULL);
    size_t f = from;
    expect(&f, &on_a, 10000);
    f = from;
    expect(&f, &on_b, 10000);
    /* b's last stream closed a moment before the stop: offline pending */
    close_stream(sb, &bc0, &bc1);
    size_t mark = pc_count();
    int64_t t0 = kc_wall_ms();
    bool clean = kc_proc_stop_clean(g_gw, 20);
    int64_t t1 = kc_wall_ms();
    kc_proc_free(g_gw);
    g_gw = NULL;
    kh_sse_close(sa);
    kh_sse_close(sa2);
    CHECK(clean, "the gateway did not stop cleanly");

    /* a gone on every partition, each after the offlines of its partition */
    const prec *gone[64] = { NULL };
    for (int p = 0; p < g_parts; p++) {
        size_t g = mark;
        want w = { "gone", NULL, p, 0 };
        gone[p] = expect(&g, &w, 10000);
        int64_t at = kc_int(gone[p]->v, "at", 0);
        CHECK(at >= t0 - 1000 && at <= t1 + 1000, "gone at %lld, stopped in [%lld, %lld]",
              (long long)at, (long long)t0, (long long)t1);
        CHECK(pc_matching(mark, matches, &w) == 1, "two gone records on partition %d", p);
    }
    want off_a = { "offline", a.u.id, -1, 0 }, off_b = { "offline", b.u.id, -1, 0 };
    f = mark;
    const prec *ra = expect(&f, &off_a, 1000);
    f = from;
    const prec *rb = expect(&f, &off_b, 1000);
    int64_t at_a = kc_int(ra->v, "at", 0), at_b = kc_int(rb->v, "at", 0);
    CHECK(at_a >= t0 - 1000 && at_a <= t1 + 1000, "offline of a at %lld, stopped in "
          "[%lld, %lld]", (long long)at_a, (long long)t0, (long long)t1);
    CHECK(at_b >= bc0 - 1000 && at_b <= bc1 + 1000, "offline of b at %lld, closed in "
          "[%lld, %lld]", (long long)at_b, (long long)bc0, (long long)bc1);
    CHECK(ra->offset < gone[ra->partition]->offset, "a's offline after the gone");
    CHECK(rb->offset < gone[rb->partition]->offset, "b's offline after the gone");
    CHECK(pc_matching(from, matches, &off_a) == 1 && pc_matching(from, matches, &off_b) == 1,
          "more than one offline");
    /* nothing after a partition's gone */
    for (size_t i = mark, n = pc_count(); i < n; i++) {
        const prec *r = pc_get(i);
        CHECK(r->offset <= gone[r->partition]->offset || strcmp(kc_str(r->v, "gateway"), g_gwid),
              "a %s record after the gone of partition %d", kind_of(r), (int)r->partition);
    }
    check_all(from);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topic_partitions),
        cmocka_unit_test(test_online_once),
        cmocka_unit_test(test_reopen_within_debounce),
        cmocka_unit_test(test_beats),
        cmocka_unit_test(test_clean_stop),   /* last: it stops the gateway */
    };
    return cmocka_run_group_tests_name("gw_presence", tests, group_setup, group_teardown);
}
