/* Unit tests of the known-device list (src/actors/devices.c): which budget a
 * login counts against, the list kept most recent first and bounded, a
 * record without the list (an older kchat's), and no device value stored. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "actors/actors.h"
#include "actors/logins.h"
#include "kchat/error.h"

static kchat_request g_req;

static struct ctx ctx_for(const char *device)
{
    struct ctx c = { .req = &g_req, .device = device, .device_len = device ? strlen(device) : 0 };
    snprintf(g_req.user_id, sizeof(g_req.user_id), "%s", "bob");
    return c;
}

static void device_name(int i, char out[65])
{
    snprintf(out, 65, "%064d", i);
}

static void test_budget_of_known_and_unknown(void **state)
{
    (void)state;
    char budget[KCHAT__BUDGET_LEN], mine[65], other[65];
    json_t *user = json_pack("{s:s}", "userId", "bob");   /* no list: an older record */
    device_name(1, mine);
    device_name(2, other);

    struct ctx c = ctx_for(mine);
    kchat__login_budget(&c, user, budget);
    assert_string_equal(budget, "bob");                  /* not known yet */
    assert_int_equal(kchat__device_remember(&c, user), KCHAT_OK);
    kchat__login_budget(&c, user, budget);
    assert_non_null(strchr(budget, '/'));                /* its own budget */
    assert_int_equal(strncmp(budget, "bob/", 4), 0);
    char *text = json_dumps(user, 0);
    bool stored = text == NULL || strstr(text, mine) != NULL;
    free(text);
    assert_false(stored);                                /* the digest is not stored */

    struct ctx o = ctx_for(other), none = ctx_for(NULL), shortdev = ctx_for("0123456789");
    kchat__login_budget(&o, user, budget);
    assert_string_equal(budget, "bob");
    kchat__login_budget(&none, user, budget);
    assert_string_equal(budget, "bob");
    kchat__login_budget(&shortdev, user, budget);
    assert_string_equal(budget, "bob");
    kchat__login_budget(&c, NULL, budget);                /* unknown id */
    assert_string_equal(budget, "bob");
    /* no device, or one too short: nothing remembered */
    assert_int_equal(kchat__device_remember(&none, user), KCHAT_OK);
    assert_int_equal(kchat__device_remember(&shortdev, user), KCHAT_OK);
    assert_int_equal(json_array_size(json_object_get(user, "devices")), 1);
    json_decref(user);
}

static void test_list_bounded_most_recent_first(void **state)
{
    (void)state;
    char budget[KCHAT__BUDGET_LEN], dev[65];
    json_t *user = json_pack("{s:s, s:s}", "userId", "bob", "devices", "damaged");

    for (int i = 0; i < 40; i++) {
        device_name(i, dev);
        struct ctx c = ctx_for(dev);
        assert_int_equal(kchat__device_remember(&c, user), KCHAT_OK);
    }
    json_t *list = json_object_get(user, "devices");
    assert_int_equal(json_array_size(list), KCHAT__DEVICES_MAX);
    /* the 16 most recent are known, the older ones are not */
    for (int i = 0; i < 40; i++) {
        device_name(i, dev);
        struct ctx c = ctx_for(dev);
        kchat__login_budget(&c, user, budget);
        assert_int_equal(strchr(budget, '/') != NULL, i >= 40 - KCHAT__DEVICES_MAX);
    }
    /* a known device logging in again moves to the front, no duplicate */
    device_name(30, dev);
    struct ctx c = ctx_for(dev);
    const char *last = json_string_value(json_array_get(list, 39 - 30));
    char tag[64];
    snprintf(tag, sizeof(tag), "%s", last);
    assert_int_equal(kchat__device_remember(&c, user), KCHAT_OK);
    assert_int_equal(json_array_size(list), KCHAT__DEVICES_MAX);
    assert_string_equal(json_string_value(json_array_get(list, 0)), tag);
    json_decref(user);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_of_known_and_unknown),
        cmocka_unit_test(test_list_bounded_most_recent_first),
    };
    return cmocka_run_group_tests_name("known devices", tests, NULL, NULL);
}
