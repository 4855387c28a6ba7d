/*
 * kchat-test: kafka (also run on real Apache Kafka by `make check-kafka`)
 * Protocol v1.1's rooms, written from PROTOCOL.md alone, against one
 * `kchat serve` (4 partitions) shared by the program: room-read,
 * room-invite and room-leave (§3 operations 11-13) with their errors and
 * the order of their checks, the read-cursor fields v1.1 added to
 * user-search-room and room-history, and the `room`, `members`, `read` and
 * `chat` events of §6 (who gets them, and that nobody else does). Every
 * test runs twice: JSON requests, then msgpack requests.
 *
 * "No event" is checked after a barrier: a later event from the same room
 * to the same recipient (all of a recipient's events share its partition of
 * chat-events), then the count of the unwanted kind must be what it was.
 * No crash happens here, so events are counted exactly.
 * test_rooms_v11_scale has the 256-participant cap and the concurrent run.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "support/kassert.h"
#include "support/kclient.h"
#include "support/rooms.h"

#define PARTITIONS 4
#define EV_MS 10000   /* bound of every wait for an event */

#define CHECK KC_CHECK

static kc_proc *g_srv;
static kc_client *g_c;
static const kc_fmt g_json = KC_FMT_JSON, g_msgpack = KC_FMT_MSGPACK;

/* ---- set-up --------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    setvbuf(stdout, NULL, _IOLBF, 0);
    char *data = kc_tmppath("rooms11-data");
    kc_rm_rf(data);
    g_srv = kc_serve_start("rooms11-serve", data, NULL, PARTITIONS, NULL);
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

/* The encoding of this run of the test (the prestate). */
static void use_fmt(void **state)
{
    kc_client_set_fmt(g_c, *(const kc_fmt *)*state);
}

/* ---- helpers -------------------------------------------------------------- */

static void new_user(kc_user *u, const char *tag)
{
    CHECK(kc_user_new(g_c, u, tag), "could not register and log in a user %s", tag);
}

static void follow(const kc_user *u, const kc_user *f)
{
    const char *l[] = { f->id, NULL };
    CHECK(kc_add_friends(g_c, u, l), "%s could not follow %s", u->id, f->id);
}

static void make_room(const kc_user *u, const char *const *friends, const char *name,
                      char *room)
{
    CHECK(kc_create_room(g_c, u, friends, name, room), "%s could not create a room", u->id);
}

static int64_t chat(const kc_user *u, const char *room, int64_t want_seq)
{
    int64_t seq = kc_chat(g_c, u, room, "hello", NULL);
    CHECK(seq == want_seq, "%s wrote to %s: seq %lld, expected %lld", u->id, room,
          (long long)seq, (long long)want_seq);
    return seq;
}

/* A room id that no room has. */
static void ghost_room(char *out)
{
    kc_uid(out, 65, "noroom");
}

/* room-read by @p u answered with success and readSeq @p want. */
static void read_ok(const kc_user *u, const char *room, json_int_t seq, json_int_t want)
{
    json_t *r = krm_read(g_c, u, room, seq);
    CHECK(kc_check_ok(r, u->id), "room-read %lld by %s", (long long)seq, u->id);
    KC_ASSERT_STR(r, "roomId", room);
    KC_ASSERT_INT(r, "readSeq", want);
    json_decref(r);
}

/* @p u's user-search-room lists @p room with these lastSeq/readSeq (and
 * unread = lastSeq - readSeq); returns its participants (new ref). */
static json_t *cursor_is(const kc_user *u, const char *room, json_int_t last, json_int_t read)
{
    bool found = false;
    json_t *e = krm_room_entry(g_c, u, room, &found);
    CHECK(found, "%s does not list room %s", u->id, room);
    KC_ASSERT_INT(e, "lastSeq", last);
    KC_ASSERT_INT(e, "readSeq", read);
    KC_ASSERT_INT(e, "unread", last - read);
    json_t *p = json_incref(json_object_get(e, "participants"));
    json_decref(e);
    return p;
}

static void not_listed(const kc_user *u, const char *room)
{
    bool found = true;
    json_t *e = krm_room_entry(g_c, u, room, &found);
    CHECK(!found, "%s still lists room %s: %s", u->id, room, kc_dumps(e));
    json_decref(e);
}

/* The participants array @p arr (stolen) is the NULL-terminated @p want. */
static void ids_are(json_t *arr, const char *const *want, const char *what)
{
    bool ok = kc_check_id_set(arr, want, what);
    json_decref(arr);
    CHECK(ok, "%s", what);
}

/* room-history by @p u: @p n messages, and `reads` one per (sorted) id of
 * @p ids with the matching cursor of @p seqs. */
static void history_reads(const kc_user *u, const char *room, size_t n,
                          const char *const *ids, const json_int_t *seqs)
{
    json_t *r = krm_history(g_c, u, room);
    CHECK(kc_check_ok(r, u->id), "room-history of %s by %s", room, u->id);
    CHECK(json_array_size(json_object_get(r, "messages")) == n, "%zu messages expected: %s", n,
          kc_dumps(r));
    json_t *reads = json_object_get(r, "reads");
    size_t cnt = 0;
    while (ids[cnt] != NULL)
        cnt++;
    CHECK(json_is_array(reads) && json_array_size(reads) == cnt,
          "reads should have %zu entries: %s", cnt, kc_dumps(r));
    /* sorted by userId: find each id's expected position */
    for (size_t i = 0; i < cnt; i++) {
        json_t *e = json_array_get(reads, i);
        const char *uid = kc_str(e, "userId");
        CHECK(uid != NULL, "reads[%zu] has no userId: %s", i, kc_dumps(r));
        if (i > 0)
            CHECK(strcmp(kc_str(json_array_get(reads, i - 1), "userId"), uid) < 0,
                  "reads not sorted by userId: %s", kc_dumps(r));
        size_t j = 0;
        while (j < cnt && strcmp(ids[j], uid) != 0)
            j++;
        CHECK(j < cnt, "reads has %s, no participant: %s", uid, kc_dumps(r));
        CHECK(kc_int(e, "readSeq", -1) == seqs[j], "readSeq of %s should be %lld: %s", uid,
              (long long)seqs[j], kc_dumps(r));
    }
    json_decref(r);
}

/* Wait until @p u has received @p n events of @p type in @p room carrying
 * @p subset (stolen, may be NULL). */
static void wait_ev(const kc_user *u, const char *type, const char *room, json_t *subset,
                    size_t n)
{
    bool ok = krm_wait_events(g_c, u->id, type, room, subset, n, EV_MS);
    json_decref(subset);
    CHECK(ok, "%s: %zu `%s` event(s) in %s expected", u->id, n, type, room);
}

/* @p u has received exactly @p n events of @p type in @p room carrying
 * @p subset (stolen, may be NULL), now. */
static void count_ev(const kc_user *u, const char *type, const char *room, json_t *subset,
                     size_t n)
{
    size_t have = krm_count_events(g_c, u->id, type, room, subset);
    if (have != n) {
        json_t *all = krm_events(g_c, u->id, type, room, NULL);
        fprintf(stderr, "%s has %zu `%s` events in %s matching %s, expected %zu; all: %s\n",
                u->id, have, type, room, kc_dumps(subset), n, kc_dumps(all));
        json_decref(all);
    }
    json_decref(subset);
    CHECK(have == n, "event count");
}

static json_t *reader_is(const kc_user *reader, json_int_t seq)
{
    return json_pack("{ss sI}", "readerId", reader->id, "readSeq", seq);
}

static json_t *reader_any(const kc_user *reader)
{
    return json_pack("{ss}", "readerId", reader->id);
}

static json_t *chat_seq(json_int_t seq)
{
    return json_pack("{sI}", "seq", seq);
}

/* The @p n-th (from 1) `members` event of @p u in @p room, waited for: its
 * participants are @p parts, its added @p added and its removed @p removed. */
static void members_ev(const kc_user *u, const char *room, size_t n, const char *const *parts,
                       const char *const *added, const char *const *removed)
{
    wait_ev(u, "members", room, NULL, n);
    json_t *evs = krm_events(g_c, u->id, "members", room, NULL);
    json_t *e = json_array_get(evs, n - 1);
    KC_ASSERT_STR(e, "userId", u->id);
    bool ok = kc_check_id_set(json_object_get(e, "participants"), parts, "members.participants") &&
              kc_check_id_set(json_object_get(e, "added"), added, "members.added") &&
              kc_check_id_set(json_object_get(e, "removed"), removed, "members.removed");
    json_decref(evs);
    CHECK(ok, "members event of %s in %s", u->id, room);
}

static json_t *call_body(const char *op, const kc_user *u, const char *session, json_t *body)
{
    return kc_call(g_c, op, u->id, session, body);
}

/* ---- room-read ------------------------------------------------------------ */

static void test_read(void **state)
{
    use_fmt(state);
    kc_user a, b, c;
    char room[65];
    new_user(&a, "rda");
    new_user(&b, "rdb");
    new_user(&c, "rdc");
    follow(&a, &b);
    const char *fr[] = { b.id, NULL };
    make_room(&a, fr, "reads", room);
    for (int64_t s = 1; s <= 5; s++)
        chat(&a, room, s);
    json_decref(cursor_is(&a, room, 5, 5));   /* own sends move the writer's cursor */
    json_decref(cursor_is(&b, room, 5, 0));

    read_ok(&b, room, 3, 3);
    wait_ev(&a, "read", room, reader_is(&b, 3), 1);
    wait_ev(&b, "read", room, reader_is(&b, 3), 1);
    json_decref(cursor_is(&b, room, 5, 3));
    read_ok(&b, room, 2, 3);     /* never back */
    read_ok(&b, room, 3, 3);     /* no move */
    read_ok(&b, room, 99, 5);    /* clamped to lastSeq */
    wait_ev(&a, "read", room, reader_is(&b, 5), 1);
    wait_ev(&b, "read", room, reader_is(&b, 5), 1);
    read_ok(&b, room, 0, 5);
    json_decref(cursor_is(&b, room, 5, 5));

    /* barrier: a message after the reads that moved nothing */
    chat(&a, room, 6);
    wait_ev(&a, "chat", room, chat_seq(6), 1);
    wait_ev(&b, "chat", room, chat_seq(6), 1);
    count_ev(&a, "read", room, reader_any(&b), 2);   /* 3 and 5, nothing else */
    count_ev(&b, "read", room, reader_any(&b), 2);
    count_ev(&a, "read", room, reader_any(&a), 0);   /* sends move silently */
    count_ev(&b, "read", room, reader_any(&a), 0);
    json_t *want = reader_is(&b, 5);
    json_t *ev = krm_events(g_c, b.id, "read", room, want);

    json_decref(want);
    KC_ASSERT_STR(json_array_get(ev, 0), "userId", b.id);
    KC_ASSERT_STR(json_array_get(ev, 0), "roomId", room);
    json_decref(ev);

    const char *ids[] = { a.id, b.id, NULL };
    const json_int_t seqs[] = { 6, 5 };
    history_reads(&b, room, 6, ids, seqs);
    KC_EXPECT_ERR(krm_read(g_c, &c, room, 1), c.id, "NOT_A_MEMBER");
}

static void test_read_errors(void **state)
{
    use_fmt(state);
    kc_user a, b, c;
    char room[65], ghost[65];
    new_user(&a, "rea");
    new_user(&b, "reb");
    new_user(&c, "rec");
    follow(&a, &b);
    const char *fr[] = { b.id, NULL };
    make_room(&a, fr, NULL, room);
    chat(&a, room, 1);
    chat(&a, room, 2);
    read_ok(&b, room, 1, 1);
    ghost_room(ghost);

    /* the body's validation first */
    KC_EXPECT_ERR(call_body("room-read", &b, b.session,
                            json_pack("{ss ss}", "userId", b.id, "roomId", room)),
                  b.id, "BAD_REQUEST");
    KC_EXPECT_ERR(krm_read(g_c, &b, room, -1), b.id, "BAD_REQUEST");
    KC_EXPECT_ERR(call_body("room-read", &b, b.session,
                            json_pack("{ss ss ss}", "userId", b.id, "roomId", room,
                                      "readSeq", "2")),
                  b.id, "BAD_REQUEST");
    KC_EXPECT_ERR(call_body("room-read", &b, b.session,
                            json_pack("{ss ss sf}", "userId", b.id, "roomId", room,
                                      "readSeq", 1.5)),
                  b.id, "BAD_REQUEST");
    KC_EXPECT_ERR(call_body("room-read", &b, b.session,
                            json_pack("{ss ss sb}", "userId", b.id, "roomId", room,
                                      "readSeq", 1)),
                  b.id, "BAD_REQUEST");
    KC_EXPECT_ERR(call_body("room-read", &b, b.session,
                            json_pack("{ss si}", "userId", b.id, "readSeq", 2)),
                  b.id, "BAD_REQUEST");
    KC_EXPECT_ERR(call_body("room-read", &b, b.session,
                            json_pack("{ss si si}", "userId", b.id, "roomId", 7, "readSeq", 2)),
                  b.id, "BAD_REQUEST");
    KC_EXPECT_ERR(krm_read(g_c, &c, ghost, -1), c.id, "BAD_REQUEST");   /* before lookups */
    /* sessions */
    KC_EXPECT_ERR(call_body("room-read", &b, NULL,
                            json_pack("{ss ss si}", "userId", b.id, "roomId", room, "readSeq", 2)),
                  b.id, "UNAUTHENTICATED");
    KC_EXPECT_ERR(call_body("room-read", &b, a.session,
                            json_pack("{ss ss si}", "userId", b.id, "roomId", room, "readSeq", 2)),
                  b.id, "UNAUTHENTICATED");
    /* lookups: the room first, then membership */
    KC_EXPECT_ERR(krm_read(g_c, &b, ghost, 1), b.id, "ROOM_NOT_FOUND");
    KC_EXPECT_ERR(krm_read(g_c, &c, ghost, 1), c.id, "ROOM_NOT_FOUND");
    KC_EXPECT_ERR(krm_read(g_c, &c, room, 1), c.id, "NOT_A_MEMBER");

    /* nothing changed, and no read event came of it (barrier: a new message) */
    json_decref(cursor_is(&b, room, 2, 1));
    chat(&a, room, 3);
    wait_ev(&a, "chat", room, chat_seq(3), 1);
    wait_ev(&b, "chat", room, chat_seq(3), 1);
    count_ev(&a, "read", room, reader_any(&b), 1);
    count_ev(&b, "read", room, reader_any(&b), 1);
    json_decref(cursor_is(&b, room, 3, 1));
}

/* ---- room-invite ----------------------------------------------------------- */

static void test_invite(void **state)
{
    use_fmt(state);
    kc_user a, b, c;
    char room[65];
    new_user(&a, "iva");
    new_user(&b, "ivb");
    new_user(&c, "ivc");
    follow(&a, &b);
    follow(&a, &c);
    const char *fr[] = { b.id, NULL };
    make_room(&a, fr, "invited", room);
    for (int64_t s = 1; s <= 3; s++)
        chat(&a, room, s);

    const char *inv[] = { c.id, NULL };
    const char *abc[] = { a.id, b.id, c.id, NULL };
    const char *none[] = { NULL };
    json_t *r = krm_invite(g_c, &a, room, inv);
    CHECK(kc_check_ok(r, a.id), "invite");
    KC_ASSERT_STR(r, "roomId", room);
    ids_are(json_incref(json_object_get(r, "participants")), abc, "invite.participants");
    json_decref(r);

    /* the invitee: a room event, the whole history, a cursor at lastSeq */
    wait_ev(&c, "room", room, NULL, 1);
    json_t *evs = krm_events(g_c, c.id, "room", room, NULL);
    json_t *e = json_array_get(evs, 0);
    KC_ASSERT_STR(e, "userId", c.id);
    KC_ASSERT_STR(e, "roomName", "invited");
    ids_are(json_incref(json_object_get(e, "participants")), abc, "room.participants");
    json_decref(evs);
    ids_are(cursor_is(&c, room, 3, 3), abc, "search.participants");
    json_t *h = krm_history(g_c, &c, room);
    CHECK(kc_check_ok(h, c.id) && json_array_size(json_object_get(h, "messages")) == 3,
          "the invitee reads the whole history: %s", kc_dumps(h));
    KC_ASSERT_INT(json_array_get(json_object_get(h, "messages"), 0), "seq", 1);
    json_decref(h);
    /* the previous participants: members with added */
    members_ev(&a, room, 1, abc, inv, none);
    members_ev(&b, room, 1, abc, inv, none);

    /* messages after the invite reach the invitee, earlier ones did not */
    chat(&b, room, 4);
    wait_ev(&a, "chat", room, chat_seq(4), 1);
    wait_ev(&b, "chat", room, chat_seq(4), 1);
    wait_ev(&c, "chat", room, chat_seq(4), 1);
    count_ev(&c, "chat", room, NULL, 1);
    count_ev(&c, "members", room, NULL, 0);          /* not a participant before */
    count_ev(&a, "read", room, reader_any(&c), 0);   /* the starting cursor is silent */
    count_ev(&b, "read", room, reader_any(&c), 0);
    count_ev(&c, "read", room, reader_any(&c), 0);

    const json_int_t seqs[] = { 3, 4, 3 };
    history_reads(&a, room, 4, abc, seqs);
    json_decref(cursor_is(&c, room, 4, 3));
}

static void test_invite_errors(void **state)
{
    use_fmt(state);
    kc_user a, b, c, d, e;
    char room[65], ghost[65], x[72];
    new_user(&a, "iea");
    new_user(&b, "ieb");
    new_user(&c, "iec");   /* a's friend */
    new_user(&d, "ied");   /* registered, not a's friend */
    new_user(&e, "iee");   /* no participant */
    kc_uid(x, sizeof(x), "ghost");   /* no user */
    follow(&a, &b);
    follow(&a, &c);
    follow(&e, &c);
    follow(&e, &d);
    const char *fr[] = { b.id, NULL };
    make_room(&a, fr, NULL, room);
    chat(&a, room, 1);
    ghost_room(ghost);

    /* all or nothing */
    const char *cx[] = { c.id, x, NULL }, *xc[] = { x, c.id, NULL };
    const char *cd[] = { c.id, d.id, NULL }, *dc[] = { d.id, c.id, NULL };
    KC_EXPECT_ERR(krm_invite(g_c, &a, room, cx), a.id, "USER_NOT_FOUND");
    KC_EXPECT_ERR(krm_invite(g_c, &a, room, xc), a.id, "USER_NOT_FOUND");
    KC_EXPECT_ERR(krm_invite(g_c, &a, room, cd), a.id, "NOT_A_FRIEND");
    KC_EXPECT_ERR(krm_invite(g_c, &a, room, dc), a.id, "NOT_A_FRIEND");
    /* the order: ROOM_NOT_FOUND, NOT_A_MEMBER, USER_NOT_FOUND, NOT_A_FRIEND */
    const char *dx[] = { d.id, x, NULL }, *xd[] = { x, d.id, NULL };
    KC_EXPECT_ERR(krm_invite(g_c, &a, room, dx), a.id, "USER_NOT_FOUND");
    KC_EXPECT_ERR(krm_invite(g_c, &a, room, xd), a.id, "USER_NOT_FOUND");
    KC_EXPECT_ERR(krm_invite(g_c, &e, room, dx), e.id, "NOT_A_MEMBER");
    const char *cl[] = { c.id, NULL };
    KC_EXPECT_ERR(krm_invite(g_c, &e, room, cl), e.id, "NOT_A_MEMBER");
    KC_EXPECT_ERR(krm_invite(g_c, &e, ghost, dx), e.id, "ROOM_NOT_FOUND");
    KC_EXPECT_ERR(krm_invite(g_c, &a, ghost, cl), a.id, "ROOM_NOT_FOUND");
    /* validation before any lookup */
    const char *empty[] = { NULL }, *bad[] = { "no such!id", NULL };
    KC_EXPECT_ERR(krm_invite(g_c, &a, room, empty), a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(krm_invite(g_c, &e, ghost, empty), e.id, "BAD_REQUEST");
    KC_EXPECT_ERR(krm_invite(g_c, &a, room, bad), a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(call_body("room-invite", &a, a.session,
                            json_pack("{ss ss}", "userId", a.id, "roomId", room)),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(call_body("room-invite", &a, a.session,
                            json_pack("{ss ss ss}", "userId", a.id, "roomId", room,
                                      "friendId", c.id)),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(call_body("room-invite", &a, a.session,
                            json_pack("{ss s[s]}", "userId", a.id, "friendId", c.id)),
                  a.id, "BAD_REQUEST");
    json_t *many = json_array();
    for (int i = 0; i < 101; i++) {
        char id[72];
        kc_uid(id, sizeof(id), "many");
        json_array_append_new(many, json_string(id));
    }
    KC_EXPECT_ERR(call_body("room-invite", &a, a.session,
                            json_pack("{ss ss so}", "userId", a.id, "roomId", room,
                                      "friendId", many)),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(call_body("room-invite", &a, NULL,
                            json_pack("{ss ss s[s]}", "userId", a.id, "roomId", room,
                                      "friendId", c.id)),
                  a.id, "UNAUTHENTICATED");

    /* nobody was added, nobody told */
    const char *ab[] = { a.id, b.id, NULL };
    ids_are(cursor_is(&a, room, 1, 1), ab, "participants after failed invites");
    not_listed(&c, room);
    not_listed(&d, room);
    /* barrier: a successful invite; exactly its events exist */
    json_t *r = krm_invite(g_c, &a, room, cl);
    CHECK(kc_check_ok(r, a.id), "invite of a friend after the failures");
    json_decref(r);
    const char *abc[] = { a.id, b.id, c.id, NULL }, *none[] = { NULL };
    members_ev(&a, room, 1, abc, cl, none);
    members_ev(&b, room, 1, abc, cl, none);
    wait_ev(&c, "room", room, NULL, 1);
    count_ev(&a, "members", room, NULL, 1);
    count_ev(&b, "members", room, NULL, 1);
    count_ev(&c, "room", room, NULL, 1);
    count_ev(&d, "room", room, NULL, 0);
    const json_int_t seqs[] = { 1, 0, 1 };
    history_reads(&a, room, 1, abc, seqs);
}

static void test_invite_skips_participants(void **state)
{
    use_fmt(state);
    kc_user a, b, c, d;
    char room[65];
    new_user(&a, "isa");
    new_user(&b, "isb");
    new_user(&c, "isc");
    new_user(&d, "isd");
    follow(&a, &b);
    follow(&b, &c);   /* a does not follow c */
    const char *fr[] = { b.id, NULL };
    make_room(&a, fr, NULL, room);
    const char *cl[] = { c.id, NULL }, *none[] = { NULL };
    const char *abc[] = { a.id, b.id, c.id, NULL };
    json_t *r = krm_invite(g_c, &b, room, cl);
    CHECK(kc_check_ok(r, b.id), "b invites its friend c");
    json_decref(r);
    members_ev(&a, room, 1, abc, cl, none);

    /* participants are skipped before the friend check: adds nobody, no event */
    const char *al[] = { a.id, NULL }, *abcl[] = { a.id, b.id, c.id, NULL };
    const char *const *lists[] = { cl, al, abcl };
    for (size_t i = 0; i < 3; i++) {
        r = krm_invite(g_c, &a, room, lists[i]);
        CHECK(kc_check_ok(r, a.id), "invite of participants only (%zu)", i);
        KC_ASSERT_STR(r, "roomId", room);
        ids_are(json_incref(json_object_get(r, "participants")), abc, "participants");
        json_decref(r);
    }
    /* barrier: an invite adding d among participants */
    follow(&a, &d);
    const char *ad[] = { a.id, d.id, c.id, NULL }, *dl[] = { d.id, NULL };
    const char *abcd[] = { a.id, b.id, c.id, d.id, NULL };
    r = krm_invite(g_c, &a, room, ad);
    CHECK(kc_check_ok(r, a.id), "invite of d");
    ids_are(json_incref(json_object_get(r, "participants")), abcd, "participants");
    json_decref(r);
    wait_ev(&d, "room", room, NULL, 1);
    members_ev(&c, room, 1, abcd, dl, none);
    members_ev(&a, room, 2, abcd, dl, none);
    members_ev(&b, room, 2, abcd, dl, none);
    count_ev(&a, "members", room, NULL, 2);
    count_ev(&b, "members", room, NULL, 2);
    count_ev(&c, "members", room, NULL, 1);
    count_ev(&c, "room", room, NULL, 1);
    count_ev(&d, "members", room, NULL, 0);
}

/* ---- room-leave ------------------------------------------------------------ */

static void test_leave(void **state)
{
    use_fmt(state);
    kc_user a, b, c;
    char room[65], side[65], ghost[65];
    new_user(&a, "lva");
    new_user(&b, "lvb");
    new_user(&c, "lvc");
    follow(&a, &b);
    follow(&a, &c);
    const char *bc[] = { b.id, c.id, NULL }, *cl[] = { c.id, NULL };
    make_room(&a, bc, NULL, room);
    make_room(&a, cl, NULL, side);   /* c's barrier room */
    ghost_room(ghost);
    chat(&a, room, 1);

    json_t *r = krm_leave(g_c, &c, room);
    CHECK(kc_check_ok(r, c.id), "c leaves");
    KC_ASSERT_STR(r, "roomId", room);
    json_decref(r);
    const char *ab[] = { a.id, b.id, NULL }, *none[] = { NULL };
    members_ev(&a, room, 1, ab, none, cl);
    members_ev(&b, room, 1, ab, none, cl);
    members_ev(&c, room, 1, ab, none, cl);   /* the leaver too */
    not_listed(&c, room);
    json_decref(cursor_is(&c, side, 0, 0));

    /* the leaver is no member for anything */
    KC_EXPECT_ERR(kc_call(g_c, "user-add-chat", c.id, c.session,
                          json_pack("{ss ss ss}", "roomId", room, "writerId", c.id,
                                    "message", "still here?")),
                  c.id, "NOT_A_MEMBER");
    KC_EXPECT_ERR(krm_history(g_c, &c, room), c.id, "NOT_A_MEMBER");
    KC_EXPECT_ERR(krm_read(g_c, &c, room, 1), c.id, "NOT_A_MEMBER");
    const char *al[] = { a.id, NULL };
    KC_EXPECT_ERR(krm_invite(g_c, &c, room, al), c.id, "NOT_A_MEMBER");
    KC_EXPECT_ERR(krm_leave(g_c, &c, room), c.id, "NOT_A_MEMBER");
    /* errors of room-leave */
    KC_EXPECT_ERR(krm_leave(g_c, &c, ghost), c.id, "ROOM_NOT_FOUND");
    KC_EXPECT_ERR(call_body("room-leave", &a, a.session, json_pack("{ss}", "userId", a.id)),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(call_body("room-leave", &a, a.session,
                            json_pack("{ss si}", "userId", a.id, "roomId", 5)),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(call_body("room-leave", &a, NULL,
                            json_pack("{ss ss}", "userId", a.id, "roomId", room)),
                  a.id, "UNAUTHENTICATED");

    /* later messages do not reach the leaver (barrier: one in the side room) */
    chat(&a, room, 2);
    chat(&a, side, 1);
    wait_ev(&a, "chat", room, chat_seq(2), 1);
    wait_ev(&b, "chat", room, chat_seq(2), 1);
    wait_ev(&c, "chat", side, chat_seq(1), 1);
    count_ev(&c, "chat", room, NULL, 1);
    count_ev(&c, "members", room, NULL, 1);
    const json_int_t seqs[] = { 2, 0 };
    history_reads(&b, room, 2, ab, seqs);
    ids_are(cursor_is(&a, room, 2, 2), ab, "participants after the leave");

    /* everybody leaves: the room stays, known to exist */
    KC_EXPECT_OK(krm_leave(g_c, &a, room), a.id);
    const char *bl[] = { b.id, NULL };
    members_ev(&b, room, 2, bl, none, al);
    members_ev(&a, room, 2, bl, none, al);
    KC_EXPECT_OK(krm_leave(g_c, &b, room), b.id);
    members_ev(&b, room, 3, none, none, bl);
    chat(&a, side, 2);
    wait_ev(&a, "chat", side, chat_seq(2), 1);
    count_ev(&a, "members", room, NULL, 2);   /* b's leave came after a's own */
    count_ev(&c, "members", room, NULL, 1);
    KC_EXPECT_ERR(krm_history(g_c, &a, room), a.id, "NOT_A_MEMBER");
    KC_EXPECT_ERR(krm_history(g_c, &b, room), b.id, "NOT_A_MEMBER");
    KC_EXPECT_ERR(krm_read(g_c, &b, room, 0), b.id, "NOT_A_MEMBER");
    KC_EXPECT_ERR(krm_invite(g_c, &a, room, bl), a.id, "NOT_A_MEMBER");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-chat", a.id, a.session,
                          json_pack("{ss ss ss}", "roomId", room, "writerId", a.id,
                                    "message", "anyone?")),
                  a.id, "NOT_A_MEMBER");
    not_listed(&a, room);
    not_listed(&b, room);
}

/* ---- fields and read events ------------------------------------------------ */

static void test_cursor_fields(void **state)
{
    use_fmt(state);
    kc_user a, b;
    char room[65];
    new_user(&a, "cfa");
    new_user(&b, "cfb");
    follow(&a, &b);
    const char *fr[] = { b.id, NULL }, *ab[] = { a.id, b.id, NULL };
    make_room(&a, fr, NULL, room);
    json_decref(cursor_is(&a, room, 0, 0));
    json_decref(cursor_is(&b, room, 0, 0));
    const json_int_t zero[] = { 0, 0 };
    history_reads(&b, room, 0, ab, zero);

    chat(&a, room, 1);
    chat(&a, room, 2);
    json_decref(cursor_is(&a, room, 2, 2));
    json_decref(cursor_is(&b, room, 2, 0));
    chat(&b, room, 3);
    json_decref(cursor_is(&b, room, 3, 3));
    json_decref(cursor_is(&a, room, 3, 2));
    read_ok(&b, room, 1, 3);
    read_ok(&a, room, 3, 3);
    wait_ev(&a, "read", room, reader_is(&a, 3), 1);
    wait_ev(&b, "read", room, reader_is(&a, 3), 1);
    json_decref(cursor_is(&a, room, 3, 3));
    count_ev(&a, "read", room, NULL, 1);   /* only a's read moved a cursor by reading */
    count_ev(&b, "read", room, NULL, 1);
    const json_int_t three[] = { 3, 3 };
    history_reads(&a, room, 3, ab, three);
}

/* ---- across shards ----------------------------------------------------------- */

/* a on partition 0, b on 1, the room wherever its id hashes, c on a
 * partition none of those is on: c's every step, and b's unless the room
 * hashes to 1, crosses shards. */
static void test_across_shards(void **state)
{
    use_fmt(state);
    kc_user a, b, c;
    char room[65] = "", side[65];
    CHECK(krm_user_on_partition(g_c, &a, "sha", 0, PARTITIONS), "user on partition 0");
    CHECK(krm_user_on_partition(g_c, &b, "shb", 1, PARTITIONS), "user on partition 1");
    follow(&a, &b);
    const char *fr[] = { b.id, NULL };
    make_room(&a, fr, "side", side);
    make_room(&a, fr, "far", room);
    /* the room's partition is the server's choice (roomId); c goes to one
     * that is neither the room's nor a's nor b's */
    int rp = kc_partition_for(room, PARTITIONS), cp = 0;
    while (cp == rp || cp == 0 || cp == 1)
        cp++;
    CHECK(krm_user_on_partition(g_c, &c, "shc", cp, PARTITIONS), "user on partition %d", cp);
    follow(&a, &c);

    chat(&a, room, 1);
    chat(&b, room, 2);
    read_ok(&b, room, 1, 2);
    const char *cl[] = { c.id, NULL }, *abc[] = { a.id, b.id, c.id, NULL }, *none[] = { NULL };
    json_t *r = krm_invite(g_c, &a, room, cl);
    CHECK(kc_check_ok(r, a.id), "invite across shards");
    json_decref(r);
    wait_ev(&c, "room", room, NULL, 1);
    members_ev(&b, room, 1, abc, cl, none);
    ids_are(cursor_is(&c, room, 2, 2), abc, "participants");
    chat(&c, room, 3);
    wait_ev(&a, "chat", room, chat_seq(3), 1);
    wait_ev(&b, "chat", room, chat_seq(3), 1);
    wait_ev(&c, "chat", room, chat_seq(3), 1);
    count_ev(&c, "chat", room, NULL, 1);
    read_ok(&a, room, 3, 3);
    wait_ev(&c, "read", room, reader_is(&a, 3), 1);
    KC_EXPECT_OK(krm_leave(g_c, &b, room), b.id);
    const char *ac[] = { a.id, c.id, NULL }, *bl[] = { b.id, NULL };
    members_ev(&c, room, 1, ac, none, bl);
    members_ev(&b, room, 2, ac, none, bl);
    not_listed(&b, room);
    chat(&a, room, 4);
    chat(&a, side, 1);   /* b's barrier */
    wait_ev(&c, "chat", room, chat_seq(4), 1);
    wait_ev(&a, "chat", room, chat_seq(4), 1);
    wait_ev(&b, "chat", side, chat_seq(1), 1);
    count_ev(&b, "chat", room, NULL, 3);
    const json_int_t seqs[] = { 4, 3 };   /* c wrote 3 and read nothing since */
    history_reads(&c, room, 4, ac, seqs);
}

#define BOTH(fn)                                                                     \
    cmocka_unit_test_prestate(fn, (void *)&g_json),                                  \
    cmocka_unit_test_prestate(fn, (void *)&g_msgpack)

int main(void)
{
    /* KCHAT_TEST_FILTER=test_leave runs only the matching tests */
    const char *filter = getenv("KCHAT_TEST_FILTER");
    if (filter != NULL && filter[0] != '\0')
        cmocka_set_test_filter(filter);
    const struct CMUnitTest tests[] = {
        BOTH(test_read),
        BOTH(test_read_errors),
        BOTH(test_invite),
        BOTH(test_invite_errors),
        BOTH(test_invite_skips_participants),
        BOTH(test_leave),
        BOTH(test_cursor_fields),
        BOTH(test_across_shards),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
