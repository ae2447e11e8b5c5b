/* Known truth for pushed profiles: for `seconds` (argument, default 4) of wall time, burns
 * CPU in burn() and allocates in allocate(): blocks of 1 to 64 KiB, a quarter of them kept
 * live to the end, the rest freed at once. Prints its CPU time (cpu_ns=N) and the bytes it
 * allocated (alloc_bytes=N) to stderr, and pid_cpu=PID:NS (its own CPU, by pid). With `fork` as second argument, a child does the
 * same for the same time, then the parent waits for it. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "common.h"

static volatile unsigned long sink;
static unsigned long allocated;
static void *kept[1 << 16];
static int nkept;

__attribute__((noinline)) void burn(void) { sink += spin(200000); }

__attribute__((noinline)) void allocate(unsigned long *r) {
    size_t n = 1024 + random_below(r, 63 * 1024);
    char *p = malloc(n);
    __asm__ volatile("" : : "r"(p) : "memory"); /* not elided: the block escapes */
    memset(p, 1, 64);
    allocated += n;
    if (random_below(r, 4) == 0 && nkept < (1 << 16))
        kept[nkept++] = p;
    else
        free(p);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void work(double seconds, unsigned long seed) {
    unsigned long r = seed;
    double end = now() + seconds;
    while (now() < end) {
        burn();
        for (int i = 0; i < 4; i++) allocate(&r);
    }
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 4;
    int forking = argc > 2 && strcmp(argv[2], "fork") == 0;
    pid_t child = forking ? fork() : -1;
    work(seconds, child == 0 ? 0x9e3779b97f4a7c15UL : 0x2545f4914f6cdd1dUL);
    if (child > 0) waitpid(child, NULL, 0);
    report_cpu();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fprintf(stderr, "pid_cpu=%d:%lld\n", (int)getpid(),
            (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
                (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL);
    fprintf(stderr, "alloc_bytes=%lu\n", allocated);
    printf("push_load done %lu\n", sink & 1);
    return 0;
}
