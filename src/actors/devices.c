/* Known devices (actors.h): the devices a user logged in from with the right
 * password, kept in the user's record so that they survive a restart and a
 * shard hand-over (the record travels in the changelog like every other).
 * A device is named by the login request's kchat-device header (the
 * gateway's digest of its device cookie); the record keeps only a hash of
 * that digest, so neither LMDB nor the changelog holds a value a client
 * could send. A login from a known device is throttled on its own budget, so
 * a stranger's failures (unknown devices) cannot lock the owner's browser
 * out (OWASP's device cookies). */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "actors.h"
#include "logins.h"
#include "kchat/error.h"

#define DEVICE_MIN 16     /* shortest kchat-device value taken as a device */
#define DEVICE_MAX 128    /* longest */
#define TAG_BYTES 16      /* stored as 32 hex digits */

/* The stored tag of the request's device into @p out; false when the
 * request names none (no header, or one too short or too long). */
static bool device_tag(const struct ctx *c, char out[2 * TAG_BYTES + 1])
{
    static const unsigned char domain[] = "kchat device tag v1";
    unsigned char h[TAG_BYTES];

    if (c->device == NULL || c->device_len < DEVICE_MIN || c->device_len > DEVICE_MAX)
        return false;
    crypto_generichash(h, sizeof(h), (const unsigned char *)c->device, c->device_len, domain,
                       sizeof(domain) - 1);
    sodium_bin2hex(out, 2 * TAG_BYTES + 1, h, sizeof(h));
    return true;
}

/* The index of @p tag in @p list, or -1. */
static long device_find(const json_t *list, const char *tag)
{
    size_t i;
    json_t *v;

    json_array_foreach(list, i, v) {
        if (json_is_string(v) && !strcmp(json_string_value(v), tag))
            return (long)i;
    }
    return -1;
}

void kchat__login_budget(const struct ctx *c, const json_t *user, char out[KCHAT__BUDGET_LEN])
{
    char tag[2 * TAG_BYTES + 1];
    const json_t *list = user ? json_object_get(user, "devices") : NULL;

    if (json_is_array(list) && device_tag(c, tag) && device_find(list, tag) >= 0)
        snprintf(out, KCHAT__BUDGET_LEN, "%s/%s", c->req->user_id, tag);
    else
        snprintf(out, KCHAT__BUDGET_LEN, "%s", c->req->user_id);
}

int kchat__device_remember(const struct ctx *c, json_t *user)
{
    char tag[2 * TAG_BYTES + 1];
    json_t *list = json_object_get(user, "devices");
    long at;

    if (!device_tag(c, tag))
        return KCHAT_OK;
    if (!json_is_array(list)) {   /* an older kchat's record, or a damaged list */
        if ((list = json_array()) == NULL || json_object_set_new(user, "devices", list) != 0)
            return KCHAT_ENOMEM;
    }
    if ((at = device_find(list, tag)) >= 0)
        json_array_remove(list, (size_t)at);
    if (json_array_insert_new(list, 0, json_string(tag)) != 0)
        return KCHAT_ENOMEM;
    while (json_array_size(list) > KCHAT__DEVICES_MAX)
        json_array_remove(list, json_array_size(list) - 1);
    return KCHAT_OK;
}
