/* Known truth for the exact counters across thread exits: 1100 threads alive at once (more
 * than rprof's 1024 static counter blocks), then 20 rounds of 50 short threads (blocks of
 * exited threads pass to new ones). Every thread makes K (argument, default 100) mallocs
 * of 24 bytes and frees them all, so two runs that differ only in K differ by exactly
 * 2100 x K in both Mallocs and Frees. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static int k = 100;
static pthread_barrier_t all_alive;

static void work(void) {
    void *p[1000];
    for (int i = 0; i < k; i++) {
        p[i] = malloc(24);
        if (!p[i]) exit(2);
    }
    for (int i = 0; i < k; i++) free(p[i]);
}

static void *crowd(void *arg) {
    (void)arg;
    pthread_barrier_wait(&all_alive);
    work();
    return NULL;
}

static void *short_lived(void *arg) {
    (void)arg;
    work();
    return NULL;
}

static void start_and_join(int n, void *(*fn)(void *)) {
    static pthread_t t[1100];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i], &attr, fn, NULL) != 0) exit(3);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    pthread_attr_destroy(&attr);
}

int main(int argc, char **argv) {
    if (argc > 1) k = atoi(argv[1]);
    if (k < 0 || k > 1000) return 2;
    pthread_barrier_init(&all_alive, NULL, 1100);
    start_and_join(1100, crowd);
    for (int round = 0; round < 20; round++) start_and_join(50, short_lived);
    printf("heap_thread_churn done\n");
    return 0;
}
