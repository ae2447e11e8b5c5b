/* Known truth for JIT frames: generates, in anonymous executable memory, a loop function
 * with a frame-pointer prologue (push %rbp; mov %rsp,%rbp), as V8's and HotSpot's code
 * keeps one, and names it `jit_hot_loop` in /tmp/perf-<pid>.map as a JIT would. It has no
 * unwind table. run_jit() (native) calls it for `seconds` (argument, default 2) of CPU.
 * With a second argument N, N other made-up entries are written to the map first (the
 * cost of a large map). A third argument picks how the code is named:
 *   map      (default) the perf map, written before the code runs;
 *   late     the perf map holds only made-up entries while the code runs half the time,
 *            then a snapshot is asked for (SIGUSR2), then the code's line is appended
 *            and it runs the other half: a map read again when it has grown names it;
 *   jitdump  a jitdump file, /tmp/jit-<pid>.dump, mapped as JITs map it for perf, names
 *            it `jitdump_hot_loop` (no perf map).
 * Prints cpu_ns=N to stderr; the test removes the map or the dump. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdint.h>
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

/* A jitdump file (perf's tools/perf/Documentation/jitdump-specification.txt) with one
 * JIT_CODE_LOAD record naming [code, code + size), mapped so that profilers find it. */
static void write_jitdump(unsigned char *code, size_t size, const char *name) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/jit-%d.dump", getpid());
    FILE *f = fopen(path, "w+");
    if (!f) exit(1);
    struct { uint32_t magic, version, total_size, elf_mach, pad1, pid; uint64_t timestamp, flags; }
        hdr = {0x4A695444, 1, 40, 62, 0, (uint32_t)getpid(), 0, 0};
    fwrite(&hdr, sizeof hdr, 1, f);
    size_t name_len = strlen(name) + 1;
    struct { uint32_t id, total_size; uint64_t timestamp; uint32_t pid, tid;
             uint64_t vma, code_addr, code_size, code_index; } rec = {
        0, (uint32_t)(sizeof rec + name_len + size), 0, (uint32_t)getpid(), (uint32_t)getpid(),
        (uint64_t)(uintptr_t)code, (uint64_t)(uintptr_t)code, size, 1};
    fwrite(&rec, sizeof rec, 1, f);
    fwrite(name, name_len, 1, f);
    fwrite(code, size, 1, f);
    fflush(f);
    if (mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fileno(f), 0) == MAP_FAILED) exit(1);
    fclose(f);
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 2;
    long extra = argc > 2 ? atol(argv[2]) : 0;
    const char *mode = argc > 3 ? argv[3] : "map";
    size_t page = 1 << 16;
    unsigned char *mem = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return 1;
    unsigned char *fn = mem + 0x100;
    memcpy(fn, code, sizeof code);
    if (mprotect(mem, page, PROT_READ | PROT_EXEC) != 0) return 1;
    if (strcmp(mode, "jitdump") == 0) {
        write_jitdump(fn, sizeof code, "jitdump_hot_loop");
        run_jit((loop_fn)fn, seconds);
        report_cpu();
        printf("jit_loop done %lu\n", sink & 1);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/perf-%d.map", getpid());
    FILE *m = fopen(path, "w");
    if (!m) return 1;
    /* Made-up entries above the code, in the same region, none covering it. */
    for (long i = 0; i < extra; i++)
        fprintf(m, "%lx 10 JS:*made_up_%ld /app/x.js:%ld:1\n", (unsigned long)(mem + 0x200) + i * 0x10 % 0xf000, i, i);
    if (strcmp(mode, "late") == 0) {
        fprintf(m, "%lx 10 not_the_loop\n", (unsigned long)(mem + 0x200));
        fflush(m);
        run_jit((loop_fn)fn, seconds / 2);
        raise(SIGUSR2);
        seconds /= 2;
    }
    fprintf(m, "%lx %zx jit_hot_loop\n", (unsigned long)fn, sizeof code);
    fclose(m);
    run_jit((loop_fn)fn, seconds);
    report_cpu();
    printf("jit_loop done %lu\n", sink & 1);
    return 0;
}
