/* Known truth: under one caller (work), burn_three does 3 units of work for each unit
 * burn_one does, so their CPU shares are 3:1. Argument: units of 1M iterations (default 400).
 * Prints the process CPU time to stderr (cpu_ns=N) and one line to stdout. */
#include <stdlib.h>
#include "common.h"

static volatile unsigned long sink;

__attribute__((noinline)) void burn_one(void) { sink += spin(1000000); }
__attribute__((noinline)) void burn_three(void) { sink += spin(3000000); }

__attribute__((noinline)) void work(int units) {
    for (int i = 0; i < units / 4; i++) {
        burn_three();
        burn_one();
    }
}

int main(int argc, char **argv) {
    work(argc > 1 ? atoi(argv[1]) : 400);
    report_cpu();
    printf("cpu_split done %lu\n", sink & 1);
    return 0;
}
