/*
 * Private to src/actors: login throttling (throttle.c) and the devices a
 * user logged in from (devices.c), used by the login of users.c.
 * Declared apart from actors.h (its structs and the other files'
 * interfaces), which it includes.
 */
#ifndef KCHAT_ACTORS_LOGINS_H
#define KCHAT_ACTORS_LOGINS_H

#include "actors.h"

/* ---- throttle.c: login throttling, on the worker that owns the shard ---- */

/* Monotonic milliseconds: the clock of the throttle (wall-clock steps do not
 * lengthen or end a lockout). */
int64_t kchat__throttle_now_ms(void);

/* The throttle counts failures per budget, a string: the user id alone (the
 * id's shared "untrusted" budget: unknown devices, no device, unknown ids)
 * or what kchat__login_budget() makes of the id and a device it knows. */

/* Milliseconds @p budget stays locked after @p now_ms; 0 when it is not
 * (an ended lockout is forgotten here).
 * @locality worker that owns the shard of @p t */
int64_t kchat__throttle_locked(struct login_throttle *t, const char *budget, int64_t now_ms);

/* Count a failed login against @p budget (known id or not); the failure that
 * reaches cfg->login_max_failures within cfg->login_window locks it for
 * cfg->login_lockout seconds. Does nothing when login_lockout is 0. A new
 * budget may evict another's slot: free, then ended, then the oldest
 * unlocked, then the lockout ending first.
 * @locality worker that owns the shard of @p t */
void kchat__throttle_fail(struct login_throttle *t, const kchat_config *cfg,
                          const char *budget, int64_t now_ms);

/* Forget @p budget's failures (a successful login).
 * @locality worker that owns the shard of @p t */
void kchat__throttle_reset(struct login_throttle *t, const char *budget);

/* ---- devices.c: the devices a user logged in from (login throttling) ---- */

/* Room for a budget string: a user id, '/', a device tag. */
#define KCHAT__BUDGET_LEN (64 + 1 + 32 + 1)

/* The throttle budget of the login in @p c into @p out: "ID/TAG" when the
 * request names (kchat-device) a device in @p user's list, else the bare id
 * (@p user NULL: an unknown id). Takes no ownership. */
void kchat__login_budget(const struct ctx *c, const json_t *user,
                         char out[KCHAT__BUDGET_LEN]);

/* After a successful login: put the request's device (if it names one) first
 * in @p user's list ("devices", at most KCHAT__DEVICES_MAX, the oldest
 * dropped); the caller stores @p user. Records without the list (an older
 * kchat's) read as an empty one. Errors: KCHAT_ENOMEM. */
#define KCHAT__DEVICES_MAX 16
KCHAT_MUST_CHECK
int kchat__device_remember(const struct ctx *c, json_t *user);

#endif /* KCHAT_ACTORS_LOGINS_H */
