/* Known truth: two threads each load and unload a library of their own (argv[1] and
 * argv[2], two copies of plugin.c's), argv[3] times (default 1000). Each pass has
 * plugin_alloc allocate 30 blocks of 64 bytes and keep 10, which the thread frees before
 * dlclose: at RPROF_HEAP_RATE=1, 2 x 30 x passes allocations under plugin_alloc, none
 * live at the end. The loader frees its own blocks for one library (inside dlclose,
 * holding its lock) while the other thread's dlclose pins samples: a deadlock once. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static int passes = 1000;

static void *loop(void *arg) {
    const char *path = arg;
    void *keep[16];
    for (int i = 0; i < passes; i++) {
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "dlopen: %s\n", dlerror());
            exit(3);
        }
        void (*alloc)(int, void **) = (void (*)(int, void **))dlsym(h, "plugin_alloc");
        if (!alloc) exit(4);
        alloc(30, keep);
        for (int k = 0; k < 10; k++) free(keep[k]);
        dlclose(h);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    if (argc > 3) passes = atoi(argv[3]);
    pthread_t a, b;
    pthread_create(&a, NULL, loop, argv[1]);
    pthread_create(&b, NULL, loop, argv[2]);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    printf("dlopen_threads done\n");
    return 0;
}
