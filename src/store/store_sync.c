/*
 * The unsynced mark (kchat_store_opts::unsynced): a store that commits
 * without fsync says so in a file of its directory, `unsynced`, holding
 * the id of the boot it was opened in. While the machine stays up the
 * kernel keeps every write a commit made, so a process that dies loses
 * nothing; a machine that restarts may have lost or torn any commit since
 * the last sync. The next boot finds a mark naming another boot and
 * refuses the store (KCHAT_EUNSYNCED) until its owner sets it aside.
 *
 * Order: the mark is written and synced (file, then directory) before the
 * environment's first commit; it is removed only after a sync of the
 * whole environment succeeded, at close.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "store_int.h"

#define MARK_NAME "unsynced"
#define BOOT_ID_PATH "/proc/sys/kernel/random/boot_id"
#define BOOT_ID_MAX 64

/* The first line of the file @p path, trailing blanks cut, into @p out
 * (BOOT_ID_MAX bytes); its length, or -1 when the file cannot be opened
 * (errno says why). */
static long first_line(const char *path, char out[BOOT_ID_MAX])
{
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL)
        return -1;
    n = fread(out, 1, BOOT_ID_MAX - 1, f);
    fclose(f);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        n--;
    out[n] = '\0';
    return (long)n;
}

/* This boot's id (Linux: a random UUID made at each boot) into @p out.
 * KCHAT_ENOTFOUND when the system gives none. */
KCHAT_MUST_CHECK
static int boot_id(char out[BOOT_ID_MAX])
{
    return first_line(BOOT_ID_PATH, out) > 0 ? KCHAT_OK : KCHAT_ENOTFOUND;
}

/* fsync() the directory @p dir, so that a file made or removed in it
 * lasts. */
KCHAT_MUST_CHECK
static int dir_sync(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = KCHAT_OK;

    if (fd < 0)
        return KCHAT_EIO;
    if (fsync(fd) != 0)
        rc = KCHAT_EIO;
    close(fd);
    return rc;
}

static void mark_path(const char *dir, char *path, size_t len)
{
    snprintf(path, len, "%s/" MARK_NAME, dir);
}

bool kchat__store_boot_known(void)
{
    char id[BOOT_ID_MAX];

    return boot_id(id) == KCHAT_OK;
}

bool kchat__store_marked(const char *dir)
{
    char path[4096];

    mark_path(dir, path, sizeof(path));
    return access(path, F_OK) == 0;
}

int kchat_store_unsynced_lost(const char *dir, bool *lost)
{
    char path[4096], mark[BOOT_ID_MAX], now[BOOT_ID_MAX];
    long n;

    if (dir == NULL || lost == NULL)
        return KCHAT_EINVAL;
    *lost = false;
    mark_path(dir, path, sizeof(path));
    if ((n = first_line(path, mark)) < 0)
        return errno == ENOENT ? KCHAT_OK : KCHAT_EIO;
    /* A mark that names no boot (not one kchat__store_mark_unsynced()
     * renamed into place), or a system that now gives no boot id: which
     * boot wrote it cannot be told, so it is taken as lost. */
    if (n == 0 || boot_id(now) != KCHAT_OK) {
        *lost = true;
        return KCHAT_OK;
    }
    *lost = strcmp(mark, now) != 0;
    return KCHAT_OK;
}

int kchat__store_mark_unsynced(const char *dir)
{
    char path[4096], tmp[4200], id[BOOT_ID_MAX];
    size_t n;
    int fd, rc;

    if ((rc = boot_id(id)) != KCHAT_OK)
        return rc;
    /* Made aside and renamed over the old one: a mark a process of this
     * boot left (it was killed) is never, not even for a moment, empty. */
    mark_path(dir, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == ENOSPC ? KCHAT_ENOSPC : KCHAT_EIO;
    n = strlen(id);
    id[n++] = '\n';
    rc = write(fd, id, n) == (ssize_t)n && fsync(fd) == 0 ? KCHAT_OK : KCHAT_EIO;
    close(fd);
    if (rc == KCHAT_OK && rename(tmp, path) != 0)
        rc = KCHAT_EIO;
    if (rc != KCHAT_OK) {
        unlink(tmp);
        return rc;
    }
    return dir_sync(dir);
}

int kchat__store_mark_synced(const char *dir)
{
    char path[4096];

    mark_path(dir, path, sizeof(path));
    if (unlink(path) != 0)
        return errno == ENOENT ? KCHAT_OK : KCHAT_EIO;
    return dir_sync(dir);
}
