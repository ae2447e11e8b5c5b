/* Synchronisation with known waits; the argument picks the scenario.
 *   mutex    holder_section holds a mutex 50 ms, 20 times, while waiter_site blocks on it
 *            each time: block ~1 s at waiter_site, mutex ~1 s at holder_section's unlock.
 *   rwlock   writer_section holds a write lock 50 ms, 10 times, while two readers block in
 *            reader_site each time: block ~1 s (2 x 10 x 50 ms), mutex ~1 s at the writer.
 *   cond     cond_waiter_site waits on a condition variable 5 times; each time it is
 *            signalled 100 ms later: block ~0.5 s.
 *   sem_join sem_waiter_site blocks 200 ms in sem_wait; join_site then joins a thread that
 *            still runs for 500 ms: block ~0.2 s and ~0.5 s.
 *   sampled N HOLD_US  holder_section holds the mutex HOLD_US µs, N times, while waiter_site
 *            blocks on it: for the sampled block and mutex profiles. Prints each wait as
 *            measured by the waiter (waits=d1,d2,... in ns) and, for each, the time from
 *            the waiter's start to the holder's unlock (charged=c1,c2,..., what the
 *            unlocker is charged with).
 *   variants each timed and clock variant, a writer blocked in pthread_rwlock_wrlock, a
 *            contended pthread_spin_lock and pthread_barrier_wait: a helper thread holds
 *            the object (or signals, posts, arrives) 40 ms after the wait begins, in a
 *            site function named site_<call without its pthread_ prefix>; prints
 *            <call>_ns=N for each, as measured around the site.
 *   none     one thread locks and unlocks a mutex, a rwlock and a spinlock 1000000 times:
 *            nothing ever waits, so both profiles are empty.
 * The waits actually measured around the sites (which exceed the sleeps when the machine
 * is busy) are printed to stderr as wait_ns=N (and sem_ns=, join_ns= for sem_join); the
 * mutex's address as lock=0x... */
#define _GNU_SOURCE
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

/* ---- sampled: many short waits ---- */
static int sampled_n, hold_us;
static long long *wait_start, *wait_len, *unlock_at;

static void *sampled_waiter(void *arg) {
    (void)arg;
    for (int i = 0; i < sampled_n; i++) {
        spin_until(&round_held, i);
        long long t = now_ns();
        wait_start[i] = t;
        waiter_site();
        wait_len[i] = now_ns() - t;
        atomic_store(&round_done, i);
    }
    return NULL;
}

__attribute__((noinline)) void sampled_holder_section(int i) {
    pthread_mutex_lock(&m);
    atomic_store(&round_held, i);
    struct timespec ts = {0, hold_us * 1000L};
    nanosleep(&ts, NULL);
    unlock_at[i] = now_ns();
    if (pthread_mutex_unlock(&m) != 0) abort();
}

static void print_list(const char *name, long long *v) {
    fprintf(stderr, "%s=", name);
    for (int i = 0; i < sampled_n; i++) fprintf(stderr, i ? ",%lld" : "%lld", v[i]);
    fprintf(stderr, "\n");
}

static void run_sampled(void) {
    wait_start = calloc(sampled_n, sizeof *wait_start);
    wait_len = calloc(sampled_n, sizeof *wait_len);
    unlock_at = calloc(sampled_n, sizeof *unlock_at);
    pthread_t t;
    pthread_create(&t, NULL, sampled_waiter, NULL);
    for (int i = 0; i < sampled_n; i++) {
        sampled_holder_section(i);
        spin_until(&round_done, i);
    }
    pthread_join(t, NULL);
    for (int i = 0; i < sampled_n; i++) {
        unlock_at[i] -= wait_start[i];
        if (unlock_at[i] < 0) unlock_at[i] = 0;
    }
    print_list("waits", wait_len);
    print_list("charged", unlock_at);
}

/* ---- variants: every kind of wait, 40 ms each ---- */
enum kind {
    MUTEX_TIMEDLOCK, MUTEX_CLOCKLOCK, RWLOCK_WRLOCK, RWLOCK_TIMEDRDLOCK, RWLOCK_TIMEDWRLOCK,
    RWLOCK_CLOCKRDLOCK, RWLOCK_CLOCKWRLOCK, COND_TIMEDWAIT, COND_CLOCKWAIT, SEM_TIMEDWAIT,
    SEM_CLOCKWAIT, SPIN_LOCK, BARRIER_WAIT, KINDS
};
static const char *kind_name[KINDS] = {
    "pthread_mutex_timedlock", "pthread_mutex_clocklock", "pthread_rwlock_wrlock",
    "pthread_rwlock_timedrdlock", "pthread_rwlock_timedwrlock", "pthread_rwlock_clockrdlock",
    "pthread_rwlock_clockwrlock", "pthread_cond_timedwait", "pthread_cond_clockwait",
    "sem_timedwait", "sem_clockwait", "pthread_spin_lock", "pthread_barrier_wait",
};
static pthread_spinlock_t spin_obj;
static pthread_barrier_t barrier;
static atomic_int held;

/* An absolute deadline 5 s away on `clock`: every timed wait here succeeds. */
static struct timespec deadline(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    ts.tv_sec += 5;
    return ts;
}

static void *variant_helper(void *arg) {
    enum kind k = (enum kind)(long)arg;
    switch (k) {
    case MUTEX_TIMEDLOCK: case MUTEX_CLOCKLOCK: pthread_mutex_lock(&m); break;
    case RWLOCK_WRLOCK: case RWLOCK_TIMEDWRLOCK: case RWLOCK_CLOCKWRLOCK: pthread_rwlock_rdlock(&rw); break;
    case RWLOCK_TIMEDRDLOCK: case RWLOCK_CLOCKRDLOCK: pthread_rwlock_wrlock(&rw); break;
    case SPIN_LOCK: pthread_spin_lock(&spin_obj); break;
    default: break;
    }
    atomic_store(&held, 1);
    sleep_ms(40);
    switch (k) {
    case MUTEX_TIMEDLOCK: case MUTEX_CLOCKLOCK: pthread_mutex_unlock(&m); break;
    case RWLOCK_WRLOCK: case RWLOCK_TIMEDWRLOCK: case RWLOCK_CLOCKWRLOCK:
    case RWLOCK_TIMEDRDLOCK: case RWLOCK_CLOCKRDLOCK: pthread_rwlock_unlock(&rw); break;
    case SPIN_LOCK: pthread_spin_unlock(&spin_obj); break;
    case COND_TIMEDWAIT: case COND_CLOCKWAIT:
        pthread_mutex_lock(&m);
        ready = 1;
        pthread_cond_signal(&cv);
        pthread_mutex_unlock(&m);
        break;
    case SEM_TIMEDWAIT: case SEM_CLOCKWAIT: sem_post(&sem); break;
    case BARRIER_WAIT: pthread_barrier_wait(&barrier); break;
    default: break;
    }
    return NULL;
}

#define CHECK(call) do { if ((call) != 0) abort(); } while (0)
__attribute__((noinline)) void site_mutex_timedlock(void) { struct timespec d = deadline(CLOCK_REALTIME); CHECK(pthread_mutex_timedlock(&m, &d)); pthread_mutex_unlock(&m); }
__attribute__((noinline)) void site_mutex_clocklock(void) { struct timespec d = deadline(CLOCK_MONOTONIC); CHECK(pthread_mutex_clocklock(&m, CLOCK_MONOTONIC, &d)); pthread_mutex_unlock(&m); }
__attribute__((noinline)) void site_rwlock_wrlock(void) { CHECK(pthread_rwlock_wrlock(&rw)); pthread_rwlock_unlock(&rw); }
__attribute__((noinline)) void site_rwlock_timedrdlock(void) { struct timespec d = deadline(CLOCK_REALTIME); CHECK(pthread_rwlock_timedrdlock(&rw, &d)); pthread_rwlock_unlock(&rw); }
__attribute__((noinline)) void site_rwlock_timedwrlock(void) { struct timespec d = deadline(CLOCK_REALTIME); CHECK(pthread_rwlock_timedwrlock(&rw, &d)); pthread_rwlock_unlock(&rw); }
__attribute__((noinline)) void site_rwlock_clockrdlock(void) { struct timespec d = deadline(CLOCK_MONOTONIC); CHECK(pthread_rwlock_clockrdlock(&rw, CLOCK_MONOTONIC, &d)); pthread_rwlock_unlock(&rw); }
__attribute__((noinline)) void site_rwlock_clockwrlock(void) { struct timespec d = deadline(CLOCK_MONOTONIC); CHECK(pthread_rwlock_clockwrlock(&rw, CLOCK_MONOTONIC, &d)); pthread_rwlock_unlock(&rw); }
__attribute__((noinline)) void site_cond_timedwait(void) {
    struct timespec d = deadline(CLOCK_REALTIME);
    pthread_mutex_lock(&m);
    while (!ready) CHECK(pthread_cond_timedwait(&cv, &m, &d));
    ready = 0;
    pthread_mutex_unlock(&m);
}
__attribute__((noinline)) void site_cond_clockwait(void) {
    struct timespec d = deadline(CLOCK_MONOTONIC);
    pthread_mutex_lock(&m);
    while (!ready) CHECK(pthread_cond_clockwait(&cv, &m, CLOCK_MONOTONIC, &d));
    ready = 0;
    pthread_mutex_unlock(&m);
}
__attribute__((noinline)) void site_sem_timedwait(void) { struct timespec d = deadline(CLOCK_REALTIME); CHECK(sem_timedwait(&sem, &d)); }
__attribute__((noinline)) void site_sem_clockwait(void) { struct timespec d = deadline(CLOCK_MONOTONIC); CHECK(sem_clockwait(&sem, CLOCK_MONOTONIC, &d)); }
__attribute__((noinline)) void site_spin_lock(void) { CHECK(pthread_spin_lock(&spin_obj)); pthread_spin_unlock(&spin_obj); }
__attribute__((noinline)) void site_barrier_wait(void) {
    int rc = pthread_barrier_wait(&barrier);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) abort();
}

static void run_variants(void) {
    void (*sites[KINDS])(void) = {
        site_mutex_timedlock, site_mutex_clocklock, site_rwlock_wrlock, site_rwlock_timedrdlock,
        site_rwlock_timedwrlock, site_rwlock_clockrdlock, site_rwlock_clockwrlock,
        site_cond_timedwait, site_cond_clockwait, site_sem_timedwait, site_sem_clockwait,
        site_spin_lock, site_barrier_wait,
    };
    sem_init(&sem, 0, 0);
    pthread_spin_init(&spin_obj, 0);
    pthread_barrier_init(&barrier, NULL, 2);
    for (int k = 0; k < KINDS; k++) {
        atomic_store(&held, 0);
        pthread_t t;
        pthread_create(&t, NULL, variant_helper, (void *)(long)k);
        while (!atomic_load(&held)) usleep(100);
        long long t0 = now_ns();
        sites[k]();
        fprintf(stderr, "%s_ns=%lld\n", kind_name[k], now_ns() - t0);
        pthread_join(t, NULL);
    }
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "none";
    pthread_t t[2];
    if (strcmp(mode, "mutex") == 0) {
        fprintf(stderr, "lock=%p\n", (void *)&m);
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
    } else if (strcmp(mode, "sampled") == 0) {
        sampled_n = argc > 2 ? atoi(argv[2]) : 1000;
        hold_us = argc > 3 ? atoi(argv[3]) : 1500;
        run_sampled();
    } else if (strcmp(mode, "variants") == 0) {
        run_variants();
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
