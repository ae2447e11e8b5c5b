/* Malloc-heavy load for benchmarks: each thread keeps a window of live blocks and replaces
 * a random one OPS times with a block of random size 16..1040 bytes (the block is written
 * to, as real code would). Arguments: OPS per thread (default 10000000), threads
 * (default 1), window (default 4096 blocks per thread).
 * With "paired" as the first argument (then OPS, window, threads): in each thread (default
 * 1), 41 rounds of OPS/41 replacements through the malloc and free the program links (a
 * preloaded profiler's hooks) and as many through glibc's own, each on its own window,
 * back to back, the threads in step (a barrier before each half-round, outside the timed
 * part); prints the median of all the rounds' time ratios (linked / glibc's own). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "paired.h"


static long ops = 10000000;
static long window = 4096;

static void *worker(void *arg) {
    unsigned long x = (unsigned long)(size_t)arg * 0x9e3779b97f4a7c15UL + 1;
    void **slots = calloc(window, sizeof(void *));
    unsigned long sum = 0;
    for (long i = 0; i < ops; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t slot = x % window;
        size_t size = 16 + (x >> 20) % 1025;
        free(slots[slot]);
        char *p = malloc(size);
        p[0] = (char)i;
        p[size - 1] = (char)i;
        slots[slot] = p;
        sum += (unsigned char)p[0];
    }
    for (long i = 0; i < window; i++) free(slots[i]);
    free(slots);
    return (void *)sum;
}

typedef struct {
    void **slots;
    unsigned long x;
    void *(*alloc)(size_t);
    void (*release)(void *);
} Window;

/* n replacements in w; the same work as worker's loop. */
static unsigned long replace(Window *w, long n) {
    unsigned long sum = 0;
    for (long i = 0; i < n; i++) {
        w->x ^= w->x << 13; w->x ^= w->x >> 7; w->x ^= w->x << 17;
        size_t slot = w->x % window;
        size_t size = 16 + (w->x >> 20) % 1025;
        w->release(w->slots[slot]);
        char *p = w->alloc(size);
        p[0] = (char)i;
        p[size - 1] = (char)i;
        w->slots[slot] = p;
        sum += (unsigned char)p[0];
    }
    return sum;
}

static long per_round;
static int paired_threads = 1;
static pthread_barrier_t half_round;
static double ratios[64 * ROUNDS];

static void *paired(void *arg) {
    int index = (int)(size_t)arg;
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    void *(*glibc_malloc)(size_t) = libc ? (void *(*)(size_t))dlsym(libc, "malloc") : NULL;
    void (*glibc_free)(void *) = libc ? (void (*)(void *))dlsym(libc, "free") : NULL;
    if (!glibc_malloc || !glibc_free) exit(2);
    unsigned long seed = 1 + (unsigned long)index * 0x9e3779b97f4a7c15UL;
    Window linked = {calloc(window, sizeof(void *)), seed, malloc, free};
    Window own = {glibc_malloc(window * sizeof(void *)), seed, glibc_malloc, glibc_free};
    memset(own.slots, 0, window * sizeof(void *));
    /* Fill both windows first, so that every round replaces live blocks. */
    unsigned long sum = replace(&linked, window * 4) + replace(&own, window * 4);
    /* Both windows go through the same code: the Window says which malloc and free. */
    for (int r = 0; r < ROUNDS; r++) {
        pthread_barrier_wait(&half_round);
        double t0 = paired_now();
        sum += replace(&linked, per_round);
        double t1 = paired_now();
        pthread_barrier_wait(&half_round);
        double t2 = paired_now();
        sum += replace(&own, per_round);
        double t3 = paired_now();
        ratios[index * ROUNDS + r] = (t1 - t0) / (t3 - t2);
    }
    for (long i = 0; i < window; i++) {
        free(linked.slots[i]);
        glibc_free(own.slots[i]);
    }
    free(linked.slots);
    glibc_free(own.slots);
    return (void *)sum;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "paired") == 0) {
        if (argc > 2) ops = atol(argv[2]);
        if (argc > 3) window = atol(argv[3]);
        if (argc > 4) paired_threads = atoi(argv[4]);
        if (paired_threads < 1 || paired_threads > 64) return 2;
        per_round = ops / ROUNDS;
        pthread_barrier_init(&half_round, NULL, (unsigned)paired_threads);
        pthread_t t[64];
        for (int i = 0; i < paired_threads; i++)
            pthread_create(&t[i], NULL, paired, (void *)(size_t)i);
        for (int i = 0; i < paired_threads; i++) pthread_join(t[i], NULL);
        int n = paired_threads * ROUNDS;
        qsort(ratios, (size_t)n, sizeof ratios[0], paired_cmp);
        printf("%.4f\n", ratios[n / 2]);
        return 0;
    }
    if (argc > 1) ops = atol(argv[1]);
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    if (argc > 3) window = atol(argv[3]);
    pthread_t t[64];
    for (int i = 0; i < threads && i < 64; i++) pthread_create(&t[i], NULL, worker, (void *)(size_t)(i + 1));
    unsigned long total = 0;
    for (int i = 0; i < threads && i < 64; i++) {
        void *r;
        pthread_join(t[i], &r);
        total += (unsigned long)r;
    }
    printf("malloc_bench %lu\n", total % 7);
    return 0;
}
