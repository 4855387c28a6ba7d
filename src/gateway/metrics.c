/*
 * The gateway's operations endpoints, on the loop thread: GET /healthz,
 * GET /readyz and GET /metrics (Prometheus text), and the counting of
 * every reply that /metrics shows. The plain counters come from the
 * GW_COUNTERS table of gateway_int.h; requests by route and status, the
 * latency histogram and the gauges are written here.
 */
#include "gateway/gateway_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/buffer.h>
#include <jansson.h>

static const char *const route_names[] = {
#define GW__N(n) #n,
    GW_ROUTES(GW__N)
#undef GW__N
};

/* The statuses counted by name; any other counts as "other". */
static const int status_codes[GW_N_STATUS - 1] = {200, 201, 204, 304, 400, 401, 403, 404,
                                                  405, 409, 413, 415, 429, 500, 503, 504};
/* Upper bounds of the latency buckets, in seconds; then +Inf. */
static const double buckets[GW_N_BUCKETS - 1] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                 0.1,   0.25,   0.5,   1,    5};

void kchat__gw_count(kchat_gateway *gw, int route, int code, double started)
{
    int i;

    for (i = 0; i < GW_N_STATUS - 1 && status_codes[i] != code; i++)
        ;
    gw->requests[route][i]++;
    if (started > 0) {
        double d = kchat__gw_now() - started;
        int b;
        for (b = 0; b < GW_N_BUCKETS - 1 && d > buckets[b]; b++)
            ;
        gw->latency[b]++;
        gw->latency_sum += d;
        gw->latency_count++;
    }
}

void kchat__gw_healthz(kchat_gateway *gw, struct evhttp_request *req, double started)
{
    json_t *v = json_pack("{s:s}", "status", "ok");

    kchat__gw_reply_json(gw, req, GW_ROUTE_healthz, 200, v, started);
    json_decref(v);
}

void kchat__gw_readyz(kchat_gateway *gw, struct evhttp_request *req, double started)
{
    bool ready = atomic_load(&gw->ready);
    json_t *v = ready ? json_pack("{s:s}", "status", "ready")
                      : json_pack("{s:s,s:s,s:s}", "status", "starting", "errorCode",
                                  "UNAVAILABLE", "errorMessage",
                                  "Kafka is not reachable or the topics do not exist yet.");

    kchat__gw_reply_json(gw, req, GW_ROUTE_readyz, ready ? 200 : 503, v, started);
    json_decref(v);
}

/* ---- GET /metrics ---- */

/* The HELP and TYPE lines of metric @p name. */
static void metric_head(struct evbuffer *b, const char *name, const char *help, const char *type)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* kchat_gateway_http_requests_total{route, status}, for the pairs seen.
 * @locality loop thread */
static void write_requests(const kchat_gateway *gw, struct evbuffer *b)
{
    metric_head(b, "kchat_gateway_http_requests_total",
                "HTTP requests answered, by route and status.", "counter");
    for (int r = 0; r < GW_ROUTE__COUNT; r++)
        for (int i = 0; i < GW_N_STATUS; i++) {
            char code[16];
            if (gw->requests[r][i] == 0)
                continue;
            if (i == GW_N_STATUS - 1)
                snprintf(code, sizeof(code), "other");
            else
                snprintf(code, sizeof(code), "%d", status_codes[i]);
            evbuffer_add_printf(b, "kchat_gateway_http_requests_total{route=\"%s\",status=\"%s\"} "
                                   "%" PRIu64 "\n", route_names[r], code, gw->requests[r][i]);
        }
}

/* kchat_gateway_http_request_duration_seconds, a histogram.
 * @locality loop thread */
static void write_latency(const kchat_gateway *gw, struct evbuffer *b)
{
    uint64_t cum = 0;

    metric_head(b, "kchat_gateway_http_request_duration_seconds",
                "Time from request to answer (event streams: to the stream's start).",
                "histogram");
    for (int i = 0; i < GW_N_BUCKETS; i++) {
        cum += gw->latency[i];
        if (i < GW_N_BUCKETS - 1)
            evbuffer_add_printf(b, "kchat_gateway_http_request_duration_seconds_bucket"
                                   "{le=\"%g\"} %" PRIu64 "\n", buckets[i], cum);
        else
            evbuffer_add_printf(b, "kchat_gateway_http_request_duration_seconds_bucket"
                                   "{le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    evbuffer_add_printf(b, "kchat_gateway_http_request_duration_seconds_sum %.6f\n"
                           "kchat_gateway_http_request_duration_seconds_count %" PRIu64 "\n",
                        gw->latency_sum, gw->latency_count);
}

/* Every counter of GW_COUNTERS. @locality loop thread */
static void write_counters(const kchat_gateway *gw, struct evbuffer *b)
{
#define GW__COUNTER_WRITE(field, name, help)                                    \
    metric_head(b, name, help, "counter");                                     \
    evbuffer_add_printf(b, name " %" PRIu64 "\n", gw->counters.field);
    GW_COUNTERS(GW__COUNTER_WRITE)
#undef GW__COUNTER_WRITE
}

/* kchat_gateway_consumer_lag, from librdkafka's cached high watermarks (no
 * broker round trip); nothing if the assignment cannot be read.
 * @locality loop thread (librdkafka's calls are thread-safe) */
static void write_lag(kchat_gateway *gw, struct evbuffer *b)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    int64_t lag = 0;

    if (rd_kafka_assignment(gw->consumer, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_position(gw->consumer, parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < parts->cnt; i++) {
            int64_t lo = 0, hi = 0;
            if (parts->elems[i].offset >= 0 &&
                rd_kafka_get_watermark_offsets(gw->consumer, parts->elems[i].topic,
                                               parts->elems[i].partition, &lo, &hi) ==
                    RD_KAFKA_RESP_ERR_NO_ERROR && hi > parts->elems[i].offset)
                lag += hi - parts->elems[i].offset;
        }
        metric_head(b, "kchat_gateway_consumer_lag", "Records of the response topics and "
                    "chat-events not read yet (cached watermarks).", "gauge");
        evbuffer_add_printf(b, "kchat_gateway_consumer_lag %" PRId64 "\n", lag);
    }
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
}

/* What kchat_gateway_set_metrics() asked for, if anything: called here, on
 * the loop thread, as gateway.h promises.
 * @locality loop thread */
static void write_extra(kchat_gateway *gw, struct evbuffer *b)
{
    kchat_metrics_fn fn = atomic_load(&gw->metrics_fn);
    char *text = NULL;
    size_t len = 0;
    FILE *out;

    if (fn != NULL && (out = open_memstream(&text, &len)) != NULL) {
        fn(atomic_load(&gw->metrics_arg), out);
        fclose(out);
        evbuffer_add(b, text, len);
        free(text);
    }
}

void kchat__gw_metrics(kchat_gateway *gw, struct evhttp_request *req, double started)
{
    struct evbuffer *b = evbuffer_new();
    bool ready = atomic_load(&gw->ready);

    if (b == NULL)
        return;
    write_requests(gw, b);
    write_latency(gw, b);
    metric_head(b, "kchat_gateway_processes", "Processes serving this gateway's address "
                "(--gateway-processes); each answers /metrics for itself alone.", "gauge");
    evbuffer_add_printf(b, "kchat_gateway_processes %d\n", gw->cfg->gateway_processes);
    metric_head(b, "kchat_gateway_process_index", "Which of them answered, from 0.", "gauge");
    evbuffer_add_printf(b, "kchat_gateway_process_index %d\n", gw->process);
    metric_head(b, "kchat_gateway_sse_streams", "Open event streams.", "gauge");
    evbuffer_add_printf(b, "kchat_gateway_sse_streams %d\n", gw->n_streams);
    metric_head(b, "kchat_gateway_pending_replies", "Calls waiting for the backend.", "gauge");
    evbuffer_add_printf(b, "kchat_gateway_pending_replies %d\n", gw->n_pending);
    metric_head(b, "kchat_gateway_catchup_consumers",
                "Kafka consumers of catch-up readers now (at most --catchup-max).", "gauge");
    evbuffer_add_printf(b, "kchat_gateway_catchup_consumers %d\n",
                        atomic_load(&gw->cu_consumers));
    metric_head(b, "kchat_gateway_catchup_consumers_peak",
                "The most Kafka consumers of catch-up readers there were at once.", "gauge");
    evbuffer_add_printf(b, "kchat_gateway_catchup_consumers_peak %d\n",
                        atomic_load(&gw->cu_consumers_peak));
    metric_head(b, "kchat_gateway_presence_users", "Users online at this gateway: a stream "
                "open, or the last closed less than 5 s ago.", "gauge");
    evbuffer_add_printf(b, "kchat_gateway_presence_users %d\n", gw->presence_users);
    write_counters(gw, b);
    metric_head(b, "kchat_gateway_presence_failed_total",
                "Presence records Kafka did not take (delivery failed).", "counter");
    evbuffer_add_printf(b, "kchat_gateway_presence_failed_total %" PRIu64 "\n",
                        (uint64_t)atomic_load(&gw->presence_failed));
    metric_head(b, "kchat_gateway_records_refused_total", "Responses and events dropped because "
                "their kchat-mac is missing or wrong, and sealed answers that did not open "
                "(--secret-file).", "counter");
    evbuffer_add_printf(b, "kchat_gateway_records_refused_total %" PRIu64 "\n",
                        kchat_auth_rejected(gw->auth));
    metric_head(b, "kchat_gateway_ready", "1 once Kafka is reachable and the topics exist.",
                "gauge");
    evbuffer_add_printf(b, "kchat_gateway_ready %d\n", ready ? 1 : 0);
    if (ready)
        write_lag(gw, b);
    write_extra(gw, b);
    kchat__gw_reply(gw, req, GW_ROUTE_metrics, 200, "text/plain; version=0.0.4; charset=utf-8",
                    b, started);
    evbuffer_free(b);
}
