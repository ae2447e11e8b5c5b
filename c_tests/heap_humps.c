/* Two humps of heap, the first freed before the second: with the argument `rising` the
 * first (first_hump) holds 16 MiB and the second (second_hump) 48 MiB; with `falling`
 * the first holds 48 MiB and the second 16 MiB. Blocks are 64 KiB. The peak is the
 * larger hump, whichever came first. Nothing is in use at exit. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK (64 * 1024)
static void *held[768];

__attribute__((noinline)) static void *first_hump(void) {
    char *p = malloc(BLOCK);
    if (p) p[0] = 1;
    __asm__ volatile("" ::: "memory");
    return p;
}
__attribute__((noinline)) static void *second_hump(void) {
    char *p = malloc(BLOCK);
    if (p) p[0] = 2;
    __asm__ volatile("" ::: "memory");
    return p;
}

static void hump(void *(*site)(void), int blocks) {
    for (int i = 0; i < blocks; i++) held[i] = site();
    for (int i = 0; i < blocks; i++) free(held[i]);
}

int main(int argc, char **argv) {
    int rising = argc > 1 && strcmp(argv[1], "rising") == 0;
    hump(first_hump, rising ? 256 : 768);
    hump(second_hump, rising ? 768 : 256);
    return write(1, "done\n", 5) == 5 ? 0 : 1;
}
