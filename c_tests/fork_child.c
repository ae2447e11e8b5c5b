/* Known truth: the parent burns in parent_burn, forks, and the child burns in child_burn
 * (three times as much) and exits with status 7. The parent waits, checks that status and
 * exits 0. Prints child=<pid> to stderr. A helper thread keeps running in the parent
 * across the fork, so locks may be held by a thread that does not exist in the child. */
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common.h"

static volatile unsigned long sink;
static volatile int stop;

__attribute__((noinline)) void parent_burn(void) { for (int i = 0; i < 100; i++) sink += spin(1000000); }
__attribute__((noinline)) void child_burn(void) { for (int i = 0; i < 300; i++) sink += spin(1000000); }
__attribute__((noinline)) void *background(void *arg) {
    (void)arg;
    while (!stop) sink += spin(10000);
    return NULL;
}

int main(void) {
    pthread_t bg;
    pthread_create(&bg, NULL, background, NULL);
    parent_burn();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        child_burn();
        printf("child done\n");
        exit(7);
    }
    fprintf(stderr, "child=%d\n", (int)pid);
    int status = 0;
    waitpid(pid, &status, 0);
    stop = 1;
    pthread_join(bg, NULL);
    printf("parent done, child status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return WIFEXITED(status) && WEXITSTATUS(status) == 7 ? 0 : 1;
}
