/* Lock-heavy loads for benchmarks. Arguments: mode, iterations per thread.
 *   uncontended  the main thread of a single-threaded program locks and unlocks one mutex
 *                N times (default 20000000)
 *   threaded     the same loop, run in a thread the program creates (glibc then uses its
 *                multi-threaded, atomic lock paths, as in any program with threads)
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
    const char *mode = argc > 1 ? argv[1] : "uncontended";
    int threads = strcmp(mode, "contended") == 0 ? 2 : strcmp(mode, "threaded") == 0 ? 1 : 0;
    iterations = argc > 2 ? atol(argv[2]) : (threads == 2 ? 5000000 : 20000000);
    if (threads == 0) {
        worker(NULL);
    } else {
        pthread_t t[2];
        for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, NULL);
        for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    }
    long expected = (threads == 2 ? 2 : 1) * iterations;
    printf("lock_bench %ld\n", counter);
    return counter == expected ? 0 : 1;
}
