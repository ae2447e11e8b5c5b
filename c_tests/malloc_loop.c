/* Allocates and frees blocks of varying sizes in a loop until killed, in the main thread
 * (single-threaded) or, with argument "threads", in the main thread and two more. Prints
 * "ready" once running. A test kills it with SIGTERM, which often lands inside malloc or
 * free, with the allocator's lock held. One block in eight is of up to 256 KB, which
 * jemalloc serves under an arena's lock even in a single-threaded program. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *churn(void *arg) {
    unsigned long r = (unsigned long)arg | 1;
    void *keep[64] = {0};
    for (;;) {
        r ^= r << 13; r ^= r >> 7; r ^= r << 17;
        int i = r % 64;
        free(keep[i]);
        keep[i] = malloc(16 + (r >> 32) % ((r & 7) == 0 ? 262144 : 4096));
        if (keep[i]) ((char *)keep[i])[0] = 1;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "threads") == 0) {
        pthread_t t;
        for (long i = 1; i <= 2; i++) pthread_create(&t, NULL, churn, (void *)(i * 7919));
    }
    printf("ready\n");
    fflush(stdout);
    churn((void *)12345);
    return 0;
}
