/* A small library that dlopen_loop.c loads and unloads in a loop. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include "common.h"

/* The xor keeps this from being a tail call, so plugin_burn has a frame of its own. */
__attribute__((noinline)) unsigned long plugin_burn(unsigned long n) { return spin(n) ^ n; }

/* Allocates n blocks of 64 bytes and frees two in three of them; the others (n / 3, the
 * first ones) are handed to the caller in keep[], to outlive this library's unloading. */
__attribute__((noinline)) void plugin_alloc(int n, void **keep) {
    void *blocks[1024];
    if (n > 1024) n = 1024;
    for (int i = 0; i < n; i++) blocks[i] = malloc(64);
    for (int i = 0; i < n; i++) {
        if (i < n / 3) keep[i] = blocks[i];
        else free(blocks[i]);
    }
}

/* The library's own mutex (its memory goes with the library), and whether the holder has
 * taken it. */
static pthread_mutex_t plugin_mutex = PTHREAD_MUTEX_INITIALIZER;
static int plugin_held;

static void *plugin_holder(void *arg) {
    (void)arg;
    pthread_mutex_lock(&plugin_mutex);
    __atomic_store_n(&plugin_held, 1, __ATOMIC_RELEASE);
    usleep(20000);
    pthread_mutex_unlock(&plugin_mutex);
    return NULL;
}

/* One contended lock: a thread of the library's takes its mutex and holds it for 20 ms,
 * while the caller waits for it here. Returns the ns the caller waited. */
__attribute__((noinline)) long long plugin_contend(void) {
    pthread_t t;
    __atomic_store_n(&plugin_held, 0, __ATOMIC_RELAXED);
    if (pthread_create(&t, NULL, plugin_holder, NULL) != 0) return -1;
    while (!__atomic_load_n(&plugin_held, __ATOMIC_ACQUIRE)) sched_yield();
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pthread_mutex_lock(&plugin_mutex);
    clock_gettime(CLOCK_MONOTONIC, &b);
    pthread_mutex_unlock(&plugin_mutex);
    pthread_join(t, NULL);
    return (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
}
