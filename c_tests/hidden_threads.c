/* Threads rprof does not see start, as real programs make them:
 *   hidden_start: made through libc's own pthread_create, looked up past the interposer
 *     (jemalloc's background threads are made so); it waits for a mutex the main thread
 *     holds for 50 ms (in hidden_wait), then burns about 0.8 s of CPU in hidden_burn.
 *   raw_start: made with a raw clone(2) (no libc thread: it shares the creating thread's
 *     TLS, touches no libc function, and burns about 0.8 s in raw_burn).
 * A thread made through the ordinary pthread_create waits meanwhile, as a server's would.
 * Each prints its CPU time to stderr: hidden_cpu_ns=N and raw_cpu_ns=N. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "common.h"

static volatile unsigned long sink;
static volatile int stop;

static long long thread_cpu_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

__attribute__((noinline)) static void hidden_burn(void) {
    for (int i = 0; i < 6; i++) sink += spin(100000000UL);
    __asm__ volatile("" ::: "memory");
}

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;

__attribute__((noinline)) static void hidden_wait(void) {
    pthread_mutex_lock(&held);
    pthread_mutex_unlock(&held);
    __asm__ volatile("" ::: "memory");
}

static void *hidden_start(void *arg) {
    (void)arg;
    hidden_wait();
    hidden_burn();
    fprintf(stderr, "hidden_cpu_ns=%lld\n", thread_cpu_ns());
    return NULL;
}

__attribute__((noinline)) static void raw_burn(void) {
    for (int i = 0; i < 6; i++) sink += spin(100000000UL);
    __asm__ volatile("" ::: "memory");
}

static long long raw_cpu;
static int raw_start(void *arg) {
    (void)arg;
    raw_burn();
    struct timespec t;
    syscall(SYS_clock_gettime, CLOCK_THREAD_CPUTIME_ID, &t);
    raw_cpu = t.tv_sec * 1000000000LL + t.tv_nsec;
    syscall(SYS_exit, 0);
    return 0;
}

static void *waiter(void *arg) {
    (void)arg;
    while (!stop) usleep(10000);
    return NULL;
}

int main(void) {
    pthread_t w;
    pthread_create(&w, NULL, waiter, NULL);
    void *libc = dlopen("libc.so.6", RTLD_NOLOAD | RTLD_LAZY);
    typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    create_fn real = libc ? (create_fn)dlsym(libc, "pthread_create") : NULL;
    if (!real) { fprintf(stderr, "no libc pthread_create\n"); return 2; }
    pthread_t h;
    pthread_mutex_lock(&held);
    real(&h, NULL, hidden_start, NULL);
    usleep(50000);
    pthread_mutex_unlock(&held);
    size_t size = 1 << 20;
    char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    static volatile pid_t raw_tid = 1;
    int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |
                CLONE_CHILD_CLEARTID;
    if (clone(raw_start, stack + size, flags, NULL, NULL, NULL, &raw_tid) < 0) { perror("clone"); return 2; }
    pthread_join(h, NULL);
    while (raw_tid != 0) syscall(SYS_futex, &raw_tid, FUTEX_WAIT, raw_tid, NULL, NULL, 0);
    fprintf(stderr, "raw_cpu_ns=%lld\n", raw_cpu);
    stop = 1;
    pthread_join(w, NULL);
    return 0;
}
