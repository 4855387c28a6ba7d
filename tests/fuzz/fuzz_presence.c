/*
 * Fuzz harness for the decoder of kchat-presence records
 * (kchat__presence_apply(), src/actors/presence.c; the records of
 * include/kchat/presence.h): whatever a gateway, or anyone who can write
 * the topic without the deployment secret, puts there must be applied or
 * ignored, never crash, never fail the shard's transaction, and leave the
 * stored presence of a user as the pairs say.
 *
 * One shard (partition count 1) in a temporary store holds users u0..u3,
 * each followed by the others. Each input is one record, applied in a
 * write transaction with the presence sweep after it, then committed, so
 * state carries from input to input as in a running shard (the in-memory
 * pairs are dropped every 256 inputs to keep them bounded). The clock moves
 * 1 s per input. Built with libFuzzer (`make fuzz`) or, with gcc, linked
 * to replay_main.c (`make check`). Seeds: tests/fuzz/corpus/presence/.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "actors/actors.h"
#include "actors/presence.h"
#include "kchat/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_USERS 4

static kchat_config cfg;
static kchat_backend be;
static struct worker w;
static struct shard sh;
static int64_t clock_ms = 1764800000000;
static unsigned inputs;

static void fail(const char *what, int rc)
{
    fprintf(stderr, "fuzz_presence: %s: %s\n", what, kchat_strerror(rc));
    abort();
}

static void out_release(void)
{
    for (size_t i = 0; i < w.n_out; i++)
        kchat__out_rec_release(&w.out[i]);
    w.n_out = 0;
}

static void setup(void)
{
    char dir[] = "/tmp/kchat-fuzz-presence.XXXXXX", path[64];
    kchat_store_opts o = {.map_size = (size_t)256 << 20, .no_sync = true};
    kchat_txn *t;
    int rc;

    if (sodium_init() < 0 || mkdtemp(dir) == NULL || kchat_config_init(&cfg) != KCHAT_OK)
        fail("setup", KCHAT_EIO);
    cfg.partitions = 1;
    be.cfg = &cfg;
    be.partitions = 1;
    be.n_workers = 1;
    be.workers = &w;
    be.shards = &sh;
    be.events_fmt = KCHAT_FMT_JSON;
    snprintf(path, sizeof(path), "%s/shard", dir);
    if ((rc = kchat_store_open(path, &o, &sh.store)) != KCHAT_OK)
        fail("store", rc);
    if ((rc = kchat_txn_begin(sh.store, true, &t)) != KCHAT_OK)
        fail("begin", rc);
    for (int i = 0; i < N_USERS; i++) {
        char id[16];
        json_t *user, *followers = json_array();

        snprintf(id, sizeof(id), "u%d", i);
        user = json_pack("{s:s, s:s, s:s, s:i}", "userId", id, "userName", id, "userStatus",
                         "", "ver", 1);
        for (int j = 0; j < N_USERS; j++)
            if (j != i)
                json_array_append_new(followers, json_sprintf("u%d", j));
        if ((rc = kchat__put_json(t, KCHAT_TBL_USERS, id, strlen(id), user)) != KCHAT_OK ||
            (rc = kchat__put_json(t, KCHAT_TBL_FOLLOWERS, id, strlen(id), followers)) !=
                KCHAT_OK)
            fail("users", rc);
        json_decref(user);
        json_decref(followers);
    }
    if ((rc = kchat_txn_commit(t)) != KCHAT_OK)
        fail("commit", rc);
}

/* Every user stored online is held by some gateway, and the other way
 * round, once a transaction settled them. */
static void check_users(kchat_txn *t)
{
    for (int i = 0; i < N_USERS; i++) {
        char id[16];
        json_t *user;
        bool held = false;
        const char *k;
        json_t *v;

        snprintf(id, sizeof(id), "u%d", i);
        user = kchat__get_json(t, KCHAT_TBL_USERS, id, strlen(id));
        if (user == NULL)
            fail("a user vanished", KCHAT_EINVAL);
        json_object_foreach(sh.presence.pairs, k, v) {
            const char *slash = strchr(k, '/');
            if (slash != NULL && !strcmp(slash + 1, id))
                held = true;
        }
        if (json_is_true(json_object_get(user, "online")) != held)
            fail(held ? "a held user stored offline" : "a user stored online nobody holds",
                 KCHAT_EINVAL);
        if (json_object_get(user, "online") != NULL &&
            !json_is_string(json_object_get(user, "lastSeen")))
            fail("lastSeen is not a string", KCHAT_EINVAL);
        json_decref(user);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ctx c = {.be = &be, .w = &w, .sh = &sh, .req = &w.req, .user_id = ""};
    rd_kafka_message_t m = {.payload = (void *)data, .len = size, .partition = 0};
    int rc;

    if (be.shards == NULL)
        setup();
    if (++inputs % 256 == 0)
        kchat__presence_release(&sh);
    clock_ms += 1000;
    c.now_ms = clock_ms;
    if ((rc = kchat_txn_begin(sh.store, true, &c.txn)) != KCHAT_OK)
        fail("begin", rc);
    if ((rc = kchat__presence_apply(&c, &m)) != KCHAT_OK)
        fail("apply", rc);
    if ((rc = kchat__presence_sweep(&c)) != KCHAT_OK)
        fail("sweep", rc);
    if (sh.presence.grace_done)
        check_users(c.txn);
    for (size_t i = 0; i < w.n_out; i++)   /* as if Kafka had them: the store stays small */
        if ((rc = kchat_store_outbox_del(c.txn, w.out[i].seq)) != KCHAT_OK)
            fail("outbox", rc);
    if ((rc = kchat_txn_commit(c.txn)) != KCHAT_OK)
        fail("commit", rc);
    kchat__presence_committed(&sh);
    out_release();
    return 0;
}
