/* A thread with a 16 KiB stack that recurses until less than MARGIN bytes of its stack
 * are left, then burns CPU there (about 0.4 s): timer signals land while the stack is
 * nearly full. The kernel needs more than MARGIN bytes to deliver a signal on this stack
 * (1.5 KiB to 3.4 KiB with AVX-512 state), so a profiler whose handler runs on the
 * thread's own stack kills the thread; one with an alternate signal stack does not.
 * Without a profiler nothing is delivered and it always succeeds. It prints
 * "depth=<levels> left=<bytes>" and exits 0. With the argument `own-altstack` it first
 * sets an alternate signal stack of its own, with a guard page below it and room for the
 * kernel's signal frame (AT_MINSIGSTKSZ) and 1.5 KiB more, and checks at the end that it
 * is still its: a handler run there must not walk a stack with that little room. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include "common.h"

#define MARGIN 1024
static char *low;
static int deepest;
static long left;
static int own_altstack;
static char *own_stack;
static size_t own_size;

__attribute__((noinline)) static unsigned long descend(int depth) {
    volatile char pad[200];
    pad[0] = (char)depth;
    char *sp = (char *)__builtin_frame_address(0) - sizeof pad - 64;
    if (sp - low > MARGIN) return descend(depth + 1) + pad[0];
    deepest = depth;
    left = sp - low;
    return spin(300000000UL) + pad[0];
}

static void *deep(void *arg) {
    (void)arg;
    if (own_altstack) {
        own_size = getauxval(AT_MINSIGSTKSZ) + 1536;
        if (own_size < 4096) own_size = 4096;
        char *m = mmap(NULL, 4096 + own_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED || mprotect(m, 4096, PROT_NONE) != 0) { perror("mmap"); exit(2); }
        own_stack = m + 4096;
        stack_t ss = {.ss_sp = own_stack, .ss_size = own_size, .ss_flags = 0};
        if (sigaltstack(&ss, NULL) != 0) { perror("sigaltstack"); exit(2); }
    }
    pthread_attr_t a;
    void *addr;
    size_t size;
    pthread_getattr_np(pthread_self(), &a);
    pthread_attr_getstack(&a, &addr, &size);
    pthread_attr_destroy(&a);
    low = addr;
    descend(0);
    if (own_altstack) {
        stack_t now;
        sigaltstack(NULL, &now);
        if (now.ss_sp != own_stack || now.ss_size != own_size) {
            fprintf(stderr, "the program's alternate stack was replaced\n");
            exit(3);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    own_altstack = argc > 1 && strcmp(argv[1], "own-altstack") == 0;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 16384);
    pthread_t t;
    if (pthread_create(&t, &a, deep, NULL) != 0) { perror("pthread_create"); return 2; }
    pthread_join(t, NULL);
    printf("depth=%d left=%ld\n", deepest, left);
    return 0;
}
