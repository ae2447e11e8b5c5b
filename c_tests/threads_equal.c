/* Known truth: four threads named worker-0..3 each do the same work, each in its own
 * function (worker_a..worker_d), so each has a quarter of the CPU time. The main thread
 * only waits. Argument: units of 1M iterations per thread (default 400). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include "common.h"

static int units = 400;
static volatile unsigned long sink;

#define WORKER(name) \
    __attribute__((noinline)) void *name(void *arg) { \
        (void)arg; \
        for (int i = 0; i < units; i++) sink += spin(1000000); \
        return NULL; \
    }
WORKER(worker_a)
WORKER(worker_b)
WORKER(worker_c)
WORKER(worker_d)

int main(int argc, char **argv) {
    if (argc > 1) units = atoi(argv[1]);
    void *(*fns[4])(void *) = {worker_a, worker_b, worker_c, worker_d};
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        if (pthread_create(&t[i], NULL, fns[i], NULL) != 0) return 2;
        char name[16];
        snprintf(name, sizeof name, "worker-%d", i);
        pthread_setname_np(t[i], name);
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    report_cpu();
    printf("threads_equal done\n");
    return 0;
}
