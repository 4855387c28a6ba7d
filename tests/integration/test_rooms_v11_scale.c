/*
 * Embedded broker only (CI time): test_rooms_v11 and test_crash_rooms run the
 * same operations on real Kafka.
 * Protocol v1.1's rooms at their limits, from PROTOCOL.md alone, against one
 * `kchat serve` (4 partitions), each test in JSON and in msgpack:
 *  - the cap of 256 participants (§3 operation 12): an invite that would
 *    pass it is BAD_REQUEST and adds nobody; participants already in the
 *    room are skipped before the cap (and before the friend check), unknown
 *    users and non-friends are reported before it;
 *  - read cursors under concurrency: four writers (threads, each with its
 *    own client) send 50 messages each to one room while a reader moves its
 *    cursor and invites happen; afterwards seqs are 1..200 without gap or
 *    repeat, every cursor is what the answers imply and unread is exactly
 *    lastSeq - readSeq, each invitee's cursor started at the room's lastSeq
 *    at its invite, and its chat events are exactly the later messages.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <cmocka.h>

#include "support/kassert.h"
#include "support/kclient.h"
#include "support/rooms.h"

#define PARTITIONS 4
#define CAP 256
#define POOL (CAP + 4)     /* invitees for the cap test */
#define WRITERS 4
#define PER_WRITER 50
#define TOTAL (WRITERS * PER_WRITER)
#define INVITEES 3
#define EV_MS 20000

#define CHECK KC_CHECK

static kc_proc *g_srv;
static kc_client *g_c;
static const kc_fmt g_json = KC_FMT_JSON, g_msgpack = KC_FMT_MSGPACK;

static int group_setup(void **state)
{
    (void)state;
    setvbuf(stdout, NULL, _IOLBF, 0);
    char *data = kc_tmppath("scale11-data");
    kc_rm_rf(data);
    g_srv = kc_serve_start("scale11-serve", data, NULL, PARTITIONS, NULL);
    free(data);
    if (g_srv == NULL)
        return -1;
    g_c = kc_client_new(kc_proc_bootstrap(g_srv), KC_FROM_BEGINNING);
    return g_c != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    kc_client_free(g_c);
    if (g_srv != NULL)
        kc_proc_stop(g_srv, SIGTERM, 10, NULL);
    kc_proc_free(g_srv);
    return 0;
}

static void new_user(kc_user *u, const char *tag)
{
    CHECK(kc_user_new(g_c, u, tag), "could not register and log in a user %s", tag);
}

/* The participants of @p room as @p u's user-search-room lists them (new ref). */
static json_t *participants(const kc_user *u, const char *room)
{
    bool found = false;
    json_t *e = krm_room_entry(g_c, u, room, &found);
    CHECK(found, "%s does not list %s", u->id, room);
    json_t *p = json_incref(json_object_get(e, "participants"));
    json_decref(e);
    CHECK(json_is_array(p), "participants not an array");
    return p;
}

static size_t participant_count(const kc_user *u, const char *room)
{
    json_t *p = participants(u, room);
    size_t n = json_array_size(p);
    json_decref(p);
    return n;
}

/* An invite by @p u of ids[from..to) plus the NULL-terminated @p more. */
static json_t *invite_range(const kc_user *u, const char *room, const char *const *ids,
                            size_t from, size_t to, const char *const *more)
{
    const char *list[110];
    size_t n = 0;
    for (size_t i = from; i < to && n < 100; i++)
        list[n++] = ids[i];
    for (size_t i = 0; more != NULL && more[i] != NULL && n < 109; i++)
        list[n++] = more[i];
    list[n] = NULL;
    return krm_invite(g_c, u, room, list);
}

/* ---- the cap ------------------------------------------------------------- */

static kc_user g_pool[POOL];
static const char *g_pool_ids[POOL];
static bool g_pool_ready;

/* POOL users, registered once for both runs. */
static void pool_up(void)
{
    if (g_pool_ready)
        return;
    for (size_t i = 0; i < POOL; i++) {
        kc_user_init(&g_pool[i], "cap");
        g_pool_ids[i] = g_pool[i].id;
    }
    CHECK(krm_register_many(g_c, g_pool, POOL), "registering %d users", POOL);
    g_pool_ready = true;
}

static void test_cap(void **state)
{
    kc_client_set_fmt(g_c, *(const kc_fmt *)*state);
    pool_up();
    kc_user a, stranger;
    char room[65], ghost[72];
    new_user(&a, "capa");
    new_user(&stranger, "capx");
    kc_uid(ghost, sizeof(ghost), "capghost");
    CHECK(krm_follow_many(g_c, &a, g_pool_ids, POOL), "a follows the pool");
    const char *first[101];
    for (size_t i = 0; i < 100; i++)
        first[i] = g_pool_ids[i];
    first[100] = NULL;
    CHECK(kc_create_room(g_c, &a, first, "crowd", room), "room of 101");
    KC_EXPECT_OK(invite_range(&a, room, g_pool_ids, 100, 200, NULL), a.id);
    KC_EXPECT_OK(invite_range(&a, room, g_pool_ids, 200, 254, NULL), a.id);
    CHECK(participant_count(&a, room) == 255, "255 participants expected");

    /* 255 + 3 > 256: refused, nobody added */
    KC_EXPECT_ERR(invite_range(&a, room, g_pool_ids, 254, 257, NULL), a.id, "BAD_REQUEST");
    CHECK(participant_count(&a, room) == 255, "the refused invite added somebody");
    /* participants are skipped before the cap: 255 + 1 = 256 fits */
    const char *again[] = { g_pool_ids[0], g_pool_ids[99], a.id, NULL };
    json_t *r = invite_range(&a, room, g_pool_ids, 254, 255, again);
    CHECK(kc_check_ok(r, a.id), "invite up to the cap");
    size_t np = json_array_size(json_object_get(r, "participants"));
    CHECK(np == CAP, "%d participants expected: %zu", CAP, np);
    json_decref(r);
    /* full: one more is refused; participants only still succeed */
    KC_EXPECT_ERR(invite_range(&a, room, g_pool_ids, 255, 256, NULL), a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(invite_range(&a, room, g_pool_ids, 255, 256, again), a.id, "BAD_REQUEST");
    KC_EXPECT_OK(invite_range(&a, room, g_pool_ids, 0, 97, again), a.id);   /* 100 ids */
    /* unknown users and non-friends come before the cap */
    const char *gl[] = { ghost, NULL }, *sl[] = { stranger.id, NULL };
    KC_EXPECT_ERR(invite_range(&a, room, g_pool_ids, 255, 256, gl), a.id, "USER_NOT_FOUND");
    KC_EXPECT_ERR(invite_range(&a, room, g_pool_ids, 255, 256, sl), a.id, "NOT_A_FRIEND");
    CHECK(participant_count(&a, room) == CAP, "%d participants expected", CAP);

    /* the last one in got its room event, the refused ones did not get in */
    CHECK(krm_wait_events(g_c, g_pool_ids[254], "room", room, NULL, 1, EV_MS),
          "room event of the 256th participant");
    kc_user *late = &g_pool[255];
    if (late->session[0] == '\0')
        CHECK(kc_user_login(g_c, late), "login of a refused invitee");
    bool found = true;
    json_t *e = krm_room_entry(g_c, late, room, &found);
    CHECK(!found, "a refused invitee lists the room: %s", kc_dumps(e));
    CHECK(krm_count_events(g_c, late->id, "room", room, NULL) == 0,
          "a refused invitee got a room event");
    json_t *h = krm_history(g_c, &a, room);
    CHECK(kc_check_ok(h, a.id), "history of the full room");
    json_t *reads = json_object_get(h, "reads");
    CHECK(json_array_size(reads) == CAP, "reads should have %d entries, has %zu", CAP,
          json_array_size(reads));
    for (size_t i = 1; i < json_array_size(reads); i++)
        CHECK(strcmp(kc_str(json_array_get(reads, i - 1), "userId"),
                     kc_str(json_array_get(reads, i), "userId")) < 0,
              "reads not sorted at %zu", i);
    json_decref(h);
}

/* ---- concurrency ----------------------------------------------------------- */

struct run {
    const char *bootstrap;
    kc_fmt fmt;
    char room[65];
    atomic_int sent;                 /* answered sends, all writers */
    atomic_llong max_seq;            /* the largest seq answered so far */
    atomic_bool writers_done;
};

struct writer {
    struct run *run;
    kc_user *u;
    int64_t seqs[PER_WRITER];
    char err[256];
};

struct reader {
    struct run *run;
    kc_user *u;
    int64_t last;                    /* the readSeq of its last answer */
    int reads;
    char err[256];
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    kc_client *c = kc_client_new(w->run->bootstrap, KC_FROM_END);
    if (c == NULL) {
        snprintf(w->err, sizeof(w->err), "no client");
        return NULL;
    }
    kc_client_set_fmt(c, w->run->fmt);
    for (int i = 0; i < PER_WRITER; i++) {
        char msg[96], cmid[16];
        snprintf(msg, sizeof(msg), "%s says %d", w->u->id, i);
        snprintf(cmid, sizeof(cmid), "m%d", i);
        int64_t seq = kc_chat(c, w->u, w->run->room, msg, cmid);
        if (seq < 1 || (i > 0 && seq <= w->seqs[i - 1])) {
            snprintf(w->err, sizeof(w->err), "send %d: seq %lld after %lld", i, (long long)seq,
                     (long long)(i > 0 ? w->seqs[i - 1] : 0));
            break;
        }
        w->seqs[i] = seq;
        long long m = atomic_load(&w->run->max_seq);
        while (seq > m && !atomic_compare_exchange_weak(&w->run->max_seq, &m, seq))
            ;
        atomic_fetch_add(&w->run->sent, 1);
    }
    kc_client_free(c);
    return NULL;
}

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    kc_client *c = kc_client_new(r->run->bootstrap, KC_FROM_END);
    if (c == NULL) {
        snprintf(r->err, sizeof(r->err), "no client");
        return NULL;
    }
    kc_client_set_fmt(c, r->run->fmt);
    /* bounded: at most 400 reads, until the writers are done */
    for (int i = 0; i < 400 && !atomic_load(&r->run->writers_done); i++) {
        /* alternately everything, and half of what it had */
        json_int_t ask = i % 2 == 0 ? 1000000 : r->last / 2;
        json_t *a = krm_read(c, r->u, r->run->room, ask);
        json_int_t got = kc_int(a, "readSeq", -1);
        bool ok = kc_check_ok(a, r->u->id);
        json_decref(a);
        if (!ok || got < r->last || got > atomic_load(&r->run->max_seq) + WRITERS) {
            snprintf(r->err, sizeof(r->err), "read %d (readSeq %lld): answer %lld after %lld",
                     i, (long long)ask, (long long)got, (long long)r->last);
            break;
        }
        r->last = got;
        r->reads++;
    }
    kc_client_free(c);
    return NULL;
}

/* Wait (bounded) until the writers have had @p n sends answered. */
static void wait_sent(struct run *run, int n)
{
    int64_t deadline = kc_now_ms() + 60000;
    while (atomic_load(&run->sent) < n && kc_now_ms() < deadline)
        kc_sleep_ms(5);
}

static json_int_t last_seq(const kc_user *u, const char *room)
{
    bool found = false;
    json_t *e = krm_room_entry(g_c, u, room, &found);
    CHECK(found, "%s does not list %s", u->id, room);
    json_int_t l = kc_int(e, "lastSeq", -1);
    json_decref(e);
    return l;
}

/* @p u's cursor in @p room is @p read (of lastSeq TOTAL), unread exact. */
static void cursor_is(const kc_user *u, const char *room, json_int_t read)
{
    bool found = false;
    json_t *e = krm_room_entry(g_c, u, room, &found);
    CHECK(found, "%s does not list %s", u->id, room);
    KC_ASSERT_INT(e, "lastSeq", TOTAL);
    KC_ASSERT_INT(e, "readSeq", read);
    KC_ASSERT_INT(e, "unread", TOTAL - read);
    json_decref(e);
}

/* @p u's chat events in @p room, repeats dropped, are exactly seqs
 * from+1..TOTAL in ascending order. */
static void chat_events_are(const kc_user *u, const char *room, json_int_t from)
{
    size_t want = (size_t)(TOTAL - from);
    json_t *evs = kc_wait_events(g_c, u->id, "chat", room, want, EV_MS);
    bool ok = json_array_size(evs) == want;
    for (size_t i = 0; ok && i < want; i++)
        ok = kc_int(json_array_get(evs, i), "seq", -1) == from + 1 + (json_int_t)i;
    if (!ok)
        fprintf(stderr, "%s: chat events should be seqs %lld..%d in order: %s\n", u->id,
                (long long)from + 1, TOTAL, kc_dumps(evs));
    json_decref(evs);
    CHECK(ok, "chat events of %s", u->id);
}

static void test_concurrent(void **state)
{
    kc_fmt fmt = *(const kc_fmt *)*state;
    kc_client_set_fmt(g_c, fmt);
    kc_user a, w[WRITERS], rd, inv[INVITEES];
    new_user(&a, "cca");
    new_user(&rd, "ccr");
    const char *fr[WRITERS + INVITEES + 2];
    size_t n = 0;
    for (int i = 0; i < WRITERS; i++) {
        new_user(&w[i], "ccw");
        fr[n++] = w[i].id;
    }
    fr[n++] = rd.id;
    fr[n] = NULL;
    const char *invl[INVITEES + 1];
    for (int i = 0; i < INVITEES; i++) {
        new_user(&inv[i], "cci");
        invl[i] = inv[i].id;
    }
    invl[INVITEES] = NULL;
    const char *all[WRITERS + INVITEES + 2];
    memcpy(all, fr, n * sizeof(*all));
    memcpy(all + n, invl, sizeof(invl));
    CHECK(kc_add_friends(g_c, &a, all), "a follows everybody");

    struct run run = { .bootstrap = kc_proc_bootstrap(g_srv), .fmt = fmt };
    CHECK(kc_create_room(g_c, &a, fr, "busy", run.room), "room");
    struct writer wr[WRITERS];
    struct reader reader = { .run = &run, .u = &rd };
    pthread_t tw[WRITERS], tr;
    for (int i = 0; i < WRITERS; i++) {
        wr[i] = (struct writer){ .run = &run, .u = &w[i] };
        CHECK(pthread_create(&tw[i], NULL, writer_main, &wr[i]) == 0, "thread");
    }
    CHECK(pthread_create(&tr, NULL, reader_main, &reader) == 0, "thread");

    /* invites while the messages come: each invitee's cursor starts within
     * [the largest seq answered before the invite, lastSeq after it] */
    json_int_t lo[INVITEES], hi[INVITEES], start[INVITEES];
    for (int i = 0; i < INVITEES; i++) {
        wait_sent(&run, (i + 1) * TOTAL / (INVITEES + 2));
        lo[i] = (json_int_t)atomic_load(&run.max_seq);
        const char *one[] = { inv[i].id, NULL };
        KC_EXPECT_OK(krm_invite(g_c, &a, run.room, one), a.id);
        hi[i] = last_seq(&a, run.room);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(tw[i], NULL);
    atomic_store(&run.writers_done, true);
    pthread_join(tr, NULL);
    for (int i = 0; i < WRITERS; i++)
        CHECK(wr[i].err[0] == '\0', "writer %d: %s", i, wr[i].err);
    CHECK(reader.err[0] == '\0', "reader: %s", reader.err);
    CHECK(reader.reads > 0, "the reader never read");

    /* seqs 1..TOTAL, each once */
    static bool seen[TOTAL + 1];
    memset(seen, 0, sizeof(seen));
    for (int i = 0; i < WRITERS; i++)
        for (int k = 0; k < PER_WRITER; k++) {
            int64_t s = wr[i].seqs[k];
            CHECK(s >= 1 && s <= TOTAL && !seen[s], "seq %lld repeated or out of 1..%d",
                  (long long)s, TOTAL);
            seen[s] = true;
        }

    /* every cursor as the answers imply; unread exact */
    cursor_is(&a, run.room, 0);
    for (int i = 0; i < WRITERS; i++)
        cursor_is(&w[i], run.room, wr[i].seqs[PER_WRITER - 1]);
    cursor_is(&rd, run.room, reader.last);
    for (int i = 0; i < INVITEES; i++) {
        json_t *r = krm_read(g_c, &inv[i], run.room, 0);   /* moves nothing: tells */
        CHECK(kc_check_ok(r, inv[i].id), "read by invitee %d", i);
        start[i] = kc_int(r, "readSeq", -1);
        json_decref(r);
        CHECK(start[i] >= lo[i] && start[i] <= hi[i],
              "invitee %d starts at %lld, outside [%lld, %lld]", i, (long long)start[i],
              (long long)lo[i], (long long)hi[i]);
        cursor_is(&inv[i], run.room, start[i]);
    }
    /* the first invite came while the messages did (it waited for 1/5 of them) */
    CHECK(start[0] > 0 && start[0] < TOTAL, "the first invitee started at %lld: no invite "
          "happened during the sends", (long long)start[0]);
    json_t *rr = krm_read(g_c, &rd, run.room, TOTAL + 5);
    CHECK(kc_check_ok(rr, rd.id) && kc_int(rr, "readSeq", -1) == TOTAL, "final read: %s",
          kc_dumps(rr));
    json_decref(rr);
    cursor_is(&rd, run.room, TOTAL);

    /* events: everybody from the start had every message in order; each
     * invitee exactly those after its starting cursor */
    chat_events_are(&a, run.room, 0);
    chat_events_are(&rd, run.room, 0);
    for (int i = 0; i < WRITERS; i++)
        chat_events_are(&w[i], run.room, 0);
    for (int i = 0; i < INVITEES; i++) {
        chat_events_are(&inv[i], run.room, start[i]);
        json_t *early = json_pack("{sI}", "seq", start[i]);
        CHECK(krm_count_events(g_c, inv[i].id, "chat", run.room, early) == 0 || start[i] == 0,
              "invitee %d got the message at its starting cursor", i);
        json_decref(early);
    }
    /* read events: the reader's last one reached the others; nobody else's */
    json_t *fin = json_pack("{ss si}", "readerId", rd.id, "readSeq", TOTAL);
    bool got = krm_wait_events(g_c, a.id, "read", run.room, fin, 1, EV_MS) &&
               krm_wait_events(g_c, w[0].id, "read", run.room, fin, 1, EV_MS) &&
               krm_wait_events(g_c, inv[INVITEES - 1].id, "read", run.room, fin, 1, EV_MS);
    json_decref(fin);
    CHECK(got, "the reader's final read event");
    for (int i = 0; i < INVITEES; i++) {
        json_t *s = json_pack("{ss}", "readerId", inv[i].id);
        CHECK(krm_count_events(g_c, a.id, "read", run.room, s) == 0,
              "a read event for invitee %d's cursor", i);
        json_decref(s);
    }
    for (int i = 0; i < WRITERS; i++) {
        json_t *s = json_pack("{ss}", "readerId", w[i].id);
        CHECK(krm_count_events(g_c, a.id, "read", run.room, s) == 0,
              "a read event for writer %d's own sends", i);
        json_decref(s);
    }
}

#define BOTH(fn)                                                                     \
    cmocka_unit_test_prestate(fn, (void *)&g_json),                                  \
    cmocka_unit_test_prestate(fn, (void *)&g_msgpack)

int main(void)
{
    /* KCHAT_TEST_FILTER=test_cap runs only the matching tests */
    const char *filter = getenv("KCHAT_TEST_FILTER");
    if (filter != NULL && filter[0] != '\0')
        cmocka_set_test_filter(filter);
    const struct CMUnitTest tests[] = {
        BOTH(test_cap),
        BOTH(test_concurrent),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
