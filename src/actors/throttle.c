/* Login throttling (actors.h): failed logins counted per budget (a user
 * id, or an id and a device it knows: devices.c) in a fixed table per
 * shard, owned by the shard's worker, so no lock is taken and a flood of
 * distinct ids cannot grow it. Nothing here is stored: a restart
 * starts every count over. */
#include <sodium.h>
#include <string.h>
#include <time.h>

#include "actors.h"
#include "logins.h"

int64_t kchat__throttle_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The tag of @p budget (never 0) and its set; draws the key on first use.
 * @locality worker that owns the shard of @p t */
static uint64_t tag_of(struct login_throttle *t, const char *budget, size_t *set)
{
    unsigned char h[crypto_shorthash_BYTES];
    uint64_t tag;

    if (!t->keyed) {
        crypto_shorthash_keygen(t->key);
        t->keyed = true;
    }
    crypto_shorthash(h, (const unsigned char *)budget, strlen(budget), t->key);
    memcpy(&tag, h, sizeof(tag));
    if (tag == 0)
        tag = 1;
    *set = (size_t)(tag >> 32) % KCHAT_THROTTLE_SETS;
    return tag;
}

/* @locality worker that owns the shard of @p t */
static struct throttle_slot *slot_find(struct login_throttle *t, const char *budget,
                                       uint64_t *tag, size_t *set)
{
    *tag = tag_of(t, budget, set);
    for (size_t w = 0; w < KCHAT_THROTTLE_WAYS; w++)
        if (t->slot[*set][w].tag == *tag)
            return &t->slot[*set][w];
    return NULL;
}

/* Whether a slot no longer matters: its lockout ended, or it is not locked
 * and its window has passed. */
static bool slot_stale(const struct throttle_slot *s, int64_t window_ms, int64_t now)
{
    if (s->until_ms != 0)
        return s->until_ms <= now;
    return now - s->first_ms >= window_ms;
}

/* The slot a new id takes in @p set: free, stale, the oldest unlocked one,
 * else the one whose lockout ends first.
 * @locality worker that owns the shard of @p t */
static struct throttle_slot *slot_victim(struct login_throttle *t, size_t set,
                                         int64_t window_ms, int64_t now)
{
    struct throttle_slot *row = t->slot[set], *oldest = NULL, *soonest = NULL;

    for (size_t w = 0; w < KCHAT_THROTTLE_WAYS; w++) {
        struct throttle_slot *s = &row[w];
        if (s->tag == 0 || slot_stale(s, window_ms, now))
            return s;
        if (s->until_ms == 0) {
            if (oldest == NULL || s->first_ms < oldest->first_ms)
                oldest = s;
        } else if (soonest == NULL || s->until_ms < soonest->until_ms) {
            soonest = s;
        }
    }
    return oldest ? oldest : soonest;
}

int64_t kchat__throttle_locked(struct login_throttle *t, const char *budget, int64_t now_ms)
{
    uint64_t tag;
    size_t set;
    struct throttle_slot *s = slot_find(t, budget, &tag, &set);

    if (s == NULL || s->until_ms == 0)
        return 0;
    if (s->until_ms > now_ms)
        return s->until_ms - now_ms;
    memset(s, 0, sizeof(*s));   /* served its time: the count starts over */
    return 0;
}

void kchat__throttle_fail(struct login_throttle *t, const kchat_config *cfg,
                          const char *budget, int64_t now_ms)
{
    int64_t window_ms = (int64_t)cfg->login_window * 1000;
    uint64_t tag;
    size_t set;
    struct throttle_slot *s;

    if (cfg->login_lockout <= 0)
        return;
    s = slot_find(t, budget, &tag, &set);
    if (s != NULL && slot_stale(s, window_ms, now_ms))
        *s = (struct throttle_slot){.tag = tag, .first_ms = now_ms};   /* start over */
    if (s == NULL) {
        s = slot_victim(t, set, window_ms, now_ms);
        *s = (struct throttle_slot){.tag = tag, .first_ms = now_ms};
    }
    if (s->until_ms != 0)
        return;   /* already locked: the lockout is not lengthened */
    if (++s->failures >= (uint32_t)cfg->login_max_failures)
        s->until_ms = now_ms + (int64_t)cfg->login_lockout * 1000;
}

void kchat__throttle_reset(struct login_throttle *t, const char *budget)
{
    uint64_t tag;
    size_t set;
    struct throttle_slot *s = slot_find(t, budget, &tag, &set);

    if (s != NULL)
        memset(s, 0, sizeof(*s));
}
