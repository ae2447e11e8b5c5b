/* Lock-heavy loads for benchmarks. Arguments: mode, iterations per thread.
 *   uncontended  one thread locks and unlocks one mutex N times (default 20000000)
 *   contended    two threads each lock, increment a shared counter, and unlock one mutex
 *                N times (tiny critical sections; default 5000000) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static long iterations;
static volatile long counter;

static void *worker(void *arg) {
    (void)arg;
    for (long i = 0; i < iterations; i++) {
        pthread_mutex_lock(&m);
        counter++;
        pthread_mutex_unlock(&m);
    }
    return NULL;
}

int main(int argc, char **argv) {
    int contended = argc > 1 && strcmp(argv[1], "contended") == 0;
    iterations = argc > 2 ? atol(argv[2]) : (contended ? 5000000 : 20000000);
    if (contended) {
        pthread_t a, b;
        pthread_create(&a, NULL, worker, NULL);
        pthread_create(&b, NULL, worker, NULL);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
    } else {
        worker(NULL);
    }
    printf("lock_bench %ld\n", counter);
    return counter == (contended ? 2 : 1) * iterations ? 0 : 1;
}
