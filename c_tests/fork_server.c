/* A prefork server: the parent forks two workers, each blocked reading a pipe until the
 * parent ends; the parent prints "pids <parent> <worker> <worker>" and runs until its
 * stdin closes, then closes the pipe, waits for the workers and exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    int p[2];
    if (pipe(p) != 0) return 2;
    pid_t kids[2];
    for (int i = 0; i < 2; i++) {
        fflush(stdout);
        kids[i] = fork();
        if (kids[i] == 0) {
            close(p[1]);
            char c;
            while (read(p[0], &c, 1) > 0) {}
            exit(0);
        }
    }
    close(p[0]);
    printf("pids %d %d %d\n", (int)getpid(), (int)kids[0], (int)kids[1]);
    fflush(stdout);
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {}
    close(p[1]);
    for (int i = 0; i < 2; i++) waitpid(kids[i], NULL, 0);
    return 0;
}
