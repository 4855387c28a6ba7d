/* Kafka helpers shared by every process (include/kchat/kafka.h). */
#include "kchat/kafka.h"

#include <stdio.h>
#include <string.h>

#include "kchat/error.h"

uint32_t kchat_murmur2(const void *key, size_t len)
{
    const uint32_t seed = 0x9747b28cu, m = 0x5bd1e995u;
    const int r = 24;
    const unsigned char *p = key;
    uint32_t h = seed ^ (uint32_t)len;

    while (len >= 4) {
        uint32_t k = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
                     (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
        p += 4;
        len -= 4;
    }
    switch (len) {
    case 3: h ^= (uint32_t)p[2] << 16; /* fall through */
    case 2: h ^= (uint32_t)p[1] << 8;  /* fall through */
    case 1: h ^= p[0]; h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

int32_t kchat_partition_for_key(const void *key, size_t len, int32_t partition_cnt)
{
    return (int32_t)((kchat_murmur2(key, len) & 0x7fffffffu) % (uint32_t)partition_cnt);
}

int kchat_header_get(const rd_kafka_message_t *msg, const char *name,
                     const void **val, size_t *len)
{
    rd_kafka_headers_t *hdrs = NULL;

    if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    if (rd_kafka_header_get_last(hdrs, name, val, len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return -1;
    if (*val == NULL)
        *len = 0;
    return 0;
}

int kchat_kafka_conf_kv(rd_kafka_conf_t *conf, const char *kv,
                        char *errstr, size_t errstr_size)
{
    const char *eq = strchr(kv, '=');
    char name[256], rkerr[256];

    if (eq == NULL || eq == kv || (size_t)(eq - kv) >= sizeof(name)) {
        snprintf(errstr, errstr_size, "-X expects key=value, got \"%s\"", kv);
        return KCHAT_ECONFIG;
    }
    memcpy(name, kv, (size_t)(eq - kv));
    name[eq - kv] = '\0';
    if (rd_kafka_conf_set(conf, name, eq + 1, rkerr, sizeof(rkerr)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "librdkafka property %s: %s", name, rkerr);
        return KCHAT_ECONFIG;
    }
    return KCHAT_OK;
}

bool kchat_kafka_is_mock_cluster(const char *cluster_id)
{
    return cluster_id != NULL && strncmp(cluster_id, "mockCluster", 11) == 0;
}
