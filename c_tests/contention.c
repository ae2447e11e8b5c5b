/* Synchronisation with known waits; the argument picks the scenario.
 *   mutex    holder_section holds a mutex 50 ms, 20 times, while waiter_site blocks on it
 *            each time: block ~1 s at waiter_site, mutex ~1 s at holder_section's unlock.
 *   rwlock   writer_section holds a write lock 50 ms, 10 times, while two readers block in
 *            reader_site each time: block ~1 s (2 x 10 x 50 ms), mutex ~1 s at the writer.
 *   cond     cond_waiter_site waits on a condition variable 5 times; each time it is
 *            signalled 100 ms later: block ~0.5 s.
 *   sem_join sem_waiter_site blocks 200 ms in sem_wait; join_site then joins a thread that
 *            still runs for 500 ms: block ~0.2 s and ~0.5 s.
 *   none     one thread locks and unlocks a mutex, a rwlock and a spinlock 1000000 times:
 *            nothing ever waits, so both profiles are empty.
 * The waits actually measured around the sites (which exceed the sleeps when the machine
 * is busy) are printed to stderr as wait_ns=N (and sem_ns=, join_ns= for sem_join). */
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static sem_t sem;
static atomic_int round_held = -1, round_done = -1, readers_done;
static int ready;

static atomic_llong waited_ns;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Adds the time since `start` to the measured waits. */
static void add_wait(long long start) { atomic_fetch_add(&waited_ns, now_ns() - start); }

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits until *flag == v without any pthread call (so only the measured waits happen). */
static void spin_until(atomic_int *flag, int v) {
    while (atomic_load(flag) != v) usleep(100);
}

__attribute__((noinline)) void holder_section(int i) {
    pthread_mutex_lock(&m);
    atomic_store(&round_held, i);
    sleep_ms(50);
    if (pthread_mutex_unlock(&m) != 0) abort(); /* not a tail call: the frame stays */
}

__attribute__((noinline)) void waiter_site(void) {
    pthread_mutex_lock(&m);
    pthread_mutex_unlock(&m);
}

static void *mutex_waiter(void *arg) {
    (void)arg;
    for (int i = 0; i < 20; i++) {
        spin_until(&round_held, i);
        usleep(1000); /* be sure the holder is inside its sleep */
        long long t = now_ns();
        waiter_site();
        add_wait(t);
        atomic_store(&round_done, i);
    }
    return NULL;
}

__attribute__((noinline)) void writer_section(int i) {
    pthread_rwlock_wrlock(&rw);
    atomic_store(&round_held, i);
    sleep_ms(50);
    if (pthread_rwlock_unlock(&rw) != 0) abort();
}

__attribute__((noinline)) void reader_site(void) {
    pthread_rwlock_rdlock(&rw);
    pthread_rwlock_unlock(&rw);
}

static void *rw_reader(void *arg) {
    (void)arg;
    for (int i = 0; i < 10; i++) {
        spin_until(&round_held, i);
        usleep(1000);
        long long t = now_ns();
        reader_site();
        add_wait(t);
        atomic_fetch_add(&readers_done, 1);
    }
    return NULL;
}

__attribute__((noinline)) void cond_waiter_site(void) {
    pthread_mutex_lock(&m);
    while (!ready) pthread_cond_wait(&cv, &m);
    ready = 0;
    pthread_mutex_unlock(&m);
}

static void *cond_signaller(void *arg) {
    (void)arg;
    for (int i = 0; i < 5; i++) {
        spin_until(&round_held, i);
        sleep_ms(100);
        pthread_mutex_lock(&m);
        ready = 1;
        pthread_cond_signal(&cv);
        pthread_mutex_unlock(&m);
        spin_until(&round_done, i);
    }
    return NULL;
}

/* The checks after the calls keep them from being tail calls, so the sites keep frames. */
__attribute__((noinline)) void sem_waiter_site(void) {
    if (sem_wait(&sem) != 0) abort();
}

static void *sem_poster(void *arg) {
    (void)arg;
    sleep_ms(200);
    sem_post(&sem);
    sleep_ms(500);
    return NULL;
}

__attribute__((noinline)) void join_site(pthread_t t) {
    if (pthread_join(t, NULL) != 0) abort();
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "none";
    pthread_t t[2];
    if (strcmp(mode, "mutex") == 0) {
        pthread_create(&t[0], NULL, mutex_waiter, NULL);
        for (int i = 0; i < 20; i++) {
            holder_section(i);
            spin_until(&round_done, i);
        }
        pthread_join(t[0], NULL);
    } else if (strcmp(mode, "rwlock") == 0) {
        pthread_create(&t[0], NULL, rw_reader, NULL);
        pthread_create(&t[1], NULL, rw_reader, NULL);
        for (int i = 0; i < 10; i++) {
            writer_section(i);
            while (atomic_load(&readers_done) < 2 * (i + 1)) usleep(100);
        }
        pthread_join(t[0], NULL);
        pthread_join(t[1], NULL);
    } else if (strcmp(mode, "cond") == 0) {
        pthread_create(&t[0], NULL, cond_signaller, NULL);
        for (int i = 0; i < 5; i++) {
            atomic_store(&round_held, i);
            long long t = now_ns();
            cond_waiter_site();
            add_wait(t);
            atomic_store(&round_done, i);
        }
        pthread_join(t[0], NULL);
    } else if (strcmp(mode, "sem_join") == 0) {
        sem_init(&sem, 0, 0);
        pthread_create(&t[0], NULL, sem_poster, NULL);
        long long t0 = now_ns();
        sem_waiter_site();
        long long t1 = now_ns();
        join_site(t[0]);
        fprintf(stderr, "sem_ns=%lld\njoin_ns=%lld\n", t1 - t0, now_ns() - t1);
    } else {
        pthread_spinlock_t s;
        pthread_spin_init(&s, 0);
        for (int i = 0; i < 1000000; i++) {
            pthread_mutex_lock(&m);
            pthread_mutex_unlock(&m);
            pthread_rwlock_wrlock(&rw);
            pthread_rwlock_unlock(&rw);
            pthread_spin_lock(&s);
            pthread_spin_unlock(&s);
        }
    }
    fprintf(stderr, "wait_ns=%lld\n", (long long)atomic_load(&waited_ns));
    printf("contention %s done\n", mode);
    return 0;
}
