/* Known truth for JIT frames: generates, in anonymous executable memory, a loop function
 * with a frame-pointer prologue (push %rbp; mov %rsp,%rbp), as V8's and HotSpot's code
 * keeps one, and names it `jit_hot_loop` in /tmp/perf-<pid>.map as a JIT would. It has no
 * unwind table. run_jit() (native) calls it for `seconds` (argument, default 2) of CPU.
 * With a second argument N, N other made-up entries are written to the map first (the
 * cost of a large map). Prints cpu_ns=N to stderr; the test removes the map. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "common.h"

typedef unsigned long (*loop_fn)(unsigned long);

static const unsigned char code[] = {
    0x55,                         /* push %rbp */
    0x48, 0x89, 0xe5,             /* mov %rsp,%rbp */
    0x48, 0x89, 0xf9,             /* mov %rdi,%rcx */
    0x48, 0x31, 0xc0,             /* xor %rax,%rax */
    0x48, 0xba, 0x2d, 0x7f, 0x95, 0x4c, 0x2d, 0xf4, 0x51, 0x58, /* movabs $k,%rdx */
    /* loop: */
    0x48, 0x0f, 0xaf, 0xc2,       /* imul %rdx,%rax */
    0x48, 0x83, 0xc0, 0x01,       /* add $1,%rax */
    0x48, 0xff, 0xc9,             /* dec %rcx */
    0x75, 0xf3,                   /* jnz loop */
    0x5d,                         /* pop %rbp */
    0xc3,                         /* ret */
};

static volatile unsigned long sink;

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

__attribute__((noinline)) void run_jit(loop_fn f, double seconds) {
    double end = cpu_seconds() + seconds;
    while (cpu_seconds() < end) sink += f(2000000);
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 2;
    long extra = argc > 2 ? atol(argv[2]) : 0;
    size_t page = 1 << 16;
    unsigned char *mem = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return 1;
    unsigned char *fn = mem + 0x100;
    memcpy(fn, code, sizeof code);
    if (mprotect(mem, page, PROT_READ | PROT_EXEC) != 0) return 1;
    char path[64];
    snprintf(path, sizeof path, "/tmp/perf-%d.map", getpid());
    FILE *m = fopen(path, "w");
    if (!m) return 1;
    /* Made-up entries below the code, in the same region, none covering it. */
    for (long i = 0; i < extra; i++)
        fprintf(m, "%lx 10 JS:*made_up_%ld /app/x.js:%ld:1\n", (unsigned long)(mem + 0x200) + i * 0x10 % 0xf000, i, i);
    fprintf(m, "%lx %zx jit_hot_loop\n", (unsigned long)fn, sizeof code);
    fclose(m);
    run_jit((loop_fn)fn, seconds);
    report_cpu();
    printf("jit_loop done %lu\n", sink & 1);
    return 0;
}
