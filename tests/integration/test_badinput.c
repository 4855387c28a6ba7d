/*
 * kchat-test: kafka (also run on real Apache Kafka by `make check-kafka`)
 * Bad input (PROTOCOL.md §2, §5) and password hygiene (§1):
 *  - an undecodable JSON or msgpack body with a valid key is answered with
 *    BAD_REQUEST to that user, in the request's encoding;
 *  - a record with no key or an invalid key goes to `kchat-dlq` with its
 *    original key, value and headers plus a `kchat-error` header;
 *  - a valid request after each bad one is still answered (no stall);
 *  - no password (nor an Argon2 hash) appears in any response, event, dlq
 *    record or the server's log, and, after the server stopped, in no LMDB
 *    environment under the data directory (`mdb_dump`) nor any file there.
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
static char *g_data;

/* the user every bad request is sent as, with a friend and a room */
static kc_user g_u, g_f;
static char g_room[65];

static int group_setup(void **state)
{
    (void)state;
    setvbuf(stdout, NULL, _IOLBF, 0);
    g_data = kc_tmppath("bad-data");
    kc_rm_rf(g_data);
    g_srv = kc_serve_start("bad-serve", g_data, NULL, PARTITIONS, NULL);
    if (g_srv == NULL)
        return -1;
    g_c = kc_client_new(kc_proc_bootstrap(g_srv), KC_FROM_BEGINNING);
    if (g_c == NULL)
        return -1;
    if (!kc_user_new(g_c, &g_u, "bad") || !kc_user_new(g_c, &g_f, "badf"))
        return -1;
    const char *fl[] = { g_f.id, NULL };
    if (!kc_add_friends(g_c, &g_u, fl) || !kc_create_room(g_c, &g_u, fl, "bad", g_room))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kc_client_free(g_c);
    if (g_srv != NULL)
        kc_proc_stop(g_srv, SIGTERM, 10, NULL);
    kc_proc_free(g_srv);
    free(g_data);
    return 0;
}

/* A valid request of operation @p op by g_u, which must be answered. */
static void valid_request(const char *op, kc_fmt fmt)
{
    kc_fmt saved = kc_client_fmt(g_c);
    kc_client_set_fmt(g_c, fmt);
    const kc_user *u = &g_u;
    if (strcmp(op, "user-add") == 0) {
        KC_EXPECT_ERR(kc_call(g_c, op, u->id, NULL,
                              json_pack("{ss ss ss ss}", "userId", u->id, "userPw", u->pw,
                                        "email", u->email, "userName", u->name)),
                      u->id, "ALREADY_EXISTS");
    } else if (strcmp(op, "login") == 0) {
        KC_EXPECT_OK(kc_call(g_c, op, u->id, NULL,
                             json_pack("{ss ss}", "userId", u->id, "userPw", u->pw)), u->id);
    } else if (strcmp(op, "logout") == 0) {
        char *s = kc_login(g_c, u->id, u->pw);
        assert_non_null(s);
        KC_EXPECT_OK(kc_call(g_c, op, u->id, s, json_pack("{ss}", "userId", u->id)), u->id);
        free(s);
    } else if (strcmp(op, "user-status-change") == 0) {
        KC_EXPECT_OK(kc_call(g_c, op, u->id, u->session,
                             json_pack("{ss ss}", "userId", u->id, "userStatus", "ok")), u->id);
    } else if (strcmp(op, "user-add-friend") == 0) {
        KC_EXPECT_OK(kc_call(g_c, op, u->id, u->session,
                             json_pack("{ss s[s]}", "userId", u->id, "friendId", g_f.id)), u->id);
    } else if (strcmp(op, "user-add-room") == 0) {
        KC_EXPECT_OK(kc_call(g_c, op, u->id, u->session,
                             json_pack("{ss s[s]}", "userId", u->id, "friendId", g_f.id)), u->id);
    } else if (strcmp(op, "user-add-chat") == 0) {
        KC_EXPECT_OK(kc_call(g_c, op, u->id, u->session,
                             json_pack("{ss ss ss}", "roomId", g_room, "writerId", u->id,
                                       "message", "still alive")), u->id);
    } else if (strcmp(op, "room-history") == 0) {
        KC_EXPECT_OK(kc_call(g_c, op, u->id, u->session,
                             json_pack("{ss ss si}", "userId", u->id, "roomId", g_room, "limit",
                                       5)), u->id);
    } else { /* the two searches */
        KC_EXPECT_OK(kc_call(g_c, op, u->id, u->session, json_pack("{ss}", "userId", u->id)),
                     u->id);
    }
    kc_client_set_fmt(g_c, saved);
}

struct garbage {
    const char *what;
    const char *bytes;  /* NULL: null value */
    size_t len;
};

#define G(what, lit) { what, lit, sizeof(lit) - 1 }

static void send_bad_expect_bad_request(const char *op, kc_fmt fmt, const struct garbage *g)
{
    const char *session = (strcmp(op, "user-add") == 0 || strcmp(op, "login") == 0)
                              ? NULL : g_u.session;
    kc_req req = { .op = op, .key = g_u.id, .session = session, .fmt = fmt,
                   .raw = g->bytes, .raw_len = g->len, .null_value = g->bytes == NULL };
    json_t *r = kc_call_req(g_c, &req, NULL, NULL);
    if (r == NULL || !kc_check_err(r, g_u.id, "BAD_REQUEST"))
        fprintf(stderr, "  ... for %s body \"%s\" on %s\n",
                fmt == KC_FMT_MSGPACK ? "msgpack" : "JSON", g->what, op);
    assert_true(kc_check_err(r, g_u.id, "BAD_REQUEST"));
    json_decref(r);
}

static void test_bad_json_answered(void **state)
{
    (void)state;
    char invalid_utf8[256];
    int l = snprintf(invalid_utf8, sizeof(invalid_utf8),
                     "{\"userId\":\"%s\",\"junk\":\"\xff\xfe\"}", g_u.id);
    char truncated[256];
    int tl = snprintf(truncated, sizeof(truncated), "{\"userId\":\"%s\",", g_u.id);
    const struct garbage gs[] = {
        G("{not json", "{not json"),
        G("empty", ""),
        G("array", "[1,2,3]"),
        G("number", "42"),
        G("json null", "null"),
        G("binary", "\x00\x01\x02\xff"),
        { "truncated object", truncated, (size_t)tl },
        { "invalid UTF-8", invalid_utf8, (size_t)l },
        { "null value", NULL, 0 },
    };
    for (int op = 0; op < KC_OP_COUNT; op++) {
        for (size_t i = 0; i < sizeof(gs) / sizeof(gs[0]); i++) {
            send_bad_expect_bad_request(kc_ops[op], KC_FMT_JSON, &gs[i]);
            valid_request(kc_ops[op], KC_FMT_JSON);
        }
    }
}

static void test_bad_msgpack_answered(void **state)
{
    (void)state;
    /* a map whose key is an integer, and a map with a str value of invalid UTF-8 */
    const struct garbage gs[] = {
        G("never-used byte 0xc1", "\xc1"),
        G("array, not map", "\x93\x01\x02\x03"),
        G("truncated map", "\x82\xa6userId"),
        G("int key", "\x81\x01\xa1x"),
        G("JSON text", "{\"a\":1}"),
        G("bad UTF-8 value", "\x81\xa6userId\xa2\xff\xfe"),
        G("empty", ""),
        G("trailing bytes", "\x80\x80"),
    };
    for (int op = 0; op < KC_OP_COUNT; op++) {
        for (size_t i = 0; i < sizeof(gs) / sizeof(gs[0]); i++) {
            send_bad_expect_bad_request(kc_ops[op], KC_FMT_MSGPACK, &gs[i]);
            valid_request(kc_ops[op], i % 2 ? KC_FMT_MSGPACK : KC_FMT_JSON);
        }
    }
}

/* The dlq copy of a record sent with @p hdrs: same key, value and headers,
 * plus a non-empty kchat-error. */
static void check_dlq(const void *key, size_t key_len, const char *value, size_t value_len,
                      const kc_header *hdrs, size_t hn)
{
    const kc_record *d = kc_wait_dlq(g_c, value, value_len, KC_CALL_TIMEOUT_MS);
    if (d == NULL) {
        fprintf(stderr, "no kchat-dlq record with value \"%.*s\"\n", (int)value_len, value);
        kc_diag_dump();
    }
    assert_non_null(d);
    if (key == NULL) {
        assert_false(d->has_key);
    } else if (key_len == 0) {
        assert_int_equal(d->key_len, 0); /* an empty key may read back as none */
    } else {
        assert_true(d->has_key);
        assert_int_equal(d->key_len, key_len);
        assert_memory_equal(d->key, key, key_len);
    }
    for (size_t i = 0; i < hn; i++) {
        size_t l = 0;
        const char *v = kc_record_header(d, hdrs[i].name, &l);
        if (v == NULL || l != hdrs[i].len || memcmp(v, hdrs[i].value, l) != 0)
            kc_record_dump(d, "dlq record lacks an original header");
        assert_non_null(v);
        assert_int_equal(l, hdrs[i].len);
        assert_memory_equal(v, hdrs[i].value, l);
    }
    const char *err = kc_record_header(d, KC_HDR_ERROR, NULL);
    if (err == NULL || err[0] == '\0')
        kc_record_dump(d, "dlq record without kchat-error");
    assert_non_null(err);
    assert_true(err[0] != '\0');
    /* and it was not answered on a response topic */
    size_t cl = 0;
    const char *cid = kc_record_header(d, KC_HDR_CID, &cl);
    assert_non_null(cid);
    assert_null(kc_wait_cid(g_c, NULL, cid, 0));
}

/* A fresh user whose id maps to @p partition: register, login, status. */
static void valid_user_on_partition(int32_t partition)
{
    kc_user u;
    for (int tries = 0; tries < 200; tries++) {
        kc_user_init(&u, "part");
        if (kc_partition_for(u.id, PARTITIONS) == partition)
            break;
    }
    assert_int_equal(kc_partition_for(u.id, PARTITIONS), partition);
    assert_true(kc_user_register(g_c, &u));
    assert_true(kc_user_login(g_c, &u));
    KC_EXPECT_OK(kc_call(g_c, "user-status-change", u.id, u.session,
                         json_pack("{ss ss}", "userId", u.id, "userStatus", "after dlq")), u.id);
}

static void test_dlq_no_key(void **state)
{
    (void)state;
    static const char *const topics[] = { "login-request", "user-add-chat-request",
                                          "user-add-request", "room-history-request" };
    for (size_t t = 0; t < sizeof(topics) / sizeof(topics[0]); t++) {
        for (int32_t p = 0; p < PARTITIONS; p++) {
            char value[160], cid[96], marker[80];
            kc_uid(marker, sizeof(marker), "nokey");
            int vl = snprintf(value, sizeof(value), "garbage without key %s %s[%d] \x01\xff",
                              marker, topics[t], (int)p);
            snprintf(cid, sizeof(cid), "dlq-%s", marker);
            const kc_header hs[] = {
                { KC_HDR_CID, cid, strlen(cid) },
                { KC_HDR_CTYPE, KC_CT_JSON, strlen(KC_CT_JSON) },
                { "x-kchat-test", marker, strlen(marker) },
            };
            assert_true(kc_send_raw(g_c, topics[t], p, NULL, 0, value, (size_t)vl, hs, 3));
            check_dlq(NULL, 0, value, (size_t)vl, hs, 3);
        }
    }
    /* also a keyless record with a perfectly good body: who asked is the key */
    char marker[80], value[256];
    kc_uid(marker, sizeof(marker), "nokeyjson");
    int vl = snprintf(value, sizeof(value), "{\"userId\":\"%s\",\"marker\":\"%s\"}", g_u.id,
                      marker);
    const kc_header hs[] = { { "x-kchat-test", marker, strlen(marker) },
                             { KC_HDR_CID, marker, strlen(marker) } };
    assert_true(kc_send_raw(g_c, "user-search-friend-request", -1, NULL, 0, value, (size_t)vl,
                            hs, 2));
    check_dlq(NULL, 0, value, (size_t)vl, hs, 2);
    /* every partition still works */
    for (int32_t p = 0; p < PARTITIONS; p++)
        valid_user_on_partition(p);
    valid_request("user-search-friend", KC_FMT_JSON);
}

static void test_dlq_invalid_key(void **state)
{
    (void)state;
    char k65[80];
    kc_uid(k65, sizeof(k65), "k65");
    size_t l = strlen(k65);
    while (l < 65)
        k65[l++] = 'k';
    k65[65] = '\0';
    struct { const char *key; size_t len; } keys[] = {
        { "bad key!", 8 }, { k65, 65 }, { "", 0 }, { "\xff\xfe", 2 }, { "a/b", 3 },
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char value[160], cid[96], marker[80];
        kc_uid(marker, sizeof(marker), "badkey");
        int vl = snprintf(value, sizeof(value), "\x01garbage with invalid key %s {", marker);
        snprintf(cid, sizeof(cid), "dlq-%s", marker);
        const kc_header hs[] = {
            { KC_HDR_CID, cid, strlen(cid) },
            { "x-kchat-test", marker, strlen(marker) },
        };
        assert_true(kc_send_raw(g_c, "user-status-change-request", -1, keys[i].key, keys[i].len,
                                value, (size_t)vl, hs, 2));
        check_dlq(keys[i].key, keys[i].len, value, (size_t)vl, hs, 2);
        /* the partition of that key still works */
        char kbuf[80];
        memcpy(kbuf, keys[i].key, keys[i].len);
        kbuf[keys[i].len] = '\0';
        if (keys[i].len > 0)
            valid_user_on_partition(kc_partition_for(kbuf, PARTITIONS));
    }
    valid_request("user-status-change", KC_FMT_JSON);
}

/* Traffic that carries passwords in every way a client can send one. */
static void test_password_traffic(void **state)
{
    (void)state;
    kc_user u;
    kc_user_init(&u, "pwt");
    assert_true(kc_user_register(g_c, &u));
    char other[40], wrong[40];
    kc_new_password(other, sizeof(other));
    kc_new_password(wrong, sizeof(wrong));
    /* ALREADY_EXISTS with another password */
    KC_EXPECT_ERR(kc_call(g_c, "user-add", u.id, NULL,
                          json_pack("{ss ss ss ss}", "userId", u.id, "userPw", other, "email",
                                    u.email, "userName", u.name)),
                  u.id, "ALREADY_EXISTS");
    /* BAD_CREDENTIALS */
    KC_EXPECT_ERR(kc_call(g_c, "login", u.id, NULL,
                          json_pack("{ss ss}", "userId", u.id, "userPw", wrong)),
                  u.id, "BAD_CREDENTIALS");
    /* BAD_REQUEST for another field while a good password is present */
    kc_user v;
    kc_user_init(&v, "pwv");
    KC_EXPECT_ERR(kc_call(g_c, "user-add", v.id, NULL,
                          json_pack("{ss ss ss ss}", "userId", v.id, "userPw", v.pw, "email",
                                    "no-at", "userName", v.name)),
                  v.id, "BAD_REQUEST");
    /* passwords outside the limits */
    char short_pw[16], long_pw[200], tail[40];
    kc_new_password(tail, sizeof(tail));
    snprintf(short_pw, sizeof(short_pw), "Zq%.5s", tail + 2); /* 7 bytes */
    kc_remember_password(short_pw);
    kc_new_password(tail, sizeof(tail));
    snprintf(long_pw, sizeof(long_pw), "%s%s%s%s%s", tail, tail, tail, tail, tail);
    long_pw[129] = '\0';
    kc_remember_password(long_pw);
    KC_EXPECT_ERR(kc_call(g_c, "user-add", v.id, NULL,
                          json_pack("{ss ss ss ss}", "userId", v.id, "userPw", short_pw, "email",
                                    v.email, "userName", v.name)),
                  v.id, "BAD_REQUEST");
    KC_EXPECT_ERR(kc_call(g_c, "user-add", v.id, NULL,
                          json_pack("{ss ss ss ss}", "userId", v.id, "userPw", long_pw, "email",
                                    v.email, "userName", v.name)),
                  v.id, "BAD_REQUEST");
    /* an undecodable body that contains a password must not be echoed or logged */
    char leak[40], raw[256];
    kc_new_password(leak, sizeof(leak));
    int rl = snprintf(raw, sizeof(raw), "{\"userId\":\"%s\",\"userPw\":\"%s\"", u.id, leak);
    kc_req req = { .op = "login", .key = u.id, .raw = raw, .raw_len = (size_t)rl };
    KC_EXPECT_ERR(kc_call_req(g_c, &req, NULL, NULL), u.id, "BAD_REQUEST");
    /* the same in msgpack, with a wrong-typed field */
    kc_user w;
    kc_user_init(&w, "pwmp");
    kc_client_set_fmt(g_c, KC_FMT_MSGPACK);
    KC_EXPECT_ERR(kc_call(g_c, "user-add", w.id, NULL,
                          json_pack("{ss ss ss si}", "userId", w.id, "userPw", w.pw, "email",
                                    w.email, "userName", 5)),
                  w.id, "BAD_REQUEST");
    assert_true(kc_user_register(g_c, &w));
    assert_true(kc_user_login(g_c, &w));
    kc_client_set_fmt(g_c, KC_FMT_JSON);
    /* and the normal path */
    assert_true(kc_user_register(g_c, &v));
    assert_true(kc_user_login(g_c, &v));
    assert_true(kc_user_login(g_c, &u));
    KC_EXPECT_OK(kc_call(g_c, "logout", u.id, u.session, json_pack("{ss}", "userId", u.id)), u.id);
}

static void check_no_password_in_log(void)
{
    size_t n = 0;
    const char *const *pws = kc_passwords(&n);
    assert_true(n >= 10);
    for (size_t i = 0; i < n; i++) {
        if (kc_file_contains(kc_proc_log(g_srv), pws[i], strlen(pws[i]))) {
            fprintf(stderr, "password \"%s\" appears in the server log %s\n", pws[i],
                    kc_proc_log(g_srv));
            kc_proc_log_tail(g_srv, 60, stderr);
        }
        assert_false(kc_file_contains(kc_proc_log(g_srv), pws[i], strlen(pws[i])));
    }
    assert_false(kc_file_contains(kc_proc_log(g_srv), "$argon2", 7));
}

static void test_no_password_in_records_or_log(void **state)
{
    (void)state;
    /* wait until every response of this program has arrived (a last call) */
    valid_request("user-search-friend", KC_FMT_JSON);
    size_t n = 0;
    const char *const *pws = kc_passwords(&n);
    assert_true(kc_record_count(g_c) > 100);
    for (size_t i = 0; i < n; i++) {
        const kc_record *first = NULL;
        size_t hits = kc_records_containing(g_c, pws[i], strlen(pws[i]), &first);
        if (hits != 0) {
            fprintf(stderr, "password \"%s\" appears in %zu consumed record(s)\n", pws[i], hits);
            kc_record_dump(first, "first record with a password");
        }
        assert_int_equal(hits, 0);
    }
    const kc_record *first = NULL;
    size_t hits = kc_records_containing(g_c, "$argon2", 7, &first);
    if (hits != 0)
        kc_record_dump(first, "a record with an Argon2 hash");
    assert_int_equal(hits, 0);
    check_no_password_in_log();
}

static void hexify(const char *s, char *out)
{
    for (size_t i = 0; s[i]; i++)
        sprintf(out + 2 * i, "%02x", (unsigned char)s[i]);
}

/* Last: stop the server, then nothing at rest holds a plaintext password. */
static void test_no_password_at_rest(void **state)
{
    (void)state;
    kc_client_free(g_c);
    g_c = NULL;
    int st = 0;
    assert_int_equal(kc_proc_stop(g_srv, SIGTERM, 10, &st), 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        kc_proc_log_tail(g_srv, 40, stderr);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    check_no_password_in_log(); /* including what it logged while stopping */

    size_t nenv = 0;
    char **envs = kc_find_lmdb_envs(g_data, &nenv);
    if (nenv == 0)
        fprintf(stderr, "no LMDB environment (data.mdb) under %s\n", g_data);
    assert_true(nenv > 0);
    size_t npw = 0;
    const char *const *pws = kc_passwords(&npw);
    size_t dumped = 0;
    for (size_t e = 0; e < nenv; e++) {
        /* the main database, then every named database */
        for (int all = 0; all <= 1; all++) {
            for (int printable = 0; printable <= 1; printable++) {
                char cmd[8192];
                snprintf(cmd, sizeof(cmd), "mdb_dump %s%s'%s' 2>/dev/null", all ? "-a " : "",
                         printable ? "-p " : "", envs[e]);
                size_t len = 0;
                int rc = -1;
                char *out = kc_run_capture(cmd, &len, &rc);
                assert_non_null(out);
                if (!all && rc != 0)
                    fprintf(stderr, "`%s` failed (exit %d)\n", cmd, rc);
                if (!all)
                    assert_int_equal(rc, 0); /* -a fails on an env without named dbs */
                dumped += len;
                for (size_t i = 0; i < npw; i++) {
                    char hex[300];
                    hexify(pws[i], hex);
                    const char *needle = printable ? pws[i] : hex;
                    bool hit = kc_memmem(out, len, needle, strlen(needle));
                    if (hit)
                        fprintf(stderr, "password \"%s\" found by `%s`\n", pws[i], cmd);
                    assert_false(hit);
                }
                free(out);
            }
        }
    }
    assert_true(dumped > 0);
    kc_strv_free(envs);

    /* no file under the data directory holds one in plain text either */
    char cmd[8192];
    for (size_t i = 0; i < npw; i++) {
        snprintf(cmd, sizeof(cmd), "grep -rlaF -e '%s' '%s' 2>/dev/null", pws[i], g_data);
        size_t len = 0;
        int rc = -1;
        char *out = kc_run_capture(cmd, &len, &rc);
        assert_non_null(out);
        if (len > 0)
            fprintf(stderr, "password \"%s\" in plain text in: %s\n", pws[i], out);
        assert_int_equal(len, 0);
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_json_answered),
        cmocka_unit_test(test_bad_msgpack_answered),
        cmocka_unit_test(test_dlq_no_key),
        cmocka_unit_test(test_dlq_invalid_key),
        cmocka_unit_test(test_password_traffic),
        cmocka_unit_test(test_no_password_in_records_or_log),
        cmocka_unit_test(test_no_password_at_rest),
    };
    return cmocka_run_group_tests_name("kchat bad input and password hygiene", tests,
                                       group_setup, group_teardown);
}
