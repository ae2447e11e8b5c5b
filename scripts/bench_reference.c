/* Reference preloads for the benchmark scripts: what any profiler of this kind costs before
 * it records anything, measured beside rprof in the same run.
 *   -DHELPER_THREAD   starts one idle thread at load, as rprof's collector does (glibc then
 *                     leaves its single-threaded fast paths for good);
 *   -DFORWARD_LOCKS   also interposes pthread_mutex_lock/unlock and only forwards them to
 *                     the next definition (the cost of the extra call alone);
 *   -DFORWARD_MALLOC  interposes malloc, free, calloc and realloc and only forwards them to
 *                     glibc's own entry points. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

#ifdef HELPER_THREAD
static void *idle(void *arg) {
    for (;;) pause();
    return arg;
}

__attribute__((constructor)) static void start_helper(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, idle, NULL) == 0) pthread_detach(t);
}
#endif

#ifdef FORWARD_LOCKS
static int (*next_lock)(pthread_mutex_t *), (*next_unlock)(pthread_mutex_t *);

__attribute__((constructor)) static void resolve(void) {
    next_lock = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_lock");
    next_unlock = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_unlock");
}

int pthread_mutex_lock(pthread_mutex_t *m) { return next_lock(m); }
int pthread_mutex_unlock(pthread_mutex_t *m) { return next_unlock(m); }
#endif

#ifdef FORWARD_MALLOC
#include <stddef.h>
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

void *malloc(size_t n) { return __libc_malloc(n); }
void free(void *p) { __libc_free(p); }
void *calloc(size_t n, size_t size) { return __libc_calloc(n, size); }
void *realloc(void *p, size_t n) { return __libc_realloc(p, n); }
#endif
