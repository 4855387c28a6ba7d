/*
 * kchat-test: kafka (also run on real Apache Kafka by `make check-kafka`)
 *
 * A lost data directory comes back from kchat-changelog (docs/design.md,
 * "Changelog"; docs/operations.md). On the suite's broker (`kchat broker`,
 * or the real Kafka of `make check-kafka`), `kchat serve` with one user per
 * shard, friends, a room of four and 30 chat sends; then `kill -9`, the data
 * directory deleted, and `kchat serve` again with an empty one. Every shard
 * must be restored before it serves (its log says so), with its stored
 * offsets: no request topic is read again from the beginning, no request is
 * applied twice. Checks: the sessions issued before still work; the room is
 * in every member's list with lastSeq 30; the history holds each message
 * once, seqs 1..30; the friend list is whole; the next send gets seq 31.
 *
 * test_other_data_set_refused: a data directory of another data set (made
 * with --changelog off) started with the changelog on is refused with a
 * message naming both data sets, and left as it was: never served, never
 * overwritten by the restore.
 *
 * On Kafka the first test also checks `--shard-sync auto`'s choice on the
 * suite's one-broker cluster: one fsync per commit (kchat-changelog has
 * one replica).
 *
 * test_unsynced_copy_restored: with a changelog on Kafka and
 * `--shard-sync kafka` a shard commits without fsync and says so in an
 * `unsynced` mark naming the boot (docs/design.md, "No fsync with a
 * changelog on Kafka"). A machine
 * restart that tore the copies is made after a clean stop: every message
 * row is deleted from every shard with the store's API (no change
 * recorded, so each copy still claims to be as far as the changelog: a
 * copy trusted as it is would serve an empty history), and each shard's
 * mark rewritten to name another boot. Every shard must be set aside, not
 * read, and restored whole from the changelog, with the same checks as
 * above. (White-box: linked with libkchat.a for the store's API.) On Kafka the marks must be
 * there while kchat runs and gone after a clean stop; on `kchat broker`
 * (which keeps both fsyncs) there are none, and the planted ones test the
 * refusal and the restore alike.
 *
 * test_unsynced_copy_without_changelog_refused: the same mark in a data
 * directory started with --changelog off (nothing to restore from) stops
 * the start with a message that says what to do, and leaves the copy.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kchat/store.h"
#include "support/kassert.h"
#include "support/kclient.h"

#define PARTITIONS 4   /* the suite's Kafka broker is started with 4 */
#define SENDS 30

static kc_proc *g_srv, *g_broker;
static kc_client *g_client;

static int teardown(void **state)
{
    (void)state;
    kc_client_free(g_client);
    g_client = NULL;
    if (g_srv != NULL)
        kc_proc_stop_clean(g_srv, 30);
    kc_proc_free(g_srv);
    g_srv = NULL;
    kc_proc_free(g_broker);
    g_broker = NULL;
    return 0;
}

/* A user of shard @p shard, registered and logged in. */
static void user_in(kc_user *u, const char *tag, int shard)
{
    for (int tries = 0; tries < 500; tries++) {
        kc_user_init(u, tag);
        if (kc_partition_for(u->id, PARTITIONS) == shard)
            break;
    }
    assert_int_equal(kc_partition_for(u->id, PARTITIONS), shard);
    assert_true(kc_user_register(g_client, u));
    assert_true(kc_user_login(g_client, u));
}

/* A room of four made by u[0] with the other three, and SENDS chat sends. */
static void room_and_sends(kc_user u[4], char room[65])
{
    for (int i = 0; i < 4; i++)
        user_in(&u[i], "lost", i);
    const char *friends[] = {u[1].id, u[2].id, u[3].id, NULL};
    assert_true(kc_add_friends(g_client, &u[0], friends));
    assert_true(kc_create_room(g_client, &u[0], friends, "lost room", room));
    for (int i = 0; i < SENDS; i++)
        assert_true(kc_chat(g_client, &u[i % 4], room, "before", NULL) == i + 1);
}

/* Everything room_and_sends() made is there, once; the next send gets
 * seq SENDS + 1. */
static void expect_room_whole(kc_user u[4], const char *room)
{
    json_t *r, *hist;

    for (int i = 0; i < 4; i++) {
        r = kc_call(g_client, "user-search-room", u[i].id, u[i].session,
                    json_pack("{s:s}", "userId", u[i].id));
        assert_true(kc_check_ok(r, u[i].id));
        assert_int_equal(json_array_size(json_object_get(r, "rooms")), 1);
        assert_int_equal(kc_int(json_array_get(json_object_get(r, "rooms"), 0), "lastSeq", -1),
                         SENDS);
        json_decref(r);
    }
    assert_non_null(hist = kc_history_all(g_client, &u[2], room));
    assert_int_equal(json_array_size(hist), SENDS);
    for (int i = 0; i < SENDS; i++)
        assert_int_equal(kc_int(json_array_get(hist, (size_t)i), "seq", -1), i + 1);
    json_decref(hist);
    r = kc_call(g_client, "user-search-friend", u[0].id, u[0].session,
                json_pack("{s:s}", "userId", u[0].id));
    assert_true(kc_check_ok(r, u[0].id));
    assert_int_equal(json_array_size(json_object_get(r, "friend")), 3);
    json_decref(r);
    assert_true(kc_chat(g_client, &u[3], room, "after", NULL) == SENDS + 1);
}

static void test_lost_data_directory_restored(void **state)
{
    char *data = kc_tmppath("lost"), room[65];
    const char *brokers;
    kc_user u[4];
    int status;

    (void)state;
    g_broker = kc_broker_start("restore-broker", PARTITIONS);
    assert_non_null(g_broker);
    brokers = kc_proc_bootstrap(g_broker);
    g_srv = kc_serve_start("lost-serve", data, brokers, PARTITIONS, NULL);
    assert_non_null(g_srv);
    /* --shard-sync auto on the suite's one-broker Kafka: one fsync */
    if (kc_test_brokers() != NULL)
        assert_true(kc_file_contains(kc_proc_log(g_srv), "kchat-changelog has 1 replica: "
                                     "shards commit with one fsync", 59));
    g_client = kc_client_new(brokers, KC_FROM_END);
    room_and_sends(u, room);

    assert_int_equal(kc_proc_stop(g_srv, SIGKILL, 10, &status), 0);
    kc_proc_free(g_srv);
    kc_rm_rf(data);
    /* a killed member stays in the group until its session times out */
    g_srv = kc_serve_start_ex("lost-serve", data, brokers, PARTITIONS, NULL, 90);
    assert_non_null(g_srv);
    assert_true(kc_file_contains(kc_proc_log(g_srv), "restored from kchat-changelog", 29));
    expect_room_whole(u, room);
    free(data);
}

/* Whether shard @p p of @p data has an unsynced mark. */
static bool has_mark(const char *data, int p)
{
    char path[4200];

    snprintf(path, sizeof(path), "%s/shard-%04d/unsynced", data, p);
    return access(path, F_OK) == 0;
}

/* Make shard @p p of @p data look like a copy a machine restart caught
 * unsynced: a mark naming another boot. */
static void plant_lost_boot(const char *data, int p)
{
    char path[4200];
    FILE *f;

    snprintf(path, sizeof(path), "%s/shard-%04d/unsynced", data, p);
    assert_non_null(f = fopen(path, "w"));
    fputs("00000000-1111-2222-3333-444444444444\n", f);
    assert_int_equal(fclose(f), 0);
}

struct keys {
    char *k[256];
    size_t kl[256], n;
};

static int key_take(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    struct keys *ks = arg;

    (void)v;
    (void)vl;
    if (ks->n == sizeof(ks->k) / sizeof(ks->k[0]))
        return 1;
    assert_non_null(ks->k[ks->n] = malloc(kl));
    memcpy(ks->k[ks->n], k, kl);
    ks->kl[ks->n++] = kl;
    return 0;
}

/* Delete every message row of shard @p p of the stopped node's @p data,
 * recording no change; how many. */
static size_t messages_tear(const char *data, int p)
{
    char path[4200];
    struct keys ks = {.n = 0};
    kchat_store *st;
    kchat_txn *t;

    snprintf(path, sizeof(path), "%s/shard-%04d", data, p);
    assert_int_equal(kchat_store_open(path, NULL, &st), KCHAT_OK);
    assert_int_equal(kchat_txn_begin(st, true, &t), KCHAT_OK);
    assert_int_equal(kchat_txn_scan(t, KCHAT_TBL_MESSAGES, NULL, 0, false, key_take, &ks),
                     KCHAT_OK);
    for (size_t i = 0; i < ks.n; i++) {
        assert_int_equal(kchat_txn_del(t, KCHAT_TBL_MESSAGES, ks.k[i], ks.kl[i]), KCHAT_OK);
        free(ks.k[i]);
    }
    assert_int_equal(kchat_txn_commit(t), KCHAT_OK);
    kchat_store_close(st);
    return ks.n;
}

/* How many entries of @p data are shard copies set aside. */
static int asides(const char *data)
{
    DIR *d = opendir(data);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, "shard-", 6) == 0 && strstr(e->d_name, ".aside-") != NULL;
    closedir(d);
    return n;
}

static void test_unsynced_copy_restored(void **state)
{
    char *data = kc_tmppath("unsynced"), room[65];
    static const char said[] = "was written without fsync before the machine restarted";
    static const char *const kafka_sync[] = {"--shard-sync", "kafka", NULL};
    const char *brokers;
    kc_user u[4];
    char *log;

    (void)state;
    g_broker = kc_broker_start("unsynced-broker", PARTITIONS);
    assert_non_null(g_broker);
    brokers = kc_proc_bootstrap(g_broker);
    g_srv = kc_serve_start("unsynced-serve", data, brokers, PARTITIONS, kafka_sync);
    assert_non_null(g_srv);
    if (kc_test_brokers() != NULL)
        assert_true(kc_file_contains(kc_proc_log(g_srv), "shards commit without fsync", 27));
    g_client = kc_client_new(brokers, KC_FROM_END);
    room_and_sends(u, room);
    for (int p = 0; p < PARTITIONS; p++)   /* only a real Kafka's shards commit unsynced */
        assert_int_equal(has_mark(data, p), kc_test_brokers() != NULL);
    assert_true(kc_proc_stop_clean(g_srv, 30));
    kc_proc_free(g_srv);
    for (int p = 0; p < PARTITIONS; p++)
        assert_false(has_mark(data, p));

    size_t torn = 0;
    for (int p = 0; p < PARTITIONS; p++) {
        torn += messages_tear(data, p);
        plant_lost_boot(data, p);
    }
    /* on Kafka the tests share one deployment: earlier tests' rooms too */
    assert_true(torn >= SENDS);
    g_srv = kc_serve_start("unsynced-serve", data, brokers, PARTITIONS, kafka_sync);
    assert_non_null(g_srv);
    expect_room_whole(u, room);
    log = kc_read_file(kc_proc_log(g_srv), NULL);
    assert_non_null(log);
    int set_aside = 0, restored = 0;
    for (const char *at = log; (at = strstr(at, said)) != NULL; at++)
        set_aside++;
    for (const char *at = log; (at = strstr(at, "restored from kchat-changelog")) != NULL; at++)
        restored++;
    if (set_aside != PARTITIONS || restored != PARTITIONS)
        fprintf(stderr, "%s\n", log);
    assert_int_equal(set_aside, PARTITIONS);
    assert_int_equal(restored, PARTITIONS);
    assert_int_equal(asides(data), PARTITIONS);
    free(log);
    free(data);
}

/* Start `kchat serve` with @p args as g_srv; it must stop by itself
 * without serving, exit non-zero and say @p said (waited for up to 60 s).
 * Its log, to free. */
static char *start_refused(const char *name, const char *const *args, const char *said)
{
    char *log;
    int status = 0;

    g_srv = kc_proc_start(name, args, NULL, 0);
    assert_non_null(g_srv);
    for (int i = 0; i < 600 && !kc_file_contains(kc_proc_log(g_srv), said, strlen(said)); i++)
        kc_sleep_ms(100);
    kc_proc_stop(g_srv, SIGTERM, 30, &status);
    log = kc_read_file(kc_proc_log(g_srv), NULL);
    assert_non_null(log);
    if (strstr(log, said) == NULL)
        fprintf(stderr, "%s\n", log);
    assert_non_null(strstr(log, said));
    assert_null(strstr(log, "consuming from"));
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    return log;
}

static void test_unsynced_copy_without_changelog_refused(void **state)
{
    char *data = kc_tmppath("unsynced-off");
    static const char *const off[] = {"--changelog", "off", NULL};
    const char *brokers;

    (void)state;
    g_broker = kc_broker_start("unsynced-off-broker", PARTITIONS);
    assert_non_null(g_broker);
    brokers = kc_proc_bootstrap(g_broker);
    assert_non_null(g_srv = kc_serve_start_ex("unsynced-off", data, brokers, PARTITIONS, off,
                                              90));
    assert_true(kc_proc_stop_clean(g_srv, 30));
    kc_proc_free(g_srv);
    g_srv = NULL;
    plant_lost_boot(data, 2);

    const char *args[] = {"serve", "--brokers", brokers, "--data", data, "--partitions", "4",
                          "--changelog", "off", "--pwhash-ops", "1", "--pwhash-mem", "8192",
                          NULL};
    free(start_refused("unsynced-off-again", args, "shard-0002 was written without fsync"));
    assert_true(has_mark(data, 2));
    assert_int_equal(asides(data), 0);
    free(data);
}

static void test_other_data_set_refused(void **state)
{
    char *d1 = kc_tmppath("deployment"), *d2 = kc_tmppath("other");
    static const char *const off[] = {"--changelog", "off", NULL};
    const char *brokers;

    (void)state;
    g_broker = kc_broker_start("refuse-broker", PARTITIONS);
    assert_non_null(g_broker);
    brokers = kc_proc_bootstrap(g_broker);
    /* the deployment: its data set is in the changelog from its first start */
    assert_non_null(g_srv = kc_serve_start("refuse-d1", d1, brokers, PARTITIONS, NULL));
    assert_true(kc_proc_stop_clean(g_srv, 30));
    kc_proc_free(g_srv);
    /* another data set in d2, never in the changelog */
    assert_non_null(g_srv = kc_serve_start_ex("refuse-d2", d2, brokers, PARTITIONS, off, 90));
    assert_true(kc_proc_stop_clean(g_srv, 30));
    kc_proc_free(g_srv);
    g_srv = NULL;

    /* d2 with the changelog: refused before it serves */
    const char *args[] = {"serve", "--brokers", brokers, "--data", d2, "--partitions", "4",
                          "--pwhash-ops", "1", "--pwhash-mem", "8192", NULL};
    free(start_refused("refuse-d2-changelog", args, "move the data directory aside"));
    free(d1);
    free(d2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_lost_data_directory_restored, teardown),
        cmocka_unit_test_teardown(test_other_data_set_refused, teardown),
        cmocka_unit_test_teardown(test_unsynced_copy_restored, teardown),
        cmocka_unit_test_teardown(test_unsynced_copy_without_changelog_refused, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
