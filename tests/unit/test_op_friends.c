/* Unit tests of the friend operations (src/actors/friends.c) against
 * temporary stores, without a broker (tests/unit/ops/fixture.h):
 * user-add-friend and user-search-friend (PROTOCOL.md section 3, rows 5-6):
 * directed lists, all or nothing, repeats folded, the limits, sorted search
 * answers with the friends' profiles from the directory replica. */
#include "ops/fixture.c"

static void test_add_friend(void **state)
{
    struct fx *f = *state;
    const char *sa = fx_user(f, "alice");
    json_t *a, *list;
    char carol[65];

    fx_register(f, "bob");
    fx_id_on_shard(f, "carol", (fx_shard_of(f, "alice") + 1) % FX_PARTITIONS, carol);
    fx_register(f, carol);   /* on another shard: found through the replica */
    a = fx_ok(f, KCHAT_OP_ADD_FRIEND, "alice", sa,
              "{\"userId\":\"alice\",\"friendId\":[\"%s\",\"bob\",\"%s\"]}", carol, carol);
    /* repeats folded, in the order first given */
    fx_assert_json(a, "{\"userId\":\"alice\",\"isSuccess\":true,\"errorCode\":\"\","
                      "\"errorMessage\":\"\",\"friendId\":[\"%s\",\"bob\"]}", carol);
    json_decref(a);
    /* no event, no directory record; a follow command to each friend of
     * another shard (presence.c) */
    assert_int_equal(fx_count(f, NULL),
                     1 + (fx_shard_of(f, "bob") != fx_shard_of(f, "alice")) +
                         (fx_shard_of(f, carol) != fx_shard_of(f, "alice")));
    /* stored sorted, in alice's shard */
    list = fx_get(f, fx_shard_of(f, "alice"), KCHAT_TBL_FRIENDS, "alice", 5);
    fx_assert_json(list, "[\"bob\",\"%s\"]", carol);
    json_decref(list);
    a = fx_ok(f, KCHAT_OP_SEARCH_FRIEND, "alice", sa, "{\"userId\":\"alice\"}");
    fx_assert_json(a, "{\"userId\":\"alice\",\"isSuccess\":true,\"errorCode\":\"\","
                      "\"errorMessage\":\"\",\"friend\":[{\"userId\":\"bob\","
                      "\"userName\":\"Name bob\",\"userStatus\":\"\",\"online\":false,"
                      "\"lastSeen\":\"\"},{\"userId\":\"%s\",\"userName\":\"Name %s\","
                      "\"userStatus\":\"\",\"online\":false,\"lastSeen\":\"\"}]}",
                   carol, carol);
    json_decref(a);
    /* directed: bob follows nobody */
    a = fx_ok(f, KCHAT_OP_SEARCH_FRIEND, "bob", fx_login(f, "bob"), "{\"userId\":\"bob\"}");
    fx_assert_json(json_object_get(a, "friend"), "[]");
    json_decref(a);
}

/* Adding a friend again is not an error and does not repeat them. */
static void test_add_friend_again(void **state)
{
    struct fx *f = *state;
    const char *sa = fx_user(f, "alice");
    json_t *a, *list;

    fx_register(f, "bob");
    fx_register(f, "dave");
    fx_register(f, "carl");
    fx_befriend(f, "alice", sa, "[\"dave\",\"bob\"]");
    a = fx_ok(f, KCHAT_OP_ADD_FRIEND, "alice", sa,
              "{\"userId\":\"alice\",\"friendId\":[\"bob\",\"carl\"]}");
    fx_assert_json(json_object_get(a, "friendId"), "[\"bob\",\"carl\"]");
    json_decref(a);
    json_decref(fx_ok(f, KCHAT_OP_ADD_FRIEND, "alice", sa,
                      "{\"userId\":\"alice\",\"friendId\":[\"bob\"]}"));
    list = fx_get(f, fx_shard_of(f, "alice"), KCHAT_TBL_FRIENDS, "alice", 5);
    fx_assert_json(list, "[\"bob\",\"carl\",\"dave\"]");
    json_decref(list);
}

/* All or nothing: one unknown id adds none. */
static void test_add_friend_user_not_found(void **state)
{
    struct fx *f = *state;
    const char *sa = fx_user(f, "alice");
    json_t *a, *list;

    fx_register(f, "bob");
    fx_register(f, "carl");
    fx_befriend(f, "alice", sa, "[\"carl\"]");
    a = fx_err(f, "USER_NOT_FOUND", KCHAT_OP_ADD_FRIEND, "alice", sa,
               "{\"userId\":\"alice\",\"friendId\":[\"bob\",\"ghost\"]}");
    assert_non_null(strstr(fx_str(a, "errorMessage"), "ghost"));
    assert_null(json_object_get(a, "friendId"));
    json_decref(a);
    json_decref(fx_err(f, "USER_NOT_FOUND", KCHAT_OP_ADD_FRIEND, "alice", sa,
                       "{\"userId\":\"alice\",\"friendId\":[\"ghost\"]}"));
    list = fx_get(f, fx_shard_of(f, "alice"), KCHAT_TBL_FRIENDS, "alice", 5);
    fx_assert_json(list, "[\"carl\"]");
    json_decref(list);
    /* a user with no list yet gets none either */
    json_decref(fx_err(f, "USER_NOT_FOUND", KCHAT_OP_ADD_FRIEND, "bob", fx_login(f, "bob"),
                       "{\"userId\":\"bob\",\"friendId\":[\"alice\",\"ghost\"]}"));
    assert_null(fx_get(f, fx_shard_of(f, "bob"), KCHAT_TBL_FRIENDS, "bob", 3));
}

static void test_add_friend_bad_request(void **state)
{
    struct fx *f = *state;
    const char *sa = fx_user(f, "alice");
    char *id65 = fx_rep(f, 'b', 65), *many, *p;
    const char *bodies[] = {
        "{\"userId\":\"alice\",\"friendId\":[\"alice\"]}",        /* yourself */
        "{\"userId\":\"alice\",\"friendId\":[\"bob\",\"alice\"]}",
        "{\"userId\":\"alice\",\"friendId\":[]}",
        "{\"userId\":\"alice\"}",
        "{\"userId\":\"alice\",\"friendId\":\"bob\"}",
        "{\"userId\":\"alice\",\"friendId\":[1]}",
        "{\"userId\":\"alice\",\"friendId\":[\"bob\",null]}",
        "{\"userId\":\"alice\",\"friendId\":[\"b ob\"]}",
        "{\"userId\":\"alice\",\"friendId\":[\"\"]}",
        "{\"userId\":\"alice\",\"friendId\":null}",
        "{\"userId\":\"bob\",\"friendId\":[\"carl\"]}",            /* not the key */
    };

    fx_register(f, "bob");
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
        json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_ADD_FRIEND, "alice", sa, "%s", bodies[i]));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_ADD_FRIEND, "alice", sa,
                       "{\"userId\":\"alice\",\"friendId\":[\"%s\"]}", id65));
    /* 101 distinct ids */
    many = fx_keep(f, malloc(101 * 8 + 64));
    p = many;
    for (int i = 0; i < 101; i++)
        p += sprintf(p, "%s\"u%d\"", i ? "," : "", i);
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_ADD_FRIEND, "alice", sa,
                       "{\"userId\":\"alice\",\"friendId\":[%s]}", many));
    assert_null(fx_get(f, fx_shard_of(f, "alice"), KCHAT_TBL_FRIENDS, "alice", 5));
}

/* 100 distinct ids is the most; repeats do not count against it. */
static void test_add_friend_hundred(void **state)
{
    struct fx *f = *state;
    const char *sa = fx_user(f, "alice");
    char *ids = fx_keep(f, malloc(150 * 8 + 64)), *p = ids, id[16];
    json_t *a;

    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "u%03d", i);
        fx_register(f, id);
    }
    for (int i = 0; i < 150; i++)
        p += sprintf(p, "%s\"u%03d\"", i ? "," : "", (i * 7) % 100);
    a = fx_ok(f, KCHAT_OP_ADD_FRIEND, "alice", sa, "{\"userId\":\"alice\",\"friendId\":[%s]}", ids);
    assert_int_equal(json_array_size(json_object_get(a, "friendId")), 100);
    json_decref(a);
    a = fx_ok(f, KCHAT_OP_SEARCH_FRIEND, "alice", sa, "{\"userId\":\"alice\"}");
    assert_int_equal(json_array_size(json_object_get(a, "friend")), 100);
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "u%03d", i);
        assert_string_equal(fx_str(json_array_get(json_object_get(a, "friend"), (size_t)i),
                                   "userId"), id);
    }
    json_decref(a);
}

/* The search answer carries each friend's current name and status, from
 * the directory replica, whatever their shard; msgpack in, msgpack out. */
static void test_search_friend(void **state)
{
    struct fx *f = *state;
    const char *sa = fx_user(f, "alice");
    char ids[FX_PARTITIONS][65], list[FX_PARTITIONS * 70] = "[", *p = list + 1;
    const char *sess[FX_PARTITIONS];
    json_t *a, *friends;

    /* one friend in every shard, named so that sorting reverses shard order */
    for (uint32_t s = 0; s < FX_PARTITIONS; s++) {
        char prefix[16];
        snprintf(prefix, sizeof(prefix), "f%u_", FX_PARTITIONS - s);
        fx_id_on_shard(f, prefix, s, ids[s]);
        sess[s] = fx_user(f, ids[s]);
        p += sprintf(p, "%s\"%s\"", s ? "," : "", ids[s]);
    }
    strcat(list, "]");
    json_decref(fx_ok(f, KCHAT_OP_STATUS, ids[1], sess[1],
                      "{\"userId\":\"%s\",\"userStatus\":\"busy \xe2\x98\x83\"}", ids[1]));
    fx_befriend(f, "alice", sa, list);
    f->fmt = KCHAT_FMT_MSGPACK;
    a = fx_ok(f, KCHAT_OP_SEARCH_FRIEND, "alice", sa, "{\"userId\":\"alice\"}");
    friends = json_object_get(a, "friend");
    assert_int_equal(json_array_size(friends), FX_PARTITIONS);
    for (size_t i = 0; i < FX_PARTITIONS; i++) {
        uint32_t s = FX_PARTITIONS - 1 - (uint32_t)i;
        fx_assert_json(json_array_get(friends, i), "{\"userId\":\"%s\",\"userName\":\"Name %s\","
                       "\"userStatus\":\"%s\",\"online\":false,\"lastSeen\":\"\"}", ids[s],
                       ids[s], s == 1 ? "busy \xe2\x98\x83" : "");
    }
    assert_int_equal(json_object_size(a), 5);
    json_decref(a);
    assert_int_equal(fx_count(f, NULL), 1);
    /* a search changes nothing */
    {
        char *before = fx_state(f), *after;
        json_decref(fx_ok(f, KCHAT_OP_SEARCH_FRIEND, "alice", sa, "{\"userId\":\"alice\"}"));
        after = fx_state(f);
        assert_string_equal(before, after);
        free(before);
        free(after);
    }
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_SEARCH_FRIEND, "alice", sa,
                       "{\"userId\":\"bob\"}"));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_SEARCH_FRIEND, "alice", sa, "{}"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_add_friend, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_add_friend_again, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_add_friend_user_not_found, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_add_friend_bad_request, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_add_friend_hundred, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_search_friend, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
