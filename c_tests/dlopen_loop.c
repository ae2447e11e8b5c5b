/* Known truth: loads the library given as argv[1] with dlopen, calls plugin_burn (n
 * iterations), burns the same n in main_burn, and dlcloses the library, 300 times: half
 * the CPU in each. n is drawn at random for each pass (0.25M to 1.75M, mean 1M), so passes
 * do not keep step with the 4 ms timer tick and samples are independent draws.
 * Samples can arrive while the loader maps and unmaps the library. */
#include <dlfcn.h>
#include <stdlib.h>
#include "common.h"

static volatile unsigned long sink;

__attribute__((noinline)) void main_burn(unsigned long n) { sink += spin(n); }

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    unsigned long r = 0x9e3779b97f4a7c15UL;
    for (int i = 0; i < 300; i++) {
        unsigned long n = 250000 + random_below(&r, 1500000);
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 3; }
        unsigned long (*burn)(unsigned long) = (unsigned long (*)(unsigned long))dlsym(h, "plugin_burn");
        if (!burn) return 4;
        sink += burn(n);
        main_burn(n);
        dlclose(h);
    }
    report_cpu();
    printf("dlopen_loop done\n");
    return 0;
}
