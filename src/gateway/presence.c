/*
 * What this gateway tells the backends about open event streams
 * (include/kchat/presence.h, PROTOCOL.md section 6), on the loop thread.
 *
 * A table of the users online here: a user is in it from their first stream
 * opening until #KCHAT_PRESENCE_DEBOUNCE_MS after their last one closed.
 * The first open produces `online`; the last close arms the user's timer,
 * and only if no stream reopened before it fires is `offline` produced,
 * carrying the time of that close. Every #KCHAT_PRESENCE_BEAT_MS a beat
 * goes to every partition of kchat-presence listing that partition's users
 * (the shard murmur2 of the user id picks, as for requests), in records of
 * at most #KCHAT_PRESENCE_BEAT_MAX ids, and an empty one to a partition with
 * none. At a clean stop, after the streams ended: `offline` for every user
 * still in the table, then `gone` to every partition; kchat_gateway_stop()
 * flushes the producer afterwards.
 *
 * Records are JSON, signed with the deployment secret's kchat-mac as the
 * requests are (kchat_auth_sign()), never sealed: they hold no secret. A
 * record librdkafka refuses at once is lost (logged once a while); one
 * Kafka does not take is counted (presence_failed, in kafka.c's delivery
 * report). The backend's timeouts (presence.h) cover what is lost.
 */
#include "gateway/gateway_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "kchat/error.h"
#include "kchat/kafka.h"
#include "kchat/presence.h"

/* One user online at this gateway. [loop] */
struct gw_presence_user {
    struct gw_presence_user *next;   /* hash chain */
    kchat_gateway *gw;
    char user[72];
    int32_t partition;               /* of kchat-presence: murmur2(user) */
    int streams;                     /* open here; 0: offline pending */
    int64_t closed_ms;               /* when the last one closed (streams == 0) */
    struct event *offline_ev;        /* armed while streams == 0 */
};

/* Wall clock, milliseconds since the epoch: the records' `at`.
 * @locality any thread */
static int64_t presence_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The hash bucket of @p user. @locality loop thread */
static gw_presence_user **presence_bucket(kchat_gateway *gw, const char *user)
{
    return &gw->presence_tab[kchat_murmur2(user, strlen(user)) & (gw->presence_buckets - 1)];
}

/* Produce one record to partition @p partition of kchat-presence: key
 * @p key, value @p v as compact JSON, content-type and (with a secret)
 * kchat-mac. Counted in presence_records when librdkafka took it.
 * @locality loop thread */
static void presence_produce(kchat_gateway *gw, int32_t partition, const char *key,
                             const json_t *v)
{
    static int64_t last_log;
    const char *topic = KCHAT_TOPIC_PRESENCE, *why = "cannot encode or sign it";
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_resp_err_t err;
    char *buf = NULL;
    size_t len = 0;
    int64_t now;

    if (v == NULL || kchat_codec_encode(KCHAT_FMT_JSON, v, &buf, &len) != KCHAT_OK ||
        (hdrs = rd_kafka_headers_new(2)) == NULL)
        goto err_free;
    rd_kafka_header_add(hdrs, KCHAT_HDR_CTYPE, -1, "application/json", -1);
    if (gw->auth != NULL &&
        kchat_auth_sign(gw->auth, topic, key, strlen(key), buf, len, hdrs) != KCHAT_OK)
        goto err_free;
    err = rd_kafka_producev(gw->producer, RD_KAFKA_V_TOPIC(topic),
                            RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_KEY(key, strlen(key)),
                            RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        gw->counters.presence_records++;
        return;
    }
    why = rd_kafka_err2str(err);
err_free:   /* the headers and the value are ours until producev() took them */
    if (hdrs != NULL)
        rd_kafka_headers_destroy(hdrs);
    free(buf);
    now = presence_wall_ms();
    if (now - last_log >= 10000) {
        last_log = now;
        fprintf(stderr, "kchat gateway: a presence record to %s [%d] was not produced: %s\n",
                topic, (int)partition, why);
    }
}

/* `online` or `offline` (@p kind) of @p u at @p at_ms.
 * @locality loop thread */
static void presence_send_user(kchat_gateway *gw, const gw_presence_user *u, const char *kind,
                               int64_t at_ms)
{
    json_t *v = json_pack("{s:s,s:s,s:s,s:I}", "kind", kind, "gateway", gw->presence_id,
                          "userId", u->user, "at", (json_int_t)at_ms);

    presence_produce(gw, u->partition, u->user, v);
    json_decref(v);
}

/* Take @p u out of the table and free it. @locality loop thread */
static void presence_remove(kchat_gateway *gw, gw_presence_user *u)
{
    gw_presence_user **pp = presence_bucket(gw, u->user);

    while (*pp != NULL && *pp != u)
        pp = &(*pp)->next;
    if (*pp == u)
        *pp = u->next;
    if (u->offline_ev != NULL)
        event_free(u->offline_ev);
    free(u);
    gw->presence_users--;
}

/* @p u's last stream closed #KCHAT_PRESENCE_DEBOUNCE_MS ago and none
 * opened since: offline, as of that close.
 * @locality loop thread (libevent timer callback) */
static void presence_offline_cb(evutil_socket_t fd, short what, void *arg)
{
    gw_presence_user *u = arg;
    kchat_gateway *gw = u->gw;

    (void)fd;
    (void)what;
    if (u->streams > 0)
        return;   /* not reached: a reopen removes the timer */
    presence_send_user(gw, u, "offline", u->closed_ms);
    presence_remove(gw, u);
}

void kchat__gw_presence_open(kchat_gateway *gw, const char *user)
{
    gw_presence_user **head, *u;

    if (gw->presence_stopped || !atomic_load(&gw->ready) || gw->presence_partitions <= 0)
        return;
    head = presence_bucket(gw, user);
    for (u = *head; u != NULL && strcmp(u->user, user) != 0; u = u->next)
        ;
    if (u != NULL) {
        /* a stream of an online user; or one that reopens within the
         * debounce: then the offline never happens, and nothing is said */
        if (u->streams++ == 0 && u->offline_ev != NULL)
            evtimer_del(u->offline_ev);
        return;
    }
    if ((u = calloc(1, sizeof(*u))) == NULL)
        return;   /* the backend will not see this user online here */
    u->gw = gw;
    snprintf(u->user, sizeof(u->user), "%s", user);
    u->partition = kchat_partition_for_key(u->user, strlen(u->user), gw->presence_partitions);
    u->streams = 1;
    u->next = *head;
    *head = u;
    gw->presence_users++;
    presence_send_user(gw, u, "online", presence_wall_ms());
}

void kchat__gw_presence_close(kchat_gateway *gw, const char *user)
{
    struct timeval debounce = {KCHAT_PRESENCE_DEBOUNCE_MS / 1000,
                               (KCHAT_PRESENCE_DEBOUNCE_MS % 1000) * 1000};
    gw_presence_user *u;

    if (gw->presence_tab == NULL)
        return;
    for (u = *presence_bucket(gw, user); u != NULL && strcmp(u->user, user) != 0; u = u->next)
        ;
    if (u == NULL || u->streams <= 0 || --u->streams > 0)
        return;
    u->closed_ms = presence_wall_ms();
    if (u->offline_ev == NULL)
        u->offline_ev = evtimer_new(gw->base, presence_offline_cb, u);
    if (u->offline_ev == NULL || evtimer_add(u->offline_ev, &debounce) != 0) {
        /* no timer: say it now rather than never */
        presence_send_user(gw, u, "offline", u->closed_ms);
        presence_remove(gw, u);
    }
}

/* One beat or gone record for @p partition: `users` (@p n ids of @p ids)
 * for a beat, none for gone. @locality loop thread */
static void presence_send_gateway(kchat_gateway *gw, int32_t partition, const char *kind,
                                  const char *const *ids, size_t n, int64_t at_ms)
{
    json_t *v = json_pack("{s:s,s:s}", "kind", kind, "gateway", gw->presence_id);
    json_t *users = NULL;

    if (v != NULL && ids != NULL) {
        users = json_array();
        for (size_t i = 0; users != NULL && i < n; i++)
            json_array_append_new(users, json_string(ids[i]));
        json_object_set_new(v, "users", users);
    }
    if (v != NULL)
        json_object_set_new(v, "at", json_integer((json_int_t)at_ms));
    presence_produce(gw, partition, gw->presence_id, v);
    json_decref(v);
}

/* Every partition's beat: its users grouped by partition, in records of at
 * most #KCHAT_PRESENCE_BEAT_MAX ids, an empty one where there are none.
 * @locality loop thread */
static void presence_beat(kchat_gateway *gw)
{
    int np = gw->presence_partitions;
    size_t n = (size_t)gw->presence_users, *start = NULL, *fill = NULL;
    const char **ids = NULL;
    int64_t now = presence_wall_ms();

    if ((start = calloc((size_t)np + 1, sizeof(*start))) == NULL ||
        (fill = calloc((size_t)np, sizeof(*fill))) == NULL ||
        (ids = calloc(n ? n : 1, sizeof(*ids))) == NULL)
        goto out_free;   /* the next beat may fit; the backend waits longer */
    for (size_t b = 0; b < gw->presence_buckets; b++)
        for (gw_presence_user *u = gw->presence_tab[b]; u != NULL; u = u->next)
            start[u->partition + 1]++;
    for (int p = 0; p < np; p++)
        start[p + 1] += start[p];
    for (size_t b = 0; b < gw->presence_buckets; b++)
        for (gw_presence_user *u = gw->presence_tab[b]; u != NULL; u = u->next)
            ids[start[u->partition] + fill[u->partition]++] = u->user;
    for (int p = 0; p < np; p++) {
        size_t off = start[p], count = start[p + 1] - start[p];
        do {
            size_t k = count > KCHAT_PRESENCE_BEAT_MAX ? KCHAT_PRESENCE_BEAT_MAX : count;
            presence_send_gateway(gw, p, "beat", ids + off, k, now);
            off += k;
            count -= k;
        } while (count > 0);
    }
out_free:
    free(start);
    free(fill);
    free(ids);
}

/* Every #KCHAT_PRESENCE_BEAT_MS once Kafka is ready.
 * @locality loop thread (libevent timer callback) */
static void presence_beat_cb(evutil_socket_t fd, short what, void *arg)
{
    kchat_gateway *gw = arg;

    (void)fd;
    (void)what;
    if (!gw->presence_stopped && gw->presence_partitions > 0 && atomic_load(&gw->ready))
        presence_beat(gw);
}

int kchat__gw_presence_init(kchat_gateway *gw)
{
    struct timeval beat = {KCHAT_PRESENCE_BEAT_MS / 1000, (KCHAT_PRESENCE_BEAT_MS % 1000) * 1000};
    unsigned char rnd[KCHAT_PRESENCE_GW_LEN / 2];
    size_t buckets = 64;

    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(gw->presence_id, sizeof(gw->presence_id), rnd, sizeof(rnd));
    while (buckets < (size_t)gw->cfg->sse_max_total && buckets < ((size_t)1 << 20))
        buckets <<= 1;
    if ((gw->presence_tab = calloc(buckets, sizeof(*gw->presence_tab))) == NULL)
        return KCHAT_ENOMEM;
    gw->presence_buckets = buckets;
    if ((gw->presence_beat_ev = event_new(gw->base, -1, EV_PERSIST, presence_beat_cb, gw)) ==
            NULL ||
        event_add(gw->presence_beat_ev, &beat) != 0)
        return KCHAT_ENOMEM;
    return KCHAT_OK;
}

void kchat__gw_presence_stop(kchat_gateway *gw)
{
    int64_t now = presence_wall_ms();

    if (gw->presence_stopped)
        return;
    gw->presence_stopped = true;
    if (gw->presence_beat_ev != NULL)
        event_del(gw->presence_beat_ev);
    if (!atomic_load(&gw->ready) || gw->presence_partitions <= 0)
        return;   /* never ready: nothing was said, nothing to take back */
    for (size_t b = 0; b < gw->presence_buckets; b++)
        while (gw->presence_tab[b] != NULL) {
            gw_presence_user *u = gw->presence_tab[b];
            /* at once; a user whose last stream closed already keeps the
             * time of that close as their lastSeen */
            presence_send_user(gw, u, "offline", u->streams > 0 ? now : u->closed_ms);
            presence_remove(gw, u);
        }
    for (int p = 0; p < gw->presence_partitions; p++)
        presence_send_gateway(gw, p, "gone", NULL, 0, now);
}

void kchat__gw_presence_free(kchat_gateway *gw)
{
    for (size_t b = 0; gw->presence_tab != NULL && b < gw->presence_buckets; b++)
        while (gw->presence_tab[b] != NULL)
            presence_remove(gw, gw->presence_tab[b]);
    free(gw->presence_tab);
    gw->presence_tab = NULL;
    if (gw->presence_beat_ev != NULL)
        event_free(gw->presence_beat_ev);
    gw->presence_beat_ev = NULL;
}
