/*
 * kchat-test: kafka (the main server follows KCHAT_TEST_BROKERS; see below)
 * Security guarantees (PROTOCOL.md §1 passwords, §4 sessions, §5 errors,
 * docs/security.md), each shown by a test that fails when it breaks:
 *
 *  - login throttling: after --login-max-failures failures of one user id the
 *    id is refused (BAD_CREDENTIALS with retryAfterMs), even with the right
 *    password, for --login-lockout seconds; other users of the same and of
 *    another shard are not affected; unknown ids are throttled too and leave
 *    no stored state; a success resets the count; a locked login costs no
 *    Argon2 run; --login-lockout 0 turns it off; over HTTP a locked login is
 *    401 BAD_CREDENTIALS (PROTOCOL.md §8) with Retry-After. These logins
 *    name no device (no kchat-device header; over HTTP, each browser's first
 *    login is from a new device), so they all count against the id's shared
 *    "untrusted" budget; the devices' own budgets and the gateway's limit
 *    per client address are tested by tests/regress/0045;
 *  - sessions: user A's session on every request of user B (same shard and
 *    another shard) is UNAUTHENTICATED and changes nothing; garbage session
 *    strings are refused; an idle session expires; over HTTP a cookie naming
 *    B with A's session, and forged cookies, get 401 and change nothing;
 *  - no password the program used appears in any response or event record,
 *    the server and gateway logs, the backend's --metrics-http output, the
 *    gateway's /metrics, or (after the stop) the mdb_dump of any shard;
 *  - `-X key=value` reaches every Kafka client kchat makes (backend
 *    producer, request consumer, directory consumer; gateway producer,
 *    consumer and catch-up consumers): with `--brokers` naming a closed port
 *    and `-X bootstrap.servers=` the real one, everything works and nothing
 *    ever dials the closed port; a bad property stops the start naming it;
 *  - --login-retention-ms: validated at start; against a real Kafka
 *    (KCHAT_TEST_BROKERS) the retention.ms of login-request and
 *    user-add-request is read back with DescribeConfigs (librdkafka's mock
 *    cluster, kchat's embedded broker, answers no DescribeConfigs).
 *
 * The main server (`kchat serve` + `kchat gateway`) runs on the suite's broker:
 * the embedded one, or the real cluster named by KCHAT_TEST_BROKERS. The
 * servers of the -X and Argon2 tests always use kchat's own mock broker: they
 * test kchat's client set-up and CPU use, not the cluster.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "support/http.h"
#include "support/kassert.h"
#include "support/kclient.h"

#define PARTS 4
#define LOCKOUT_S 2            /* --login-lockout of the main server */
#define MAX_FAILURES 5         /* the default of --login-max-failures */
#define COOKIE "kchat_session"

static kc_proc *g_srv, *g_gw;  /* main backend and its gateway */
static kc_client *g_c;
static char *g_data;
static char g_metrics[80];     /* http://127.0.0.1:PORT of the backend's --metrics-http */
static char g_gw_base[256];    /* the gateway's URL without the trailing '/' */
static char g_ghost[65];       /* an id that was throttled and never registered */

/* ======================================================================== */
/* Helpers                                                                  */
/* ======================================================================== */

/* A fresh identity whose shard is (@p same true) or is not (false) @p part;
 * @p part < 0: any. */
static void user_init_in(kc_user *u, const char *tag, int32_t part, bool same)
{
    for (int tries = 0; tries < 1000; tries++) {
        kc_user_init(u, tag);
        int32_t p = kc_partition_for(u->id, PARTS);
        if (part < 0 || (p == part) == same)
            return;
    }
    fail_msg("no user id for partition %d (same %d) in 1000 tries", (int)part, (int)same);
}

static void user_new_in(kc_user *u, const char *tag, int32_t part, bool same)
{
    user_init_in(u, tag, part, same);
    assert_true(kc_user_register(g_c, u));
    assert_true(kc_user_login(g_c, u));
}

static json_t *login(kc_client *c, const char *id, const char *pw)
{
    return kc_call(c, "login", id, NULL, json_pack("{ss ss}", "userId", id, "userPw", pw));
}

/* A plain failed login: BAD_CREDENTIALS, no retryAfterMs, no session. */
static bool is_plain_failure(const json_t *r, const char *id)
{
    if (!kc_check_err(r, id, "BAD_CREDENTIALS"))
        return false;
    if (json_object_get(r, "retryAfterMs") != NULL || json_object_get(r, "sessionId") != NULL) {
        fprintf(stderr, "a plain failed login carries retryAfterMs or sessionId: %s\n",
                kc_dumps(r));
        return false;
    }
    return true;
}

/* A login refused by the lockout: BAD_CREDENTIALS saying too many failed
 * attempts, retryAfterMs in 1..@p max_ms, no session. */
static bool is_locked(const json_t *r, const char *id, json_int_t max_ms)
{
    if (!kc_check_err(r, id, "BAD_CREDENTIALS"))
        return false;
    json_t *ra = json_object_get(r, "retryAfterMs");
    const char *msg = kc_str(r, "errorMessage");
    if (!json_is_integer(ra) || json_integer_value(ra) < 1 || json_integer_value(ra) > max_ms ||
        msg == NULL || strcasestr(msg, "too many failed") == NULL ||
        json_object_get(r, "sessionId") != NULL) {
        fprintf(stderr, "not a lockout answer (want retryAfterMs 1..%lld and \"too many "
                "failed\"): %s\n", (long long)max_ms, kc_dumps(r));
        return false;
    }
    return true;
}

/* Send a login without waiting; the cid goes to @p cid (size 72). */
static void send_login(const char *id, const char *pw, char *cid)
{
    json_t *b = json_pack("{ss ss}", "userId", id, "userPw", pw);
    assert_true(kc_send_req(g_c, "login", id, NULL, NULL, b, cid));
    json_decref(b);
}

/* The answer (owned by the client) to the login sent with @p cid. */
static const json_t *login_answer(const char *cid)
{
    const kc_record *r = kc_wait_cid(g_c, "login", cid, KC_CALL_TIMEOUT_MS);
    if (r == NULL) {
        fprintf(stderr, "no login-response with cid %s\n", cid);
        kc_diag_dump();
    }
    assert_non_null(r);
    assert_non_null(r->body);
    return r->body;
}

/* A Prometheus sample's value from @p text (the first line "NAME VALUE"). */
static double metric(const char *text, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, nl) == 0 && p[nl] == ' ')
            return strtod(p + nl + 1, NULL);
    return -1;
}

/* GET @p url's /metrics; malloc'd body. */
static char *get_metrics(const char *base)
{
    kh_browser b;
    kh_browser_init(&b, "ops", base);
    kh_resp *r = kh_do(&b, "GET", "/metrics", NULL);
    if (r->status != 200)
        kh_resp_dump(r, "metrics");
    assert_int_equal(r->status, 200);
    char *body = strdup(r->body);
    kh_resp_free(r);
    assert_non_null(body);
    return body;
}

/* No password the program used appears in @p what (@p len bytes). */
static void assert_no_password_in(const char *what, const void *buf, size_t len)
{
    size_t n = 0;
    const char *const *pws = kc_passwords(&n);
    assert_true(n > 0);
    for (size_t i = 0; i < n; i++) {
        bool hit = kc_memmem(buf, len, pws[i], strlen(pws[i]));
        if (hit)
            fprintf(stderr, "password \"%s\" appears in %s\n", pws[i], what);
        assert_false(hit);
    }
    assert_false(kc_memmem(buf, len, "$argon2", 7));
}

static void assert_no_password_in_file(const char *path)
{
    size_t len = 0;
    char *text = kc_read_file(path, &len);
    assert_non_null(text);
    assert_no_password_in(path, text, len);
    free(text);
}

/* Run `kchat ARGS` (bounded, in the scratch directory) and return its
 * output (stdout+stderr). */
static char *run_kchat(const char *args, int *status)
{
    char cmd[4096], cwd[2048];
    size_t len = 0;
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    snprintf(cmd, sizeof(cmd), "cd '%s' && timeout 60 '%s%s%s' %s 2>&1", kc_tmpdir(),
             kc_bin()[0] == '/' ? "" : cwd, kc_bin()[0] == '/' ? "" : "/", kc_bin(), args);
    char *out = kc_run_capture(cmd, &len, status);
    assert_non_null(out);
    return out;
}

static void assert_has(const char *out, const char *needle)
{
    if (strstr(out, needle) == NULL)
        fprintf(stderr, "output lacks \"%s\":\n%s\n", needle, out);
    assert_non_null(strstr(out, needle));
}

/* ======================================================================== */
/* Set-up: `kchat serve` (suite's broker) + `kchat gateway` + a client      */
/* ======================================================================== */

static int group_setup(void **state)
{
    char lockout[16], addr[64];
    (void)state;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int port = kc_free_port();
    if (port <= 0)
        return -1;
    snprintf(lockout, sizeof(lockout), "%d", LOCKOUT_S);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    snprintf(g_metrics, sizeof(g_metrics), "http://%s", addr);
    const char *extra[] = { "--login-lockout", lockout, "--metrics-http", addr, NULL };
    g_data = kc_tmppath("sec-data");
    kc_rm_rf(g_data);
    g_srv = kc_serve_start("sec-serve", g_data, NULL, PARTS, extra);
    if (g_srv == NULL)
        return -1;
    const char *gw_extra[] = { "--brokers", kc_proc_bootstrap(g_srv), NULL };
    g_gw = kc_gateway_start("sec-gateway", gw_extra, g_gw_base, sizeof(g_gw_base));
    if (g_gw == NULL || strncmp(g_gw_base, "http://", 7) != 0)
        return -1;
    g_c = kc_client_new(kc_proc_bootstrap(g_srv), KC_FROM_END);
    return g_c != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    kc_client_free(g_c);
    if (g_gw != NULL)
        kc_proc_stop(g_gw, SIGTERM, 10, NULL);
    kc_proc_free(g_gw);
    if (g_srv != NULL)
        kc_proc_stop(g_srv, SIGTERM, 10, NULL);
    kc_proc_free(g_srv);
    free(g_data);
    return 0;
}

/* ======================================================================== */
/* Login throttling over Kafka                                              */
/* ======================================================================== */

static void test_throttle_locks_one_user_only(void **state)
{
    (void)state;
    kc_user a, same, other;
    char wrong[40], c_a[72], c_same[72], c_other[72], c_a_wrong[72], c_same_wrong[72];

    user_init_in(&a, "thra", -1, true);
    int32_t pa = kc_partition_for(a.id, PARTS);
    assert_true(kc_user_register(g_c, &a));
    user_init_in(&same, "thrs", pa, true);
    user_init_in(&other, "thro", pa, false);
    assert_true(kc_user_register(g_c, &same));
    assert_true(kc_user_register(g_c, &other));
    kc_new_password(wrong, sizeof(wrong));

    for (int i = 0; i < MAX_FAILURES; i++) {
        json_t *r = login(g_c, a.id, wrong);
        bool ok = is_plain_failure(r, a.id);
        json_decref(r);
        assert_true(ok);
    }
    /* locked now: sent back to back so all of it lands within the lockout */
    send_login(a.id, a.pw, c_a);
    send_login(same.id, same.pw, c_same);
    send_login(other.id, other.pw, c_other);
    send_login(a.id, wrong, c_a_wrong);
    send_login(same.id, wrong, c_same_wrong);
    const json_t *ra = login_answer(c_a);
    assert_true(is_locked(ra, a.id, LOCKOUT_S * 1000));
    json_int_t retry = json_integer_value(json_object_get(ra, "retryAfterMs"));
    assert_true(is_locked(login_answer(c_a_wrong), a.id, LOCKOUT_S * 1000));
    /* the other users, in A's shard and in another, log in meanwhile */
    const json_t *rs = login_answer(c_same), *ro = login_answer(c_other);
    assert_true(kc_check_ok(rs, same.id));
    assert_true(kc_check_ok(ro, other.id));
    assert_non_null(kc_str(rs, "sessionId"));
    assert_non_null(kc_str(ro, "sessionId"));
    /* and a failure of theirs is an ordinary one */
    assert_true(is_plain_failure(login_answer(c_same_wrong), same.id));

    /* the lockout ends: A's password works again */
    kc_sleep_ms((int)retry + 300);
    char *s = kc_login(g_c, a.id, a.pw);
    assert_non_null(s);
    free(s);
    /* after it (and after each success) the count starts over: 4 failures,
     * a success, 4 failures, a success: never locked */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < MAX_FAILURES - 1; i++) {
            json_t *r = login(g_c, a.id, wrong);
            bool ok = is_plain_failure(r, a.id);
            json_decref(r);
            assert_true(ok);
        }
        s = kc_login(g_c, a.id, a.pw);
        if (s == NULL)
            fprintf(stderr, "round %d: the right password was refused after %d failures\n",
                    round, MAX_FAILURES - 1);
        assert_non_null(s);
        free(s);
    }
}

static void test_throttle_unknown_ids(void **state)
{
    (void)state;
    kc_user ghost, known, never;
    char c1[72], c2[72];

    user_init_in(&ghost, "ghost", -1, true);
    user_init_in(&known, "known", kc_partition_for(ghost.id, PARTS), true);
    assert_true(kc_user_register(g_c, &known));
    user_init_in(&never, "never", -1, true);
    snprintf(g_ghost, sizeof(g_ghost), "%s", never.id);

    for (int i = 0; i < MAX_FAILURES; i++) {
        json_t *r = login(g_c, ghost.id, ghost.pw), *n = login(g_c, never.id, never.pw);
        bool ok = is_plain_failure(r, ghost.id) && is_plain_failure(n, never.id);
        json_decref(r);
        json_decref(n);
        assert_true(ok);
    }
    send_login(ghost.id, ghost.pw, c1);
    send_login(known.id, known.pw, c2);
    /* probing an unknown id is throttled exactly like guessing a known one's
     * password: same code, same message, nothing tells them apart */
    const json_t *rg = login_answer(c1);
    assert_true(is_locked(rg, ghost.id, LOCKOUT_S * 1000));
    assert_true(kc_check_ok(login_answer(c2), known.id));
    json_t *rn = login(g_c, never.id, never.pw);
    bool ok = is_locked(rn, never.id, LOCKOUT_S * 1000);
    json_decref(rn);
    assert_true(ok);
    /* the failures stored nothing: the id is still free to register */
    assert_true(kc_user_register(g_c, &ghost));
    /* the count is the id's, not the record's: still locked until it ends */
    json_t *r = login(g_c, ghost.id, ghost.pw);
    json_int_t retry = json_integer_value(json_object_get(r, "retryAfterMs"));
    ok = retry <= 0 || is_locked(r, ghost.id, LOCKOUT_S * 1000);
    json_decref(r);
    assert_true(ok);
    if (retry > 0)
        kc_sleep_ms((int)retry + 300);
    char *s = kc_login(g_c, ghost.id, ghost.pw);
    assert_non_null(s);
    free(s);
}

/* ======================================================================== */
/* Sessions over Kafka                                                      */
/* ======================================================================== */

/* Every session-checked operation of user @p b with session @p session is
 * UNAUTHENTICATED; bodies name b (userId, writerId). */
static void all_ops_refused(const kc_user *b, const char *session, const kc_header *extra,
                            size_t n_extra, const char *room, const char *friend_id,
                            const char *member_id)
{
    json_t *bodies[8];
    const char *ops[8] = { "user-status-change", "user-add-friend", "user-search-friend",
                           "user-add-room", "user-search-room", "user-add-chat",
                           "room-history", "logout" };
    bodies[0] = json_pack("{ss ss}", "userId", b->id, "userStatus", "hijacked");
    bodies[1] = json_pack("{ss s[s]}", "userId", b->id, "friendId", friend_id);
    bodies[2] = json_pack("{ss}", "userId", b->id);
    bodies[3] = json_pack("{ss s[s] ss}", "userId", b->id, "friendId", member_id,
                          "roomName", "hijacked");
    bodies[4] = json_pack("{ss}", "userId", b->id);
    bodies[5] = json_pack("{ss ss ss ss}", "roomId", room, "writerId", b->id, "message",
                          "hijacked", "clientMsgId", "hijack-1");
    bodies[6] = json_pack("{ss ss}", "userId", b->id, "roomId", room);
    bodies[7] = json_pack("{ss}", "userId", b->id);
    for (size_t i = 0; i < 8; i++) {
        kc_req req = { .op = ops[i], .key = b->id, .session = session, .body = bodies[i],
                       .extra = extra, .extra_cnt = n_extra };
        json_t *r = kc_call_req(g_c, &req, NULL, NULL);
        bool ok = kc_check_err(r, b->id, "UNAUTHENTICATED");
        if (!ok)
            fprintf(stderr, "  ... %s as %s with session \"%s\"\n", ops[i], b->id,
                    session ? session : "(header only in extra)");
        json_decref(r);
        json_decref(bodies[i]);
        assert_true(ok);
    }
}

static json_t *call_ok(const kc_user *u, const char *op, json_t *body)
{
    json_t *r = kc_call(g_c, op, u->id, u->session, body);
    if (!kc_check_ok(r, u->id))
        kc_diag_dump();
    assert_true(kc_check_ok(r, u->id));
    return r;
}

/* B's friends are exactly {A}, B's rooms exactly {room} with lastSeq 1, the
 * room's history one message, and A sees B's status "calm". */
static void assert_b_unchanged(const kc_user *a, const kc_user *b, const char *room)
{
    json_t *r = call_ok(b, "user-search-friend", json_pack("{ss}", "userId", b->id));
    json_t *f = json_object_get(r, "friend");
    if (json_array_size(f) != 1 || strcmp(kc_str(json_array_get(f, 0), "userId"), a->id) != 0)
        fprintf(stderr, "B's friends changed: %s\n", kc_dumps(r));
    assert_int_equal(json_array_size(f), 1);
    assert_string_equal(kc_str(json_array_get(f, 0), "userId"), a->id);
    json_decref(r);

    r = call_ok(b, "user-search-room", json_pack("{ss}", "userId", b->id));
    json_t *rooms = json_object_get(r, "rooms");
    if (json_array_size(rooms) != 1)
        fprintf(stderr, "B's rooms changed: %s\n", kc_dumps(r));
    assert_int_equal(json_array_size(rooms), 1);
    assert_string_equal(kc_str(json_array_get(rooms, 0), "roomId"), room);
    assert_int_equal(kc_int(json_array_get(rooms, 0), "lastSeq", -1), 1);
    json_decref(r);

    r = call_ok(b, "room-history", json_pack("{ss ss}", "userId", b->id, "roomId", room));
    assert_int_equal(json_array_size(json_object_get(r, "messages")), 1);
    json_decref(r);

    r = call_ok(a, "user-search-friend", json_pack("{ss}", "userId", a->id));
    f = json_object_get(r, "friend");
    bool seen = false;
    for (size_t i = 0; i < json_array_size(f); i++)
        if (strcmp(kc_str(json_array_get(f, i), "userId"), b->id) == 0) {
            seen = true;
            KC_ASSERT_STR(json_array_get(f, i), "userStatus", "calm");
        }
    assert_true(seen);
    json_decref(r);
}

/* A's session on every request of B (B in A's shard, and in another). What
 * test_ops.c already covers: missing, unknown, revoked and other-user
 * sessions on every op, for users placed by chance; here the placement is
 * chosen, so both the owner check (same shard: the session is found but is
 * A's) and the look-up miss (other shard) are exercised, with B's own
 * session checking afterwards that nothing changed. */
static void test_foreign_session_changes_nothing(void **state)
{
    (void)state;
    kc_user a, c;
    user_new_in(&a, "ownA", -1, true);
    user_new_in(&c, "ownC", -1, true);
    int32_t pa = kc_partition_for(a.id, PARTS);
    for (int same = 1; same >= 0; same--) {
        kc_user b;
        char room[65];
        user_new_in(&b, same ? "ownBs" : "ownBo", pa, same);
        const char *fa[] = { a.id, NULL }, *fb[] = { b.id, NULL };
        assert_true(kc_add_friends(g_c, &a, fb));
        assert_true(kc_add_friends(g_c, &b, fa));
        assert_true(kc_create_room(g_c, &b, fa, "mine", room));
        assert_true(kc_chat(g_c, &b, room, "first", NULL) == 1);
        json_decref(call_ok(&b, "user-status-change",
                            json_pack("{ss ss}", "userId", b.id, "userStatus", "calm")));
        json_decref(kc_wait_events(g_c, b.id, "room", room, 1, 10000));

        all_ops_refused(&b, a.session, NULL, 0, room, c.id, a.id);

        assert_b_unchanged(&a, &b, room);
        json_t *ev = kc_wait_events(g_c, b.id, "room", NULL, 2, 1000);
        if (json_array_size(ev) != 1)
            fprintf(stderr, "B got room events %s\n", kc_dumps(ev));
        assert_int_equal(json_array_size(ev), 1);   /* no room from the refused creation */
        json_decref(ev);
        /* the refused "logout of B" revoked neither session */
        json_decref(call_ok(&a, "user-search-room", json_pack("{ss}", "userId", a.id)));
        json_decref(call_ok(&b, "user-search-room", json_pack("{ss}", "userId", b.id)));
    }
}

/* Session strings that are not A's session, however close: refused on every
 * op (the empty and the null header, other lengths, case, padding, binary). */
static void test_garbage_sessions_refused(void **state)
{
    (void)state;
    kc_user a, b;
    char room[65];
    user_new_in(&a, "garb", -1, true);
    user_new_in(&b, "garbf", -1, true);
    const char *fb[] = { b.id, NULL };
    assert_true(kc_add_friends(g_c, &a, fb));
    assert_true(kc_create_room(g_c, &a, fb, NULL, room));
    size_t sl = strlen(a.session);
    assert_int_equal(sl, 32);

    char prefix[40], longer[40], upper[40], flipped[40], padded[40], k129[140], k128[140];
    snprintf(prefix, sizeof(prefix), "%.31s", a.session);
    snprintf(longer, sizeof(longer), "%.32s0", a.session);
    snprintf(padded, sizeof(padded), "%.32s ", a.session);
    snprintf(upper, sizeof(upper), "%.32s", a.session);
    bool changed = false;
    for (char *p = upper; *p; p++)
        if (*p >= 'a' && *p <= 'f') {
            *p = (char)(*p - 'a' + 'A');
            changed = true;
        }
    if (!changed)   /* all digits: no case variant; use a prefix of it twice instead */
        snprintf(upper, sizeof(upper), "%.16s%.16s", a.session, a.session);
    snprintf(flipped, sizeof(flipped), "%.32s", a.session);
    flipped[sl - 1] = flipped[sl - 1] == '0' ? '1' : '0';
    memset(k129, 'a', 129);
    k129[129] = '\0';
    memset(k128, 'f', 128);
    k128[128] = '\0';
    const char *garbage[] = { "", prefix, longer, padded, upper, flipped, k129, k128,
                              "not a session at all", "../../etc/passwd" };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++)
        all_ops_refused(&a, garbage[i], NULL, 0, room, b.id, b.id);
    /* a null header, and one with a NUL byte inside A's session */
    kc_header null_hdr = { "kchat-session", NULL, 0 };
    all_ops_refused(&a, NULL, &null_hdr, 1, room, b.id, b.id);
    char nul[40];
    memcpy(nul, a.session, sl);
    nul[10] = '\0';
    kc_header nul_hdr = { "kchat-session", nul, sl };
    all_ops_refused(&a, NULL, &nul_hdr, 1, room, b.id, b.id);
    /* A's own session still works and the room is untouched */
    json_t *r = call_ok(&a, "room-history", json_pack("{ss ss}", "userId", a.id, "roomId", room));
    assert_int_equal(json_array_size(json_object_get(r, "messages")), 0);
    json_decref(r);
}

/* ======================================================================== */
/* HTTP: forged cookies, throttled login                                    */
/* ======================================================================== */

typedef struct tuser {
    kc_user u;
    kh_browser b;
} tuser;

static void http_expect(kh_resp *r, long status, const char *code)
{
    const char *ec = kc_str(r->json, "errorCode");
    bool ok = r->status == status &&
              (code == NULL ? kc_check_ok(r->json, NULL)
                            : (ec != NULL && strcmp(ec, code) == 0));
    if (!ok) {
        kh_resp_dump(r, "unexpected answer");
        fprintf(stderr, "want %ld %s\n", status, code ? code : "(success)");
        kc_diag_dump();
    }
    assert_true(ok);
    assert_no_password_in(r->what, r->body, r->body_len);
}

static void tuser_new(tuser *t, const char *tag, int32_t part, bool same)
{
    user_init_in(&t->u, tag, part, same);
    kh_browser_init(&t->b, tag, g_gw_base);
    kh_resp *r = kh_do(&t->b, "POST", "/api/users",
                       json_pack("{ss ss ss ss}", "userId", t->u.id, "userPw", t->u.pw, "email",
                                 t->u.email, "userName", t->u.name));
    http_expect(r, 201, NULL);
    kh_resp_free(r);
    r = kh_do(&t->b, "POST", "/api/login",
              json_pack("{ss ss}", "userId", t->u.id, "userPw", t->u.pw));
    http_expect(r, 200, NULL);
    kh_resp_free(r);
    assert_non_null(kh_cookie_get(&t->b, COOKIE));
}

static kh_resp *http_call(kh_browser *b, const char *method, const char *path, const char *body)
{
    return kh_request(b, &(kh_req){ .method = method, .path = path, .raw = body,
                                    .raw_len = body ? strlen(body) : 0, .keep_jar = true });
}

/* Every session route with browser @p b answers 401 UNAUTHENTICATED. */
static void all_routes_401(kh_browser *b, const char *room, const char *friend_id)
{
    char msgs[160], friends[160], rooms[160];
    snprintf(msgs, sizeof(msgs), "/api/rooms/%s/messages", room);
    snprintf(friends, sizeof(friends), "{\"friendId\":[\"%s\"]}", friend_id);
    snprintf(rooms, sizeof(rooms), "{\"friendId\":[\"%s\"],\"roomName\":\"forged\"}", friend_id);
    const struct { const char *method, *path, *body; } routes[] = {
        { "PUT", "/api/status", "{\"userStatus\":\"forged\"}" },
        { "GET", "/api/friends", NULL },
        { "POST", "/api/friends", friends },
        { "GET", "/api/rooms", NULL },
        { "POST", "/api/rooms", rooms },
        { "GET", msgs, NULL },
        { "POST", msgs, "{\"message\":\"forged\",\"clientMsgId\":\"forged-1\"}" },
        { "POST", "/api/logout", "{}" },
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        kh_resp *r = http_call(b, routes[i].method, routes[i].path, routes[i].body);
        http_expect(r, 401, "UNAUTHENTICATED");
        kh_resp_free(r);
    }
    kh_sse *s = kh_sse_open(b, "/api/events", NULL, 10000);
    if (kh_sse_status(s) != 401)
        kh_sse_dump(s, "events with a forged cookie");
    assert_int_equal(kh_sse_status(s), 401);
    kh_sse_close(s);
}

/* What test_http.c already covers: a made-up cookie on every route, and a
 * cookie naming B with A's session on GET /api/friends and one POST. Here:
 * that cookie on every route and the event stream, with B in A's shard and
 * in another, B's state checked with B's own cookie afterwards; and forged
 * cookie shapes. */
static void test_http_forged_cookies(void **state)
{
    (void)state;
    tuser a;
    tuser_new(&a, "hcA", -1, true);
    int32_t pa = kc_partition_for(a.u.id, PARTS);
    const char *cookie = kh_cookie_get(&a.b, COOKIE);
    const char *dot = strrchr(cookie, '.');
    assert_non_null(dot);
    char a_sid[256];
    snprintf(a_sid, sizeof(a_sid), "%s", dot + 1);

    for (int same = 1; same >= 0; same--) {
        tuser b;
        char room[65], path[160], forged[512];
        tuser_new(&b, same ? "hcBs" : "hcBo", pa, same);
        char body[200];
        snprintf(body, sizeof(body), "{\"friendId\":[\"%s\"]}", a.u.id);
        kh_resp *r = http_call(&b.b, "POST", "/api/friends", body);
        http_expect(r, 200, NULL);
        kh_resp_free(r);
        snprintf(body, sizeof(body), "{\"friendId\":[\"%s\"]}", b.u.id);
        r = http_call(&a.b, "POST", "/api/friends", body);
        http_expect(r, 200, NULL);
        kh_resp_free(r);
        snprintf(body, sizeof(body), "{\"friendId\":[\"%s\"],\"roomName\":\"mine\"}", a.u.id);
        r = http_call(&b.b, "POST", "/api/rooms", body);
        http_expect(r, 201, NULL);
        snprintf(room, sizeof(room), "%s", kc_str(r->json, "roomId"));
        kh_resp_free(r);
        snprintf(path, sizeof(path), "/api/rooms/%s/messages", room);
        r = http_call(&b.b, "POST", path, "{\"message\":\"first\"}");
        http_expect(r, 201, NULL);
        kh_resp_free(r);
        r = http_call(&b.b, "PUT", "/api/status", "{\"userStatus\":\"calm\"}");
        http_expect(r, 200, NULL);
        kh_resp_free(r);

        /* B's name with A's session */
        kh_browser f;
        kh_browser_init(&f, "forger", g_gw_base);
        snprintf(forged, sizeof(forged), "%s.%s", b.u.id, a_sid);
        kh_cookie_set(&f, COOKIE, forged);
        all_routes_401(&f, room, a.u.id);

        /* B, with its own cookie: nothing changed */
        r = http_call(&b.b, "GET", "/api/friends", NULL);
        http_expect(r, 200, NULL);
        assert_int_equal(json_array_size(json_object_get(r->json, "friend")), 1);
        kh_resp_free(r);
        r = http_call(&b.b, "GET", "/api/rooms", NULL);
        http_expect(r, 200, NULL);
        json_t *rooms = json_object_get(r->json, "rooms");
        assert_int_equal(json_array_size(rooms), 1);
        assert_int_equal(kc_int(json_array_get(rooms, 0), "lastSeq", -1), 1);
        kh_resp_free(r);
        r = http_call(&a.b, "GET", "/api/friends", NULL);
        http_expect(r, 200, NULL);
        json_t *fl = json_object_get(r->json, "friend");
        bool seen = false;
        for (size_t i = 0; i < json_array_size(fl); i++)
            if (strcmp(kc_str(json_array_get(fl, i), "userId"), b.u.id) == 0) {
                seen = true;
                KC_ASSERT_STR(json_array_get(fl, i), "userStatus", "calm");
            }
        assert_true(seen);
        kh_resp_free(r);
        r = http_call(&b.b, "GET", "/api/friends", NULL);   /* B still logged in */
        http_expect(r, 200, NULL);
        kh_resp_free(r);
    }

    /* forged shapes: no dot, empty parts, an invalid user id, a session too
     * long, with a character outside the session alphabet, another length */
    char k200[256], bad_char[300], shorter[300], no_user[300], bad_user[300];
    memset(k200, 'a', 200);
    k200[200] = '\0';
    snprintf(bad_char, sizeof(bad_char), "%s.%.31s!", a.u.id, a_sid);
    snprintf(shorter, sizeof(shorter), "%s.%.31s", a.u.id, a_sid);
    snprintf(no_user, sizeof(no_user), ".%s", a_sid);
    snprintf(bad_user, sizeof(bad_user), "bad/user.%s", a_sid);
    char too_long[400];
    snprintf(too_long, sizeof(too_long), "%s.%s", a.u.id, k200);
    char user_only[100];
    snprintf(user_only, sizeof(user_only), "%s.", a.u.id);
    const char *shapes[] = { a_sid, user_only, no_user, bad_user, too_long, bad_char, shorter,
                             "garbage" };
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        kh_browser f;
        kh_browser_init(&f, "forger", g_gw_base);
        kh_cookie_set(&f, COOKIE, shapes[i]);
        kh_resp *r = http_call(&f, "GET", "/api/friends", NULL);
        if (r->status != 401)
            fprintf(stderr, "cookie \"%s\"\n", shapes[i]);
        http_expect(r, 401, "UNAUTHENTICATED");
        kh_resp_free(r);
        r = http_call(&f, "PUT", "/api/status", "{\"userStatus\":\"forged\"}");
        http_expect(r, 401, "UNAUTHENTICATED");
        kh_resp_free(r);
    }
    /* A's own cookie still works */
    kh_resp *r = http_call(&a.b, "GET", "/api/rooms", NULL);
    http_expect(r, 200, NULL);
    kh_resp_free(r);
}

/* A locked login over HTTP: 401 BAD_CREDENTIALS as PROTOCOL.md §8 maps it,
 * with Retry-After (whole seconds) and retryAfterMs, no cookie; plain
 * failures have no Retry-After. */
static void test_http_throttled_login(void **state)
{
    (void)state;
    tuser c;
    char wrong[40];
    tuser_new(&c, "hthr", -1, true);
    kh_cookie_set(&c.b, COOKIE, NULL);
    kc_new_password(wrong, sizeof(wrong));
    json_t *wrong_body = json_pack("{ss ss}", "userId", c.u.id, "userPw", wrong);
    json_t *right_body = json_pack("{ss ss}", "userId", c.u.id, "userPw", c.u.pw);
    for (int i = 0; i < MAX_FAILURES; i++) {
        kh_resp *r = kh_do(&c.b, "POST", "/api/login", json_incref(wrong_body));
        http_expect(r, 401, "BAD_CREDENTIALS");
        assert_null(kh_header_get(r, "Retry-After", 0));
        kh_resp_free(r);
    }
    kh_resp *r = kh_do(&c.b, "POST", "/api/login", json_incref(right_body));
    http_expect(r, 401, "BAD_CREDENTIALS");
    const char *ra = kh_header_get(r, "Retry-After", 0);
    if (ra == NULL || atoi(ra) < 1 || atoi(ra) > LOCKOUT_S)
        kh_resp_dump(r, "Retry-After");
    assert_non_null(ra);
    assert_in_range(atoi(ra), 1, LOCKOUT_S);
    json_int_t ms = kc_int(r->json, "retryAfterMs", -1);
    assert_in_range(ms, 1, LOCKOUT_S * 1000);
    assert_non_null(strcasestr(kc_str(r->json, "errorMessage"), "too many failed"));
    const char *sc = kh_set_cookie(r, COOKIE);
    assert_true(sc == NULL || kh_cookie_is_clearing(sc));
    kh_resp_free(r);
    assert_null(kh_cookie_get(&c.b, COOKIE));

    kc_sleep_ms((int)ms + 300);
    r = kh_do(&c.b, "POST", "/api/login", json_incref(right_body));
    http_expect(r, 200, NULL);
    kh_resp_free(r);
    assert_non_null(kh_cookie_get(&c.b, COOKIE));
    json_decref(wrong_body);
    json_decref(right_body);

    /* the gateway counts them: logins answered 401 */
    char *m = get_metrics(g_gw_base);
    double n401 = metric(m, "kchat_gateway_http_requests_total{route=\"login\",status=\"401\"}");
    if (n401 < MAX_FAILURES + 1)
        fprintf(stderr, "gateway metrics:\n%s\n", m);
    assert_true(n401 >= MAX_FAILURES + 1);
    free(m);
}

/* ======================================================================== */
/* No password anywhere                                                     */
/* ======================================================================== */

static void test_no_password_in_records_logs_metrics(void **state)
{
    (void)state;
    kc_user u;
    user_new_in(&u, "last", -1, true);   /* every earlier answer is in by now */
    size_t n = 0;
    const char *const *pws = kc_passwords(&n);
    /* at least one per identity the tests above made (more when an id was
     * drawn again for its shard: how many is random, so this bound is the
     * sure part only; it was 20, which failed once on Kafka in CI) */
    assert_true(n >= 12);
    assert_true(kc_record_count(g_c) > 100);
    for (size_t i = 0; i < n; i++) {
        const kc_record *first = NULL;
        size_t hits = kc_records_containing(g_c, pws[i], strlen(pws[i]), &first);
        if (hits != 0)
            kc_record_dump(first, "a record with a password");
        assert_int_equal(hits, 0);
    }
    assert_int_equal(kc_records_containing(g_c, "$argon2", 7, NULL), 0);
    assert_no_password_in_file(kc_proc_log(g_srv));
    assert_no_password_in_file(kc_proc_log(g_gw));

    char *m = get_metrics(g_metrics);
    assert_no_password_in("the backend's /metrics", m, strlen(m));
    /* and the throttling is counted there */
    double failures = metric(m, "kchat_login_failures_total");
    double throttled = metric(m, "kchat_logins_throttled_total");
    if (failures < 3 * MAX_FAILURES || throttled < 4)
        fprintf(stderr, "backend metrics:\n%s\n", m);
    assert_true(failures >= 3 * MAX_FAILURES);
    assert_true(throttled >= 4);
    free(m);
    m = get_metrics(g_gw_base);
    assert_no_password_in("the gateway's /metrics", m, strlen(m));
    free(m);
}

static void hexify(const char *s, char *out)
{
    for (size_t i = 0; s[i]; i++)
        sprintf(out + 2 * i, "%02x", (unsigned char)s[i]);
}

/* Stop the gateway and the backend; then no log and no LMDB environment
 * holds a password, nor the throttled id that was never registered. */
static void test_no_password_at_rest(void **state)
{
    (void)state;
    int st = 0;
    kc_client_free(g_c);
    g_c = NULL;
    assert_int_equal(kc_proc_stop(g_gw, SIGTERM, 10, &st), 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(kc_proc_stop(g_srv, SIGTERM, 15, &st), 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        kc_proc_log_tail(g_srv, 40, stderr);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_no_password_in_file(kc_proc_log(g_srv));
    assert_no_password_in_file(kc_proc_log(g_gw));

    size_t nenv = 0, npw = 0, dumped = 0;
    char **envs = kc_find_lmdb_envs(g_data, &nenv);
    const char *const *pws = kc_passwords(&npw);
    assert_true(nenv > PARTS);   /* every shard and the directory replica */
    assert_true(g_ghost[0] != '\0');
    for (size_t e = 0; e < nenv; e++) {
        for (int printable = 0; printable <= 1; printable++) {
            char cmd[8192];
            snprintf(cmd, sizeof(cmd), "mdb_dump -a %s'%s' 2>/dev/null; mdb_dump %s'%s'",
                     printable ? "-p " : "", envs[e], printable ? "-p " : "", envs[e]);
            size_t len = 0;
            int rc = -1;
            char *out = kc_run_capture(cmd, &len, &rc);
            assert_non_null(out);
            assert_int_equal(rc, 0);
            dumped += len;
            for (size_t i = 0; i <= npw; i++) {
                const char *s = i < npw ? pws[i] : g_ghost;
                char hex[300];
                hexify(s, hex);
                const char *needle = printable ? s : hex;
                bool hit = kc_memmem(out, len, needle, strlen(needle));
                if (hit)
                    fprintf(stderr, "\"%s\" found by `%s`\n", s, cmd);
                assert_false(hit);
            }
            free(out);
        }
    }
    assert_true(dumped > 0);
    kc_strv_free(envs);
}

/* ======================================================================== */
/* -X reaches every Kafka client                                            */
/* ======================================================================== */

/* Lines of @p log that show a client dialling @p closed (librdkafka's
 * "127.0.0.1:1/bootstrap: Connect to ..." errors). */
static bool log_dials(const char *log, const char *closed)
{
    char needle[96];
    snprintf(needle, sizeof(needle), "%s/bootstrap", closed);
    return kc_file_contains(log, needle, strlen(needle));
}

/* `--brokers` names a closed port and `-X bootstrap.servers` the mock broker:
 * a Kafka client that did not get the -X properties dials the closed port
 * (and logs it) or never works. Also: --login-lockout 0 (no throttling). */
static void test_x_reaches_every_client(void **state)
{
    (void)state;
    char closed[32], xbs[1100], base[256];
    int port = kc_free_port();
    assert_true(port > 0);
    snprintf(closed, sizeof(closed), "127.0.0.1:%d", port);
    kc_proc *broker = kc_mock_broker_start("x-broker", 2);
    assert_non_null(broker);
    snprintf(xbs, sizeof(xbs), "bootstrap.servers=%s", kc_proc_bootstrap(broker));
    char *data = kc_tmppath("x-data");
    const char *extra[] = { "-X", xbs, "--login-lockout", "0", NULL };
    kc_proc *srv = kc_serve_start("x-serve", data, closed, 2, extra);
    assert_non_null(srv);
    const char *gw_extra[] = { "--brokers", closed, "-X", xbs, NULL };
    kc_proc *gw = kc_gateway_start("x-gateway", gw_extra, base, sizeof(base));
    assert_non_null(gw);
    kc_client *c = kc_client_new(kc_proc_bootstrap(broker), KC_FROM_END);
    assert_non_null(c);

    /* the backend answers (request consumer, producer) */
    kc_user u, v;
    kc_user_init(&u, "xu");
    assert_true(kc_user_register(c, &u));
    /* --login-lockout 0: 2 x max failures, then the right password works */
    char wrong[40];
    kc_new_password(wrong, sizeof(wrong));
    for (int i = 0; i < 2 * MAX_FAILURES; i++) {
        json_t *r = login(c, u.id, wrong);
        bool ok = is_plain_failure(r, u.id);
        json_decref(r);
        assert_true(ok);
    }
    assert_true(kc_user_login(c, &u));
    /* cross-shard commands and the directory (kchat-internal, kchat-directory) */
    user_init_in(&v, "xv", -1, true);
    for (int tries = 0; tries < 200 && kc_partition_for(v.id, 2) == kc_partition_for(u.id, 2);
         tries++)
        kc_user_init(&v, "xv");
    assert_true(kc_partition_for(v.id, 2) != kc_partition_for(u.id, 2));
    assert_true(kc_user_register(c, &v));
    assert_true(kc_user_login(c, &v));
    const char *fv[] = { v.id, NULL }, *fu[] = { u.id, NULL };
    assert_true(kc_add_friends(c, &u, fv));
    assert_true(kc_add_friends(c, &v, fu));
    char room[65];
    assert_true(kc_create_room(c, &u, fv, "x", room));
    assert_true(kc_chat(c, &v, room, "one", NULL) == 1);

    /* the gateway: calls (producer, consumer) and a resumed event stream
     * (a catch-up consumer of its own) */
    kh_browser b;
    kh_browser_init(&b, "xb", base);
    kh_resp *r = kh_do(&b, "POST", "/api/login", json_pack("{ss ss}", "userId", u.id, "userPw",
                                                          u.pw));
    http_expect(r, 200, NULL);
    kh_resp_free(r);
    kh_sse *s = kh_sse_open(&b, "/api/events", NULL, 10000);
    assert_int_equal(kh_sse_status(s), 200);
    assert_true(kc_chat(c, &v, room, "two", NULL) == 2);
    const kh_event *e = NULL;
    for (size_t from = 0; e == NULL || kc_int(e->json, "seq", 0) != 2;) {
        e = kh_sse_wait(s, from, NULL, NULL, 10000);
        if (e == NULL)
            kh_sse_dump(s, "no chat 2");
        assert_non_null(e);
        from = e->index + 1;
    }
    char last_id[256];
    assert_non_null(e->id);
    snprintf(last_id, sizeof(last_id), "%s", e->id);
    kh_sse_close(s);
    assert_true(kc_chat(c, &v, room, "three", NULL) == 3);
    s = kh_sse_open(&b, "/api/events", last_id, 10000);
    assert_int_equal(kh_sse_status(s), 200);
    e = kh_sse_wait(s, 0, NULL, NULL, 10000);
    if (e == NULL || kc_int(e->json, "seq", 0) != 3)
        kh_sse_dump(s, "resume after chat 2");
    assert_non_null(e);
    assert_int_equal(kc_int(e->json, "seq", 0), 3);
    kh_sse_close(s);

    kc_client_free(c);
    int st = 0;
    assert_int_equal(kc_proc_stop(gw, SIGTERM, 10, &st), 0);
    assert_int_equal(kc_proc_stop(srv, SIGTERM, 15, &st), 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* no client, at any time, dialled the address -X replaced */
    if (log_dials(kc_proc_log(srv), closed) || log_dials(kc_proc_log(gw), closed))
        kc_diag_dump();
    assert_false(log_dials(kc_proc_log(srv), closed));
    assert_false(log_dials(kc_proc_log(gw), closed));
    assert_no_password_in_file(kc_proc_log(srv));
    assert_no_password_in_file(kc_proc_log(gw));
    kc_proc_free(gw);
    kc_proc_free(srv);
    kc_proc_stop(broker, SIGTERM, 10, NULL);
    kc_proc_free(broker);
    free(data);
}

/* A property librdkafka refuses stops every command at start, naming it;
 * so does a TLS file that cannot be read. */
static void test_bad_x_property_stops_start(void **state)
{
    (void)state;
    static const char *const cmds[] = { "serve", "gateway", "dev" };
    char args[2048];
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        int status = -1;
        /* a gateway needs --brokers; serve and dev fail before using it */
        snprintf(args, sizeof(args), "%s --data x-bad-data --http 127.0.0.1:0 "
                 "--pwhash-ops 1 --pwhash-mem 8192 %s -X no.such.property=1", cmds[i],
                 strcmp(cmds[i], "gateway") ? "" : "--brokers 127.0.0.1:1");
        char *out = run_kchat(args, &status);
        if (status == 0 || status == 124)
            fprintf(stderr, "kchat %s exit %d:\n%s\n", cmds[i], status, out);
        assert_true(status != 0 && status != 124);
        assert_has(out, "no.such.property");
        free(out);
        snprintf(args, sizeof(args), "%s --data x-bad-data --http 127.0.0.1:0 "
                 "--pwhash-ops 1 --pwhash-mem 8192 --brokers 127.0.0.1:1 "
                 "-X security.protocol=SSL -X ssl.ca.location=/nonexistent/ca.pem", cmds[i]);
        out = run_kchat(args, &status);
        assert_true(status != 0 && status != 124);
        assert_has(out, "ssl.ca.location");
        free(out);
    }
}

/* ======================================================================== */
/* A locked login costs no password hash                                    */
/* ======================================================================== */

static void test_locked_login_runs_no_hash(void **state)
{
    (void)state;
    char *data = kc_tmppath("cost-data");
    /* Argon2id at 3 passes over 64 MiB: a few hundred ms per check */
    const char *extra[] = { "--pwhash-ops", "3", "--pwhash-mem", "67108864",
                            "--login-max-failures", "3", "--workers", "1", NULL };
    kc_proc *srv = kc_serve_start("cost-serve", data, KC_EMBEDDED, 2, extra);
    assert_non_null(srv);
    kc_client *c = kc_client_new(kc_proc_bootstrap(srv), KC_FROM_END);
    assert_non_null(c);
    kc_user u;
    kc_user_init(&u, "cost");
    assert_true(kc_user_register(c, &u));
    char wrong[40];
    kc_new_password(wrong, sizeof(wrong));
    int64_t hash_ms = INT64_MAX;
    for (int i = 0; i < 3; i++) {   /* each one checks the password: >= one Argon2 run */
        int64_t t0 = kc_now_ms();
        json_t *r = login(c, u.id, wrong);
        int64_t dt = kc_now_ms() - t0;
        bool ok = is_plain_failure(r, u.id);
        json_decref(r);
        assert_true(ok);
        if (dt < hash_ms)
            hash_ms = dt;
    }
    /* 30 locked logins back to back: were the password checked, they would
     * take 30 Argon2 runs on the one worker that owns the shard */
    char cids[30][72];
    int64_t t0 = kc_now_ms();
    for (int i = 0; i < 30; i++) {
        json_t *b = json_pack("{ss ss}", "userId", u.id, "userPw", i % 2 ? u.pw : wrong);
        assert_true(kc_send_req(c, "login", u.id, NULL, NULL, b, cids[i]));
        json_decref(b);
    }
    for (int i = 0; i < 30; i++) {
        const kc_record *r = kc_wait_cid(c, "login", cids[i], KC_CALL_TIMEOUT_MS);
        assert_non_null(r);
        assert_true(is_locked(r->body, u.id, 60000));
    }
    int64_t locked_ms = kc_now_ms() - t0;
    fprintf(stderr, "test_locked_login_runs_no_hash: a checked failure took >= %lld ms; "
            "30 locked logins took %lld ms\n", (long long)hash_ms, (long long)locked_ms);
    assert_true(hash_ms >= 50);             /* the cost options took effect */
    /* hash_ms is one check plus a round trip; 30 checks take well over
     * 3 x hash_ms, 30 answers without a check a small part of one */
    assert_true(locked_ms < 3 * hash_ms);
    kc_client_free(c);
    assert_int_equal(kc_proc_stop(srv, SIGTERM, 15, NULL), 0);
    kc_proc_free(srv);
    free(data);
}

/* --session-idle 3: a session works at once and is refused once unused for
 * longer. (Its last use is recorded at most once a minute, so the idle time
 * is exact to about a minute: here the session ends 3 s after the login.) */
static void test_idle_session_expires(void **state)
{
    (void)state;
    char *data = kc_tmppath("idle-data");
    const char *extra[] = { "--session-idle", "3", NULL };
    kc_proc *srv = kc_serve_start("idle-serve", data, KC_EMBEDDED, 1, extra);
    assert_non_null(srv);
    kc_client *c = kc_client_new(kc_proc_bootstrap(srv), KC_FROM_END);
    assert_non_null(c);
    kc_user u;
    kc_user_init(&u, "idle");
    assert_true(kc_user_register(c, &u));
    assert_true(kc_user_login(c, &u));
    KC_EXPECT_OK(kc_call(c, "user-status-change", u.id, u.session,
                         json_pack("{ss ss}", "userId", u.id, "userStatus", "here")), u.id);
    kc_sleep_ms(3600);
    KC_EXPECT_ERR(kc_call(c, "user-status-change", u.id, u.session,
                          json_pack("{ss ss}", "userId", u.id, "userStatus", "gone")),
                  u.id, "UNAUTHENTICATED");
    /* a new login gives a working session again */
    assert_true(kc_user_login(c, &u));
    KC_EXPECT_OK(kc_call(c, "user-search-friend", u.id, u.session,
                         json_pack("{ss}", "userId", u.id)), u.id);
    kc_client_free(c);
    assert_int_equal(kc_proc_stop(srv, SIGTERM, 15, NULL), 0);
    kc_proc_free(srv);
    free(data);
}

/* ======================================================================== */
/* login-request retention                                                  */
/* ======================================================================== */

/* retention.ms of @p topic per DescribeConfigs on @p brokers; malloc'd. */
static char *describe_retention(const char *brokers, const char *topic)
{
    char err[512], *value = NULL;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(rk);
    rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    rd_kafka_AdminOptions_set_request_timeout(o, 15000, err, sizeof(err));
    rd_kafka_DescribeConfigs(rk, &res, 1, o, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 20000);
    if (ev != NULL && rd_kafka_event_error(ev))
        fprintf(stderr, "DescribeConfigs %s: %s\n", topic, rd_kafka_event_error_string(ev));
    const rd_kafka_DescribeConfigs_result_t *dr = ev ? rd_kafka_event_DescribeConfigs_result(ev)
                                                     : NULL;
    size_t n = 0;
    const rd_kafka_ConfigResource_t **rs = dr ? rd_kafka_DescribeConfigs_result_resources(dr, &n)
                                              : NULL;
    for (size_t i = 0; i < n; i++) {
        size_t m = 0;
        const rd_kafka_ConfigEntry_t **e = rd_kafka_ConfigResource_configs(rs[i], &m);
        for (size_t j = 0; j < m; j++)
            if (strcmp(rd_kafka_ConfigEntry_name(e[j]), "retention.ms") == 0 &&
                rd_kafka_ConfigEntry_value(e[j]) != NULL)
                value = strdup(rd_kafka_ConfigEntry_value(e[j]));
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_ConfigResource_destroy(res);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return value;
}

static void test_login_retention(void **state)
{
    (void)state;
    int status = -1;
    /* the option is validated and documented */
    char *out = run_kchat("serve --help", &status);
    assert_int_equal(status, 0);
    assert_has(out, "--login-retention-ms");
    assert_has(out, "--login-max-failures");
    assert_has(out, "--login-window");
    assert_has(out, "--login-lockout");
    free(out);
    static const struct { const char *name, *value; } bad[] = {
        { "login-retention-ms", "0" }, { "login-retention-ms", "-1" },
        { "login-retention-ms", "soon" }, { "login-lockout", "-1" },
        { "login-max-failures", "0" }, { "login-window", "0" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char args[256];
        snprintf(args, sizeof(args), "serve --data r-bad-data --%s %s", bad[i].name,
                 bad[i].value);
        out = run_kchat(args, &status);
        if (status != 2)
            fprintf(stderr, "kchat %s: exit %d\n%s\n", args, status, out);
        assert_int_equal(status, 2);
        assert_has(out, bad[i].name);
        free(out);
    }
    /* The value on the topic. The embedded broker (librdkafka's mock
     * cluster) creates topics without configs and answers no DescribeConfigs
     * (it times out waiting for a controller), so this part needs a real
     * Kafka: KCHAT_TEST_BROKERS, where the main server of this program (or
     * an earlier kchat of the suite, all with the default) created the two
     * topics. */
    const char *real = kc_test_brokers();
    if (real == NULL) {
        fprintf(stderr, "test_login_retention: KCHAT_TEST_BROKERS is not set: the topic's "
                "retention.ms is checked only against a real Kafka\n");
        return;
    }
    static const char *const topics[] = { "login-request", "user-add-request" };
    for (size_t i = 0; i < 2; i++) {
        char *v = describe_retention(real, topics[i]);
        if (v == NULL || strcmp(v, "3600000") != 0)
            fprintf(stderr, "%s retention.ms is %s, want 3600000 (the default of "
                    "--login-retention-ms)\n", topics[i], v ? v : "(unknown)");
        assert_non_null(v);
        assert_string_equal(v, "3600000");
        free(v);
    }
}

/* ======================================================================== */
/* SASL_SSL to a real Kafka (make check-kafka: scripts/kafka start --sasl-ssl) */
/* ======================================================================== */

/* Writes a kchat --config file (mode 0600) at @p path with the cluster's
 * SASL_SSL client settings (secure-client.conf: KEY=VALUE lines) as
 * `kafka.KEY = VALUE`: the documented way to keep the password off the
 * command line. @p password, if not NULL, replaces sasl.password; @p no_ca
 * leaves ssl.ca.location out. */
static void secure_config(const char *path, const char *password, bool no_ca)
{
    char src[4200], *conf, *line, *save = NULL;
    snprintf(src, sizeof(src), "%s/secure-client.conf", getenv("KCHAT_TEST_KAFKA_DIR"));
    conf = kc_read_file(src, NULL);
    assert_non_null(conf);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fchmod(fileno(f), 0600), 0);
    for (line = strtok_r(conf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (eq == NULL || (no_ca && strncmp(line, "ssl.ca.location=", 16) == 0))
            continue;
        *eq = '\0';
        fprintf(f, "kafka.%s = %s\n", line,
                password != NULL && strcmp(line, "sasl.password") == 0 ? password : eq + 1);
    }
    assert_int_equal(fclose(f), 0);
    free(conf);
}

static char *secure_bootstrap(void)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/bootstrap-secure", getenv("KCHAT_TEST_KAFKA_DIR"));
    char *b = kc_read_file(path, NULL);
    assert_non_null(b);
    b[strcspn(b, "\n")] = '\0';
    return b;
}

/* `kchat serve` on @p boot with config file @p conf; must fail at start
 * (bounded), its output naming @p why and not holding @p secret. */
static void serve_refused(const char *boot, const char *conf, const char *why,
                          const char *secret)
{
    char args[8192];
    int status = -1;
    snprintf(args, sizeof(args), "serve --config '%s' --brokers %s --data sasl-refused "
             "--group-id kchat-sasl-refused --pwhash-ops 1 --pwhash-mem 8192", conf, boot);
    char *out = run_kchat(args, &status);
    if (status == 0 || status == 124)
        fprintf(stderr, "kchat %s: exit %d, wanted a refusal (%s)\n%s\n", args, status, why, out);
    assert_true(status != 0 && status != 124);
    assert_has(out, why);
    assert_null(strstr(out, secret));
    free(out);
}

/* kchat serve on the cluster's SASL_SSL listener only (SASL/PLAIN, TLS
 * verified against the cluster's CA), its credentials in a --config file:
 * users, a cross-shard chat send and its answer, with the test client on
 * the plaintext listener. A wrong password, and no CA to check the
 * broker's certificate by, stop serve at start, naming the cause. */
static void test_sasl_ssl_serve(void **state)
{
    (void)state;
    char *boot = secure_bootstrap(), *data = kc_tmppath("sasl-data");
    char *conf = kc_tmppath("sasl.conf"), *bad = kc_tmppath("sasl-bad.conf");
    kc_rm_rf(data);
    secure_config(conf, NULL, false);
    const char *extra[] = { "--config", conf, "--group-id", "kchat-sasl", NULL };
    kc_proc *srv = kc_serve_start("sasl-serve", data, boot, PARTS, extra);
    assert_non_null(srv);
    kc_client *c = kc_client_new(kc_test_brokers(), KC_FROM_END);
    assert_non_null(c);
    kc_user u, v;
    assert_true(kc_user_new(c, &u, "su"));
    int tries = 0;
    do
        assert_true(kc_user_new(c, &v, "sv"));
    while (kc_partition_for(v.id, PARTS) == kc_partition_for(u.id, PARTS) && ++tries < 32);
    const char *fv[] = { v.id, NULL };
    char room[65];
    assert_true(kc_add_friends(c, &u, fv));
    assert_true(kc_create_room(c, &u, fv, "over SASL_SSL", room));
    assert_int_equal(kc_chat(c, &v, room, "secure one", NULL), 1);
    kc_client_free(c);
    assert_true(kc_proc_stop_clean(srv, 20));
    assert_no_password_in_file(kc_proc_log(srv));
    assert_false(kc_file_contains(kc_proc_log(srv), "kchat-test-secret", 17));
    kc_proc_free(srv);

    secure_config(bad, "not-the-password", false);
    serve_refused(boot, bad, "Authentication failed", "not-the-password");
    secure_config(bad, NULL, true);
    serve_refused(boot, bad, "certificate verify failed", "kchat-test-secret");
    free(boot);
    free(data);
    free(conf);
    free(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_throttle_locks_one_user_only),
        cmocka_unit_test(test_throttle_unknown_ids),
        cmocka_unit_test(test_foreign_session_changes_nothing),
        cmocka_unit_test(test_garbage_sessions_refused),
        cmocka_unit_test(test_http_forged_cookies),
        cmocka_unit_test(test_http_throttled_login),
        cmocka_unit_test(test_no_password_in_records_logs_metrics),
        cmocka_unit_test(test_no_password_at_rest),
        cmocka_unit_test(test_x_reaches_every_client),
        cmocka_unit_test(test_bad_x_property_stops_start),
        cmocka_unit_test(test_locked_login_runs_no_hash),
        cmocka_unit_test(test_idle_session_expires),
        cmocka_unit_test(test_login_retention),
    };
    const struct CMUnitTest secure[] = {
        cmocka_unit_test(test_sasl_ssl_serve),
    };
    char path[4200];
    const char *dir = getenv("KCHAT_TEST_KAFKA_DIR");
    int rc = cmocka_run_group_tests_name("kchat security", tests, group_setup, group_teardown);
    /* only a real cluster started with `scripts/kafka start --sasl-ssl` has a
     * SASL_SSL listener (make check-kafka starts its clusters so) */
    snprintf(path, sizeof(path), "%s/bootstrap-secure", dir != NULL ? dir : "");
    if (kc_test_brokers() != NULL && dir != NULL && access(path, R_OK) == 0)
        rc += cmocka_run_group_tests_name("kchat over SASL_SSL (real Kafka)", secure, NULL, NULL);
    return rc;
}
