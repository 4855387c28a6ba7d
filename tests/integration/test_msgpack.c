/*
 * kchat-test: kafka (also run on real Apache Kafka by `make check-kafka`)
 * The core flows of PROTOCOL.md §3 in msgpack (`content-type:
 * application/msgpack`): every answer must be one msgpack map with the same
 * keys as the JSON form, and carry a msgpack content-type. kclient's
 * kc_call_req() enforces the envelope and decodes strictly (str keys and
 * values, real booleans, integers), so a JSON answer or a stringly-typed
 * field fails here.
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

#define PARTITIONS 4

static kc_proc *g_srv;
static kc_client *g_c;

static int group_setup(void **state)
{
    (void)state;
    setvbuf(stdout, NULL, _IOLBF, 0);
    char *data = kc_tmppath("mp-data");
    kc_rm_rf(data);
    g_srv = kc_serve_start("mp-serve", data, NULL, PARTITIONS, NULL);
    free(data);
    if (g_srv == NULL)
        return -1;
    g_c = kc_client_new(kc_proc_bootstrap(g_srv), KC_FROM_BEGINNING);
    if (g_c == NULL)
        return -1;
    kc_client_set_fmt(g_c, KC_FMT_MSGPACK);
    return 0;
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

/* Send msgpack bytes as they are and return the decoded msgpack answer. */
static json_t *call_mp_raw(const char *op, const char *key, const char *session,
                           const void *raw, size_t len, const kc_record **rec)
{
    kc_req req = { .op = op, .key = key, .session = session, .fmt = KC_FMT_MSGPACK, .raw = raw,
                   .raw_len = len };
    return kc_call_req(g_c, &req, rec, NULL);
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t l = strlen(s);
    msgpack_pack_str(pk, l);
    msgpack_pack_str_body(pk, s, l);
}

static bool is_msgpack_map_byte(unsigned char b)
{
    return (b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf;
}

static void test_mp_register_login(void **state)
{
    (void)state;
    kc_user u;
    kc_user_init(&u, "mpreg");
    json_t *body = json_pack("{ss ss ss ss}", "userId", u.id, "userPw", u.pw, "email", u.email,
                             "userName", u.name);
    const kc_record *rec = NULL;
    kc_req req = { .op = "user-add", .key = u.id, .fmt = KC_FMT_MSGPACK, .body = body };
    json_t *r = kc_call_req(g_c, &req, &rec, NULL);
    json_decref(body);
    assert_true(kc_check_ok(r, u.id));
    assert_non_null(rec);
    assert_string_equal(kc_record_header(rec, KC_HDR_CTYPE, NULL), KC_CT_MSGPACK);
    assert_true(rec->value_len > 0 && is_msgpack_map_byte((unsigned char)rec->value[0]));
    json_t *user = json_object_get(r, "user");
    assert_true(kc_check_user_obj(user, u.id));
    KC_ASSERT_STR(user, "email", u.email);
    KC_ASSERT_STR(user, "userName", u.name);
    KC_ASSERT_STR(user, "loginDate", "");
    KC_ASSERT_STR(user, "logoutDate", "");
    assert_false(kc_memmem(rec->value, rec->value_len, u.pw, strlen(u.pw)));
    json_decref(r);

    r = kc_call(g_c, "login", u.id, NULL, json_pack("{ss ss}", "userId", u.id, "userPw", u.pw));
    assert_true(kc_check_ok(r, u.id));
    const char *sid = kc_str(r, "sessionId");
    assert_non_null(sid);
    assert_true(strlen(sid) >= 22);
    assert_true(kc_check_iso(kc_str(json_object_get(r, "user"), "loginDate"), "loginDate"));
    snprintf(u.session, sizeof(u.session), "%s", sid);
    json_decref(r);

    /* logout (msgpack map) revokes that session */
    KC_EXPECT_OK(kc_call(g_c, "logout", u.id, u.session, json_pack("{ss}", "userId", u.id)), u.id);
    KC_EXPECT_ERR(kc_call(g_c, "user-search-friend", u.id, u.session,
                          json_pack("{ss}", "userId", u.id)), u.id, "UNAUTHENTICATED");
    r = kc_call(g_c, "login", u.id, NULL, json_pack("{ss ss}", "userId", u.id, "userPw", u.pw));
    assert_true(kc_check_ok(r, u.id));
    assert_true(kc_check_iso(kc_str(json_object_get(r, "user"), "logoutDate"), "logoutDate"));
    json_decref(r);
}

static void test_mp_errors(void **state)
{
    (void)state;
    kc_user u, ghost;
    assert_true(kc_user_new(g_c, &u, "mperr"));
    kc_user_init(&ghost, "mpghost");
    char wrong[40];
    kc_new_password(wrong, sizeof(wrong));

    KC_EXPECT_ERR(kc_call(g_c, "user-add", u.id, NULL,
                          json_pack("{ss ss ss ss}", "userId", u.id, "userPw", wrong, "email",
                                    "a@b", "userName", "N")),
                  u.id, "ALREADY_EXISTS");
    KC_EXPECT_ERR(kc_call(g_c, "login", u.id, NULL,
                          json_pack("{ss ss}", "userId", u.id, "userPw", wrong)),
                  u.id, "BAD_CREDENTIALS");
    KC_EXPECT_ERR(kc_call(g_c, "login", ghost.id, NULL,
                          json_pack("{ss ss}", "userId", ghost.id, "userPw", ghost.pw)),
                  ghost.id, "BAD_CREDENTIALS");
    KC_EXPECT_ERR(kc_call(g_c, "login", u.id, NULL, json_pack("{ss}", "userId", u.id)), u.id,
                  "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-status-change", u.id, NULL,
                          json_pack("{ss ss}", "userId", u.id, "userStatus", "x")),
                  u.id, "UNAUTHENTICATED");
    KC_EXPECT_ERR(kc_call(g_c, "user-status-change", u.id, u.session,
                          json_pack("{ss ss}", "userId", ghost.id, "userStatus", "x")),
                  NULL, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-status-change", u.id, u.session,
                          json_pack("{ss sb}", "userId", u.id, "userStatus", 1)),
                  u.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-friend", u.id, u.session,
                          json_pack("{ss s[s]}", "userId", u.id, "friendId", ghost.id)),
                  u.id, "USER_NOT_FOUND");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-friend", u.id, u.session,
                          json_pack("{ss s[s]}", "userId", u.id, "friendId", u.id)),
                  u.id, "BAD_REQUEST");
    char ghost_room[80];
    kc_uid(ghost_room, sizeof(ghost_room), "mpnoroom");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-chat", u.id, u.session,
                          json_pack("{ss ss ss}", "roomId", ghost_room, "writerId", u.id,
                                    "message", "x")),
                  u.id, "ROOM_NOT_FOUND");
    KC_EXPECT_ERR(kc_call(g_c, "room-history", u.id, u.session,
                          json_pack("{ss ss}", "userId", u.id, "roomId", ghost_room)),
                  u.id, "ROOM_NOT_FOUND");

    /* invalid UTF-8 inside a msgpack str */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pack_cstr(&pk, "userId");
    pack_cstr(&pk, u.id);
    pack_cstr(&pk, "userStatus");
    msgpack_pack_str(&pk, 3);
    msgpack_pack_str_body(&pk, "a\xff" "b", 3);
    KC_EXPECT_ERR(call_mp_raw("user-status-change", u.id, u.session, sb.data, sb.size, NULL), u.id,
                  "BAD_REQUEST");
    msgpack_sbuffer_destroy(&sb);

    /* TOO_LARGE: a 65537-byte msgpack value, answered in msgpack */
    size_t total = 65537;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pack_cstr(&pk, "userId");
    pack_cstr(&pk, u.id);
    pack_cstr(&pk, "userStatus");
    pack_cstr(&pk, "big");
    pack_cstr(&pk, "pad");
    size_t pad = total - sb.size - 3; /* < 65536 bytes: a str16, 3-byte header */
    char *p = malloc(pad);
    assert_non_null(p);
    memset(p, 'p', pad);
    msgpack_pack_str(&pk, (uint32_t)pad);
    msgpack_pack_str_body(&pk, p, pad);
    free(p);
    assert_int_equal(sb.size, total);
    KC_EXPECT_ERR(call_mp_raw("user-status-change", u.id, u.session, sb.data, sb.size, NULL), u.id,
                  "TOO_LARGE");
    msgpack_sbuffer_destroy(&sb);
}

static void test_mp_full_flow(void **state)
{
    (void)state;
    kc_user a, b, c;
    assert_true(kc_user_new(g_c, &a, "mpa"));
    assert_true(kc_user_new(g_c, &b, "mpb"));
    assert_true(kc_user_new(g_c, &c, "mpc"));

    json_t *r = kc_call(g_c, "user-status-change", b.id, b.session,
                        json_pack("{ss ss}", "userId", b.id, "userStatus", "away \xe2\x98\x95"));
    assert_true(kc_check_ok(r, b.id));
    KC_ASSERT_STR(r, "userStatus", "away \xe2\x98\x95");
    json_decref(r);
    r = kc_call(g_c, "user-status-change", c.id, c.session,
                json_pack("{ss ss}", "userId", c.id, "status", "alias"));
    assert_true(kc_check_ok(r, c.id));
    KC_ASSERT_STR(r, "userStatus", "alias");
    json_decref(r);

    r = kc_call(g_c, "user-add-friend", a.id, a.session,
                json_pack("{ss s[ss]}", "userId", a.id, "friendId", c.id, b.id));
    assert_true(kc_check_ok(r, a.id));
    const char *bc[] = { b.id, c.id, NULL };
    assert_true(kc_check_id_set(json_object_get(r, "friendId"), bc, "friendId"));
    json_decref(r);

    r = kc_call(g_c, "user-search-friend", a.id, a.session, json_pack("{ss}", "userId", a.id));
    assert_true(kc_check_ok(r, a.id));
    json_t *fr = json_object_get(r, "friend");
    assert_int_equal(json_array_size(fr), 2);
    const char *first = strcmp(b.id, c.id) < 0 ? b.id : c.id;
    const char *second = strcmp(b.id, c.id) < 0 ? c.id : b.id;
    KC_ASSERT_STR(json_array_get(fr, 0), "userId", first);
    KC_ASSERT_STR(json_array_get(fr, 1), "userId", second);
    for (size_t i = 0; i < 2; i++) {
        json_t *f = json_array_get(fr, i);
        const kc_user *who = strcmp(kc_str(f, "userId"), b.id) == 0 ? &b : &c;
        KC_ASSERT_STR(f, "userName", who->name);
        assert_non_null(kc_str(f, "userStatus"));
    }
    json_decref(r);

    r = kc_call(g_c, "user-add-room", a.id, a.session,
                json_pack("{ss s[ss] ss}", "userId", a.id, "friendId", b.id, c.id, "roomName",
                          "mp room"));
    assert_true(kc_check_ok(r, a.id));
    char room[65];
    assert_true(kc_is_valid_id(kc_str(r, "roomId")));
    snprintf(room, sizeof(room), "%s", kc_str(r, "roomId"));
    KC_ASSERT_STR(r, "roomName", "mp room");
    assert_true(kc_check_id_set(json_object_get(r, "friendId"), bc, "friendId"));
    assert_true(kc_check_iso(kc_str(r, "createdAt"), "createdAt"));
    json_decref(r);

    const char *abc[] = { a.id, b.id, c.id, NULL };
    const kc_user *members[] = { &a, &b, &c };
    for (int m = 0; m < 3; m++) {
        json_t *ev = kc_wait_events(g_c, members[m]->id, "room", room, 1, 10000);
        assert_int_equal(json_array_size(ev), 1);
        json_t *e = json_array_get(ev, 0);
        KC_ASSERT_STR(e, "userId", members[m]->id);
        KC_ASSERT_STR(e, "roomName", "mp room");
        assert_true(kc_check_id_set(json_object_get(e, "participants"), abc, "participants"));
        json_decref(ev);
    }

    r = kc_call(g_c, "user-search-room", b.id, b.session, json_pack("{ss}", "userId", b.id));
    assert_true(kc_check_ok(r, b.id));
    json_t *rooms = json_object_get(r, "rooms");
    assert_int_equal(json_array_size(rooms), 1);
    KC_ASSERT_STR(json_array_get(rooms, 0), "roomId", room);
    KC_ASSERT_STR(json_array_get(rooms, 0), "roomName", "mp room");
    KC_ASSERT_INT(json_array_get(rooms, 0), "lastSeq", 0);
    assert_true(kc_check_id_set(json_object_get(json_array_get(rooms, 0), "participants"), abc,
                                "participants"));
    json_decref(r);

    /* chat: seq 1, 2, 3; an idempotent resend; events in order */
    const kc_user *writers[] = { &a, &b, &a };
    const char *texts[] = { "one", "two \xf0\x9f\x8e\x89", "three" };
    const char *cmids[] = { "mp-1", "mp-2", "" };
    for (int i = 0; i < 3; i++) {
        r = kc_call(g_c, "user-add-chat", writers[i]->id, writers[i]->session,
                    json_pack("{ss ss ss ss}", "roomId", room, "writerId", writers[i]->id,
                              "message", texts[i], "clientMsgId", cmids[i]));
        assert_true(kc_check_ok(r, writers[i]->id));
        KC_ASSERT_STR(r, "roomId", room);
        KC_ASSERT_STR(r, "writerId", writers[i]->id);
        KC_ASSERT_INT(r, "seq", i + 1);
        KC_ASSERT_STR(r, "clientMsgId", cmids[i]);
        assert_true(kc_check_iso(kc_str(r, "createdAt"), "createdAt"));
        json_decref(r);
    }
    r = kc_call(g_c, "user-add-chat", b.id, b.session,
                json_pack("{ss ss ss ss}", "roomId", room, "writerId", b.id, "message", "two again",
                          "clientMsgId", "mp-2"));
    assert_true(kc_check_ok(r, b.id));
    KC_ASSERT_INT(r, "seq", 2);
    json_decref(r);

    for (int m = 0; m < 3; m++) {
        json_t *ev = kc_wait_events(g_c, members[m]->id, "chat", room, 3, 10000);
        assert_int_equal(json_array_size(ev), 3);
        for (int i = 0; i < 3; i++) {
            json_t *e = json_array_get(ev, (size_t)i);
            KC_ASSERT_STR(e, "type", "chat");
            KC_ASSERT_STR(e, "userId", members[m]->id);
            KC_ASSERT_STR(e, "roomId", room);
            KC_ASSERT_INT(e, "seq", i + 1);
            KC_ASSERT_STR(e, "writerId", writers[i]->id);
            KC_ASSERT_STR(e, "message", texts[i]);
            KC_ASSERT_STR(e, "clientMsgId", cmids[i]);
            assert_true(kc_check_iso(kc_str(e, "createdAt"), "event createdAt"));
        }
        json_decref(ev);
    }

    /* history; limit packed as a 64-bit int must be accepted like any int */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    pack_cstr(&pk, "userId");
    pack_cstr(&pk, c.id);
    pack_cstr(&pk, "roomId");
    pack_cstr(&pk, room);
    pack_cstr(&pk, "limit");
    unsigned char i64[9] = { 0xd3, 0, 0, 0, 0, 0, 0, 0, 2 };
    msgpack_sbuffer_write(&sb, (const char *)i64, sizeof(i64));
    pack_cstr(&pk, "beforeSeq");
    unsigned char u16[3] = { 0xcd, 0, 4 };
    msgpack_sbuffer_write(&sb, (const char *)u16, sizeof(u16));
    r = call_mp_raw("room-history", c.id, c.session, sb.data, sb.size, NULL);
    msgpack_sbuffer_destroy(&sb);
    assert_true(kc_check_ok(r, c.id));
    KC_ASSERT_STR(r, "roomId", room);
    json_t *msgs = json_object_get(r, "messages");
    assert_int_equal(json_array_size(msgs), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *m = json_array_get(msgs, i);
        KC_ASSERT_INT(m, "seq", (json_int_t)i + 2);
        KC_ASSERT_STR(m, "writerId", writers[i + 1]->id);
        KC_ASSERT_STR(m, "message", texts[i + 1]);
        KC_ASSERT_STR(m, "clientMsgId", cmids[i + 1]);
        assert_true(kc_check_iso(kc_str(m, "createdAt"), "createdAt"));
    }
    json_decref(r);

    r = kc_call(g_c, "room-history", a.id, a.session,
                json_pack("{ss ss}", "userId", a.id, "roomId", room));
    assert_true(kc_check_ok(r, a.id));
    assert_int_equal(json_array_size(json_object_get(r, "messages")), 3);
    json_decref(r);
    r = kc_call(g_c, "user-search-room", a.id, a.session, json_pack("{ss}", "userId", a.id));
    assert_true(kc_check_ok(r, a.id));
    KC_ASSERT_INT(json_array_get(json_object_get(r, "rooms"), 0), "lastSeq", 3);
    json_decref(r);

    /* NOT_A_MEMBER */
    kc_user d;
    assert_true(kc_user_new(g_c, &d, "mpd"));
    KC_EXPECT_ERR(kc_call(g_c, "user-add-chat", d.id, d.session,
                          json_pack("{ss ss ss}", "roomId", room, "writerId", d.id, "message",
                                    "x")),
                  d.id, "NOT_A_MEMBER");
    KC_EXPECT_ERR(kc_call(g_c, "room-history", d.id, d.session,
                          json_pack("{ss ss}", "userId", d.id, "roomId", room)),
                  d.id, "NOT_A_MEMBER");
    /* NOT_A_FRIEND */
    KC_EXPECT_ERR(kc_call(g_c, "user-add-room", a.id, a.session,
                          json_pack("{ss s[s]}", "userId", a.id, "friendId", d.id)),
                  a.id, "NOT_A_FRIEND");
}

/* JSON and msgpack requests of one user interleave; each answer matches its request. */
static void test_mp_mixed_encodings(void **state)
{
    (void)state;
    kc_user u;
    assert_true(kc_user_new(g_c, &u, "mpmix"));
    for (int i = 0; i < 6; i++) {
        kc_fmt f = (i % 2) ? KC_FMT_JSON : KC_FMT_MSGPACK;
        char st[32];
        snprintf(st, sizeof(st), "status %d", i);
        json_t *body = json_pack("{ss ss}", "userId", u.id, "userStatus", st);
        const kc_record *rec = NULL;
        kc_req req = { .op = "user-status-change", .key = u.id, .session = u.session, .fmt = f,
                       .body = body };
        json_t *r = kc_call_req(g_c, &req, &rec, NULL);
        json_decref(body);
        assert_true(kc_check_ok(r, u.id));
        KC_ASSERT_STR(r, "userStatus", st);
        assert_string_equal(kc_record_header(rec, KC_HDR_CTYPE, NULL),
                            f == KC_FMT_MSGPACK ? KC_CT_MSGPACK : KC_CT_JSON);
        json_decref(r);
    }
    /* msgpack without a cid: the answer has none */
    json_t *body = json_pack("{ss}", "userId", u.id);
    kc_req req = { .op = "user-search-friend", .key = u.id, .session = u.session,
                   .fmt = KC_FMT_MSGPACK, .body = body, .no_cid = true };
    json_t *r = kc_call_req(g_c, &req, NULL, NULL);
    json_decref(body);
    assert_true(kc_check_ok(r, u.id));
    json_decref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mp_register_login),
        cmocka_unit_test(test_mp_errors),
        cmocka_unit_test(test_mp_full_flow),
        cmocka_unit_test(test_mp_mixed_encodings),
    };
    return cmocka_run_group_tests_name("kchat operations (msgpack)", tests, group_setup,
                                       group_teardown);
}
