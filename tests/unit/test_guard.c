/* Unit tests of the gateway's login guard (src/gateway/guard.c, included to
 * reach its static functions): --trusted-proxy ranges, which hop of
 * X-Forwarded-For / Forwarded names the client, the IPv6 /64 key, and the
 * address table's bound and window. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gateway/guard.c"

static gw_guard *guard_of(kchat_config *c, const char *proxies)
{
    char err[256] = "";
    gw_guard *g = NULL;

    memset(c, 0, sizeof(*c));
    c->trusted_proxy = (char *)proxies;
    c->login_addr_max_failures = 3;
    c->login_addr_window = 60;
    assert_int_equal(kchat__gw_guard_new(c, &g, err, sizeof(err)), KCHAT_OK);
    return g;
}

static void test_ranges(void **state)
{
    (void)state;
    kchat_config c;
    char err[256];
    gw_guard *g = guard_of(&c, "127.0.0.3,10.200.0.0/16,2001:db8::/32,::1");

    assert_int_equal(g->n_proxies, 4);
    assert_true(trusted(g, "127.0.0.3"));
    assert_false(trusted(g, "127.0.0.4"));
    assert_true(trusted(g, "10.200.255.1"));
    assert_false(trusted(g, "10.201.0.1"));
    assert_true(trusted(g, "2001:db8:ffff::7"));
    assert_false(trusted(g, "2001:db9::7"));
    assert_true(trusted(g, "::1"));
    assert_true(trusted(g, "::ffff:127.0.0.3"));   /* IPv4-mapped */
    assert_false(trusted(g, "not-an-address"));
    kchat__gw_guard_free(g);

    g = guard_of(&c, "10.0.0.0/12");   /* a prefix not on a byte boundary */
    assert_true(trusted(g, "10.15.255.255"));
    assert_false(trusted(g, "10.16.0.0"));
    kchat__gw_guard_free(g);

    const char *bad[] = { "10.0.0.0/33", "::/129", "1.2.3.4/", "1.2.3.4/x", "host.example",
                          "1.2.3.4,,5.6.7.8", "1.2.3.4/-1" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        g = NULL;
        c.trusted_proxy = (char *)bad[i];
        err[0] = '\0';
        int rc = kchat__gw_guard_new(&c, &g, err, sizeof(err));
        if (rc != KCHAT_ECONFIG)
            fprintf(stderr, "\"%s\" was accepted\n", bad[i]);
        assert_int_equal(rc, KCHAT_ECONFIG);
        assert_null(g);
        assert_non_null(strstr(err, "trusted-proxy"));
    }
}

static void test_forwarded_hops(void **state)
{
    (void)state;
    kchat_config c;
    gw_guard *g = guard_of(&c, "127.0.0.3,10.200.0.0/16");
    char out[64];

    /* the nearest hop that is not a proxy; what the client wrote further
     * left is not believed */
    assert_true(forwarded_client(g, "10.9.9.9, 10.200.1.1", false, out, sizeof(out)));
    assert_string_equal(out, "10.9.9.9");
    assert_true(forwarded_client(g, "6.6.6.6,10.9.9.9", false, out, sizeof(out)));
    assert_string_equal(out, "10.9.9.9");
    assert_true(forwarded_client(g, " 2001:db8::1 ", false, out, sizeof(out)));
    assert_string_equal(out, "2001:db8::1");
    /* nothing but proxies, or a hop that is not an address: none */
    assert_false(forwarded_client(g, "10.200.1.1, 127.0.0.3", false, out, sizeof(out)));
    assert_false(forwarded_client(g, "unknown", false, out, sizeof(out)));
    assert_false(forwarded_client(g, "", false, out, sizeof(out)));
    /* Forwarded (RFC 7239) */
    assert_true(forwarded_client(g, "for=192.0.2.60;proto=http;by=203.0.113.43", true, out,
                                 sizeof(out)));
    assert_string_equal(out, "192.0.2.60");
    assert_true(forwarded_client(g, "for=\"[2001:db8:cafe::17]:4711\"", true, out, sizeof(out)));
    assert_string_equal(out, "2001:db8:cafe::17");
    assert_true(forwarded_client(g, "for=1.2.3.4:8080, For=10.200.0.9", true, out, sizeof(out)));
    assert_string_equal(out, "1.2.3.4");
    assert_false(forwarded_client(g, "for=_hidden", true, out, sizeof(out)));
    assert_false(forwarded_client(g, "proto=http", true, out, sizeof(out)));
    kchat__gw_guard_free(g);
}

static void test_ipv6_counted_per_64(void **state)
{
    (void)state;
    char a[64], b[64], v4[64];

    addr_key("2001:db8:1:2:aaaa::1", a, sizeof(a));
    addr_key("2001:db8:1:2:bbbb:cccc:dddd:eeee", b, sizeof(b));
    addr_key("192.0.2.7", v4, sizeof(v4));
    assert_string_equal(a, "2001:db8:1:2::/64");
    assert_string_equal(a, b);
    assert_string_equal(v4, "192.0.2.7");
}

static void test_table_window_and_bound(void **state)
{
    (void)state;
    kchat_config c;
    gw_guard *g = guard_of(&c, "");
    struct addr_slot *s;
    char addr[32];

    /* unseen: nothing taken by a look-up */
    assert_null(addr_slot(g, "192.0.2.1", false, 1000));
    s = addr_slot(g, "192.0.2.1", true, 1000);
    s->failures = 3;
    assert_int_equal(addr_slot(g, "192.0.2.1", false, 30000)->failures, 3);
    /* the window (60 s) passed: the count starts over */
    assert_int_equal(addr_slot(g, "192.0.2.1", false, 61000)->failures, 0);
    /* a flood of distinct addresses stays in the fixed table */
    for (int i = 0; i < 100000; i++) {
        snprintf(addr, sizeof(addr), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        assert_non_null(addr_slot(g, addr, true, 62000 + i));
    }
    size_t used = 0;
    for (size_t i = 0; i < ADDR_SETS; i++)
        for (size_t w = 0; w < ADDR_WAYS; w++)
            used += g->slot[i][w].tag != 0;
    assert_int_equal(used, ADDR_SETS * ADDR_WAYS);
    kchat__gw_guard_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_forwarded_hops),
        cmocka_unit_test(test_ipv6_counted_per_64),
        cmocka_unit_test(test_table_window_and_bound),
    };
    return cmocka_run_group_tests_name("login guard", tests, NULL, NULL);
}
