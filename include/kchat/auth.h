/**
 * @file auth.h
 * @brief The deployment secret: a MAC on every record kchat writes, and
 *        sealed (encrypted and authenticated) requests and responses between
 *        kchat's gateways and backends (docs/security.md).
 *
 * One 32-byte secret per deployment, shared by its backends and gateways
 * (`kchat keygen FILE`, then `--secret-file FILE`). Two keys are derived from
 * it with libsodium's crypto_kdf: one for the MACs, one for the seals.
 *
 * - **MAC**: the header `kchat-mac` holds a keyed BLAKE2b-256 of the record's
 *   topic, key, value and every other header, in order. A reader that holds
 *   the secret drops a record whose MAC is missing or wrong
 *   (kchat_auth_verify()). Topic in the MAC: a genuine record copied to
 *   another topic does not verify.
 * - **Seal**: XChaCha20-Poly1305 under the seal key with a random nonce; the
 *   additional data names what the sealed bytes are for (a label, the topic,
 *   the key and the `kchat-cid`), so a sealed value moved to another record
 *   does not open. A gateway seals each request's value (passwords included)
 *   and its `kchat-session` header (the session id and the time of sealing,
 *   bound to the value's nonce); a backend seals its response to a sealed
 *   request (the `sessionId` of a login included). A sealed record carries
 *   `kchat-sealed: 1`.
 *
 * Requests from clients without the secret stay as PROTOCOL.md describes;
 * what they expose is in docs/security.md.
 *
 * Threads: a kchat_auth is immutable after kchat_auth_load() except for its
 * counters (atomics): every function may be called on any thread at once.
 */
#ifndef KCHAT_AUTH_H
#define KCHAT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>

#include "kchat/error.h"

/** The MAC header: one version byte (1), then 32 bytes of keyed BLAKE2b. */
#define KCHAT_HDR_MAC "kchat-mac"
/** Present (value "1") on a sealed request or response. */
#define KCHAT_HDR_SEALED "kchat-sealed"

#define KCHAT_SECRET_LEN 32          /**< bytes of a deployment secret */
#define KCHAT_MAC_LEN (1 + 32)       /**< bytes of a `kchat-mac` header */
#define KCHAT_SEAL_NONCE_LEN 24      /**< bytes of a seal's nonce */
/** Bytes a sealed value has beyond its plaintext: version, nonce, tag. */
#define KCHAT_SEAL_OVERHEAD (1 + KCHAT_SEAL_NONCE_LEN + 16)
/** Longest `kchat-session` text kchat_auth_seal_session() writes, NUL included. */
#define KCHAT_SEALED_SESSION_MAX 256
/** A sealed session older than this (by the sealer's clock) is refused:
 *  a copied request cannot be replayed for longer than this. */
#define KCHAT_SEALED_SESSION_MAX_AGE_MS (15 * 60 * 1000)

/** What a seal is for: its label in the additional data. */
typedef enum kchat_seal_use {
    KCHAT_SEAL_REQUEST = 1,   /**< a request's value, gateway to backend */
    KCHAT_SEAL_RESPONSE = 2,  /**< a response's value, backend to gateway */
} kchat_seal_use;

/** The keys derived from one deployment secret, and what they refused. */
typedef struct kchat_auth kchat_auth;

/**
 * @brief Write a new random deployment secret to @p path: 64 hex digits and a
 *        newline, in a file created with mode 0600 that must not exist.
 * @return KCHAT_OK; KCHAT_EEXIST when @p path exists; KCHAT_EIO when it
 *         cannot be written (reason in @p errstr).
 */
KCHAT_MUST_CHECK
int kchat_auth_keygen(const char *path, char *errstr, size_t errstr_size);

/**
 * @brief Read the secret in @p path and derive its keys.
 * @param[out] out the keys, owned by the caller (kchat_auth_free()).
 * @return KCHAT_OK; KCHAT_ECONFIG when the file cannot be read, is readable
 *         by others than its owner, or holds no secret (reason in
 *         @p errstr); KCHAT_ENOMEM.
 */
KCHAT_MUST_CHECK
int kchat_auth_load(const char *path, kchat_auth **out, char *errstr, size_t errstr_size);

/** @brief Wipe and free @p a; nothing when NULL. */
void kchat_auth_free(kchat_auth *a);

/**
 * @brief Add a `kchat-mac` header to @p hdrs for a record of @p topic with
 *        this key and value (@p key NULL: no key; @p value NULL: a
 *        tombstone). Call it after every other header is in @p hdrs.
 * @return KCHAT_OK; KCHAT_EKAFKA when librdkafka refuses the header.
 */
KCHAT_MUST_CHECK
int kchat_auth_sign(const kchat_auth *a, const char *topic, const void *key, size_t key_len,
                    const void *value, size_t value_len, rd_kafka_headers_t *hdrs);

/**
 * @brief Whether record @p m carries a correct `kchat-mac`. A record that
 *        does not is counted (kchat_auth_rejected()) and logged on stderr,
 *        at most once every 10 s with the count since, as coming from
 *        @p reader.
 */
bool kchat_auth_verify(kchat_auth *a, const rd_kafka_message_t *m, const char *reader);

/** @brief Records refused so far by kchat_auth_verify() and by the openers. */
uint64_t kchat_auth_rejected(const kchat_auth *a);

/**
 * @brief Seal @p plain for @p use in a record of @p topic with this key and
 *        `kchat-cid` (@p cid may be empty).
 * @param[out] out a malloc'd buffer of @p plain_len + KCHAT_SEAL_OVERHEAD
 *        bytes, owned by the caller; its bytes 1..24 are the nonce.
 * @return KCHAT_OK or KCHAT_ENOMEM.
 */
KCHAT_MUST_CHECK
int kchat_auth_seal(const kchat_auth *a, kchat_seal_use use, const char *topic,
                    const void *key, size_t key_len, const void *cid, size_t cid_len,
                    const void *plain, size_t plain_len, unsigned char **out, size_t *out_len);

/**
 * @brief Open what kchat_auth_seal() sealed with the same arguments.
 * @param[out] out a malloc'd buffer (NUL-terminated beyond @p out_len),
 *        owned by the caller.
 * @return KCHAT_OK; KCHAT_ECRYPTO when it does not open (forged, damaged,
 *         or sealed for another record or use: counted as rejected);
 *         KCHAT_ENOMEM.
 */
KCHAT_MUST_CHECK
int kchat_auth_open(kchat_auth *a, kchat_seal_use use, const char *topic, const void *key,
                    size_t key_len, const void *cid, size_t cid_len, const void *sealed,
                    size_t sealed_len, unsigned char **out, size_t *out_len);

/**
 * @brief The `kchat-session` text proving session @p sid (at most 128
 *        bytes) for the request whose sealed value begins @p sealed_value
 *        (its nonce binds the proof to that request), sealed at @p now_ms.
 * @param[out] out KCHAT_SEALED_SESSION_MAX bytes: "s1." and base64url.
 * @return KCHAT_OK; KCHAT_EINVAL when @p sid is too long or the value is
 *         not sealed.
 */
KCHAT_MUST_CHECK
int kchat_auth_seal_session(const kchat_auth *a, const char *topic, const void *key,
                            size_t key_len, const unsigned char *sealed_value,
                            size_t sealed_len, const char *sid, int64_t now_ms,
                            char out[KCHAT_SEALED_SESSION_MAX]);

/**
 * @brief Open a `kchat-session` text of kchat_auth_seal_session() for the
 *        request whose sealed value is @p sealed_value, refusing one sealed
 *        more than KCHAT_SEALED_SESSION_MAX_AGE_MS before @p now_ms (or as
 *        long after it).
 * @param[out] sid the session id, NUL-terminated (129 bytes).
 * @return KCHAT_OK; KCHAT_ECRYPTO when it does not open or is too old
 *         (counted as rejected).
 */
KCHAT_MUST_CHECK
int kchat_auth_open_session(kchat_auth *a, const char *topic, const void *key, size_t key_len,
                            const unsigned char *sealed_value, size_t sealed_len,
                            const void *text, size_t text_len, int64_t now_ms, char sid[129]);

#endif /* KCHAT_AUTH_H */
