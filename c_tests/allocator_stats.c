/* The allocator's own figures, as the program sees them, for comparing with rprof's
 * MemStats. It allocates a known pattern (small blocks with every other one freed, so
 * that glibc holds free bytes, and large blocks glibc maps on their own), then allocates
 * nothing more and prints the allocator's figures at the moments it chooses:
 *   glibc:    "mallinfo2 arena=A hblkhd=H uordblks=U fordblks=F keepcost=K"
 *   jemalloc: "jemalloc allocated=A active=C mapped=M retained=R" (its mallctl, after
 *             refreshing its epoch, found with dlsym when jemalloc is preloaded)
 * Lines go out with write(2) from a static buffer: stdio would allocate its buffer.
 * It prints them once at start and again for each line read from stdin, until stdin
 * closes; with the argument `exit`, it prints them once and returns from main. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *small[4096], *large[8];
static char line[512];

static void say(int n) {
    if (n > 0 && write(1, line, (size_t)n) != n) _exit(3);
}

static void print_figures(void) {
    typedef int (*mallctl_fn)(const char *, void *, size_t *, void *, size_t);
    mallctl_fn mallctl = (mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl");
    if (mallctl) {
        unsigned long long epoch = 1;
        size_t len = sizeof epoch;
        mallctl("epoch", &epoch, &len, &epoch, len);
        size_t v[4];
        const char *names[4] = {"stats.allocated", "stats.active", "stats.mapped", "stats.retained"};
        for (int i = 0; i < 4; i++) {
            size_t l = sizeof v[i];
            if (mallctl(names[i], &v[i], &l, NULL, 0) != 0) v[i] = 0;
        }
        say(snprintf(line, sizeof line, "jemalloc allocated=%zu active=%zu mapped=%zu retained=%zu\n",
                     v[0], v[1], v[2], v[3]));
    } else {
        struct mallinfo2 m = mallinfo2();
        say(snprintf(line, sizeof line,
                     "mallinfo2 arena=%zu hblkhd=%zu uordblks=%zu fordblks=%zu keepcost=%zu\n",
                     m.arena, m.hblkhd, m.uordblks, m.fordblks, m.keepcost));
    }
}

int main(int argc, char **argv) {
    for (int i = 0; i < 4096; i++) { small[i] = malloc(200 + (i % 7) * 16); memset(small[i], 1, 200); }
    for (int i = 0; i < 4096; i += 2) { free(small[i]); small[i] = 0; }
    for (int i = 0; i < 8; i++) { large[i] = malloc(1 << 20); memset(large[i], 2, 4096); }
    print_figures(); /* the first dlsym, whose failure under glibc allocates, is made here */
    if (argc > 1 && strcmp(argv[1], "exit") == 0) return 0;
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) print_figures();
    return 0;
}
