/* Known truth: burns CPU at the bottom of a 200-deep recursion, deeper than the 128 frames
 * rprof keeps, so every stack is truncated and keeps its innermost frames. */
#include "common.h"

static volatile unsigned long sink;

__attribute__((noinline)) int recurse(int depth) {
    if (depth == 0) {
        for (int i = 0; i < 300; i++) sink += spin(1000000);
        return 0;
    }
    return recurse(depth - 1) + (int)(sink & 1);
}

int main(void) {
    int r = recurse(200);
    printf("deep_recursion done %d\n", r & 0);
    return 0;
}
