/*
 * The backend's life cycle (include/kchat/backend.h): start-up in named
 * steps, the stop, counters and metrics. What the backend does between
 * the two is in the files actors.h lists, in the order a chat send passes
 * through them.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "actors.h"
#include "changelog.h"
#include "replicas.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

/* How long confirmed outbox records wait to be deleted together: a tick
 * of the workers' upkeep, longer than the records of one transaction take
 * to be confirmed one after another (docs/bench.md, "Outbox pages"). */
#define OUTBOX_PRUNE_US 20000

static const double commit_bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
                                       0.2, 0.5, 1, 2};
static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};
static const double stage_bounds[] = {0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
                                      0.1, 0.2, 0.5, 1, 2, 5};
static const char *const stage_names[KCHAT__STAGE_COUNT] = {
    [KCHAT__STAGE_READ] = "read", [KCHAT__STAGE_APPLY] = "apply",
    [KCHAT__STAGE_COMMIT] = "commit", [KCHAT__STAGE_RELEASE] = "release",
    [KCHAT__STAGE_ACK] = "ack",
};

/* ---- helpers of the other files ---- */

int64_t kchat__monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void kchat__sleep_ms(int ms)
{
    kchat__sleep_us((int64_t)ms * 1000);
}

void kchat__sleep_us(int64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000L};
    nanosleep(&ts, NULL);
}

rd_kafka_conf_t *kchat__kafka_conf(const kchat_backend *be, char *errstr, size_t len)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    if (rd_kafka_conf_set(conf, "bootstrap.servers", be->bootstraps, errstr, len) ||
        rd_kafka_conf_set(conf, "client.id", "kchat-serve", errstr, len))
        goto err_destroy;
    for (int i = 0; i < be->cfg->n_x; i++)
        if (kchat_kafka_conf_kv(conf, be->cfg->x[i], errstr, len) != KCHAT_OK)
            goto err_destroy;
    return conf;
err_destroy:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* ---- start-up steps, in order ---- */

/* The backend with its settings, nothing started.
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
static int backend_new(const kchat_config *cfg, kchat_backend **out, char *errstr, size_t len)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    pthread_rwlockattr_t rwa;
    kchat_backend *be;

    if ((be = calloc(1, sizeof(*be))) == NULL)
        return KCHAT_ENOMEM;
    /* Writer first: workers produce all the time, and replacing a failed
     * producer must not wait behind them. */
    pthread_rwlockattr_init(&rwa);
    pthread_rwlockattr_setkind_np(&rwa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&be->producer_lock, &rwa);
    pthread_rwlockattr_destroy(&rwa);
    be->cfg = cfg;
    be->outbox_prune_us = OUTBOX_PRUNE_US;
    be->commit_seconds.bounds = commit_bounds;
    be->commit_seconds.n_bounds = sizeof(commit_bounds) / sizeof(commit_bounds[0]);
    be->batch_records.bounds = batch_bounds;
    be->batch_records.n_bounds = sizeof(batch_bounds) / sizeof(batch_bounds[0]);
    for (int i = 0; i < KCHAT__STAGE_COUNT; i++) {
        be->stage[i].bounds = stage_bounds;
        be->stage[i].n_bounds = sizeof(stage_bounds) / sizeof(stage_bounds[0]);
    }
    be->events_fmt = strcmp(cfg->events_format, "msgpack") ? KCHAT_FMT_JSON : KCHAT_FMT_MSGPACK;
    be->n_workers = cfg->workers > 0 ? (unsigned)cfg->workers : (unsigned)(ncpu > 0 ? ncpu : 1);
    if (crypto_pwhash_str(be->dummy_hash, "not a password", 14, (unsigned long long)cfg->pwhash_ops,
                          (size_t)cfg->pwhash_mem) != 0) {
        snprintf(errstr, len, "cannot hash with pwhash-ops %ld, pwhash-mem %ld",
                 cfg->pwhash_ops, cfg->pwhash_mem);
        pthread_rwlock_destroy(&be->producer_lock);
        free(be);
        return KCHAT_ECONFIG;
    }
    if (cfg->secret_file[0] != '\0') {
        int rc = kchat_auth_load(cfg->secret_file, &be->auth, errstr, len);
        if (rc != KCHAT_OK) {
            pthread_rwlock_destroy(&be->producer_lock);
            free(be);
            return rc;
        }
    }
    pthread_mutex_init(&be->wake_lock, NULL);
    /* Records of the embedded broker die with the process: a changelog
     * there would restore nothing. */
    be->changelog = !strcmp(cfg->changelog, "on") ||
                    (!strcmp(cfg->changelog, "auto") && cfg->brokers[0] != '\0');
    *out = be;
    return KCHAT_OK;
}

/* The bootstrap servers: the configured brokers, or those of an embedded
 * broker started here when there are none.
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
static int broker_connect(kchat_backend *be, char *errstr, size_t len)
{
    const kchat_config *cfg = be->cfg;
    int rc;

    if (cfg->brokers[0] == '\0') {
        if ((rc = kchat_embedded_start(cfg->embedded_brokers, cfg->partitions, &be->embedded,
                                       errstr, len)) != KCHAT_OK)
            return rc;
        be->bootstraps = strdup(kchat_embedded_bootstraps(be->embedded));
    } else {
        be->bootstraps = strdup(cfg->brokers);
    }
    if (be->bootstraps == NULL) {
        kchat_embedded_stop(be->embedded);
        be->embedded = NULL;
        return KCHAT_ENOMEM;
    }
    return KCHAT_OK;
}

/* Undo broker_connect().
 * @locality the thread in kchat_backend_start() or kchat_backend_stop() */
static void broker_disconnect(kchat_backend *be)
{
    kchat_embedded_stop(be->embedded);
    be->embedded = NULL;
    free(be->bootstraps);
    be->bootstraps = NULL;
}

/* Make sure every topic exists; their partition count is the shard count.
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
static int topics_ensure(kchat_backend *be, char *errstr, size_t len)
{
    const kchat_config *cfg = be->cfg;
    int rc;

    pthread_rwlock_rdlock(&be->producer_lock);   /* the poller may replace it */
    rc = kchat_topics_ensure(be->producer, cfg->partitions, cfg->replication,
                             cfg->login_retention_ms, &be->partitions, errstr, len);
    pthread_rwlock_unlock(&be->producer_lock);
    if (rc != KCHAT_OK)
        return rc;
    if (be->partitions > KCHAT__MAX_SHARDS) {
        snprintf(errstr, len, "at most %d partitions are supported", KCHAT__MAX_SHARDS);
        return KCHAT_ECONFIG;
    }
    if (be->partitions != cfg->partitions)
        fprintf(stderr, "kchat: the topics exist with %d partitions (not %d): using %d shards\n",
                be->partitions, cfg->partitions, be->partitions);
    return KCHAT_OK;
}

/* Before consuming, without a changelog: every shard (all owned) produces
 * its outbox again. With one, each shard does so when acquired
 * (ownership.c).
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
static int shards_replay(kchat_backend *be, char *errstr, size_t len)
{
    int rc;

    kchat__shards_own_all(be);
    for (int p = 0; !be->changelog && p < be->partitions; p++)
        if ((rc = kchat__outbox_replay(be, &be->shards[p])) != KCHAT_OK) {
            snprintf(errstr, len, "shard %d: outbox replay: %s", p, kchat_strerror(rc));
            return rc;
        }
    return KCHAT_OK;
}

/* The shards, ready to consume: the data directory open, the stored
 * offsets checked against the cluster (its id in be->cluster_id), the
 * workers' scratch allocated, the room summaries published once if the
 * replica never had them, every outbox produced again (without a
 * changelog; with one, each shard's when it is acquired). On error what
 * was done stays for producer_and_shards_stop().
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
static int shards_start(kchat_backend *be, char *errstr, size_t len)
{
    int rc;

    if ((rc = kchat__datadir_open(be, errstr, len)) != KCHAT_OK ||
        (rc = kchat__workers_new(be)) != KCHAT_OK ||
        (rc = kchat__datadir_check_cluster(be, errstr, len)) != KCHAT_OK ||
        (rc = kchat__room_summaries_upgrade(be, errstr, len)) != KCHAT_OK)
        return rc;
    return shards_replay(be, errstr, len);
}

/* Stop the consumer (its workers apply and commit what is in the rings);
 * the delivery reports wake no worker from then on.
 * @locality the thread in kchat_backend_start() or kchat_backend_stop() */
static void consumer_stop(kchat_backend *be)
{
    pthread_mutex_lock(&be->wake_lock);
    be->wake = NULL;
    pthread_mutex_unlock(&be->wake_lock);
    kchat_consumer_stop(be->consumer);
    be->consumer = NULL;
}

/* Ready means assigned: until then nothing is consumed.
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
static int consumer_wait_ready(kchat_backend *be, char *errstr, size_t len)
{
    /* With a changelog the first assignment restores what it gives. */
    int limit_s = be->changelog ? 600 : 30;

    for (int i = 0; i < limit_s * 20 && !kchat_consumer_ready(be->consumer); i++)
        kchat__sleep_ms(50);
    if (kchat_consumer_ready(be->consumer))
        return KCHAT_OK;
    snprintf(errstr, len, "no partitions were assigned within %d s (group %s)", limit_s,
             kchat_config_group(be->cfg));
    return KCHAT_EKAFKA;
}

/* Stop and free what follows the producer: flush it, forget what Kafka
 * confirmed, close it, then the workers and the data directory (the
 * producer's delivery reports use the shards, so they close after it).
 * @p final: when not NULL, the counters after the flush.
 * @locality the thread in kchat_backend_start() or kchat_backend_stop(),
 *           once no worker, directory or consumer thread runs */
static void producer_and_shards_stop(kchat_backend *be, kchat_backend_stats *final)
{
    atomic_store(&be->stopping, true);
    kchat__producer_flush(be);
    kchat__workers_idle(be);
    for (int p = 0; be->shards != NULL && p < be->partitions; p++)
        kchat__cl_txn_close(be, &be->shards[p]);   /* those the consumer did not release */
    if (final != NULL)
        kchat_backend_get_stats(be, final);
    kchat__producer_close(be);
    kchat__workers_free(be);
    kchat__datadir_close(be);
}

/* Each step undoes itself when it fails; a label undoes a step that
 * succeeded, falling through to those before it. */
int kchat_backend_start(const kchat_config *cfg, kchat_backend **out,
                        char *errstr, size_t errstr_size)
{
    kchat_backend *be;
    int rc;

    if (sodium_init() < 0) {
        snprintf(errstr, errstr_size, "libsodium failed to initialise");
        return KCHAT_ECRYPTO;
    }
    if ((rc = backend_new(cfg, &be, errstr, errstr_size)) != KCHAT_OK)
        return rc;
    do   /* this run's tag on the commands it numbers (commands_acks.c) */
        randombytes_buf(&be->run_id, sizeof(be->run_id));
    while (be->run_id == 0);
    if ((rc = broker_connect(be, errstr, errstr_size)) != KCHAT_OK)
        goto err_free_backend;
    if ((rc = kchat__producer_start(be, errstr, errstr_size)) != KCHAT_OK)
        goto err_disconnect_broker;
    /* The shards undo with the producer (producer_and_shards_stop()). */
    if ((rc = topics_ensure(be, errstr, errstr_size)) != KCHAT_OK ||
        (rc = shards_start(be, errstr, errstr_size)) != KCHAT_OK ||
        (rc = kchat__directory_start(be, errstr, errstr_size)) != KCHAT_OK)
        goto err_stop_producer;
    /* Nothing is answered from a replica that has not read what Kafka has. */
    if ((rc = kchat__directory_wait(be, errstr, errstr_size)) != KCHAT_OK ||
        (rc = kchat__consumer_start(be, be->mock_broker, errstr, errstr_size)) != KCHAT_OK)
        goto err_stop_directory;
    if ((rc = consumer_wait_ready(be, errstr, errstr_size)) != KCHAT_OK ||
        (rc = kchat__standby_start(be, errstr, errstr_size)) != KCHAT_OK)
        goto err_stop_consumer;
    if (be->auth == NULL)
        fprintf(stderr, "kchat: WARNING: no --secret-file: records are neither signed nor "
                        "checked, and anyone who can write kchat's topics can forge its "
                        "commands, answers and events (docs/security.md)\n");
    if (!cfg->session_check)
        fprintf(stderr, "kchat: WARNING: session check is OFF: any client can act as any "
                        "user. Use this only for the original front end.\n");
    *out = be;
    return KCHAT_OK;

err_stop_consumer:
    atomic_store(&be->closing, true);
    consumer_stop(be);
err_stop_directory:
    atomic_store(&be->stopping, true);
    kchat__directory_stop(be);
err_stop_producer:
    producer_and_shards_stop(be, NULL);
err_disconnect_broker:
    broker_disconnect(be);
err_free_backend:
    pthread_rwlock_destroy(&be->producer_lock);
    pthread_mutex_destroy(&be->wake_lock);
    kchat_auth_free(be->auth);
    free(be);
    return rc;
}

const char *kchat_backend_bootstraps(const kchat_backend *be)
{
    return be->bootstraps;
}

void kchat_backend_get_stats(kchat_backend *be, kchat_backend_stats *o)
{
#define STATS_COPY(field, metric, help, stop) o->field = atomic_load(&be->stats.field);
    KCHAT_BACKEND_COUNTERS(STATS_COPY)
#undef STATS_COPY
}

void kchat_backend_stats_line(const kchat_backend_stats *st, char *buf, size_t size)
{
    const struct { const char *fmt; uint64_t value; } parts[] = {
#define STOP_PART(field, metric, help, stop) {stop, st->field},
        KCHAT_BACKEND_COUNTERS(STOP_PART)
#undef STOP_PART
    };
    size_t len = 0;

    if (size == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]) && len < size; i++) {
        int n;

        if (parts[i].fmt == NULL)
            continue;
        /* The formats are string literals of KCHAT_BACKEND_COUNTERS, each
         * with one %llu; the compiler cannot see through the table. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        n = snprintf(buf + len, size - len, parts[i].fmt, (unsigned long long)parts[i].value);
#pragma GCC diagnostic pop
        if (n < 0)
            break;
        len += (size_t)n;
    }
}

/* The longest any worker went without finishing a batch or a tick, in ms.
 * @locality any thread */
static int64_t workers_stalled_ms(kchat_backend *be)
{
    int64_t now = kchat__monotonic_us() / 1000, stalled = 0;

    for (unsigned w = 0; be->workers && w < be->n_workers; w++) {
        int64_t idle = now - atomic_load(&be->workers[w].last_progress_ms);
        if (idle > stalled)
            stalled = idle;
    }
    return stalled;
}

void kchat_backend_metrics(kchat_backend *be, FILE *out)
{
    kchat_backend_stats st;
    kchat_consumer_stats cs = {0};

    kchat_backend_get_stats(be, &st);
#define COUNTER_WRITE(field, metric, help, stop) \
    kchat_metric_write(out, metric, "counter", help, (double)st.field);
    KCHAT_BACKEND_COUNTERS(COUNTER_WRITE)
#undef COUNTER_WRITE
    if (be->consumer)
        kchat_consumer_get_stats(be->consumer, &cs);
    kchat__ownership_metrics(be, out);
    kchat_metric_write(out, "kchat_consumed_total", "counter",
                       "Records read from the request topics.", (double)cs.consumed);
    kchat_metric_write(out, "kchat_consumer_renewals_total", "counter",
                       "Consumer handles replaced after a fatal error (a static member "
                       "fenced after its session timed out).", (double)cs.renewals);
    kchat_metric_write(out, "kchat_partition_pauses_total", "counter",
                       "Times a partition was paused because its ring was full.",
                       (double)cs.paused_events);
    kchat_metric_write(out, "kchat_partitions_paused", "gauge",
                       "Partitions paused right now.", (double)cs.paused_now);
    kchat_metric_write(out, "kchat_ring_fill_max", "gauge",
                       "Highest ring fill seen.", (double)cs.ring_fill_max);
    pthread_rwlock_rdlock(&be->producer_lock);
    kchat_metric_write(out, "kchat_producer_queue", "gauge",
                       "Records waiting in the producer.",
                       be->producer ? (double)rd_kafka_outq_len(be->producer) : 0);
    pthread_rwlock_unlock(&be->producer_lock);
    kchat_metric_write(out, "kchat_worker_stall_seconds", "gauge",
                       "Longest time any worker went without finishing a batch or a tick; "
                       "above a few seconds a worker is stuck.",
                       (double)workers_stalled_ms(be) / 1000);
    fprintf(out, "# HELP kchat_worker_busy_seconds_total Time each worker spent applying, "
            "committing and producing (its process() and idle() calls, fsync waits included); "
            "its rise per second of wall time is the share of the time it was busy.\n"
            "# TYPE kchat_worker_busy_seconds_total counter\n");
    for (unsigned i = 0; be->workers != NULL && i < be->n_workers; i++)
        fprintf(out, "kchat_worker_busy_seconds_total{worker=\"%u\"} %.6f\n", i,
                (double)atomic_load_explicit(&be->workers[i].busy_us, memory_order_relaxed) /
                    1e6);
    kchat_metric_write(out, "kchat_records_refused_total", "counter",
                       "Records dropped because their kchat-mac is missing or wrong, and sealed "
                       "requests or sessions that did not open (--secret-file).",
                       (double)kchat_auth_rejected(be->auth));
    kchat_hist_write(out, "kchat_commit_seconds", "Latency of one shard commit (fsync).", NULL,
                     &be->commit_seconds);
    kchat_hist_write(out, "kchat_batch_records", "Records applied per shard transaction.", NULL,
                     &be->batch_records);
    fprintf(out, "# HELP kchat_changelog_changes_total Changes handed to a changelog producer "
            "(again after a refusal too), by table and by op: put or delete.\n"
            "# TYPE kchat_changelog_changes_total counter\n");
    for (int t = 0; t < KCHAT_TBL__COUNT; t++)
        for (int del = 0; del < 2; del++)
            fprintf(out, "kchat_changelog_changes_total{table=\"%s\",op=\"%s\"} %llu\n",
                    kchat_store_table_name((kchat_table)t), del ? "delete" : "put",
                    (unsigned long long)atomic_load_explicit(&be->cl_changes[t][del],
                                                             memory_order_relaxed));
    for (int i = 0; i < KCHAT__STAGE_COUNT; i++) {
        char label[32];

        snprintf(label, sizeof(label), "stage=\"%s\"", stage_names[i]);
        kchat_hist_write(out, "kchat_stage_seconds", i == 0 ?
                         "Where a request waits, stage by stage: read (the record's timestamp "
                         "to its worker; wall clocks), apply (a shard batch), commit (its "
                         "fsync), release (commit to producer, behind the changelog), ack "
                         "(producer to Kafka's acknowledgement)." : NULL, label, &be->stage[i]);
    }
}

void kchat_backend_stop(kchat_backend *be, kchat_backend_stats *final)
{
    if (be == NULL)
        return;
    /* 1. stop reading; the workers apply and commit what is in the rings */
    atomic_store(&be->closing, true);
    kchat__standby_stop(be);
    consumer_stop(be);
    atomic_store(&be->stopping, true);
    kchat__directory_stop(be);
    /* 2. send what was committed; what does not make it is re-sent at start;
     * 3. forget what Kafka confirmed (the workers are gone: this thread owns
     *    the shards) */
    producer_and_shards_stop(be, final);
    broker_disconnect(be);
    pthread_rwlock_destroy(&be->producer_lock);
    pthread_mutex_destroy(&be->wake_lock);
    kchat_auth_free(be->auth);
    free(be);
}
