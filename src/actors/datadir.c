/*
 * The data directory (docs/operations.md): one LMDB environment per shard
 * and the directory replica. It remembers its shard count (fixed for its
 * life), its data set id (which tags its commands, directory records and
 * room summaries, docs/design.md "Data sets") and, per shard, the cluster
 * its stored input offsets belong to.
 */
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actors.h"
#include "streams.h"
#include "presence.h"
#include "changelog.h"
#include "kchat/error.h"
#include "kchat/kafka.h"
#include "kchat/topics.h"

/* The data directory remembers its shard count; refuse to mix. It opens
 * the directory replica, which on a real Kafka commits with one fsync, not
 * two (`meta_no_sync`): it is a copy of kchat-directory and kchat-rooms,
 * which Kafka keeps, and its read positions are stored in the same
 * environment after the records they pass were applied. LMDB then keeps
 * its commits up to the one before the last, so a machine crash leaves
 * positions no further than what the replica holds, and it reads the rest
 * again (a room summary or profile a worker wrote through is in Kafka once
 * its transaction or produce succeeded, or produced again from its shard's
 * outbox). On the embedded broker the replica is the only copy: both
 * fsyncs stay.
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
static int data_dir_check(kchat_backend *be, char *errstr, size_t len)
{
    char path[4096], buf[32];
    kchat_store_opts o = {.map_size = 64u << 20, .meta_no_sync = !be->mock_broker};
    kchat_txn *t;
    int rc;

    snprintf(path, sizeof(path), "%s/directory", be->cfg->data_dir);
    if ((rc = kchat_store_open(path, &o, &be->directory)) != KCHAT_OK) {
        snprintf(errstr, len, "cannot open %s: %s", path, kchat_strerror(rc));
        return rc;
    }
    if ((rc = kchat_txn_begin(be->directory, true, &t)) != KCHAT_OK)
        return rc;
    rc = kchat_store_meta_get(t, "partitions", buf, sizeof(buf));
    if (rc == KCHAT_OK && atoi(buf) != be->partitions) {
        kchat_txn_abort(t);
        snprintf(errstr, len, "data directory %s holds %s shards but the topics have %d "
                 "partitions; use a data directory made for %d partitions",
                 be->cfg->data_dir, buf, be->partitions, be->partitions);
        return KCHAT_ECONFIG;
    }
    snprintf(buf, sizeof(buf), "%d", be->partitions);
    if ((rc = kchat_store_meta_set(t, "partitions", buf)) != KCHAT_OK) {
        kchat_txn_abort(t);
        return rc;
    }
    return kchat_txn_commit(t);
}

static void shard_path(const kchat_backend *be, const struct shard *sh, char *path, size_t len)
{
    snprintf(path, len, "%s/shard-%04u", be->cfg->data_dir, sh->id);
}

/* Move the copy in @p path aside, to `PATH.aside-TIME`, and say @p why.
 * KCHAT_EIO, said in @p errstr, when it cannot be renamed.
 * @locality a thread that has no store open in @p path */
KCHAT_MUST_CHECK
static int copy_rename(const struct shard *sh, const char *path, const char *why,
                       char *errstr, size_t len)
{
    char aside[4200];

    snprintf(aside, sizeof(aside), "%s.aside-%lld", path, (long long)time(NULL));
    if (rename(path, aside) != 0) {
        snprintf(errstr, len, "shard %u: cannot set %s aside: %s", sh->id, path,
                 strerror(errno));
        return KCHAT_EIO;
    }
    fprintf(stderr, "kchat: shard %u: its copy %s: moved to %s, restoring the shard whole\n",
            sh->id, why, aside);
    return KCHAT_OK;
}

/* Open @p sh's environment. With a changelog on Kafka a shard commits
 * without fsync (`unsynced`): every answer, event and command waits for
 * Kafka to have the transaction's changes, and the changelog holds every
 * change, so the copy only saves reading them back. A process that dies
 * loses nothing (the kernel has the writes). A machine that restarts may
 * have lost or torn the copy's recent commits: the store's unsynced mark
 * tells (kchat_store_open() refuses it), and the copy is set aside here
 * and the shard restored whole from kchat-changelog at its acquisition
 * (restore.c), as after a lost disk. Without a changelog such a copy is
 * the only one: the start is refused, saying why. Whether shards commit
 * so is shards_sync_choose()'s (--shard-sync).
 * @locality the thread in kchat_backend_start(), or the one acquiring @p sh */
KCHAT_MUST_CHECK
static int shard_open(kchat_backend *be, struct shard *sh, char *errstr, size_t len)
{
    kchat_store_opts o = {.map_size = (size_t)be->cfg->map_size_mb << 20,
                          .changelog = be->changelog,
                          .unsynced = be->shard_unsynced,
                          .meta_no_sync = be->changelog && !be->mock_broker &&
                                          strcmp(be->cfg->shard_sync, "always") != 0};
    char path[4096];
    int rc;

    shard_path(be, sh, path, sizeof(path));
    rc = kchat_store_open(path, &o, &sh->store);
    if (rc == KCHAT_EUNSYNCED && be->changelog) {
        if ((rc = copy_rename(sh, path, "was written without fsync before the machine "
                              "restarted (its last commits may be lost or torn)",
                              errstr, len)) != KCHAT_OK)
            return rc;
        atomic_fetch_add(&be->stats.unsynced_copies, 1);
        rc = kchat_store_open(path, &o, &sh->store);
    }
    if (rc == KCHAT_EUNSYNCED)
        snprintf(errstr, len, "shard %s was written without fsync (with a changelog on Kafka) "
                 "before the machine restarted: its last commits may be lost or torn. Start "
                 "with the changelog on against the cluster that holds its kchat-changelog to "
                 "have it restored from there, or move the directory aside", path);
    else if (rc != KCHAT_OK)
        snprintf(errstr, len, "cannot open shard %s: %s", path, kchat_strerror(rc));
    return rc;
}

/* How shards sync their commits (--shard-sync; docs/design.md, "No fsync
 * with a changelog on Kafka"): both of LMDB's fsyncs without a changelog,
 * on the embedded broker (its records die with the process) and with
 * `always`; none with `kafka`; with `auto`, none when kchat-changelog is
 * replicated on two brokers or more (an acknowledged change outlives any
 * one machine), else one (`meta_no_sync`: a machine crash can undo the
 * last commit, which Kafka held). Sets be->shard_unsynced; logs the choice.
 * @locality the thread in kchat_backend_start(), before the shards open */
static void shards_sync_choose(kchat_backend *be)
{
    const char *how = be->cfg->shard_sync;
    char errstr[256];
    int replicas = 0, rc;

    be->shard_unsynced = false;
    if (!be->changelog || be->mock_broker || strcmp(how, "always") == 0)
        return;
    if (strcmp(how, "kafka") == 0) {
        be->shard_unsynced = true;
        fprintf(stderr, "kchat: shards commit without fsync (--shard-sync kafka)\n");
        return;
    }
    pthread_rwlock_rdlock(&be->producer_lock);
    rc = kchat_topic_replicas(be->producer, KCHAT_TOPIC_CHANGELOG, &replicas, errstr,
                              sizeof(errstr));
    pthread_rwlock_unlock(&be->producer_lock);
    if (rc != KCHAT_OK) {
        fprintf(stderr, "kchat: %s: shards commit with one fsync\n", errstr);
        return;
    }
    be->shard_unsynced = replicas >= 2;
    fprintf(stderr, "kchat: %s has %d replica%s: shards commit with %s (--shard-sync auto)\n",
            KCHAT_TOPIC_CHANGELOG, replicas, replicas == 1 ? "" : "s",
            be->shard_unsynced ? "no fsync" : "one fsync");
}

/* @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
static int shards_open(kchat_backend *be, char *errstr, size_t len)
{
    int rc;

    shards_sync_choose(be);
    be->shards = calloc((size_t)be->partitions, sizeof(*be->shards));
    if (be->shards == NULL)
        return KCHAT_ENOMEM;
    for (int p = 0; p < be->partitions; p++) {
        struct shard *sh = &be->shards[p];
        sh->id = (uint32_t)p;
        pthread_mutex_init(&sh->lock, NULL);
        pthread_mutex_init(&sh->copy_lock, NULL);
        sh->inbox = kchat__inbox_new();   /* NULL: commands come through Kafka only */
        if ((rc = shard_open(be, sh, errstr, len)) != KCHAT_OK)
            return rc;
    }
    return KCHAT_OK;
}

/* ---- the data set ---- */

/* Environment i of the data directory: the shards, then the replica. */
static kchat_store *data_env(kchat_backend *be, int i, char *name, size_t len)
{
    if (i < be->partitions) {
        snprintf(name, len, "shard-%04d", i);
        return be->shards[i].store;
    }
    snprintf(name, len, "directory");
    return be->directory;
}

/* The data set id every environment that has one holds, in @p found (""
 * when none has one); @p legacy: one is marked legacy; @p used: one ran
 * before (it knows a cluster). Two ids: KCHAT_ECONFIG.
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
static int dataset_read(kchat_backend *be, char found[33], bool *legacy, bool *used,
                        char *errstr, size_t len)
{
    char id[33], where[32] = "", name[32], buf[256];
    kchat_txn *t;
    int rc;

    found[0] = '\0';
    for (int i = 0; i <= be->partitions; i++) {
        kchat_store *st = data_env(be, i, name, sizeof(name));

        if ((rc = kchat_txn_begin(st, false, &t)) != KCHAT_OK)
            return rc;
        rc = kchat_store_meta_get(t, "dataset", id, sizeof(id));
        *legacy |= kchat_store_meta_get(t, "dataset_legacy", buf, sizeof(buf)) == KCHAT_OK;
        *used |= kchat_store_meta_get(t, "cluster_id", buf, sizeof(buf)) == KCHAT_OK;
        kchat_txn_abort(t);
        if (rc == KCHAT_ENOTFOUND)
            continue;
        if (rc != KCHAT_OK) {
            snprintf(errstr, len, "%s/%s: data set id: %s", be->cfg->data_dir, name,
                     kchat_strerror(rc));
            return rc;
        }
        if (found[0] == '\0') {
            memcpy(found, id, sizeof(id));
            memcpy(where, name, sizeof(where));
        } else if (strcmp(found, id) != 0) {
            snprintf(errstr, len, "data directory %s mixes two data sets: %s belongs to %s, "
                     "%s to %s", be->cfg->data_dir, where, found, name, id);
            return KCHAT_ECONFIG;
        }
    }
    return KCHAT_OK;
}

/* The data set id (docs/design.md, "Data sets"): 16 random bytes in hex,
 * made when a data directory is first used and kept in the meta of every
 * shard and of the directory replica. With a changelog, the deployment's,
 * kept in Kafka (deployment.c): an empty data directory joins it, one of
 * another data set is refused. A data directory an older kchat made
 * gets one at its first start here and is marked legacy. Environments of
 * two data sets in one data directory are refused.
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
static int dataset_open(kchat_backend *be, char *errstr, size_t len)
{
    char id[sizeof(be->dataset)], found[sizeof(be->dataset)], kept[sizeof(be->dataset)];
    char name[32];
    bool legacy = false, used = false;
    kchat_txn *t;
    int rc;

    if ((rc = dataset_read(be, found, &legacy, &used, errstr, len)) != KCHAT_OK ||
        (rc = kchat__deployment_dataset(be, found, kept, errstr, len)) != KCHAT_OK)
        return rc;
    if (kept[0] != '\0' && found[0] != '\0' && strcmp(found, kept) != 0) {
        snprintf(errstr, len, "data directory %s belongs to data set %s but this cluster's "
                 "deployment (%s) is data set %s: move the data directory aside to restore "
                 "it from Kafka, or give this one a cluster of its own", be->cfg->data_dir,
                 found, KCHAT_TOPIC_META, kept);
        return KCHAT_ECONFIG;
    }
    if (kept[0] != '\0' && found[0] == '\0')   /* joining the deployment */
        memcpy(found, kept, sizeof(found));
    if (found[0] == '\0') {
        unsigned char raw[16];

        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(found, sizeof(found), raw, sizeof(raw));
        legacy = used;   /* shards that ran before, under an older kchat */
        fprintf(stderr, "kchat: data set %s%s\n", found,
                legacy ? " given to a data directory made before data set ids" : " (new)");
    }
    /* Shards first, the replica last. With a changelog a shard is written
     * only while owned (it gets the id when acquired: ownership.c). */
    for (int i = be->changelog ? be->partitions : 0; i <= be->partitions; i++) {
        kchat_store *st = data_env(be, i, name, sizeof(name));

        if ((rc = kchat_txn_begin(st, true, &t)) != KCHAT_OK)
            return rc;
        rc = kchat_store_meta_get(t, "dataset", id, sizeof(id));
        if (rc == KCHAT_ENOTFOUND) {
            rc = kchat_store_meta_set(t, "dataset", found);
            if (rc == KCHAT_OK && legacy)
                rc = kchat_store_meta_set(t, "dataset_legacy", "1");
            if (rc == KCHAT_OK) {
                rc = kchat_txn_commit(t);
                t = NULL;
            }
        }
        kchat_txn_abort(t);
        if (rc != KCHAT_OK) {
            snprintf(errstr, len, "%s/%s: cannot store the data set id: %s",
                     be->cfg->data_dir, name, kchat_strerror(rc));
            return rc;
        }
    }
    memcpy(be->dataset, found, sizeof(be->dataset));
    be->dataset_legacy = legacy;
    return KCHAT_OK;
}

bool kchat__dataset_ours(kchat_backend *be, const rd_kafka_message_t *m, bool untagged_ok,
                         int kind)
{
    const void *v;
    size_t vl;
    bool tagged = kchat_header_get(m, KCHAT_HDR_DATASET, &v, &vl) == 0;

    if (tagged ? vl == strlen(be->dataset) && memcmp(v, be->dataset, vl) == 0 : untagged_ok)
        return true;
    if (!atomic_exchange(&be->foreign_logged[kind], true))
        fprintf(stderr, "kchat: ignoring records of %s on %s (first at [%" PRId32 "] @%" PRId64
                "): this data set is %s; counted in kchat_foreign_*_total\n",
                tagged ? "another data set" : "no data set (an older kchat)",
                rd_kafka_topic_name(m->rkt), m->partition, m->offset, be->dataset);
    return false;
}

/* Upgrade what an older kchat stored: sessions kept under their ids move
 * under their hashes (kchat__sessions_rekey()).
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
static int shards_upgrade(kchat_backend *be, char *errstr, size_t len)
{
    for (int p = 0; p < be->partitions; p++) {
        size_t moved;
        int rc = kchat__sessions_rekey(&be->shards[p], &moved);

        if (rc != KCHAT_OK) {
            snprintf(errstr, len, "shard %d: storing sessions by hash: %s", p,
                     kchat_strerror(rc));
            return rc;
        }
        if (moved > 0)
            fprintf(stderr, "kchat: shard %d: %zu sessions stored by id are now stored by "
                    "hash\n", p, moved);
    }
    return KCHAT_OK;
}

/* This data directory's node id (docs/scaling.md, "Static membership"):
 * 16 random bytes in hex, made at its first start and kept in the replica;
 * the consumer's group.instance.id, so that a node restarted on its data
 * directory gets its shards back without a rebalance.
 * @locality the thread in kchat_backend_start() */
KCHAT_MUST_CHECK
static int node_id_open(kchat_backend *be, char *errstr, size_t len)
{
    kchat_txn *t;
    int rc;

    if ((rc = kchat_txn_begin(be->directory, true, &t)) != KCHAT_OK)
        goto err_say;
    rc = kchat_store_meta_get(t, "node_id", be->node_id, sizeof(be->node_id));
    if (rc == KCHAT_ENOTFOUND) {
        unsigned char raw[16];

        randombytes_buf(raw, sizeof(raw));
        sodium_bin2hex(be->node_id, sizeof(be->node_id), raw, sizeof(raw));
        if ((rc = kchat_store_meta_set(t, "node_id", be->node_id)) == KCHAT_OK) {
            rc = kchat_txn_commit(t);
            t = NULL;
        }
    }
    kchat_txn_abort(t);
    if (rc == KCHAT_OK)
        return KCHAT_OK;
err_say:
    snprintf(errstr, len, "%s/directory: node id: %s", be->cfg->data_dir, kchat_strerror(rc));
    return rc;
}

int kchat__datadir_open(kchat_backend *be, char *errstr, size_t len)
{
    int rc;

    if ((rc = data_dir_check(be, errstr, len)) != KCHAT_OK ||
        (rc = shards_open(be, errstr, len)) != KCHAT_OK ||
        (rc = shards_upgrade(be, errstr, len)) != KCHAT_OK ||
        (rc = node_id_open(be, errstr, len)) != KCHAT_OK)
        return rc;
    return dataset_open(be, errstr, len);
}

int kchat__datadir_shard_set_aside(kchat_backend *be, struct shard *sh, const char *why,
                                   char *errstr, size_t len)
{
    char path[4096];

    shard_path(be, sh, path, sizeof(path));
    kchat_store_close(sh->store);
    sh->store = NULL;
    if (copy_rename(sh, path, why, errstr, len) != KCHAT_OK) {
        int rc = shard_open(be, sh, errstr + strlen(errstr), len - strlen(errstr));
        return rc != KCHAT_OK ? rc : KCHAT_EIO;
    }
    return shard_open(be, sh, errstr, len);
}

KCHAT_MUST_CHECK
static int shard_check_cluster(kchat_backend *be, struct shard *sh);

int kchat__datadir_shard_settle(kchat_backend *be, struct shard *sh, char *errstr, size_t len)
{
    char id[sizeof(be->dataset)];
    kchat_txn *t;
    int rc;

    if ((rc = kchat_txn_begin(sh->store, true, &t)) != KCHAT_OK)
        goto err_say;
    rc = kchat_store_meta_get(t, "dataset", id, sizeof(id));
    if (rc == KCHAT_ENOTFOUND) {
        rc = kchat_store_meta_set(t, "dataset", be->dataset);
        if (rc == KCHAT_OK && be->dataset_legacy)
            rc = kchat_store_meta_set(t, "dataset_legacy", "1");
        if (rc == KCHAT_OK) {
            rc = kchat_txn_commit(t);
            t = NULL;
        }
    }
    kchat_txn_abort(t);
    if (rc != KCHAT_OK)
        goto err_say;
    if ((rc = shard_check_cluster(be, sh)) != KCHAT_OK)
        goto err_say;
    return KCHAT_OK;
err_say:
    snprintf(errstr, len, "shard %u: settling its data set and cluster: %s", sh->id,
             kchat_strerror(rc));
    return rc;
}

/* ---- the cluster ---- */

int kchat__offsets_settle_cluster(const kchat_backend *be, kchat_txn *t, const char *key,
                                  bool *cleared)
{
    char old[sizeof(be->cluster_id)];
    int rc = kchat_store_meta_get(t, key, old, sizeof(old));

    *cleared = false;
    /* ENOTFOUND: no cluster named; ETOOBIG: too long for an id of ours,
     * so another cluster's. Both clear below. */
    if (rc != KCHAT_OK && rc != KCHAT_ENOTFOUND && rc != KCHAT_ETOOBIG)
        return rc;
    if (be->embedded == NULL && rc == KCHAT_OK && strcmp(old, be->cluster_id) == 0)
        return KCHAT_OK;
    if ((rc = kchat_store_offsets_clear(t)) != KCHAT_OK ||
        (rc = kchat_store_meta_set(t, key, be->cluster_id)) != KCHAT_OK)
        return rc;
    *cleared = true;
    return KCHAT_OK;
}

/* A shard's offsets against the cluster (kchat__offsets_settle_cluster()).
 * @locality the thread in kchat_backend_start(), or the one acquiring @p sh */
KCHAT_MUST_CHECK
static int shard_check_cluster(kchat_backend *be, struct shard *sh)
{
    kchat_txn *t;
    bool cleared;
    int rc;

    if ((rc = kchat_txn_begin(sh->store, true, &t)) != KCHAT_OK)
        return rc;
    if ((rc = kchat__offsets_settle_cluster(be, t, "cluster_id", &cleared)) != KCHAT_OK ||
        !cleared) {
        kchat_txn_abort(t);
        return rc;
    }
    return kchat_txn_commit(t);
}

int kchat__datadir_check_cluster(kchat_backend *be, char *errstr, size_t len)
{
    int rc;

    if (be->changelog)
        return KCHAT_OK;   /* each shard when acquired (kchat__datadir_shard_settle()) */
    for (int p = 0; p < be->partitions; p++)
        if ((rc = shard_check_cluster(be, &be->shards[p])) != KCHAT_OK) {
            snprintf(errstr, len, "shard %d: %s", p, kchat_strerror(rc));
            return rc;
        }
    return KCHAT_OK;
}

void kchat__datadir_close(kchat_backend *be)
{
    for (int p = 0; be->shards && p < be->partitions; p++) {
        struct shard *sh = &be->shards[p];
        kchat_store_close(sh->store);
        pthread_mutex_destroy(&sh->lock);
        pthread_mutex_destroy(&sh->copy_lock);
        kchat__inbox_free(sh->inbox);
        sh->inbox = NULL;
        kchat__presence_release(sh);
        free(sh->cmds);
        free(sh->links);
        free(sh->delivered.v);
        free(sh->resend.v);
        kchat__changelog_free(sh);
    }
    free(be->shards);
    be->shards = NULL;
    kchat_store_close(be->directory);
    be->directory = NULL;
}
