/* Reports what the program sees of its signal dispositions (as CPython does before it
 * installs its SIGINT handler), then installs its own SIGTERM handler, which must win:
 * on SIGTERM it prints "caught TERM" and exits 3. With argument "prof" it also takes
 * SIGPROF for itself (setitimer) and reports how many SIGPROFs from POSIX timers (rprof's,
 * never its own) reached its handler; with
 * "usr2" it installs its own SIGUSR2 handler and raises SIGUSR2, which that handler must
 * receive (rprof's dump signal is taken over). With "legacy" it does the same through the
 * old interfaces: sigset for SIGUSR2 (first SIG_HOLD, then a handler, which unblocks it)
 * and sysv_signal for SIGPROF (a one-shot handler that re-arms itself), printing what each
 * call returned. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include "common.h"

/* sigset is the legacy interface under test. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

static volatile sig_atomic_t got_term, prof_count;
static volatile unsigned long sink;

static void on_term(int sig) { (void)sig; got_term = 1; }
/* Counts SIGPROFs from POSIX timers (si_code SI_TIMER): the program made none, only its
 * setitimer, so any such signal would be rprof's leaking into its handler. */
static volatile sig_atomic_t timer_signals;
static void on_prof(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    if (si->si_code == SI_TIMER) timer_signals++;
    else prof_count++;
}
static volatile sig_atomic_t got_usr2;
static void on_usr2(int sig) { (void)sig; got_usr2 = 1; }
static void on_prof_sysv(int sig) { prof_count++; sysv_signal(sig, on_prof_sysv); }

static void own_profiling_timer(void) {
    struct itimerval it = {{0, 10000}, {0, 10000}};
    setitimer(ITIMER_PROF, &it, NULL);
    while (prof_count < 20) sink += spin(100000);
    it.it_value.tv_usec = it.it_interval.tv_usec = 0;
    setitimer(ITIMER_PROF, &it, NULL);
    printf("own SIGPROF handler ran\n");
}

static const char *name(void (*h)(int)) {
    return h == SIG_DFL ? "default" : h == SIG_IGN ? "ignore" : "handler";
}

int main(int argc, char **argv) {
    struct sigaction sa;
    const int sigs[] = {SIGINT, SIGTERM, SIGPROF, SIGUSR2};
    const char *names[] = {"INT", "TERM", "PROF", "USR2"};
    for (int i = 0; i < 4; i++) {
        sigaction(sigs[i], NULL, &sa);
        printf("%s=%s\n", names[i], name(sa.sa_handler));
    }
    void (*old)(int) = signal(SIGUSR2, SIG_DFL);
    printf("signal(USR2) returned %s\n", name(old));
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGTERM, NULL, &sa);
    printf("TERM now=%s\n", name(sa.sa_handler));
    if (argc > 1 && strcmp(argv[1], "prof") == 0) {
        struct sigaction prof;
        memset(&prof, 0, sizeof prof);
        prof.sa_sigaction = on_prof;
        prof.sa_flags = SA_SIGINFO | SA_RESTART;
        sigaction(SIGPROF, &prof, NULL);
        own_profiling_timer();
        printf("timer signals seen by the program: %d\n", (int)timer_signals);
    }
    if (argc > 1 && strcmp(argv[1], "legacy") == 0) {
        void (*held)(int) = sigset(SIGUSR2, SIG_HOLD);
        printf("sigset(USR2, SIG_HOLD) returned %s\n", name(held));
        void (*set)(int) = sigset(SIGUSR2, on_usr2);
        printf("sigset(USR2, handler) returned %s\n", set == SIG_HOLD ? "hold" : name(set));
        raise(SIGUSR2);
        printf(got_usr2 ? "own USR2 handler ran\n" : "USR2 handler did not run\n");
        void (*prof)(int) = sysv_signal(SIGPROF, on_prof_sysv);
        printf("sysv_signal(PROF) returned %s\n", name(prof));
        own_profiling_timer();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "usr2") == 0) {
        signal(SIGUSR2, on_usr2);
        raise(SIGUSR2);
        printf(got_usr2 ? "own USR2 handler ran\n" : "USR2 handler did not run\n");
        return 0;
    }
    printf("waiting\n");
    fflush(stdout);
    for (int i = 0; i < 500 && !got_term; i++) usleep(10000);
    if (got_term) { printf("caught TERM\n"); return 3; }
    return 0;
}
