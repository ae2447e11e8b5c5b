/* Many distinct sizes from few stacks, as real programs allocate: 8 sites (site0 … site7),
 * the i-th allocation from site i % 8.
 *   live N:  N blocks of sizes 16 + i bytes, all kept live (prints live_bytes=<sum>)
 *   churn N: N blocks of sizes 512 KiB + 16·i, each freed at once (prints
 *            churn_bytes=<sum>); glibc soon serves these from its heap, untouched.
 * Lines go to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SITE(k)                                                      \
    __attribute__((noinline)) static void *site##k(size_t n) {       \
        char *p = malloc(n);                                         \
        if (p) p[0] = k;                                             \
        __asm__ volatile("" ::: "memory");                           \
        return p;                                                    \
    }
SITE(0) SITE(1) SITE(2) SITE(3) SITE(4) SITE(5) SITE(6) SITE(7)
static void *(*const sites[8])(size_t) = {site0, site1, site2, site3, site4, site5, site6, site7};

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    long n = atol(argv[2]);
    unsigned long long total = 0;
    if (strcmp(argv[1], "live") == 0) {
        void **keep = calloc(n, sizeof *keep);
        for (long i = 0; i < n; i++) { keep[i] = sites[i % 8](16 + i); total += 16 + i; }
        fprintf(stderr, "live_bytes=%llu\n", total);
        return 0;
    }
    for (long i = 0; i < n; i++) {
        size_t size = 512 * 1024 + 16 * (size_t)i;
        free(sites[i % 8](size));
        total += size;
    }
    fprintf(stderr, "churn_bytes=%llu\n", total);
    return 0;
}
