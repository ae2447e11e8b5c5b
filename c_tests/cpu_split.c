/* Known truth: under one caller, burn_three does 3 units of work for each unit burn_one
 * does, so their CPU shares are 3:1. Prints the process CPU time (getrusage) to stderr as
 * "cpu_ns=N" so tests can compare it with the profile. Argument: total units (default 400). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

static volatile unsigned long sink;

__attribute__((noinline)) static unsigned long spin(unsigned long n) {
    unsigned long x = n;
    for (unsigned long i = 0; i < n; i++) x = x * 6364136223846793005UL + 1442695040888963407UL;
    return x;
}

__attribute__((noinline)) void burn_one(void) { sink += spin(1000000); }
__attribute__((noinline)) void burn_three(void) { sink += spin(3000000); }

__attribute__((noinline)) void work(int units) {
    for (int i = 0; i < units; i++) {
        burn_three();
        burn_one();
    }
}

int main(int argc, char **argv) {
    int units = argc > 1 ? atoi(argv[1]) : 400;
    work(units / 4);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long long ns = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
                   (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
    fprintf(stderr, "cpu_ns=%lld\n", ns);
    printf("done %lu\n", sink & 1);
    return 0;
}
