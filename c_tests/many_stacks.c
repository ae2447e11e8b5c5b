/* Many distinct stacks, for timing the profile server on a loaded profile: 4096 call
 * paths (12 levels, each through one of two functions) each allocate and keep 4 KiB, then
 * keep burning CPU along the same paths until stdin closes; prints "ready" once the
 * allocations are made. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#define DEPTH 12
static volatile unsigned long sink;
static volatile int stop;
void *keep[1 << DEPTH]; /* not static: the blocks stay observable */

static void step(int level, unsigned path, int alloc);

__attribute__((noinline)) static void left(int level, unsigned path, int alloc) { step(level + 1, path, alloc); sink++; }
__attribute__((noinline)) static void right(int level, unsigned path, int alloc) { step(level + 1, path, alloc); sink += 2; }

static void step(int level, unsigned path, int alloc) {
    if (level == DEPTH) {
        if (alloc) { keep[path] = malloc(4096); memset(keep[path], 1, 4096); }
        else for (int i = 0; i < 2000; i++) sink += i;
        return;
    }
    if (path >> level & 1) right(level, path, alloc); else left(level, path, alloc);
}

static void *burn(void *arg) {
    (void)arg;
    for (unsigned p = 0; !stop; p = (p + 1) & ((1u << DEPTH) - 1)) step(0, p, 0);
    return NULL;
}

int main(void) {
    for (unsigned p = 0; p < 1u << DEPTH; p++) step(0, p, 1);
    pthread_t t;
    pthread_create(&t, NULL, burn, NULL);
    printf("ready\n");
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {}
    stop = 1;
    pthread_join(t, NULL);
    return 0;
}
