/* Known wall time for the wall-clock profile, in threads named for what they do:
 *   "split"    computes 1/3 of its time (compute_phase) and sleeps 2/3 (sleep_phase,
 *              nanosleep), in 300 ms cycles;
 *   "reader"   blocks in read() on a pipe nobody writes until the end (wait_in_read);
 *   "futexer"  blocks in a raw FUTEX_WAIT (wait_in_futex), as Rust's and Go's locks do;
 *   "switcher" waits half its time in nanosleep (nap) and half in poll (poll_a_while),
 *              150 ms each, going from one wait to the other without computing.
 * main sleeps SECONDS (argv[1], default 3), then releases them. Every call that a signal
 * could interrupt counts EINTR; the count is printed as eintr=N (the profile must cause
 * none), with the process's CPU time (cpu_ns=N). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static atomic_int done;
static atomic_int eintr;
static int pipe_fds[2];
static _Atomic unsigned futex_word;

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

__attribute__((noinline)) static void compute_phase(long long ns) {
    long long end = now_ns() + ns;
    while (now_ns() < end) spin(20000);
}

__attribute__((noinline)) static void sleep_phase(long long ns) {
    struct timespec t = {ns / 1000000000LL, ns % 1000000000LL};
    while (nanosleep(&t, &t) != 0) {
        if (errno != EINTR) break;
        atomic_fetch_add(&eintr, 1);
    }
}

static void *split_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "split");
    while (!atomic_load(&done)) {
        compute_phase(100000000);
        sleep_phase(200000000);
    }
    return NULL;
}

__attribute__((noinline)) static void wait_in_read(void) {
    char c;
    for (;;) {
        ssize_t n = read(pipe_fds[0], &c, 1);
        if (n >= 0) return;
        if (errno != EINTR) return;
        atomic_fetch_add(&eintr, 1);
    }
}

static void *reader_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "reader");
    wait_in_read();
    return NULL;
}

__attribute__((noinline)) static void wait_in_futex(void) {
    while (atomic_load(&futex_word) == 0) {
        long r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
        if (r == -1 && errno == EINTR) atomic_fetch_add(&eintr, 1);
    }
}

static void *futexer_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "futexer");
    wait_in_futex();
    return NULL;
}

__attribute__((noinline)) static void nap(void) { sleep_phase(150000000); }

__attribute__((noinline)) static void poll_a_while(void) {
    long long end = now_ns() + 150000000;
    long long left;
    while ((left = end - now_ns()) > 0) {
        struct pollfd p = {pipe_fds[0], 0, 0};
        if (poll(&p, 1, (int)((left + 999999) / 1000000)) == -1 && errno == EINTR)
            atomic_fetch_add(&eintr, 1);
    }
}

static void *switcher_main(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "switcher");
    while (!atomic_load(&done)) {
        nap();
        poll_a_while();
    }
    return NULL;
}

int main(int argc, char **argv) {
    int seconds = argc > 1 ? atoi(argv[1]) : 3;
    if (pipe(pipe_fds) != 0) return 1;
    pthread_t t[4];
    pthread_create(&t[0], NULL, split_main, NULL);
    pthread_create(&t[1], NULL, reader_main, NULL);
    pthread_create(&t[2], NULL, futexer_main, NULL);
    pthread_create(&t[3], NULL, switcher_main, NULL);
    sleep_phase(seconds * 1000000000LL);
    atomic_store(&done, 1);
    if (write(pipe_fds[1], "x", 1) != 1) return 1;
    atomic_store(&futex_word, 1);
    syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    report_cpu();
    fprintf(stderr, "eintr=%d\n", atomic_load(&eintr));
    return 0;
}
