/* Malloc-heavy load for benchmarks: each thread keeps a window of live blocks and replaces
 * a random one OPS times with a block of random size 16..1040 bytes (the block is written
 * to, as real code would). Arguments: OPS per thread (default 10000000), threads
 * (default 1), window (default 4096 blocks per thread). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static long ops = 10000000;
static long window = 4096;

static void *worker(void *arg) {
    unsigned long x = (unsigned long)(size_t)arg * 0x9e3779b97f4a7c15UL + 1;
    void **slots = calloc(window, sizeof(void *));
    unsigned long sum = 0;
    for (long i = 0; i < ops; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        size_t slot = x % window;
        size_t size = 16 + (x >> 20) % 1025;
        free(slots[slot]);
        char *p = malloc(size);
        p[0] = (char)i;
        p[size - 1] = (char)i;
        slots[slot] = p;
        sum += (unsigned char)p[0];
    }
    for (long i = 0; i < window; i++) free(slots[i]);
    free(slots);
    return (void *)sum;
}

int main(int argc, char **argv) {
    if (argc > 1) ops = atol(argv[1]);
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    if (argc > 3) window = atol(argv[3]);
    pthread_t t[64];
    for (int i = 0; i < threads && i < 64; i++) pthread_create(&t[i], NULL, worker, (void *)(size_t)(i + 1));
    unsigned long total = 0;
    for (int i = 0; i < threads && i < 64; i++) {
        void *r;
        pthread_join(t[i], &r);
        total += (unsigned long)r;
    }
    printf("malloc_bench %lu\n", total % 7);
    return 0;
}
