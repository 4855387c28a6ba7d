/* The gateway's life cycle and its Kafka side: the producer, the reply
 * consumer thread that hands records to the loop, and the catch-up threads
 * of resumed event streams (include/kchat/gateway.h). */
#include "gateway/gateway_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/listener.h>
#include <event2/thread.h>
#include <jansson.h>
#include <sodium.h>

#include "kchat/codec.h"
#include "kchat/error.h"
#include "kchat/kafka.h"
#include "kchat/topics.h"

double kchat__gw_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void kchat__gw_push(kchat_gateway *gw, gw_item *it)
{
    bool was_empty;

    it->next = NULL;
    pthread_mutex_lock(&gw->lock);
    was_empty = gw->q_head == NULL;
    if (gw->q_tail)
        gw->q_tail->next = it;
    else
        gw->q_head = it;
    gw->q_tail = it;
    pthread_mutex_unlock(&gw->lock);
    if (was_empty)
        event_active(gw->notify_ev, EV_READ, 0);
}

/* [loop] Drain the queue. */
static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
    kchat_gateway *gw = arg;
    gw_item *it, *next;

    (void)fd;
    (void)what;
    pthread_mutex_lock(&gw->lock);
    it = gw->q_head;
    gw->q_head = gw->q_tail = NULL;
    pthread_mutex_unlock(&gw->lock);
    for (; it; it = next) {
        next = it->next;
        kchat__gw_handle_item(gw, it);
    }
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    kchat_gateway *gw = arg;

    (void)fd;
    (void)what;
    notify_cb(-1, 0, gw);
    kchat__gw_shutdown_http(gw);
    event_base_loopbreak(gw->base);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kchat__gw_tick(arg);
}

static void *loop_main(void *arg)
{
    kchat_gateway *gw = arg;

    event_base_loop(gw->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

/* ---- Kafka ---- */

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kchat_gateway *gw = opaque;

    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        if (!atomic_exchange(&gw->kafka_down, true))
            fprintf(stderr, "kchat gateway: Kafka unreachable: %s\n", reason);
    }
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kchat_gateway *gw = opaque;
    const void *v;
    size_t len;
    gw_item *it;

    (void)rk;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        atomic_store(&gw->kafka_down, false);
        return;
    }
    if (kchat_header_get(m, KCHAT_HDR_CID, &v, &len) != 0 || len >= sizeof(it->cid))
        return;
    if ((it = calloc(1, sizeof(*it))) == NULL)
        return;
    it->kind = GW_ITEM_DR_FAIL;
    memcpy(it->cid, v, len);
    kchat__gw_push(gw, it);
}

static rd_kafka_conf_t *kafka_conf(kchat_gateway *gw, char *errstr, size_t len)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    if (rd_kafka_conf_set(conf, "bootstrap.servers", gw->brokers, errstr, len) ||
        rd_kafka_conf_set(conf, "client.id", "kchat-gateway", errstr, len) ||
        rd_kafka_conf_set(conf, "log_level", "3", errstr, len))
        goto err_destroy;
    for (int i = 0; i < gw->cfg->n_x; i++)
        if (kchat_kafka_conf_kv(conf, gw->cfg->x[i], errstr, len) != KCHAT_OK)
            goto err_destroy;
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, gw);
    return conf;
err_destroy:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* fetch.wait.max.ms of the gateway's consumers (kchat_config_fetch_wait_ms()):
 * by broker unless set, so it may ask for the cluster id, waiting at most
 * @p timeout_ms (unknown counts as Kafka). `kchat dev` without --brokers
 * runs on the embedded mock cluster. */
static void fetch_wait_conf(kchat_gateway *gw, rd_kafka_conf_t *conf, int timeout_ms)
{
    int ms = kchat_config_fetch_wait_ms(gw->cfg, false);
    int mock_ms = kchat_config_fetch_wait_ms(gw->cfg, true);
    char v[16];

    if (ms != mock_ms) {
        bool mock = gw->cfg->brokers[0] == '\0';
        if (!mock) {
            char *id = rd_kafka_clusterid(gw->producer, timeout_ms);
            mock = kchat_kafka_is_mock_cluster(id);
            if (id != NULL)
                rd_kafka_mem_free(gw->producer, id);
        }
        if (mock)
            ms = mock_ms;
    }
    snprintf(v, sizeof(v), "%d", ms);
    if (ms >= 0)
        rd_kafka_conf_set(conf, "fetch.wait.max.ms", v, NULL, 0);
}

static void consumer_conf(rd_kafka_conf_t *conf, bool eof)
{
    char gid[64];

    snprintf(gid, sizeof(gid), "kchat-gateway-%ld-%08x%08x", (long)getpid(),
             randombytes_random(), randombytes_random());
    rd_kafka_conf_set(conf, "group.id", gid, NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", NULL, 0);
    rd_kafka_conf_set(conf, "enable.partition.eof", eof ? "true" : "false", NULL, 0);
    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", NULL, 0);
}

gw_item *kchat__gw_event_item(const rd_kafka_message_t *m, int kind)
{
    const void *ct;
    size_t ctlen;
    kchat_fmt fmt = KCHAT_FMT_JSON;
    json_t *v = NULL, *t;
    gw_item *it;
    char *out = NULL;
    size_t outlen = 0;

    if (m->key == NULL || m->key_len == 0 || m->key_len >= sizeof(it->user))
        return NULL;
    if (kchat_header_get(m, KCHAT_HDR_CTYPE, &ct, &ctlen) == 0 &&
        ctlen == strlen("application/msgpack") && !memcmp(ct, "application/msgpack", ctlen))
        fmt = KCHAT_FMT_MSGPACK;
    if (kchat_codec_decode(fmt, m->payload, m->len, &v) != KCHAT_OK || !json_is_object(v)) {
        json_decref(v);
        return NULL;
    }
    if ((it = calloc(1, sizeof(*it))) == NULL) {
        json_decref(v);
        return NULL;
    }
    it->kind = kind;
    memcpy(it->user, m->key, m->key_len);
    t = json_object_get(v, "type");
    snprintf(it->type, sizeof(it->type), "%s", json_is_string(t) ? json_string_value(t) : "message");
    it->partition = m->partition;
    it->offset = m->offset;
    /* Compact JSON holds no raw newline: one `data:` line. */
    if (kchat_codec_encode(KCHAT_FMT_JSON, v, &out, &outlen) != KCHAT_OK) {
        json_decref(v);
        free(it);
        return NULL;
    }
    json_decref(v);
    it->data = malloc(outlen + 1);
    if (it->data == NULL) {
        free(out);
        free(it);
        return NULL;
    }
    memcpy(it->data, out, outlen);
    it->data[outlen] = '\0';
    it->len = outlen;
    free(out);
    return it;
}

static void handle_record(kchat_gateway *gw, rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    gw_item *it;
    const void *v;
    size_t len;

    if (!strcmp(topic, KCHAT_TOPIC_EVENTS)) {
        if ((it = kchat__gw_event_item(m, GW_ITEM_EVENT)) != NULL)
            kchat__gw_push(gw, it);
        return;
    }
    if (kchat_header_get(m, KCHAT_HDR_CID, &v, &len) != 0 || len == 0 || len >= sizeof(it->cid))
        return;
    /* Only our own cids ("g..."), cheaply filtered before copying. */
    if (((const char *)v)[0] != 'g')
        return;
    if ((it = calloc(1, sizeof(*it))) == NULL)
        return;
    it->kind = GW_ITEM_RESPONSE;
    memcpy(it->cid, v, len);
    it->op = -1;
    for (int op = 0; op < KCHAT_OP__COUNT; op++)
        if (!strcmp(topic, kchat_op_response_topic((kchat_op)op)))
            it->op = op;
    if ((it->data = malloc(m->len + 1)) == NULL) {
        free(it);
        return;
    }
    memcpy(it->data, m->payload, m->len);
    it->data[m->len] = '\0';
    it->len = m->len;
    kchat__gw_push(gw, it);
}

/* Find every topic's partition count and its end offsets, then assign. */
static int consumer_assign(kchat_gateway *gw, char *errstr, size_t len)
{
    const char *topics[KCHAT_OP__COUNT + 1];
    int n_topics = 0, rc = KCHAT_EKAFKA;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *parts;
    rd_kafka_resp_err_t err;

    for (int op = 0; op < KCHAT_OP__COUNT; op++)
        topics[n_topics++] = kchat_op_response_topic((kchat_op)op);
    topics[n_topics++] = KCHAT_TOPIC_EVENTS;
    if ((err = rd_kafka_metadata(gw->consumer, 1, NULL, &md, 10000)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, len, "metadata: %s", rd_kafka_err2str(err));
        return KCHAT_EKAFKA;
    }
    parts = rd_kafka_topic_partition_list_new(64);
    for (int i = 0; i < n_topics; i++) {
        const struct rd_kafka_metadata_topic *t = NULL;
        for (int j = 0; j < md->topic_cnt; j++)
            if (!strcmp(md->topics[j].topic, topics[i]))
                t = &md->topics[j];
        if (t == NULL || t->partition_cnt <= 0) {
            snprintf(errstr, len, "topic %s is missing", topics[i]);
            goto out;
        }
        if (!strcmp(topics[i], KCHAT_TOPIC_EVENTS)) {
            gw->event_partitions = t->partition_cnt;
            free(gw->events_next);
            gw->events_next = calloc((size_t)t->partition_cnt, sizeof(int64_t));
            if (gw->events_next == NULL) {
                rc = KCHAT_ENOMEM;
                goto out;
            }
        }
        for (int p = 0; p < t->partition_cnt; p++) {
            int64_t lo = 0, hi = 0;
            err = rd_kafka_query_watermark_offsets(gw->consumer, topics[i], p, &lo, &hi, 10000);
            if (err) {
                snprintf(errstr, len, "offsets of %s [%d]: %s", topics[i], p,
                         rd_kafka_err2str(err));
                goto out;
            }
            rd_kafka_topic_partition_list_add(parts, topics[i], p)->offset = hi;
            if (!strcmp(topics[i], KCHAT_TOPIC_EVENTS))
                gw->events_next[p] = hi;
        }
    }
    if ((err = rd_kafka_assign(gw->consumer, parts)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, len, "assign: %s", rd_kafka_err2str(err));
        goto out;
    }
    rc = KCHAT_OK;
out:
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_metadata_destroy(md);
    return rc;
}

static void *kafka_main(void *arg)
{
    kchat_gateway *gw = arg;
    char errstr[512];
    int parts = 0;

    while (!atomic_load(&gw->stopping)) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err;
        errstr[0] = '\0';
        /* A quick reachability probe first: kchat_topics_ensure() blocks for
         * up to 30 s, which would hold up a stop. */
        err = rd_kafka_metadata(gw->producer, 0, NULL, &md, 1000);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(errstr, sizeof(errstr), "%s", rd_kafka_err2str(err));
        } else {
            rd_kafka_metadata_destroy(md);
            if (kchat_topics_ensure(gw->producer, gw->cfg->partitions, gw->cfg->replication,
                                    gw->cfg->login_retention_ms, &parts, errstr,
                                    sizeof(errstr)) == KCHAT_OK &&
                consumer_assign(gw, errstr, sizeof(errstr)) == KCHAT_OK)
                break;
        }
        fprintf(stderr, "kchat gateway: Kafka not ready (%s); retrying\n", errstr);
        for (int i = 0; i < 10 && !atomic_load(&gw->stopping); i++)
            usleep(100 * 1000);
    }
    if (!atomic_load(&gw->stopping)) {
        pthread_mutex_lock(&gw->lock);
        atomic_store(&gw->kafka_down, false);
        atomic_store(&gw->ready, true);
        pthread_cond_broadcast(&gw->ready_cond);
        pthread_mutex_unlock(&gw->lock);
    }
    while (!atomic_load(&gw->stopping)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(gw->consumer, 50);
        rd_kafka_poll(gw->producer, 0);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            atomic_store(&gw->kafka_down, false);
            handle_record(gw, m);
        }
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

/* ---- catch-up of one resumed stream ---- */

struct catchup {
    kchat_gateway *gw;
    uint64_t stream_id;
    char user[72];
    int32_t partition;
    int64_t from, to;
};

static void *catchup_main(void *arg)
{
    struct catchup *c = arg;
    kchat_gateway *gw = c->gw;
    char errstr[256];
    rd_kafka_conf_t *conf = kafka_conf(gw, errstr, sizeof(errstr));
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *parts;
    double deadline = kchat__gw_now() + 10.0;
    bool ok = false;
    size_t ulen = strlen(c->user);
    gw_item *it;

    if (conf == NULL)
        goto done;
    consumer_conf(conf, true);
    fetch_wait_conf(gw, conf, 1000);   /* the gateway is ready: known at once */
    if ((rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr))) == NULL) {
        rd_kafka_conf_destroy(conf);
        goto done;
    }
    rd_kafka_poll_set_consumer(rk);
    parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, KCHAT_TOPIC_EVENTS, c->partition)->offset = c->from;
    rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    while (!atomic_load(&gw->stopping) && kchat__gw_now() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            bool end = m->offset >= c->to;
            rd_kafka_message_destroy(m);
            if (end) {
                ok = true;
                break;
            }
            continue;
        }
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->offset >= c->to) {
            rd_kafka_message_destroy(m);
            ok = true;
            break;
        }
        if (m->key_len == ulen && !memcmp(m->key, c->user, ulen) &&
            (it = kchat__gw_event_item(m, GW_ITEM_CATCHUP)) != NULL) {
            it->stream_id = c->stream_id;
            kchat__gw_push(gw, it);
        }
        if (m->offset + 1 >= c->to) {
            rd_kafka_message_destroy(m);
            ok = true;
            break;
        }
        rd_kafka_message_destroy(m);
    }
done:
    if ((it = calloc(1, sizeof(*it))) != NULL) {
        it->kind = GW_ITEM_CATCHUP_DONE;
        it->stream_id = c->stream_id;
        it->ok = ok;
        kchat__gw_push(gw, it);
    }
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    free(c);
    atomic_fetch_sub(&gw->catchups, 1);
    return NULL;
}

int kchat__gw_catchup_start(kchat_gateway *gw, uint64_t stream_id, const char *user,
                            int32_t partition, int64_t from, int64_t to)
{
    struct catchup *c = calloc(1, sizeof(*c));
    pthread_t t;

    if (c == NULL)
        return KCHAT_ENOMEM;
    c->gw = gw;
    c->stream_id = stream_id;
    snprintf(c->user, sizeof(c->user), "%s", user);
    c->partition = partition;
    c->from = from;
    c->to = to;
    atomic_fetch_add(&gw->catchups, 1);
    if (pthread_create(&t, NULL, catchup_main, c) != 0) {
        atomic_fetch_sub(&gw->catchups, 1);
        free(c);
        return KCHAT_ENOMEM;
    }
    pthread_detach(t);
    return KCHAT_OK;
}

/* ---- life cycle ---- */

#define ACCEPT_PAUSE_MS 100

static void accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evconnlistener_enable(arg);
}

static void accept_error(struct evconnlistener *lev, void *arg)
{
    static atomic_long last_log;
    struct timeval pause = {0, ACCEPT_PAUSE_MS * 1000};
    long now = (long)time(NULL);
    int err = EVUTIL_SOCKET_ERROR();

    (void)arg;
    if (atomic_exchange(&last_log, now) != now)
        fprintf(stderr, "kchat gateway: cannot accept connections: %s; pausing accepts for "
                        "%d ms\n", evutil_socket_error_to_string(err), ACCEPT_PAUSE_MS);
    evconnlistener_disable(lev);
    event_base_once(evconnlistener_get_base(lev), -1, EV_TIMEOUT, accept_resume, lev, &pause);
}

/* Raise the descriptor limit to its hard limit and keep the stream cap
 * below it, with room for Kafka sockets, files and ordinary calls. */
static void fit_descriptor_limit(kchat_gateway *gw)
{
    struct rlimit rl;
    long room;

    gw->sse_max_total = gw->cfg->sse_max_total;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    room = rl.rlim_cur == RLIM_INFINITY ? (long)gw->sse_max_total + 512 : (long)rl.rlim_cur;
    room -= 512;
    if (room < 16)
        room = 16;
    if (room < gw->sse_max_total) {
        fprintf(stderr, "kchat gateway: %ld open files allowed: at most %ld event streams "
                        "(not %d)\n", (long)rl.rlim_cur, room, gw->sse_max_total);
        gw->sse_max_total = (int)room;
    }
}

static int bind_http(kchat_gateway *gw, char *errstr, size_t len)
{
    char host[256];
    const char *colon = strrchr(gw->cfg->http, ':');
    long port;
    char *end;
    struct evhttp_bound_socket *bs;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char shown[INET6_ADDRSTRLEN];

    if (colon == NULL || (size_t)(colon - gw->cfg->http) >= sizeof(host)) {
        snprintf(errstr, len, "http must be host:port, got \"%s\"", gw->cfg->http);
        return KCHAT_ECONFIG;
    }
    memcpy(host, gw->cfg->http, (size_t)(colon - gw->cfg->http));
    host[colon - gw->cfg->http] = '\0';
    port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || end == colon + 1 || port < 0 || port > 65535) {
        snprintf(errstr, len, "http must be host:port, got \"%s\"", gw->cfg->http);
        return KCHAT_ECONFIG;
    }
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    if ((bs = evhttp_bind_socket_with_handle(gw->http, host[0] ? host : "0.0.0.0",
                                             (ev_uint16_t)port)) == NULL) {
        snprintf(errstr, len, "cannot listen on %s: %s", gw->cfg->http, strerror(errno));
        return KCHAT_EIO;
    }
    /* Out of descriptors, accept() fails at once and libevent would retry
     * (and log) in a tight loop: pause accepting for a moment instead. */
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(bs), accept_error);
    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl) != 0) {
        snprintf(errstr, len, "getsockname: %s", strerror(errno));
        return KCHAT_EIO;
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, shown, sizeof(shown));
        snprintf(gw->url, sizeof(gw->url), "http://[%s]:%u/", shown, ntohs(s6->sin6_port));
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        if (s4->sin_addr.s_addr == htonl(INADDR_ANY))
            snprintf(shown, sizeof(shown), "127.0.0.1");
        else
            inet_ntop(AF_INET, &s4->sin_addr, shown, sizeof(shown));
        snprintf(gw->url, sizeof(gw->url), "http://%s:%u/", shown, ntohs(s4->sin_port));
    }
    return KCHAT_OK;
}

static void use_pthreads(void)
{
    evthread_use_pthreads();
}

int kchat_gateway_start(const kchat_config *cfg, const char *brokers,
                        kchat_gateway **out, char *errstr, size_t errstr_size)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    kchat_gateway *gw;
    rd_kafka_conf_t *conf;
    char linger_timeout[32];
    struct timeval tick = {2, 0};
    int rc = KCHAT_ENOMEM;

    *out = NULL;
    pthread_once(&once, use_pthreads);
    if (sodium_init() < 0) {
        snprintf(errstr, errstr_size, "libsodium failed to initialise");
        return KCHAT_ECRYPTO;
    }
    if ((gw = calloc(1, sizeof(*gw))) == NULL)
        return KCHAT_ENOMEM;
    gw->cfg = cfg;
    pthread_mutex_init(&gw->lock, NULL);
    pthread_cond_init(&gw->ready_cond, NULL);
    gw->next_stream_id = 1;
    if ((gw->brokers = strdup(brokers)) == NULL ||
        (gw->pending = calloc((size_t)cfg->max_pending, sizeof(gw_pending))) == NULL)
        goto err_free;
    gw->n_pending = 0;
    snprintf(errstr, errstr_size, "cannot set up libevent");
    if ((gw->base = event_base_new()) == NULL || (gw->http = evhttp_new(gw->base)) == NULL ||
        (gw->notify_ev = event_new(gw->base, -1, 0, notify_cb, gw)) == NULL ||
        (gw->stop_ev = event_new(gw->base, -1, 0, stop_cb, gw)) == NULL ||
        (gw->tick_ev = event_new(gw->base, -1, EV_PERSIST, tick_cb, gw)) == NULL)
        goto err_free;
    event_add(gw->tick_ev, &tick);
    kchat__gw_http_setup(gw);
    fit_descriptor_limit(gw);
    if ((rc = bind_http(gw, errstr, errstr_size)) != KCHAT_OK)
        goto err_free;

    rc = KCHAT_ECONFIG;
    if ((conf = kafka_conf(gw, errstr, errstr_size)) == NULL)
        goto err_free;
    snprintf(linger_timeout, sizeof(linger_timeout), "%d", cfg->http_timeout_ms + 1000);
    if (rd_kafka_conf_set(conf, "partitioner", "murmur2_random", errstr, errstr_size) ||
        rd_kafka_conf_set(conf, "linger.ms", "1", errstr, errstr_size) ||
        rd_kafka_conf_set(conf, "message.timeout.ms", linger_timeout, errstr, errstr_size)) {
        rd_kafka_conf_destroy(conf);
        goto err_free;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rc = KCHAT_EKAFKA;
    if ((gw->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size)) == NULL) {
        rd_kafka_conf_destroy(conf);
        goto err_free;
    }
    rc = KCHAT_ECONFIG;
    if ((conf = kafka_conf(gw, errstr, errstr_size)) == NULL)
        goto err_free;
    consumer_conf(conf, false);
    fetch_wait_conf(gw, conf, 2000);   /* Kafka may not be up yet: then Kafka's wait */
    rc = KCHAT_EKAFKA;
    if ((gw->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size)) == NULL) {
        rd_kafka_conf_destroy(conf);
        goto err_free;
    }
    rd_kafka_poll_set_consumer(gw->consumer);

    rc = KCHAT_ENOMEM;
    snprintf(errstr, errstr_size, "cannot start the gateway threads");
    if (pthread_create(&gw->loop_thread, NULL, loop_main, gw) != 0)
        goto err_free;
    gw->loop_started = true;
    if (pthread_create(&gw->kafka_thread, NULL, kafka_main, gw) != 0) {
        kchat_gateway_stop(gw);
        return KCHAT_ENOMEM;
    }
    gw->kafka_started = true;
    errstr[0] = '\0';
    *out = gw;
    return KCHAT_OK;
err_free:
    kchat_gateway_stop(gw);
    return rc;
}

int kchat_gateway_wait_ready(kchat_gateway *gw, int timeout_ms)
{
    struct timespec ts;
    int rc = 0;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (timeout_ms >= 0) {
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&gw->lock);
    while (!atomic_load(&gw->ready) && rc == 0)
        rc = timeout_ms < 0 ? pthread_cond_wait(&gw->ready_cond, &gw->lock)
                            : pthread_cond_timedwait(&gw->ready_cond, &gw->lock, &ts);
    pthread_mutex_unlock(&gw->lock);
    return atomic_load(&gw->ready) ? KCHAT_OK : KCHAT_ETIMEDOUT;
}

const char *kchat_gateway_url(const kchat_gateway *gw)
{
    return gw->url;
}

void kchat_gateway_stop(kchat_gateway *gw)
{
    gw_item *it, *next;

    if (gw == NULL)
        return;
    atomic_store(&gw->stopping, true);
    if (gw->loop_started) {
        event_active(gw->stop_ev, EV_READ, 0);
        pthread_join(gw->loop_thread, NULL);
    }
    if (gw->kafka_started)
        pthread_join(gw->kafka_thread, NULL);
    for (int i = 0; i < 100 && atomic_load(&gw->catchups) > 0; i++)
        usleep(50 * 1000);
    if (gw->consumer) {
        rd_kafka_consumer_close(gw->consumer);
        rd_kafka_destroy(gw->consumer);
    }
    if (gw->producer) {
        rd_kafka_flush(gw->producer, 2000);
        rd_kafka_destroy(gw->producer);
    }
    if (atomic_load(&gw->catchups) > 0)
        return; /* a catch-up thread is stuck: leak rather than crash */
    for (it = gw->q_head; it; it = next) {
        next = it->next;
        free(it->data);
        free(it);
    }
    if (!gw->loop_started && gw->http)
        kchat__gw_shutdown_http(gw);
    if (gw->http)
        evhttp_free(gw->http);
    kchat__gw_deadline_release(gw);
    if (gw->notify_ev)
        event_free(gw->notify_ev);
    if (gw->stop_ev)
        event_free(gw->stop_ev);
    if (gw->tick_ev)
        event_free(gw->tick_ev);
    if (gw->base)
        event_base_free(gw->base);
    free(gw->pending);
    free(gw->events_next);
    free(gw->brokers);
    pthread_mutex_destroy(&gw->lock);
    pthread_cond_destroy(&gw->ready_cond);
    free(gw);
}

void kchat_gateway_set_metrics(kchat_gateway *gw, kchat_metrics_fn fn, void *arg)
{
    atomic_store(&gw->metrics_arg, arg);
    atomic_store(&gw->metrics_fn, fn);
}
