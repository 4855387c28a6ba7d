/*
 * The user directory: every user's public profile (name, status, version),
 * published to kchat-directory by the user's shard through its outbox, and
 * read back into a replica (DATA/directory) that any shard can look users
 * up in. The replica takes a shard's own records at once when they are
 * committed (producer.c) and everyone's from Kafka on its own thread;
 * the newest version wins. The same thread reads kchat-rooms into the
 * room summaries of the same replica (summaries.c).
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actors.h"
#include "replicas.h"
#include "kchat/error.h"
#include "kchat/kafka.h"

int kchat__directory_publish(struct ctx *c, const json_t *user)
{
    json_t *seen = json_object_get(user, "lastSeen");
    json_t *e = json_pack("{s:O, s:O, s:O, s:O, s:b, s:s}",
                          "userId", json_object_get(user, "userId"),
                          "userName", json_object_get(user, "userName"),
                          "userStatus", json_object_get(user, "userStatus"),
                          "ver", json_object_get(user, "ver"),
                          "online", json_is_true(json_object_get(user, "online")),
                          "lastSeen", json_is_string(seen) ? json_string_value(seen) : "");
    const char *id = json_string_value(json_object_get(user, "userId"));
    char *s;
    int rc;

    if (e == NULL)
        return KCHAT_ENOMEM;
    s = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    if (s == NULL)
        return KCHAT_ENOMEM;
    rc = kchat__out_append(c, OUT_REPLY, 0, KCHAT_TOPIC_DIRECTORY, -1, id, strlen(id),
                           s, strlen(s), NULL, 0);
    free(s);
    return rc;
}

void kchat__directory_write_through(kchat_backend *be, const char *topic, const void *value,
                                    size_t len)
{
    json_t *e;
    int rc;

    if (strcmp(topic, KCHAT_TOPIC_DIRECTORY) != 0 ||
        (e = json_loadb(value ? value : "", len, 0, NULL)) == NULL)
        return;
    if ((rc = kchat__directory_apply(be, e)) != KCHAT_OK)
        fprintf(stderr, "kchat: directory replica: %s\n", kchat_strerror(rc));
    json_decref(e);
}

json_t *kchat__directory_get(kchat_backend *be, const char *user_id)
{
    kchat_txn *t;
    json_t *v;

    if (kchat_txn_begin(be->directory, false, &t) != KCHAT_OK)
        return NULL;
    v = kchat__get_json(t, KCHAT_TBL_DIRECTORY, user_id, strlen(user_id));
    kchat_txn_abort(t);
    return v;
}

int kchat__directory_apply(kchat_backend *be, const json_t *entry)
{
    const char *id = json_string_value(json_object_get(entry, "userId"));
    json_int_t ver = json_integer_value(json_object_get(entry, "ver"));
    kchat_txn *t;
    json_t *old;
    int rc;

    if (id == NULL || !kchat_valid_id(id, strlen(id)))
        return KCHAT_EINVAL;
    if ((rc = kchat_txn_begin(be->directory, true, &t)) != KCHAT_OK)
        return rc;
    old = kchat__get_json(t, KCHAT_TBL_DIRECTORY, id, strlen(id));
    if (old && json_integer_value(json_object_get(old, "ver")) >= ver) {
        json_decref(old);
        kchat_txn_abort(t);
        return KCHAT_OK;
    }
    json_decref(old);
    rc = kchat__put_json(t, KCHAT_TBL_DIRECTORY, id, strlen(id), entry);
    if (rc != KCHAT_OK) {
        kchat_txn_abort(t);
        return rc;
    }
    return kchat_txn_commit(t);
}

/* ---- the replica's reader ---- */

/* Most records the directory thread takes at once: the room summaries
 * among them go to the replica in one transaction. */
#define DIR_BATCH 256

/* One record of kchat-rooms or kchat-directory, if it is of this data set:
 * a user's profile into the replica, a room summary (parsed; NULL when it
 * does not parse) onto @p sums for the batch's transaction. Room summaries
 * are always tagged (every kchat that writes kchat-rooms tags them), so an
 * untagged one is never ours.
 * @locality the directory thread */
static void directory_record(kchat_backend *be, const rd_kafka_message_t *m, json_t **sums,
                             size_t *n)
{
    const void *value = m->payload ? m->payload : "";
    json_t *e;

    if (!strcmp(rd_kafka_topic_name(m->rkt), KCHAT_TOPIC_ROOMS)) {
        if (!kchat__dataset_ours(be, m, false, 2))
            atomic_fetch_add(&be->stats.foreign_rooms, 1);
        else
            sums[(*n)++] = json_loadb(value, m->len, 0, NULL);
    } else if (!kchat__dataset_ours(be, m, be->dataset_legacy, 1)) {
        atomic_fetch_add(&be->stats.foreign_directory, 1);
    } else if ((e = json_loadb(value, m->len, 0, NULL)) != NULL) {
        int rc = kchat__directory_apply(be, e);

        /* EINVAL: not a user's profile (no valid userId), skipped */
        if (rc != KCHAT_OK && rc != KCHAT_EINVAL)
            fprintf(stderr, "kchat: directory replica: %s\n", kchat_strerror(rc));
        json_decref(e);
    }
}

/* The directory thread's main: apply every kchat-directory and kchat-rooms
 * record of this data set to the replica until the backend stops.
 * @locality the directory thread */
static void *directory_main(void *arg)
{
    kchat_backend *be = arg;
    json_t *sums[DIR_BATCH];

    while (!atomic_load(&be->stopping)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(be->dir_consumer, 100);
        size_t n = 0;

        /* that one, then what has arrived meanwhile, up to DIR_BATCH */
        for (size_t taken = 1; m != NULL; taken++) {
            if (!m->err && (be->auth == NULL || kchat_auth_verify(be->auth, m, "directory")))
                directory_record(be, m, sums, &n);
            rd_kafka_message_destroy(m);
            m = taken < DIR_BATCH ? rd_kafka_consumer_poll(be->dir_consumer, 0) : NULL;
        }
        kchat__room_summaries_take(be, sums, n);
    }
    return NULL;
}

int kchat__directory_start(kchat_backend *be, char *errstr, size_t len)
{
    rd_kafka_conf_t *conf = kchat__kafka_conf(be, errstr, len);
    rd_kafka_topic_partition_list_t *parts;
    rd_kafka_resp_err_t err;
    char gid[64];

    if (conf == NULL)
        return KCHAT_ECONFIG;
    snprintf(gid, sizeof(gid), "kchat-directory-%ld-%u", (long)getpid(), randombytes_random());
    rd_kafka_conf_set(conf, "group.id", gid, NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(conf, "enable.partition.eof", "false", NULL, 0);
    if ((be->dir_consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, len)) == NULL) {
        rd_kafka_conf_destroy(conf);
        return KCHAT_EKAFKA;
    }
    rd_kafka_poll_set_consumer(be->dir_consumer);
    parts = rd_kafka_topic_partition_list_new(2 * be->partitions);
    for (int p = 0; p < be->partitions; p++) {
        rd_kafka_topic_partition_list_add(parts, KCHAT_TOPIC_DIRECTORY, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_topic_partition_list_add(parts, KCHAT_TOPIC_ROOMS, p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    }
    err = rd_kafka_assign(be->dir_consumer, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, len, "cannot assign %s and %s: %s", KCHAT_TOPIC_DIRECTORY,
                 KCHAT_TOPIC_ROOMS, rd_kafka_err2str(err));
        kchat__directory_stop(be);
        return KCHAT_EKAFKA;
    }
    if (pthread_create(&be->dir_thread, NULL, directory_main, be) != 0) {
        snprintf(errstr, len, "cannot start the directory thread");
        kchat__directory_stop(be);
        return KCHAT_ENOMEM;
    }
    be->dir_running = true;
    return KCHAT_OK;
}

void kchat__directory_stop(kchat_backend *be)
{
    if (be->dir_running)
        pthread_join(be->dir_thread, NULL);
    be->dir_running = false;
    if (be->dir_consumer) {
        rd_kafka_consumer_close(be->dir_consumer);
        rd_kafka_destroy(be->dir_consumer);
    }
    be->dir_consumer = NULL;
}
