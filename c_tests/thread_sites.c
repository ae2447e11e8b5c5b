/* Threads whose grouping the tests know. Five creation sites (site_a … site_e) make six
 * threads; each thread blocks reading a pipe that never gets data until stdin closes:
 *   site_a: "worker" in worker_wait
 *   site_b: "twin"   in twin_one      (same name as site_c's, another function)
 *   site_c: "twin"   in twin_two
 *   site_d: two "pair" threads in pair_wait, from one call site in a loop
 *   site_e: "last"   in last_wait, which waits in sigsuspend (rt_sigsuspend) instead
 * So threadcreate has five records (site_d's counts 2) and goroutine has six: main,
 * worker, the two twins apart, the pair together (2), last.
 * It prints "fn <name> <address>" for each of those functions (an address inside each,
 * for checking remote symbolization), then "ready" once every thread is about to block. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int pipefd[2];
static int waiting;

static void block_here(void) {
    __atomic_add_fetch(&waiting, 1, __ATOMIC_RELEASE);
    char c;
    while (read(pipefd[0], &c, 1) > 0) {}
}

/* Each thread function names itself, then blocks; the asm keeps the call from becoming a
 * tail call, so the function stays on the stack. */
#define THREAD_FN(fn, label)                                      \
    __attribute__((noinline)) static void *fn(void *arg) {        \
        (void)arg;                                                \
        pthread_setname_np(pthread_self(), label);                \
        block_here();                                             \
        __asm__ volatile("" ::: "memory");                        \
        return NULL;                                              \
    }
THREAD_FN(worker_wait, "worker")
THREAD_FN(twin_one, "twin")
THREAD_FN(twin_two, "twin")
THREAD_FN(pair_wait, "pair")

static volatile sig_atomic_t woken;
static void on_usr1(int sig) { (void)sig; woken = 1; }

__attribute__((noinline)) static void *last_wait(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "last");
    sigset_t none;
    sigemptyset(&none);
    __atomic_add_fetch(&waiting, 1, __ATOMIC_RELEASE);
    while (!woken) sigsuspend(&none);
    __asm__ volatile("" ::: "memory");
    return NULL;
}

static pthread_t t[6];
static volatile int pairs = 2; /* volatile: the loop stays a loop, one call site */

__attribute__((noinline)) static void site_a(void) { pthread_create(&t[0], NULL, worker_wait, NULL); __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) static void site_b(void) { pthread_create(&t[1], NULL, twin_one, NULL); __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) static void site_c(void) { pthread_create(&t[2], NULL, twin_two, NULL); __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) static void site_d(void) {
    for (int i = 3; i < 3 + pairs; i++) pthread_create(&t[i], NULL, pair_wait, NULL);
    __asm__ volatile("" ::: "memory");
}
__attribute__((noinline)) static void site_e(void) { pthread_create(&t[5], NULL, last_wait, NULL); __asm__ volatile("" ::: "memory"); }

int main(void) {
    if (pipe(pipefd) != 0) return 2;
    signal(SIGUSR1, on_usr1);
    site_a();
    site_b();
    site_c();
    site_d();
    site_e();
    const struct { const char *name; void *fn; } fns[] = {
        {"worker_wait", (void *)worker_wait}, {"twin_one", (void *)twin_one},
        {"twin_two", (void *)twin_two},       {"pair_wait", (void *)pair_wait},
        {"last_wait", (void *)last_wait},     {"site_a", (void *)site_a},
        {"site_d", (void *)site_d},           {"main", (void *)main},
    };
    for (unsigned i = 0; i < sizeof fns / sizeof fns[0]; i++)
        printf("fn %s %p\n", fns[i].name, (void *)((char *)fns[i].fn + 4));
    while (__atomic_load_n(&waiting, __ATOMIC_ACQUIRE) < 6) usleep(1000);
    usleep(50000); /* each thread is inside read() by now */
    printf("ready\n");
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {}
    close(pipefd[1]);
    while (!woken) { pthread_kill(t[5], SIGUSR1); usleep(1000); }
    for (int i = 0; i < 6; i++) pthread_join(t[i], NULL);
    return 0;
}
