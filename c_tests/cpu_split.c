/* Known truth: under one caller (work), burn_three does 3 units of work for each unit
 * burn_one does, so their CPU shares are 3:1. Argument: units of 1M iterations (default 400).
 * Each pass draws its unit length at random (0.25M to 1.75M iterations, mean 1M), so the
 * passes do not keep step with the 4 ms timer tick and the samples are independent draws;
 * the 3:1 ratio holds within every pass.
 * Prints the process CPU time to stderr (cpu_ns=N) and one line to stdout. */
#include <stdlib.h>
#include "common.h"

static volatile unsigned long sink;

__attribute__((noinline)) void burn_one(unsigned long n) { sink += spin(n); }
__attribute__((noinline)) void burn_three(unsigned long n) { sink += spin(3 * n); }

__attribute__((noinline)) void work(int units) {
    unsigned long r = 0x2545f4914f6cdd1dUL, done = 0, total = (unsigned long)units * 1000000UL / 4;
    while (done < total) {
        unsigned long n = 250000 + random_below(&r, 1500000);
        burn_three(n);
        burn_one(n);
        done += n;
    }
}

int main(int argc, char **argv) {
    work(argc > 1 ? atoi(argv[1]) : 400);
    report_cpu();
    printf("cpu_split done %lu\n", sink & 1);
    return 0;
}
