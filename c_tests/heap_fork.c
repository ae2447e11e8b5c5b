/* Known truth: the parent keeps 8 x 2 MiB live from parent_site, forks; the child frees 4
 * of the blocks it inherited, keeps 16 x 2 MiB live from child_site and exits 0 (so 20
 * blocks of these live in the child's heap); the parent waits and exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void *parent_blocks[8], *child_blocks[16];

__attribute__((noinline)) void *parent_site(void) { void *p = malloc(2 << 20); if (!p) exit(2); return p; }
__attribute__((noinline)) void *child_site(void) { void *p = malloc(2 << 20); if (!p) exit(2); return p; }

int main(void) {
    for (int i = 0; i < 8; i++) parent_blocks[i] = parent_site();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 4; i++) free(parent_blocks[i]);
        for (int i = 0; i < 16; i++) child_blocks[i] = child_site();
        printf("child done\n");
        return 0;
    }
    fprintf(stderr, "child=%d\n", (int)pid);
    int status;
    waitpid(pid, &status, 0);
    printf("parent done\n");
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
