/* Unit tests of the user operations (src/actors/users.c, throttle.c, reply.c)
 * against temporary stores, without a broker (tests/unit/ops/fixture.h):
 * user-add, login, logout, user-status-change (PROTOCOL.md section 3, rows
 * 1-4), their answers and error codes, sessions (section 4: a session per
 * login, logout revoking only its own, idle expiry, the check turned off),
 * login throttling, the compatibility forms, msgpack answers. */
#include "ops/fixture.c"

#define ADD_ALICE "{\"userId\":\"alice\",\"userPw\":\"secret-pw-1\"," \
                  "\"email\":\"alice@example.com\",\"userName\":\"Alice\"}"

/* No value of the last call holds @p needle. */
static void assert_nowhere(const struct fx *f, const char *needle)
{
    for (size_t i = 0; i < f->n_recs; i++)
        assert_null(memmem(f->recs[i].value, f->recs[i].value_len, needle, strlen(needle)));
}

/* The stored session @p sid of shard @p sh (stored under its hash), or NULL. */
static json_t *session_get(struct fx *f, uint32_t sh, const char *sid)
{
    char key[KCHAT__SESSION_KEY_LEN + 1];

    kchat__session_key(sid, strlen(sid), key);
    return fx_get(f, sh, KCHAT_TBL_SESSIONS, key, strlen(key));
}

/* Register alice (ADD_ALICE) and check the whole answer. */
static void add_alice(struct fx *f)
{
    json_t *a = fx_ok(f, KCHAT_OP_USER_ADD, "alice", NULL, ADD_ALICE);
    char ts[25];

    kchat_iso8601(f->now_ms, ts);
    fx_assert_json(a, "{\"userId\":\"alice\",\"isSuccess\":true,\"errorCode\":\"\","
                      "\"errorMessage\":\"\",\"user\":{\"userId\":\"alice\","
                      "\"email\":\"alice@example.com\",\"userName\":\"Alice\",\"userStatus\":\"\","
                      "\"joinDate\":\"%s\",\"loginDate\":\"\",\"logoutDate\":\"\"}}", ts);
    json_decref(a);
}

static void test_user_add(void **state)
{
    struct fx *f = *state;
    json_t *dir, *stored;
    char *text;

    add_alice(f);
    /* the answer and one directory record, nothing else */
    assert_int_equal(fx_count(f, NULL), 2);
    assert_int_equal(fx_count(f, KCHAT_TOPIC_DIRECTORY), 1);
    dir = fx_records(f, KCHAT_TOPIC_DIRECTORY);
    fx_assert_json(dir, "[{\"userId\":\"alice\",\"userName\":\"Alice\",\"userStatus\":\"\","
                        "\"ver\":1,\"online\":false,\"lastSeen\":\"\"}]");
    json_decref(dir);
    for (size_t i = 0; i < f->n_recs; i++)
        if (!strcmp(f->recs[i].topic, KCHAT_TOPIC_DIRECTORY))
            assert_memory_equal(f->recs[i].key, "alice", 5);
    /* the replica has it */
    dir = kchat__directory_get(&f->be, "alice");
    fx_assert_json(dir, "{\"userId\":\"alice\",\"userName\":\"Alice\",\"userStatus\":\"\","
                        "\"ver\":1,\"online\":false,\"lastSeen\":\"\"}");
    json_decref(dir);
    /* the password leaves nothing behind but its Argon2id hash in the store */
    assert_nowhere(f, "secret-pw-1");
    assert_nowhere(f, "argon2");
    stored = fx_get(f, fx_shard_of(f, "alice"), KCHAT_TBL_USERS, "alice", 5);
    assert_non_null(stored);
    assert_memory_equal(fx_str(stored, "pw"), "$argon2id$", 10);
    text = json_dumps(stored, 0);
    assert_null(strstr(text, "secret-pw-1"));
    free(text);
    json_decref(stored);
}

static void test_user_add_already_exists(void **state)
{
    struct fx *f = *state;
    json_t *a;

    json_decref(fx_ok(f, KCHAT_OP_USER_ADD, "alice", NULL, ADD_ALICE));
    a = fx_err(f, "ALREADY_EXISTS", KCHAT_OP_USER_ADD, "alice", NULL,
               "{\"userId\":\"alice\",\"userPw\":\"another-pw\","
               "\"email\":\"mallory@example.com\",\"userName\":\"Mallory\"}");
    assert_null(json_object_get(a, "user"));
    json_decref(a);
    assert_int_equal(fx_count(f, KCHAT_TOPIC_DIRECTORY), 0);
    /* the first password still holds, the second never did */
    json_decref(fx_ok(f, KCHAT_OP_LOGIN, "alice", NULL,
                      "{\"userId\":\"alice\",\"userPw\":\"secret-pw-1\"}"));
    json_decref(fx_err(f, "BAD_CREDENTIALS", KCHAT_OP_LOGIN, "alice", NULL,
                       "{\"userId\":\"alice\",\"userPw\":\"another-pw\"}"));
}

static void test_user_add_bad_request(void **state)
{
    struct fx *f = *state;
    char *pw7 = fx_rep(f, 'p', 7), *pw129 = fx_rep(f, 'p', 129);
    char *name65 = fx_rep(f, 'n', 65), *email255 = fx_rep(f, 'e', 253), *id65 = fx_rep(f, 'i', 65);
    char *bodies[40];
    size_t n = 0;

#define BODY(...) assert_true(asprintf(&bodies[n++], __VA_ARGS__) > 0)
    BODY("{\"userPw\":\"secret-pw-1\",\"email\":\"a@b.c\",\"userName\":\"A\"}");
    BODY("{\"userId\":\"alice\",\"email\":\"a@b.c\",\"userName\":\"A\"}");
    BODY("{\"userId\":\"alice\",\"userPw\":\"secret-pw-1\",\"userName\":\"A\"}");
    BODY("{\"userId\":\"alice\",\"userPw\":\"secret-pw-1\",\"email\":\"a@b.c\"}");
    BODY("{\"userId\":\"alice\",\"userPw\":\"%s\",\"email\":\"a@b.c\",\"userName\":\"A\"}", pw7);
    BODY("{\"userId\":\"alice\",\"userPw\":\"%s\",\"email\":\"a@b.c\",\"userName\":\"A\"}", pw129);
    BODY("{\"userId\":\"alice\",\"userPw\":\"secret-pw-1\",\"email\":\"abc\",\"userName\":\"A\"}");
    BODY("{\"userId\":\"alice\",\"userPw\":\"secret-pw-1\",\"email\":\"a@\",\"userName\":\"A\"}");
    BODY("{\"userId\":\"alice\",\"userPw\":\"secret-pw-1\",\"email\":\"a@%s\",\"userName\":\"A\"}",
         email255);
    BODY("{\"userId\":\"alice\",\"userPw\":\"secret-pw-1\",\"email\":\"a@b.c\",\"userName\":\"\"}");
    BODY("{\"userId\":\"alice\",\"userPw\":\"secret-pw-1\",\"email\":\"a@b.c\","
         "\"userName\":\"%s\"}",
         name65);
    BODY("{\"userId\":\"alice\",\"userPw\":\"secret-pw-1\",\"email\":\"a@b.c\","
         "\"userName\":\"A\\u0001B\"}");
    BODY("{\"userId\":\"alice\",\"userPw\":\"secret-pw-1\",\"email\":\"a@b.c\","
         "\"userName\":\"A\\u007fB\"}");
    BODY("{\"userId\":\"alice\",\"userPw\":\"secret-pw-1\",\"email\":\"a@b.c\","
         "\"userName\":\"A\\u0085B\"}");                  /* a C1 control */
    BODY("{\"userId\":\"alice\",\"userPw\":\"secret-pw-1\",\"email\":\"a@b.c\","
         "\"userName\":\"A\xff\"}");                       /* not UTF-8 */
    BODY("{\"userId\":\"alice\",\"userPw\":12345678,\"email\":\"a@b.c\",\"userName\":\"A\"}");
    BODY("{\"userId\":\"alice\",\"userPw\":\"secret-pw-1\",\"email\":\"a@b.c\",\"userName\":null}");
    BODY("{\"userId\":\"al ice\",\"userPw\":\"secret-pw-1\",\"email\":\"a@b.c\","
         "\"userName\":\"A\"}");
    BODY("{\"userId\":\"%s\",\"userPw\":\"secret-pw-1\",\"email\":\"a@b.c\",\"userName\":\"A\"}",
         id65);
    BODY("{\"userId\":\"bob\",\"userPw\":\"secret-pw-1\",\"email\":\"a@b.c\",\"userName\":\"A\"}");
    BODY("{\"userId\":\"alice\",\"userId\":\"alice\",\"userPw\":\"secret-pw-1\","
         "\"email\":\"a@b.c\",\"userName\":\"A\"}");       /* a key twice */
    BODY("{\"userId\":\"alice\"");
    BODY("[\"alice\"]");
    BODY("\"alice\"");
    BODY("42");
    BODY(" ");
#undef BODY
    for (size_t i = 0; i < n; i++) {
        json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_USER_ADD, "alice", NULL, "%s", bodies[i]));
        assert_int_equal(fx_count(f, NULL), 1);   /* the answer only */
        free(bodies[i]);
    }
    /* an empty record value */
    json_decref(fx_call_raw(f, KCHAT_OP_USER_ADD, "alice", NULL, KCHAT_FMT_JSON, "", 0));
    assert_null(kchat__directory_get(&f->be, "alice"));
    assert_int_equal(atomic_load(&f->be.stats.bad_requests), n + 1);
}

/* The limits of section 2 are inclusive. */
static void test_user_add_limits_accepted(void **state)
{
    struct fx *f = *state;
    char *pw8 = fx_rep(f, 'p', 8), *pw128 = fx_rep(f, 'p', 128);
    char *name64 = fx_rep(f, 'n', 64), *email = fx_rep(f, 'e', 252), *id64 = fx_rep(f, 'i', 64);
    json_t *a;

    a = fx_ok(f, KCHAT_OP_USER_ADD, id64, NULL,
              "{\"userId\":\"%s\",\"userPw\":\"%s\",\"email\":\"a@%s\",\"userName\":\"%s\"}",
              id64, pw128, email, name64);
    assert_int_equal(strlen(fx_str(json_object_get(a, "user"), "email")), 254);
    json_decref(a);
    a = fx_ok(f, KCHAT_OP_USER_ADD, "A-z_0.9", NULL,
              "{\"userId\":\"A-z_0.9\",\"userPw\":\"%s\",\"email\":\"a@b\","
              "\"userName\":\"\xc3\xa9t\xc3\xa9 \xe2\x98\x83\"}", pw8);
    assert_string_equal(fx_str(json_object_get(a, "user"), "userName"),
                        "\xc3\xa9t\xc3\xa9 \xe2\x98\x83");
    json_decref(a);
    /* unknown fields are ignored */
    json_decref(fx_ok(f, KCHAT_OP_USER_ADD, "carol", NULL,
                      "{\"userId\":\"carol\",\"userPw\":\"%s\",\"email\":\"c@d\","
                      "\"userName\":\"C\",\"extra\":{\"x\":[1,2]}}", pw8));
}

/* A record value over 64 KiB is TOO_LARGE; one of exactly 64 KiB is not. */
static void test_user_add_too_large(void **state)
{
    struct fx *f = *state;
    const char *head = "{\"userId\":\"alice\",\"userPw\":\"secret-pw-1\",\"email\":\"a@b.c\","
                       "\"userName\":\"A\",\"pad\":\"";
    size_t pad = KCHAT_MAX_VALUE - strlen(head) - 2;
    char *p = fx_rep(f, 'x', pad);
    json_t *a;

    a = fx_err(f, "TOO_LARGE", KCHAT_OP_USER_ADD, "alice", NULL, "%s%sx\"}", head, p);
    json_decref(a);
    assert_int_equal(atomic_load(&f->be.stats.too_large), 1);
    a = fx_ok(f, KCHAT_OP_USER_ADD, "alice", NULL, "%s%s\"}", head, p);
    json_decref(a);
}

/* A password that cannot be hashed (here: a memory limit over Argon2's
 * maximum) is INTERNAL, and registers nobody. */
static void test_user_add_internal(void **state)
{
    struct fx *f = *state;

    f->cfg.pwhash_mem = 1L << 50;
    json_decref(fx_err(f, "INTERNAL", KCHAT_OP_USER_ADD, "alice", NULL, ADD_ALICE));
    assert_int_equal(fx_count(f, NULL), 1);
    f->cfg.pwhash_mem = crypto_pwhash_MEMLIMIT_MIN;
    json_decref(fx_ok(f, KCHAT_OP_USER_ADD, "alice", NULL, ADD_ALICE));
}

/* The replica takes a profile only when newer than the one it has (records
 * of kchat-directory may arrive late or twice). */
static void test_directory_replica(void **state)
{
    struct fx *f = *state;
    const char *sa = fx_user(f, "alice");
    json_t *old, *v;

    json_decref(fx_ok(f, KCHAT_OP_STATUS, "alice", sa,
                      "{\"userId\":\"alice\",\"userStatus\":\"new\"}"));
    old = json_pack("{s:s, s:s, s:s, s:i}", "userId", "alice", "userName", "Name alice",
                    "userStatus", "old", "ver", 1);
    assert_int_equal(kchat__directory_apply(&f->be, old), KCHAT_OK);
    json_object_set_new(old, "ver", json_integer(2));
    assert_int_equal(kchat__directory_apply(&f->be, old), KCHAT_OK);
    v = kchat__directory_get(&f->be, "alice");
    fx_assert_json(v, "{\"userId\":\"alice\",\"userName\":\"Name alice\",\"userStatus\":\"new\","
                      "\"ver\":2,\"online\":false,\"lastSeen\":\"\"}");
    json_decref(v);
    json_object_set_new(old, "ver", json_integer(3));
    assert_int_equal(kchat__directory_apply(&f->be, old), KCHAT_OK);
    v = kchat__directory_get(&f->be, "alice");
    assert_string_equal(fx_str(v, "userStatus"), "old");
    json_decref(v);
    json_object_set_new(old, "userId", json_string("not an id"));
    assert_int_equal(kchat__directory_apply(&f->be, old), KCHAT_EINVAL);
    json_object_del(old, "userId");
    assert_int_equal(kchat__directory_apply(&f->be, old), KCHAT_EINVAL);
    json_decref(old);
    assert_null(kchat__directory_get(&f->be, "nobody"));
}

static void test_login(void **state)
{
    struct fx *f = *state;
    int64_t t0 = f->now_ms;
    char join[25], when[25], *dump;
    const char *s1, *s2;
    json_t *a, *sess;

    fx_register(f, "alice");
    f->now_ms += 1500;
    kchat_iso8601(t0, join);
    kchat_iso8601(f->now_ms, when);
    a = fx_ok(f, KCHAT_OP_LOGIN, "alice", NULL,
              "{\"userId\":\"alice\",\"userPw\":\"" FX_PASSWORD "\"}");
    s1 = fx_str(a, "sessionId");
    assert_int_equal(strlen(s1), 32);   /* 128 random bits in hex */
    assert_int_equal(strspn(s1, "0123456789abcdef"), 32);
    fx_assert_json(json_object_get(a, "user"),
                   "{\"userId\":\"alice\",\"email\":\"alice@example.com\","
                   "\"userName\":\"Name alice\",\"userStatus\":\"\",\"joinDate\":\"%s\","
                   "\"loginDate\":\"%s\",\"logoutDate\":\"\"}", join, when);
    assert_int_equal(json_object_size(a), 6);   /* the common four, user, sessionId */
    /* the session is stored for alice at now, under the hash of its id: the
     * id itself is nowhere in the store; login publishes nothing else */
    sess = session_get(f, fx_shard_of(f, "alice"), s1);
    fx_assert_json(sess, "{\"u\":\"alice\",\"t\":%lld}", (long long)f->now_ms);
    json_decref(sess);
    assert_null(fx_get(f, fx_shard_of(f, "alice"), KCHAT_TBL_SESSIONS, s1, 32));
    dump = fx_state(f);
    assert_null(strstr(dump, s1));
    free(dump);
    assert_int_equal(fx_count(f, NULL), 1);
    assert_nowhere(f, FX_PASSWORD);
    s1 = fx_keep(f, strdup(s1));
    json_decref(a);

    /* several sessions at once: each login a new one, all valid */
    s2 = fx_login(f, "alice");
    assert_string_not_equal(s1, s2);
    json_decref(fx_ok(f, KCHAT_OP_STATUS, "alice", s1,
                      "{\"userId\":\"alice\",\"userStatus\":\"1\"}"));
    json_decref(fx_ok(f, KCHAT_OP_STATUS, "alice", s2,
                      "{\"userId\":\"alice\",\"userStatus\":\"2\"}"));
}

static void test_login_bad_credentials(void **state)
{
    struct fx *f = *state;
    json_t *a, *b;

    fx_register(f, "alice");
    a = fx_err(f, "BAD_CREDENTIALS", KCHAT_OP_LOGIN, "alice", NULL,
               "{\"userId\":\"alice\",\"userPw\":\"wrong password\"}");
    b = fx_err(f, "BAD_CREDENTIALS", KCHAT_OP_LOGIN, "nobody", NULL,
               "{\"userId\":\"nobody\",\"userPw\":\"wrong password\"}");
    /* the two cases cannot be told apart */
    assert_string_equal(fx_str(a, "errorMessage"), fx_str(b, "errorMessage"));
    assert_int_equal(json_object_size(a), 4);
    assert_int_equal(json_object_size(b), 4);
    json_decref(a);
    json_decref(b);
    assert_int_equal(atomic_load(&f->be.stats.login_failures), 2);
    /* a password under 8 bytes is a bad request, not a failed login */
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_LOGIN, "alice", NULL,
                       "{\"userId\":\"alice\",\"userPw\":\"short\"}"));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_LOGIN, "alice", NULL, "{\"userId\":\"alice\"}"));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_LOGIN, "alice", NULL,
                       "{\"userId\":\"bob\",\"userPw\":\"" FX_PASSWORD "\"}"));
    assert_int_equal(atomic_load(&f->be.stats.login_failures), 2);
}

/* @p n logins of @p id with a wrong password: BAD_CREDENTIALS, and not yet
 * throttled (no retryAfterMs). */
static void bad_logins(struct fx *f, const char *id, int n)
{
    for (int i = 0; i < n; i++) {
        json_t *a = fx_err(f, "BAD_CREDENTIALS", KCHAT_OP_LOGIN, id, NULL,
                           "{\"userId\":\"%s\",\"userPw\":\"wrong password\"}", id);
        assert_null(json_object_get(a, "retryAfterMs"));
        json_decref(a);
    }
}

/* End every lockout of @p f's shards now (instead of sleeping it out). */
static void end_lockouts(struct fx *f)
{
    for (uint32_t p = 0; p < FX_PARTITIONS; p++)
        for (size_t s = 0; s < KCHAT_THROTTLE_SETS; s++)
            for (size_t w = 0; w < KCHAT_THROTTLE_WAYS; w++)
                if (f->be.shards[p].throttle.slot[s][w].until_ms != 0)
                    f->be.shards[p].throttle.slot[s][w].until_ms = 1;
}

static void test_login_throttle(void **state)
{
    struct fx *f = *state;
    json_t *a;
    json_int_t wait;

    f->cfg.login_max_failures = 3;
    f->cfg.login_window = 300;
    f->cfg.login_lockout = 60;
    fx_register(f, "alice");
    fx_register(f, "bob");
    bad_logins(f, "alice", 3);
    /* locked: even the right password is refused, with the wait */
    a = fx_err(f, "BAD_CREDENTIALS", KCHAT_OP_LOGIN, "alice", NULL,
               "{\"userId\":\"alice\",\"userPw\":\"" FX_PASSWORD "\"}");
    wait = fx_int(a, "retryAfterMs");
    assert_in_range(wait, 1, 60000);
    assert_non_null(strstr(fx_str(a, "errorMessage"), "Too many failed login attempts"));
    assert_null(json_object_get(a, "sessionId"));
    json_decref(a);
    assert_int_equal(atomic_load(&f->be.stats.logins_throttled), 1);
    assert_int_equal(atomic_load(&f->be.stats.login_failures), 3);
    /* another user is not affected */
    json_decref(fx_ok(f, KCHAT_OP_LOGIN, "bob", NULL,
                      "{\"userId\":\"bob\",\"userPw\":\"" FX_PASSWORD "\"}"));
    /* an unknown id is counted and locked the same way */
    bad_logins(f, "ghost", 3);
    a = fx_err(f, "BAD_CREDENTIALS", KCHAT_OP_LOGIN, "ghost", NULL,
               "{\"userId\":\"ghost\",\"userPw\":\"wrong password\"}");
    assert_in_range(fx_int(a, "retryAfterMs"), 1, 60000);
    json_decref(a);
    /* the lockout over, the right password works again */
    end_lockouts(f);
    json_decref(fx_ok(f, KCHAT_OP_LOGIN, "alice", NULL,
                      "{\"userId\":\"alice\",\"userPw\":\"" FX_PASSWORD "\"}"));
}

/* A successful login forgets the failures before it. */
static void test_login_success_resets_failures(void **state)
{
    struct fx *f = *state;

    f->cfg.login_max_failures = 3;
    f->cfg.login_lockout = 60;
    fx_register(f, "alice");
    for (int round = 0; round < 3; round++) {
        bad_logins(f, "alice", 2);
        fx_login(f, "alice");
    }
    assert_int_equal(atomic_load(&f->be.stats.logins_throttled), 0);
}

static void test_login_throttle_off(void **state)
{
    struct fx *f = *state;

    f->cfg.login_max_failures = 1;
    f->cfg.login_lockout = 0;
    fx_register(f, "alice");
    bad_logins(f, "alice", 10);
    fx_login(f, "alice");
    assert_int_equal(atomic_load(&f->be.stats.logins_throttled), 0);
}

static void test_logout(void **state)
{
    struct fx *f = *state;
    const char *s1 = fx_user(f, "alice"), *s2 = fx_login(f, "alice");
    char when[25];
    json_t *a, *user;

    f->now_ms += 5000;
    kchat_iso8601(f->now_ms, when);
    a = fx_ok(f, KCHAT_OP_LOGOUT, "alice", s1, "{\"userId\":\"alice\"}");
    fx_assert_json(a, "{\"userId\":\"alice\",\"isSuccess\":true,\"errorCode\":\"\","
                      "\"errorMessage\":\"\"}");
    json_decref(a);
    assert_int_equal(fx_count(f, NULL), 1);   /* no directory record, no event */
    user = fx_get(f, fx_shard_of(f, "alice"), KCHAT_TBL_USERS, "alice", 5);
    fx_assert_time(json_object_get(user, "logoutDate"), f->now_ms);
    json_decref(user);
    assert_null(session_get(f, fx_shard_of(f, "alice"), s1));
    /* that session is gone; the other one still works */
    json_decref(fx_err(f, "UNAUTHENTICATED", KCHAT_OP_LOGOUT, "alice", s1,
                       "{\"userId\":\"alice\"}"));
    json_decref(fx_err(f, "UNAUTHENTICATED", KCHAT_OP_STATUS, "alice", s1,
                       "{\"userId\":\"alice\",\"userStatus\":\"x\"}"));
    json_decref(fx_ok(f, KCHAT_OP_STATUS, "alice", s2,
                      "{\"userId\":\"alice\",\"userStatus\":\"x\"}"));
    /* and the next login shows the logout */
    a = fx_ok(f, KCHAT_OP_LOGIN, "alice", NULL,
              "{\"userId\":\"alice\",\"userPw\":\"" FX_PASSWORD "\"}");
    assert_string_equal(fx_str(json_object_get(a, "user"), "logoutDate"), when);
    json_decref(a);
}

/* The original server's logout: the record value is the bare user id. */
static void test_logout_bare_id(void **state)
{
    struct fx *f = *state;
    const char *s1 = fx_user(f, "alice"), *s2 = fx_login(f, "alice"), *s3 = fx_login(f, "alice");
    char *mp;
    size_t len;
    json_t *a, *id = json_string("alice");

    a = fx_call_raw(f, KCHAT_OP_LOGOUT, "alice", s1, KCHAT_FMT_JSON, "alice", 5);
    fx_assert_json(a, "{\"userId\":\"alice\",\"isSuccess\":true,\"errorCode\":\"\","
                      "\"errorMessage\":\"\"}");
    json_decref(a);
    assert_null(session_get(f, fx_shard_of(f, "alice"), s1));
    /* a JSON string holding the id */
    a = fx_call_raw(f, KCHAT_OP_LOGOUT, "alice", s2, KCHAT_FMT_JSON, "\"alice\"", 7);
    assert_true(json_is_true(json_object_get(a, "isSuccess")));
    json_decref(a);
    /* a msgpack str, answered in msgpack (fx_call_raw checks the content-type) */
    assert_int_equal(kchat_codec_encode(KCHAT_FMT_MSGPACK, id, &mp, &len), KCHAT_OK);
    a = fx_call_raw(f, KCHAT_OP_LOGOUT, "alice", s3, KCHAT_FMT_MSGPACK, mp, len);
    assert_true(json_is_true(json_object_get(a, "isSuccess")));
    json_decref(a);
    free(mp);
    json_decref(id);
    assert_null(session_get(f, fx_shard_of(f, "alice"), s3));
    /* another user's bare id disagrees with the key */
    s1 = fx_login(f, "alice");
    a = fx_call_raw(f, KCHAT_OP_LOGOUT, "alice", s1, KCHAT_FMT_JSON, "bob", 3);
    assert_string_equal(fx_str(a, "errorCode"), "BAD_REQUEST");
    json_decref(a);
}

static void test_status(void **state)
{
    struct fx *f = *state;
    const char *sa = fx_user(f, "alice"), *sb = fx_user(f, "bob");
    char *s256 = fx_rep(f, 's', 256), *s257 = fx_rep(f, 's', 257);
    json_t *a, *v;

    fx_befriend(f, "bob", sb, "[\"alice\"]");
    a = fx_ok(f, KCHAT_OP_STATUS, "alice", sa,
              "{\"userId\":\"alice\",\"userStatus\":\"in a meeting\"}");
    fx_assert_json(a, "{\"userId\":\"alice\",\"isSuccess\":true,\"errorCode\":\"\","
                      "\"errorMessage\":\"\",\"userStatus\":\"in a meeting\"}");
    json_decref(a);
    /* published with the next version, to Kafka and the replica */
    v = fx_records(f, KCHAT_TOPIC_DIRECTORY);
    fx_assert_json(v, "[{\"userId\":\"alice\",\"userName\":\"Name alice\","
                      "\"userStatus\":\"in a meeting\",\"ver\":2,\"online\":false,"
                      "\"lastSeen\":\"\"}]");
    json_decref(v);
    v = kchat__directory_get(&f->be, "alice");
    assert_int_equal(fx_int(v, "ver"), 2);
    json_decref(v);
    /* a follower sees it */
    a = fx_ok(f, KCHAT_OP_SEARCH_FRIEND, "bob", sb, "{\"userId\":\"bob\"}");
    fx_assert_json(json_object_get(a, "friend"),
                   "[{\"userId\":\"alice\",\"userName\":\"Name alice\","
                                                 "\"userStatus\":\"in a meeting\","
                                                 "\"online\":false,\"lastSeen\":\"\"}]");
    json_decref(a);

    /* `status` for `userStatus`; userStatus wins when both are there */
    a = fx_ok(f, KCHAT_OP_STATUS, "alice", sa, "{\"userId\":\"alice\",\"status\":\"away\"}");
    assert_string_equal(fx_str(a, "userStatus"), "away");
    json_decref(a);
    a = fx_ok(f, KCHAT_OP_STATUS, "alice", sa,
              "{\"userId\":\"alice\",\"status\":\"no\",\"userStatus\":\"yes\"}");
    assert_string_equal(fx_str(a, "userStatus"), "yes");
    json_decref(a);
    v = kchat__directory_get(&f->be, "alice");
    fx_assert_json(v, "{\"userId\":\"alice\",\"userName\":\"Name alice\",\"userStatus\":\"yes\","
                      "\"ver\":4,\"online\":false,\"lastSeen\":\"\"}");
    json_decref(v);
    /* limits: 0..256 bytes of UTF-8 */
    json_decref(fx_ok(f, KCHAT_OP_STATUS, "alice", sa,
                      "{\"userId\":\"alice\",\"userStatus\":\"\"}"));
    json_decref(fx_ok(f, KCHAT_OP_STATUS, "alice", sa,
                      "{\"userId\":\"alice\",\"userStatus\":\"%s\"}", s256));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_STATUS, "alice", sa,
                       "{\"userId\":\"alice\",\"userStatus\":\"%s\"}", s257));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_STATUS, "alice", sa,
                       "{\"userId\":\"alice\",\"status\":\"%s\"}", s257));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_STATUS, "alice", sa,
                       "{\"userId\":\"alice\",\"userStatus\":\"\xc0\xaf\"}"));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_STATUS, "alice", sa, "{\"userId\":\"alice\"}"));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_STATUS, "alice", sa,
                       "{\"userId\":\"alice\",\"userStatus\":7}"));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_STATUS, "alice", sa,
                       "{\"userId\":\"bob\",\"userStatus\":\"x\"}"));
}

/* Every operation but user-add and login wants alice's own live session:
 * missing, empty, unknown, over-long, or another user's (bob's, kept in his
 * shard, or carol's, kept in alice's) gives UNAUTHENTICATED and changes
 * nothing. */
static void test_unauthenticated(void **state)
{
    struct fx *f = *state;
    const char *sa = fx_user(f, "alice"), *sb = fx_user(f, "bob"), *sc;
    char room[65], body[8][256], carol[65], *long_session = fx_rep(f, 'a', 129);
    const kchat_op ops[8] = {KCHAT_OP_LOGOUT, KCHAT_OP_STATUS, KCHAT_OP_ADD_FRIEND,
                             KCHAT_OP_SEARCH_FRIEND, KCHAT_OP_ADD_ROOM, KCHAT_OP_SEARCH_ROOM,
                             KCHAT_OP_ADD_CHAT, KCHAT_OP_HISTORY};
    const char *sessions[6];

    fx_befriend(f, "alice", sa, "[\"bob\"]");
    fx_room(f, "alice", sa, "[\"bob\"]", room);
    snprintf(body[0], sizeof(body[0]), "{\"userId\":\"alice\"}");
    snprintf(body[1], sizeof(body[1]), "{\"userId\":\"alice\",\"userStatus\":\"x\"}");
    snprintf(body[2], sizeof(body[2]), "{\"userId\":\"alice\",\"friendId\":[\"bob\"]}");
    snprintf(body[3], sizeof(body[3]), "{\"userId\":\"alice\"}");
    snprintf(body[4], sizeof(body[4]), "{\"userId\":\"alice\",\"friendId\":[\"bob\"]}");
    snprintf(body[5], sizeof(body[5]), "{\"userId\":\"alice\"}");
    snprintf(body[6], sizeof(body[6]), "{\"writerId\":\"alice\",\"roomId\":\"%s\","
             "\"message\":\"hi\"}", room);
    snprintf(body[7], sizeof(body[7]), "{\"userId\":\"alice\",\"roomId\":\"%s\"}", room);
    sessions[0] = NULL;
    sessions[1] = "";
    sessions[2] = "00112233445566778899aabbccddeeff";
    sessions[3] = sb;
    sessions[4] = long_session;
    /* a session stored in alice's own shard, but carol's */
    fx_id_on_shard(f, "carol", fx_shard_of(f, "alice"), carol);
    sc = fx_user(f, carol);
    sessions[5] = sc;
    for (size_t i = 0; i < 8; i++)
        for (size_t s = 0; s < 6; s++) {
            json_t *a = fx_err(f, "UNAUTHENTICATED", ops[i], "alice", sessions[s], "%s", body[i]);
            assert_int_equal(fx_count(f, NULL), 1);   /* nothing but the answer */
            assert_int_equal(json_object_size(a), 4);
            json_decref(a);
        }
    /* alice's own session still does all of it */
    for (size_t i = 1; i < 8; i++)
        json_decref(fx_ok(f, ops[i], "alice", sa, "%s", body[i]));
    json_decref(fx_ok(f, ops[0], "alice", sa, "%s", body[0]));
}

/* A session expires after session_idle seconds unused; each use (at most
 * once a minute) starts that time again. */
static void test_session_expiry(void **state)
{
    struct fx *f = *state;
    const int64_t idle_ms = 3600 * 1000;
    int64_t t0 = f->now_ms;
    const char *s1, *s2;
    uint32_t sh = fx_shard_of(f, "alice");
    json_t *sess;

    f->cfg.session_idle = 3600;
    s1 = fx_user(f, "alice");
    s2 = fx_login(f, "alice");
#define STATUS "{\"userId\":\"alice\",\"userStatus\":\"x\"}"
    /* a use within a minute of the last one does not rewrite it */
    f->now_ms = t0 + 30000;
    json_decref(fx_ok(f, KCHAT_OP_STATUS, "alice", s1, STATUS));
    sess = session_get(f, sh, s1);
    assert_int_equal(fx_int(sess, "t"), t0);
    json_decref(sess);
    /* a later one does */
    f->now_ms = t0 + 3000 * 1000;
    json_decref(fx_ok(f, KCHAT_OP_STATUS, "alice", s1, STATUS));
    sess = session_get(f, sh, s1);
    assert_int_equal(fx_int(sess, "t"), f->now_ms);
    json_decref(sess);
    /* s1 lives idle_ms from its last use, s2 (never used) from its login */
    f->now_ms = t0 + idle_ms;
    json_decref(fx_ok(f, KCHAT_OP_STATUS, "alice", s2, STATUS));    /* exactly idle: still valid */
    f->now_ms = t0 + 3000 * 1000 + idle_ms;
    json_decref(fx_ok(f, KCHAT_OP_STATUS, "alice", s1, STATUS));
    f->now_ms += idle_ms + 1;
    json_decref(fx_err(f, "UNAUTHENTICATED", KCHAT_OP_STATUS, "alice", s1, STATUS));
    json_decref(fx_err(f, "UNAUTHENTICATED", KCHAT_OP_STATUS, "alice", s2, STATUS));
    json_decref(fx_err(f, "UNAUTHENTICATED", KCHAT_OP_LOGOUT, "alice", s2,
                       "{\"userId\":\"alice\"}"));
    /* a new login works */
    json_decref(fx_ok(f, KCHAT_OP_STATUS, "alice", fx_login(f, "alice"), STATUS));
#undef STATUS
}

/* A data directory of an older kchat keeps sessions under their ids: the
 * upgrade at start stores them under their hashes, once, and they go on
 * working. */
static void test_sessions_rekeyed(void **state)
{
    struct fx *f = *state;
    const char *old = "0123456789abcdef0123456789abcdef";
    uint32_t sh;
    size_t moved;
    kchat_txn *t;
    json_t *sess;
    char *dump;

    fx_register(f, "alice");
    sh = fx_shard_of(f, "alice");
    sess = json_pack("{s:s, s:I}", "u", "alice", "t", (json_int_t)f->now_ms);
    assert_int_equal(kchat_txn_begin(f->be.shards[sh].store, true, &t), KCHAT_OK);
    assert_int_equal(kchat__put_json(t, KCHAT_TBL_SESSIONS, old, strlen(old), sess), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    json_decref(sess);
    /* the new kchat does not take the id as a key */
    json_decref(fx_err(f, "UNAUTHENTICATED", KCHAT_OP_STATUS, "alice", old,
                       "{\"userId\":\"alice\",\"userStatus\":\"x\"}"));

    assert_int_equal(kchat__sessions_rekey(&f->be.shards[sh], &moved), KCHAT_OK);
    assert_int_equal(moved, 1);
    assert_null(fx_get(f, sh, KCHAT_TBL_SESSIONS, old, strlen(old)));
    dump = fx_state(f);
    assert_null(strstr(dump, old));
    free(dump);
    json_decref(fx_ok(f, KCHAT_OP_STATUS, "alice", old,
                      "{\"userId\":\"alice\",\"userStatus\":\"x\"}"));
    /* a new login's session is stored by hash already: nothing more moves */
    json_decref(fx_ok(f, KCHAT_OP_STATUS, "alice", fx_login(f, "alice"),
                      "{\"userId\":\"alice\",\"userStatus\":\"y\"}"));
    assert_int_equal(kchat__sessions_rekey(&f->be.shards[sh], &moved), KCHAT_OK);
    assert_int_equal(moved, 0);
    assert_int_equal(fx_rows(f, KCHAT_TBL_SESSIONS), 2);
}

/* With the session check off (the original front end), no session is
 * needed; an unknown user is USER_NOT_FOUND. */
static void test_session_check_off(void **state)
{
    struct fx *f = *state;
    json_t *a;

    f->cfg.session_check = false;
    fx_register(f, "alice");
    json_decref(fx_ok(f, KCHAT_OP_STATUS, "alice", NULL,
                      "{\"userId\":\"alice\",\"userStatus\":\"x\"}"));
    json_decref(fx_ok(f, KCHAT_OP_LOGOUT, "alice", NULL, "{\"userId\":\"alice\"}"));
    /* a session header that names no session does not matter either */
    json_decref(fx_ok(f, KCHAT_OP_LOGOUT, "alice", "nosuchsession", "{\"userId\":\"alice\"}"));
    a = fx_err(f, "USER_NOT_FOUND", KCHAT_OP_STATUS, "ghost", NULL,
               "{\"userId\":\"ghost\",\"userStatus\":\"x\"}");
    json_decref(a);
    json_decref(fx_err(f, "USER_NOT_FOUND", KCHAT_OP_LOGOUT, "ghost", NULL,
                       "{\"userId\":\"ghost\"}"));
    json_decref(fx_ok(f, KCHAT_OP_SEARCH_FRIEND, "alice", NULL, "{\"userId\":\"alice\"}"));
}

/* A msgpack request is answered in msgpack (fx_call_raw checks the
 * content-type); the decoded answer is the same; kchat-cid is copied. */
static void test_msgpack_and_cid(void **state)
{
    struct fx *f = *state;
    json_t *a;
    const char *s;

    f->fmt = KCHAT_FMT_MSGPACK;
    f->cid = "cid-\x01\xff-bytes";
    add_alice(f);
    a = fx_ok(f, KCHAT_OP_LOGIN, "alice", NULL,
              "{\"userId\":\"alice\",\"userPw\":\"secret-pw-1\"}");
    s = fx_keep(f, strdup(fx_str(a, "sessionId")));
    json_decref(a);
    a = fx_ok(f, KCHAT_OP_STATUS, "alice", s, "{\"userId\":\"alice\",\"userStatus\":\"mp\"}");
    assert_string_equal(fx_str(a, "userStatus"), "mp");
    json_decref(a);
    /* errors too, even for a body that does not decode */
    json_decref(fx_err(f, "BAD_CREDENTIALS", KCHAT_OP_LOGIN, "alice", NULL,
                       "{\"userId\":\"alice\",\"userPw\":\"wrong password\"}"));
    a = fx_call_raw(f, KCHAT_OP_STATUS, "alice", s, KCHAT_FMT_MSGPACK, "\xc1", 1);
    assert_string_equal(fx_str(a, "errorCode"), "BAD_REQUEST");
    json_decref(a);
    a = fx_call_raw(f, KCHAT_OP_STATUS, "alice", s, KCHAT_FMT_MSGPACK, "\x81\xa6userId", 8);
    assert_string_equal(fx_str(a, "errorCode"), "BAD_REQUEST");   /* truncated map */
    json_decref(a);
    /* no kchat-cid: none on the answer */
    f->cid = NULL;
    json_decref(fx_ok(f, KCHAT_OP_LOGOUT, "alice", s, "{\"userId\":\"alice\"}"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_user_add, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_user_add_already_exists, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_user_add_bad_request, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_user_add_limits_accepted, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_user_add_too_large, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_user_add_internal, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_directory_replica, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_login, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_login_bad_credentials, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_login_throttle, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_login_success_resets_failures, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_login_throttle_off, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_logout, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_logout_bare_id, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_status, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_unauthenticated, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_session_expiry, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_sessions_rekeyed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_session_check_off, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_msgpack_and_cid, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
