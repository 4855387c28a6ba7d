/*
 * Regression 0040 (fixed by this branch's "gateway: Last-Event-ID past the
 * end is a reset" commit; issue 12, attack 7): a stream resumed with a
 * Last-Event-ID past the end of its partition (after a restart of the
 * embedded broker, or a topic reset) dropped every live record until the
 * offsets caught up with the old id: silence. Now it starts live, and its
 * first event is `event: reset` (on which the page re-reads its rooms).
 * The test opens alice's stream with `Last-Event-ID: P-1000000` (P her
 * partition), bob then writes to their room: the stream must show the reset
 * first and then bob's message. Before the fix neither came.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "kchat/kafka.h"
#include "support/raw.h"

static bool is_chat(const kh_event *e, void *arg)
{
    (void)arg;
    return !strcmp(e->event, "chat");
}

static void test_last_event_id_past_the_end(void **state)
{
    char base[256], path[160], last_id[64], room[72];
    int port = 0;
    kh_browser a, b;
    kc_user ua, ub;
    kh_resp *r;
    kh_sse *s;
    const kh_event *e;
    kc_proc *p = kr_dev_start("r0040", NULL, base, sizeof(base), &port);

    (void)state;
    assert_non_null(p);
    r = kr_signup_login(&a, &ua, "r40a", base);
    assert_int_equal(r->status, 200);
    kh_resp_free(r);
    r = kr_signup_login(&b, &ub, "r40b", base);
    assert_int_equal(r->status, 200);
    kh_resp_free(r);
    r = kh_do(&b, "POST", "/api/friends", json_pack("{s[s]}", "friendId", ua.id));
    assert_int_equal(r->status, 200);
    kh_resp_free(r);
    r = kh_do(&b, "POST", "/api/rooms", json_pack("{s[s]}", "friendId", ua.id));
    assert_int_equal(r->status, 201);
    snprintf(room, sizeof(room), "%s", json_string_value(json_object_get(r->json, "roomId")));
    kh_resp_free(r);
    /* dev's chat-events has 8 partitions (--partitions) */
    snprintf(last_id, sizeof(last_id), "%d-1000000",
             (int)kchat_partition_for_key(ua.id, strlen(ua.id), 8));
    s = kh_sse_open(&a, "/api/events", last_id, 5000);
    assert_int_equal(kh_sse_status(s), 200);
    e = kh_sse_wait(s, 0, NULL, NULL, 5000);
    if (e == NULL || strcmp(e->event, "reset"))
        fail_msg("the first event after Last-Event-ID %s is %s, not reset", last_id,
                 e ? e->event : "(none in 5 s)");
    snprintf(path, sizeof(path), "/api/rooms/%s/messages", room);
    r = kh_do(&b, "POST", path, json_pack("{ss}", "message", "after the reset"));
    assert_int_equal(r->status, 201);
    kh_resp_free(r);
    e = kh_sse_wait(s, 0, is_chat, NULL, 10000);
    if (e == NULL || !strstr(e->data, "after the reset"))
        fail_msg("bob's message never reached alice's resumed stream");
    kh_sse_close(s);
    assert_int_equal(kc_proc_stop(p, SIGTERM, 15, NULL), 0);
    kc_proc_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_last_event_id_past_the_end),
    };
    return cmocka_run_group_tests_name("0040 Last-Event-ID past the end silenced the stream",
                                       tests, NULL, NULL);
}
