/*
 * Private to src/actors: presence and followers (presence.c), used by the
 * batch loop (batch.c), user-add-friend (friends.c) and the data
 * directory's release (datadir.c). Not include/kchat/presence.h, the
 * records gateways send. Declared apart from actors.h (its structs and the
 * other files' interfaces), which it includes.
 */
#ifndef KCHAT_ACTORS_PRESENCE_H
#define KCHAT_ACTORS_PRESENCE_H

#include "actors.h"

/* ---- presence.c: presence and followers ---- */

/* Apply one kchat-presence record (its MAC already checked): online,
 * offline, beat or gone (include/kchat/presence.h). A record that does not
 * decode is counted and ignored. Errors: store errors, KCHAT_ENOMEM.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__presence_apply(struct ctx *c, const rd_kafka_message_t *m);

/* Whether @p sh's presence wants a transaction of its own now: dead
 * gateways, stale pairs, users to settle, the grace after an acquisition
 * (a look through the pairs at most once a second).
 * @locality worker that owns @p sh */
bool kchat__presence_due(struct shard *sh);

/* In every transaction of a shard: the sweep when due, and the users whose
 * pairs went settled (offline at @p at_ms / now). Errors: store errors.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__presence_sweep(struct ctx *c);
KCHAT_MUST_CHECK
int kchat__presence_settle_checked(struct ctx *c, int64_t at_ms);

/* The shard's transaction committed: the users settled in it are done.
 * @locality worker that owns @p sh */
void kchat__presence_committed(struct shard *sh);

/* Free the presence state of @p sh. @locality whoever frees the shard */
void kchat__presence_release(struct shard *sh);

/* @p follower follows @p user_id (user-add-friend): recorded in the
 * followed user's shard, here or by a `follow` command. Errors: store
 * errors, KCHAT_ENOMEM.
 * @locality worker that owns c->sh (the follower's shard) */
KCHAT_MUST_CHECK
int kchat__follow(struct ctx *c, const char *follower, const char *user_id);
/* The same in the followed user's own shard. @locality its worker */
KCHAT_MUST_CHECK
int kchat__follower_add(struct ctx *c, const char *user_id, const char *follower);

#endif /* KCHAT_ACTORS_PRESENCE_H */
