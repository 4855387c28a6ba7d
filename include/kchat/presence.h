/**
 * @file presence.h
 * @brief What gateways tell backends about open event streams, so that the
 *        user's shard can keep presence (PROTOCOL.md §6; docs/design.md
 *        "Presence").
 *
 * Every record goes to #KCHAT_TOPIC_PRESENCE, is JSON, and carries the
 * deployment's `kchat-mac` when the gateway has a secret. Three kinds:
 *
 * | kind | key, partition | value |
 * | --- | --- | --- |
 * | online | userId, murmur2 | `{"kind":"online","gateway":G,"userId":U,"at":MS}` |
 * | offline | userId, murmur2 | `{"kind":"offline","gateway":G,"userId":U,"at":MS}` |
 * | beat | G, every partition p | `{"kind":"beat","gateway":G,"users":[U...],"at":MS}` |
 * | gone | G, every partition p | `{"kind":"gone","gateway":G,"at":MS}` |
 *
 * - G: the gateway's instance id, #KCHAT_PRESENCE_GW_LEN hex characters
 *   drawn at each start. MS: the gateway's clock, milliseconds since the
 *   epoch: for online when the first stream opened, for offline when the
 *   last one closed (the user's lastSeen), for beat and gone when sent.
 * - online: the user's first stream opened at G (none open there before,
 *   and no close of one within #KCHAT_PRESENCE_DEBOUNCE_MS before).
 * - offline: #KCHAT_PRESENCE_DEBOUNCE_MS after the user's last stream at G
 *   closed, none having opened since; at a clean stop of G, at once for
 *   every user still online there.
 * - beat: every #KCHAT_PRESENCE_BEAT_MS, to every partition p, the users of
 *   shard p online at G (a stream open, or the last closed less than
 *   #KCHAT_PRESENCE_DEBOUNCE_MS ago); at most #KCHAT_PRESENCE_BEAT_MAX
 *   ids per record, so a partition may get several records per beat (and
 *   one with `"users":[]` when it has none).
 * - gone: G stops cleanly; after its offline records.
 *
 * The backend holds a user online while some gateway lists them; a
 * gateway with no beat for #KCHAT_PRESENCE_DEAD_MS is dead and its users
 * are offline; a user a live gateway has not listed for
 * #KCHAT_PRESENCE_STALE_MS is offline there (a lost offline record).
 */
#ifndef KCHAT_PRESENCE_H
#define KCHAT_PRESENCE_H

/** A stream closed and reopened within this changes nothing. */
#define KCHAT_PRESENCE_DEBOUNCE_MS 5000
/** A gateway's beat to every partition, this often. */
#define KCHAT_PRESENCE_BEAT_MS 5000
/** At most this many user ids in one beat record. */
#define KCHAT_PRESENCE_BEAT_MAX 500
/** No beat of a gateway for this long: it is dead (within PROTOCOL.md's 60 s). */
#define KCHAT_PRESENCE_DEAD_MS 20000
/** A user no beat of a live gateway listed for this long is not online there. */
#define KCHAT_PRESENCE_STALE_MS 16000
/** Length of a gateway instance id (hex characters). */
#define KCHAT_PRESENCE_GW_LEN 16

#endif /* KCHAT_PRESENCE_H */
