/*
 * Regression 0025 (fixed by 3537895): a command stream between two shards
 * broke when one of them was restored from an older copy of its data
 * directory (embedded install, the restored shard on a new broker):
 *  - the room's shard (the commands' target) restored: its counter went
 *    back, and it waited for ever for commands its source had seen applied
 *    and deleted; no cross-shard send to it was applied again;
 *  - the writer's shard (their source) restored: it numbered its commands
 *    again from an older counter and the room's shard dropped them as
 *    repeats; the send was never answered.
 * Both fail on 3537895^ (the fourth send is never answered). The install is
 * embedded in every case, so this is not one of the programs run again on
 * real Kafka.
 * (Moved from tests/integration/test_restart.c: restored_shard() and its two
 * tests; its history helper replaced by kc_history_all(), the same reads.)
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "support/kassert.h"
#include "support/kclient.h"

#define PARTITIONS 4

/* what a test started, so that a failed assertion still cleans up */
static kc_client *g_client;
static kc_proc *g_srv;

static int test_teardown(void **state)
{
    (void)state;
    kc_client_free(g_client);
    g_client = NULL;
    kc_proc_free(g_srv);
    g_srv = NULL;
    return 0;
}

static void run_ok(const char *cmd)
{
    int st = 0;
    char *out = kc_run_capture(cmd, NULL, &st);
    if (st != 0)
        fprintf(stderr, "%s: %s\n", cmd, out != NULL ? out : "");
    free(out);
    assert_int_equal(st, 0);
}

static kc_client *emb_start(const char *data)
{
    assert_true(kc_embedded_up("serve-rst", data, PARTITIONS, &g_srv, &g_client));
    return g_client;
}

static void emb_stop(void)
{
    assert_true(kc_embedded_down(&g_srv, &g_client, 20));
}

/* One shard of an embedded install restored from a copy taken after b's
 * first send to a's room, which lives in another shard: @p room_shard the
 * room's shard (the target of b's commands), else b's (their source). */
static void restored_shard(bool room_shard)
{
    char *data = kc_tmppath(room_shard ? "data-restored-room" : "data-restored-writer");
    char *backup = kc_tmppath(room_shard ? "backup-room" : "backup-writer");
    char room[65], shard_dir[4200], cmd[9000];
    kc_rm_rf(data);
    kc_rm_rf(backup);
    kc_client *c = emb_start(data);
    /* b writes to a's room, which lives in a's shard: b in another shard
     * makes each of b's sends a command */
    kc_user a, b;
    int tries = 0;
    assert_true(kc_user_new(c, &a, "ra"));
    do
        assert_true(kc_user_new(c, &b, "rb"));
    while (kc_partition_for(b.id, PARTITIONS) == kc_partition_for(a.id, PARTITIONS) &&
           ++tries < 32);
    const char *fa[] = { b.id, NULL };
    assert_true(kc_add_friends(c, &a, fa));
    assert_true(kc_create_room(c, &a, fa, "restored", room));
    assert_true(kc_partition_for(room, PARTITIONS) != kc_partition_for(b.id, PARTITIONS));
    assert_int_equal(kc_chat(c, &b, room, "one", "rst-1"), 1);
    kc_sleep_ms(500);   /* b's shard sees it applied and drops its copy */
    emb_stop();
    snprintf(shard_dir, sizeof(shard_dir), "%s/shard-%04d", data,
             (int)kc_partition_for(room_shard ? room : b.id, PARTITIONS));
    snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", shard_dir, backup);
    run_ok(cmd);

    c = emb_start(data);
    assert_int_equal(kc_chat(c, &b, room, "two", "rst-2"), 2);
    assert_int_equal(kc_chat(c, &b, room, "three", "rst-3"), 3);
    kc_sleep_ms(500);
    emb_stop();
    kc_rm_rf(shard_dir);
    snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", backup, shard_dir);
    run_ok(cmd);

    /* The room's shard lost "two" and "three" with its restore and says
     * so; a restored writer's shard numbers on past what the room applied. */
    c = emb_start(data);
    assert_int_equal(kc_chat(c, &b, room, "four", "rst-4"), room_shard ? 2 : 4);
    const char *said = room_shard ? "are gone: it saw them applied" : "numbering on from 4";
    assert_true(kc_file_contains(kc_proc_log(g_srv), said, strlen(said)));
    json_t *h = kc_history_all(c, &a, room);
    const char *const want_room[] = { "one", "four" }, *const want_writer[] = { "one", "two",
                                                                              "three", "four" };
    const char *const *want = room_shard ? want_room : want_writer;
    assert_non_null(h);
    assert_int_equal(json_array_size(h), room_shard ? 2 : 4);
    for (size_t i = 0; i < json_array_size(h); i++)
        KC_ASSERT_STR(json_array_get(h, i), "message", want[i]);
    json_decref(h);
    emb_stop();
    free(data);
    free(backup);
}

/* The room's shard restored from an older copy than the writer's. The
 * writer's shard saw commands 2 and 3 applied and dropped them; the
 * restored shard has applied only 1 and, on an embedded install's new
 * broker, can never read 2 and 3 again. Before kchat-cmd-base it waited for
 * them for good: none of b's sends to that shard was applied again. */
static void test_embedded_restored_room_shard(void **state)
{
    (void)state;
    restored_shard(true);
}

/* The writer's shard restored from an older copy than the room's. It
 * numbered its next command 2, which the room's shard had applied, so the
 * send was dropped as a repeat and never answered. */
static void test_embedded_restored_writer_shard(void **state)
{
    (void)state;
    restored_shard(false);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_embedded_restored_room_shard, test_teardown),
        cmocka_unit_test_teardown(test_embedded_restored_writer_shard, test_teardown),
    };
    return cmocka_run_group_tests_name("0025 restored shard stops a command stream", tests,
                                       NULL, NULL);
}
