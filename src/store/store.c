/*
 * The store: LMDB environments, transactions, keys and values and map
 * growth (see include/kchat/store.h for the contract; scans are in
 * store_scan.c, the unsynced mark in store_sync.c).
 *
 * Map growth. mdb_env_set_mapsize() may only run while no transaction of
 * the environment is open in this process. The store counts its open
 * transactions (`active`, under `lock`); kchat_txn_begin() counts a
 * transaction *before* calling mdb_txn_begin(), so once the count is 0
 * under the lock nothing can be inside LMDB for this environment. An
 * MDB_MAP_FULL (always met inside a transaction) sets `grow_pending`; the
 * map is doubled when the count drops to 0 with growth pending, by the end
 * of the last open transaction (txn_end(), or a failed begin).
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "store_int.h"

_Static_assert(sizeof(size_t) >= 8, "kchat's store needs a 64-bit address space");

/*
 * An open store. `env`, `dbi`, `path`, `dev`, `ino` are set by
 * kchat_store_open() and never change; the fields after `lock` are
 * guarded by it.
 */
struct kchat_store {
    MDB_env *env;
    MDB_dbi dbi[KCHAT_TBL__COUNT];
    char *path;
    dev_t dev;                  /* identity of the directory, for the */
    ino_t ino;                  /* one-open-per-process check          */
    kchat_store *next_open;     /* list of open stores, under g_open_lock */

    pthread_mutex_t lock;
    unsigned active;            /* open transactions, read and write */
    bool writer_active;         /* a write transaction is open ... */
    pthread_t writer;           /* ... on this thread */
    bool grow_pending;          /* an MDB_MAP_FULL asked for a bigger map */
    bool broken;                /* growing failed and left no map */
    size_t map_size;            /* current map size */
    bool changelog;             /* kchat_store_opts::changelog */
    bool unsynced;              /* committing without fsync, marked (store_sync.c) */
};

/* Names of the LMDB named databases, in kchat_table order. */
static const char *const table_names[] = {
    [KCHAT_TBL_META] = "meta",           [KCHAT_TBL_OFFSETS] = "offsets",
    [KCHAT_TBL_USERS] = "users",         [KCHAT_TBL_SESSIONS] = "sessions",
    [KCHAT_TBL_FRIENDS] = "friends",     [KCHAT_TBL_MEMBERS] = "members",
    [KCHAT_TBL_ROOMS] = "rooms",         [KCHAT_TBL_MESSAGES] = "messages",
    [KCHAT_TBL_IDEM] = "idem",           [KCHAT_TBL_OUTBOX] = "outbox",
    [KCHAT_TBL_APPLIED] = "applied",     [KCHAT_TBL_DIRECTORY] = "directory",
    [KCHAT_TBL_CHANGELOG] = "changelog", [KCHAT_TBL_FOLLOWERS] = "followers",
};
_Static_assert(sizeof table_names / sizeof table_names[0] == KCHAT_TBL__COUNT,
               "one name per table");

#define MAX_READERS 126

const char *kchat_store_table_name(kchat_table t)
{
    return (unsigned)t < KCHAT_TBL__COUNT ? table_names[t] : NULL;
}

/* Stores open in this process: LMDB must not open one environment twice. */
static pthread_mutex_t g_open_lock = PTHREAD_MUTEX_INITIALIZER;
static kchat_store *g_open_head;

/* ------------------------------------------------------------------------ */
/* Errors */

int kchat__store_err(int mdb_rc)
{
    switch (mdb_rc) {
    case MDB_SUCCESS:      return KCHAT_OK;
    case MDB_NOTFOUND:     return KCHAT_ENOTFOUND;
    case MDB_KEYEXIST:     return KCHAT_EEXIST;
    case MDB_MAP_FULL:     return KCHAT_EMAPFULL;
    case MDB_TXN_FULL:
    case MDB_CURSOR_FULL:
    case MDB_READERS_FULL:
    case MDB_DBS_FULL:     return KCHAT_EFULL;
    case MDB_BAD_VALSIZE:  return KCHAT_ETOOBIG;
    case ENOMEM:           return KCHAT_ENOMEM;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:            return KCHAT_ENOSPC;
    case EIO:              return KCHAT_EIO;
    default:               return KCHAT_ESTORE;
    }
}

/* Errors of opening files and directories. */
KCHAT_MUST_CHECK
static int open_err(int rc)
{
    switch (rc) {
    case EACCES: case EPERM: case ENOENT: case ENOTDIR: case EROFS:
    case EISDIR: case ELOOP: case ENAMETOOLONG: case EEXIST:
    case MDB_INVALID: case MDB_VERSION_MISMATCH: case MDB_CORRUPTED:
        return KCHAT_EIO;
    default:
        return kchat__store_err(rc);
    }
}

/* Double the map (see "Map growth" above) unless it cannot grow.
 * @locality whichever thread brings s->active to 0 (txn_end(), or a failed
 *   kchat_txn_begin())
 * @locks s->lock MUST be held, with s->active == 0 */
static void grow_locked(kchat_store *s)
{
    size_t next;
    void *probe;

    s->grow_pending = false;
    if (s->broken || s->map_size >= KCHAT_STORE_MAP_MAX)
        return;
    next = s->map_size > KCHAT_STORE_MAP_MAX / 2 ? KCHAT_STORE_MAP_MAX : s->map_size * 2;
    /*
     * mdb_env_set_mapsize() unmaps the old map before mapping the new one
     * and cannot go back if that fails: first make sure the process can
     * reserve that much address space.
     */
    probe = mmap(NULL, next, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (probe == MAP_FAILED)
        return;
    munmap(probe, next);
    if (mdb_env_set_mapsize(s->env, next) != MDB_SUCCESS) {
        s->broken = true;
        return;
    }
    MDB_envinfo info;
    s->map_size = mdb_env_info(s->env, &info) == MDB_SUCCESS ? info.me_mapsize : next;
}

int kchat__txn_fail(kchat_txn *t, int mdb_rc)
{
    int err = kchat__store_err(mdb_rc);

    /* LMDB leaves its transaction usable after these. */
    if (mdb_rc == MDB_NOTFOUND || mdb_rc == MDB_KEYEXIST || mdb_rc == MDB_BAD_VALSIZE)
        return err;
    if (mdb_rc == MDB_MAP_FULL) {
        pthread_mutex_lock(&t->store->lock);
        t->store->grow_pending = true;
        pthread_mutex_unlock(&t->store->lock);
    }
    if (t->err == KCHAT_OK)
        t->err = err;
    return err;
}

int kchat__txn_check(kchat_txn *t, kchat_table tb, bool write)
{
    if (!t)
        return KCHAT_EINVAL;
    if (t->err)
        return t->err;
    if ((unsigned)tb >= KCHAT_TBL__COUNT || (write && !t->write))
        return KCHAT_EINVAL;
    /* the outbox page being built is written before the table is used */
    return tb == KCHAT_TBL_OUTBOX ? kchat__outbox_flush(t) : KCHAT_OK;
}

MDB_dbi kchat__txn_dbi(const kchat_txn *t, kchat_table tb)
{
    return t->store->dbi[tb];
}

/* ------------------------------------------------------------------------ */
/* Stores */

/* mkdir -p with mode 0700 for what it creates. */
KCHAT_MUST_CHECK
static int mkdir_p(const char *dir)
{
    size_t n = strlen(dir);
    char *p = malloc(n + 1);
    struct stat st;

    if (!p)
        return KCHAT_ENOMEM;
    memcpy(p, dir, n + 1);
    for (char *c = p + 1;; c++) {
        if (*c != '/' && *c != '\0')
            continue;
        char saved = *c;
        *c = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            return e == ENOSPC ? KCHAT_ENOSPC : e == ENOMEM ? KCHAT_ENOMEM : KCHAT_EIO;
        }
        *c = saved;
        if (!saved)
            break;
    }
    free(p);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return KCHAT_EIO;
    return KCHAT_OK;
}

/* Add s to the open list unless its directory is open already.
 * @locks takes g_open_lock (must not be held) */
KCHAT_MUST_CHECK
static int register_open(kchat_store *s)
{
    int rc = KCHAT_OK;

    pthread_mutex_lock(&g_open_lock);
    for (kchat_store *o = g_open_head; o; o = o->next_open)
        if (o->dev == s->dev && o->ino == s->ino)
            rc = KCHAT_EEXIST;
    if (rc == KCHAT_OK) {
        s->next_open = g_open_head;
        g_open_head = s;
    }
    pthread_mutex_unlock(&g_open_lock);
    return rc;
}

/* @locks takes g_open_lock (must not be held) */
static void unregister_open(kchat_store *s)
{
    pthread_mutex_lock(&g_open_lock);
    for (kchat_store **pp = &g_open_head; *pp; pp = &(*pp)->next_open)
        if (*pp == s) {
            *pp = s->next_open;
            break;
        }
    pthread_mutex_unlock(&g_open_lock);
}

/* Open the environment and every table of s (s->path set). */
KCHAT_MUST_CHECK
static int open_env(kchat_store *s, const kchat_store_opts *opts)
{
    size_t map_size = opts && opts->map_size ? opts->map_size : KCHAT_STORE_MAP_DEFAULT;
    unsigned flags = MDB_NOTLS | (opts && opts->no_sync ? MDB_NOSYNC : 0) |
                     (opts && opts->meta_no_sync ? MDB_NOMETASYNC : 0);
    MDB_txn *txn;
    MDB_envinfo info;
    int rc, dead;

    if (opts && opts->unsynced) {
        if (kchat__store_boot_known()) {
            /* the mark is on disk before the first commit it covers */
            if ((rc = kchat__store_mark_unsynced(s->path)) != KCHAT_OK)
                return rc;
            s->unsynced = true;
            flags |= MDB_NOSYNC;
        } else {
            flags |= MDB_NOMETASYNC;   /* no boot id to tell a lost boot by */
        }
    }
    rc = mdb_env_create(&s->env);
    if (rc)
        return kchat__store_err(rc);
    if ((rc = mdb_env_set_maxdbs(s->env, KCHAT_TBL__COUNT)) ||
        (rc = mdb_env_set_maxreaders(s->env, MAX_READERS)) ||
        (rc = mdb_env_set_mapsize(s->env, map_size)))
        return kchat__store_err(rc);
    rc = mdb_env_open(s->env, s->path, flags, 0600);
    if (rc)
        return open_err(rc);
    if (mdb_env_get_maxkeysize(s->env) < KCHAT_STORE_KEY_MAX)
        return KCHAT_ESTORE;
    mdb_reader_check(s->env, &dead);

    rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc)
        return kchat__store_err(rc);
    for (int i = 0; i < KCHAT_TBL__COUNT; i++) {
        rc = mdb_dbi_open(txn, table_names[i], MDB_CREATE, &s->dbi[i]);
        if (rc) {
            mdb_txn_abort(txn);
            return kchat__store_err(rc);
        }
    }
    rc = mdb_txn_commit(txn);
    if (rc)
        return kchat__store_err(rc);
    rc = mdb_env_info(s->env, &info);
    if (rc)
        return kchat__store_err(rc);
    s->map_size = info.me_mapsize;
    return KCHAT_OK;
}

int kchat_store_open(const char *dir, const kchat_store_opts *opts, kchat_store **out)
{
    kchat_store *s;
    struct stat st;
    bool lost;
    int rc;

    if (!dir || !*dir || !out)
        return KCHAT_EINVAL;
    rc = mkdir_p(dir);
    if (rc)
        return rc;
    if (stat(dir, &st) != 0)
        return KCHAT_EIO;
    if ((rc = kchat_store_unsynced_lost(dir, &lost)) != KCHAT_OK)
        return rc;
    if (lost)
        return KCHAT_EUNSYNCED;

    s = calloc(1, sizeof *s);
    if (!s)
        return KCHAT_ENOMEM;
    s->path = strdup(dir);
    if (!s->path) {
        free(s);
        return KCHAT_ENOMEM;
    }
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    rc = register_open(s);
    if (rc)
        goto err_free;
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        rc = KCHAT_ENOMEM;
        goto err_unregister;
    }
    rc = open_env(s, opts);
    if (rc)
        goto err_close_env;
    if (!s->unsynced && kchat__store_marked(dir)) {
        /* A process of this boot left it unsynced (it was killed): make
         * that durable now, since this one will not say so any more. */
        if ((rc = mdb_env_sync(s->env, 1)) != 0) {
            rc = kchat__store_err(rc);
            goto err_close_env;
        }
        if ((rc = kchat__store_mark_synced(dir)) != KCHAT_OK)
            goto err_close_env;
    }
    s->changelog = opts && opts->changelog;
    *out = s;
    return KCHAT_OK;

err_close_env:
    if (s->env)
        mdb_env_close(s->env);
    pthread_mutex_destroy(&s->lock);
err_unregister:
    unregister_open(s);
err_free:
    free(s->path);
    free(s);
    return rc;
}

void kchat_store_close(kchat_store *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    if (s->active) {
        fprintf(stderr, "kchat_store_close(%s): %u transaction(s) still open\n",
                s->path, s->active);
        abort();
    }
    pthread_mutex_unlock(&s->lock);
    if (s->unsynced) {
        int rc = mdb_env_sync(s->env, 1);

        if (rc != 0 || kchat__store_mark_synced(s->path) != KCHAT_OK)
            fprintf(stderr, "kchat_store_close(%s): %s: the unsynced mark stays\n", s->path,
                    rc != 0 ? mdb_strerror(rc) : "cannot remove the mark");
    }
    mdb_env_close(s->env);
    unregister_open(s);
    pthread_mutex_destroy(&s->lock);
    free(s->path);
    free(s);
}

const char *kchat_store_path(const kchat_store *s)
{
    return s->path;
}

/* ------------------------------------------------------------------------ */
/* Transactions */

int kchat_txn_begin(kchat_store *s, bool write, kchat_txn **out)
{
    kchat_txn *t;
    int rc;

    if (!s || !out)
        return KCHAT_EINVAL;
    t = calloc(1, sizeof *t);
    if (!t)
        return KCHAT_ENOMEM;
    t->store = s;
    t->write = write;
    t->capture = write && s->changelog;

    pthread_mutex_lock(&s->lock);
    if (write && s->writer_active && pthread_equal(s->writer, pthread_self()))
        rc = KCHAT_EINVAL;
    else
        rc = s->broken ? KCHAT_ESTORE : KCHAT_OK;
    if (rc == KCHAT_OK)
        s->active++;   /* before mdb_txn_begin: no growth from here on */
    pthread_mutex_unlock(&s->lock);
    if (rc) {
        free(t);
        return rc;
    }

    rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->mdb);

    pthread_mutex_lock(&s->lock);
    if (rc) {
        s->active--;
        if (s->active == 0 && s->grow_pending)
            grow_locked(s);
    } else if (write) {
        s->writer_active = true;
        s->writer = pthread_self();
    }
    pthread_mutex_unlock(&s->lock);
    if (rc) {
        free(t);
        return kchat__store_err(rc);
    }
    *out = t;
    return KCHAT_OK;
}

/* After the LMDB transaction of t has ended: uncount t, grow if due, free t.
 * @locality the thread holding t
 * @locks takes s->lock (must not be held) */
static void txn_end(kchat_txn *t)
{
    kchat_store *s = t->store;

    pthread_mutex_lock(&s->lock);
    if (t->write)
        s->writer_active = false;
    assert(s->active > 0);
    s->active--;
    if (s->active == 0 && s->grow_pending)
        grow_locked(s);
    pthread_mutex_unlock(&s->lock);
    kchat__txn_touch_free(t);
    kchat__outbox_free(t);
    free(t);
}

int kchat_txn_commit(kchat_txn *t)
{
    int rc = KCHAT_OK;

    if (!t)
        return KCHAT_EINVAL;
    if (t->err || !t->write) {
        rc = t->err;
        mdb_txn_abort(t->mdb);
    } else if ((rc = kchat__outbox_flush(t)) != KCHAT_OK ||
               (rc = kchat__txn_changes_commit(t)) != KCHAT_OK) {
        mdb_txn_abort(t->mdb);
    } else {
        int m = mdb_txn_commit(t->mdb);   /* frees t->mdb, even on failure */
        if (m)
            rc = kchat__txn_fail(t, m);
    }
    txn_end(t);
    return rc;
}

void kchat_txn_abort(kchat_txn *t)
{
    if (!t)
        return;
    mdb_txn_abort(t->mdb);
    txn_end(t);
}

/* ------------------------------------------------------------------------ */
/* Keys and values */

KCHAT_MUST_CHECK
static int check_key(const void *k, size_t kl)
{
    if (!k || kl == 0)
        return KCHAT_EINVAL;
    return kl > KCHAT_STORE_KEY_MAX ? KCHAT_ETOOBIG : KCHAT_OK;
}

int kchat__txn_put(kchat_txn *t, kchat_table tb, const void *k, size_t kl,
                   const void *v, size_t vl, unsigned flags, void **reserved)
{
    MDB_val key = { .mv_size = kl, .mv_data = (void *)k };
    MDB_val val = { .mv_size = vl, .mv_data = (void *)(v ? v : "") };
    int rc;

    if ((rc = kchat__txn_touch(t, tb, k, kl)) != KCHAT_OK)
        return rc;
    t->gen++;
    rc = mdb_put(t->mdb, t->store->dbi[tb], &key, &val, flags);
    if (rc)
        return kchat__txn_fail(t, rc);
    if (reserved)
        *reserved = val.mv_data;
    return KCHAT_OK;
}

int kchat_txn_get(kchat_txn *t, kchat_table tb, const void *k, size_t kl,
                  const void **v, size_t *vl)
{
    MDB_val key = { .mv_size = kl, .mv_data = (void *)k }, val;
    int rc = kchat__txn_check(t, tb, false);

    if (rc)
        return rc;
    if (!v || !vl)
        return KCHAT_EINVAL;
    if ((rc = check_key(k, kl)))
        return rc;
    rc = mdb_get(t->mdb, t->store->dbi[tb], &key, &val);
    if (rc)
        return kchat__txn_fail(t, rc);
    *v = val.mv_data;
    *vl = val.mv_size;
    return KCHAT_OK;
}

KCHAT_MUST_CHECK
static int put_checked(kchat_txn *t, kchat_table tb, const void *k, size_t kl,
                       const void *v, size_t vl, unsigned flags)
{
    int rc = kchat__txn_check(t, tb, true);

    if (rc)
        return rc;
    if ((rc = check_key(k, kl)))
        return rc;
    if (!v && vl)
        return KCHAT_EINVAL;
    if (vl >= UINT32_MAX)
        return KCHAT_ETOOBIG;
    return kchat__txn_put(t, tb, k, kl, v, vl, flags, NULL);
}

int kchat_txn_put(kchat_txn *t, kchat_table tb, const void *k, size_t kl,
                  const void *v, size_t vl)
{
    return put_checked(t, tb, k, kl, v, vl, 0);
}

int kchat_txn_put_new(kchat_txn *t, kchat_table tb, const void *k, size_t kl,
                      const void *v, size_t vl)
{
    return put_checked(t, tb, k, kl, v, vl, MDB_NOOVERWRITE);
}

int kchat_txn_del(kchat_txn *t, kchat_table tb, const void *k, size_t kl)
{
    int rc = kchat__txn_check(t, tb, true);

    if (rc)
        return rc;
    if ((rc = check_key(k, kl)))
        return rc;
    return kchat__txn_del(t, tb, k, kl);
}

int kchat__txn_del(kchat_txn *t, kchat_table tb, const void *k, size_t kl)
{
    MDB_val key = { .mv_size = kl, .mv_data = (void *)k };
    int rc;

    if ((rc = kchat__txn_touch(t, tb, k, kl)) != KCHAT_OK)
        return rc;
    t->gen++;
    rc = mdb_del(t->mdb, t->store->dbi[tb], &key, NULL);
    return rc ? kchat__txn_fail(t, rc) : KCHAT_OK;
}
