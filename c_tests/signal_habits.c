/* What real programs do with signals, stacks and descriptors, one mode per habit:
 *
 * block_all    as xz -T2: block every signal, start two workers (which inherit the mask),
 *              restore the mask; each worker burns about 0.4 s in burn_blocked. Prints
 *              whether each mask read back is the one set. A third worker blocks SIGPROF
 *              with the raw system call and burns in burn_raw: it cannot be sampled.
 * take_prof    as GNU sort: handlers on HUP, INT, TERM and PROF; then burns in
 *              burn_after_take, then runs its own ITIMER_PROF and counts its ticks and any
 *              timer signal (SI_TIMER) that reached its handler, which must be none.
 * take_all     takes every real-time signal and then SIGPROF for its own handlers, and
 *              burns in burn_after_take: no signal is left for rprof's timers.
 * prof_default burns in burn_before_prof, then starts ITIMER_PROF at SIGPROF's default
 *              action: it dies of SIGPROF (else prints "not killed" after about 4 s).
 * wait_prof    prints "waiting" and sleeps (up to 5 s): `kill -PROF` ends it.
 * resethand    as node: a SIGTERM handler installed with SA_RESETHAND that raises SIGTERM
 *              again; burns in burn_before_term, then raises SIGTERM: it dies of SIGTERM.
 * stderr_swap  burns a little, then closes fd 2 and opens argv[2] as fd 2 (a data file),
 *              writes to it, takes the dump signal for itself (which rprof warns about),
 *              writes again and exits 0.
 * _exit        forks a child that burns in child_work and ends with _exit(3), one that
 *              ends with _Exit(4), and a vfork child that calls _exit(0) at once; prints
 *              their statuses, and their pids on stderr (child=, child2=, vchild=).
 * small_stack ROOM
 *              a thread with a 16 KiB stack recurses in frames of 256 bytes until only
 *              the kernel's signal frame (measured first) and ROOM bytes are left below,
 *              and burns at the bottom (prints signal_frame= and depth= on stderr).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>
#include "common.h"

static volatile unsigned long sink;

__attribute__((noinline)) void burn_blocked(void) { for (int i = 0; i < 300; i++) sink += spin(1000000); }
__attribute__((noinline)) void burn_raw(void) { for (int i = 0; i < 100; i++) sink += spin(1000000); }
__attribute__((noinline)) void burn_after_take(void) { for (int i = 0; i < 300; i++) sink += spin(1000000); }
__attribute__((noinline)) void burn_before_prof(void) { for (int i = 0; i < 200; i++) sink += spin(1000000); }
__attribute__((noinline)) void burn_before_term(void) { for (int i = 0; i < 200; i++) sink += spin(1000000); }
__attribute__((noinline)) void child_work(void) { for (int i = 0; i < 200; i++) sink += spin(1000000); }

/* Whether `got` holds exactly the signals of `want` that can be blocked at all. */
static int same_mask(const sigset_t *want, const sigset_t *got) {
    for (int s = 1; s < 65; s++) {
        if (s == SIGKILL || s == SIGSTOP || s == 32 || s == 33) continue;
        if (sigismember(want, s) != sigismember(got, s)) return 0;
    }
    return 1;
}

static void *blocked_worker(void *arg) {
    sigset_t all, now;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    *(int *)arg = same_mask(&all, &now);
    burn_blocked();
    return NULL;
}

static void *raw_worker(void *arg) {
    (void)arg;
    unsigned long one = 1UL << (SIGPROF - 1);
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, &one, NULL, 8);
    burn_raw();
    return NULL;
}

static int block_all(void) {
    sigset_t all, old, back;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_sigmask(SIG_SETMASK, NULL, &back);
    printf("full mask read back: %s\n", same_mask(&all, &back) ? "yes" : "no");
    pthread_t t[3];
    int inherited[2] = {0, 0};
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, blocked_worker, &inherited[i]);
    pthread_sigmask(SIG_SETMASK, &old, &back);
    printf("full mask given back: %s\n", same_mask(&all, &back) ? "yes" : "no");
    /* sigprocmask, SIG_BLOCK and SIG_UNBLOCK of SIGPROF alone. */
    sigset_t prof, got;
    sigemptyset(&prof);
    sigaddset(&prof, SIGPROF);
    sigprocmask(SIG_BLOCK, &prof, NULL);
    sigprocmask(SIG_BLOCK, NULL, &got);
    printf("SIGPROF blocked as asked: %s\n", sigismember(&got, SIGPROF) == 1 ? "yes" : "no");
    sigprocmask(SIG_UNBLOCK, &prof, &got);
    printf("SIGPROF was blocked: %s\n", sigismember(&got, SIGPROF) == 1 ? "yes" : "no");
    sigprocmask(SIG_SETMASK, NULL, &got);
    printf("SIGPROF unblocked again: %s\n", sigismember(&got, SIGPROF) == 0 ? "yes" : "no");
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        printf("worker inherited the full mask: %s\n", inherited[i] ? "yes" : "no");
    }
    pthread_create(&t[2], NULL, raw_worker, NULL);
    pthread_join(t[2], NULL);
    report_cpu();
    return 0;
}

static volatile sig_atomic_t own_ticks, timer_signals;
static void on_prof(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    if (si->si_code == SI_TIMER) timer_signals++;
    else own_ticks++;
}
static void on_other(int sig) { (void)sig; _exit(9); }

static int take_prof(void) {
    /* sort's list of caught signals, each with every other one blocked in its handler. */
    const int caught[] = {SIGHUP, SIGINT, SIGTERM, SIGPROF};
    sigset_t mask;
    sigemptyset(&mask);
    for (int i = 0; i < 4; i++) sigaddset(&mask, caught[i]);
    for (int i = 0; i < 4; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_mask = mask;
        if (caught[i] == SIGPROF) {
            sa.sa_sigaction = on_prof;
            sa.sa_flags = SA_SIGINFO | SA_RESTART;
        } else {
            sa.sa_handler = on_other;
        }
        sigaction(caught[i], &sa, NULL);
    }
    struct sigaction back;
    sigaction(SIGPROF, NULL, &back);
    printf("own SIGPROF handler in place: %s, mask kept: %s\n",
           back.sa_sigaction == on_prof ? "yes" : "no",
           sigismember(&back.sa_mask, SIGPROF) == 1 ? "yes" : "no");
    burn_after_take();
    struct itimerval it = {{0, 10000}, {0, 10000}};
    setitimer(ITIMER_PROF, &it, NULL);
    while (own_ticks < 20) sink += spin(100000);
    memset(&it, 0, sizeof it);
    setitimer(ITIMER_PROF, &it, NULL);
    printf("own ticks: 20 or more: %s; rprof timer signals seen: %d\n",
           own_ticks >= 20 ? "yes" : "no", (int)timer_signals);
    report_cpu();
    return 0;
}

static void on_rt(int sig) { (void)sig; }

static int take_all(void) {
    for (int s = SIGRTMIN; s <= SIGRTMAX; s++) signal(s, on_rt);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_prof;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGPROF, &sa, NULL);
    burn_after_take();
    printf("rprof timer signals seen: %d\n", (int)timer_signals);
    return 0;
}

static int prof_default(void) {
    burn_before_prof();
    fflush(stdout);
    struct itimerval it = {{0, 10000}, {0, 10000}};
    setitimer(ITIMER_PROF, &it, NULL);
    /* About 4 s at most: SIGPROF should end it within 10 ms. */
    for (int i = 0; i < 3000; i++) sink += spin(1000000);
    printf("not killed\n");
    return 0;
}

static int wait_prof(void) {
    printf("waiting\n");
    fflush(stdout);
    for (int i = 0; i < 500; i++) usleep(10000);
    printf("not killed\n");
    return 0;
}

static void on_term_once(int sig) {
    static const char msg[] = "handler ran\n";
    write(1, msg, sizeof msg - 1);
    raise(sig); /* blocked while this runs; delivered at its default action once it returns */
}

static int resethand(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term_once;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGTERM, &sa, NULL);
    burn_before_term();
    fflush(stdout);
    raise(SIGTERM);
    printf("survived\n");
    return 0;
}

static void on_usr2(int sig) { (void)sig; }

static int stderr_swap(const char *data) {
    burn_before_term();
    close(2);
    int fd = open(data, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd != 2) return 1;
    write(2, "data\n", 5);
    signal(SIGUSR2, on_usr2); /* rprof's dump signal: it would warn */
    write(2, "more data\n", 10);
    return 0;
}

static int exits(void) {
    fflush(stdout);
    pid_t a = fork();
    if (a == 0) { child_work(); _exit(3); }
    pid_t b = fork();
    if (b == 0) { child_work(); _Exit(4); }
    pid_t v = vfork();
    if (v == 0) _exit(0);
    fprintf(stderr, "child=%d\nchild2=%d\nvchild=%d\n", (int)a, (int)b, (int)v);
    int sa, sb, sv;
    waitpid(a, &sa, 0);
    waitpid(b, &sb, 0);
    waitpid(v, &sv, 0);
    printf("statuses %d %d %d\n", WEXITSTATUS(sa), WEXITSTATUS(sb), WEXITSTATUS(sv));
    return 0;
}

/* small_stack: the kernel's signal frame here (measured once on the main thread), the low
 * end of the small thread's stack, and how much room to leave below the deepest frame on
 * top of a signal frame. */
static size_t signal_frame;
static char *stack_low;
static size_t room;
static int deepest;

static void on_usr1(int sig, siginfo_t *si, void *ucv) {
    (void)sig; (void)si;
    ucontext_t *uc = ucv;
    char here;
    signal_frame = (size_t)((char *)uc->uc_mcontext.gregs[REG_RSP] - &here);
}

__attribute__((noinline)) unsigned long deep(int depth) {
    volatile char frame[256];
    frame[0] = (char)depth;
    unsigned long r;
    /* 512: spin's frame and what a call costs, below this one. */
    if ((size_t)((char *)frame - stack_low) < signal_frame + room + 512) {
        deepest = depth;
        r = 0;
        for (int i = 0; i < 150; i++) r += spin(1000000);
    } else {
        r = deep(depth + 1);
    }
    return r + frame[0];
}

static void *small(void *arg) {
    (void)arg;
    pthread_attr_t at;
    void *addr;
    size_t size;
    pthread_getattr_np(pthread_self(), &at);
    pthread_attr_getstack(&at, &addr, &size);
    pthread_attr_destroy(&at);
    stack_low = addr;
    sink += deep(1);
    return NULL;
}

static int small_stack(const char *room_arg) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    raise(SIGUSR1);
    room = (size_t)atol(room_arg);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setstacksize(&at, 16384);
    pthread_t t;
    if (pthread_create(&t, &at, small, NULL) != 0) return 2;
    pthread_join(t, NULL);
    printf("small stack thread done\n");
    fprintf(stderr, "signal_frame=%zu\ndepth=%d\n", signal_frame, deepest);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "block_all")) return block_all();
    if (!strcmp(mode, "take_prof")) return take_prof();
    if (!strcmp(mode, "take_all")) return take_all();
    if (!strcmp(mode, "prof_default")) return prof_default();
    if (!strcmp(mode, "wait_prof")) return wait_prof();
    if (!strcmp(mode, "resethand")) return resethand();
    if (!strcmp(mode, "stderr_swap") && argc > 2) return stderr_swap(argv[2]);
    if (!strcmp(mode, "_exit")) return exits();
    if (!strcmp(mode, "small_stack") && argc > 2) return small_stack(argv[2]);
    fprintf(stderr, "usage: signal_habits MODE\n");
    return 2;
}
