/*
 * The gateway's login guard (guard.c): what the gateway adds to the
 * backend's login throttling (docs/security.md, "Login throttling").
 *
 *  - Device cookies (OWASP): every browser that logs in carries a long-lived
 *    random `kchat_device` cookie (128 bits, HttpOnly, SameSite=Strict,
 *    Path=/api/login); the gateway sends the backend a digest of it in the
 *    login's `kchat-device` header, never the cookie itself. The backend
 *    gives a device that logged in before its own failure budget.
 *  - A limit on failed logins per client address: a fixed table (bounded
 *    memory, the oldest entry of a set evicted), --login-addr-max-failures
 *    failures within --login-addr-window seconds, then 429
 *    TOO_MANY_REQUESTS with Retry-After until the window ends. The address
 *    is the TCP peer's, or, when the peer is one of the --trusted-proxy
 *    ranges, the nearest untrusted hop of X-Forwarded-For (else Forwarded);
 *    IPv6 clients are counted per /64.
 *
 * Everything here runs on the gateway's loop thread: no lock.
 */
#ifndef KCHAT_GATEWAY_GUARD_H
#define KCHAT_GATEWAY_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/http.h>

#include "kchat/config.h"

struct kchat_gateway;

/** The guard: the address table and the trusted proxies. Opaque. */
typedef struct gw_guard gw_guard;

/** What a login carries from its request to its answer. */
typedef struct gw_login {
    char device[65];   /**< hex digest of the device cookie; "" = none */
    char client[64];   /**< the client address counted (IPv6: its /64); "" = none */
} gw_login;

/**
 * @brief A guard for @p cfg (which must outlive it): parses --trusted-proxy.
 * @param[out] out the guard, to free with kchat__gw_guard_free().
 * @return KCHAT_OK; KCHAT_ECONFIG with @p errstr set for a bad range;
 *         KCHAT_ENOMEM.
 */
int kchat__gw_guard_new(const kchat_config *cfg, gw_guard **out, char *errstr,
                        size_t errstr_size);

/** @brief Free @p g (NULL: nothing). */
void kchat__gw_guard_free(gw_guard *g);

/**
 * @brief Before a login is sent: the client address, its limit (over it:
 *        answers 429 itself and returns false), and the device cookie (a
 *        new one is set on the answer when the request has none or a
 *        malformed one) whose digest goes into @p out.
 * @locality loop thread
 */
bool kchat__gw_guard_login(struct kchat_gateway *gw, struct evhttp_request *req, gw_login *out,
                           double started);

/**
 * @brief A login answered BAD_CREDENTIALS: count it against @p l's client.
 * @locality loop thread
 */
void kchat__gw_guard_login_failed(struct kchat_gateway *gw, const gw_login *l);

#endif
