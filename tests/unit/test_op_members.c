/* Unit tests of room-read, room-invite and room-leave (src/actors/members.c;
 * PROTOCOL.md v1.1, section 3 rows 11-13, section 6) against temporary
 * stores, without a broker (tests/unit/ops/fixture.h): answers, `read`,
 * `members` and `room` events, cursors in user-search-room and
 * room-history, the order of the errors and that a refused request leaves
 * nothing behind (fx_err() compares every table). The room of fx_cast is
 * alice's, in her shard (home), with bob (away) and carol (home): bob's
 * calls reach it by internal command. */
#include "ops/fixture.c"

static json_t *search_rooms(struct fx *f, const char *user, const char *session)
{
    json_t *a = fx_ok(f, KCHAT_OP_SEARCH_ROOM, user, session, "{\"userId\":\"%s\"}", user);
    json_t *rooms = json_incref(json_object_get(a, "rooms"));

    json_decref(a);
    return rooms;
}

static void chat(struct fx *f, const char *writer, const char *session, const char *room,
                 int n)
{
    for (int i = 0; i < n; i++)
        json_decref(fx_ok(f, KCHAT_OP_ADD_CHAT, writer, session,
                          "{\"writerId\":\"%s\",\"roomId\":\"%s\",\"message\":\"m%d\"}", writer,
                          room, i));
}

static json_t *read_room(struct fx *f, const char *user, const char *session, const char *room,
                         int seq)
{
    return fx_ok(f, KCHAT_OP_ROOM_READ, user, session,
                 "{\"userId\":\"%s\",\"roomId\":\"%s\",\"readSeq\":%d}", user, room, seq);
}

/* Cursors move up only, to at most lastSeq; every participant hears of a
 * move, nobody of a call that moved nothing; a writer's cursor follows
 * their own messages without an event. */
static void test_read(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    json_t *a, *ev, *rooms;

    fx_cast_make(f, &c, true);
    chat(f, c.carol, c.sc, c.room, 3);
    a = read_room(f, "alice", c.sa, c.room, 2);
    fx_assert_json(a, "{\"userId\":\"alice\",\"isSuccess\":true,\"errorCode\":\"\","
                      "\"errorMessage\":\"\",\"roomId\":\"%s\",\"readSeq\":2}", c.room);
    json_decref(a);
    for (int who = 0; who < 3; who++) {
        const char *u = who == 0 ? "alice" : who == 1 ? c.bob : c.carol;
        ev = fx_events(f, u);
        fx_assert_json(ev, "[{\"type\":\"read\",\"userId\":\"%s\",\"roomId\":\"%s\","
                           "\"readerId\":\"alice\",\"readSeq\":2}]", u, c.room);
        json_decref(ev);
    }
    /* lower: no move, no event */
    a = read_room(f, "alice", c.sa, c.room, 1);
    assert_int_equal(json_integer_value(json_object_get(a, "readSeq")), 2);
    json_decref(a);
    assert_int_equal(fx_count(f, KCHAT_TOPIC_EVENTS), 0);
    /* beyond lastSeq: clamped */
    a = read_room(f, "alice", c.sa, c.room, 99);
    assert_int_equal(json_integer_value(json_object_get(a, "readSeq")), 3);
    json_decref(a);
    /* bob, in another shard, through a command; msgpack */
    f->fmt = KCHAT_FMT_MSGPACK;
    a = read_room(f, c.bob, c.sb, c.room, 1);
    assert_int_equal(json_integer_value(json_object_get(a, "readSeq")), 1);
    json_decref(a);
    assert_int_equal(fx_count(f, KCHAT_TOPIC_EVENTS), 3);
    f->fmt = KCHAT_FMT_JSON;
    /* user-search-room: each one's cursor and unread count */
    rooms = search_rooms(f, c.bob, c.sb);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rooms, 0), "readSeq")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rooms, 0), "unread")), 2);
    json_decref(rooms);
    rooms = search_rooms(f, c.carol, c.sc);   /* the writer: at its own last message */
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rooms, 0), "unread")), 0);
    json_decref(rooms);
    /* room-history: every participant's cursor, sorted by id */
    a = fx_ok(f, KCHAT_OP_HISTORY, c.bob, c.sb, "{\"userId\":\"%s\",\"roomId\":\"%s\"}", c.bob,
              c.room);
    fx_assert_json(json_object_get(a, "reads"),
                   "[{\"userId\":\"alice\",\"readSeq\":3},{\"userId\":\"%s\",\"readSeq\":1},"
                   "{\"userId\":\"%s\",\"readSeq\":3}]", c.bob, c.carol);
    json_decref(a);
}

static void test_read_errors(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;

    fx_cast_make(f, &c, true);
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_ROOM_READ, "alice", c.sa,
                       "{\"userId\":\"alice\",\"roomId\":\"%s\"}", c.room));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_ROOM_READ, "alice", c.sa,
                       "{\"userId\":\"alice\",\"roomId\":\"%s\",\"readSeq\":-1}", c.room));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_ROOM_READ, "alice", c.sa,
                       "{\"userId\":\"alice\",\"roomId\":\"%s\",\"readSeq\":\"1\"}", c.room));
    json_decref(fx_err(f, "UNAUTHENTICATED", KCHAT_OP_ROOM_READ, "alice", NULL,
                       "{\"userId\":\"alice\",\"roomId\":\"%s\",\"readSeq\":1}", c.room));
    json_decref(fx_err(f, "ROOM_NOT_FOUND", KCHAT_OP_ROOM_READ, c.dave, c.sd,
                       "{\"userId\":\"%s\",\"roomId\":\"rnope\",\"readSeq\":1}", c.dave));
    json_decref(fx_err(f, "NOT_A_MEMBER", KCHAT_OP_ROOM_READ, c.dave, c.sd,
                       "{\"userId\":\"%s\",\"roomId\":\"%s\",\"readSeq\":1}", c.dave, c.room));
}

/* The errors of an invite in the order of PROTOCOL.md section 3, each on a
 * request that would fail in every later way too, and none changing
 * anything. */
static void test_invite_errors(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char stranger[80];

    fx_cast_make(f, &c, true);
    snprintf(stranger, sizeof(stranger), "%s", c.eve);   /* registered, not alice's friend */
    json_decref(fx_err(f, "ROOM_NOT_FOUND", KCHAT_OP_ROOM_INVITE, c.dave, c.sd,
                       "{\"userId\":\"%s\",\"roomId\":\"rnope\",\"friendId\":[\"ghost\"]}",
                       c.dave));
    json_decref(fx_err(f, "NOT_A_MEMBER", KCHAT_OP_ROOM_INVITE, c.dave, c.sd,
                       "{\"userId\":\"%s\",\"roomId\":\"%s\",\"friendId\":[\"ghost\"]}", c.dave,
                       c.room));
    json_decref(fx_err(f, "USER_NOT_FOUND", KCHAT_OP_ROOM_INVITE, "alice", c.sa,
                       "{\"userId\":\"alice\",\"roomId\":\"%s\",\"friendId\":[\"%s\",\"ghost\"]}",
                       c.room, stranger));
    json_decref(fx_err(f, "NOT_A_FRIEND", KCHAT_OP_ROOM_INVITE, "alice", c.sa,
                       "{\"userId\":\"alice\",\"roomId\":\"%s\",\"friendId\":[\"%s\"]}", c.room,
                       stranger));
    /* bob, in another shard: his friends are checked in his shard */
    json_decref(fx_err(f, "NOT_A_FRIEND", KCHAT_OP_ROOM_INVITE, c.bob, c.sb,
                       "{\"userId\":\"%s\",\"roomId\":\"%s\",\"friendId\":[\"%s\"]}", c.bob,
                       c.room, c.dave));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_ROOM_INVITE, "alice", c.sa,
                       "{\"userId\":\"alice\",\"roomId\":\"%s\",\"friendId\":[]}", c.room));
    json_decref(fx_err(f, "UNAUTHENTICATED", KCHAT_OP_ROOM_INVITE, "alice", NULL,
                       "{\"userId\":\"alice\",\"roomId\":\"%s\",\"friendId\":[\"%s\"]}", c.room,
                       c.bob));
}

/* An invite adds the new participants at the room's lastSeq; the earlier
 * participants get `members`, the new ones `room`; the new ones read the
 * whole history and get the messages sent after. Participants named again
 * (the inviter too) are no error and no change. */
static void test_invite(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char friends[160];
    json_t *a, *ev, *rooms;

    fx_cast_make(f, &c, true);
    chat(f, c.carol, c.sc, c.room, 2);
    /* bob (away) invites dave (away), his friend */
    snprintf(friends, sizeof(friends), "[\"%s\"]", c.dave);
    fx_befriend(f, c.bob, c.sb, friends);
    a = fx_ok(f, KCHAT_OP_ROOM_INVITE, c.bob, c.sb,
              "{\"userId\":\"%s\",\"roomId\":\"%s\",\"friendId\":[\"%s\",\"%s\",\"alice\"]}",
              c.bob, c.room, c.dave, c.bob);
    fx_assert_json(a, "{\"userId\":\"%s\",\"isSuccess\":true,\"errorCode\":\"\","
                      "\"errorMessage\":\"\",\"roomId\":\"%s\",\"participants\":"
                      "[\"alice\",\"%s\",\"%s\",\"%s\"]}", c.bob, c.room, c.bob, c.carol, c.dave);
    json_decref(a);
    for (int who = 0; who < 3; who++) {
        const char *u = who == 0 ? "alice" : who == 1 ? c.bob : c.carol;
        ev = fx_events(f, u);
        fx_assert_json(ev, "[{\"type\":\"members\",\"userId\":\"%s\",\"roomId\":\"%s\","
                           "\"participants\":[\"alice\",\"%s\",\"%s\",\"%s\"],\"added\":[\"%s\"],"
                           "\"removed\":[]}]", u, c.room, c.bob, c.carol, c.dave, c.dave);
        json_decref(ev);
    }
    ev = fx_events(f, c.dave);
    assert_int_equal(json_array_size(ev), 1);
    assert_string_equal(fx_str(json_array_get(ev, 0), "type"), "room");
    json_decref(ev);
    /* dave's room list: the room, his cursor at the invite's lastSeq */
    rooms = search_rooms(f, c.dave, c.sd);
    fx_assert_json(rooms, "[{\"roomId\":\"%s\",\"roomName\":\"\",\"participants\":"
                          "[\"alice\",\"%s\",\"%s\",\"%s\"],\"lastSeq\":2,\"readSeq\":2,"
                          "\"unread\":0}]", c.room, c.bob, c.carol, c.dave);
    json_decref(rooms);
    a = fx_ok(f, KCHAT_OP_HISTORY, c.dave, c.sd, "{\"userId\":\"%s\",\"roomId\":\"%s\"}", c.dave,
              c.room);
    assert_int_equal(json_array_size(json_object_get(a, "messages")), 2);
    json_decref(a);
    /* a message after: dave gets it */
    chat(f, c.carol, c.sc, c.room, 1);
    ev = fx_events(f, c.dave);
    assert_int_equal(json_array_size(ev), 1);
    json_decref(ev);
    /* nobody new: success, no event, nothing changes */
    {
        char *before = fx_state(f), *after;

        a = fx_ok(f, KCHAT_OP_ROOM_INVITE, "alice", c.sa,
                  "{\"userId\":\"alice\",\"roomId\":\"%s\",\"friendId\":[\"%s\"]}", c.room, c.bob);
        json_decref(a);
        assert_int_equal(fx_count(f, KCHAT_TOPIC_EVENTS), 0);
        after = fx_state(f);
        assert_string_equal(before, after);
        free(before);
        free(after);
    }
}

/* A leaver: answered, told with everyone who stays (`members`), gone from
 * the room's participants and their room list; NOT_A_MEMBER afterwards;
 * no more chat events. A room everyone left stays stored. */
static void test_leave(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    json_t *a, *ev, *rooms;

    fx_cast_make(f, &c, true);
    chat(f, c.carol, c.sc, c.room, 1);
    a = fx_ok(f, KCHAT_OP_ROOM_LEAVE, c.bob, c.sb, "{\"userId\":\"%s\",\"roomId\":\"%s\"}",
              c.bob, c.room);
    fx_assert_json(a, "{\"userId\":\"%s\",\"isSuccess\":true,\"errorCode\":\"\","
                      "\"errorMessage\":\"\",\"roomId\":\"%s\"}", c.bob, c.room);
    json_decref(a);
    for (int who = 0; who < 3; who++) {
        const char *u = who == 0 ? "alice" : who == 1 ? c.bob : c.carol;
        ev = fx_events(f, u);
        fx_assert_json(ev, "[{\"type\":\"members\",\"userId\":\"%s\",\"roomId\":\"%s\","
                           "\"participants\":[\"alice\",\"%s\"],\"added\":[],"
                           "\"removed\":[\"%s\"]}]", u, c.room, c.carol, c.bob);
        json_decref(ev);
    }
    rooms = search_rooms(f, c.bob, c.sb);
    fx_assert_json(rooms, "[]");
    json_decref(rooms);
    json_decref(fx_err(f, "NOT_A_MEMBER", KCHAT_OP_ADD_CHAT, c.bob, c.sb,
                       "{\"writerId\":\"%s\",\"roomId\":\"%s\",\"message\":\"x\"}", c.bob,
                       c.room));
    json_decref(fx_err(f, "NOT_A_MEMBER", KCHAT_OP_HISTORY, c.bob, c.sb,
                       "{\"userId\":\"%s\",\"roomId\":\"%s\"}", c.bob, c.room));
    json_decref(fx_err(f, "NOT_A_MEMBER", KCHAT_OP_ROOM_READ, c.bob, c.sb,
                       "{\"userId\":\"%s\",\"roomId\":\"%s\",\"readSeq\":1}", c.bob, c.room));
    json_decref(fx_err(f, "NOT_A_MEMBER", KCHAT_OP_ROOM_INVITE, c.bob, c.sb,
                       "{\"userId\":\"%s\",\"roomId\":\"%s\",\"friendId\":[\"alice\"]}", c.bob,
                       c.room));
    json_decref(fx_err(f, "NOT_A_MEMBER", KCHAT_OP_ROOM_LEAVE, c.bob, c.sb,
                       "{\"userId\":\"%s\",\"roomId\":\"%s\"}", c.bob, c.room));
    json_decref(fx_err(f, "ROOM_NOT_FOUND", KCHAT_OP_ROOM_LEAVE, c.bob, c.sb,
                       "{\"userId\":\"%s\",\"roomId\":\"rnope\"}", c.bob));
    /* the next message goes to those who stay */
    chat(f, c.carol, c.sc, c.room, 1);
    ev = fx_events(f, c.bob);
    fx_assert_json(ev, "[]");
    json_decref(ev);
    assert_int_equal(fx_count(f, KCHAT_TOPIC_EVENTS), 2);
    /* room-history's reads: those who stay */
    a = fx_ok(f, KCHAT_OP_HISTORY, "alice", c.sa, "{\"userId\":\"alice\",\"roomId\":\"%s\"}",
              c.room);
    fx_assert_json(json_object_get(a, "reads"),
                   "[{\"userId\":\"alice\",\"readSeq\":0},{\"userId\":\"%s\",\"readSeq\":2}]",
                   c.carol);
    json_decref(a);
    /* everyone leaves: the room stays stored (NOT_A_MEMBER, not ROOM_NOT_FOUND) */
    json_decref(fx_ok(f, KCHAT_OP_ROOM_LEAVE, "alice", c.sa,
                      "{\"userId\":\"alice\",\"roomId\":\"%s\"}", c.room));
    json_decref(fx_ok(f, KCHAT_OP_ROOM_LEAVE, c.carol, c.sc,
                      "{\"userId\":\"%s\",\"roomId\":\"%s\"}", c.carol, c.room));
    json_decref(fx_err(f, "NOT_A_MEMBER", KCHAT_OP_HISTORY, "alice", c.sa,
                       "{\"userId\":\"alice\",\"roomId\":\"%s\"}", c.room));
    /* a commands that does not decode is refused */
    assert_int_equal(fx_command(f, c.home, "{\"op\":\"leave\",\"userId\":\"alice\"}"),
                     KCHAT_EDECODE);
    assert_int_equal(fx_command(f, c.home, "{\"op\":\"read\",\"userId\":\"alice\","
                                           "\"roomId\":\"r1\",\"readSeq\":-3}"),
                     KCHAT_EDECODE);
    assert_int_equal(fx_command(f, c.home, "{\"op\":\"invite\",\"userId\":\"alice\","
                                           "\"roomId\":\"r1\",\"invitees\":[{\"id\":\"a b\","
                                           "\"st\":\"ok\"}]}"),
                     KCHAT_EDECODE);
}

/* A leaver invited again is a participant again, at the room's lastSeq. */
static void test_leave_and_back(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    json_t *rooms;

    fx_cast_make(f, &c, true);
    json_decref(fx_ok(f, KCHAT_OP_ROOM_LEAVE, c.bob, c.sb, "{\"userId\":\"%s\",\"roomId\":\"%s\"}",
                      c.bob, c.room));
    chat(f, c.carol, c.sc, c.room, 4);
    json_decref(fx_ok(f, KCHAT_OP_ROOM_INVITE, "alice", c.sa,
                      "{\"userId\":\"alice\",\"roomId\":\"%s\",\"friendId\":[\"%s\"]}", c.room,
                      c.bob));
    rooms = search_rooms(f, c.bob, c.sb);
    fx_assert_json(rooms, "[{\"roomId\":\"%s\",\"roomName\":\"\",\"participants\":"
                          "[\"alice\",\"%s\",\"%s\"],\"lastSeq\":4,\"readSeq\":4,"
                          "\"unread\":0}]", c.room, c.carol, c.bob);
    json_decref(rooms);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_read_errors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_invite_errors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_invite, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_leave, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_leave_and_back, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
