/*
 * kchat-test: kafka (also run on real Apache Kafka by `make check-kafka`)
 * Crash and restart guarantees (PROTOCOL.md §7):
 *  (a) standalone `kchat broker` + `kchat serve --brokers`: ~300 chat sends
 *      stream into a room of two users, several in flight; the server gets
 *      SIGTERM mid-stream and is restarted on the same data directory; every
 *      request that had no answer is re-sent with the same kchat-cid and
 *      clientMsgId. Then: every send is answered with success, repeated
 *      answers agree, the history holds each message exactly once with seqs
 *      1..n and no gap, resent ones kept their seq, per-writer order is kept
 *      and chat-events deliver 1..n in order.
 *  (b) the same with SIGKILL.
 *  (c) embedded install: `kchat serve` (no --brokers), users, rooms and
 *      messages, SIGKILL, start again on the same data directory (a new
 *      embedded broker, a new bootstrap): old users log in, old state and
 *      history are intact, new users register and chat, seqs continue.
 * (A shard restored from an older copy:
 * tests/regress/0025-restored-shard-stops-command-stream.c.)
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "support/kassert.h"
#include "support/kclient.h"

#define PARTITIONS   4
#define N_MSG        300
#define KILL_AT      120   /* the server is stopped right after sending this one */
#define RESTART_AT   160   /* ... and restarted before sending this one */
#define WINDOW       8     /* requests in flight while the server runs */

struct smsg {
    char cid[72];
    char cmid[40];
    char text[48];
    int writer;         /* index into stream.users */
    bool sent;
    int resent;         /* times re-sent with the same cid and clientMsgId */
    bool answered;
    bool failed;        /* an answer that was no success */
    bool mismatch;      /* two answers with different seqs */
    int answers;
    int64_t seq;
};

struct stream {
    kc_client *c;
    kc_user users[2];
    char room[65];
    char prefix[56];    /* cid prefix; the message index follows it */
    size_t scan;        /* next record to look at */
    struct smsg m[N_MSG];
};

/* what a test started, so that a failed assertion still cleans up */
static struct stream *g_s;
static kc_client *g_client;
static kc_proc *g_srv, *g_broker;

static int test_teardown(void **state)
{
    (void)state;
    kc_client_free(g_s != NULL ? g_s->c : g_client);
    g_client = NULL;
    free(g_s);
    g_s = NULL;
    kc_proc_free(g_srv);
    g_srv = NULL;
    kc_proc_free(g_broker);
    g_broker = NULL;
    return 0;
}

/* Fold every new user-add-chat answer into the stream state. */
static void st_collect(struct stream *s)
{
    size_t n = kc_record_count(s->c), pl = strlen(s->prefix);
    for (; s->scan < n; s->scan++) {
        const kc_record *r = kc_record_get(s->c, s->scan);
        if (r->cid == NULL || strcmp(r->topic, "user-add-chat-response") != 0 ||
            strncmp(r->cid, s->prefix, pl) != 0)
            continue;
        int i = atoi(r->cid + pl);
        if (i < 0 || i >= N_MSG)
            continue;
        struct smsg *m = &s->m[i];
        bool ok = r->body != NULL && json_is_true(json_object_get(r->body, "isSuccess"));
        int64_t seq = kc_int(r->body, "seq", -1);
        if (!ok || seq < 1) {
            if (!m->failed)
                kc_record_dump(r, "a chat send was not a success");
            m->failed = true;
        }
        if (!m->answered) {
            m->answered = true;
            m->seq = seq;
        } else if (m->seq != seq) {
            if (!m->mismatch)
                fprintf(stderr, "cid %s answered with seq %lld and later %lld\n", m->cid,
                        (long long)m->seq, (long long)seq);
            m->mismatch = true;
        }
        m->answers++;
    }
}

static bool any_record(const kc_record *r, void *arg)
{
    (void)r;
    (void)arg;
    return true;
}

static size_t st_inflight(struct stream *s, int upto)
{
    size_t n = 0;
    for (int i = 0; i < upto; i++)
        if (s->m[i].sent && !s->m[i].answered)
            n++;
    return n;
}

/* Wait until at most @p max of the first @p upto sends are unanswered. */
static bool st_wait(struct stream *s, int upto, size_t max, int timeout_ms)
{
    int64_t deadline = kc_now_ms() + timeout_ms;
    for (;;) {
        st_collect(s);
        if (st_inflight(s, upto) <= max)
            return true;
        if (kc_now_ms() >= deadline) {
            fprintf(stderr, "%zu chat sends still unanswered after %d ms\n",
                    st_inflight(s, upto), timeout_ms);
            return false;
        }
        kc_wait_record(s->c, s->scan, any_record, NULL, 100);
    }
}

static bool st_send(struct stream *s, int i)
{
    struct smsg *m = &s->m[i];
    const kc_user *w = &s->users[m->writer];
    json_t *body = json_pack("{ss ss ss ss}", "roomId", s->room, "writerId", w->id, "message",
                             m->text, "clientMsgId", m->cmid);
    bool ok = kc_send_req(s->c, "user-add-chat", w->id, w->session, m->cid, body, NULL);
    json_decref(body);
    m->sent = m->sent || ok;
    return ok;
}

static void st_init(struct stream *s, const char *tag)
{
    char u[48];
    kc_uid(u, sizeof(u), tag);
    snprintf(s->prefix, sizeof(s->prefix), "%s-m", u);
    for (int i = 0; i < N_MSG; i++) {
        struct smsg *m = &s->m[i];
        snprintf(m->cid, sizeof(m->cid), "%s%d", s->prefix, i);
        snprintf(m->cmid, sizeof(m->cmid), "cm-%d", i);
        snprintf(m->text, sizeof(m->text), "message %d of %s", i, tag);
        m->writer = (i % 3 == 2) ? 1 : 0;
    }
}

/* Every message of @p room, ascending, read page by page (limit 100). */
static json_t *all_history(kc_client *c, const kc_user *u, const char *room, size_t max)
{
    json_t *all = json_array();
    json_int_t before = -1;
    for (int page = 0; page < 50; page++) {
        json_t *b = json_pack("{ss ss si}", "userId", u->id, "roomId", room, "limit", 100);
        if (before > 0)
            json_object_set_new(b, "beforeSeq", json_integer(before));
        json_t *r = kc_call(c, "room-history", u->id, u->session, b);
        assert_true(kc_check_ok(r, u->id));
        json_t *msgs = json_object_get(r, "messages");
        assert_true(json_is_array(msgs));
        size_t n = json_array_size(msgs);
        /* prepend this (older) page */
        json_t *merged = json_array();
        json_array_extend(merged, msgs);
        json_array_extend(merged, all);
        json_decref(all);
        all = merged;
        json_int_t oldest = n ? kc_int(json_array_get(msgs, 0), "seq", -1) : -1;
        json_decref(r);
        if (n < 100 || oldest <= 1 || json_array_size(all) > max)
            break;
        before = oldest;
    }
    return all;
}

/* The checks after the stream: answers, history, order, events. */
static void st_verify(struct stream *s)
{
    int unanswered = 0, failed = 0, mismatched = 0, resent = 0, repeated = 0;
    for (int i = 0; i < N_MSG; i++) {
        unanswered += !s->m[i].answered;
        failed += s->m[i].failed;
        mismatched += s->m[i].mismatch;
        resent += s->m[i].resent > 0;
        repeated += s->m[i].answers > 1;
    }
    fprintf(stderr, "stream: %d sends, %d re-sent, %d answered more than once, %d unanswered, "
            "%d failed, %d with differing seqs\n", N_MSG, resent, repeated, unanswered, failed,
            mismatched);
    if (unanswered || failed || mismatched)
        kc_diag_dump();
    assert_int_equal(unanswered, 0);
    assert_int_equal(failed, 0);
    assert_int_equal(mismatched, 0);

    /* history: exactly the N sends, seqs 1..N, each at the seq it was answered with */
    json_t *h = all_history(s->c, &s->users[0], s->room, N_MSG + 50);
    size_t n = json_array_size(h);
    if (n != N_MSG)
        fprintf(stderr, "history holds %zu messages, %d were sent\n", n, N_MSG);
    assert_int_equal(n, N_MSG);
    static int seen[N_MSG];
    memset(seen, 0, sizeof(seen));
    for (size_t j = 0; j < n; j++) {
        json_t *msg = json_array_get(h, j);
        KC_ASSERT_INT(msg, "seq", (json_int_t)j + 1);
        const char *cmid = kc_str(msg, "clientMsgId");
        assert_non_null(cmid);
        assert_true(strncmp(cmid, "cm-", 3) == 0);
        int i = atoi(cmid + 3);
        assert_true(i >= 0 && i < N_MSG);
        seen[i]++;
        if (seen[i] != 1)
            fprintf(stderr, "clientMsgId %s stored %d times\n", cmid, seen[i]);
        assert_int_equal(seen[i], 1);
        if (s->m[i].seq != (int64_t)j + 1)
            fprintf(stderr, "%s was answered with seq %lld but stored at %zu\n", cmid,
                    (long long)s->m[i].seq, j + 1);
        assert_int_equal(s->m[i].seq, (int64_t)j + 1);
        KC_ASSERT_STR(msg, "writerId", s->users[s->m[i].writer].id);
        KC_ASSERT_STR(msg, "message", s->m[i].text);
    }
    json_decref(h);

    /* per writer, effects in the order the requests were read */
    for (int w = 0; w < 2; w++) {
        int64_t last = 0;
        for (int i = 0; i < N_MSG; i++) {
            if (s->m[i].writer != w)
                continue;
            if (s->m[i].seq <= last)
                fprintf(stderr, "writer %d: %s got seq %lld after seq %lld\n", w, s->m[i].cmid,
                        (long long)s->m[i].seq, (long long)last);
            assert_true(s->m[i].seq > last);
            last = s->m[i].seq;
        }
    }

    /* both participants get every message, first deliveries in seq order */
    for (int u = 0; u < 2; u++) {
        json_t *ev = kc_wait_events(s->c, s->users[u].id, "chat", s->room, N_MSG, 30000);
        if (json_array_size(ev) != N_MSG)
            fprintf(stderr, "%s got %zu distinct chat events of %d\n", s->users[u].id,
                    json_array_size(ev), N_MSG);
        assert_int_equal(json_array_size(ev), N_MSG);
        for (size_t j = 0; j < N_MSG; j++)
            KC_ASSERT_INT(json_array_get(ev, j), "seq", (json_int_t)j + 1);
        json_decref(ev);
    }
}

static void stream_restart(int sig)
{
    const char *sname = sig == SIGKILL ? "kill" : "term";
    char bname[64], srvname[64], dname[64];
    snprintf(bname, sizeof(bname), "broker-%s", sname);
    snprintf(srvname, sizeof(srvname), "serve-%s", sname);
    snprintf(dname, sizeof(dname), "data-%s", sname);

    kc_proc *broker = g_broker = kc_broker_start(bname, PARTITIONS);
    assert_non_null(broker);
    char brokers[1024];
    snprintf(brokers, sizeof(brokers), "%s", kc_proc_bootstrap(broker));
    char *data = kc_tmppath(dname);
    kc_rm_rf(data);
    kc_proc *srv = g_srv = kc_serve_start(srvname, data, brokers, PARTITIONS, NULL);
    assert_non_null(srv);
    assert_string_equal(kc_proc_bootstrap(srv), brokers); /* --brokers: the given list */

    struct stream *s = g_s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->c = kc_client_new(brokers, KC_FROM_BEGINNING);
    assert_non_null(s->c);
    assert_true(kc_user_new(s->c, &s->users[0], "wa"));
    assert_true(kc_user_new(s->c, &s->users[1], "wb"));
    const char *fl[] = { s->users[1].id, NULL };
    assert_true(kc_add_friends(s->c, &s->users[0], fl));
    assert_true(kc_create_room(s->c, &s->users[0], fl, "stream", s->room));
    json_decref(kc_wait_events(s->c, s->users[1].id, "room", s->room, 1, 10000));
    st_init(s, sname);

    for (int i = 0; i < N_MSG; i++) {
        if (i == RESTART_AT) {
            /* a client that timed out re-sends with the same cid and
             * clientMsgId, here while the server is down, so that the
             * restarted server reads each original before its repeat */
            st_collect(s);
            for (int j = 0; j < i; j++)
                if (!s->m[j].answered) {
                    assert_true(st_send(s, j));
                    s->m[j].resent++;
                }
            srv = g_srv = kc_serve_start_ex(srvname, data, brokers, PARTITIONS, NULL, 90);
            assert_non_null(srv);
        }
        assert_true(st_send(s, i));
        if (i == KILL_AT) {
            int st = 0;
            int rc = kc_proc_stop(srv, sig, 10, &st);
            if (sig == SIGTERM) {
                if (rc != 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                    kc_proc_log_tail(srv, 40, stderr);
                assert_int_equal(rc, 0);
                assert_true(WIFEXITED(st));
                assert_int_equal(WEXITSTATUS(st), 0);
            }
            kc_proc_free(srv);
            srv = g_srv = NULL;
        } else if (i < KILL_AT || i >= RESTART_AT) {
            /* after a restart the server may first have to rejoin its group */
            assert_true(st_wait(s, i + 1, WINDOW, i < KILL_AT ? 30000 : 100000));
        }
    }
    /* whatever is still unanswered is re-sent, a few rounds at most */
    bool done = st_wait(s, N_MSG, 0, 30000);
    for (int round = 0; !done && round < 3; round++) {
        for (int j = 0; j < N_MSG; j++)
            if (!s->m[j].answered) {
                assert_true(st_send(s, j));
                s->m[j].resent++;
            }
        done = st_wait(s, N_MSG, 0, 20000);
    }
    st_verify(s);

    int st = 0;
    assert_int_equal(kc_proc_stop(srv, SIGTERM, 10, &st), 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    kc_proc_free(srv);
    g_srv = NULL;
    kc_client_free(s->c);
    s->c = NULL;
    kc_proc_stop(broker, SIGTERM, 10, NULL);
    kc_proc_free(broker);
    g_broker = NULL;
    free(data);
}

static void test_standalone_sigterm_restart(void **state)
{
    (void)state;
    stream_restart(SIGTERM);
}

static void test_standalone_sigkill_restart(void **state)
{
    (void)state;
    stream_restart(SIGKILL);
}

/* ------------------------------------------------------------------------ */
/* (c) embedded                                                             */
/* ------------------------------------------------------------------------ */

#define EMB_ACKED    20
#define EMB_INFLIGHT 10

static void test_embedded_sigkill_restart(void **state)
{
    (void)state;
    char *data = kc_tmppath("data-embedded");
    kc_rm_rf(data);
    kc_proc *srv = g_srv = kc_serve_start("serve-emb", data, KC_EMBEDDED, PARTITIONS, NULL);
    assert_non_null(srv);
    char bootstrap1[1024];
    snprintf(bootstrap1, sizeof(bootstrap1), "%s", kc_proc_bootstrap(srv));
    kc_client *c = g_client = kc_client_new(bootstrap1, KC_FROM_BEGINNING);
    assert_non_null(c);

    kc_user a, b;
    assert_true(kc_user_new(c, &a, "ea"));
    assert_true(kc_user_new(c, &b, "eb"));
    const char *fa[] = { b.id, NULL }, *fb[] = { a.id, NULL };
    assert_true(kc_add_friends(c, &a, fa));
    assert_true(kc_add_friends(c, &b, fb));
    char room[65], room2[65];
    assert_true(kc_create_room(c, &a, fa, "before the crash", room));
    assert_true(kc_create_room(c, &b, fb, "second", room2));
    KC_EXPECT_OK(kc_call(c, "user-status-change", a.id, a.session,
                         json_pack("{ss ss}", "userId", a.id, "userStatus", "persisted")), a.id);
    for (int i = 0; i < EMB_ACKED; i++) {
        char msg[32], cmid[32];
        snprintf(msg, sizeof(msg), "old %d", i + 1);
        snprintf(cmid, sizeof(cmid), "old-%d", i + 1);
        assert_int_equal(kc_chat(c, i % 2 ? &b : &a, room, msg, cmid), i + 1);
    }
    /* a few more in flight at the moment of the crash: they may or may not survive */
    char cids[EMB_INFLIGHT][72];
    for (int i = 0; i < EMB_INFLIGHT; i++) {
        char msg[32], cmid[32];
        snprintf(msg, sizeof(msg), "inflight %d", i);
        snprintf(cmid, sizeof(cmid), "inflight-%d", i);
        json_t *body = json_pack("{ss ss ss ss}", "roomId", room, "writerId", a.id, "message", msg,
                                 "clientMsgId", cmid);
        assert_true(kc_send_req(c, "user-add-chat", a.id, a.session, NULL, body, cids[i]));
        json_decref(body);
    }
    /* kill -9 at once, with those still being processed */
    fprintf(stderr, "(the test client's connection errors that follow are expected: "
            "its embedded broker is about to die)\n");
    assert_int_equal(kc_proc_stop(srv, SIGKILL, 10, NULL), 0);
    kc_proc_free(srv);
    g_srv = NULL;
    int acked_inflight = 0;
    for (int i = 0; i < EMB_INFLIGHT; i++) {
        const kc_record *r = kc_wait_cid(c, "user-add-chat", cids[i], 0);
        if (r != NULL && json_is_true(json_object_get(r->body, "isSuccess")))
            acked_inflight = i + 1; /* answered ones are a prefix: one writer, in order */
    }
    kc_client_free(c);
    g_client = NULL;

    /* start again on the same data directory: a new embedded broker */
    srv = g_srv = kc_serve_start("serve-emb", data, KC_EMBEDDED, PARTITIONS, NULL);
    assert_non_null(srv);
    fprintf(stderr, "bootstrap before the crash %s, after %s\n", bootstrap1,
            kc_proc_bootstrap(srv));
    c = g_client = kc_client_new(kc_proc_bootstrap(srv), KC_FROM_BEGINNING);
    assert_non_null(c);

    /* an effect whose answer was sent survives kill -9: the old session too */
    KC_EXPECT_OK(kc_call(c, "user-search-friend", a.id, a.session,
                         json_pack("{ss}", "userId", a.id)), a.id);
    /* old users log in */
    assert_true(kc_user_login(c, &a));
    assert_true(kc_user_login(c, &b));
    json_t *r = kc_call(c, "user-search-friend", b.id, b.session, json_pack("{ss}", "userId", b.id));
    assert_true(kc_check_ok(r, b.id));
    json_t *fr = json_object_get(r, "friend");
    assert_int_equal(json_array_size(fr), 1);
    KC_ASSERT_STR(json_array_get(fr, 0), "userId", a.id);
    KC_ASSERT_STR(json_array_get(fr, 0), "userStatus", "persisted");
    json_decref(r);
    r = kc_call(c, "user-search-room", a.id, a.session, json_pack("{ss}", "userId", a.id));
    assert_true(kc_check_ok(r, a.id));
    assert_int_equal(json_array_size(json_object_get(r, "rooms")), 2);
    json_decref(r);

    /* old history intact: the acked ones, then possibly some in-flight ones, no gap */
    json_t *h = all_history(c, &a, room, 200);
    size_t m = json_array_size(h);
    fprintf(stderr, "history after the crash: %zu messages (%d acked before it, %d in flight "
            "of which %d answered)\n", m, EMB_ACKED, EMB_INFLIGHT, acked_inflight);
    assert_true(m >= (size_t)(EMB_ACKED + acked_inflight));
    assert_true(m <= EMB_ACKED + EMB_INFLIGHT);
    for (size_t j = 0; j < m; j++) {
        json_t *msg = json_array_get(h, j);
        KC_ASSERT_INT(msg, "seq", (json_int_t)j + 1);
        char want[32], cmid[32];
        if (j < EMB_ACKED) {
            snprintf(want, sizeof(want), "old %zu", j + 1);
            snprintf(cmid, sizeof(cmid), "old-%zu", j + 1);
            KC_ASSERT_STR(msg, "writerId", j % 2 ? b.id : a.id);
        } else {
            snprintf(want, sizeof(want), "inflight %zu", j - EMB_ACKED);
            snprintf(cmid, sizeof(cmid), "inflight-%zu", j - EMB_ACKED);
            KC_ASSERT_STR(msg, "writerId", a.id);
        }
        KC_ASSERT_STR(msg, "message", want);
        KC_ASSERT_STR(msg, "clientMsgId", cmid);
    }
    json_decref(h);

    /* an idempotent resend of an acked message still returns its seq */
    json_t *rr = kc_call(c, "user-add-chat", a.id, a.session,
                         json_pack("{ss ss ss ss}", "roomId", room, "writerId", a.id, "message",
                                   "old 1", "clientMsgId", "old-1"));
    assert_true(kc_check_ok(rr, a.id));
    KC_ASSERT_INT(rr, "seq", 1);
    json_decref(rr);

    /* new users register and chat; seqs continue */
    kc_user n;
    assert_true(kc_user_new(c, &n, "en"));
    const char *fn[] = { n.id, NULL };
    assert_true(kc_add_friends(c, &a, fn));
    char room3[65];
    assert_true(kc_create_room(c, &a, fn, "after the crash", room3));
    json_decref(kc_wait_events(c, n.id, "room", room3, 1, 10000));
    assert_int_equal(kc_chat(c, &n, room3, "hello from the new user", "n-1"), 1);
    for (int i = 0; i < 5; i++)
        assert_int_equal(kc_chat(c, i % 2 ? &b : &a, room, "after restart", NULL),
                         (int64_t)m + 1 + i);
    /* b gets the new messages (old events may be delivered again first) */
    json_t *ev = NULL;
    int64_t deadline = kc_now_ms() + 10000;
    for (;;) {
        json_decref(ev);
        ev = kc_wait_events(c, b.id, "chat", room, 1000, 200);
        size_t k = json_array_size(ev);
        if ((k > 0 && kc_int(json_array_get(ev, k - 1), "seq", -1) == (json_int_t)m + 5) ||
            kc_now_ms() >= deadline)
            break;
    }
    if (json_array_size(ev) < 5)
        fprintf(stderr, "chat events of b after the restart: %s\n", kc_dumps(ev));
    assert_true(json_array_size(ev) >= 5);
    json_int_t prev = 0;
    for (size_t j = 0; j < json_array_size(ev); j++) {
        json_int_t sq = kc_int(json_array_get(ev, j), "seq", -1);
        assert_true(sq > prev); /* first deliveries in seq order */
        prev = sq;
    }
    assert_int_equal(prev, (json_int_t)m + 5);
    json_decref(ev);
    h = all_history(c, &b, room, 200);
    assert_int_equal(json_array_size(h), m + 5);
    for (size_t j = 0; j < m + 5; j++)
        KC_ASSERT_INT(json_array_get(h, j), "seq", (json_int_t)j + 1);
    json_decref(h);

    kc_client_free(c);
    g_client = NULL;
    int st = 0;
    assert_int_equal(kc_proc_stop(srv, SIGTERM, 10, &st), 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    kc_proc_free(srv);
    g_srv = NULL;
    free(data);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_standalone_sigterm_restart, test_teardown),
        cmocka_unit_test_teardown(test_standalone_sigkill_restart, test_teardown),
        cmocka_unit_test_teardown(test_embedded_sigkill_restart, test_teardown),
    };
    return cmocka_run_group_tests_name("kchat crash and restart", tests, NULL, NULL);
}
