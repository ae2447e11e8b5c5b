/* A server that starts as root and forks a worker that runs as nobody, as nginx does: the
 * worker points fd 2 at the log file given as the argument, drops its group and user to
 * 65534, allocates 4 MiB in worker_alloc, burns about 0.3 s of CPU in worker_burn and
 * exits 0. The parent prints "worker=<pid>" to stdout, waits for it and exits 0. */
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common.h"

static void *kept[4];
static volatile unsigned long sink;

__attribute__((noinline)) static void worker_alloc(void) {
    for (int i = 0; i < 4; i++) { kept[i] = malloc(1 << 20); memset(kept[i], 1, 4096); }
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void worker_burn(void) {
    sink += spin(250000000UL);
    __asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int log = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (log < 0 || dup2(log, 2) < 0) _exit(3);
        close(log);
        gid_t none = 65534;
        if (setgroups(1, &none) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(4);
        worker_alloc();
        worker_burn();
        exit(0);
    }
    printf("worker=%d\n", (int)pid);
    fflush(stdout);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
