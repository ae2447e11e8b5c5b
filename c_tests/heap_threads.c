/* Known truth: a producer thread allocates 2000 blocks of 4096 B in produce_site and hands
 * them over; a consumer thread frees every one of them (cross-thread frees), and itself
 * keeps 100 blocks of 8192 B live from consume_site. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define N 2000
static void *blocks[N];
static void *kept[100];

__attribute__((noinline)) void *produce_site(void) {
    void *p = malloc(4096);
    if (!p) exit(2);
    return p;
}

__attribute__((noinline)) void *consume_site(void) {
    void *p = malloc(8192);
    if (!p) exit(2);
    return p;
}

static void *producer(void *arg) {
    (void)arg;
    for (int i = 0; i < N; i++) blocks[i] = produce_site();
    return NULL;
}

static void *consumer(void *arg) {
    (void)arg;
    for (int i = 0; i < N; i++) free(blocks[i]);
    for (int i = 0; i < 100; i++) kept[i] = consume_site();
    return NULL;
}

int main(void) {
    pthread_t p, c;
    pthread_create(&p, NULL, producer, NULL);
    pthread_join(p, NULL);
    pthread_create(&c, NULL, consumer, NULL);
    pthread_join(c, NULL);
    printf("heap_threads done\n");
    return 0;
}
