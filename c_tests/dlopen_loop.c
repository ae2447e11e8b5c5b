/* Known truth: loads the library given as argv[1] with dlopen, calls plugin_burn (n
 * iterations), burns the same n in main_burn, and dlcloses the library, 300 times: half
 * the CPU in each. n is drawn at random for each pass (0.25M to 1.75M, mean 1M), so passes
 * do not keep step with the 4 ms timer tick and samples are independent draws.
 * Samples can arrive while the loader maps and unmaps the library.
 * With a second argument n, each pass also has plugin_alloc allocate n blocks of 64 bytes
 * and keep n / 3 of them live to the end (known truth for the heap profile at
 * RPROF_HEAP_RATE=1: 300 n allocations and 100 n live blocks under plugin_alloc). A third
 * argument sets the number of passes (default 300; the truth scales with it). A fourth,
 * `contend`, has each pass call plugin_contend: one wait of about 20 ms for a mutex that a
 * thread of the library holds (known truth at RPROF_BLOCK_RATE=1 and
 * RPROF_MUTEX_FRACTION=1: one contention a pass at plugin_contend, as long in all as the
 * wait_ns=N printed to stderr, and as long at plugin_holder in the mutex profile). */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"

static volatile unsigned long sink;

__attribute__((noinline)) void main_burn(unsigned long n) { sink += spin(n); }

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int allocs = argc > 2 ? atoi(argv[2]) : 0;
    int passes = argc > 3 ? atoi(argv[3]) : 300;
    int contend = argc > 4 && strcmp(argv[4], "contend") == 0;
    long long waited = 0;
    if (allocs < 0 || allocs > 1024 || passes < 1) return 2;
    void **kept = calloc((size_t)passes * (allocs / 3) + 1, sizeof(void *));
    if (!kept) return 5;
    unsigned long r = 0x9e3779b97f4a7c15UL;
    for (int i = 0; i < passes; i++) {
        unsigned long n = argc > 3 ? 0 : 250000 + random_below(&r, 1500000);
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 3; }
        unsigned long (*burn)(unsigned long) = (unsigned long (*)(unsigned long))dlsym(h, "plugin_burn");
        if (!burn) return 4;
        sink += burn(n);
        if (allocs > 0) {
            void (*alloc)(int, void **) = (void (*)(int, void **))dlsym(h, "plugin_alloc");
            if (!alloc) return 4;
            alloc(allocs, kept + (size_t)i * (allocs / 3));
        }
        if (contend) {
            long long (*wait)(void) = (long long (*)(void))dlsym(h, "plugin_contend");
            if (!wait) return 4;
            long long ns = wait();
            if (ns < 0) return 6;
            waited += ns;
        }
        main_burn(n);
        dlclose(h);
    }
    report_cpu();
    if (contend) fprintf(stderr, "wait_ns=%lld\n", waited);
    printf("dlopen_loop done\n");
    return 0;
}
