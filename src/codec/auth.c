/*
 * The deployment secret and what it keys: record MACs and seals
 * (include/kchat/auth.h, docs/security.md).
 *
 * Every variable-length part fed to a MAC or to a seal's additional data is
 * preceded by its length (8 bytes, little-endian; all ones for a header with
 * no value), so no two different records feed the same bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>

#include "kchat/auth.h"

#define MAC_VERSION 1
#define SEAL_VERSION 1
#define LOG_EVERY_S 10
#define SESSION_PREFIX "s1."
#define ABSENT UINT64_MAX

struct kchat_auth {
    unsigned char mac_key[crypto_generichash_KEYBYTES];
    unsigned char seal_key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
    _Atomic uint64_t rejected;
    _Atomic uint64_t logged;       /* rejected when the last line was written */
    _Atomic int64_t log_after_s;   /* no line before this (monotonic seconds) */
};

/* ---- the secret file ---- */

int kchat_auth_keygen(const char *path, char *errstr, size_t errstr_size)
{
    unsigned char raw[KCHAT_SECRET_LEN];
    char hex[2 * KCHAT_SECRET_LEN + 2];
    size_t len;
    ssize_t w;
    int fd, rc = KCHAT_OK;

    if (sodium_init() < 0) {
        snprintf(errstr, errstr_size, "libsodium failed to initialise");
        return KCHAT_ECRYPTO;
    }
    if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return errno == EEXIST ? KCHAT_EEXIST : KCHAT_EIO;
    }
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(hex, sizeof(hex) - 1, raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
    len = strlen(hex);
    hex[len++] = '\n';
    w = write(fd, hex, len);
    sodium_memzero(hex, sizeof(hex));
    if (w != (ssize_t)len || fsync(fd) != 0) {
        snprintf(errstr, errstr_size, "%s: %s", path, w < 0 ? strerror(errno) : "short write");
        rc = KCHAT_EIO;
    }
    if (close(fd) != 0 && rc == KCHAT_OK) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        rc = KCHAT_EIO;
    }
    if (rc != KCHAT_OK)
        unlink(path);
    return rc;
}

int kchat_auth_load(const char *path, kchat_auth **out, char *errstr, size_t errstr_size)
{
    unsigned char master[KCHAT_SECRET_LEN];
    char text[2 * KCHAT_SECRET_LEN + 64];
    size_t bin_len = 0;
    struct stat st;
    kchat_auth *a;
    ssize_t n;
    int fd;

    *out = NULL;
    if (sodium_init() < 0) {
        snprintf(errstr, errstr_size, "libsodium failed to initialise");
        return KCHAT_ECRYPTO;
    }
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
        snprintf(errstr, errstr_size, "secret file %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return KCHAT_ECONFIG;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(errstr, errstr_size, "secret file %s is readable by others (mode %03o): "
                 "chmod 600 it", path, (unsigned)(st.st_mode & 0777));
        close(fd);
        return KCHAT_ECONFIG;
    }
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n < 0) {
        snprintf(errstr, errstr_size, "secret file %s: %s", path, strerror(errno));
        return KCHAT_ECONFIG;
    }
    text[n] = '\0';
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' '))
        text[--n] = '\0';
    if (n != 2 * KCHAT_SECRET_LEN ||
        sodium_hex2bin(master, sizeof(master), text, (size_t)n, NULL, &bin_len, NULL) != 0 ||
        bin_len != sizeof(master)) {
        sodium_memzero(text, sizeof(text));
        snprintf(errstr, errstr_size, "secret file %s does not hold %d hex digits "
                 "(write one with `kchat keygen %s`)", path, 2 * KCHAT_SECRET_LEN, path);
        return KCHAT_ECONFIG;
    }
    sodium_memzero(text, sizeof(text));
    if ((a = calloc(1, sizeof(*a))) == NULL) {
        sodium_memzero(master, sizeof(master));
        return KCHAT_ENOMEM;
    }
    crypto_kdf_derive_from_key(a->mac_key, sizeof(a->mac_key), 1, "kchatmac", master);
    crypto_kdf_derive_from_key(a->seal_key, sizeof(a->seal_key), 2, "kchatsel", master);
    sodium_memzero(master, sizeof(master));
    *out = a;
    return KCHAT_OK;
}

void kchat_auth_free(kchat_auth *a)
{
    if (a == NULL)
        return;
    sodium_memzero(a, sizeof(*a));
    free(a);
}

uint64_t kchat_auth_rejected(const kchat_auth *a)
{
    return a ? atomic_load(&((kchat_auth *)a)->rejected) : 0;
}

/* Count one refusal; a line on stderr at most every LOG_EVERY_S seconds.
 * @locality any thread */
static void rejected(kchat_auth *a, const char *reader, const char *what, const char *topic,
                     int32_t partition, int64_t offset)
{
    uint64_t n = atomic_fetch_add(&a->rejected, 1) + 1;
    struct timespec ts;
    int64_t now, after;
    char where[48] = "";

    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = ts.tv_sec;
    after = atomic_load(&a->log_after_s);
    if (now < after || !atomic_compare_exchange_strong(&a->log_after_s, &after,
                                                       now + LOG_EVERY_S))
        return;
    if (partition >= 0)   /* a consumed record; the openers know no position */
        snprintf(where, sizeof(where), " [%" PRId32 "] @%" PRId64, partition, offset);
    fprintf(stderr, "kchat: %s: dropped a record of %s%s: %s (%" PRIu64 " refused since the "
            "last such line, %" PRIu64 " in all)\n", reader, topic, where, what,
            n - atomic_exchange(&a->logged, n), n);
}

/* ---- MACs ---- */

static void feed(crypto_generichash_state *st, const void *p, uint64_t len)
{
    unsigned char le[8];

    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(len >> (8 * i));
    crypto_generichash_update(st, le, sizeof(le));
    if (p != NULL && len != ABSENT && len > 0)
        crypto_generichash_update(st, p, len);
}

/* The MAC of a record (its kchat-mac headers left out) into @p out.
 * @locality any thread */
static void record_mac(const kchat_auth *a, const char *topic, const void *key, size_t key_len,
                       const void *value, size_t value_len, const rd_kafka_headers_t *hdrs,
                       unsigned char out[32])
{
    crypto_generichash_state st;
    const char *name;
    const void *v;
    size_t vl;

    crypto_generichash_init(&st, a->mac_key, sizeof(a->mac_key), 32);
    feed(&st, "kchat-mac-1", strlen("kchat-mac-1"));
    feed(&st, topic, strlen(topic));
    /* No key and an empty key feed the same (librdkafka may hand either
     * for a zero-length one); so do a tombstone and an empty value. */
    feed(&st, key, key ? key_len : 0);
    feed(&st, value, value ? value_len : 0);
    for (size_t i = 0; hdrs && !rd_kafka_header_get_all(hdrs, i, &name, &v, &vl); i++) {
        if (!strcmp(name, KCHAT_HDR_MAC))
            continue;
        feed(&st, name, strlen(name));
        feed(&st, v, v ? vl : ABSENT);
    }
    crypto_generichash_final(&st, out, 32);
}

int kchat_auth_sign(const kchat_auth *a, const char *topic, const void *key, size_t key_len,
                    const void *value, size_t value_len, rd_kafka_headers_t *hdrs)
{
    unsigned char mac[KCHAT_MAC_LEN];

    mac[0] = MAC_VERSION;
    record_mac(a, topic, key, key_len, value, value_len, hdrs, mac + 1);
    if (rd_kafka_header_add(hdrs, KCHAT_HDR_MAC, -1, mac, sizeof(mac)) !=
        RD_KAFKA_RESP_ERR_NO_ERROR)
        return KCHAT_EKAFKA;
    return KCHAT_OK;
}

bool kchat_auth_verify(kchat_auth *a, const rd_kafka_message_t *m, const char *reader)
{
    rd_kafka_headers_t *hdrs = NULL;
    const unsigned char *got = NULL;
    unsigned char want[32];
    const char *topic = rd_kafka_topic_name(m->rkt);
    const void *v;
    size_t vl = 0;

    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, KCHAT_HDR_MAC, &v, &vl) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        v == NULL) {
        rejected(a, reader, "no kchat-mac header", topic, m->partition, m->offset);
        return false;
    }
    got = v;
    if (vl != KCHAT_MAC_LEN || got[0] != MAC_VERSION) {
        rejected(a, reader, "a kchat-mac header of an unknown form", topic, m->partition,
                 m->offset);
        return false;
    }
    record_mac(a, topic, m->key, m->key_len, m->payload, m->len, hdrs, want);
    if (sodium_memcmp(want, got + 1, sizeof(want)) != 0) {
        rejected(a, reader, "its kchat-mac does not verify", topic, m->partition, m->offset);
        return false;
    }
    return true;
}

/* ---- seals ---- */

/* The additional data of a seal: use, topic, key, cid, and @p extra.
 * @return its length, or 0 when it does not fit @p cap */
static size_t seal_ad(unsigned char *ad, size_t cap, int use, const char *topic,
                      const void *key, size_t key_len, const void *cid, size_t cid_len,
                      const void *extra, size_t extra_len)
{
    const struct { const void *p; size_t len; } part[] = {
        {topic, strlen(topic)}, {key, key_len}, {cid, cid_len}, {extra, extra_len},
    };
    size_t n = 0;

    if (cap < 1)
        return 0;
    ad[n++] = (unsigned char)use;
    for (size_t i = 0; i < sizeof(part) / sizeof(part[0]); i++) {
        if (n + 8 + part[i].len > cap)
            return 0;
        for (int b = 0; b < 8; b++)
            ad[n++] = (unsigned char)((uint64_t)part[i].len >> (8 * b));
        if (part[i].len)
            memcpy(ad + n, part[i].p, part[i].len);
        n += part[i].len;
    }
    return n;
}

#define AD_MAX 512   /* topic (< 260) + key (< 128) + cid (<= 64) + nonce + lengths */

int kchat_auth_seal(const kchat_auth *a, kchat_seal_use use, const char *topic,
                    const void *key, size_t key_len, const void *cid, size_t cid_len,
                    const void *plain, size_t plain_len, unsigned char **out, size_t *out_len)
{
    unsigned char ad[AD_MAX], *buf;
    unsigned long long clen;
    size_t adl = seal_ad(ad, sizeof(ad), (int)use, topic, key, key_len, cid, cid_len, NULL, 0);

    *out = NULL;
    if (adl == 0)
        return KCHAT_EINVAL;
    if ((buf = malloc(plain_len + KCHAT_SEAL_OVERHEAD)) == NULL)
        return KCHAT_ENOMEM;
    buf[0] = SEAL_VERSION;
    randombytes_buf(buf + 1, KCHAT_SEAL_NONCE_LEN);
    crypto_aead_xchacha20poly1305_ietf_encrypt(buf + 1 + KCHAT_SEAL_NONCE_LEN, &clen, plain,
                                               plain_len, ad, adl, NULL, buf + 1, a->seal_key);
    *out = buf;
    *out_len = 1 + KCHAT_SEAL_NONCE_LEN + (size_t)clen;
    return KCHAT_OK;
}

int kchat_auth_open(kchat_auth *a, kchat_seal_use use, const char *topic, const void *key,
                    size_t key_len, const void *cid, size_t cid_len, const void *sealed,
                    size_t sealed_len, unsigned char **out, size_t *out_len)
{
    const unsigned char *s = sealed;
    unsigned char ad[AD_MAX], *buf;
    unsigned long long plen;
    size_t adl = seal_ad(ad, sizeof(ad), (int)use, topic, key, key_len, cid, cid_len, NULL, 0);

    *out = NULL;
    if (adl == 0 || sealed_len < KCHAT_SEAL_OVERHEAD || s[0] != SEAL_VERSION) {
        rejected(a, "open", "a sealed value of an unknown form", topic, -1, -1);
        return KCHAT_ECRYPTO;
    }
    if ((buf = malloc(sealed_len - KCHAT_SEAL_OVERHEAD + 1)) == NULL)
        return KCHAT_ENOMEM;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(buf, &plen, NULL,
                                                   s + 1 + KCHAT_SEAL_NONCE_LEN,
                                                   sealed_len - 1 - KCHAT_SEAL_NONCE_LEN,
                                                   ad, adl, s + 1, a->seal_key) != 0) {
        free(buf);
        rejected(a, "open", "a sealed value that does not open", topic, -1, -1);
        return KCHAT_ECRYPTO;
    }
    buf[plen] = '\0';
    *out = buf;
    *out_len = (size_t)plen;
    return KCHAT_OK;
}

/* ---- sealed sessions: "s1." base64url(version | nonce | seal(time | sid)) ---- */

#define SESSION_USE 3
#define SESSION_SID_MAX 128

int kchat_auth_seal_session(const kchat_auth *a, const char *topic, const void *key,
                            size_t key_len, const unsigned char *sealed_value,
                            size_t sealed_len, const char *sid, int64_t now_ms,
                            char out[KCHAT_SEALED_SESSION_MAX])
{
    unsigned char ad[AD_MAX], plain[8 + SESSION_SID_MAX];
    unsigned char box[KCHAT_SEAL_OVERHEAD + sizeof(plain)];
    unsigned long long clen;
    size_t sl = strlen(sid), adl;

    if (sl > SESSION_SID_MAX || sealed_len < KCHAT_SEAL_OVERHEAD)
        return KCHAT_EINVAL;
    adl = seal_ad(ad, sizeof(ad), SESSION_USE, topic, key, key_len, NULL, 0, sealed_value + 1,
                  KCHAT_SEAL_NONCE_LEN);
    if (adl == 0)
        return KCHAT_EINVAL;
    for (int b = 0; b < 8; b++)
        plain[b] = (unsigned char)((uint64_t)now_ms >> (8 * b));
    memcpy(plain + 8, sid, sl);
    box[0] = SEAL_VERSION;
    randombytes_buf(box + 1, KCHAT_SEAL_NONCE_LEN);
    crypto_aead_xchacha20poly1305_ietf_encrypt(box + 1 + KCHAT_SEAL_NONCE_LEN, &clen, plain,
                                               8 + sl, ad, adl, NULL, box + 1, a->seal_key);
    sodium_memzero(plain, sizeof(plain));
    memcpy(out, SESSION_PREFIX, strlen(SESSION_PREFIX));
    sodium_bin2base64(out + strlen(SESSION_PREFIX),
                      KCHAT_SEALED_SESSION_MAX - strlen(SESSION_PREFIX), box,
                      1 + KCHAT_SEAL_NONCE_LEN + (size_t)clen,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return KCHAT_OK;
}

int kchat_auth_open_session(kchat_auth *a, const char *topic, const void *key, size_t key_len,
                            const unsigned char *sealed_value, size_t sealed_len,
                            const void *text, size_t text_len, int64_t now_ms, char sid[129])
{
    unsigned char ad[AD_MAX], box[KCHAT_SEAL_OVERHEAD + 8 + SESSION_SID_MAX];
    unsigned char plain[8 + SESSION_SID_MAX];
    unsigned long long plen;
    size_t pre = strlen(SESSION_PREFIX), blen = 0, adl;
    uint64_t t = 0;
    int64_t age;

    sid[0] = '\0';
    if (sealed_len < KCHAT_SEAL_OVERHEAD || text_len <= pre || memcmp(text, SESSION_PREFIX, pre) ||
        sodium_base642bin(box, sizeof(box), (const char *)text + pre, text_len - pre, NULL,
                          &blen, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        blen < KCHAT_SEAL_OVERHEAD + 8 || box[0] != SEAL_VERSION)
        goto err_refused;
    adl = seal_ad(ad, sizeof(ad), SESSION_USE, topic, key, key_len, NULL, 0, sealed_value + 1,
                  KCHAT_SEAL_NONCE_LEN);
    if (adl == 0 ||
        crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL,
                                                   box + 1 + KCHAT_SEAL_NONCE_LEN,
                                                   blen - 1 - KCHAT_SEAL_NONCE_LEN, ad, adl,
                                                   box + 1, a->seal_key) != 0)
        goto err_refused;
    for (int b = 0; b < 8; b++)
        t |= (uint64_t)plain[b] << (8 * b);
    age = now_ms - (int64_t)t;
    if (age > KCHAT_SEALED_SESSION_MAX_AGE_MS || age < -KCHAT_SEALED_SESSION_MAX_AGE_MS) {
        sodium_memzero(plain, sizeof(plain));
        rejected(a, "open", "a sealed session sealed too long ago", topic, -1, -1);
        return KCHAT_ECRYPTO;
    }
    memcpy(sid, plain + 8, (size_t)plen - 8);
    sid[plen - 8] = '\0';
    sodium_memzero(plain, sizeof(plain));
    return KCHAT_OK;

err_refused:
    rejected(a, "open", "a sealed session that does not open", topic, -1, -1);
    return KCHAT_ECRYPTO;
}
