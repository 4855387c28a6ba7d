/*
 * Regression 0045 (fixed by this series: login throttling with device
 * budgets and a per-address limit): a stranger locked any user out.
 *
 * kchat-test: kafka (also run on real Apache Kafka by `make check-kafka`)
 *
 * Failed logins were counted per user id only: five wrong passwords a
 * minute from anyone kept the id locked for ever, its owner included
 * (issue 12, attack 8). Now a device that logged in before (the gateway's
 * `kchat_device` cookie, sent to the backend as a digest in `kchat-device`)
 * has its own budget; unknown devices share the id's "untrusted" one; and
 * the gateway limits failed logins per client address (429), believing
 * X-Forwarded-For / Forwarded only from --trusted-proxy peers.
 *
 * Written as an attacker would:
 *  - over Kafka (raw protocol): the owner's device logs in once; a stranger
 *    fails MAX_FAILURES times with no device and with forged digests; the
 *    id is locked for no device and for a forged digest, and the owner's
 *    device still logs in (on the code before: locked, the test fails
 *    there); then the owner's device locks on its own failures;
 *  - over HTTP: the same with two browsers; the device cookie's attributes;
 *  - raw sockets from 127.0.0.1, .2, .3 to a gateway with a low per-address
 *    limit: the failing address gets 429 TOO_MANY_REQUESTS with
 *    Retry-After, another does not; X-Forwarded-For from an untrusted peer
 *    is ignored, from a trusted one (and Forwarded: for=) honoured;
 *  - the device list survives a restart of `kchat serve` (it is in the
 *    user's record in LMDB).
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
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <cmocka.h>

#include <sodium.h>

#include "support/http.h"
#include "support/kassert.h"
#include "support/kclient.h"

#define PARTS 2
#define MAX_FAILURES 5         /* the default of --login-max-failures */
#define ADDR_LIMIT 3           /* --login-addr-max-failures of the second gateway */

static kc_proc *g_srv, *g_gw, *g_gw2;
static kc_client *g_c;
static char *g_data;
static char g_base[256], g_base2[256];   /* the gateways' URLs without the '/' */

/* ---- helpers ---- */


/* A random device digest as a gateway would send it (64 hex digits). */
static void new_device(char out[65])
{
    unsigned char raw[32];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(out, 65, raw, sizeof(raw));
}

/* A login over Kafka naming @p device (NULL: no kchat-device header). */
static json_t *login_dev(kc_client *c, const char *id, const char *pw, const char *device)
{
    json_t *b = json_pack("{ss ss}", "userId", id, "userPw", pw);
    kc_header h = { "kchat-device", device, device ? strlen(device) : 0 };
    kc_req r = { .op = "login", .key = id, .body = b, .extra = device ? &h : NULL,
                 .extra_cnt = device ? 1 : 0 };
    json_t *v = kc_call_req(c, &r, NULL, NULL);
    json_decref(b);
    assert_non_null(v);
    return v;
}

static bool is_ok(json_t *r, const char *id)
{
    bool ok = kc_check_ok(r, id);
    json_decref(r);
    return ok;
}

/* BAD_CREDENTIALS with (@p locked true) or without a retryAfterMs. */
static bool is_refused(json_t *r, const char *id, bool locked)
{
    bool ok = kc_check_err(r, id, "BAD_CREDENTIALS") &&
              json_is_integer(json_object_get(r, "retryAfterMs")) == locked;
    if (!ok)
        fprintf(stderr, "want BAD_CREDENTIALS %s retryAfterMs: %s\n", locked ? "with" : "without",
                kc_dumps(r));
    json_decref(r);
    return ok;
}

/* The port of a gateway base "http://127.0.0.1:PORT". */
static int port_of(const char *base)
{
    const char *colon = strrchr(base, ':');
    return colon ? atoi(colon + 1) : 0;
}

/* POST /api/login over a raw socket bound to @p src, with @p extra header
 * lines ("" for none, each ending in \r\n). Returns the status; the
 * Retry-After value and the body go to @p retry (size 32) and @p body
 * (size 1024). Bounded by a 10 s socket timeout. */
static int raw_login(const char *src, int port, const char *extra, const char *id,
                     const char *pw, char *retry, char *body)
{
    struct sockaddr_in from = { .sin_family = AF_INET }, to = { .sin_family = AF_INET };
    struct timeval tv = { 10, 0 };
    char json[256], req[2048], resp[8192];
    size_t got = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0), status = 0;

    assert_true(fd >= 0);
    retry[0] = body[0] = '\0';
    inet_pton(AF_INET, src, &from.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    to.sin_port = htons((uint16_t)port);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    assert_int_equal(bind(fd, (struct sockaddr *)&from, sizeof(from)), 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0);
    snprintf(json, sizeof(json), "{\"userId\":\"%s\",\"userPw\":\"%s\"}", id, pw);
    int n = snprintf(req, sizeof(req),
                     "POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n%s",
                     port, strlen(json), extra, json);
    assert_int_equal(write(fd, req, (size_t)n), n);
    for (int i = 0; i < 1000 && got < sizeof(resp) - 1; i++) {
        ssize_t r = read(fd, resp + got, sizeof(resp) - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    resp[got] = '\0';
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
        fprintf(stderr, "no status line from %s: \"%s\"\n", src, resp);
    const char *ra = strcasestr(resp, "\r\nRetry-After:");
    if (ra != NULL)
        sscanf(ra + 14, " %31[0-9]", retry);
    const char *b = strstr(resp, "\r\n\r\n");
    if (b != NULL)
        snprintf(body, 1024, "%s", b + 4);
    return status;
}

/* ---- set-up ---- */

static int group_setup(void **state)
{
    (void)state;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (sodium_init() < 0)
        return -1;
    const char *extra[] = { "--login-lockout", "60", NULL };
    g_data = kc_tmppath("0045-data");
    kc_rm_rf(g_data);
    if ((g_srv = kc_serve_start("0045-serve", g_data, NULL, PARTS, extra)) == NULL)
        return -1;
    const char *gw[] = { "--brokers", kc_proc_bootstrap(g_srv), NULL };
    g_gw = kc_gateway_start("0045-gateway", gw, g_base, sizeof(g_base));
    char lim[16];
    snprintf(lim, sizeof(lim), "%d", ADDR_LIMIT);
    const char *gw2[] = { "--brokers", kc_proc_bootstrap(g_srv), "--login-addr-max-failures",
                          lim, "--login-addr-window", "60", "--trusted-proxy", "127.0.0.3",
                          "--trusted-proxy", "10.200.0.0/16", NULL };
    g_gw2 = kc_gateway_start("0045-gateway2", gw2, g_base2, sizeof(g_base2));
    if (g_gw == NULL || g_gw2 == NULL)
        return -1;
    g_c = kc_client_new(kc_proc_bootstrap(g_srv), KC_FROM_END);
    return g_c != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    kc_client_free(g_c);
    kc_proc *ps[] = { g_gw, g_gw2, g_srv };
    for (size_t i = 0; i < 3; i++) {
        if (ps[i] != NULL)
            kc_proc_stop(ps[i], SIGTERM, 10, NULL);
        kc_proc_free(ps[i]);
    }
    free(g_data);
    return 0;
}

/* ---- tests ---- */

/* The owner's device keeps its budget while strangers exhaust the id's. */
static void test_kafka_known_device_keeps_its_budget(void **state)
{
    (void)state;
    kc_user bob;
    char mine[65], forged[65], wrong[40];

    kc_user_init(&bob, "bob");
    assert_true(kc_user_register(g_c, &bob));
    new_device(mine);
    assert_true(is_ok(login_dev(g_c, bob.id, bob.pw, mine), bob.id));
    kc_new_password(wrong, sizeof(wrong));
    /* the stranger: no device, then forged digests, all on one budget */
    for (int i = 0; i < MAX_FAILURES; i++) {
        new_device(forged);
        assert_true(is_refused(login_dev(g_c, bob.id, wrong, i % 2 ? forged : NULL), bob.id,
                               false));
    }
    /* locked for strangers, whatever they claim: right password or not */
    new_device(forged);
    assert_true(is_refused(login_dev(g_c, bob.id, bob.pw, NULL), bob.id, true));
    assert_true(is_refused(login_dev(g_c, bob.id, bob.pw, forged), bob.id, true));
    assert_true(is_refused(login_dev(g_c, bob.id, bob.pw, "short"), bob.id, true));
    /* the owner's device logs in (before the fix: locked like the rest) */
    assert_true(is_ok(login_dev(g_c, bob.id, bob.pw, mine), bob.id));
    /* a known device is throttled too, on its own failures */
    for (int i = 0; i < MAX_FAILURES; i++)
        assert_true(is_refused(login_dev(g_c, bob.id, wrong, mine), bob.id, false));
    assert_true(is_refused(login_dev(g_c, bob.id, bob.pw, mine), bob.id, true));
}

/* The same through the gateway: the owner's browser against a stranger's. */
static void test_http_owner_browser_survives_stranger(void **state)
{
    (void)state;
    kc_user bob;
    kh_browser owner, stranger;
    char wrong[40];

    kc_user_init(&bob, "hbob");
    assert_true(kc_user_register(g_c, &bob));
    kh_browser_init(&owner, "owner", g_base);
    kh_browser_init(&stranger, "stranger", g_base);
    kh_resp *r = kh_do(&owner, "POST", "/api/login",
                       json_pack("{ss ss}", "userId", bob.id, "userPw", bob.pw));
    assert_int_equal(r->status, 200);
    const char *sc = kh_set_cookie(r, "kchat_device");
    assert_non_null(sc);
    assert_true(kh_cookie_has_attr(sc, "HttpOnly", NULL));
    assert_true(kh_cookie_has_attr(sc, "SameSite", "Strict"));
    assert_true(kh_cookie_has_attr(sc, "Path", "/api/login"));
    assert_true(kh_cookie_has_attr(sc, "Max-Age", "31536000"));
    const char *dev = kh_cookie_get(&owner, "kchat_device");
    assert_non_null(dev);
    assert_int_equal(strlen(dev), 32);   /* 128 random bits */
    kh_resp_free(r);

    kc_new_password(wrong, sizeof(wrong));
    for (int i = 0; i < MAX_FAILURES; i++) {
        r = kh_do(&stranger, "POST", "/api/login",
                  json_pack("{ss ss}", "userId", bob.id, "userPw", wrong));
        assert_int_equal(r->status, 401);
        assert_null(kh_header_get(r, "Retry-After", 0));
        kh_resp_free(r);
    }
    /* the stranger's device (its cookie, set on its first try) is locked */
    assert_non_null(kh_cookie_get(&stranger, "kchat_device"));
    r = kh_do(&stranger, "POST", "/api/login",
              json_pack("{ss ss}", "userId", bob.id, "userPw", bob.pw));
    assert_int_equal(r->status, 401);
    assert_non_null(kh_header_get(r, "Retry-After", 0));
    kh_resp_free(r);
    /* the owner's browser is not */
    r = kh_do(&owner, "POST", "/api/login",
              json_pack("{ss ss}", "userId", bob.id, "userPw", bob.pw));
    if (r->status != 200)
        kh_resp_dump(r, "owner's login while a stranger locked the id");
    assert_int_equal(r->status, 200);
    kh_resp_free(r);
}

/* The per-address limit: 429 for the failing address, not for others;
 * forwarded addresses only from a trusted proxy. */
static void test_addr_limit_and_forwarded(void **state)
{
    (void)state;
    int port = port_of(g_base2);
    char retry[32], body[1024], id[40], hdr[160];
    kc_user carol;

    kc_user_init(&carol, "carol");
    assert_true(kc_user_register(g_c, &carol));
    /* unknown ids, a new one each time: the backend's lockout stays out */
    for (int i = 0; i < ADDR_LIMIT; i++) {
        snprintf(id, sizeof(id), "nobody%d-%d", i, (int)getpid());
        assert_int_equal(raw_login("127.0.0.1", port, "", id, "wrong-password-1", retry, body), 401);
    }
    int st = raw_login("127.0.0.1", port, "", carol.id, carol.pw, retry, body);
    if (st != 429)
        fprintf(stderr, "over the limit got %d: %s\n", st, body);
    assert_int_equal(st, 429);
    assert_in_range(atoi(retry), 1, 60);
    assert_non_null(strstr(body, "\"TOO_MANY_REQUESTS\""));
    /* another address is not affected */
    assert_int_equal(raw_login("127.0.0.2", port, "", carol.id, carol.pw, retry, body), 200);
    /* X-Forwarded-For from an untrusted peer is ignored: .2 is not over */
    assert_int_equal(raw_login("127.0.0.2", port, "X-Forwarded-For: 127.0.0.1\r\n", carol.id,
                               carol.pw, retry, body), 200);
    /* from the trusted proxy .3 it names the client: .1 is over the limit */
    assert_int_equal(raw_login("127.0.0.3", port, "X-Forwarded-For: 127.0.0.1\r\n", carol.id,
                               carol.pw, retry, body), 429);
    /* ... and a forwarded client fails on its own count: 10.9.9.9 */
    snprintf(hdr, sizeof(hdr), "X-Forwarded-For: 10.9.9.9, 10.200.1.1\r\n");
    for (int i = 0; i < ADDR_LIMIT; i++) {
        snprintf(id, sizeof(id), "nobodyx%d-%d", i, (int)getpid());
        assert_int_equal(raw_login("127.0.0.3", port, hdr, id, "wrong-password-1", retry, body), 401);
    }
    assert_int_equal(raw_login("127.0.0.3", port, hdr, carol.id, carol.pw, retry, body), 429);
    assert_int_equal(raw_login("127.0.0.3", port, "Forwarded: for=10.9.9.9;proto=http\r\n",
                               carol.id, carol.pw, retry, body), 429);
    /* the proxy itself, and its other clients, are not locked by it */
    assert_int_equal(raw_login("127.0.0.3", port, "X-Forwarded-For: 10.9.9.8\r\n", carol.id,
                               carol.pw, retry, body), 200);
    assert_int_equal(raw_login("127.0.0.3", port, "", carol.id, carol.pw, retry, body), 200);
}

/* The devices a user logged in from are stored: a restart keeps them. */
static void test_devices_survive_restart(void **state)
{
    (void)state;
    kc_proc *srv = NULL;
    kc_client *c = NULL;
    char *data = kc_tmppath("0045-restart");
    char mine[65], wrong[40];
    kc_user dan;

    kc_rm_rf(data);
    assert_true(kc_embedded_up("0045-restart", data, PARTS, &srv, &c));
    kc_user_init(&dan, "dan");
    assert_true(kc_user_register(c, &dan));
    new_device(mine);
    assert_true(is_ok(login_dev(c, dan.id, dan.pw, mine), dan.id));
    assert_true(kc_embedded_down(&srv, &c, 30));
    /* a restart: the counts are gone, the known device is not */
    assert_true(kc_embedded_up("0045-restart", data, PARTS, &srv, &c));
    kc_new_password(wrong, sizeof(wrong));
    for (int i = 0; i < MAX_FAILURES; i++)
        assert_true(is_refused(login_dev(c, dan.id, wrong, NULL), dan.id, false));
    assert_true(is_refused(login_dev(c, dan.id, dan.pw, NULL), dan.id, true));
    assert_true(is_ok(login_dev(c, dan.id, dan.pw, mine), dan.id));
    assert_true(kc_embedded_down(&srv, &c, 30));
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kafka_known_device_keeps_its_budget),
        cmocka_unit_test(test_http_owner_browser_survives_stranger),
        cmocka_unit_test(test_addr_limit_and_forwarded),
        cmocka_unit_test(test_devices_survive_restart),
    };
    return cmocka_run_group_tests_name("0045 a stranger locks the owner out", tests,
                                       group_setup, group_teardown);
}
