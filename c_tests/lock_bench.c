/* Lock-heavy loads for benchmarks. Arguments: mode, iterations per thread.
 *   uncontended  the main thread of a single-threaded program locks and unlocks one mutex
 *                N times (default 20000000)
 *   threaded     the same loop, run in a thread the program creates (glibc then uses its
 *                multi-threaded, atomic lock paths, as in any program with threads)
 *   contended    two threads each lock, increment a shared counter, and unlock one mutex
 *                N times (tiny critical sections; default 5000000)
 *   paired       in a thread, 41 rounds of N/41 pairs through the symbols the program links
 *                (a preloaded profiler's hooks) and as many through glibc's own functions,
 *                back to back; prints the median of the rounds' time ratios (hooked / glibc)
 *                to stdout: the hooks' per-call cost, free of the host's drift */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "paired.h"

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static long iterations;
static volatile long counter;

static void *worker(void *arg) {
    (void)arg;
    for (long i = 0; i < iterations; i++) {
        pthread_mutex_lock(&m);
        counter++;
        pthread_mutex_unlock(&m);
    }
    return NULL;
}

static int (*glibc_lock)(pthread_mutex_t *), (*glibc_unlock)(pthread_mutex_t *);
static long per_round;

static void linked_pairs(void *arg) {
    (void)arg;
    for (long i = 0; i < per_round; i++) {
        pthread_mutex_lock(&m);
        counter++;
        pthread_mutex_unlock(&m);
    }
}

static void glibc_pairs(void *arg) {
    (void)arg;
    for (long i = 0; i < per_round; i++) {
        glibc_lock(&m);
        counter++;
        glibc_unlock(&m);
    }
}

static void *paired(void *arg) {
    (void)arg;
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    glibc_lock = libc ? (int (*)(pthread_mutex_t *))dlsym(libc, "pthread_mutex_lock") : NULL;
    glibc_unlock = libc ? (int (*)(pthread_mutex_t *))dlsym(libc, "pthread_mutex_unlock") : NULL;
    if (!glibc_lock || !glibc_unlock) exit(2);
    per_round = iterations / ROUNDS;
    paired_rounds(linked_pairs, glibc_pairs, NULL);
    counter = 2 * per_round * ROUNDS;
    return NULL;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "uncontended";
    if (strcmp(mode, "paired") == 0) {
        iterations = argc > 2 ? atol(argv[2]) : 100000000;
        pthread_t t;
        pthread_create(&t, NULL, paired, NULL);
        pthread_join(t, NULL);
        return 0;
    }
    int threads = strcmp(mode, "contended") == 0 ? 2 : strcmp(mode, "threaded") == 0 ? 1 : 0;
    iterations = argc > 2 ? atol(argv[2]) : (threads == 2 ? 5000000 : 20000000);
    if (threads == 0) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        worker(NULL);
        clock_gettime(CLOCK_MONOTONIC, &b);
        /* The loop alone, without the process's start and exit (scripts/bench_core.sh). */
        fprintf(stderr, "loop_ns=%.0f\n", (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec));
    } else {
        pthread_t t[2];
        for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, NULL);
        for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    }
    long expected = (threads == 2 ? 2 : 1) * iterations;
    printf("lock_bench %ld\n", counter);
    return counter == expected ? 0 : 1;
}
