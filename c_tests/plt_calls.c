/* Known truth: a hot loop in call_strlen calls strlen, in libc, through the program's PLT,
 * 200 million times on an empty string: a good part of the samples land on the PLT entry
 * itself (strlen@plt) or in libc's strlen. */
#include <string.h>
#include "common.h"

char buf[64];

__attribute__((noinline)) unsigned long call_strlen(long n) {
    unsigned long s = 0;
    for (long i = 0; i < n; i++) {
        s += strlen(buf);
        __asm__ volatile("" : "+r"(s) : : "memory");
    }
    return s;
}

int main(void) {
    printf("%lu\n", call_strlen(200000000));
    return 0;
}
