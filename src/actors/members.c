/* A room's participants and their read cursors (PROTOCOL.md v1.1,
 * operations 11-13): room-read, room-invite and room-leave.
 *
 * The room's shard holds the truth: the room record's `participants` and
 * `reads` (userId -> readSeq) change only there, each change bumping the
 * room's `ver` and publishing its summary (summaries.c), so every backend's
 * user-search-room sees lastSeq, the cursor and the participants of one
 * version together. The asking user's shard checks the session (and, for
 * an invite, which invitees exist and are the inviter's friends: its own
 * friend list) and hands the rest to the room's shard, directly when it is
 * the same shard, else by an internal command, whose target answers.
 * Memberships (the index user-search-room scans) follow in each user's
 * shard: added with the `room` event, removed by a leave.
 */
#include <string.h>

#include "actors.h"
#include "ops.h"
#include "rooms.h"
#include "replicas.h"
#include "kchat/error.h"

/* A room holds at most this many participants (PROTOCOL.md §3). */
#define ROOM_MAX_PARTICIPANTS 256

bool kchat__is_participant(const json_t *room, const char *user_id)
{
    json_t *parts = json_object_get(room, "participants"), *v;
    size_t i;

    json_array_foreach(parts, i, v)
        if (json_is_string(v) && !strcmp(json_string_value(v), user_id))
            return true;
    return false;
}

json_t *kchat__room_for_member(struct ctx *c, const char *room_id, const char *user_id, int *rc)
{
    json_t *room = kchat__get_json(c->txn, KCHAT_TBL_ROOMS, room_id, strlen(room_id));

    *rc = KCHAT_OK;
    if (room == NULL) {
        *rc = kchat__reply_err(c, KCHAT_WIRE_ROOM_NOT_FOUND, "No room %s.", room_id);
        return NULL;
    }
    if (!kchat__is_participant(room, user_id)) {
        json_decref(room);
        *rc = kchat__reply_err(c, KCHAT_WIRE_NOT_A_MEMBER, "%s is not a participant of room %s.",
                               user_id, room_id);
        return NULL;
    }
    return room;
}

int kchat__room_store(struct ctx *c, json_t *room)
{
    const char *id = json_string_value(json_object_get(room, "roomId"));
    int rc;

    if (id == NULL)
        return KCHAT_EINVAL;
    json_object_set_new(room, "ver",
                        json_integer(json_integer_value(json_object_get(room, "ver")) + 1));
    if ((rc = kchat__put_json(c->txn, KCHAT_TBL_ROOMS, id, strlen(id), room)) != KCHAT_OK)
        return rc;
    return kchat__room_summary_publish(c, room);
}

json_int_t kchat__room_read_seq(const json_t *room, const char *user_id)
{
    return json_integer_value(json_object_get(json_object_get(room, "reads"), user_id));
}

int kchat__room_set_read(json_t *room, const char *user_id, json_int_t seq)
{
    json_t *reads = json_object_get(room, "reads");

    if (!json_is_object(reads)) {
        if ((reads = json_object()) == NULL || json_object_set_new(room, "reads", reads) != 0)
            return KCHAT_ENOMEM;
    }
    return json_object_set_new(reads, user_id, json_integer(seq)) == 0 ? KCHAT_OK
                                                                        : KCHAT_ENOMEM;
}

/* Send @p ev (stolen) to every participant of @p room: a copy each.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int event_to_all(struct ctx *c, const json_t *room, json_t *ev)
{
    return kchat__event_to_each(c, ev, json_object_get(room, "participants"));
}

/* ---- room-read ---- */

int kchat__room_read(struct ctx *c, const char *room_id, const char *user_id, int64_t read_seq)
{
    json_t *room;
    json_int_t cur, last, next;
    int rc;

    if ((room = kchat__room_for_member(c, room_id, user_id, &rc)) == NULL)
        return rc;
    cur = kchat__room_read_seq(room, user_id);
    last = json_integer_value(json_object_get(room, "lastSeq"));
    next = read_seq < last ? read_seq : last;
    if (next > cur) {
        rc = kchat__room_set_read(room, user_id, next);
        if (rc == KCHAT_OK)
            rc = kchat__room_store(c, room);
        if (rc == KCHAT_OK)
            rc = event_to_all(c, room, json_pack("{s:s, s:s, s:s, s:I}", "type", "read",
                                                 "roomId", room_id, "readerId", user_id,
                                                 "readSeq", next));
    } else {
        next = cur;
    }
    if (rc == KCHAT_OK)
        rc = kchat__reply_ok(c, json_pack("{s:s, s:I}", "roomId", room_id, "readSeq", next));
    json_decref(room);
    return rc;
}

int kchat__op_room_read(struct ctx *c)
{
    const kchat_request *r = c->req;
    uint32_t target = kchat__shard_of(c->be, r->room_id);
    int rc;

    if (!kchat__session_ok(c, &rc))
        return rc;
    if (target == c->sh->id)
        return kchat__room_read(c, r->room_id, r->user_id, r->read_seq);
    return kchat__command(c, target, r->room_id,
                          json_pack("{s:s, s:s, s:s, s:I}", "op", "read", "roomId", r->room_id,
                                    "userId", r->user_id, "readSeq", (json_int_t)r->read_seq));
}

int kchat__cmd_read(struct ctx *c, const json_t *cmd)
{
    const char *room_id = json_string_value(json_object_get(cmd, "roomId"));
    json_t *seq = json_object_get(cmd, "readSeq");

    if (room_id == NULL || !json_is_integer(seq) || json_integer_value(seq) < 0)
        return KCHAT_EDECODE;
    c->op = KCHAT_OP_ROOM_READ;
    return kchat__room_read(c, room_id, c->user_id, json_integer_value(seq));
}

/* ---- room-invite ---- */

/* What the inviter's shard found out about each invitee. */
#define INVITEE_OK "ok"
#define INVITEE_UNKNOWN "unknown"      /* no such user: USER_NOT_FOUND */
#define INVITEE_NOT_FRIEND "stranger"  /* not the inviter's friend: NOT_A_FRIEND */

/* Add @p user_id to @p room's participants (the room's new version, not
 * stored yet), with a cursor at the room's lastSeq.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int participant_add(json_t *room, const char *user_id)
{
    if (json_array_append_new(json_object_get(room, "participants"), json_string(user_id)) != 0)
        return KCHAT_ENOMEM;
    return kchat__room_set_read(room, user_id,
                                json_integer_value(json_object_get(room, "lastSeq")));
}

/* The membership of @p user_id in @p room: here when it is this shard's
 * user, else by a command to theirs.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int membership_add(struct ctx *c, const char *user_id, const json_t *room)
{
    uint32_t target = kchat__shard_of(c->be, user_id);

    if (target == c->sh->id)
        return kchat__member_add(c, user_id, room);
    return kchat__command(c, target, user_id, json_pack("{s:s, s:s, s:O}", "op", "member",
                                                        "userId", user_id, "room", room));
}

int kchat__room_invite(struct ctx *c, const char *room_id, const char *inviter,
                       const json_t *invitees)
{
    json_t *room, *added, *before, *inv;
    size_t i, n_parts;
    int rc;

    if ((room = kchat__room_for_member(c, room_id, inviter, &rc)) == NULL)
        return rc;
    /* Errors in the order of PROTOCOL.md §3: every unknown id first, then
     * every stranger; participants (the inviter included) are skipped. */
    for (int pass = 0; pass < 2; pass++)
        json_array_foreach(invitees, i, inv) {
            const char *id = json_string_value(json_object_get(inv, "id"));
            const char *st = json_string_value(json_object_get(inv, "st"));

            if (kchat__is_participant(room, id))
                continue;
            if (pass == 0 && !strcmp(st, INVITEE_UNKNOWN))
                rc = kchat__reply_err(c, KCHAT_WIRE_USER_NOT_FOUND,
                                      "No user %s; nobody was invited.", id);
            else if (pass == 1 && !strcmp(st, INVITEE_NOT_FRIEND))
                rc = kchat__reply_err(c, KCHAT_WIRE_NOT_A_FRIEND,
                                      "%s is not one of your friends; nobody was invited.", id);
            else
                continue;
            json_decref(room);
            return rc;
        }
    added = json_array();
    json_array_foreach(invitees, i, inv) {
        const char *id = json_string_value(json_object_get(inv, "id"));
        if (!kchat__is_participant(room, id))
            json_array_append_new(added, json_string(id));
    }
    n_parts = json_array_size(json_object_get(room, "participants"));
    if (n_parts + json_array_size(added) > ROOM_MAX_PARTICIPANTS) {
        rc = kchat__reply_err(c, KCHAT_WIRE_BAD_REQUEST,
                              "A room holds at most %d participants; it has %zu and %zu more "
                              "were invited; nobody was invited.", ROOM_MAX_PARTICIPANTS,
                              n_parts, json_array_size(added));
        goto out_release;
    }
    if (json_array_size(added) == 0) {   /* nobody new: no change, no event */
        rc = kchat__reply_ok(c, json_pack("{s:s, s:O}", "roomId", room_id, "participants",
                                          json_object_get(room, "participants")));
        goto out_release;
    }
    before = json_deep_copy(room);   /* the participants an invite's `members` event goes to */
    for (i = 0; rc == KCHAT_OK && i < json_array_size(added); i++)
        rc = participant_add(room, json_string_value(json_array_get(added, i)));
    if (rc == KCHAT_OK)
        rc = kchat__room_store(c, room);
    if (rc == KCHAT_OK)
        rc = kchat__reply_ok(c, json_pack("{s:s, s:O}", "roomId", room_id, "participants",
                                          json_object_get(room, "participants")));
    if (rc == KCHAT_OK)
        rc = event_to_all(c, before, json_pack("{s:s, s:s, s:O, s:O, s:[]}", "type", "members",
                                               "roomId", room_id, "participants",
                                               json_object_get(room, "participants"),
                                               "added", added, "removed"));
    for (i = 0; rc == KCHAT_OK && i < json_array_size(added); i++)
        rc = membership_add(c, json_string_value(json_array_get(added, i)), room);
    json_decref(before);
out_release:
    json_decref(added);
    json_decref(room);
    return rc;
}

int kchat__op_room_invite(struct ctx *c)
{
    const kchat_request *r = c->req;
    uint32_t target = kchat__shard_of(c->be, r->room_id);
    json_t *invitees;
    int rc;

    if (!kchat__session_ok(c, &rc))
        return rc;
    /* What only this shard knows (the inviter's friends) and what the
     * directory says, taken here; the room's shard decides in its order. */
    invitees = json_array();
    for (size_t i = 0; i < r->n_friends; i++) {
        const char *id = r->friend_ids[i], *st = INVITEE_OK;
        json_t *d;

        if (strcmp(id, r->user_id) != 0) {
            if ((d = kchat__directory_get(c->be, id)) == NULL)
                st = INVITEE_UNKNOWN;
            else if (!kchat__is_friend(c->txn, r->user_id, id))
                st = INVITEE_NOT_FRIEND;
            json_decref(d);
        }
        json_array_append_new(invitees, json_pack("{s:s, s:s}", "id", id, "st", st));
    }
    if (target == c->sh->id) {
        rc = kchat__room_invite(c, r->room_id, r->user_id, invitees);
        json_decref(invitees);
        return rc;
    }
    return kchat__command(c, target, r->room_id,
                          json_pack("{s:s, s:s, s:s, s:o}", "op", "invite", "roomId", r->room_id,
                                    "userId", r->user_id, "invitees", invitees));
}

int kchat__cmd_invite(struct ctx *c, const json_t *cmd)
{
    const char *room_id = json_string_value(json_object_get(cmd, "roomId"));
    json_t *inv = json_object_get(cmd, "invitees"), *v;
    size_t i;

    if (room_id == NULL || !json_is_array(inv))
        return KCHAT_EDECODE;
    json_array_foreach(inv, i, v) {
        const char *id = json_string_value(json_object_get(v, "id"));
        if (id == NULL || !kchat_valid_id(id, strlen(id)) ||
            !json_is_string(json_object_get(v, "st")))
            return KCHAT_EDECODE;
    }
    c->op = KCHAT_OP_ROOM_INVITE;
    return kchat__room_invite(c, room_id, c->user_id, inv);
}

/* ---- room-leave ---- */

int kchat__room_leave(struct ctx *c, const char *room_id, const char *user_id)
{
    json_t *room, *parts, *kept, *p, *reads;
    uint32_t home = kchat__shard_of(c->be, user_id);
    size_t i;
    int rc;

    if ((room = kchat__room_for_member(c, room_id, user_id, &rc)) == NULL)
        return rc;
    parts = json_object_get(room, "participants");
    kept = json_array();
    json_array_foreach(parts, i, p)
        if (strcmp(json_string_value(p), user_id) != 0)
            json_array_append(kept, p);
    json_object_set_new(room, "participants", kept);
    if (json_is_object(reads = json_object_get(room, "reads")))
        json_object_del(reads, user_id);
    rc = kchat__room_store(c, room);
    if (rc == KCHAT_OK)
        rc = kchat__reply_ok(c, json_pack("{s:s}", "roomId", room_id));
    if (rc == KCHAT_OK) {   /* the members event: those who stay, and the leaver */
        json_t *ev = json_pack("{s:s, s:s, s:O, s:[], s:[s]}", "type", "members",
                               "roomId", room_id, "participants", kept, "added", "removed",
                               user_id);
        if (ev == NULL)
            rc = KCHAT_ENOMEM;
        else if ((rc = kchat__event(c, user_id, json_deep_copy(ev))) == KCHAT_OK)
            rc = event_to_all(c, room, ev);
        else
            json_decref(ev);
    }
    if (rc == KCHAT_OK)
        rc = home == c->sh->id
                 ? kchat__member_del(c, user_id, room_id)
                 : kchat__command(c, home, user_id, json_pack("{s:s, s:s, s:s}", "op",
                                                              "unmember", "userId", user_id,
                                                              "roomId", room_id));
    json_decref(room);
    return rc;
}

int kchat__op_room_leave(struct ctx *c)
{
    const kchat_request *r = c->req;
    uint32_t target = kchat__shard_of(c->be, r->room_id);
    int rc;

    if (!kchat__session_ok(c, &rc))
        return rc;
    if (target == c->sh->id)
        return kchat__room_leave(c, r->room_id, r->user_id);
    /* The membership goes at once, so that this user's room list no longer
     * shows the room once the answer came, whatever node answers: only a
     * participant has one, and a participant's leave succeeds (a leave
     * already on its way removes it anyway). */
    if ((rc = kchat__member_del(c, r->user_id, r->room_id)) != KCHAT_OK)
        return rc;
    return kchat__command(c, target, r->room_id,
                          json_pack("{s:s, s:s, s:s}", "op", "leave", "roomId", r->room_id,
                                    "userId", r->user_id));
}

int kchat__cmd_leave(struct ctx *c, const json_t *cmd)
{
    const char *room_id = json_string_value(json_object_get(cmd, "roomId"));

    if (room_id == NULL)
        return KCHAT_EDECODE;
    c->op = KCHAT_OP_ROOM_LEAVE;
    return kchat__room_leave(c, room_id, c->user_id);
}

int kchat__cmd_unmember(struct ctx *c, const json_t *cmd)
{
    const char *room_id = json_string_value(json_object_get(cmd, "roomId"));

    if (room_id == NULL || !kchat_valid_id(room_id, strlen(room_id)))
        return KCHAT_EDECODE;
    return kchat__member_del(c, c->user_id, room_id);
}
