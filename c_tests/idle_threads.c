/* N threads (argv[1], default 200) that wait on a condition variable for SECONDS
 * (argv[2], default 3), as a server's idle workers do; main then wakes them and prints
 * the process's CPU time (cpu_ns=N). For scripts/bench_wall.sh: what sampling them costs. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "common.h"

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static int done;

static void *idle(void *arg) {
    (void)arg;
    pthread_mutex_lock(&m);
    while (!done) pthread_cond_wait(&c, &m);
    pthread_mutex_unlock(&m);
    return NULL;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 200;
    int seconds = argc > 2 ? atoi(argv[2]) : 3;
    pthread_t *t = calloc((size_t)n, sizeof *t);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 256 << 10);
    for (int i = 0; i < n; i++) pthread_create(&t[i], &a, idle, NULL);
    sleep((unsigned)seconds);
    pthread_mutex_lock(&m);
    done = 1;
    pthread_cond_broadcast(&c);
    pthread_mutex_unlock(&m);
    report_cpu();
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    return 0;
}
