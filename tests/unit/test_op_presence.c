/* Unit tests of presence (src/actors/presence.c; PROTOCOL.md v1.1 section
 * 6) against temporary stores, without a broker (tests/unit/ops/fixture.h):
 * kchat-presence records (include/kchat/presence.h) applied in the user's
 * shard, `presence` events to followers, online and lastSeen in
 * user-search-friend, several gateways, a gateway that stops beating, one
 * that forgets a user, one that says it is gone, and the grace after an
 * acquisition. The fixture's clock (f->now_ms) is the presence clock. */
#include "ops/fixture.c"

#include "kchat/presence.h"

#define G1 "00000000000000a1"
#define G2 "00000000000000b2"

static void say(struct fx *f, const char *user, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A presence record about @p user (printf format), in @p user's shard. */
static void say(struct fx *f, const char *user, const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    fx_presence(f, fx_shard_of(f, user), buf);
}

static void online(struct fx *f, const char *gw, const char *user)
{
    say(f, user, "{\"kind\":\"online\",\"gateway\":\"%s\",\"userId\":\"%s\",\"at\":%lld}", gw,
        user, (long long)f->now_ms);
}

static void offline(struct fx *f, const char *gw, const char *user, int64_t at)
{
    say(f, user, "{\"kind\":\"offline\",\"gateway\":\"%s\",\"userId\":\"%s\",\"at\":%lld}", gw,
        user, (long long)at);
}

static void beat(struct fx *f, const char *gw, const char *user, const char *users)
{
    say(f, user, "{\"kind\":\"beat\",\"gateway\":\"%s\",\"users\":%s,\"at\":%lld}", gw, users,
        (long long)f->now_ms);
}

/* The chat-events alice got from the last record. */
static json_t *alice_events(struct fx *f)
{
    return fx_events(f, "alice");
}

/* The friend entry of @p who in alice's user-search-friend. */
static json_t *friend_entry(struct fx *f, const char *sa, const char *who)
{
    json_t *a = fx_ok(f, KCHAT_OP_SEARCH_FRIEND, "alice", sa, "{\"userId\":\"alice\"}"), *v, *out = NULL;
    size_t i;

    json_array_foreach(json_object_get(a, "friend"), i, v)
        if (!strcmp(fx_str(v, "userId"), who))
            out = json_incref(v);
    json_decref(a);
    assert_non_null(out);
    return out;
}

static void expect_event(struct fx *f, const char *who, bool on, const char *last_seen)
{
    json_t *ev = alice_events(f);

    fx_assert_json(ev, "[{\"type\":\"presence\",\"userId\":\"alice\",\"friendId\":\"%s\","
                       "\"online\":%s,\"lastSeen\":\"%s\"}]", who, on ? "true" : "false",
                   last_seen);
    json_decref(ev);
}

static void expect_none(struct fx *f)
{
    json_t *ev = alice_events(f);

    fx_assert_json(ev, "[]");
    json_decref(ev);
}

/* Online at the first gateway, not again at the second; offline only when
 * the last one lets go, with its time as lastSeen; an online event then
 * carries that lastSeen. bob is in another shard than alice, his follower. */
static void test_online_offline(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    json_t *e;
    char ts[25];
    int64_t closed;

    fx_cast_make(f, &c, false);   /* alice follows bob and carol */
    online(f, G1, c.bob);
    expect_event(f, c.bob, true, "");
    e = friend_entry(f, c.sa, c.bob);
    assert_true(json_is_true(json_object_get(e, "online")));
    json_decref(e);
    online(f, G2, c.bob);
    expect_none(f);
    f->now_ms += 1000;
    offline(f, G1, c.bob, f->now_ms);
    expect_none(f);
    f->now_ms += 1000;
    closed = f->now_ms - 500;
    offline(f, G2, c.bob, closed);
    kchat_iso8601(closed, ts);
    expect_event(f, c.bob, false, ts);
    e = friend_entry(f, c.sa, c.bob);
    fx_assert_json(e, "{\"userId\":\"%s\",\"userName\":\"Name %s\",\"userStatus\":\"\","
                      "\"online\":false,\"lastSeen\":\"%s\"}", c.bob, c.bob, ts);
    json_decref(e);
    /* again: the previous lastSeen rides along */
    f->now_ms += 1000;
    online(f, G1, c.bob);
    expect_event(f, c.bob, true, ts);
    /* an offline from a gateway that never had him: nothing */
    offline(f, G2, c.bob, f->now_ms);
    expect_none(f);
    /* a time in the future is taken as now */
    offline(f, G1, c.bob, f->now_ms + 3600 * 1000);
    kchat_iso8601(f->now_ms, ts);
    expect_event(f, c.bob, false, ts);
    /* carol (alice's shard) too; dave follows nobody and nobody him */
    online(f, G1, c.carol);
    expect_event(f, c.carol, true, "");
    online(f, G1, c.dave);
    assert_int_equal(fx_count(f, KCHAT_TOPIC_EVENTS), 0);
}

/* A gateway that stops beating: its users offline after
 * KCHAT_PRESENCE_DEAD_MS, lastSeen when the backend concluded so; one that
 * beats on keeps its users. */
static void test_dead_gateway(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char seen[25];

    fx_cast_make(f, &c, false);
    online(f, G1, c.bob);
    expect_event(f, c.bob, true, "");
    online(f, G2, c.carol);
    expect_event(f, c.carol, true, "");
    for (int i = 0; i < 5; i++) {   /* G2 beats, G1 is silent */
        f->now_ms += KCHAT_PRESENCE_BEAT_MS;
        beat(f, G2, c.carol, "[]");
        beat(f, G2, c.bob, "[]");
        fx_presence_sweep(f, fx_shard_of(f, c.bob));
    }
    /* 25 s after G1's last word: bob went offline at a sweep */
    {
        json_t *u = fx_get(f, fx_shard_of(f, c.bob), KCHAT_TBL_USERS, c.bob, strlen(c.bob));
        assert_false(json_is_true(json_object_get(u, "online")));
        assert_true(strlen(fx_str(u, "lastSeen")) == 24);
        snprintf(seen, sizeof(seen), "%s", fx_str(u, "lastSeen"));
        json_decref(u);
    }
    /* carol was listed by no beat of G2 (an empty list): stale after
     * KCHAT_PRESENCE_STALE_MS, offline */
    {
        json_t *u = fx_get(f, fx_shard_of(f, c.carol), KCHAT_TBL_USERS, c.carol,
                           strlen(c.carol));
        assert_false(json_is_true(json_object_get(u, "online")));
        json_decref(u);
    }
    /* a gateway that lists its user in every beat keeps them online */
    online(f, G2, c.bob);
    expect_event(f, c.bob, true, seen);
    for (int i = 0; i < 6; i++) {
        f->now_ms += KCHAT_PRESENCE_BEAT_MS;
        beat(f, G2, c.bob, "[]");   /* another partition's beat: not bob's list */
        say(f, c.bob, "{\"kind\":\"beat\",\"gateway\":\"%s\",\"users\":[\"%s\"],\"at\":%lld}",
            G2, c.bob, (long long)f->now_ms);
        expect_none(f);
    }
}

/* `gone`: every user of that gateway offline at once. */
static void test_gone(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char ts[25];

    fx_cast_make(f, &c, false);
    online(f, G1, c.bob);
    expect_event(f, c.bob, true, "");
    f->now_ms += 2000;
    say(f, c.bob, "{\"kind\":\"gone\",\"gateway\":\"%s\",\"at\":%lld}", G1,
        (long long)f->now_ms);
    kchat_iso8601(f->now_ms, ts);
    expect_event(f, c.bob, false, ts);
}

/* A beat names a user it never said came online (its online record was
 * lost): online. Records that do not decode are ignored. */
static void test_beat_and_junk(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char *before, *after;

    fx_cast_make(f, &c, false);
    say(f, c.bob, "{\"kind\":\"beat\",\"gateway\":\"%s\",\"users\":[\"%s\",\"%s\"],\"at\":1}",
        G1, c.bob, c.dave);   /* dave is not of this shard: ignored here */
    expect_event(f, c.bob, true, "");
    before = fx_state(f);
    say(f, c.bob, "{\"kind\":\"online\",\"gateway\":\"short\",\"userId\":\"%s\"}", c.bob);
    say(f, c.bob, "{\"kind\":\"what\",\"gateway\":\"%s\",\"userId\":\"%s\"}", G1, c.bob);
    say(f, c.bob, "not json");
    say(f, c.bob, "{\"kind\":\"offline\",\"gateway\":\"%s\",\"userId\":\"no such\"}", G1);
    after = fx_state(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
    /* the last: an offline of a user no shard has */
    assert_int_equal(atomic_load(&f->be.stats.presence_refused), 4);
    /* an offline of a minute and more ago (a replayed copy): ignored */
    say(f, c.bob, "{\"kind\":\"offline\",\"gateway\":\"%s\",\"userId\":\"%s\",\"at\":%lld}",
        G1, c.bob, (long long)(f->now_ms - 61000));
    expect_none(f);
    assert_int_equal(atomic_load(&f->be.stats.presence_stale), 1);
}

/* After an acquisition the pairs are empty: users stored online that no
 * gateway names within KCHAT_PRESENCE_DEAD_MS go offline; those a beat
 * names stay. */
static void test_grace(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    uint32_t s;

    fx_cast_make(f, &c, false);
    s = fx_shard_of(f, c.bob);
    assert_int_equal(fx_shard_of(f, c.dave), s);
    online(f, G1, c.bob);
    online(f, G1, c.dave);
    f->be.shards[s].run_id = 77;   /* as a new acquisition draws */
    fx_presence_sweep(f, s);
    expect_none(f);
    f->now_ms += KCHAT_PRESENCE_BEAT_MS;
    say(f, c.dave, "{\"kind\":\"beat\",\"gateway\":\"%s\",\"users\":[\"%s\"],\"at\":1}", G1,
        c.dave);
    expect_none(f);
    f->now_ms += KCHAT_PRESENCE_DEAD_MS - 1000;
    say(f, c.dave, "{\"kind\":\"beat\",\"gateway\":\"%s\",\"users\":[\"%s\"],\"at\":1}", G1,
        c.dave);
    fx_presence_sweep(f, s);
    /* bob: offline; dave: still online */
    {
        json_t *u = fx_get(f, s, KCHAT_TBL_USERS, c.bob, strlen(c.bob));
        assert_false(json_is_true(json_object_get(u, "online")));
        json_decref(u);
        u = fx_get(f, s, KCHAT_TBL_USERS, c.dave, strlen(c.dave));
        assert_true(json_is_true(json_object_get(u, "online")));
        json_decref(u);
    }
}

/* Friendships stored by an older kchat, without followers: the shard's
 * first presence sweep sends them to the followed users' shards, once. */
static void test_followers_upgrade(void **state)
{
    struct fx *f = *state;
    struct fx_cast c;
    char zed[65];
    uint32_t zs;
    kchat_txn *t;
    json_t *list, *ev;

    fx_cast_make(f, &c, false);
    fx_id_on_shard(f, "zed", c.home, zed);
    fx_register(f, zed);
    zs = fx_shard_of(f, zed);
    list = json_pack("[s]", c.bob);
    assert_int_equal(kchat_txn_begin(f->be.shards[zs].store, true, &t), KCHAT_OK);
    assert_int_equal(kchat__put_json(t, KCHAT_TBL_FRIENDS, zed, strlen(zed), list), KCHAT_OK);
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    json_decref(list);
    fx_presence_sweep(f, zs);
    /* to bob's shard: zed's, and alice's again (stored in the same shard
     * before its first sweep; a repeat changes nothing) */
    assert_int_equal(fx_count(f, KCHAT_TOPIC_INTERNAL), 2);
    list = fx_get(f, fx_shard_of(f, c.bob), KCHAT_TBL_FOLLOWERS, c.bob, strlen(c.bob));
    fx_assert_json(list, "[\"alice\",\"%s\"]", zed);
    json_decref(list);
    fx_presence_sweep(f, zs);   /* once */
    assert_int_equal(fx_count(f, KCHAT_TOPIC_INTERNAL), 0);
    online(f, G1, c.bob);
    ev = fx_events(f, zed);
    assert_int_equal(json_array_size(ev), 1);
    json_decref(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_online_offline, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_dead_gateway, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_gone, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_beat_and_junk, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_grace, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_followers_upgrade, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
