/* The in-process paired measurement shared by lock_bench and malloc_bench: ROUNDS rounds,
 * each timing the hooked loop and then glibc's own, back to back; prints the median of
 * the rounds' time ratios (hooked / glibc's own). */
#ifndef RPROF_PAIRED_H
#define RPROF_PAIRED_H
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ROUNDS 41

static inline double paired_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static inline int paired_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs hooked(ctx) and own(ctx) alternately ROUNDS times and prints the median ratio. */
static inline void paired_rounds(void (*hooked)(void *), void (*own)(void *), void *ctx) {
    double ratio[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = paired_now();
        hooked(ctx);
        double t1 = paired_now();
        own(ctx);
        double t2 = paired_now();
        ratio[r] = (t1 - t0) / (t2 - t1);
    }
    qsort(ratio, ROUNDS, sizeof ratio[0], paired_cmp);
    printf("%.4f\n", ratio[ROUNDS / 2]);
}
#endif
