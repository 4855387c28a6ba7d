/*
 * Standby replicas (docs/scaling.md, "Standby replicas"): with
 * `--standby-replicas N`, this process keeps warm copies of shards it does
 * not own by following their kchat-changelog partitions, so that taking
 * one over (ownership.c) applies only the last changes.
 *
 * librdkafka 2.0.2 has no custom assignor, so standbys are chosen outside
 * the group's protocol, from what every node can read: the group's
 * description (DescribeConsumerGroups), which lists each member's static
 * instance id (kchat-node-<id>, from its data directory) and assignment.
 * Members in instance-id order form a ring; a shard owned by member i is
 * followed by members i+1 .. i+N of the ring. Every STANDBY_PERIOD_MS the
 * standby thread reads the description and catches up each shard it
 * should follow (restore.c, from where the last catch-up stopped).
 *
 * The copy of a shard not owned is written only under its copy_lock, which
 * an acquisition holds too; a standby never touches an owned shard.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors.h"
#include "changelog.h"
#include "kchat/error.h"

#define STANDBY_PERIOD_MS 2000     /* how often the followed shards catch up */
#define DESCRIBE_TIMEOUT_MS 10000  /* Kafka's answer to a group description */

/* One member of the group, as the description gives it. */
struct member {
    const char *instance;      /* its group.instance.id (borrowed from the event) */
    const rd_kafka_topic_partition_list_t *parts;
};

static int member_cmp(const void *a, const void *b)
{
    return strcmp(((const struct member *)a)->instance, ((const struct member *)b)->instance);
}

/* Mark in @p follow the shards this process should follow, from the
 * group's members @p m (sorted), this process being @p self.
 * @locality the standby thread */
static void choose(kchat_backend *be, const struct member *m, size_t n, size_t self,
                   bool *follow)
{
    int replicas = be->cfg->standby_replicas;

    for (size_t i = 0; i < n; i++) {
        /* distance from owner i to this process along the ring */
        size_t d = (self + n - i) % n;
        if (d == 0 || d > (size_t)replicas || m[i].parts == NULL)
            continue;
        for (int k = 0; k < m[i].parts->cnt; k++) {
            int32_t p = m[i].parts->elems[k].partition;
            if (p >= 0 && p < be->partitions)
                follow[p] = true;
        }
    }
}

/* Which shards to follow now, in @p follow: false everywhere when the
 * group cannot be described (logged once per kind of failure).
 * @locality the standby thread */
static void describe(kchat_backend *be, rd_kafka_t *rk, rd_kafka_queue_t *q, bool *follow)
{
    const char *groups[] = {kchat_config_group(be->cfg)};
    char self_id[64];
    rd_kafka_event_t *ev;
    const rd_kafka_DescribeConsumerGroups_result_t *res;
    const rd_kafka_ConsumerGroupDescription_t **gs;
    size_t ng = 0;

    memset(follow, 0, (size_t)be->partitions * sizeof(*follow));
    snprintf(self_id, sizeof(self_id), "kchat-node-%s", be->node_id);
    rd_kafka_DescribeConsumerGroups(rk, groups, 1, NULL, q);
    if ((ev = rd_kafka_queue_poll(q, DESCRIBE_TIMEOUT_MS)) == NULL)
        return;
    res = rd_kafka_event_DescribeConsumerGroups_result(ev);
    gs = res ? rd_kafka_DescribeConsumerGroups_result_groups(res, &ng) : NULL;
    if (rd_kafka_event_error(ev) || ng != 1 || rd_kafka_ConsumerGroupDescription_error(gs[0])) {
        if (!atomic_exchange(&be->standby_logged, true))
            fprintf(stderr, "kchat: standby: cannot describe group %s: %s\n",
                    kchat_config_group(be->cfg), rd_kafka_event_error(ev)
                                           ? rd_kafka_event_error_string(ev)
                                           : "no description");
        rd_kafka_event_destroy(ev);
        return;
    }
    size_t n = rd_kafka_ConsumerGroupDescription_member_count(gs[0]), used = 0, self = n;
    struct member *m = calloc(n ? n : 1, sizeof(*m));
    for (size_t i = 0; m != NULL && i < n; i++) {
        const rd_kafka_MemberDescription_t *md =
            rd_kafka_ConsumerGroupDescription_member(gs[0], i);
        const char *inst = rd_kafka_MemberDescription_group_instance_id(md);
        const rd_kafka_MemberAssignment_t *a = rd_kafka_MemberDescription_assignment(md);

        if (inst == NULL)
            continue;   /* not a kchat node of a changelog deployment */
        m[used].instance = inst;
        m[used].parts = a ? rd_kafka_MemberAssignment_partitions(a) : NULL;
        used++;
    }
    if (m != NULL) {
        qsort(m, used, sizeof(*m), member_cmp);
        for (size_t i = 0; i < used; i++)
            if (!strcmp(m[i].instance, self_id))
                self = i;
        if (self < used)
            choose(be, m, used, self, follow);
    }
    free(m);
    rd_kafka_event_destroy(ev);
}

/* Catch up the copies of the shards in @p follow that this process does
 * not own.
 * @locality the standby thread */
static void follow_shards(kchat_backend *be, rd_kafka_t *rk, const bool *follow)
{
    char errstr[512];

    for (int p = 0; p < be->partitions && !atomic_load(&be->closing); p++) {
        struct shard *sh = &be->shards[p];
        bool restored = false;

        atomic_store(&sh->standby, follow[p] && !atomic_load(&sh->owned));
        if (!follow[p])
            continue;
        pthread_mutex_lock(&sh->copy_lock);
        if (!atomic_load(&sh->owned)) {
            errstr[0] = '\0';
            if (kchat__changelog_catch_up(be, rk, sh, &restored, errstr, sizeof(errstr)) !=
                    KCHAT_OK &&
                !atomic_exchange(&be->standby_logged, true))
                fprintf(stderr, "kchat: standby: %s\n", errstr);
            if (restored)
                atomic_store(&sh->warm, false);   /* another owner wrote since */
        }
        pthread_mutex_unlock(&sh->copy_lock);
    }
}

/* The standby thread's main.
 * @locality the standby thread (pthread_create() by kchat__standby_start()) */
static void *standby_main(void *arg)
{
    kchat_backend *be = arg;
    char errstr[256];
    rd_kafka_conf_t *conf = kchat__kafka_conf(be, errstr, sizeof(errstr));
    rd_kafka_t *rk = conf ? rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)) : NULL;
    rd_kafka_queue_t *q = rk ? rd_kafka_queue_new(rk) : NULL;
    rd_kafka_t *reader = rk ? kchat__restore_consumer(be, errstr, sizeof(errstr)) : NULL;
    bool *follow = calloc((size_t)be->partitions, sizeof(*follow));

    if (rk == NULL && conf != NULL)
        rd_kafka_conf_destroy(conf);
    if (q == NULL || reader == NULL || follow == NULL) {
        fprintf(stderr, "kchat: standby: cannot start: %s\n",
                rk && reader ? "out of memory" : errstr);
        goto out_free;
    }
    while (!atomic_load(&be->closing)) {
        describe(be, rk, q, follow);
        follow_shards(be, reader, follow);
        for (int slept = 0; slept < STANDBY_PERIOD_MS && !atomic_load(&be->closing);
             slept += 50)
            kchat__sleep_ms(50);
    }
out_free:
    free(follow);
    if (reader != NULL)
        rd_kafka_destroy(reader);
    if (q != NULL)
        rd_kafka_queue_destroy(q);
    if (rk != NULL)
        rd_kafka_destroy(rk);
    return NULL;
}

int kchat__standby_start(kchat_backend *be, char *errstr, size_t len)
{
    if (!be->changelog || be->cfg->standby_replicas <= 0)
        return KCHAT_OK;
    if (pthread_create(&be->standby_thread, NULL, standby_main, be) != 0) {
        snprintf(errstr, len, "cannot start the standby thread");
        return KCHAT_ENOMEM;
    }
    be->standby_running = true;
    return KCHAT_OK;
}

void kchat__standby_stop(kchat_backend *be)
{
    if (!be->standby_running)
        return;
    atomic_store(&be->closing, true);
    pthread_join(be->standby_thread, NULL);
    be->standby_running = false;
}
