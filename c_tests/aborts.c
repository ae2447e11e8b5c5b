/* Holds 16 blocks of 1 MiB (allocated in held_at_abort), burns about 0.2 s of CPU in
 * spin, then calls abort(): a crash whose heap users want to see. With the argument
 * `thread`, a second thread calls abort() while the main thread waits to join it. Core
 * dumps are turned off (RLIMIT_CORE 0), so the death is quick. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "common.h"

static void *held[16];
static volatile unsigned long sink;

__attribute__((noinline)) static void held_at_abort(void) {
    for (int i = 0; i < 16; i++) { held[i] = malloc(1 << 20); memset(held[i], 1, 4096); }
    __asm__ volatile("" ::: "memory");
}

static void *crash(void *arg) {
    (void)arg;
    sink += spin(150000000UL);
    abort();
}

int main(int argc, char **argv) {
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    held_at_abort();
    if (argc > 1 && strcmp(argv[1], "thread") == 0) {
        pthread_t t;
        pthread_create(&t, NULL, crash, NULL);
        pthread_join(t, NULL);
        return 0;
    }
    crash(NULL);
    return 0;
}
