/* Known truth: loads the library given as argv[1] with dlopen, calls plugin_burn (1 unit),
 * burns 1 unit in main_burn, and dlcloses the library, 300 times: half the CPU in each.
 * Samples can arrive while the loader maps and unmaps the library. */
#include <dlfcn.h>
#include <stdlib.h>
#include "common.h"

static volatile unsigned long sink;

__attribute__((noinline)) void main_burn(void) { sink += spin(1000000); }

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    for (int i = 0; i < 300; i++) {
        void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 3; }
        unsigned long (*burn)(unsigned long) = (unsigned long (*)(unsigned long))dlsym(h, "plugin_burn");
        if (!burn) return 4;
        sink += burn(1000000);
        main_burn();
        dlclose(h);
    }
    report_cpu();
    printf("dlopen_loop done\n");
    return 0;
}
