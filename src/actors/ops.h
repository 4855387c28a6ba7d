/*
 * Private to src/actors: the operations of PROTOCOL.md section 3 and the
 * internal commands that carry them to another shard (users.c, friends.c,
 * rooms.c, members.c, chat.c), as batch.c and commands.c call them.
 * Declared apart from actors.h (its structs and the other files'
 * interfaces), which it includes.
 */
#ifndef KCHAT_ACTORS_OPS_H
#define KCHAT_ACTORS_OPS_H

#include "actors.h"

/* ---- operations: each answers exactly once, returns store errors only ----
 * @locality worker that owns c->sh (all of them) */
/* Run the operation c->op on the request decoded into c->req, in the open
 * transaction of c->sh; it answers exactly once. Errors: store errors,
 * KCHAT_EINVAL for an op outside the enum.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
int kchat__op_dispatch(struct ctx *c);

KCHAT_MUST_CHECK
int kchat__op_user_add(struct ctx *c);
KCHAT_MUST_CHECK
int kchat__op_login(struct ctx *c);
KCHAT_MUST_CHECK
int kchat__op_logout(struct ctx *c);
KCHAT_MUST_CHECK
int kchat__op_status(struct ctx *c);
KCHAT_MUST_CHECK
int kchat__op_add_friend(struct ctx *c);
KCHAT_MUST_CHECK
int kchat__op_search_friend(struct ctx *c);
KCHAT_MUST_CHECK
int kchat__op_add_room(struct ctx *c);
KCHAT_MUST_CHECK
int kchat__op_search_room(struct ctx *c);
KCHAT_MUST_CHECK
int kchat__op_add_chat(struct ctx *c);
KCHAT_MUST_CHECK
int kchat__op_history(struct ctx *c);
KCHAT_MUST_CHECK
int kchat__op_room_read(struct ctx *c);
KCHAT_MUST_CHECK
int kchat__op_room_invite(struct ctx *c);
KCHAT_MUST_CHECK
int kchat__op_room_leave(struct ctx *c);

/* Internal commands, applied in the target shard. KCHAT_EDECODE: the
 * command is malformed (the caller dead-letters it).
 * @locality worker that owns c->sh (the target shard) */
KCHAT_MUST_CHECK
int kchat__cmd_member(struct ctx *c, const json_t *cmd);
KCHAT_MUST_CHECK
int kchat__cmd_chat(struct ctx *c, const json_t *cmd);
KCHAT_MUST_CHECK
int kchat__cmd_history(struct ctx *c, const json_t *cmd);
KCHAT_MUST_CHECK
int kchat__cmd_read(struct ctx *c, const json_t *cmd);
KCHAT_MUST_CHECK
int kchat__cmd_invite(struct ctx *c, const json_t *cmd);
KCHAT_MUST_CHECK
int kchat__cmd_leave(struct ctx *c, const json_t *cmd);
KCHAT_MUST_CHECK
int kchat__cmd_unmember(struct ctx *c, const json_t *cmd);
KCHAT_MUST_CHECK
int kchat__cmd_follow(struct ctx *c, const json_t *cmd);

/* The chat/history work once the room's shard is reached (local or command).
 * @locality worker that owns c->sh (the room's shard) */
KCHAT_MUST_CHECK
int kchat__room_chat(struct ctx *c, const char *room_id, const char *writer_id,
                     const char *message, size_t message_len, const char *client_msg_id);
KCHAT_MUST_CHECK
int kchat__room_history(struct ctx *c, const char *room_id, const char *user_id,
                        int64_t before_seq, int limit);
/* room-read, room-invite and room-leave once the room's shard is reached
 * (members.c). @p invitees: [{id, st}] as the inviter's shard found them
 * ("ok", "unknown": no such user, "stranger": not the inviter's friend).
 * @locality worker that owns c->sh (the room's shard) */
KCHAT_MUST_CHECK
int kchat__room_read(struct ctx *c, const char *room_id, const char *user_id, int64_t read_seq);
KCHAT_MUST_CHECK
int kchat__room_invite(struct ctx *c, const char *room_id, const char *inviter,
                       const json_t *invitees);
KCHAT_MUST_CHECK
int kchat__room_leave(struct ctx *c, const char *room_id, const char *user_id);

/* friends.c: check the request's friendId list: not yourself (BAD_REQUEST),
 * every id a known user (USER_NOT_FOUND, "No user X; no <what>."). Answers
 * itself and returns false when a check fails.
 * @locality worker that owns c->sh */
bool kchat__friend_ids_ok(struct ctx *c, const char *what, int *rc);

/* friends.c: whether @p friend_id is on @p user_id's friend list. */
bool kchat__is_friend(kchat_txn *t, const char *user_id, const char *friend_id);

#endif /* KCHAT_ACTORS_OPS_H */
