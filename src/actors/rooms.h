/*
 * Private to src/actors: what rooms.c, members.c and chat.c share about a
 * room's record (participants, read cursors, versions) and its members'
 * memberships. Declared apart from actors.h (its structs and the other
 * files' interfaces), which it includes.
 */
#ifndef KCHAT_ACTORS_ROOMS_H
#define KCHAT_ACTORS_ROOMS_H

#include "actors.h"

/* ---- rooms.c and members.c: shared room helpers ---- */

/* Whether @p user_id is among @p room's participants. @locality any thread */
bool kchat__is_participant(const json_t *room, const char *user_id);

/* The stored room @p room_id of c->sh (a new reference), or NULL after
 * answering ROOM_NOT_FOUND or NOT_A_MEMBER (@p user_id not a participant),
 * the answer's result in @p rc.
 * @locality worker that owns c->sh (the room's shard) */
json_t *kchat__room_for_member(struct ctx *c, const char *room_id, const char *user_id, int *rc);

/* Store changed room @p room in c->sh: its `ver` bumped, the record put,
 * its summary published. Errors: store errors, KCHAT_ENOMEM, KCHAT_EINVAL
 * (no roomId).
 * @locality worker that owns c->sh (the room's shard) */
KCHAT_MUST_CHECK
int kchat__room_store(struct ctx *c, json_t *room);

/* The read cursor of @p user_id in @p room (or a room summary): 0 when it
 * has none. @locality any thread */
json_int_t kchat__room_read_seq(const json_t *room, const char *user_id);

/* Set the read cursor of @p user_id in @p room (not stored). KCHAT_ENOMEM.
 * @locality any thread */
KCHAT_MUST_CHECK
int kchat__room_set_read(json_t *room, const char *user_id, json_int_t seq);

/* Record in c->sh that @p user_id (its user) is in @p room, a copy of the
 * room's record, and send them the `room` event; drop that record.
 * Errors: store errors, KCHAT_ENOMEM.
 * @locality worker that owns c->sh (the user's shard) */
KCHAT_MUST_CHECK
int kchat__member_add(struct ctx *c, const char *user_id, const json_t *room);
KCHAT_MUST_CHECK
int kchat__member_del(struct ctx *c, const char *user_id, const char *room_id);

#endif /* KCHAT_ACTORS_ROOMS_H */
