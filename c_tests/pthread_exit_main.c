/* Known truth: main calls pthread_exit while a worker thread burns CPU in worker_burn; the
 * process ends when that last thread returns (glibc then runs exit(0)), so the exit-time
 * profile must still be written and hold worker_burn. */
#include <pthread.h>
#include "common.h"

static volatile unsigned long sink;

__attribute__((noinline)) void *worker_burn(void *arg) {
    (void)arg;
    for (int i = 0; i < 200; i++) sink += spin(1000000);
    printf("worker done\n");
    return NULL;
}

int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, worker_burn, NULL);
    pthread_exit(NULL);
}
