/* Unit tests of the room operations (src/actors/rooms.c) against temporary
 * stores, without a broker (tests/unit/ops/fixture.h): user-add-room and
 * user-search-room (PROTOCOL.md section 3, rows 7-8): the answer, the `room`
 * event to every participant (section 6), memberships in other shards made
 * by internal commands, the checks (USER_NOT_FOUND, NOT_A_FRIEND, yourself)
 * and that a refused room leaves nothing behind. */
#include "ops/fixture.c"

static json_t *search_rooms(struct fx *f, const char *user, const char *session)
{
    json_t *a = fx_ok(f, KCHAT_OP_SEARCH_ROOM, user, session, "{\"userId\":\"%s\"}", user);
    json_t *rooms = json_incref(json_object_get(a, "rooms"));

    assert_true(json_is_array(rooms));
    assert_int_equal(json_object_size(a), 5);
    json_decref(a);
    return rooms;
}

static void test_add_room(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char ts[25], room[65], parts[200], key[200];
    json_t *a, *ev, *stored, *rooms;
    const char *users[3];
    char *h;

    fx_cast_make(f, &c, false);
    kchat_iso8601(f->now_ms, ts);
    a = fx_ok(f, KCHAT_OP_ADD_ROOM, "alice", c.sa,
              "{\"userId\":\"alice\",\"friendId\":[\"%s\",\"%s\"],"
              "\"roomName\":\"Team \xe2\x98\x83\"}",
              c.bob, c.carol);
    snprintf(room, sizeof(room), "%s", fx_str(a, "roomId"));
    fx_assert_json(a, "{\"userId\":\"alice\",\"isSuccess\":true,\"errorCode\":\"\","
                      "\"errorMessage\":\"\",\"roomId\":\"%s\",\"roomName\":\"Team \xe2\x98\x83\","
                      "\"friendId\":[\"%s\",\"%s\"],\"createdAt\":\"%s\"}",
                   room, c.bob, c.carol, ts);
    json_decref(a);
    /* a server-chosen id, in the creator's shard */
    assert_true(kchat_valid_id(room, strlen(room)));
    assert_int_equal(fx_shard_of(f, room), c.home);

    /* alice and carol joined here; bob by one command to his shard */
    assert_int_equal(fx_count(f, KCHAT_TOPIC_INTERNAL), 1);
    for (size_t i = 0; i < f->n_recs; i++) {
        const struct out_rec *r = &f->recs[i];
        if (r->kind != OUT_COMMAND)
            continue;
        assert_int_equal(r->shard, c.home);
        assert_int_equal(r->target, c.away);
        assert_int_equal(r->key_len, strlen(c.bob));
        assert_memory_equal(r->key, c.bob, r->key_len);
        h = fx_header(r, KCHAT_HDR_CMD_SEQ);
        assert_string_equal(h, "2");   /* 1: the follow of alice's user-add-friend */
        free(h);
    }
    assert_int_equal(fx_count(f, KCHAT_TOPIC_EVENTS), 3);
    /* answer, command, three events, the room's summary */
    assert_int_equal(fx_count(f, NULL), 6);
    snprintf(parts, sizeof(parts), "[\"alice\",\"%s\",\"%s\"]", c.bob, c.carol);
    /* the summary: from the room's shard, keyed by the room, in the replica */
    a = fx_records(f, KCHAT_TOPIC_ROOMS);
    fx_assert_json(a, "[{\"roomId\":\"%s\",\"roomName\":\"Team \xe2\x98\x83\","
                      "\"participants\":%s,\"lastSeq\":0,\"ver\":1,\"reads\":{}}]", room, parts);
    json_decref(a);
    for (size_t i = 0; i < f->n_recs; i++) {
        const struct out_rec *r = &f->recs[i];
        if (strcmp(r->topic, KCHAT_TOPIC_ROOMS))
            continue;
        assert_int_equal(r->shard, c.home);
        assert_int_equal(r->kind, OUT_REPLY);
        assert_int_equal(r->partition, -1);   /* murmur2 of the key: the room's shard */
        assert_int_equal(r->key_len, strlen(room));
        assert_memory_equal(r->key, room, r->key_len);
    }
    users[0] = "alice";
    users[1] = c.bob;
    users[2] = c.carol;
    for (size_t i = 0; i < 3; i++) {
        ev = fx_events(f, users[i]);
        fx_assert_json(ev, "[{\"type\":\"room\",\"userId\":\"%s\",\"roomId\":\"%s\","
                           "\"roomName\":\"Team \xe2\x98\x83\",\"participants\":%s}]",
                       users[i], room, parts);
        json_decref(ev);
    }
    /* the room in its shard; each membership in its member's shard */
    stored = fx_get(f, c.home, KCHAT_TBL_ROOMS, room, strlen(room));
    fx_assert_json(stored, "{\"roomId\":\"%s\",\"roomName\":\"Team \xe2\x98\x83\","
                           "\"participants\":%s,\"createdAt\":\"%s\",\"lastSeq\":0,"
                           "\"creator\":\"alice\",\"ver\":1,\"reads\":{}}", room, parts, ts);
    json_decref(stored);
    for (size_t i = 0; i < 3; i++) {
        size_t ul = strlen(users[i]);
        memcpy(key, users[i], ul + 1);
        memcpy(key + ul + 1, room, strlen(room));
        stored = fx_get(f, fx_shard_of(f, users[i]), KCHAT_TBL_MEMBERS, key, ul + 1 + strlen(room));
        assert_non_null(stored);
        assert_string_equal(fx_str(stored, "roomId"), room);
        json_decref(stored);
    }
    /* every participant finds it */
    for (size_t i = 0; i < 3; i++) {
        const char *s = i == 0 ? c.sa : i == 1 ? c.sb : c.sc;
        rooms = search_rooms(f, users[i], s);
        fx_assert_json(rooms, "[{\"roomId\":\"%s\",\"roomName\":\"Team \xe2\x98\x83\","
                              "\"participants\":%s,\"lastSeq\":0,\"readSeq\":0,"
                              "\"unread\":0}]", room, parts);
        json_decref(rooms);
    }
    rooms = search_rooms(f, c.dave, c.sd);
    fx_assert_json(rooms, "[]");
    json_decref(rooms);
}

/* roomName is optional ("" when absent or null); 0..128 bytes of UTF-8. */
static void test_room_name(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char *n128 = fx_rep(f, 'n', 128), *n129 = fx_rep(f, 'n', 129);
    json_t *a, *ev;

    fx_cast_make(f, &c, false);
    a = fx_ok(f, KCHAT_OP_ADD_ROOM, "alice", c.sa, "{\"userId\":\"alice\",\"friendId\":[\"%s\"]}",
              c.carol);
    assert_string_equal(fx_str(a, "roomName"), "");
    json_decref(a);
    ev = fx_events(f, c.carol);
    assert_string_equal(fx_str(json_array_get(ev, 0), "roomName"), "");
    json_decref(ev);
    a = fx_ok(f, KCHAT_OP_ADD_ROOM, "alice", c.sa,
              "{\"userId\":\"alice\",\"friendId\":[\"%s\"],\"roomName\":null}", c.carol);
    assert_string_equal(fx_str(a, "roomName"), "");
    json_decref(a);
    a = fx_ok(f, KCHAT_OP_ADD_ROOM, "alice", c.sa,
              "{\"userId\":\"alice\",\"friendId\":[\"%s\"],\"roomName\":\"%s\"}", c.carol, n128);
    assert_string_equal(fx_str(a, "roomName"), n128);
    json_decref(a);
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_ADD_ROOM, "alice", c.sa,
                       "{\"userId\":\"alice\",\"friendId\":[\"%s\"],\"roomName\":\"%s\"}",
                       c.carol, n129));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_ADD_ROOM, "alice", c.sa,
                       "{\"userId\":\"alice\",\"friendId\":[\"%s\"],\"roomName\":5}", c.carol));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_ADD_ROOM, "alice", c.sa,
                       "{\"userId\":\"alice\",\"friendId\":[\"%s\"],\"roomName\":\"\xed\xa0\x80\"}",
                       c.carol));   /* a surrogate: not UTF-8 */
}

/* No room when any id is unknown, not followed, or the creator; checked in
 * that order: yourself, then every id known, then every id followed. */
static void test_add_room_refused(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    json_t *a;
    char *many, *p;

    fx_cast_make(f, &c, false);
    assert_int_equal(fx_rows(f, KCHAT_TBL_ROOMS), 0);
    a = fx_err(f, "USER_NOT_FOUND", KCHAT_OP_ADD_ROOM, "alice", c.sa,
               "{\"userId\":\"alice\",\"friendId\":[\"%s\",\"ghost\"]}", c.bob);
    assert_non_null(strstr(fx_str(a, "errorMessage"), "ghost"));
    assert_null(json_object_get(a, "roomId"));
    json_decref(a);
    assert_int_equal(fx_count(f, NULL), 1);   /* no event, no command */
    a = fx_err(f, "NOT_A_FRIEND", KCHAT_OP_ADD_ROOM, "alice", c.sa,
               "{\"userId\":\"alice\",\"friendId\":[\"%s\",\"%s\"]}", c.bob, c.dave);
    assert_non_null(strstr(fx_str(a, "errorMessage"), c.dave));
    json_decref(a);
    assert_int_equal(fx_count(f, NULL), 1);
    /* an unknown id is found before a registered stranger, wherever it is */
    json_decref(fx_err(f, "USER_NOT_FOUND", KCHAT_OP_ADD_ROOM, "alice", c.sa,
                       "{\"userId\":\"alice\",\"friendId\":[\"%s\",\"ghost\"]}", c.dave));
    /* yourself before anything */
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_ADD_ROOM, "alice", c.sa,
                       "{\"userId\":\"alice\",\"friendId\":[\"ghost\",\"alice\"]}"));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_ADD_ROOM, "alice", c.sa,
                       "{\"userId\":\"alice\",\"friendId\":[\"alice\"]}"));
    /* following is directed: alice follows bob, bob does not follow alice */
    json_decref(fx_err(f, "NOT_A_FRIEND", KCHAT_OP_ADD_ROOM, c.bob, c.sb,
                       "{\"userId\":\"%s\",\"friendId\":[\"alice\"]}", c.bob));
    /* the limits of friendId */
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_ADD_ROOM, "alice", c.sa,
                       "{\"userId\":\"alice\",\"friendId\":[]}"));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_ADD_ROOM, "alice", c.sa,
                       "{\"userId\":\"alice\"}"));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_ADD_ROOM, "alice", c.sa,
                       "{\"userId\":\"alice\",\"friendId\":[\"no way\"]}"));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_ADD_ROOM, "alice", c.sa,
                       "{\"userId\":\"%s\",\"friendId\":[\"alice\"]}", c.carol));
    many = fx_keep(f, malloc(101 * 8 + 64));
    p = many;
    for (int i = 0; i < 101; i++)
        p += sprintf(p, "%s\"u%d\"", i ? "," : "", i);
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_ADD_ROOM, "alice", c.sa,
                       "{\"userId\":\"alice\",\"friendId\":[%s]}", many));
    /* none of that made a room or a membership anywhere */
    assert_int_equal(fx_rows(f, KCHAT_TBL_ROOMS), 0);
    assert_int_equal(fx_rows(f, KCHAT_TBL_MEMBERS), 0);
}

/* An id repeated among friendId makes one participant. */
static void test_add_room_repeats(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    json_t *a, *rooms;

    fx_cast_make(f, &c, false);
    a = fx_ok(f, KCHAT_OP_ADD_ROOM, "alice", c.sa,
              "{\"userId\":\"alice\",\"friendId\":[\"%s\",\"%s\",\"%s\"]}", c.bob, c.bob, c.bob);
    fx_assert_json(json_object_get(a, "friendId"), "[\"%s\"]", c.bob);
    json_decref(a);
    assert_int_equal(fx_count(f, KCHAT_TOPIC_EVENTS), 2);
    rooms = search_rooms(f, c.bob, c.sb);
    fx_assert_json(json_object_get(json_array_get(rooms, 0), "participants"),
                   "[\"alice\",\"%s\"]", c.bob);
    json_decref(rooms);
}

/* A participant in another shard is a member once the command is applied
 * there (PROTOCOL.md: "for every other participant once their room event
 * was sent"); commands to one shard are numbered 1, 2, 3 ... */
static void test_add_room_member_command(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char room[65], room2[65], friends[160];
    json_t *rooms, *ev;
    char *h;

    fx_cast_make(f, &c, false);
    snprintf(friends, sizeof(friends), "[\"%s\"]", c.bob);
    f->hold_commands = true;
    fx_room(f, "alice", c.sa, friends, room);
    assert_int_equal(f->n_held, 1);
    ev = fx_events(f, c.bob);
    assert_int_equal(json_array_size(ev), 0);
    json_decref(ev);
    /* the creator has it at once, bob not yet */
    rooms = search_rooms(f, "alice", c.sa);
    assert_int_equal(json_array_size(rooms), 1);
    json_decref(rooms);
    rooms = search_rooms(f, c.bob, c.sb);
    assert_int_equal(json_array_size(rooms), 0);
    json_decref(rooms);
    fx_deliver(f);
    ev = fx_events(f, c.bob);
    assert_int_equal(json_array_size(ev), 1);
    assert_string_equal(fx_str(json_array_get(ev, 0), "roomId"), room);
    json_decref(ev);
    rooms = search_rooms(f, c.bob, c.sb);
    assert_int_equal(json_array_size(rooms), 1);
    json_decref(rooms);

    /* the next command from this shard to that one is number 3 (1: a follow) */
    fx_room(f, "alice", c.sa, friends, room2);
    for (size_t i = 0; i < f->n_recs; i++)
        if (f->recs[i].kind == OUT_COMMAND) {
            h = fx_header(&f->recs[i], KCHAT_HDR_CMD_SEQ);
            assert_string_equal(h, "3");
            free(h);
        }
    f->hold_commands = false;
    fx_deliver(f);
    rooms = search_rooms(f, c.bob, c.sb);
    assert_int_equal(json_array_size(rooms), 2);
    json_decref(rooms);
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Many rooms: distinct ids, all in the creator's shard, listed by roomId. */
static void test_search_room_sorted(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char ids[20][65], friends[160];
    json_t *rooms;

    fx_cast_make(f, &c, false);
    snprintf(friends, sizeof(friends), "[\"%s\"]", c.bob);
    for (int i = 0; i < 20; i++) {
        fx_room(f, "alice", c.sa, friends, ids[i]);
        assert_int_equal(fx_shard_of(f, ids[i]), c.home);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(ids[i], ids[j]);
    }
    qsort(ids, 20, sizeof(ids[0]), cmp_id);
    for (int who = 0; who < 2; who++) {
        rooms = search_rooms(f, who ? c.bob : "alice", who ? c.sb : c.sa);
        assert_int_equal(json_array_size(rooms), 20);
        for (size_t i = 0; i < 20; i++)
            assert_string_equal(fx_str(json_array_get(rooms, i), "roomId"), ids[i]);
        json_decref(rooms);
    }
}

/* lastSeq comes from the room's shard, also for a member in another one;
 * msgpack in, msgpack out; a search changes nothing. */
static void test_search_room_last_seq(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char room[65], friends[160];
    json_t *rooms;
    char *before, *after;

    fx_cast_make(f, &c, false);
    snprintf(friends, sizeof(friends), "[\"%s\",\"%s\"]", c.bob, c.carol);
    fx_room(f, "alice", c.sa, friends, room);
    for (int i = 0; i < 3; i++)
        json_decref(fx_ok(f, KCHAT_OP_ADD_CHAT, c.bob, c.sb,
                          "{\"writerId\":\"%s\",\"roomId\":\"%s\",\"message\":\"m%d\"}",
                          c.bob, room, i));
    f->fmt = KCHAT_FMT_MSGPACK;
    for (int who = 0; who < 3; who++) {
        const char *u = who == 0 ? "alice" : who == 1 ? c.bob : c.carol;
        const char *s = who == 0 ? c.sa : who == 1 ? c.sb : c.sc;
        rooms = search_rooms(f, u, s);
        fx_assert_json(rooms, "[{\"roomId\":\"%s\",\"roomName\":\"\",\"participants\":"
                              "[\"alice\",\"%s\",\"%s\"],\"lastSeq\":3,\"readSeq\":%d,"
                              "\"unread\":%d}]", room, c.bob, c.carol, who == 1 ? 3 : 0,
                       who == 1 ? 0 : 3);
        json_decref(rooms);
    }
    before = fx_state(f);
    json_decref(search_rooms(f, c.bob, c.sb));
    after = fx_state(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
    assert_int_equal(fx_count(f, NULL), 1);
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_SEARCH_ROOM, "alice", c.sa,
                       "{\"userId\":\"%s\"}", c.bob));
}

/* A room with a participant in every shard: one command per participant
 * in another shard, one event each. */
static void test_room_every_shard(void **state)
{
    struct fx *f = *state;
    const char *sa = fx_user(f, "alice");
    char ids[FX_PARTITIONS][65], list[FX_PARTITIONS * 70] = "[", *p = list + 1, room[65];
    size_t commands = 0;
    json_t *ev;

    for (uint32_t s = 0; s < FX_PARTITIONS; s++) {
        fx_id_on_shard(f, "m", s, ids[s]);
        fx_register(f, ids[s]);
        p += sprintf(p, "%s\"%s\"", s ? "," : "", ids[s]);
        commands += s != fx_shard_of(f, "alice");
    }
    strcat(list, "]");
    fx_befriend(f, "alice", sa, list);
    fx_room(f, "alice", sa, list, room);
    assert_int_equal(fx_count(f, KCHAT_TOPIC_INTERNAL), commands);
    assert_int_equal(fx_count(f, KCHAT_TOPIC_EVENTS), FX_PARTITIONS + 1);
    for (uint32_t s = 0; s < FX_PARTITIONS; s++) {
        ev = fx_events(f, ids[s]);
        assert_int_equal(json_array_size(ev), 1);
        assert_string_equal(fx_str(json_array_get(ev, 0), "type"), "room");
        json_decref(ev);
    }
}

/* A member command as the target shard gets it: applied on its own it
 * adds the membership and sends the `room` event; one that does not decode
 * is refused (the backend dead-letters it) and changes nothing. */
static void test_member_command(void **state)
{
    struct fx *f = *state;
    uint32_t sh = fx_shard_of(f, "zed");
    const char *bad[] = {
        "{\"op\":\"member\",\"room\":{\"roomId\":\"r1\"}}",
        "{\"op\":\"member\",\"userId\":\"zed\"}",
        "{\"op\":\"member\",\"userId\":\"zed\",\"room\":[]}",
        "{\"op\":\"member\",\"userId\":\"zed\",\"room\":{\"roomId\":7}}",
        "{\"op\":\"members\",\"userId\":\"zed\",\"room\":{\"roomId\":\"r1\"}}",
        "{\"userId\":\"zed\",\"room\":{\"roomId\":\"r1\"}}",
    };
    json_t *ev, *rooms;
    char *before = fx_state(f), *after;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(fx_command(f, sh, bad[i]), KCHAT_EDECODE);
    after = fx_state(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
    assert_int_equal(fx_command(f, sh, "{\"op\":\"member\",\"userId\":\"zed\",\"room\":"
                                       "{\"roomId\":\"r1\",\"roomName\":\"n\",\"participants\":"
                                       "[\"amy\",\"zed\"]},\"fmt\":0}"), KCHAT_OK);
    assert_int_equal(fx_count(f, NULL), 1);
    ev = fx_events(f, "zed");
    fx_assert_json(ev, "[{\"type\":\"room\",\"userId\":\"zed\",\"roomId\":\"r1\","
                       "\"roomName\":\"n\",\"participants\":[\"amy\",\"zed\"]}]");
    json_decref(ev);
    rooms = search_rooms(f, "zed", fx_user(f, "zed"));
    fx_assert_json(rooms, "[{\"roomId\":\"r1\",\"roomName\":\"n\",\"participants\":"
                          "[\"amy\",\"zed\"],\"lastSeq\":0,\"readSeq\":0,\"unread\":0}]");
    /* no room r1 anywhere: the membership's copy */
    json_decref(rooms);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_add_room, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_room_name, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_add_room_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_add_room_repeats, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_add_room_member_command, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_search_room_sorted, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_search_room_last_seq, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_room_every_shard, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_member_command, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
