/* Rooms. A room lives in the shard of murmur2(roomId); the server picks room
 * ids that hash to the creator's shard, so creating a room is one local
 * transaction, which also publishes the room's summary (summaries.c). Each
 * participant's membership lives in that participant's shard and is added
 * there, by an internal command when it is another shard. A search answers
 * from the memberships of the asking user's shard and, for each room, its
 * newest version this shard may read: lastSeq, participants and the read
 * cursor of one version (members.c). */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "actors.h"
#include "ops.h"
#include "rooms.h"
#include "replicas.h"
#include "kchat/error.h"

#define MEMBER_KEY_MAX (64 + 1 + 64)

static size_t member_key(char *out, const char *user_id, const char *room_id)
{
    size_t ul = strlen(user_id), rl = strlen(room_id);
    memcpy(out, user_id, ul);
    out[ul] = '\0';
    memcpy(out + ul + 1, room_id, rl);
    return ul + 1 + rl;
}

int kchat__member_add(struct ctx *c, const char *user_id, const json_t *room)
{
    const char *room_id = json_string_value(json_object_get(room, "roomId"));
    char key[MEMBER_KEY_MAX + 1];
    size_t kl = member_key(key, user_id, room_id);
    int rc;

    if ((rc = kchat__put_json(c->txn, KCHAT_TBL_MEMBERS, key, kl, room)) != KCHAT_OK)
        return rc;
    return kchat__event(c, user_id, json_pack("{s:s, s:s, s:O, s:O}", "type", "room",
                                              "roomId", room_id,
                                              "roomName", json_object_get(room, "roomName"),
                                              "participants",
                                              json_object_get(room, "participants")));
}

int kchat__member_del(struct ctx *c, const char *user_id, const char *room_id)
{
    char key[MEMBER_KEY_MAX + 1];
    size_t kl = member_key(key, user_id, room_id);
    int rc = kchat_txn_del(c->txn, KCHAT_TBL_MEMBERS, key, kl);

    return rc == KCHAT_ENOTFOUND ? KCHAT_OK : rc;
}

/* A fresh room id whose shard is this shard.
 * @locality worker that owns c->sh */
KCHAT_MUST_CHECK
static int room_id_new(struct ctx *c, char out[24])
{
    unsigned char raw[8];

    for (int tries = 0; tries < 1 << 16; tries++) {
        randombytes_buf(raw, sizeof(raw));
        out[0] = 'r';
        sodium_bin2hex(out + 1, 17, raw, sizeof(raw));
        if (kchat__shard_of(c->be, out) == c->sh->id &&
            kchat_txn_get(c->txn, KCHAT_TBL_ROOMS, out, strlen(out), &(const void *){0},
                          &(size_t){0}) == KCHAT_ENOTFOUND)
            return KCHAT_OK;
    }
    return KCHAT_EFULL;
}

int kchat__op_add_room(struct ctx *c)
{
    const kchat_request *r = c->req;
    char room_id[24], ts[25];
    json_t *room, *parts, *friends;
    size_t i;
    int rc;

    if (!kchat__session_ok(c, &rc) || !kchat__friend_ids_ok(c, "room was created", &rc))
        return rc;
    for (i = 0; i < r->n_friends; i++)
        if (!kchat__is_friend(c->txn, r->user_id, r->friend_ids[i]))
            return kchat__reply_err(c, KCHAT_WIRE_NOT_A_FRIEND,
                                    "%s is not one of your friends; no room was created.",
                                    r->friend_ids[i]);
    if (room_id_new(c, room_id) != KCHAT_OK)
        return kchat__reply_err(c, KCHAT_WIRE_INTERNAL, "No room id could be chosen.");
    kchat_iso8601(c->now_ms, ts);
    parts = json_array();
    friends = json_array();
    json_array_append_new(parts, json_string(r->user_id));
    for (i = 0; i < r->n_friends; i++) {
        json_array_append_new(parts, json_string(r->friend_ids[i]));
        json_array_append_new(friends, json_string(r->friend_ids[i]));
    }
    room = json_pack("{s:s, s:s, s:o, s:s, s:i, s:s, s:i, s:{}}", "roomId", room_id,
                     "roomName", r->has_room_name ? r->room_name : "",
                     "participants", parts, "createdAt", ts, "lastSeq", 0,
                     "creator", r->user_id, "ver", 1, "reads");
    if (room == NULL) {
        json_decref(friends);
        return KCHAT_ENOMEM;
    }
    rc = kchat__put_json(c->txn, KCHAT_TBL_ROOMS, room_id, strlen(room_id), room);
    if (rc == KCHAT_OK)
        rc = kchat__room_summary_publish(c, room);
    if (rc == KCHAT_OK)
        rc = kchat__reply_ok(c, json_pack("{s:s, s:O, s:O, s:s}", "roomId", room_id,
                                          "roomName", json_object_get(room, "roomName"),
                                          "friendId", friends, "createdAt", ts));
    /* Memberships: the creator's here, the others' in their own shards. */
    for (i = 0; rc == KCHAT_OK && i < json_array_size(parts); i++) {
        const char *p = json_string_value(json_array_get(parts, i));
        uint32_t target = kchat__shard_of(c->be, p);

        if (target == c->sh->id)
            rc = kchat__member_add(c, p, room);
        else
            rc = kchat__command(c, target, p, json_pack("{s:s, s:s, s:O}", "op", "member",
                                                        "userId", p, "room", room));
    }
    json_decref(friends);
    json_decref(room);
    return rc;
}

int kchat__cmd_member(struct ctx *c, const json_t *cmd)
{
    const char *user_id = json_string_value(json_object_get(cmd, "userId"));
    json_t *room = json_object_get(cmd, "room");

    if (user_id == NULL || !json_is_object(room) ||
        !json_is_string(json_object_get(room, "roomId")))
        return KCHAT_EDECODE;
    return kchat__member_add(c, user_id, room);
}

struct room_scan {
    struct ctx *c;
    kchat_txn *replica;   /* a read transaction of the replica; NULL: none could begin */
    json_t *rooms;
};

/* The newest view of a room that @p rs->c may read: its own open
 * transaction for a room of this shard (which may have changed it in this
 * very batch); for any other, the later of the room summaries replica's
 * and the copy the membership @p mine was stored with (the replica may not
 * have the summary yet when the membership came by command). Never another
 * shard's environment. A new reference, or NULL.
 * @locality worker that owns rs->c->sh */
static json_t *room_view(const struct room_scan *rs, const char *room_id, json_t *mine)
{
    struct ctx *c = rs->c;
    json_t *sum;

    if (kchat__shard_of(c->be, room_id) == c->sh->id)
        return kchat__get_json(c->txn, KCHAT_TBL_ROOMS, room_id, strlen(room_id));
    sum = rs->replica ? kchat__room_summary_get(rs->replica, room_id) : NULL;
    if (sum != NULL && !kchat__room_newer(mine, sum))
        return sum;
    json_decref(sum);
    return json_incref(mine);
}

static int room_scan_one(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    struct room_scan *rs = arg;
    json_t *mine = json_loadb(v, vl, 0, NULL), *room;
    const char *room_id, *me = rs->c->user_id;
    json_int_t last, read;

    (void)k;
    (void)kl;
    if (mine == NULL || (room_id = json_string_value(json_object_get(mine, "roomId"))) == NULL ||
        (room = room_view(rs, room_id, mine)) == NULL) {
        json_decref(mine);
        return 0;
    }
    /* A leave answered by the room's shard may be ahead of this membership. */
    if (kchat__is_participant(room, me)) {
        last = json_integer_value(json_object_get(room, "lastSeq"));
        read = kchat__room_read_seq(room, me);
        if (read > last)
            read = last;
        json_array_append_new(rs->rooms,
            json_pack("{s:s, s:O, s:O, s:I, s:I, s:I}", "roomId", room_id,
                      "roomName", json_object_get(room, "roomName"),
                      "participants", json_object_get(room, "participants"),
                      "lastSeq", last, "readSeq", read, "unread", last - read));
    }
    json_decref(room);
    json_decref(mine);
    return 0;
}
int kchat__op_search_room(struct ctx *c)
{
    struct room_scan rs = {c, NULL, json_array()};
    char prefix[66];
    size_t pl = strlen(c->user_id) + 1;
    int rc;

    if (!kchat__session_ok(c, &rc)) {
        json_decref(rs.rooms);
        return rc;
    }
    memcpy(prefix, c->user_id, pl);
    if (kchat_txn_begin(c->be->directory, false, &rs.replica) != KCHAT_OK)
        rs.replica = NULL;   /* rooms of other shards then show lastSeq 0, as unknown */
    rc = kchat_txn_scan(c->txn, KCHAT_TBL_MEMBERS, prefix, pl, false, room_scan_one, &rs);
    kchat_txn_abort(rs.replica);
    if (rc != KCHAT_OK) {
        json_decref(rs.rooms);
        return rc;
    }
    return kchat__reply_ok(c, json_pack("{s:o}", "rooms", rs.rooms));
}
