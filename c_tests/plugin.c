/* A small library that dlopen_loop.c loads and unloads in a loop. */
#include "common.h"

/* The xor keeps this from being a tail call, so plugin_burn has a frame of its own. */
__attribute__((noinline)) unsigned long plugin_burn(unsigned long n) { return spin(n) ^ n; }
