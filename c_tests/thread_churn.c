/* Thread creation cost: creates and joins N (default 20000) empty threads, one at a time,
 * as a program that makes a thread per task does; prints nothing. */
#include <pthread.h>
#include <stdlib.h>

static void *nothing(void *arg) { return arg; }

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    for (int i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, nothing, NULL) != 0) return 1;
        pthread_join(t, NULL);
    }
    return 0;
}
