/* A small server-like program for the profile-server tests: named threads, one burning
 * CPU in burn_cpu(), one that allocated 64 x 64 KiB in burst_before() at start (before
 * "started" is printed) and does
 * the same in burst_later() on SIGUSR1, two contending for a mutex, one sleeping in
 * nanosleep that counts how often its sleep was cut short (a thread dump must not
 * interrupt it). It runs until its stdin closes, then prints "eintr=<count>" and
 * "http_server done" and exits 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile int stop;
static volatile sig_atomic_t more;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static void *keep[256];

__attribute__((noinline)) static double burn_cpu(void) {
    double x = 0;
    for (int i = 0; i < 2000000; i++) x += i * 0.5;
    return x;
}

static void *burner(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "burner");
    volatile double sink = 0;
    while (!stop) sink += burn_cpu();
    return NULL;
}

__attribute__((noinline)) static void burst_before(void) {
    for (int i = 0; i < 64; i++) { keep[i] = malloc(65536); memset(keep[i], 1, 65536); }
}

__attribute__((noinline)) static void burst_later(void) {
    for (int i = 64; i < 128; i++) { keep[i] = malloc(65536); memset(keep[i], 2, 65536); }
}

static volatile int eintr;

static void *sleeper(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "sleeper");
    struct timespec ts = {0, 200 * 1000 * 1000};
    while (!stop)
        if (nanosleep(&ts, NULL) == -1 && errno == EINTR) eintr++;
    return NULL;
}

static void on_usr1(int s) { (void)s; more = 1; }

/* Set once burst_before() has returned: "started" is printed only then, so that a test's
 * first heap request finds those blocks. */
static int burst_done;

static void *allocator(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "allocator");
    burst_before();
    __atomic_store_n(&burst_done, 1, __ATOMIC_RELEASE);
    while (!stop) {
        if (more) { more = 0; burst_later(); printf("burst_later\n"); fflush(stdout); }
        usleep(10000);
    }
    return NULL;
}

__attribute__((noinline)) static void hold_lock(void) {
    pthread_mutex_lock(&lock);
    usleep(2000);
    pthread_mutex_unlock(&lock);
}

static void *contender(void *arg) {
    pthread_setname_np(pthread_self(), (const char *)arg);
    while (!stop) { hold_lock(); usleep(100); }
    return NULL;
}

int main(void) {
    signal(SIGUSR1, on_usr1);
    pthread_t t[5];
    pthread_create(&t[0], NULL, burner, NULL);
    pthread_create(&t[1], NULL, allocator, NULL);
    pthread_create(&t[2], NULL, contender, "contender-a");
    pthread_create(&t[3], NULL, contender, "contender-b");
    pthread_create(&t[4], NULL, sleeper, NULL);
    while (!__atomic_load_n(&burst_done, __ATOMIC_ACQUIRE)) usleep(1000);
    printf("started\n");
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {}
    stop = 1;
    for (int i = 0; i < 5; i++) pthread_join(t[i], NULL);
    printf("eintr=%d\nhttp_server done\n", eintr);
    return 0;
}
