/* Workloads for scripts/bench_core.sh, the costs a profiler adds to a program that asked
 * for nothing in particular:
 *   putc N   N single-threaded putc calls to stdout (the script sends it to /dev/null):
 *            glibc's stdio locks cheaply while the process has one thread;
 *   fork N   N times fork, the child _exits at once, the parent waits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    long n = atol(argv[2]);
    if (strcmp(argv[1], "putc") == 0) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long i = 0; i < n; i++) putc('a' + (int)(i % 26), stdout);
        fflush(stdout);
        clock_gettime(CLOCK_MONOTONIC, &b);
        /* The loop alone, without the process's start and exit (scripts/bench_core.sh). */
        fprintf(stderr, "loop_ns=%.0f\n", (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec));
        return 0;
    }
    if (strcmp(argv[1], "fork") == 0) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long i = 0; i < n; i++) {
            pid_t pid = fork();
            if (pid == 0) _exit(0);
            if (pid < 0) return 1;
            int st;
            waitpid(pid, &st, 0);
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        /* The loop alone: what a fork costs, without the process's start and exit. */
        fprintf(stderr, "fork_ns=%.0f\n",
                ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
        return 0;
    }
    return 2;
}
