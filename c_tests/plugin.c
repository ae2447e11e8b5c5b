/* A small library that dlopen_loop.c loads and unloads in a loop. */
#include <stdlib.h>
#include "common.h"

/* The xor keeps this from being a tail call, so plugin_burn has a frame of its own. */
__attribute__((noinline)) unsigned long plugin_burn(unsigned long n) { return spin(n) ^ n; }

/* Allocates n blocks of 64 bytes and frees two in three of them; the others (n / 3, the
 * first ones) are handed to the caller in keep[], to outlive this library's unloading. */
__attribute__((noinline)) void plugin_alloc(int n, void **keep) {
    void *blocks[1024];
    if (n > 1024) n = 1024;
    for (int i = 0; i < n; i++) blocks[i] = malloc(64);
    for (int i = 0; i < n; i++) {
        if (i < n / 3) keep[i] = blocks[i];
        else free(blocks[i]);
    }
}
