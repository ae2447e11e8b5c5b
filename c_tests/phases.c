/* Known truth in two phases, each ended by a line on stdout ("phase N") after which the
 * program waits for a line on stdin, so a test can take a dump between phases:
 *   phase 1: phase_one_alloc keeps 10 x 1 MiB; phase_one_wait blocks 5 times on a mutex a
 *            helper holds (in phase_one_hold) for about 20 ms; phase_one_burn burns CPU.
 *   phase 2: phase_one's blocks are freed; phase_two_alloc keeps 20 x 1 MiB;
 *            phase_two_wait blocks 5 times (held in phase_two_hold); phase_two_burn burns.
 * Then it prints "done" and exits 0. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include "common.h"

#define MiB (1024 * 1024)

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static atomic_int held, released;
static void *blocks[20];
static volatile unsigned long sink;

static void sleep_ms(int ms) {
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

__attribute__((noinline)) void phase_one_hold(void) {
    pthread_mutex_lock(&m);
    atomic_store(&held, 1);
    sleep_ms(20);
    if (pthread_mutex_unlock(&m) != 0) abort();
}
__attribute__((noinline)) void phase_two_hold(void) {
    pthread_mutex_lock(&m);
    atomic_store(&held, 1);
    sleep_ms(20);
    if (pthread_mutex_unlock(&m) != 0) abort();
}
__attribute__((noinline)) void phase_one_wait(void) {
    if (pthread_mutex_lock(&m) != 0) abort();
    pthread_mutex_unlock(&m);
}
__attribute__((noinline)) void phase_two_wait(void) {
    if (pthread_mutex_lock(&m) != 0) abort();
    pthread_mutex_unlock(&m);
}
__attribute__((noinline)) void phase_one_alloc(void) {
    for (int i = 0; i < 10; i++) if (!(blocks[i] = malloc(MiB))) exit(2);
}
__attribute__((noinline)) void phase_two_alloc(void) {
    for (int i = 0; i < 20; i++) if (!(blocks[i] = malloc(MiB))) exit(2);
}
__attribute__((noinline)) void phase_one_burn(void) { sink += spin(150000000); }
__attribute__((noinline)) void phase_two_burn(void) { sink += spin(150000000); }

static void *holder(void *arg) {
    void (*hold)(void) = (void (*)(void))arg;
    hold();
    return NULL;
}

/* Five waits: each time a helper thread holds the mutex in `hold` while `wait` blocks. */
static void contend(void (*hold)(void), void (*wait)(void)) {
    for (int i = 0; i < 5; i++) {
        atomic_store(&held, 0);
        pthread_t t;
        pthread_create(&t, NULL, holder, (void *)hold);
        while (!atomic_load(&held)) usleep(100);
        wait();
        pthread_join(t, NULL);
    }
}

static void end_phase(const char *line) {
    printf("%s\n", line);
    fflush(stdout);
    char buf[16];
    if (read(0, buf, sizeof buf) < 0) exit(3);
}

int main(void) {
    phase_one_alloc();
    contend(phase_one_hold, phase_one_wait);
    phase_one_burn();
    end_phase("phase 1");
    for (int i = 0; i < 10; i++) free(blocks[i]);
    phase_two_alloc();
    contend(phase_two_hold, phase_two_wait);
    phase_two_burn();
    end_phase("phase 2");
    printf("done\n");
    return 0;
}
