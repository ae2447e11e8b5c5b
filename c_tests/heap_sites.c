/* Known heap truth, one function per allocation site (noinline, no tail calls, so each site
 * is the leaf of its stacks). Argument: divisor for the counts of small-block loops
 * (default 1), so tests that record every allocation stay quick.
 *   keep_live        32 x 2 MiB, live at exit                    (64 MiB in use)
 *   churn            1600/div x 64 KiB, each freed at once        (100 MiB/div allocated, 0 in use)
 *   mixed_site       8 x 1 MiB and 1048576/div x 16 B, all live   (one site, two sizes)
 *   leak_calloc      calloc(256, 1024)                            (256 KiB leaked)
 *   leak_realloc     malloc(100) then realloc to 300000           (300000 B leaked, 100 B freed)
 *   leak_posix_memalign / leak_aligned_alloc / leak_memalign / leak_valloc: one block each
 *   kept_after_failed_realloc  malloc(5000), then a realloc far too large fails: the
 *                    5000 B block stays allocated and is leaked
 * keep_live's blocks are written to, so they are resident. Prints one line to stdout, and
 * to stderr its resident set at the end (rss=N hwm=N, bytes, from /proc/self/status). */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MiB (1024 * 1024)

static void *volatile sink;

static void check(void *p) {
    if (!p) { fprintf(stderr, "allocation failed\n"); exit(2); }
    sink = p;
}

__attribute__((noinline)) void keep_live(void **out) {
    for (int i = 0; i < 32; i++) {
        out[i] = malloc(2 * MiB);
        check(out[i]);
        memset(out[i], 1, 2 * MiB);
    }
}

__attribute__((noinline)) void churn(int n) {
    for (int i = 0; i < n; i++) {
        char *p = malloc(64 * 1024);
        check(p);
        p[0] = 1;
        free(p);
    }
}

__attribute__((noinline)) void *mixed_site(size_t size) {
    void *p = malloc(size);
    check(p);
    return p;
}

__attribute__((noinline)) void *leak_calloc(void) { void *p = calloc(256, 1024); check(p); return p; }
__attribute__((noinline)) void *leak_realloc(void) {
    void *p = malloc(100);
    check(p);
    p = realloc(p, 300000);
    check(p);
    return p;
}
__attribute__((noinline)) void *leak_posix_memalign(void) {
    void *p = NULL;
    if (posix_memalign(&p, 64, 200000) != 0) exit(2);
    check(p);
    return p;
}
__attribute__((noinline)) void *leak_aligned_alloc(void) { void *p = aligned_alloc(4096, 409600); check(p); return p; }
__attribute__((noinline)) void *leak_memalign(void) { void *p = memalign(256, 123456); check(p); return p; }
__attribute__((noinline)) void *leak_valloc(void) { void *p = valloc(333333); check(p); return p; }
__attribute__((noinline)) void *kept_after_failed_realloc(void) {
    void *p = malloc(5000);
    check(p);
    volatile size_t huge = (size_t)-1 / 2;
    if (realloc(p, huge) != NULL) exit(2);
    return p;
}

int main(int argc, char **argv) {
    int div = argc > 1 ? atoi(argv[1]) : 1;
    static void *live[32];
    keep_live(live);
    churn(1600 / div);
    int nsmall = 1048576 / div;
    void **mixed = malloc(sizeof(void *) * (nsmall + 8));
    for (int i = 0; i < nsmall + 8; i++) mixed[i] = mixed_site(i < 8 ? MiB : 16);
    leak_calloc();
    leak_realloc();
    leak_posix_memalign();
    leak_aligned_alloc();
    leak_memalign();
    leak_valloc();
    kept_after_failed_realloc();
    printf("heap_sites done\n");
    long long rss = -1, hwm = -1;
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f)) {
        sscanf(line, "VmRSS: %lld", &rss);
        sscanf(line, "VmHWM: %lld", &hwm);
    }
    if (f) fclose(f);
    fprintf(stderr, "rss=%lld hwm=%lld\n", rss * 1024, hwm * 1024);
    return 0;
}
