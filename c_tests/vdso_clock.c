/* Known truth: nearly all CPU time is spent reading the clock, which glibc's clock_gettime
 * does inside the kernel's vDSO (an ELF image in memory with no file behind it). Runs
 * about 0.5 s of CPU. */
#include <stdio.h>
#include <time.h>

__attribute__((noinline)) static long read_clock_many(long n) {
    struct timespec t;
    long odd = 0;
    for (long i = 0; i < n; i++) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        odd += t.tv_nsec & 1;
    }
    return odd;
}

int main(void) {
    struct timespec start, now;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &start);
    long odd = 0;
    do {
        odd += read_clock_many(1000000);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    } while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) < 500000000L);
    printf("vdso_clock %ld\n", odd >= 0);
    return 0;
}
