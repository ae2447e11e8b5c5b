/* Creates the file named by its argument: proof that it ran. The tests build it statically
 * linked too, to check that `rprof run` refuses such a program before running it. */
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    FILE *f = fopen(argv[1], "w");
    if (!f) return 1;
    fputs("ran\n", f);
    return fclose(f) != 0;
}
