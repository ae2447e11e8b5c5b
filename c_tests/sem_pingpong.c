/* CPU per blocking wait: a thread waits in sem_wait N times (default 300), each released by
 * another thread after about 1 ms; the waiter measures its own CPU time over the waits
 * (CLOCK_THREAD_CPUTIME_ID) and prints "cpu_per_wait_ns=<ns>" to stderr. What a profiler
 * adds to a wait that blocks (a spin before it, the timing around it) shows here. */
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static sem_t go, done;
static int rounds = 300;

static long long thread_cpu_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *waiter(void *arg) {
    (void)arg;
    long long start = thread_cpu_ns();
    for (int i = 0; i < rounds; i++) sem_wait(&go);
    long long used = thread_cpu_ns() - start;
    fprintf(stderr, "cpu_per_wait_ns=%lld\n", used / rounds);
    sem_post(&done);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) rounds = atoi(argv[1]);
    sem_init(&go, 0, 0);
    sem_init(&done, 0, 0);
    pthread_t t;
    pthread_create(&t, NULL, waiter, NULL);
    for (int i = 0; i < rounds; i++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
        sem_post(&go);
    }
    sem_wait(&done);
    pthread_join(t, NULL);
    return 0;
}
