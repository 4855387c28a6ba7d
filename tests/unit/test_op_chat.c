/* Unit tests of chat and history (src/actors/chat.c) against temporary
 * stores, without a broker (tests/unit/ops/fixture.h): user-add-chat and
 * room-history (PROTOCOL.md section 3, rows 9-10), in the room's shard and
 * through an internal command from another shard: seq 1..n, the `chat`
 * event to every participant (section 6), idempotent sends by clientMsgId,
 * ROOM_NOT_FOUND before NOT_A_MEMBER, the limits, history paging. */
#include "ops/fixture.c"

static json_t *chat(struct fx *f, const char *writer, const char *session, const char *room,
                    const char *message, const char *cmid)
{
    if (cmid == NULL)
        return fx_ok(f, KCHAT_OP_ADD_CHAT, writer, session,
                     "{\"writerId\":\"%s\",\"roomId\":\"%s\",\"message\":\"%s\"}",
                     writer, room, message);
    return fx_ok(f, KCHAT_OP_ADD_CHAT, writer, session,
                 "{\"writerId\":\"%s\",\"roomId\":\"%s\",\"message\":\"%s\","
                 "\"clientMsgId\":\"%s\"}",
                 writer, room, message, cmid);
}

/* The `chat` events of the last call: one per participant, each the same
 * message. */
static void assert_chat_events(struct fx *f, const struct fx_cast *c, json_int_t seq,
                               const char *writer, const char *message, const char *cmid,
                               int64_t at)
{
    const char *users[3] = {"alice", c->bob, c->carol};
    char ts[25];

    kchat_iso8601(at, ts);
    assert_int_equal(fx_count(f, KCHAT_TOPIC_EVENTS), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *ev = fx_events(f, users[i]);
        fx_assert_json(ev, "[{\"type\":\"chat\",\"userId\":\"%s\",\"roomId\":\"%s\",\"seq\":%lld,"
                           "\"writerId\":\"%s\",\"message\":\"%s\",\"createdAt\":\"%s\","
                           "\"clientMsgId\":\"%s\"}]", users[i], c->room, (long long)seq,
                       writer, message, ts, cmid);
        json_decref(ev);
    }
}

static json_t *room_stored(struct fx *f, const struct fx_cast *c)
{
    return fx_get(f, c->home, KCHAT_TBL_ROOMS, c->room, strlen(c->room));
}

/* A writer in the room's shard: answered there, no command. */
static void test_chat_local(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char ts[25];
    json_t *a, *room;

    fx_cast_make(f, &c, true);
    kchat_iso8601(f->now_ms, ts);
    a = chat(f, c.carol, c.sc, c.room, "hello \xe2\x98\x83", NULL);
    fx_assert_json(a,
                   "{\"userId\":\"%s\",\"isSuccess\":true,\"errorCode\":\"\",\"errorMessage\":\"\","
                      "\"roomId\":\"%s\",\"writerId\":\"%s\",\"seq\":1,\"createdAt\":\"%s\","
                      "\"clientMsgId\":\"\"}", c.carol, c.room, c.carol, ts);
    json_decref(a);
    assert_int_equal(fx_count(f, KCHAT_TOPIC_INTERNAL), 0);
    assert_int_equal(fx_count(f, NULL), 5);   /* the answer, three events, the summary */
    assert_int_equal(fx_count(f, KCHAT_TOPIC_ROOMS), 1);
    a = fx_records(f, KCHAT_TOPIC_ROOMS);
    fx_assert_json(a, "[{\"roomId\":\"%s\",\"roomName\":\"\",\"participants\":"
                      "[\"alice\",\"%s\",\"%s\"],\"lastSeq\":1,\"ver\":2,"
                      "\"reads\":{\"%s\":1}}]", c.room, c.bob, c.carol, c.carol);
    json_decref(a);
    assert_chat_events(f, &c, 1, c.carol, "hello \xe2\x98\x83", "", f->now_ms);
    room = room_stored(f, &c);
    assert_int_equal(fx_int(room, "lastSeq"), 1);
    json_decref(room);
    assert_int_equal(fx_rows(f, KCHAT_TBL_MESSAGES), 1);
    assert_int_equal(fx_rows(f, KCHAT_TBL_IDEM), 0);
}

/* A writer in another shard: the command carries the chat to the room's
 * shard, which answers the writer (same kchat-cid, same format). */
static void test_chat_remote(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char ts[25];
    json_t *a, *cmds;

    fx_cast_make(f, &c, true);
    kchat_iso8601(f->now_ms, ts);
    f->cid = "chat-\x01-cid";
    f->fmt = KCHAT_FMT_MSGPACK;
    a = chat(f, c.bob, c.sb, c.room, "from afar", "m-1");
    fx_assert_json(a,
                   "{\"userId\":\"%s\",\"isSuccess\":true,\"errorCode\":\"\",\"errorMessage\":\"\","
                      "\"roomId\":\"%s\",\"writerId\":\"%s\",\"seq\":1,\"createdAt\":\"%s\","
                      "\"clientMsgId\":\"m-1\"}", c.bob, c.room, c.bob, ts);
    json_decref(a);
    cmds = fx_records(f, KCHAT_TOPIC_INTERNAL);
    fx_assert_json(cmds, "[{\"op\":\"chat\",\"roomId\":\"%s\",\"writerId\":\"%s\","
                         "\"message\":\"from afar\",\"clientMsgId\":\"m-1\",\"fmt\":1,"
                         "\"cid\":\"636861742d012d636964\"}]", c.room, c.bob);
    json_decref(cmds);
    for (size_t i = 0; i < f->n_recs; i++) {
        const struct out_rec *r = &f->recs[i];
        if (r->kind == OUT_COMMAND) {
            assert_int_equal(r->shard, c.away);
            assert_int_equal(r->target, c.home);
            assert_int_equal(r->key_len, strlen(c.room));   /* keyed by the room */
            assert_memory_equal(r->key, c.room, r->key_len);
        } else {
            assert_int_equal(r->shard, c.home);   /* answer and events from the room's shard */
        }
    }
    assert_chat_events(f, &c, 1, c.bob, "from afar", "m-1", f->now_ms);
    assert_int_equal(fx_rows(f, KCHAT_TBL_IDEM), 1);
}

/* Until the command is applied, the writer has no answer and the room no
 * message. */
static void test_chat_remote_held(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    json_t *a;

    fx_cast_make(f, &c, true);
    f->hold_commands = true;
    a = fx_call(f, KCHAT_OP_ADD_CHAT, c.bob, c.sb,
                "{\"writerId\":\"%s\",\"roomId\":\"%s\",\"message\":\"later\"}", c.bob, c.room);
    assert_null(a);
    assert_int_equal(f->n_held, 1);
    assert_int_equal(fx_count(f, KCHAT_TOPIC_EVENTS), 0);
    assert_int_equal(fx_rows(f, KCHAT_TBL_MESSAGES), 0);
    fx_deliver(f);
    a = fx_answer(f, KCHAT_OP_ADD_CHAT);
    assert_non_null(a);
    assert_int_equal(fx_int(a, "seq"), 1);
    json_decref(a);
    assert_int_equal(fx_count(f, KCHAT_TOPIC_EVENTS), 3);
}

/* seq numbers a room's messages 1, 2, 3 ... whoever writes, from any shard. */
static void test_chat_seq(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    const char *w[3], *s[3];
    char msg[32];
    json_t *a, *room;

    fx_cast_make(f, &c, true);
    w[0] = "alice";
    w[1] = c.bob;
    w[2] = c.carol;
    s[0] = c.sa;
    s[1] = c.sb;
    s[2] = c.sc;
    for (int i = 0; i < 30; i++) {
        snprintf(msg, sizeof(msg), "message %d", i + 1);
        f->now_ms += 7;
        a = chat(f, w[i % 3], s[i % 3], c.room, msg, NULL);
        assert_int_equal(fx_int(a, "seq"), i + 1);
        json_decref(a);
        assert_chat_events(f, &c, i + 1, w[i % 3], msg, "", f->now_ms);
    }
    room = room_stored(f, &c);
    assert_int_equal(fx_int(room, "lastSeq"), 30);
    json_decref(room);
    a = fx_ok(f, KCHAT_OP_HISTORY, c.bob, c.sb, "{\"userId\":\"%s\",\"roomId\":\"%s\"}",
              c.bob, c.room);
    assert_int_equal(json_array_size(json_object_get(a, "messages")), 30);
    for (size_t i = 0; i < 30; i++) {
        json_t *m = json_array_get(json_object_get(a, "messages"), i);
        snprintf(msg, sizeof(msg), "message %zu", i + 1);
        assert_int_equal(fx_int(m, "seq"), (json_int_t)i + 1);
        assert_string_equal(fx_str(m, "writerId"), w[i % 3]);
        assert_string_equal(fx_str(m, "message"), msg);
    }
    json_decref(a);
}

/* ROOM_NOT_FOUND when there is no room (before anything else about the
 * writer), NOT_A_MEMBER for a registered user outside it; in the room's
 * shard or through a command; nothing stored, no event. */
static void test_chat_room_not_found_not_a_member(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char nohome[65], noaway[65];
    json_t *a;

    fx_cast_make(f, &c, true);
    fx_id_on_shard(f, "rnone", c.home, nohome);
    fx_id_on_shard(f, "rnone", c.away, noaway);
#define CHAT_ERR(code, writer, session, room)                                  \
    do {                                                                       \
        a = fx_err(f, code, KCHAT_OP_ADD_CHAT, writer, session,                \
                   "{\"writerId\":\"%s\",\"roomId\":\"%s\",\"message\":\"x\"," \
                   "\"clientMsgId\":\"k\"}",                                   \
                   writer, room);                                              \
        assert_null(json_object_get(a, "seq"));                                \
        json_decref(a);                                                        \
        assert_int_equal(fx_count(f, KCHAT_TOPIC_EVENTS), 0);                  \
    } while (0)
    CHAT_ERR("ROOM_NOT_FOUND", "alice", c.sa, nohome);
    CHAT_ERR("ROOM_NOT_FOUND", "alice", c.sa, noaway);
    CHAT_ERR("ROOM_NOT_FOUND", c.bob, c.sb, nohome);
    CHAT_ERR("ROOM_NOT_FOUND", c.bob, c.sb, noaway);
    CHAT_ERR("ROOM_NOT_FOUND", c.dave, c.sd, nohome);   /* a stranger too */
    CHAT_ERR("ROOM_NOT_FOUND", c.eve, c.se, noaway);
    CHAT_ERR("NOT_A_MEMBER", c.eve, c.se, c.room);       /* in the room's shard */
    CHAT_ERR("NOT_A_MEMBER", c.dave, c.sd, c.room);      /* through a command */
#undef CHAT_ERR
    a = fx_err(f, "NOT_A_MEMBER", KCHAT_OP_ADD_CHAT, c.dave, c.sd,
               "{\"writerId\":\"%s\",\"roomId\":\"%s\",\"message\":\"x\"}", c.dave, c.room);
    assert_non_null(strstr(fx_str(a, "errorMessage"), c.dave));
    json_decref(a);
    assert_int_equal(fx_rows(f, KCHAT_TBL_MESSAGES), 0);
    assert_int_equal(fx_rows(f, KCHAT_TBL_IDEM), 0);
    /* the room still numbers from 1 */
    a = chat(f, "alice", c.sa, c.room, "first", NULL);
    assert_int_equal(fx_int(a, "seq"), 1);
    json_decref(a);
}

/* The same (writer, room, clientMsgId) again gets the first answer and
 * stores nothing; anything else is a new message. */
static void test_chat_idempotent(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    int64_t t0 = f->now_ms;
    char other[65], friends[160], *before, *after;
    json_t *first, *again, *room;

    fx_cast_make(f, &c, true);
    for (int remote = 0; remote < 2; remote++) {
        const char *w = remote ? c.bob : c.carol, *s = remote ? c.sb : c.sc;
        json_int_t seq;

        f->now_ms = t0;
        first = chat(f, w, s, c.room, "once", "cmid-1");
        seq = fx_int(first, "seq");
        before = fx_state(f);
        f->now_ms = t0 + 60000;
        again = chat(f, w, s, c.room, "a different text", "cmid-1");
        assert_true(json_equal(first, again));   /* seq, createdAt, clientMsgId of the first */
        assert_int_equal(fx_count(f, KCHAT_TOPIC_EVENTS), 0);
        after = fx_state(f);
        assert_string_equal(before, after);
        free(before);
        free(after);
        json_decref(again);
        json_decref(first);
        room = room_stored(f, &c);
        assert_int_equal(fx_int(room, "lastSeq"), seq);
        json_decref(room);
    }
    assert_int_equal(fx_rows(f, KCHAT_TBL_MESSAGES), 2);
    /* another writer with the same clientMsgId: a new message */
    first = chat(f, "alice", c.sa, c.room, "mine", "cmid-1");
    assert_int_equal(fx_int(first, "seq"), 3);
    json_decref(first);
    /* the same writer in another room: a new message there */
    snprintf(friends, sizeof(friends), "[\"%s\"]", c.carol);
    fx_room(f, "alice", c.sa, friends, other);
    first = chat(f, c.carol, c.sc, other, "elsewhere", "cmid-1");
    assert_int_equal(fx_int(first, "seq"), 1);
    json_decref(first);
    /* no clientMsgId (or an empty one): every send is new */
    for (int i = 0; i < 2; i++) {
        first = chat(f, c.carol, c.sc, c.room, "again", NULL);
        assert_int_equal(fx_int(first, "seq"), 4 + 2 * i);
        json_decref(first);
        first = chat(f, c.carol, c.sc, c.room, "again", "");
        assert_int_equal(fx_int(first, "seq"), 5 + 2 * i);
        json_decref(first);
    }
    assert_int_equal(fx_rows(f, KCHAT_TBL_MESSAGES), 8);
    assert_int_equal(fx_rows(f, KCHAT_TBL_IDEM), 4);
}

static void test_chat_bad_request(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char *m4096 = fx_rep(f, 'm', 4096), *m4097 = fx_rep(f, 'm', 4097);
    char *k64 = fx_rep(f, 'k', 64), *k65 = fx_rep(f, 'k', 65);
    char *pad = fx_rep(f, 'p', KCHAT_MAX_VALUE);
    json_t *a;

    fx_cast_make(f, &c, true);
#define BAD(...) \
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_ADD_CHAT, "alice", c.sa, __VA_ARGS__))
    BAD("{\"writerId\":\"alice\",\"roomId\":\"%s\",\"message\":\"\"}", c.room);
    BAD("{\"writerId\":\"alice\",\"roomId\":\"%s\",\"message\":\"%s\"}", c.room, m4097);
    BAD("{\"writerId\":\"alice\",\"roomId\":\"%s\",\"message\":\"\xf0\x28\x8c\x28\"}", c.room);
    BAD("{\"writerId\":\"alice\",\"roomId\":\"%s\",\"message\":\"a\\u0000b\"}", c.room);
    BAD("{\"writerId\":\"alice\",\"roomId\":\"%s\",\"message\":42}", c.room);
    BAD("{\"writerId\":\"alice\",\"roomId\":\"%s\"}", c.room);
    BAD("{\"writerId\":\"alice\",\"roomId\":\"%s\",\"message\":\"x\",\"clientMsgId\":\"%s\"}",
        c.room, k65);
    BAD("{\"writerId\":\"alice\",\"roomId\":\"%s\",\"message\":\"x\",\"clientMsgId\":7}", c.room);
    BAD("{\"writerId\":\"alice\",\"roomId\":\"no room\",\"message\":\"x\"}");
    BAD("{\"writerId\":\"alice\",\"roomId\":\"\",\"message\":\"x\"}");
    BAD("{\"writerId\":\"alice\",\"message\":\"x\"}");
    BAD("{\"userId\":\"alice\",\"roomId\":\"%s\",\"message\":\"x\"}", c.room);
    BAD("{\"writerId\":\"%s\",\"roomId\":\"%s\",\"message\":\"x\"}", c.carol, c.room);
#undef BAD
    json_decref(fx_err(f, "TOO_LARGE", KCHAT_OP_ADD_CHAT, "alice", c.sa,
                       "{\"writerId\":\"alice\",\"roomId\":\"%s\",\"message\":\"x\",\"p\":\"%s\"}",
                       c.room, pad));
    assert_int_equal(fx_rows(f, KCHAT_TBL_MESSAGES), 0);
    /* the largest message and clientMsgId are fine */
    a = chat(f, "alice", c.sa, c.room, m4096, k64);
    assert_int_equal(fx_int(a, "seq"), 1);
    assert_string_equal(fx_str(a, "clientMsgId"), k64);
    json_decref(a);
}

/* Text arrives as sent: escapes, non-ASCII; events in msgpack when the
 * deployment chooses it. */
static void test_chat_text_and_msgpack_events(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    json_t *a, *ev;

    fx_cast_make(f, &c, true);
    f->be.events_fmt = KCHAT_FMT_MSGPACK;
    a = chat(f, c.bob, c.sb, c.room, "line 1\\nline \\\"2\\\" \\\\ \xf0\x9f\x98\x80 \\u00e9", "q");
    json_decref(a);
    ev = fx_events(f, "alice");   /* checks the msgpack content-type */
    assert_int_equal(json_array_size(ev), 1);
    assert_string_equal(fx_str(json_array_get(ev, 0), "message"),
                        "line 1\nline \"2\" \\ \xf0\x9f\x98\x80 \xc3\xa9");
    json_decref(ev);
    a = fx_ok(f, KCHAT_OP_HISTORY, "alice", c.sa, "{\"userId\":\"alice\",\"roomId\":\"%s\"}",
              c.room);
    assert_string_equal(fx_str(json_array_get(json_object_get(a, "messages"), 0), "message"),
                        "line 1\nline \"2\" \\ \xf0\x9f\x98\x80 \xc3\xa9");
    json_decref(a);
}

/* In @p key, the store key of message @p seq of room @p room (the room id,
 * a NUL, the seq big-endian); its length. */
static size_t message_key(const char *room, uint64_t seq, unsigned char key[80])
{
    size_t rl = strlen(room);

    assert_true(rl + 9 <= 80);
    memcpy(key, room, rl);
    key[rl] = '\0';
    kchat_store_be64(seq, key + rl + 1);
    return rl + 9;
}

/* A repeat whose first message is gone from the store (damaged data) is
 * INTERNAL rather than a made-up answer. */
static void test_chat_repeat_of_lost_message(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    unsigned char key[80];
    size_t kl;
    kchat_txn *t;

    fx_cast_make(f, &c, true);
    json_decref(chat(f, c.carol, c.sc, c.room, "once", "k"));
    kl = message_key(c.room, 1, key);
    assert_int_equal(kchat_txn_begin(f->be.shards[c.home].store, true, &t), KCHAT_OK);
    assert_int_equal(kchat_txn_del(t, KCHAT_TBL_MESSAGES, key, kl), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    json_decref(fx_err(f, "INTERNAL", KCHAT_OP_ADD_CHAT, c.carol, c.sc,
                       "{\"writerId\":\"%s\",\"roomId\":\"%s\",\"message\":\"once\","
                       "\"clientMsgId\":\"k\"}", c.carol, c.room));
}

/* Chat and history commands that do not decode are refused (the backend
 * dead-letters them) and change nothing. */
static void test_chat_commands_malformed(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char cmd[512], *before, *after;
    const char *bad[] = {
        "{\"op\":\"chat\",\"writerId\":\"%s\",\"message\":\"x\",\"clientMsgId\":\"\"}",
        "{\"op\":\"chat\",\"roomId\":\"%s\",\"message\":\"x\",\"clientMsgId\":\"\"}",
        "{\"op\":\"chat\",\"roomId\":\"%s\",\"writerId\":\"b\",\"message\":1,\"clientMsgId\":\"\"}",
        "{\"op\":\"chat\",\"roomId\":\"%s\",\"writerId\":\"bob\",\"message\":\"x\"}",
        "{\"op\":\"history\",\"roomId\":\"%s\",\"userId\":\"bob\",\"limit\":0}",
        "{\"op\":\"history\",\"roomId\":\"%s\",\"userId\":\"bob\",\"limit\":101}",
        "{\"op\":\"history\",\"roomId\":\"%s\",\"userId\":\"bob\"}",
        "{\"op\":\"history\",\"userId\":\"%s\",\"limit\":5}",
    };

    fx_cast_make(f, &c, true);
    before = fx_state(f);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* bad[] are literals with one %s each */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(cmd, sizeof(cmd), bad[i], c.room);
#pragma GCC diagnostic pop
        assert_int_equal(fx_command(f, c.home, cmd), KCHAT_EDECODE);
    }
    after = fx_state(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
    /* the well-formed ones are applied (a msgpack answer, per "fmt") */
    snprintf(cmd, sizeof(cmd), "{\"op\":\"chat\",\"roomId\":\"%s\",\"writerId\":\"%s\","
             "\"message\":\"x\",\"clientMsgId\":\"\",\"fmt\":1,\"cid\":\"zz\"}", c.room, c.bob);
    assert_int_equal(fx_command(f, c.home, cmd), KCHAT_OK);
    assert_int_equal(fx_count(f, KCHAT_TOPIC_EVENTS), 3);
    for (size_t i = 0; i < f->n_recs; i++)
        if (strstr(f->recs[i].topic, "-response")) {
            char *ct = fx_header(&f->recs[i], KCHAT_HDR_CTYPE);
            assert_string_equal(ct, "application/msgpack");
            free(ct);
            assert_null(fx_header(&f->recs[i], KCHAT_HDR_CID));   /* "zz" is no hex */
        }
    snprintf(cmd, sizeof(cmd), "{\"op\":\"history\",\"roomId\":\"%s\",\"userId\":\"%s\","
             "\"limit\":100}", c.room, c.bob);
    assert_int_equal(fx_command(f, c.home, cmd), KCHAT_OK);
    assert_int_equal(fx_count(f, NULL), 1);
}

/* ---- history ---- */

static json_t *history(struct fx *f, const char *user, const char *session, const char *room,
                       const char *extra)
{
    json_t *a = fx_ok(f, KCHAT_OP_HISTORY, user, session,
                      "{\"userId\":\"%s\",\"roomId\":\"%s\"%s}", user, room, extra);
    json_t *m = json_incref(json_object_get(a, "messages"));

    assert_string_equal(fx_str(a, "roomId"), room);
    assert_int_equal(json_object_size(a), 7);   /* the common four, roomId, messages, reads */
    json_decref(a);
    return m;
}

/* The seqs of @p msgs are lo..hi, ascending. */
static void assert_seqs(json_t *msgs, json_int_t lo, json_int_t hi)
{
    assert_int_equal(json_array_size(msgs), hi >= lo ? (size_t)(hi - lo + 1) : 0);
    for (size_t i = 0; i < json_array_size(msgs); i++)
        assert_int_equal(fx_int(json_array_get(msgs, i), "seq"), lo + (json_int_t)i);
    json_decref(msgs);
}

static void fill(struct fx *f, const struct fx_cast *c, int n)
{
    char msg[32], cmid[32];

    for (int i = 1; i <= n; i++) {
        snprintf(msg, sizeof(msg), "m%d", i);
        cmid[0] = '\0';
        if (i % 2)
            snprintf(cmid, sizeof(cmid), "c%d", i);
        f->now_ms += 1000;
        json_decref(chat(f, i % 2 ? "alice" : c->bob, i % 2 ? c->sa : c->sb, c->room, msg, cmid));
    }
}

static void test_history(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    int64_t t0 = f->now_ms;
    char ts[25];
    json_t *a;

    fx_cast_make(f, &c, true);
    a = fx_ok(f, KCHAT_OP_HISTORY, "alice", c.sa, "{\"userId\":\"alice\",\"roomId\":\"%s\"}",
              c.room);
    fx_assert_json(a, "{\"userId\":\"alice\",\"isSuccess\":true,\"errorCode\":\"\","
                      "\"errorMessage\":\"\",\"roomId\":\"%s\",\"messages\":[],"
                      "\"reads\":[{\"userId\":\"alice\",\"readSeq\":0},{\"userId\":\"%s\","
                      "\"readSeq\":0},{\"userId\":\"%s\",\"readSeq\":0}]}", c.room, c.bob,
                   c.carol);
    json_decref(a);
    fill(f, &c, 60);
    /* each message as stored */
    kchat_iso8601(t0 + 2000, ts);
    a = history(f, "alice", c.sa, c.room, ",\"beforeSeq\":3,\"limit\":1");
    fx_assert_json(a, "[{\"seq\":2,\"writerId\":\"%s\",\"message\":\"m2\",\"createdAt\":\"%s\","
                      "\"clientMsgId\":\"\"}]", c.bob, ts);
    json_decref(a);
    kchat_iso8601(t0 + 1000, ts);
    a = history(f, c.carol, c.sc, c.room, ",\"beforeSeq\":2");
    fx_assert_json(a, "[{\"seq\":1,\"writerId\":\"alice\",\"message\":\"m1\",\"createdAt\":\"%s\","
                      "\"clientMsgId\":\"c1\"}]", ts);
    json_decref(a);
    /* the same from every member, in the room's shard or not */
    for (int who = 0; who < 3; who++) {
        const char *u = who == 0 ? "alice" : who == 1 ? c.bob : c.carol;
        const char *s = who == 0 ? c.sa : who == 1 ? c.sb : c.sc;
        assert_seqs(history(f, u, s, c.room, ""), 11, 60);               /* default limit 50 */
        assert_seqs(history(f, u, s, c.room, ",\"limit\":10"), 51, 60);
        assert_seqs(history(f, u, s, c.room, ",\"limit\":100"), 1, 60);
        assert_seqs(history(f, u, s, c.room, ",\"limit\":1"), 60, 60);
        assert_seqs(history(f, u, s, c.room, ",\"beforeSeq\":30,\"limit\":5"), 25, 29);
        assert_seqs(history(f, u, s, c.room, ",\"beforeSeq\":3"), 1, 2);
        assert_seqs(history(f, u, s, c.room, ",\"beforeSeq\":1"), 1, 0);
        assert_seqs(history(f, u, s, c.room, ",\"beforeSeq\":61,\"limit\":3"), 58, 60);
        assert_seqs(history(f, u, s, c.room, ",\"beforeSeq\":1000000"), 11, 60);
        assert_seqs(history(f, u, s, c.room, ",\"beforeSeq\":null,\"limit\":null"), 11, 60);
        assert_seqs(history(f, u, s, c.room, ",\"limit\":5.0"), 56, 60);
    }
    /* reading changes nothing */
    {
        char *before = fx_state(f), *after;
        assert_seqs(history(f, c.bob, c.sb, c.room, ""), 11, 60);
        after = fx_state(f);
        assert_string_equal(before, after);
        free(before);
        free(after);
        assert_int_equal(fx_count(f, KCHAT_TOPIC_EVENTS), 0);
    }
}

/* A stored message that is not an object's JSON text (damaged data: cut
 * short, overwritten) is left out of a history answer, in either format,
 * and the answer stays whole; the limit counts the messages returned. The
 * answer carries the others as stored (kchat__reply_ok_with_json()). */
static void test_history_skips_damaged(void **state)
{
    static const char *const damaged[] = {"{\"seq\":2,\"mess", "", "x", "{\"a\":\"\xff\"}"};
    struct fx *f = *state;
    struct fx_cast c;
    unsigned char key[80];
    size_t kl;
    kchat_txn *t;

    fx_cast_make(f, &c, true);
    fill(f, &c, 3);
    kl = message_key(c.room, 2, key);
    for (size_t i = 0; i < sizeof(damaged) / sizeof(damaged[0]); i++) {
        assert_int_equal(kchat_txn_begin(f->be.shards[c.home].store, true, &t), KCHAT_OK);
        assert_int_equal(kchat_txn_put(t, KCHAT_TBL_MESSAGES, key, kl, damaged[i],
                                       strlen(damaged[i])),
                         KCHAT_OK);
        assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
        for (int fmt = 0; fmt < 2; fmt++) {
            json_t *m;

            f->fmt = fmt ? KCHAT_FMT_MSGPACK : KCHAT_FMT_JSON;
            m = history(f, "alice", c.sa, c.room, "");
            assert_int_equal(json_array_size(m), 2);
            assert_int_equal(fx_int(json_array_get(m, 0), "seq"), 1);
            assert_int_equal(fx_int(json_array_get(m, 1), "seq"), 3);
            json_decref(m);
            m = history(f, "alice", c.sa, c.room, ",\"limit\":2");
            assert_int_equal(json_array_size(m), 2);
            json_decref(m);
            assert_seqs(history(f, "alice", c.sa, c.room, ",\"limit\":1"), 3, 3);
        }
        f->fmt = KCHAT_FMT_JSON;
    }
}

/* Paging back from the newest with beforeSeq = the oldest seq seen visits
 * every message once. */
static void test_history_paging(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    json_int_t before = 0, expect = 47;

    fx_cast_make(f, &c, true);
    fill(f, &c, 47);
    for (;;) {
        char extra[64];
        json_t *m;
        size_t n;

        snprintf(extra, sizeof(extra), before ? ",\"limit\":7,\"beforeSeq\":%lld" : ",\"limit\":7",
                 (long long)before);
        m = history(f, c.bob, c.sb, c.room, extra);
        n = json_array_size(m);
        if (n == 0) {
            json_decref(m);
            break;
        }
        for (size_t i = n; i-- > 0;)
            assert_int_equal(fx_int(json_array_get(m, i), "seq"), expect--);
        before = fx_int(json_array_get(m, 0), "seq");
        json_decref(m);
    }
    assert_int_equal(expect, 0);
}

static void test_history_errors(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char nohome[65], noaway[65];

    fx_cast_make(f, &c, true);
    fill(f, &c, 3);
    fx_id_on_shard(f, "rnone", c.home, nohome);
    fx_id_on_shard(f, "rnone", c.away, noaway);
#define HIST_ERR(code, user, session, room, extra)               \
    json_decref(fx_err(f, code, KCHAT_OP_HISTORY, user, session, \
                       "{\"userId\":\"%s\",\"roomId\":\"%s\"%s}", user, room, extra))
    HIST_ERR("ROOM_NOT_FOUND", "alice", c.sa, nohome, "");
    HIST_ERR("ROOM_NOT_FOUND", "alice", c.sa, noaway, "");
    HIST_ERR("ROOM_NOT_FOUND", c.bob, c.sb, nohome, "");
    HIST_ERR("ROOM_NOT_FOUND", c.dave, c.sd, nohome, "");   /* a stranger too */
    HIST_ERR("NOT_A_MEMBER", c.eve, c.se, c.room, "");
    HIST_ERR("NOT_A_MEMBER", c.dave, c.sd, c.room, "");      /* through a command */
    HIST_ERR("NOT_A_MEMBER", c.dave, c.sd, c.room, ",\"beforeSeq\":2,\"limit\":1");
    HIST_ERR("BAD_REQUEST", "alice", c.sa, c.room, ",\"limit\":0");
    HIST_ERR("BAD_REQUEST", "alice", c.sa, c.room, ",\"limit\":101");
    HIST_ERR("BAD_REQUEST", "alice", c.sa, c.room, ",\"limit\":-1");
    HIST_ERR("BAD_REQUEST", "alice", c.sa, c.room, ",\"limit\":5.5");
    HIST_ERR("BAD_REQUEST", "alice", c.sa, c.room, ",\"limit\":\"5\"");
    HIST_ERR("BAD_REQUEST", "alice", c.sa, c.room, ",\"beforeSeq\":0");
    HIST_ERR("BAD_REQUEST", "alice", c.sa, c.room, ",\"beforeSeq\":-3");
    HIST_ERR("BAD_REQUEST", "alice", c.sa, c.room, ",\"beforeSeq\":true");
    HIST_ERR("BAD_REQUEST", "alice", c.sa, "bad room", "");
#undef HIST_ERR
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_HISTORY, "alice", c.sa,
                       "{\"userId\":\"alice\"}"));
    json_decref(fx_err(f, "BAD_REQUEST", KCHAT_OP_HISTORY, "alice", c.sa,
                       "{\"userId\":\"%s\",\"roomId\":\"%s\"}", c.bob, c.room));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chat_local, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_chat_remote, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_chat_remote_held, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_chat_seq, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_chat_room_not_found_not_a_member, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_chat_idempotent, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_chat_bad_request, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_chat_text_and_msgpack_events, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_chat_repeat_of_lost_message, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_chat_commands_malformed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_history, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_history_paging, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_history_skips_damaged, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_history_errors, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
