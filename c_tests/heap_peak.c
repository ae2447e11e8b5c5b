/* A heap that peaks and then frees everything, as Python, sqlite3 and tidy C programs do.
 * Phase 1: peak_site holds 64 MiB (1024 blocks of 64 KiB) while side_site holds 8 MiB
 * (8192 blocks of 1 KiB): the peak, 72 MiB. Everything is freed. Phase 2: after_site
 * holds 16 MiB (256 blocks of 64 KiB), then frees it. At exit nothing is in use (the last
 * line goes out by write(2): stdio's buffer, never freed, would be sampled now and then).
 * With the argument `snapshot`, it sends itself SIGUSR2 between the phases. */
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define BIG (64 * 1024)

/* Each site touches its block, so that the malloc call is not a tail call (the site stays
 * on the stack), with its own tag (so that no two sites are folded into one). */
__attribute__((noinline)) static void *touched(size_t n, char tag) {
    char *p = malloc(n);
    if (p) p[0] = tag;
    return p;
}
__attribute__((noinline)) static void *peak_site(void) {
    void *p = touched(BIG, 1);
    __asm__ volatile("" ::: "memory");
    return p;
}
__attribute__((noinline)) static void *side_site(void) {
    void *p = touched(1024, 2);
    __asm__ volatile("" ::: "memory");
    return p;
}
__attribute__((noinline)) static void *after_site(void) {
    void *p = touched(BIG, 3);
    __asm__ volatile("" ::: "memory");
    return p;
}

int main(int argc, char **argv) {
    static void *big[1024], *small[8192], *later[256];
    for (int i = 0; i < 1024; i++) {
        big[i] = peak_site();
    }
    for (int i = 0; i < 8192; i++) small[i] = side_site();
    for (int i = 0; i < 1024; i++) free(big[i]);
    for (int i = 0; i < 8192; i++) free(small[i]);
    if (argc > 1 && strcmp(argv[1], "snapshot") == 0) raise(SIGUSR2);
    for (int i = 0; i < 256; i++) later[i] = after_site();
    for (int i = 0; i < 256; i++) free(later[i]);
    if (write(1, "done\n", 5) != 5) return 1;
    return 0;
}
