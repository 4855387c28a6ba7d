/* The gateway's login guard (guard.h): device cookies and failed logins per
 * client address. */
#include "guard.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "gateway_int.h"
#include "kchat/error.h"

#define DEVICE_COOKIE "kchat_device"
#define DEVICE_BYTES 16               /* 128 random bits, 32 hex digits */
#define DEVICE_MAX_AGE 31536000       /* a year, in seconds */
#define ADDR_WAYS 8
#define ADDR_SETS 512                 /* 4096 addresses remembered at most */
#define MAX_PROXIES 32
#define MAX_HOPS 32                   /* forwarded hops looked at, from the nearest */

/* A range of --trusted-proxy. */
struct proxy_range {
    int family;                       /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;                         /* prefix length */
};

/* Failed logins of one client address in the current window. */
struct addr_slot {
    uint64_t tag;                     /* keyed hash of the address; 0 = free */
    int64_t first_ms;                 /* first failure of the window */
    uint32_t failures;
};

struct gw_guard {
    const kchat_config *cfg;
    unsigned char key[crypto_shorthash_KEYBYTES]; /* addresses cannot be aimed at a set */
    struct proxy_range proxies[MAX_PROXIES];
    size_t n_proxies;
    struct addr_slot slot[ADDR_SETS][ADDR_WAYS];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- addresses and proxies ---- */

/* Parse a literal address (IPv4, IPv6, an IPv4-mapped IPv6 taken as IPv4). */
static bool addr_parse(const char *s, int *family, unsigned char out[16])
{
    if (inet_pton(AF_INET, s, out) == 1) {
        *family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, s, out) == 1) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(out, mapped, sizeof(mapped)) == 0) {
            memmove(out, out + 12, 4);
            *family = AF_INET;
        } else {
            *family = AF_INET6;
        }
        return true;
    }
    return false;
}

/* Parse one range "ADDR[/BITS]". */
static bool range_parse(const char *s, struct proxy_range *r)
{
    char buf[64], *slash, *end;
    long bits;

    if (strlen(s) >= sizeof(buf))
        return false;
    snprintf(buf, sizeof(buf), "%s", s);
    if ((slash = strchr(buf, '/')) != NULL)
        *slash = '\0';
    if (!addr_parse(buf, &r->family, r->addr))
        return false;
    bits = r->family == AF_INET ? 32 : 128;
    if (slash != NULL) {
        long max = bits;
        bits = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || bits < 0 || bits > max)
            return false;
    }
    r->bits = (int)bits;
    return true;
}

static bool range_has(const struct proxy_range *r, int family, const unsigned char *a)
{
    int full = r->bits / 8, rest = r->bits % 8;

    if (family != r->family || memcmp(a, r->addr, (size_t)full) != 0)
        return false;
    return rest == 0 || ((a[full] ^ r->addr[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

/* Whether the literal address @p s is in a --trusted-proxy range. */
static bool trusted(const gw_guard *g, const char *s)
{
    unsigned char a[16];
    int family;

    if (!addr_parse(s, &family, a))
        return false;
    for (size_t i = 0; i < g->n_proxies; i++)
        if (range_has(&g->proxies[i], family, a))
            return true;
    return false;
}

/* One hop of a forwarded list, trimmed, into @p out: X-Forwarded-For's
 * plain address, or Forwarded's for= value without quotes, brackets and
 * port. False when it names no address. */
static bool hop_address(const char *start, size_t len, bool forwarded, char *out, size_t size)
{
    char buf[128];
    char *p, *q;
    int family;
    unsigned char a[16];

    if (len >= sizeof(buf))
        return false;
    memcpy(buf, start, len);
    buf[len] = '\0';
    p = buf;
    if (forwarded) {   /* "for=1.2.3.4;proto=http" or for="[::1]:80" */
        char *f = strcasestr(p, "for=");
        if (f == NULL)
            return false;
        p = f + 4;
        if ((q = strchr(p, ';')) != NULL)
            *q = '\0';
    }
    while (isspace((unsigned char)*p) || *p == '"')
        p++;
    for (q = p + strlen(p); q > p && (isspace((unsigned char)q[-1]) || q[-1] == '"'); q--)
        q[-1] = '\0';
    if (*p == '[') {   /* [v6] or [v6]:port */
        if ((q = strchr(p, ']')) == NULL)
            return false;
        *q = '\0';
        p++;
    } else if ((q = strchr(p, ':')) != NULL && strchr(q + 1, ':') == NULL) {
        *q = '\0';     /* v4:port */
    }
    if (!addr_parse(p, &family, a))
        return false;
    snprintf(out, size, "%s", p);
    return true;
}

/* The nearest hop of @p list (comma-separated, nearest last) that is not a
 * trusted proxy, into @p out; false when there is none or one is malformed
 * (the peer then counts). */
static bool forwarded_client(const gw_guard *g, const char *list, bool forwarded, char *out,
                             size_t size)
{
    const char *end = list + strlen(list);

    for (int hop = 0; hop < MAX_HOPS && end > list; hop++) {
        const char *start = end;
        while (start > list && start[-1] != ',')
            start--;
        if (!hop_address(start, (size_t)(end - start), forwarded, out, size))
            return false;
        if (!trusted(g, out))
            return true;
        end = start > list ? start - 1 : list;
    }
    return false;
}

/* The client address of @p req into @p out: the TCP peer, or, when the peer
 * is a trusted proxy, the address it forwarded for. */
static void client_address(const gw_guard *g, struct evhttp_request *req, char *out,
                           size_t size)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *xff, *fwd;
    char *peer = NULL;
    ev_uint16_t port = 0;

    out[0] = '\0';
    if (conn != NULL)
        evhttp_connection_get_peer(conn, &peer, &port);
    if (peer == NULL)
        return;
    snprintf(out, size, "%s", peer);
    if (g->n_proxies == 0 || !trusted(g, peer))
        return;
    /* a repeated header: libevent keeps each; the first is used, as by
     * most proxies that append to one line */
    xff = evhttp_find_header(h, "X-Forwarded-For");
    fwd = evhttp_find_header(h, "Forwarded");
    if ((xff == NULL || !forwarded_client(g, xff, false, out, size)) &&
        (fwd == NULL || !forwarded_client(g, fwd, true, out, size)))
        snprintf(out, size, "%s", peer);
}

/* The key @p client is counted under, into @p out: an IPv4 address as it
 * is, an IPv6 one as its /64 (one subscriber's usual allocation: counting
 * single IPv6 addresses would give one client 2^64 budgets). */
static void addr_key(const char *client, char *out, size_t size)
{
    unsigned char a[16];
    char text[INET6_ADDRSTRLEN];
    int family;

    if (!addr_parse(client, &family, a)) {
        snprintf(out, size, "%s", client);
        return;
    }
    if (family == AF_INET6)
        memset(a + 8, 0, 8);
    inet_ntop(family, a, text, sizeof(text));
    snprintf(out, size, "%s%s", text, family == AF_INET6 ? "/64" : "");
}

/* ---- the address table ---- */

static struct addr_slot *addr_slot(gw_guard *g, const char *client, bool take, int64_t now)
{
    unsigned char h[crypto_shorthash_BYTES];
    int64_t window_ms = (int64_t)g->cfg->login_addr_window * 1000;
    struct addr_slot *row, *victim = NULL;
    uint64_t tag;

    crypto_shorthash(h, (const unsigned char *)client, strlen(client), g->key);
    memcpy(&tag, h, sizeof(tag));
    if (tag == 0)
        tag = 1;
    row = g->slot[(tag >> 32) % ADDR_SETS];
    for (size_t w = 0; w < ADDR_WAYS; w++) {
        if (row[w].tag == tag) {
            if (now - row[w].first_ms >= window_ms)   /* the window passed: start over */
                row[w] = (struct addr_slot){.tag = tag, .first_ms = now};
            return &row[w];
        }
        if (victim == NULL || row[w].tag == 0 ||
            (victim->tag != 0 && row[w].first_ms < victim->first_ms))
            victim = &row[w];
    }
    if (!take)
        return NULL;
    *victim = (struct addr_slot){.tag = tag, .first_ms = now};   /* evicts the oldest */
    return victim;
}

/* ---- the guard ---- */

int kchat__gw_guard_new(const kchat_config *cfg, gw_guard **out, char *errstr,
                        size_t errstr_size)
{
    gw_guard *g = calloc(1, sizeof(*g));
    const char *p = cfg->trusted_proxy ? cfg->trusted_proxy : "";

    *out = NULL;
    if (g == NULL)
        return KCHAT_ENOMEM;
    g->cfg = cfg;
    crypto_shorthash_keygen(g->key);
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char one[64];

        if (len >= sizeof(one) || g->n_proxies == MAX_PROXIES)
            goto err_range;
        memcpy(one, p, len);
        one[len] = '\0';
        if (!range_parse(one, &g->proxies[g->n_proxies]))
            goto err_range;
        g->n_proxies++;
        p = end ? end + 1 : p + len;
    }
    *out = g;
    return KCHAT_OK;
err_range:
    snprintf(errstr, errstr_size,
             "trusted-proxy: \"%s\" is not a list of at most %d ADDRESS[/BITS] ranges", p,
             MAX_PROXIES);
    free(g);
    return KCHAT_ECONFIG;
}

void kchat__gw_guard_free(gw_guard *g)
{
    free(g);
}

/* The request's device cookie (32 hex digits) into @p out; false when it
 * has none or a malformed one. */
static bool device_cookie(struct evhttp_request *req, char out[2 * DEVICE_BYTES + 1])
{
    const char *c = evhttp_find_header(evhttp_request_get_input_headers(req), "Cookie");
    const char *p;

    for (p = c; p != NULL && (p = strstr(p, DEVICE_COOKIE "=")) != NULL; p++)
        if (p == c || p[-1] == ' ' || p[-1] == ';')
            break;
    if (p == NULL)
        return false;
    p += strlen(DEVICE_COOKIE "=");
    for (size_t i = 0; i < 2 * DEVICE_BYTES; i++)
        if (!isxdigit((unsigned char)p[i]))
            return false;
    if (p[2 * DEVICE_BYTES] != '\0' && p[2 * DEVICE_BYTES] != ';')
        return false;
    memcpy(out, p, 2 * DEVICE_BYTES);
    out[2 * DEVICE_BYTES] = '\0';
    return true;
}

bool kchat__gw_guard_login(kchat_gateway *gw, struct evhttp_request *req, gw_login *out,
                           double started)
{
    static const unsigned char domain[] = "kchat device digest v1";
    gw_guard *g = gw->guard;
    char cookie[2 * DEVICE_BYTES + 1], peer[64];
    unsigned char h[32];
    struct addr_slot *s;
    int64_t now = now_ms();

    memset(out, 0, sizeof(*out));
    client_address(g, req, peer, sizeof(peer));
    if (peer[0] != '\0')
        addr_key(peer, out->client, sizeof(out->client));
    if (out->client[0] != '\0' && (s = addr_slot(g, out->client, false, now)) != NULL &&
        s->failures >= (uint32_t)g->cfg->login_addr_max_failures) {
        int64_t left = s->first_ms + (int64_t)g->cfg->login_addr_window * 1000 - now;
        char secs[24], msg[160];

        snprintf(secs, sizeof(secs), "%lld", (long long)(left > 0 ? (left + 999) / 1000 : 1));
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", secs);
        snprintf(msg, sizeof(msg), "Too many failed logins from this address; try again in %s s.",
                 secs);
        kchat__gw_reply_error(gw, req, GW_ROUTE_login, 429, "TOO_MANY_REQUESTS", msg, started);
        return false;
    }
    if (!device_cookie(req, cookie)) {
        unsigned char raw[DEVICE_BYTES];
        char set[160];

        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(cookie, sizeof(cookie), raw, sizeof(raw));
        snprintf(set, sizeof(set),
                 DEVICE_COOKIE "=%s; HttpOnly; SameSite=Strict; Path=/api/login; Max-Age=%d",
                 cookie, DEVICE_MAX_AGE);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Set-Cookie", set);
    }
    crypto_generichash(h, sizeof(h), (const unsigned char *)cookie, strlen(cookie), domain,
                       sizeof(domain) - 1);
    sodium_bin2hex(out->device, sizeof(out->device), h, sizeof(h));
    sodium_memzero(cookie, sizeof(cookie));
    return true;
}

void kchat__gw_guard_login_failed(kchat_gateway *gw, const gw_login *l)
{
    struct addr_slot *s;

    if (l->client[0] == '\0')
        return;
    s = addr_slot(gw->guard, l->client, true, now_ms());
    if (s->failures < UINT32_MAX)
        s->failures++;
}
