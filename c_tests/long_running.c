/* Burns CPU in loop_burn until the given number of seconds (default 3) of wall time has
 * passed, printing "tick N" to stdout each 100 ms of progress; exits 0. Tests send it the
 * dump signal while it runs, or SIGTERM/SIGINT to end it. At the end it prints to stderr
 * how many threads the process has (threads=N, from /proc/self/task): it starts none. */
#include <dirent.h>
#include <stdlib.h>
#include <time.h>
#include "common.h"

static volatile unsigned long sink;

__attribute__((noinline)) void loop_burn(void) { sink += spin(200000); }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    double start = now(), next = start + 0.1;
    int ticks = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    while (now() - start < seconds) {
        loop_burn();
        if (now() >= next) {
            printf("tick %d\n", ++ticks);
            next += 0.1;
        }
    }
    report_cpu();
    int threads = 0;
    DIR *d = opendir("/proc/self/task");
    for (struct dirent *e; d && (e = readdir(d));) threads += e->d_name[0] != '.';
    if (d) closedir(d);
    fprintf(stderr, "threads=%d\n", threads);
    printf("finished\n");
    return 0;
}
