/* A thread that names itself ("late") 50 ms after it starts, then sleeps for SECONDS
 * (argv[1], default 1.5) in 10 ms naps: nearly all its wall time is under its name. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

static double seconds = 1.5;

static void nap(long ns) {
    struct timespec t = {0, ns};
    while (nanosleep(&t, &t) != 0) {
    }
}

static void *late(void *arg) {
    (void)arg;
    nap(50000000);
    pthread_setname_np(pthread_self(), "late");
    for (long i = 0; i < (long)(seconds * 100); i++) nap(10000000);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) seconds = atof(argv[1]);
    pthread_t t;
    pthread_create(&t, NULL, late, NULL);
    pthread_join(t, NULL);
    return 0;
}
