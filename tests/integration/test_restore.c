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
#include <sys/wait.h>

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

static void test_lost_data_directory_restored(void **state)
{
    char *data = kc_tmppath("lost"), room[65];
    const char *brokers;
    kc_user u[4];
    json_t *r, *hist;
    int status;

    (void)state;
    g_broker = kc_broker_start("restore-broker", PARTITIONS);
    assert_non_null(g_broker);
    brokers = kc_proc_bootstrap(g_broker);
    g_srv = kc_serve_start("lost-serve", data, brokers, PARTITIONS, NULL);
    assert_non_null(g_srv);
    g_client = kc_client_new(brokers, KC_FROM_END);
    for (int i = 0; i < 4; i++)
        user_in(&u[i], "lost", i);
    const char *friends[] = {u[1].id, u[2].id, u[3].id, NULL};
    assert_true(kc_add_friends(g_client, &u[0], friends));
    assert_true(kc_create_room(g_client, &u[0], friends, "lost room", room));
    for (int i = 0; i < SENDS; i++)
        assert_true(kc_chat(g_client, &u[i % 4], room, "before", NULL) == i + 1);

    assert_int_equal(kc_proc_stop(g_srv, SIGKILL, 10, &status), 0);
    kc_proc_free(g_srv);
    kc_rm_rf(data);
    /* a killed member stays in the group until its session times out */
    g_srv = kc_serve_start_ex("lost-serve", data, brokers, PARTITIONS, NULL, 90);
    assert_non_null(g_srv);
    assert_true(kc_file_contains(kc_proc_log(g_srv), "restored from kchat-changelog", 29));

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
    free(data);
}

static void test_other_data_set_refused(void **state)
{
    char *d1 = kc_tmppath("deployment"), *d2 = kc_tmppath("other");
    static const char *const off[] = {"--changelog", "off", NULL};
    const char *brokers;
    char *log;
    int status = 0;

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
    g_srv = kc_proc_start("refuse-d2-changelog", args, NULL, 0);
    assert_non_null(g_srv);
    for (int i = 0; i < 600 && !kc_file_contains(kc_proc_log(g_srv), "belongs to data set", 19);
         i++)
        kc_sleep_ms(100);
    kc_proc_stop(g_srv, SIGTERM, 30, &status);
    log = kc_read_file(kc_proc_log(g_srv), NULL);
    assert_non_null(log);
    if (strstr(log, "move the data directory aside") == NULL)
        fprintf(stderr, "%s\n", log);
    assert_non_null(strstr(log, "move the data directory aside"));
    assert_null(strstr(log, "consuming from"));
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    free(log);
    free(d1);
    free(d2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_lost_data_directory_restored, teardown),
        cmocka_unit_test_teardown(test_other_data_set_refused, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
