/* A small library that dlopen_loop.c loads and unloads in a loop. */
#include "common.h"

__attribute__((noinline)) unsigned long plugin_burn(unsigned long n) { return spin(n); }
