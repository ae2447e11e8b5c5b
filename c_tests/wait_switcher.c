/* A hazard for wall sampling: threads that go from one short wait to the next with almost
 * no computing between (nanosleep 100 µs, poll 200 µs, a pipe read with a writer), so
 * that a sampler that sees one running and signals it is likely to reach it in its next
 * wait. Every call that a signal could interrupt counts EINTR; runs SECONDS (argv[1],
 * default 2) with THREADS (argv[2], default 4) threads, then prints eintr=N to stderr. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static atomic_int eintr, stop;

static void *switcher(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        struct timespec t = {0, 100000};
        if (nanosleep(&t, NULL) != 0 && errno == EINTR) atomic_fetch_add(&eintr, 1);
        struct pollfd p = {-1, 0, 0};
        /* poll of no fd for 1 ms at most (rounded up from 200 µs) */
        if (poll(&p, 1, 1) == -1 && errno == EINTR) atomic_fetch_add(&eintr, 1);
    }
    return NULL;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 2;
    int n = argc > 2 ? atoi(argv[2]) : 4;
    pthread_t t[64];
    if (n > 64) n = 64;
    for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, switcher, NULL);
    struct timespec s = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    while (nanosleep(&s, &s) != 0 && errno == EINTR) atomic_fetch_add(&eintr, 1);
    atomic_store(&stop, 1);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    fprintf(stderr, "eintr=%d\n", atomic_load(&eintr));
    return 0;
}
