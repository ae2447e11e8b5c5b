/* Known truth: inlined_inner is always inlined into outer_caller, where all the CPU time
 * goes; a profile must show both functions at the same addresses (an inlined call is
 * several lines of one location, innermost first). */
#include <stdio.h>
#include "common.h"

static volatile unsigned long sink;

static inline __attribute__((always_inline)) void inlined_inner(unsigned long n) {
    unsigned long x = n;
    for (unsigned long i = 0; i < n; i++) {
        x = x * 2862933555777941757UL + 3037000493UL;
        __asm__ volatile("" : "+r"(x));
    }
    sink += x;
}

__attribute__((noinline)) void outer_caller(void) {
    for (int i = 0; i < 300; i++) inlined_inner(1000000);
}

int main(void) {
    outer_caller();
    printf("inline_burn done\n");
    return 0;
}
