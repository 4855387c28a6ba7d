/*
 * Linked into every executable of a SANITIZE=thread build (never into a
 * normal build): see the comment below. Not part of libkchat.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
/*
 * ThreadSanitizer build only. Debian's librdkafka creates its threads and
 * locks with C11 <threads.h> (thrd_create, mtx_lock, cnd_wait from glibc),
 * which glibc implements by calling its internal pthread functions directly,
 * past TSan's interceptors: TSan then crashes on the first allocation in a
 * librdkafka thread it never saw start, and could not see librdkafka's
 * locks. These definitions in the executable interpose glibc's for
 * librdkafka and route them through the intercepted pthread calls.
 * (mtx_t / cnd_t / thrd_t are glibc's pthread types in a wrapper.)
 */
#include <errno.h>
#include <threads.h>

struct tsan_thrd { thrd_start_t fn; void *arg; };

static void *tsan_thrd_tramp(void *p)
{
    struct tsan_thrd t = *(struct tsan_thrd *)p;
    free(p);
    return (void *)(intptr_t)t.fn(t.arg);
}

int thrd_create(thrd_t *thr, thrd_start_t fn, void *arg)
{
    struct tsan_thrd *t = malloc(sizeof(*t));
    if (!t)
        return thrd_nomem;
    *t = (struct tsan_thrd){fn, arg};
    int rc = pthread_create((pthread_t *)thr, NULL, tsan_thrd_tramp, t);
    if (rc) {
        free(t);
        return rc == ENOMEM ? thrd_nomem : thrd_error;
    }
    return thrd_success;
}

int thrd_join(thrd_t thr, int *res)
{
    void *r;
    if (pthread_join((pthread_t)thr, &r))
        return thrd_error;
    if (res)
        *res = (int)(intptr_t)r;
    return thrd_success;
}

int mtx_init(mtx_t *m, int type)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    if (type & mtx_recursive)
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    int rc = pthread_mutex_init((pthread_mutex_t *)m, &a);
    pthread_mutexattr_destroy(&a);
    return rc ? thrd_error : thrd_success;
}

int mtx_lock(mtx_t *m)
{
    return pthread_mutex_lock((pthread_mutex_t *)m) ? thrd_error : thrd_success;
}

int mtx_unlock(mtx_t *m)
{
    return pthread_mutex_unlock((pthread_mutex_t *)m) ? thrd_error : thrd_success;
}

void mtx_destroy(mtx_t *m)
{
    pthread_mutex_destroy((pthread_mutex_t *)m);
}

int cnd_init(cnd_t *c)
{
    return pthread_cond_init((pthread_cond_t *)c, NULL) ? thrd_error : thrd_success;
}

int cnd_signal(cnd_t *c)
{
    return pthread_cond_signal((pthread_cond_t *)c) ? thrd_error : thrd_success;
}

int cnd_broadcast(cnd_t *c)
{
    return pthread_cond_broadcast((pthread_cond_t *)c) ? thrd_error : thrd_success;
}

int cnd_wait(cnd_t *c, mtx_t *m)
{
    return pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m) ? thrd_error
                                                                         : thrd_success;
}

int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts)
{
    int rc = pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts);
    return rc == 0 ? thrd_success : rc == ETIMEDOUT ? thrd_timedout : thrd_error;
}

void cnd_destroy(cnd_t *c)
{
    pthread_cond_destroy((pthread_cond_t *)c);
}

/* librdkafka is not instrumented: its reference counts are atomics TSan
 * cannot see, so a buffer or topic freed by whichever thread drops the last
 * reference looks like a race with every earlier user (e.g. a worker that
 * read a message payload, then destroyed the message). Reports with a
 * librdkafka frame in either access are dropped; races between two accesses
 * in our own code are still reported. */
const char *__tsan_default_suppressions(void);
const char *__tsan_default_suppressions(void)
{
    return "race:librdkafka.so.1\n";
}
