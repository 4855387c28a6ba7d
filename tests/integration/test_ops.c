/*
 * kchat-test: kafka (also run on real Apache Kafka by `make check-kafka`)
 * Every operation of PROTOCOL.md §3 over JSON, against one `kchat serve`
 * (embedded broker, 4 partitions) shared by the whole program: success paths
 * with every response field checked, every error code, the envelope (key,
 * kchat-cid, content-type), sessions, the compatibility forms and the
 * chat-events of §6.
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

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* malloc'd string: @p unit repeated @p n times, then @p tail. */
static char *rep(const char *unit, size_t n, const char *tail)
{
    size_t ul = strlen(unit), tl = strlen(tail);
    char *s = malloc(ul * n + tl + 1);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * ul, unit, ul);
    memcpy(s + ul * n, tail, tl + 1);
    return s;
}

/* A unique, valid user id of exactly @p len bytes (len >= 20). */
static void id_of_len(char *out, size_t len, const char *tag)
{
    kc_uid(out, 65, tag);
    size_t l = strlen(out);
    while (l < len)
        out[l++] = 'x';
    out[len] = '\0';
}

static json_t *call_raw(const char *op, const char *key, const char *session,
                        const void *raw, size_t len)
{
    kc_req req = { .op = op, .key = key, .session = session, .raw = raw, .raw_len = len };
    return kc_call_req(g_c, &req, NULL, NULL);
}

static json_t *user_add_body(const char *id, const char *pw, const char *email,
                             const char *name)
{
    json_t *b = json_object();
    if (id)
        json_object_set_new(b, "userId", json_string(id));
    if (pw)
        json_object_set_new(b, "userPw", json_string(pw));
    if (email)
        json_object_set_new(b, "email", json_string(email));
    if (name)
        json_object_set_new(b, "userName", json_string(name));
    return b;
}

static json_t *ids(const char *first, ...)
{
    json_t *a = json_array();
    va_list ap;
    va_start(ap, first);
    for (const char *s = first; s != NULL; s = va_arg(ap, const char *))
        json_array_append_new(a, json_string(s));
    va_end(ap);
    return a;
}

static json_t *search_friends(const kc_user *u)
{
    json_t *r = kc_call(g_c, "user-search-friend", u->id, u->session,
                        json_pack("{ss}", "userId", u->id));
    assert_true(kc_check_ok(r, u->id));
    assert_true(json_is_array(json_object_get(r, "friend")));
    return r;
}

static json_t *search_rooms(const kc_user *u)
{
    json_t *r = kc_call(g_c, "user-search-room", u->id, u->session,
                        json_pack("{ss}", "userId", u->id));
    assert_true(kc_check_ok(r, u->id));
    assert_true(json_is_array(json_object_get(r, "rooms")));
    return r;
}

static json_t *history(const kc_user *u, const char *room, json_int_t before, json_int_t limit)
{
    json_t *b = json_pack("{ss ss}", "userId", u->id, "roomId", room);
    if (before >= 0)
        json_object_set_new(b, "beforeSeq", json_integer(before));
    if (limit >= 0)
        json_object_set_new(b, "limit", json_integer(limit));
    return kc_call(g_c, "room-history", u->id, u->session, b);
}

/* The friend list of @p u is exactly the (sorted) ids in @p want. */
static void assert_friends(const kc_user *u, const char *const *want)
{
    json_t *r = search_friends(u);
    json_t *fr = json_object_get(r, "friend");
    size_t n = 0;
    while (want[n] != NULL)
        n++;
    if (json_array_size(fr) != n)
        fprintf(stderr, "friends of %s: %s\n", u->id, kc_dumps(r));
    assert_int_equal(json_array_size(fr), n);
    for (size_t i = 0; i < n; i++) {
        json_t *f = json_array_get(fr, i);
        assert_true(json_is_object(f));
        KC_ASSERT_STR(f, "userId", want[i]);
        assert_non_null(kc_str(f, "userName"));
        assert_non_null(kc_str(f, "userStatus"));
        if (i > 0)
            assert_true(strcmp(want[i - 1], want[i]) < 0);
    }
    json_decref(r);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The rooms of @p u are exactly @p want (any order given, sorted expected). */
static json_t *assert_rooms(const kc_user *u, const char **want, size_t n)
{
    qsort(want, n, sizeof(*want), cmp_str);
    json_t *r = search_rooms(u);
    json_t *rooms = json_object_get(r, "rooms");
    if (json_array_size(rooms) != n)
        fprintf(stderr, "rooms of %s: %s\n", u->id, kc_dumps(r));
    assert_int_equal(json_array_size(rooms), n);
    for (size_t i = 0; i < n; i++) {
        json_t *room = json_array_get(rooms, i);
        KC_ASSERT_STR(room, "roomId", want[i]);
        assert_non_null(kc_str(room, "roomName"));
        assert_true(json_is_array(json_object_get(room, "participants")));
        assert_true(json_is_integer(json_object_get(room, "lastSeq")));
    }
    return r;
}

static json_t *find_room(json_t *search, const char *room_id)
{
    size_t i;
    json_t *room;
    json_array_foreach(json_object_get(search, "rooms"), i, room) {
        const char *rid = kc_str(room, "roomId");
        if (rid != NULL && strcmp(rid, room_id) == 0)
            return room;
    }
    return NULL;
}

/* Wait (bounded) until @p viewer sees @p friend_id with status @p status. */
static bool friend_status_is(const kc_user *viewer, const char *friend_id, const char *status)
{
    int64_t deadline = kc_now_ms() + 5000;
    json_t *last = NULL;
    for (;;) {
        json_t *r = search_friends(viewer);
        size_t i;
        json_t *f;
        json_array_foreach(json_object_get(r, "friend"), i, f) {
            if (strcmp(kc_str(f, "userId") ? kc_str(f, "userId") : "", friend_id) == 0 &&
                kc_str(f, "userStatus") != NULL && strcmp(kc_str(f, "userStatus"), status) == 0) {
                json_decref(r);
                json_decref(last);
                return true;
            }
        }
        json_decref(last);
        last = r;
        if (kc_now_ms() >= deadline)
            break;
        kc_sleep_ms(200);
    }
    fprintf(stderr, "%s never saw %s with status \"%s\": %s\n", viewer->id, friend_id, status,
            kc_dumps(last));
    json_decref(last);
    return false;
}

static void new_user(kc_user *u, const char *tag)
{
    assert_true(kc_user_new(g_c, u, tag));
}

static void befriend(const kc_user *u, const kc_user *f)
{
    const char *list[] = { f->id, NULL };
    assert_true(kc_add_friends(g_c, u, list));
}

static json_t *status_body(const char *user, const char *status)
{
    return json_pack("{ss ss}", "userId", user, "userStatus", status);
}

/* ------------------------------------------------------------------------ */
/* group setup                                                              */
/* ------------------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    setvbuf(stdout, NULL, _IOLBF, 0);
    char *data = kc_tmppath("ops-data");
    kc_rm_rf(data);
    g_srv = kc_serve_start("ops-serve", data, NULL, PARTITIONS, NULL);
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
    g_c = NULL;
    if (g_srv != NULL)
        kc_proc_stop(g_srv, SIGTERM, 10, NULL);
    kc_proc_free(g_srv);
    g_srv = NULL;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* topics                                                                   */
/* ------------------------------------------------------------------------ */

static void test_topics(void **state)
{
    (void)state;
    for (int i = 0; i < KC_OP_COUNT; i++) {
        char t[96];
        snprintf(t, sizeof(t), "%s-request", kc_ops[i]);
        int n = kc_topic_partitions(g_c, t);
        if (n != PARTITIONS)
            fprintf(stderr, "%s has %d partitions, expected %d\n", t, n, PARTITIONS);
        assert_int_equal(n, PARTITIONS);
        snprintf(t, sizeof(t), "%s-response", kc_ops[i]);
        assert_true(kc_topic_partitions(g_c, t) > 0);
    }
    assert_true(kc_topic_partitions(g_c, KC_TOPIC_EVENTS) > 0);
    assert_true(kc_topic_partitions(g_c, KC_TOPIC_DLQ) > 0);
}

/* ------------------------------------------------------------------------ */
/* user-add                                                                 */
/* ------------------------------------------------------------------------ */

static void test_register_success(void **state)
{
    (void)state;
    kc_user u;
    kc_user_init(&u, "reg");
    const kc_record *rec = NULL;
    char cid[72];
    json_t *body = user_add_body(u.id, u.pw, u.email, u.name);
    kc_req req = { .op = "user-add", .key = u.id, .body = body };
    json_t *r = kc_call_req(g_c, &req, &rec, cid);
    json_decref(body);
    assert_true(kc_check_ok(r, u.id));
    assert_non_null(rec);
    /* envelope: keyed by the user, carries the cid and a JSON content-type */
    assert_true(kc_record_key_is(rec, u.id));
    size_t cl = 0;
    const char *rcid = kc_record_header(rec, KC_HDR_CID, &cl);
    assert_non_null(rcid);
    assert_int_equal(cl, strlen(cid));
    assert_memory_equal(rcid, cid, cl);
    assert_string_equal(kc_record_header(rec, KC_HDR_CTYPE, NULL), KC_CT_JSON);
    /* the user object */
    json_t *user = json_object_get(r, "user");
    assert_true(kc_check_user_obj(user, u.id));
    KC_ASSERT_STR(user, "email", u.email);
    KC_ASSERT_STR(user, "userName", u.name);
    KC_ASSERT_STR(user, "loginDate", "");
    KC_ASSERT_STR(user, "logoutDate", "");
    assert_non_null(kc_str(user, "userStatus"));
    /* no password, no session */
    assert_false(kc_memmem(rec->value, rec->value_len, u.pw, strlen(u.pw)));
    assert_false(kc_memmem(rec->value, rec->value_len, "$argon2", 7));
    const char *sid = kc_str(r, "sessionId");
    assert_true(sid == NULL || sid[0] == '\0');
    json_decref(r);
}

static void test_register_already_exists(void **state)
{
    (void)state;
    kc_user u;
    kc_user_init(&u, "dup");
    assert_true(kc_user_register(g_c, &u));
    char pw2[40];
    kc_new_password(pw2, sizeof(pw2));
    KC_EXPECT_ERR(kc_call(g_c, "user-add", u.id, NULL,
                          user_add_body(u.id, pw2, "other@example.com", "Other")),
                  u.id, "ALREADY_EXISTS");
    /* nothing changed: the first password still works, the second does not */
    char *s = kc_login(g_c, u.id, u.pw);
    assert_non_null(s);
    free(s);
    KC_EXPECT_ERR(kc_call(g_c, "login", u.id, NULL,
                          json_pack("{ss ss}", "userId", u.id, "userPw", pw2)),
                  u.id, "BAD_CREDENTIALS");
}

/* A user-add that must be BAD_REQUEST, after which the id is still free. */
static void reg_bad(const char *id, json_t *body)
{
    KC_EXPECT_ERR(kc_call(g_c, "user-add", id, NULL, body), NULL, "BAD_REQUEST");
}

static void reg_ok(const char *id, const char *pw, const char *email, const char *name)
{
    json_t *r = kc_call(g_c, "user-add", id, NULL, user_add_body(id, pw, email, name));
    assert_true(kc_check_ok(r, id));
    assert_true(kc_check_user_obj(json_object_get(r, "user"), id));
    KC_ASSERT_STR(json_object_get(r, "user"), "email", email);
    KC_ASSERT_STR(json_object_get(r, "user"), "userName", name);
    json_decref(r);
}

/* An id-limit violation where key == userId is itself invalid: the server may
 * answer BAD_REQUEST (keyed by that key) or, having no usable key, send the
 * record to kchat-dlq (PROTOCOL.md §5). Either is fine; nothing may change. */
struct cid_or_dlq {
    const char *topic;
    const char *cid;
};

static bool match_cid_or_dlq(const kc_record *r, void *arg)
{
    const struct cid_or_dlq *m = arg;
    return r->cid != NULL && strcmp(r->cid, m->cid) == 0 &&
           (strcmp(r->topic, m->topic) == 0 || strcmp(r->topic, KC_TOPIC_DLQ) == 0);
}

static void reg_bad_id(const char *id, const char *pw)
{
    char cid[72];
    json_t *body = user_add_body(id, pw, "x@example.com", "X");
    assert_true(kc_send_req(g_c, "user-add", id, NULL, NULL, body, cid));
    json_decref(body);
    struct cid_or_dlq m = { "user-add-response", cid };
    const kc_record *r = kc_wait_record(g_c, 0, match_cid_or_dlq, &m, KC_CALL_TIMEOUT_MS);
    if (r == NULL) {
        fprintf(stderr, "user-add with invalid id \"%s\": neither answer nor dlq record\n", id);
        kc_diag_dump();
    }
    assert_non_null(r);
    if (strcmp(r->topic, KC_TOPIC_DLQ) == 0) {
        assert_non_null(kc_record_header(r, KC_HDR_ERROR, NULL));
    } else {
        assert_true(kc_record_key_is(r, id));
        assert_true(kc_check_err(r->body, NULL, "BAD_REQUEST"));
    }
}

static void test_register_limits(void **state)
{
    (void)state;
    char id[80], pw[40];
    kc_new_password(pw, sizeof(pw));

    /* userId: 64 bytes ok, 65 bytes and bad characters refused */
    id_of_len(id, 64, "id64");
    reg_ok(id, pw, "a@example.com", "A");
    id_of_len(id, 65, "id65");
    reg_bad_id(id, pw);
    kc_uid(id, sizeof(id), "bad!id");
    reg_bad_id(id, pw);

    /* userPw: 8..128 bytes */
    char *p7 = rep("p", 7, ""), *p8 = rep("q", 8, ""), *p128 = rep("r", 128, ""),
         *p129 = rep("s", 129, "");
    kc_remember_password(p8);
    kc_remember_password(p128);
    kc_uid(id, sizeof(id), "pw7");
    reg_bad(id, user_add_body(id, p7, "a@b.c", "N"));
    reg_ok(id, p8, "a@b.c", "N"); /* the failed attempt left the id free */
    kc_uid(id, sizeof(id), "pw129");
    reg_bad(id, user_add_body(id, p129, "a@b.c", "N"));
    reg_ok(id, p128, "a@b.c", "N");
    char *s = kc_login(g_c, id, p128); /* never truncated: the full 128 bytes */
    assert_non_null(s);
    free(s);
    free(p7);
    free(p8);
    free(p128);
    free(p129);

    /* email: 3..254 bytes with '@' */
    kc_uid(id, sizeof(id), "em2");
    reg_bad(id, user_add_body(id, pw, "a@", "N"));
    reg_ok(id, pw, "a@b", "N");
    char *e254 = rep("e", 250, "@x.y"), *e255 = rep("e", 251, "@x.y");
    assert_int_equal(strlen(e254), 254);
    kc_uid(id, sizeof(id), "em255");
    reg_bad(id, user_add_body(id, pw, e255, "N"));
    reg_ok(id, pw, e254, "N");
    free(e254);
    free(e255);
    kc_uid(id, sizeof(id), "emnoat");
    reg_bad(id, user_add_body(id, pw, "no-at-sign.example.com", "N"));

    /* userName: 1..64 bytes of UTF-8 without control characters */
    kc_uid(id, sizeof(id), "nm0");
    reg_bad(id, user_add_body(id, pw, "a@b", ""));
    char *n65 = rep("n", 65, ""), *n64 = rep("n", 64, "");
    kc_uid(id, sizeof(id), "nm65");
    reg_bad(id, user_add_body(id, pw, "a@b", n65));
    reg_ok(id, pw, "a@b", n64);
    char *u65 = rep("\xc3\xa9", 32, "a"), *u64 = rep("\xc3\xa9", 32, ""); /* bytes, not chars */
    kc_uid(id, sizeof(id), "nmu65");
    reg_bad(id, user_add_body(id, pw, "a@b", u65));
    reg_ok(id, pw, "a@b", u64);
    free(n65);
    free(n64);
    free(u65);
    free(u64);
    kc_uid(id, sizeof(id), "nmctl");
    reg_bad(id, user_add_body(id, pw, "a@b", "bell\x07"));
    reg_bad(id, user_add_body(id, pw, "a@b", "new\nline"));
    char raw[512];
    int rl = snprintf(raw, sizeof(raw),
                      "{\"userId\":\"%s\",\"userPw\":\"%s\",\"email\":\"a@b\",\"userName\":\"bad\xff\xfe\"}",
                      id, pw);
    KC_EXPECT_ERR(call_raw("user-add", id, NULL, raw, (size_t)rl), NULL, "BAD_REQUEST");
    reg_ok(id, pw, "a@b", "Fine Name");

    /* missing fields and wrong types */
    kc_uid(id, sizeof(id), "miss");
    reg_bad(id, user_add_body(NULL, pw, "a@b", "N"));
    reg_bad(id, user_add_body(id, NULL, "a@b", "N"));
    reg_bad(id, user_add_body(id, pw, NULL, "N"));
    reg_bad(id, user_add_body(id, pw, "a@b", NULL));
    reg_bad(id, json_pack("{ss si ss ss}", "userId", id, "userPw", 12345678, "email", "a@b",
                          "userName", "N"));
    reg_bad(id, json_pack("{ss ss s[s] ss}", "userId", id, "userPw", pw, "email", "a@b",
                          "userName", "N"));
    reg_bad(id, json_pack("{ss ss ss sn}", "userId", id, "userPw", pw, "email", "a@b",
                          "userName"));
    reg_bad(id, json_pack("{si ss ss ss}", "userId", 42, "userPw", pw, "email", "a@b",
                          "userName", "N"));
    reg_ok(id, pw, "a@b", "N");

    /* key disagreeing with userId: neither id gets registered */
    char other[80];
    kc_uid(id, sizeof(id), "keyA");
    kc_uid(other, sizeof(other), "bodyB");
    reg_bad(id, user_add_body(other, pw, "a@b", "N"));
    reg_ok(id, pw, "a@b", "N");
    reg_ok(other, pw, "a@b", "N");

    /* unknown fields are ignored */
    kc_uid(id, sizeof(id), "unk");
    json_t *b = user_add_body(id, pw, "a@b", "N");
    json_object_set_new(b, "favouriteColour", json_string("green"));
    json_object_set_new(b, "nested", json_pack("{s[i]}", "x", 1));
    KC_EXPECT_OK(kc_call(g_c, "user-add", id, NULL, b), id);
}

/* ------------------------------------------------------------------------ */
/* login / logout / sessions                                                */
/* ------------------------------------------------------------------------ */

static bool session_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    bool hex = n > 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool b64 = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                   (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
        if (!b64)
            return false;
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')))
            hex = false;
    }
    /* >= 128 bits: 32 hex digits, or 22 base64url characters */
    return hex ? n >= 32 : n >= 22;
}

static void test_login_success(void **state)
{
    (void)state;
    kc_user u;
    kc_user_init(&u, "login");
    assert_true(kc_user_register(g_c, &u));
    json_t *r = kc_call(g_c, "login", u.id, NULL,
                        json_pack("{ss ss}", "userId", u.id, "userPw", u.pw));
    assert_true(kc_check_ok(r, u.id));
    const char *sid = kc_str(r, "sessionId");
    if (!session_id_ok(sid))
        fprintf(stderr, "sessionId \"%s\" is not >= 128 bits of hex/base64url\n", sid ? sid : "");
    assert_true(session_id_ok(sid));
    json_t *user = json_object_get(r, "user");
    assert_true(kc_check_user_obj(user, u.id));
    KC_ASSERT_STR(user, "email", u.email);
    KC_ASSERT_STR(user, "userName", u.name);
    assert_true(kc_check_iso(kc_str(user, "loginDate"), "loginDate after login"));
    KC_ASSERT_STR(user, "logoutDate", "");
    int64_t first_login = kc_iso_to_ms(kc_str(user, "loginDate"));
    char *s1 = strdup(sid);
    json_decref(r);

    /* a second login: another session, a later-or-equal loginDate */
    r = kc_call(g_c, "login", u.id, NULL, json_pack("{ss ss}", "userId", u.id, "userPw", u.pw));
    assert_true(kc_check_ok(r, u.id));
    assert_true(session_id_ok(kc_str(r, "sessionId")));
    assert_string_not_equal(kc_str(r, "sessionId"), s1);
    assert_true(kc_iso_to_ms(kc_str(json_object_get(r, "user"), "loginDate")) >= first_login);
    json_decref(r);
    free(s1);
}

static void test_login_bad_credentials(void **state)
{
    (void)state;
    kc_user u, ghost;
    kc_user_init(&u, "badcred");
    kc_user_init(&ghost, "ghost");
    assert_true(kc_user_register(g_c, &u));
    char wrong[40];
    kc_new_password(wrong, sizeof(wrong));

    json_t *r = kc_call(g_c, "login", ghost.id, NULL,
                        json_pack("{ss ss}", "userId", ghost.id, "userPw", ghost.pw));
    assert_true(kc_check_err(r, ghost.id, "BAD_CREDENTIALS"));
    const char *sid = kc_str(r, "sessionId");
    assert_true(sid == NULL || sid[0] == '\0');
    json_decref(r);

    r = kc_call(g_c, "login", u.id, NULL, json_pack("{ss ss}", "userId", u.id, "userPw", wrong));
    assert_true(kc_check_err(r, u.id, "BAD_CREDENTIALS"));
    sid = kc_str(r, "sessionId");
    assert_true(sid == NULL || sid[0] == '\0');
    json_decref(r);

    /* limits and shape */
    KC_EXPECT_ERR(kc_call(g_c, "login", u.id, NULL,
                          json_pack("{ss ss}", "userId", u.id, "userPw", "short7!")),
                  u.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "login", u.id, NULL, json_pack("{ss}", "userId", u.id)), u.id,
                  "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "login", u.id, NULL,
                          json_pack("{ss si}", "userId", u.id, "userPw", 123456789)),
                  u.id, "BAD_REQUEST");
    kc_user other;
    kc_user_init(&other, "other");
    assert_true(kc_user_register(g_c, &other));
    KC_EXPECT_ERR(kc_call(g_c, "login", u.id, NULL,
                          json_pack("{ss ss}", "userId", other.id, "userPw", other.pw)),
                  NULL, "BAD_REQUEST");
    /* nothing above logged u in */
    r = kc_call(g_c, "login", u.id, NULL, json_pack("{ss ss}", "userId", u.id, "userPw", u.pw));
    assert_true(kc_check_ok(r, u.id));
    json_decref(r);
}

static void test_logout(void **state)
{
    (void)state;
    kc_user u;
    new_user(&u, "logout");
    char *s2 = kc_login(g_c, u.id, u.pw);
    assert_non_null(s2);

    json_t *r = kc_call(g_c, "logout", u.id, u.session, json_pack("{ss}", "userId", u.id));
    assert_true(kc_check_ok(r, u.id));
    json_decref(r);

    /* that session is revoked, the other one is not */
    KC_EXPECT_ERR(kc_call(g_c, "user-status-change", u.id, u.session, status_body(u.id, "x")),
                  u.id, "UNAUTHENTICATED");
    KC_EXPECT_ERR(kc_call(g_c, "logout", u.id, u.session, json_pack("{ss}", "userId", u.id)),
                  u.id, "UNAUTHENTICATED");
    KC_EXPECT_OK(kc_call(g_c, "user-status-change", u.id, s2, status_body(u.id, "still here")),
                 u.id);

    /* logoutDate is set: visible in the next login's user object */
    r = kc_call(g_c, "login", u.id, NULL, json_pack("{ss ss}", "userId", u.id, "userPw", u.pw));
    assert_true(kc_check_ok(r, u.id));
    json_t *user = json_object_get(r, "user");
    assert_true(kc_check_user_obj(user, u.id));
    assert_true(kc_check_iso(kc_str(user, "logoutDate"), "logoutDate after logout"));
    assert_true(kc_check_iso(kc_str(user, "loginDate"), "loginDate"));
    json_decref(r);
    free(s2);
}

static void test_logout_bare_value(void **state)
{
    (void)state;
    kc_user u;
    new_user(&u, "bare");
    /* the original front end's form: the value is the bare user id, no JSON,
     * no content-type; the answer is JSON */
    kc_req req = { .op = "logout", .key = u.id, .session = u.session, .raw = u.id,
                   .raw_len = strlen(u.id), .no_ctype = true };
    json_t *r = kc_call_req(g_c, &req, NULL, NULL);
    assert_true(kc_check_ok(r, u.id));
    json_decref(r);
    KC_EXPECT_ERR(kc_call(g_c, "user-status-change", u.id, u.session, status_body(u.id, "x")),
                  u.id, "UNAUTHENTICATED");
}

static void test_several_sessions(void **state)
{
    (void)state;
    kc_user u;
    new_user(&u, "multi");
    char *s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = kc_login(g_c, u.id, u.pw);
        assert_non_null(s[i]);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(s[i], s[j]);
        assert_string_not_equal(s[i], u.session);
    }
    for (int i = 0; i < 3; i++)
        KC_EXPECT_OK(kc_call(g_c, "user-status-change", u.id, s[i], status_body(u.id, "tab")),
                     u.id);
    KC_EXPECT_OK(kc_call(g_c, "logout", u.id, s[1], json_pack("{ss}", "userId", u.id)), u.id);
    KC_EXPECT_ERR(kc_call(g_c, "user-search-friend", u.id, s[1], json_pack("{ss}", "userId", u.id)),
                  u.id, "UNAUTHENTICATED");
    KC_EXPECT_OK(kc_call(g_c, "user-search-friend", u.id, s[0], json_pack("{ss}", "userId", u.id)),
                 u.id);
    KC_EXPECT_OK(kc_call(g_c, "user-search-friend", u.id, s[2], json_pack("{ss}", "userId", u.id)),
                 u.id);
    KC_EXPECT_OK(kc_call(g_c, "user-search-friend", u.id, u.session,
                         json_pack("{ss}", "userId", u.id)), u.id);
    for (int i = 0; i < 3; i++)
        free(s[i]);
}

/* Every session-checked operation refuses @p session for @p u. */
static void all_ops_unauthenticated(const kc_user *u, const char *session, const char *room,
                                    const char *friend_id, const char *member_id)
{
    KC_EXPECT_ERR(kc_call(g_c, "user-status-change", u->id, session,
                          status_body(u->id, "hacked")), u->id, "UNAUTHENTICATED");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-friend", u->id, session,
                          json_pack("{ss so}", "userId", u->id, "friendId",
                                    ids(friend_id, NULL))), u->id, "UNAUTHENTICATED");
    KC_EXPECT_ERR(kc_call(g_c, "user-search-friend", u->id, session,
                          json_pack("{ss}", "userId", u->id)), u->id, "UNAUTHENTICATED");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-room", u->id, session,
                          json_pack("{ss so ss}", "userId", u->id, "friendId",
                                    ids(member_id, NULL), "roomName", "hacked")),
                  u->id, "UNAUTHENTICATED");
    KC_EXPECT_ERR(kc_call(g_c, "user-search-room", u->id, session,
                          json_pack("{ss}", "userId", u->id)), u->id, "UNAUTHENTICATED");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-chat", u->id, session,
                          json_pack("{ss ss ss ss}", "roomId", room, "writerId", u->id, "message",
                                    "hacked", "clientMsgId", "hack-1")),
                  u->id, "UNAUTHENTICATED");
    KC_EXPECT_ERR(kc_call(g_c, "room-history", u->id, session,
                          json_pack("{ss ss}", "userId", u->id, "roomId", room)),
                  u->id, "UNAUTHENTICATED");
    KC_EXPECT_ERR(kc_call(g_c, "logout", u->id, session, json_pack("{ss}", "userId", u->id)),
                  u->id, "UNAUTHENTICATED");
}

static void test_unauthenticated(void **state)
{
    (void)state;
    kc_user a, b, c;
    new_user(&a, "victim");
    new_user(&b, "intruder");
    new_user(&c, "bystander");
    befriend(&a, &b);
    befriend(&b, &a); /* so b can watch a's status */
    char room[65];
    const char *fr[] = { b.id, NULL };
    assert_true(kc_create_room(g_c, &a, fr, "before", room));
    KC_EXPECT_OK(kc_call(g_c, "user-status-change", a.id, a.session, status_body(a.id, "calm")),
                 a.id);

    char *old = kc_login(g_c, a.id, a.pw);
    assert_non_null(old);
    KC_EXPECT_OK(kc_call(g_c, "logout", a.id, old, json_pack("{ss}", "userId", a.id)), a.id);

    all_ops_unauthenticated(&a, NULL, room, c.id, b.id);            /* missing */
    all_ops_unauthenticated(&a, "00112233445566778899aabbccddeeff0011223344556677", room,
                            c.id, b.id);                            /* unknown */
    all_ops_unauthenticated(&a, b.session, room, c.id, b.id);       /* other user's */
    all_ops_unauthenticated(&a, old, room, c.id, b.id);             /* revoked */
    free(old);

    /* nothing changed */
    const char *fa[] = { b.id, NULL };
    assert_friends(&a, fa);
    const char *want[] = { room };
    json_t *rs = assert_rooms(&a, want, 1);
    KC_ASSERT_INT(find_room(rs, room), "lastSeq", 0);
    json_decref(rs);
    json_t *h = history(&a, room, -1, -1);
    assert_true(kc_check_ok(h, a.id));
    assert_int_equal(json_array_size(json_object_get(h, "messages")), 0);
    json_decref(h);
    assert_true(friend_status_is(&b, a.id, "calm"));
    json_t *cr = search_rooms(&c);
    assert_int_equal(json_array_size(json_object_get(cr, "rooms")), 0);
    json_decref(cr);
    json_decref(kc_wait_events(g_c, b.id, "room", room, 1, 10000));
    json_t *be = kc_wait_events(g_c, b.id, "room", NULL, 2, 500);
    assert_int_equal(json_array_size(be), 1); /* no room from the refused creations */
    json_decref(be);
    json_decref(assert_rooms(&b, want, 1));
    /* a's session was never revoked by the refused logouts */
    KC_EXPECT_OK(kc_call(g_c, "user-search-friend", a.id, a.session,
                         json_pack("{ss}", "userId", a.id)), a.id);
    /* and user-add / login need no session */
    kc_user d;
    kc_user_init(&d, "nosess");
    assert_true(kc_user_register(g_c, &d));
    assert_true(kc_user_login(g_c, &d));
}

/* ------------------------------------------------------------------------ */
/* status                                                                   */
/* ------------------------------------------------------------------------ */

static void test_status_change(void **state)
{
    (void)state;
    kc_user u, w;
    new_user(&u, "status");
    new_user(&w, "watcher");
    befriend(&w, &u);

    json_t *r = kc_call(g_c, "user-status-change", u.id, u.session,
                        status_body(u.id, "Busy \xe2\x98\x95"));
    assert_true(kc_check_ok(r, u.id));
    KC_ASSERT_STR(r, "userStatus", "Busy \xe2\x98\x95");
    json_decref(r);
    assert_true(friend_status_is(&w, u.id, "Busy \xe2\x98\x95"));

    /* the original field name `status` */
    r = kc_call(g_c, "user-status-change", u.id, u.session,
                json_pack("{ss ss}", "userId", u.id, "status", "via alias"));
    assert_true(kc_check_ok(r, u.id));
    KC_ASSERT_STR(r, "userStatus", "via alias");
    json_decref(r);
    assert_true(friend_status_is(&w, u.id, "via alias"));

    /* 0..256 bytes */
    KC_EXPECT_OK(kc_call(g_c, "user-status-change", u.id, u.session, status_body(u.id, "")), u.id);
    char *s256 = rep("s", 256, ""), *s257 = rep("s", 257, "");
    KC_EXPECT_OK(kc_call(g_c, "user-status-change", u.id, u.session, status_body(u.id, s256)),
                 u.id);
    KC_EXPECT_ERR(kc_call(g_c, "user-status-change", u.id, u.session, status_body(u.id, s257)),
                  u.id, "BAD_REQUEST");
    assert_true(friend_status_is(&w, u.id, s256)); /* the refused one changed nothing */
    free(s256);
    free(s257);

    char raw[256];
    int rl = snprintf(raw, sizeof(raw), "{\"userId\":\"%s\",\"userStatus\":\"\xc3\x28\"}", u.id);
    KC_EXPECT_ERR(call_raw("user-status-change", u.id, u.session, raw, (size_t)rl), u.id,
                  "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-status-change", u.id, u.session,
                          json_pack("{ss}", "userId", u.id)), u.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-status-change", u.id, u.session,
                          json_pack("{ss si}", "userId", u.id, "userStatus", 5)),
                  u.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-status-change", u.id, u.session, status_body(w.id, "x")),
                  NULL, "BAD_REQUEST");
}

/* ------------------------------------------------------------------------ */
/* friends                                                                  */
/* ------------------------------------------------------------------------ */

static void sort3(const char **v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_str);
}

static void test_friends(void **state)
{
    (void)state;
    kc_user a, b, c, d, e, f;
    new_user(&a, "fa");
    new_user(&b, "fb");
    new_user(&c, "fc");
    new_user(&d, "fd");
    new_user(&e, "fe");
    new_user(&f, "ff");

    const char *none[] = { NULL };
    assert_friends(&a, none);

    json_t *r = kc_call(g_c, "user-add-friend", a.id, a.session,
                        json_pack("{ss so}", "userId", a.id, "friendId", ids(c.id, b.id, NULL)));
    assert_true(kc_check_ok(r, a.id));
    const char *bc[] = { c.id, b.id, NULL };
    assert_true(kc_check_id_set(json_object_get(r, "friendId"), bc, "friendId"));
    json_decref(r);
    const char *sorted[4] = { b.id, c.id, NULL, NULL };
    sort3(sorted, 2);
    assert_friends(&a, sorted);

    /* the friend entries carry the friend's profile */
    r = search_friends(&a);
    size_t i;
    json_t *fe;
    json_array_foreach(json_object_get(r, "friend"), i, fe) {
        const kc_user *who = strcmp(kc_str(fe, "userId"), b.id) == 0 ? &b : &c;
        KC_ASSERT_STR(fe, "userName", who->name);
    }
    json_decref(r);

    /* directed: b does not follow a */
    assert_friends(&b, none);

    /* already a friend is no error and adds no duplicate */
    KC_EXPECT_OK(kc_call(g_c, "user-add-friend", a.id, a.session,
                         json_pack("{ss so}", "userId", a.id, "friendId", ids(b.id, NULL))),
                 a.id);
    assert_friends(&a, sorted);

    /* repeated ids are folded */
    r = kc_call(g_c, "user-add-friend", a.id, a.session,
                json_pack("{ss so}", "userId", a.id, "friendId", ids(d.id, d.id, NULL)));
    assert_true(kc_check_ok(r, a.id));
    /* friendId: the ids added (or, as one may read §3, the whole list): either
     * way d exactly once */
    json_t *fid = json_object_get(r, "friendId");
    assert_true(json_is_array(fid));
    int d_seen = 0;
    size_t xi;
    json_t *x;
    json_array_foreach(fid, xi, x) {
        assert_true(json_is_string(x));
        d_seen += strcmp(json_string_value(x), d.id) == 0;
    }
    assert_int_equal(d_seen, 1);
    json_decref(r);
    const char *bcd[4] = { b.id, c.id, d.id, NULL };
    sort3(bcd, 3);
    assert_friends(&a, bcd);

    /* all or nothing: an unknown id adds none */
    char ghost[80];
    kc_uid(ghost, sizeof(ghost), "nobody");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-friend", a.id, a.session,
                          json_pack("{ss so}", "userId", a.id, "friendId",
                                    ids(e.id, ghost, NULL))),
                  a.id, "USER_NOT_FOUND");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-friend", a.id, a.session,
                          json_pack("{ss so}", "userId", a.id, "friendId",
                                    ids(ghost, e.id, NULL))),
                  a.id, "USER_NOT_FOUND");
    assert_friends(&a, bcd);

    /* yourself is BAD_REQUEST, alone or with others */
    KC_EXPECT_ERR(kc_call(g_c, "user-add-friend", a.id, a.session,
                          json_pack("{ss so}", "userId", a.id, "friendId", ids(a.id, NULL))),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-friend", a.id, a.session,
                          json_pack("{ss so}", "userId", a.id, "friendId",
                                    ids(f.id, a.id, NULL))),
                  a.id, "BAD_REQUEST");
    assert_friends(&a, bcd);

    /* list limits: 1..100 ids; 100 unknown ids are within limits */
    KC_EXPECT_ERR(kc_call(g_c, "user-add-friend", a.id, a.session,
                          json_pack("{ss s[]}", "userId", a.id, "friendId")),
                  a.id, "BAD_REQUEST");
    json_t *l100 = json_array(), *l101 = json_array();
    for (int k = 0; k < 101; k++) {
        char g[80];
        kc_uid(g, sizeof(g), "nobody");
        if (k < 100)
            json_array_append_new(l100, json_string(g));
        json_array_append_new(l101, json_string(g));
    }
    KC_EXPECT_ERR(kc_call(g_c, "user-add-friend", a.id, a.session,
                          json_pack("{ss so}", "userId", a.id, "friendId", l101)),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-friend", a.id, a.session,
                          json_pack("{ss so}", "userId", a.id, "friendId", l100)),
                  a.id, "USER_NOT_FOUND");

    /* element rules and types */
    char id65[80];
    id_of_len(id65, 65, "long");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-friend", a.id, a.session,
                          json_pack("{ss so}", "userId", a.id, "friendId", ids(id65, NULL))),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-friend", a.id, a.session,
                          json_pack("{ss so}", "userId", a.id, "friendId",
                                    ids("bad id!", NULL))),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-friend", a.id, a.session,
                          json_pack("{ss so}", "userId", a.id, "friendId", ids("", NULL))),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-friend", a.id, a.session,
                          json_pack("{ss ss}", "userId", a.id, "friendId", e.id)),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-friend", a.id, a.session,
                          json_pack("{ss s[si]}", "userId", a.id, "friendId", e.id, 7)),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-friend", a.id, a.session,
                          json_pack("{ss}", "userId", a.id)),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-friend", a.id, a.session,
                          json_pack("{ss so}", "userId", f.id, "friendId", ids(e.id, NULL))),
                  NULL, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-search-friend", a.id, a.session,
                          json_pack("{ss}", "userId", f.id)),
                  NULL, "BAD_REQUEST");
    assert_friends(&a, bcd);
    assert_friends(&f, none);
}

/* ------------------------------------------------------------------------ */
/* rooms                                                                    */
/* ------------------------------------------------------------------------ */

/* The `room` event @p ev for @p user about @p room. */
static void check_room_event(const json_t *ev, const char *user, const char *room,
                             const char *name, const char *const *participants)
{
    KC_ASSERT_STR(ev, "type", "room");
    KC_ASSERT_STR(ev, "userId", user);
    KC_ASSERT_STR(ev, "roomId", room);
    KC_ASSERT_STR(ev, "roomName", name);
    assert_true(kc_check_id_set(json_object_get(ev, "participants"), participants,
                                "room event participants"));
}

static void test_rooms(void **state)
{
    (void)state;
    kc_user a, b, c, d;
    new_user(&a, "ra");
    new_user(&b, "rb");
    new_user(&c, "rc");
    new_user(&d, "rd");
    const char *bc[] = { b.id, c.id, NULL };
    assert_true(kc_add_friends(g_c, &a, bc));

    const char *name = "Team \xe2\x98\x95";
    json_t *r = kc_call(g_c, "user-add-room", a.id, a.session,
                        json_pack("{ss so ss}", "userId", a.id, "friendId",
                                  ids(b.id, c.id, NULL), "roomName", name));
    assert_true(kc_check_ok(r, a.id));
    const char *rid = kc_str(r, "roomId");
    assert_non_null(rid);
    assert_true(kc_is_valid_id(rid));
    char r1[65];
    snprintf(r1, sizeof(r1), "%s", rid);
    KC_ASSERT_STR(r, "roomName", name);
    assert_true(kc_check_id_set(json_object_get(r, "friendId"), bc, "friendId"));
    assert_true(kc_check_iso(kc_str(r, "createdAt"), "createdAt"));
    json_decref(r);

    /* the creator sees it at once */
    const char *abc[] = { a.id, b.id, c.id, NULL };
    const char *w1[] = { r1 };
    json_t *s = assert_rooms(&a, w1, 1);
    json_t *room = find_room(s, r1);
    KC_ASSERT_STR(room, "roomName", name);
    assert_true(kc_check_id_set(json_object_get(room, "participants"), abc, "participants"));
    KC_ASSERT_INT(room, "lastSeq", 0);
    json_decref(s);

    /* a room event to every participant */
    const kc_user *members[] = { &a, &b, &c };
    for (int i = 0; i < 3; i++) {
        json_t *ev = kc_wait_events(g_c, members[i]->id, "room", r1, 1, 10000);
        if (json_array_size(ev) != 1)
            fprintf(stderr, "room events of %s: %s\n", members[i]->id, kc_dumps(ev));
        assert_int_equal(json_array_size(ev), 1);
        check_room_event(json_array_get(ev, 0), members[i]->id, r1, name, abc);
        json_decref(ev);
    }
    /* ... after which the room is in their list */
    json_t *sb = assert_rooms(&b, w1, 1);
    assert_true(kc_check_id_set(json_object_get(find_room(sb, r1), "participants"), abc,
                                "participants seen by b"));
    json_decref(sb);

    /* roomName optional, "" allowed, 128 bytes ok, 129 refused */
    char r2[65], r3[65], r4[65], r5[65];
    const char *bonly[] = { b.id, NULL };
    assert_true(kc_create_room(g_c, &a, bonly, NULL, r2));
    assert_true(kc_create_room(g_c, &a, bonly, "", r3));
    char *n128 = rep("r", 128, ""), *n129 = rep("r", 129, "");
    assert_true(kc_create_room(g_c, &a, bonly, n128, r4));
    KC_EXPECT_ERR(kc_call(g_c, "user-add-room", a.id, a.session,
                          json_pack("{ss so ss}", "userId", a.id, "friendId", ids(b.id, NULL),
                                    "roomName", n129)),
                  a.id, "BAD_REQUEST");
    free(n129);
    assert_true(kc_create_room(g_c, &a, bonly, "same participants", r5));
    assert_string_not_equal(r2, r3);
    assert_string_not_equal(r4, r5);
    const char *all[] = { r1, r2, r3, r4, r5 };
    s = assert_rooms(&a, all, 5); /* sorted by roomId */
    KC_ASSERT_STR(find_room(s, r3), "roomName", "");
    KC_ASSERT_STR(find_room(s, r4), "roomName", n128);
    assert_non_null(kc_str(find_room(s, r2), "roomName"));
    json_decref(s);
    free(n128);

    /* c is only in r1 */
    json_t *ec = kc_wait_events(g_c, c.id, "room", r1, 1, 10000);
    json_decref(ec);
    const char *only1[] = { r1 };
    json_decref(assert_rooms(&c, only1, 1));

    /* NOT_A_FRIEND and USER_NOT_FOUND: no room is made */
    char ghost[80];
    kc_uid(ghost, sizeof(ghost), "noroomuser");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-room", a.id, a.session,
                          json_pack("{ss so ss}", "userId", a.id, "friendId",
                                    ids(b.id, d.id, NULL), "roomName", "nope")),
                  a.id, "NOT_A_FRIEND");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-room", a.id, a.session,
                          json_pack("{ss so ss}", "userId", a.id, "friendId",
                                    ids(b.id, ghost, NULL), "roomName", "nope")),
                  a.id, "USER_NOT_FOUND");
    /* friendship is directed: b does not follow a */
    KC_EXPECT_ERR(kc_call(g_c, "user-add-room", b.id, b.session,
                          json_pack("{ss so}", "userId", b.id, "friendId", ids(a.id, NULL))),
                  b.id, "NOT_A_FRIEND");
    /* shape */
    KC_EXPECT_ERR(kc_call(g_c, "user-add-room", a.id, a.session,
                          json_pack("{ss s[]}", "userId", a.id, "friendId")),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-room", a.id, a.session,
                          json_pack("{ss}", "userId", a.id)),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-room", a.id, a.session,
                          json_pack("{ss so si}", "userId", a.id, "friendId", ids(b.id, NULL),
                                    "roomName", 3)),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-room", a.id, a.session,
                          json_pack("{ss so}", "userId", a.id, "friendId", ids("bad id!", NULL))),
                  a.id, "BAD_REQUEST");
    json_t *l101 = json_array();
    for (int k = 0; k < 101; k++) {
        char g[80];
        kc_uid(g, sizeof(g), "nobody");
        json_array_append_new(l101, json_string(g));
    }
    KC_EXPECT_ERR(kc_call(g_c, "user-add-room", a.id, a.session,
                          json_pack("{ss so}", "userId", a.id, "friendId", l101)),
                  a.id, "BAD_REQUEST");
    char raw[512];
    int rl = snprintf(raw, sizeof(raw),
                      "{\"userId\":\"%s\",\"friendId\":[\"%s\"],\"roomName\":\"\xed\xa0\x80\"}",
                      a.id, b.id); /* a UTF-16 surrogate encoded in UTF-8: invalid */
    KC_EXPECT_ERR(call_raw("user-add-room", a.id, a.session, raw, (size_t)rl), a.id,
                  "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-room", a.id, a.session,
                          json_pack("{ss so}", "userId", b.id, "friendId", ids(c.id, NULL))),
                  NULL, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-search-room", a.id, a.session,
                          json_pack("{ss}", "userId", b.id)),
                  NULL, "BAD_REQUEST");

    s = assert_rooms(&a, all, 5);
    json_decref(s);
    json_t *sbb = search_rooms(&b); /* b: r1..r5 once their events came; never a 6th */
    assert_true(json_array_size(json_object_get(sbb, "rooms")) <= 5);
    json_decref(sbb);
    kc_sleep_ms(1000);
    json_t *ed = kc_wait_events(g_c, d.id, NULL, NULL, 1, 0);
    if (json_array_size(ed) != 0)
        fprintf(stderr, "d got events: %s\n", kc_dumps(ed));
    assert_int_equal(json_array_size(ed), 0);
    json_decref(ed);
    json_t *sd = search_rooms(&d);
    assert_int_equal(json_array_size(json_object_get(sd, "rooms")), 0);
    json_decref(sd);
}

/* ------------------------------------------------------------------------ */
/* chat                                                                     */
/* ------------------------------------------------------------------------ */

static void check_chat_resp(const json_t *r, const kc_user *w, const char *room, json_int_t seq,
                            const char *cmid)
{
    assert_true(kc_check_ok(r, w->id));
    KC_ASSERT_STR(r, "roomId", room);
    KC_ASSERT_STR(r, "writerId", w->id);
    KC_ASSERT_INT(r, "seq", seq);
    assert_true(kc_check_iso(kc_str(r, "createdAt"), "chat createdAt"));
    KC_ASSERT_STR(r, "clientMsgId", cmid);
}

static json_t *chat_body(const kc_user *w, const char *room, const char *msg, const char *cmid)
{
    json_t *b = json_pack("{ss ss ss}", "roomId", room, "writerId", w->id, "message", msg);
    if (cmid != NULL)
        json_object_set_new(b, "clientMsgId", json_string(cmid));
    return b;
}

static void test_chat(void **state)
{
    (void)state;
    kc_user a, b, c, d;
    new_user(&a, "ca");
    new_user(&b, "cb");
    new_user(&c, "cc");
    new_user(&d, "cd");
    const char *bc[] = { b.id, c.id, NULL };
    assert_true(kc_add_friends(g_c, &a, bc));
    char room[65];
    assert_true(kc_create_room(g_c, &a, bc, "chat room", room));
    json_decref(kc_wait_events(g_c, b.id, "room", room, 1, 10000));

    struct { const kc_user *w; const char *msg; const char *cmid; } sent[] = {
        { &a, "hello", NULL }, { &b, "hi \xf0\x9f\x91\x8b", "" }, { &a, "third", "cm-1" },
    };
    for (int i = 0; i < 3; i++) {
        json_t *r = kc_call(g_c, "user-add-chat", sent[i].w->id, sent[i].w->session,
                            chat_body(sent[i].w, room, sent[i].msg, sent[i].cmid));
        check_chat_resp(r, sent[i].w, room, i + 1, sent[i].cmid ? sent[i].cmid : "");
        json_decref(r);
    }

    /* every participant, the writer included, gets every message in seq order */
    const kc_user *members[] = { &a, &b, &c };
    for (int m = 0; m < 3; m++) {
        json_t *ev = kc_wait_events(g_c, members[m]->id, "chat", room, 3, 10000);
        if (json_array_size(ev) != 3)
            fprintf(stderr, "chat events of %s: %s\n", members[m]->id, kc_dumps(ev));
        assert_int_equal(json_array_size(ev), 3);
        for (int i = 0; i < 3; i++) {
            json_t *e = json_array_get(ev, (size_t)i);
            KC_ASSERT_STR(e, "type", "chat");
            KC_ASSERT_STR(e, "userId", members[m]->id);
            KC_ASSERT_STR(e, "roomId", room);
            KC_ASSERT_INT(e, "seq", i + 1);
            KC_ASSERT_STR(e, "writerId", sent[i].w->id);
            KC_ASSERT_STR(e, "message", sent[i].msg);
            assert_true(kc_check_iso(kc_str(e, "createdAt"), "event createdAt"));
            KC_ASSERT_STR(e, "clientMsgId", sent[i].cmid ? sent[i].cmid : "");
        }
        json_decref(ev);
    }

    /* idempotent resend: the first seq, nothing new stored */
    json_t *r = kc_call(g_c, "user-add-chat", a.id, a.session, chat_body(&a, room, "third", "cm-1"));
    check_chat_resp(r, &a, room, 3, "cm-1");
    json_decref(r);
    r = kc_call(g_c, "user-add-chat", a.id, a.session,
                chat_body(&a, room, "third, edited", "cm-1"));
    check_chat_resp(r, &a, room, 3, "cm-1");
    json_decref(r);
    json_t *h = history(&a, room, -1, -1);
    assert_true(kc_check_ok(h, a.id));
    assert_int_equal(json_array_size(json_object_get(h, "messages")), 3);
    KC_ASSERT_STR(json_array_get(json_object_get(h, "messages"), 2), "message", "third");
    json_decref(h);

    /* the key is (writer, room, clientMsgId): another writer's cm-1 is new */
    r = kc_call(g_c, "user-add-chat", b.id, b.session, chat_body(&b, room, "b's cm-1", "cm-1"));
    check_chat_resp(r, &b, room, 4, "cm-1");
    json_decref(r);
    /* empty clientMsgId: no idempotency */
    assert_int_equal(kc_chat(g_c, &c, room, "again", ""), 5);
    assert_int_equal(kc_chat(g_c, &c, room, "again", ""), 6);
    /* limits: message 1..4096 bytes, clientMsgId 0..64 bytes */
    char *m4096 = rep("m", 4096, ""), *m4097 = rep("m", 4097, ""),
         *u4096 = rep("\xc3\xa9", 2048, ""), *c64 = rep("k", 64, ""), *c65 = rep("k", 65, "");
    assert_int_equal(kc_chat(g_c, &a, room, m4096, NULL), 7);
    assert_int_equal(kc_chat(g_c, &a, room, u4096, NULL), 8);
    assert_int_equal(kc_chat(g_c, &a, room, "max cmid", c64), 9);
    KC_EXPECT_ERR(kc_call(g_c, "user-add-chat", a.id, a.session, chat_body(&a, room, m4097, NULL)),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-chat", a.id, a.session, chat_body(&a, room, "", NULL)),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-chat", a.id, a.session, chat_body(&a, room, "x", c65)),
                  a.id, "BAD_REQUEST");
    free(m4096);
    free(m4097);
    free(u4096);
    free(c64);
    free(c65);
    char raw[512];
    int rl = snprintf(raw, sizeof(raw),
                      "{\"roomId\":\"%s\",\"writerId\":\"%s\",\"message\":\"bad \xc0\xaf\"}", room,
                      a.id);
    KC_EXPECT_ERR(call_raw("user-add-chat", a.id, a.session, raw, (size_t)rl), a.id,
                  "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-chat", a.id, a.session,
                          json_pack("{ss ss}", "writerId", a.id, "message", "no room")),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-chat", a.id, a.session,
                          json_pack("{ss ss}", "roomId", room, "writerId", a.id)),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-chat", a.id, a.session,
                          json_pack("{ss ss}", "roomId", room, "message", "no writer")),
                  NULL, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-chat", a.id, a.session,
                          json_pack("{ss ss si}", "roomId", room, "writerId", a.id, "message", 1)),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-chat", a.id, a.session,
                          json_pack("{ss ss ss si}", "roomId", room, "writerId", a.id, "message",
                                    "x", "clientMsgId", 7)),
                  a.id, "BAD_REQUEST");
    /* key must be the writerId */
    KC_EXPECT_ERR(kc_call(g_c, "user-add-chat", a.id, a.session, chat_body(&b, room, "x", NULL)),
                  NULL, "BAD_REQUEST");

    /* ROOM_NOT_FOUND comes first, then NOT_A_MEMBER */
    char ghost[80];
    kc_uid(ghost, sizeof(ghost), "noroom");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-chat", a.id, a.session, chat_body(&a, ghost, "x", NULL)),
                  a.id, "ROOM_NOT_FOUND");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-chat", d.id, d.session, chat_body(&d, ghost, "x", NULL)),
                  d.id, "ROOM_NOT_FOUND");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-chat", d.id, d.session,
                          chat_body(&d, room, "let me in", "d-1")),
                  d.id, "NOT_A_MEMBER");

    /* nothing of the refused ones was stored; lastSeq follows */
    h = history(&a, room, -1, 100);
    assert_true(kc_check_ok(h, a.id));
    json_t *msgs = json_object_get(h, "messages");
    assert_int_equal(json_array_size(msgs), 9);
    for (size_t i = 0; i < 9; i++)
        KC_ASSERT_INT(json_array_get(msgs, i), "seq", (json_int_t)i + 1);
    json_decref(h);
    json_t *s = search_rooms(&b);
    KC_ASSERT_INT(find_room(s, room), "lastSeq", 9);
    json_decref(s);
    json_t *ev = kc_wait_events(g_c, c.id, "chat", room, 9, 10000);
    assert_int_equal(json_array_size(ev), 9);
    for (size_t i = 0; i < 9; i++)
        KC_ASSERT_INT(json_array_get(ev, i), "seq", (json_int_t)i + 1);
    json_decref(ev);
    json_t *ed = kc_wait_events(g_c, d.id, NULL, NULL, 1, 500);
    assert_int_equal(json_array_size(ed), 0);
    json_decref(ed);
}

/* ------------------------------------------------------------------------ */
/* history                                                                  */
/* ------------------------------------------------------------------------ */

#define HIST_N 120

/* messages of @p h are seqs from..to ascending, with all fields */
static void check_page(json_t *h, const kc_user *reader, const char *room, const kc_user *writer,
                       json_int_t from, json_int_t to)
{
    assert_true(kc_check_ok(h, reader->id));
    KC_ASSERT_STR(h, "roomId", room);
    json_t *msgs = json_object_get(h, "messages");
    assert_true(json_is_array(msgs));
    size_t n = to >= from ? (size_t)(to - from + 1) : 0;
    if (json_array_size(msgs) != n)
        fprintf(stderr, "expected seqs %lld..%lld: %s\n", (long long)from, (long long)to,
                kc_dumps(h));
    assert_int_equal(json_array_size(msgs), n);
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        json_int_t seq = from + (json_int_t)i;
        char want[64], cmid[64];
        snprintf(want, sizeof(want), "msg %lld", (long long)seq);
        snprintf(cmid, sizeof(cmid), "h%lld", (long long)seq);
        KC_ASSERT_INT(m, "seq", seq);
        KC_ASSERT_STR(m, "writerId", writer->id);
        KC_ASSERT_STR(m, "message", want);
        assert_true(kc_check_iso(kc_str(m, "createdAt"), "history createdAt"));
        KC_ASSERT_STR(m, "clientMsgId", cmid);
    }
}

static void test_history(void **state)
{
    (void)state;
    kc_user a, b, d;
    new_user(&a, "ha");
    new_user(&b, "hb");
    new_user(&d, "hd");
    befriend(&a, &b);
    char room[65];
    const char *bl[] = { b.id, NULL };
    assert_true(kc_create_room(g_c, &a, bl, "history", room));
    json_decref(kc_wait_events(g_c, b.id, "room", room, 1, 10000));

    json_t *h = history(&a, room, -1, -1);
    check_page(h, &a, room, &a, 1, 0);
    json_decref(h);

    /* one writer, pipelined: read in order, so seq i is message i */
    char cids[HIST_N][72];
    for (int i = 0; i < HIST_N; i++) {
        char msg[64], cmid[64];
        snprintf(msg, sizeof(msg), "msg %d", i + 1);
        snprintf(cmid, sizeof(cmid), "h%d", i + 1);
        json_t *body = chat_body(&a, room, msg, cmid);
        assert_true(kc_send_req(g_c, "user-add-chat", a.id, a.session, NULL, body, cids[i]));
        json_decref(body);
    }
    for (int i = 0; i < HIST_N; i++) {
        const kc_record *rec = kc_wait_cid(g_c, "user-add-chat", cids[i], 20000);
        if (rec == NULL)
            kc_diag_dump();
        assert_non_null(rec);
        char cmid[64];
        snprintf(cmid, sizeof(cmid), "h%d", i + 1);
        check_chat_resp(rec->body, &a, room, i + 1, cmid);
    }

    h = history(&a, room, -1, -1); /* default limit 50: the newest 50 */
    check_page(h, &a, room, &a, HIST_N - 49, HIST_N);
    json_decref(h);
    h = history(&b, room, -1, 100);
    check_page(h, &b, room, &a, HIST_N - 99, HIST_N);
    json_decref(h);
    h = history(&a, room, -1, 1);
    check_page(h, &a, room, &a, HIST_N, HIST_N);
    json_decref(h);
    h = history(&a, room, 71, 30);
    check_page(h, &a, room, &a, 41, 70);
    json_decref(h);
    h = history(&b, room, 5, -1);
    check_page(h, &b, room, &a, 1, 4);
    json_decref(h);
    h = history(&a, room, 1, -1);
    check_page(h, &a, room, &a, 1, 0);
    json_decref(h);
    h = history(&a, room, 100000, -1);
    check_page(h, &a, room, &a, HIST_N - 49, HIST_N);
    json_decref(h);

    /* paging backwards with beforeSeq = the oldest seq seen sees each once */
    json_int_t before = -1, expect_top = HIST_N;
    int pages = 0;
    while (expect_top > 0 && pages++ < 20) {
        h = history(&b, room, before, 37);
        json_int_t from = expect_top - 36 > 1 ? expect_top - 36 : 1;
        check_page(h, &b, room, &a, from, expect_top);
        json_decref(h);
        before = from;
        expect_top = from - 1;
    }
    assert_int_equal(expect_top, 0);

    /* limits and types */
    KC_EXPECT_ERR(history(&a, room, -1, 0), a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(history(&a, room, -1, 101), a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "room-history", a.id, a.session,
                          json_pack("{ss ss ss}", "userId", a.id, "roomId", room, "limit", "10")),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "room-history", a.id, a.session,
                          json_pack("{ss ss ss}", "userId", a.id, "roomId", room, "beforeSeq",
                                    "x")),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "room-history", a.id, a.session, json_pack("{ss}", "userId", a.id)),
                  a.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "room-history", a.id, a.session,
                          json_pack("{ss ss}", "userId", b.id, "roomId", room)),
                  NULL, "BAD_REQUEST");

    /* ROOM_NOT_FOUND first, then NOT_A_MEMBER */
    char ghost[80];
    kc_uid(ghost, sizeof(ghost), "noroom");
    KC_EXPECT_ERR(history(&a, ghost, -1, -1), a.id, "ROOM_NOT_FOUND");
    KC_EXPECT_ERR(history(&d, ghost, -1, -1), d.id, "ROOM_NOT_FOUND");
    KC_EXPECT_ERR(history(&d, room, -1, -1), d.id, "NOT_A_MEMBER");
}

/* ------------------------------------------------------------------------ */
/* envelope                                                                 */
/* ------------------------------------------------------------------------ */

static void test_envelope(void **state)
{
    (void)state;
    kc_user u;
    kc_user_init(&u, "env");

    /* no kchat-cid: the answer has none (kc_call_req checks), keyed by the user */
    json_t *body = user_add_body(u.id, u.pw, u.email, u.name);
    const kc_record *rec = NULL;
    kc_req req = { .op = "user-add", .key = u.id, .body = body, .no_cid = true };
    json_t *r = kc_call_req(g_c, &req, &rec, NULL);
    json_decref(body);
    assert_true(kc_check_ok(r, u.id));
    assert_false(kc_record_has_header(rec, KC_HDR_CID));
    assert_true(kc_record_key_is(rec, u.id));
    json_decref(r);

    /* a 64-byte opaque cid comes back byte for byte */
    char cid[65];
    memset(cid, 0, sizeof(cid));
    const char *pat = " {\"cid\"}: ~!@#$%^&*()[]<>?/\\|;',.`= ";
    for (size_t i = 0; i < 64; i++)
        cid[i] = pat[i % strlen(pat)];
    body = json_pack("{ss ss}", "userId", u.id, "userPw", u.pw);
    kc_req lreq = { .op = "login", .key = u.id, .body = body, .cid = cid };
    r = kc_call_req(g_c, &lreq, &rec, NULL);
    json_decref(body);
    assert_true(kc_check_ok(r, u.id));
    size_t cl = 0;
    const char *rcid = kc_record_header(rec, KC_HDR_CID, &cl);
    assert_non_null(rcid);
    assert_int_equal(cl, 64);
    assert_memory_equal(rcid, cid, 64);
    assert_string_equal(kc_record_header(rec, KC_HDR_CTYPE, NULL), KC_CT_JSON);
    snprintf(u.session, sizeof(u.session), "%s", kc_str(r, "sessionId"));
    json_decref(r);

    /* no content-type: JSON by default, answered in JSON */
    body = json_pack("{ss}", "userId", u.id);
    kc_req nreq = { .op = "user-search-friend", .key = u.id, .session = u.session, .body = body,
                    .no_ctype = true };
    r = kc_call_req(g_c, &nreq, &rec, NULL);
    json_decref(body);
    assert_true(kc_check_ok(r, u.id));
    assert_string_equal(kc_record_header(rec, KC_HDR_CTYPE, NULL), KC_CT_JSON);
    json_decref(r);

    /* error answers carry the envelope too */
    body = json_pack("{ss}", "userId", u.id);
    kc_req ereq = { .op = "user-search-room", .key = u.id, .body = body };
    r = kc_call_req(g_c, &ereq, &rec, NULL);
    json_decref(body);
    assert_true(kc_check_err(r, u.id, "UNAUTHENTICATED"));
    assert_true(kc_record_key_is(rec, u.id));
    assert_string_equal(kc_record_header(rec, KC_HDR_CTYPE, NULL), KC_CT_JSON);
    json_decref(r);
}

static void test_too_large(void **state)
{
    (void)state;
    kc_user u, w;
    new_user(&u, "big");
    new_user(&w, "bigw");
    befriend(&w, &u);
    KC_EXPECT_OK(kc_call(g_c, "user-status-change", u.id, u.session, status_body(u.id, "small")),
                 u.id);

    /* a body of exactly 65536 bytes (padded with an unknown field) is fine */
    char head[256];
    for (int extra = 0; extra <= 1; extra++) {
        const char *st = extra ? "too big" : "exactly 64k";
        int hl = snprintf(head, sizeof(head), "{\"userId\":\"%s\",\"userStatus\":\"%s\",\"pad\":\"",
                          u.id, st);
        size_t total = 65536 + (size_t)extra;
        char *raw = malloc(total);
        assert_non_null(raw);
        memcpy(raw, head, (size_t)hl);
        memset(raw + hl, 'p', total - (size_t)hl - 2);
        memcpy(raw + total - 2, "\"}", 2);
        json_t *r = call_raw("user-status-change", u.id, u.session, raw, total);
        free(raw);
        if (extra) {
            assert_true(kc_check_err(r, u.id, "TOO_LARGE"));
        } else {
            assert_true(kc_check_ok(r, u.id));
            KC_ASSERT_STR(r, "userStatus", st);
        }
        json_decref(r);
    }
    assert_true(friend_status_is(&w, u.id, "exactly 64k"));
}

static void test_key_mismatch(void **state)
{
    (void)state;
    kc_user a, b;
    new_user(&a, "keya");
    new_user(&b, "keyb");
    befriend(&a, &b);
    char room[65];
    const char *bl[] = { b.id, NULL };
    assert_true(kc_create_room(g_c, &a, bl, "k", room));

    /* key a (with a's session), body about b */
    KC_EXPECT_ERR(kc_call(g_c, "login", a.id, NULL,
                          json_pack("{ss ss}", "userId", b.id, "userPw", b.pw)),
                  NULL, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "logout", a.id, a.session, json_pack("{ss}", "userId", b.id)),
                  NULL, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-status-change", a.id, a.session, status_body(b.id, "k")),
                  NULL, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-friend", a.id, a.session,
                          json_pack("{ss so}", "userId", b.id, "friendId", ids(a.id, NULL))),
                  NULL, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-room", a.id, a.session,
                          json_pack("{ss so}", "userId", b.id, "friendId", ids(a.id, NULL))),
                  NULL, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add-chat", a.id, a.session, chat_body(&b, room, "k", NULL)),
                  NULL, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "room-history", a.id, a.session,
                          json_pack("{ss ss}", "userId", b.id, "roomId", room)),
                  NULL, "BAD_REQUEST");
    /* nothing changed: both sessions live, no chat, b follows nobody */
    KC_EXPECT_OK(kc_call(g_c, "user-search-friend", a.id, a.session,
                         json_pack("{ss}", "userId", a.id)), a.id);
    const char *none[] = { NULL };
    assert_friends(&b, none);
    json_t *h = history(&a, room, -1, -1);
    assert_true(kc_check_ok(h, a.id));
    assert_int_equal(json_array_size(json_object_get(h, "messages")), 0);
    json_decref(h);
}

/* Last: SIGTERM gives a clean exit 0 within 10 s. */
static void test_sigterm_clean_exit(void **state)
{
    (void)state;
    kc_client_free(g_c);
    g_c = NULL;
    int st = 0;
    int rc = kc_proc_stop(g_srv, SIGTERM, 10, &st);
    if (rc != 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "server did not exit cleanly on SIGTERM: %s\n", kc_status_str(st));
        kc_proc_log_tail(g_srv, 40, stderr);
    }
    assert_int_equal(rc, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_register_success),
        cmocka_unit_test(test_register_already_exists),
        cmocka_unit_test(test_register_limits),
        cmocka_unit_test(test_login_success),
        cmocka_unit_test(test_login_bad_credentials),
        cmocka_unit_test(test_logout),
        cmocka_unit_test(test_logout_bare_value),
        cmocka_unit_test(test_several_sessions),
        cmocka_unit_test(test_unauthenticated),
        cmocka_unit_test(test_status_change),
        cmocka_unit_test(test_friends),
        cmocka_unit_test(test_rooms),
        cmocka_unit_test(test_chat),
        cmocka_unit_test(test_history),
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_key_mismatch),
        cmocka_unit_test(test_sigterm_clean_exit),
    };
    return cmocka_run_group_tests_name("kchat operations (JSON)", tests, group_setup,
                                       group_teardown);
}
