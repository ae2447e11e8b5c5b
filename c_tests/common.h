/* Helpers shared by the c_tests programs. */
#ifndef RPROF_CTEST_COMMON_H
#define RPROF_CTEST_COMMON_H
#include <stdio.h>
#include <sys/resource.h>

/* A CPU-bound loop the compiler can neither remove nor hoist out of a caller's loop (the
 * empty asm makes every call observable); n iterations take about 1.3 ns each here. */
__attribute__((noinline)) static unsigned long spin(unsigned long n) {
    unsigned long x = n;
    for (unsigned long i = 0; i < n; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

/* A pseudo-random number below `bound` from the xorshift state *s (never 0). */
static inline unsigned long random_below(unsigned long *s, unsigned long bound) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s % bound;
}

/* Prints the process's CPU time so far (user + system, getrusage) to stderr as cpu_ns=N. */
static void report_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long long ns = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
                   (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
    fprintf(stderr, "cpu_ns=%lld\n", ns);
}
#endif
