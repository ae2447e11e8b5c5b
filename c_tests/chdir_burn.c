/* Changes directory to argv[1] (default "/") before burning CPU in after_chdir: the
 * profile must still appear where RPROF_OUT pointed when the program started. */
#include <stdlib.h>
#include <unistd.h>
#include "common.h"

static volatile unsigned long sink;

__attribute__((noinline)) void after_chdir(void) { for (int i = 0; i < 100; i++) sink += spin(1000000); }

int main(int argc, char **argv) {
    if (chdir(argc > 1 ? argv[1] : "/") != 0) return 2;
    after_chdir();
    printf("chdir_burn done\n");
    return 0;
}
