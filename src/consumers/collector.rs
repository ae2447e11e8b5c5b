//! Carries out the dumps that signal handlers ask for: on rprof's collector thread in a
//! process that has started threads, else on the spot, in the handler itself.
//!
//! No thread in a single-threaded process: glibc keeps its single-threaded fast paths
//! (stdio and mutexes without atomics) only while a process has one thread, and `setpriv`
//! or `unshare -U` need one. The collector thread starts when the program creates its
//! first thread (`ensure_started`, from the pthread_create hook). Until then the dump
//! signal and a fatal SIGINT/SIGTERM are served by the handler on the program's only
//! thread, which is safe when that thread was not inside rprof (its guard, rprof's
//! allocator lock): rprof then needs no lock the interrupted code may hold, since its
//! memory is its own. Otherwise the work is deferred to the moment the thread leaves rprof
//! (`guard::defer`), a few instructions later.
//!
//! Handlers talk to it through three counters and a futex word, all async-signal-safe:
//! `SNAPSHOT_REQUESTS` (the dump signal), `FATAL_REQUESTED`/`FATAL_DONE` (SIGINT/SIGTERM
//! that will end the process once the final files are written), and `WAKE`. No file
//! descriptor is involved, so a program that closes every fd cannot break it.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use std::sync::atomic::AtomicBool;

use crate::consumers::files;
use crate::runtime::guard;
use crate::runtime::log::warning;
use crate::signal_safe::lock::store_changed;
use crate::signal_safe::own_alloc::OWN;
use crate::signal_safe::real;
use crate::signal_safe::sys;

static WAKE: AtomicU32 = AtomicU32::new(0);
static SNAPSHOT_REQUESTS: AtomicU32 = AtomicU32::new(0);
static FATAL_REQUESTED: AtomicU32 = AtomicU32::new(0);
static FATAL_DONE: AtomicU32 = AtomicU32::new(0);
/// Requests for the final files while the program goes on (`final_files_and_wait`).
static FINAL_NOW_REQUESTS: AtomicU32 = AtomicU32::new(0);
static FINAL_NOW_SERVED: AtomicU32 = AtomicU32::new(0);
/// Set to make the collector thread return; its pthread_t (+1) while it runs.
static STOP: AtomicU32 = AtomicU32::new(0);
static THREAD: AtomicU64 = AtomicU64::new(0);
/// The collector thread was started (or is not to be).
static STARTED: AtomicBool = AtomicBool::new(false);
/// Snapshot requests served so far (by the collector thread or on the spot).
static SNAPSHOTS_SERVED: AtomicU32 = AtomicU32::new(0);
/// The fatal signal whose final dump was deferred (0: none).
static FATAL_SIGNAL: AtomicU32 = AtomicU32::new(0);
/// How long a fatal SIGINT/SIGTERM waits for the collector's final files before dying anyway.
pub const FATAL_DUMP_TIMEOUT_NS: u64 = 5_000_000_000;
/// Stack a dump on the spot needs below the interrupted frame.
const STACK_NEEDED: u64 = 256 << 10;

/// Requests wake the thread; this bounds a sleep in case a wake-up is ever missed.
const IDLE_WAIT_NS: u64 = 1_000_000_000;
const THREAD_SCAN_NS: u64 = 200_000_000;

/// Starts the collector thread if it is not running yet: when the program creates its
/// first thread (or has threads at load).
pub fn ensure_started() {
    if !STARTED.swap(true, Ordering::AcqRel) {
        start();
    }
}

fn running() -> bool {
    THREAD.load(Ordering::Acquire) != 0
}

/// Starts the collector thread (a thread of rprof's own: every signal blocked, so that
/// process-directed signals go to the program's threads, and no CPU timer).
fn start() {
    STOP.store(0, Ordering::Release);
    match crate::runtime::own_threads::spawn(c"rprof-collector", run) {
        Ok(tid) => THREAD.store(tid + 1, Ordering::Release),
        Err(rc) => warning!("cannot start the collector thread (error {rc}); snapshots are off"),
    }
}

fn run() {
    while STOP.load(Ordering::Acquire) == 0 {
        let seen = WAKE.load(Ordering::Acquire);
        // While CPU timers run, threads rprof did not see start are looked for 5 times a
        // second (a directory read of /proc/self/task: about 20 µs).
        let wait = if crate::kinds::cpu::signal_in_use() != 0 {
            THREAD_SCAN_NS
        } else {
            IDLE_WAIT_NS
        };
        let wait = files::until_period(sys::monotonic_ns()).map_or(wait, |p| wait.min(p.max(1)));
        sys::futex_wait(&WAKE, seen, wait);
        if STOP.load(Ordering::Acquire) != 0 {
            break;
        }
        // A panic here must not take the host down: report it and keep collecting.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if FATAL_REQUESTED.load(Ordering::Acquire) != 0 {
                crate::consumers::finish(files::Ending::Dying);
                FATAL_DONE.store(1, Ordering::Release);
                sys::futex_wake(&FATAL_DONE);
            }
            let wanted = FINAL_NOW_REQUESTS.load(Ordering::Acquire);
            if FINAL_NOW_SERVED.load(Ordering::Acquire) != wanted {
                files::final_files_now();
                FINAL_NOW_SERVED.store(wanted, Ordering::Release);
                sys::futex_wake(&FINAL_NOW_SERVED);
            }
            // Threads rprof did not see start get their CPU timers (within 200 ms, and
            // before each snapshot).
            crate::kinds::cpu::arm_unknown_threads();
            // A request that came before this thread first ran is served too.
            let requested = SNAPSHOT_REQUESTS.load(Ordering::Acquire);
            if SNAPSHOTS_SERVED.swap(requested, Ordering::AcqRel) != requested {
                files::snapshot(false);
            }
            files::periodic(sys::monotonic_ns());
        }));
        if r.is_err() {
            warning!("internal error in the collector thread; the profile may be incomplete");
        }
    }
}

/// Stops the collector thread and waits until it has exited (the program's last thread
/// is exiting). Not for signal context.
pub fn stop_and_join() {
    let t = THREAD.swap(0, Ordering::AcqRel);
    if t == 0 {
        return;
    }
    STOP.store(1, Ordering::Release);
    wake();
    // t - 1 is the joinable collector thread, joined only here (THREAD was swapped).
    crate::signal_safe::real::pthread_join((t - 1) as libc::pthread_t);
}

fn wake() {
    WAKE.fetch_add(1, Ordering::Release);
    sys::futex_wake(&WAKE);
}

/// Async-signal-safe. Asks for a snapshot of every profile.
pub fn request_snapshot() {
    SNAPSHOT_REQUESTS.fetch_add(1, Ordering::AcqRel);
    if running() {
        wake();
    } else {
        serve_here();
    }
}

/// Async-signal-safe. SIGINT/SIGTERM at their default action: writes the final files
/// (waiting a bounded time for the collector thread when there is one), then dies of `sig`
/// as the default action would. Returns only when that had to be deferred: the signal
/// interrupted rprof's own code on this thread, which may hold a lock the dump needs, so
/// the dump waits until the thread has left rprof (a few instructions later).
pub fn on_fatal_signal(sig: i32, timeout_ns: u64) {
    FATAL_SIGNAL.store(sig as u32, Ordering::Release);
    if guard::held() {
        guard::defer();
        return;
    }
    if running() {
        die_after_collector_dump(sig, timeout_ns);
    }
    serve_here();
}

/// Async-signal-safe. Has the collector thread write the final files now, while the
/// program goes on, and waits for them (at most `timeout_ns`). Only where the collector
/// thread runs (a Go program always has threads); false if it does not.
pub fn final_files_and_wait(timeout_ns: u64) -> bool {
    if !running() || guard::held() {
        return false;
    }
    let ticket = FINAL_NOW_REQUESTS.fetch_add(1, Ordering::AcqRel) + 1;
    wake();
    let deadline = sys::monotonic_ns() + timeout_ns;
    loop {
        let served = FINAL_NOW_SERVED.load(Ordering::Acquire);
        if served.wrapping_sub(ticket) as i32 >= 0 {
            return true;
        }
        let now = sys::monotonic_ns();
        if now >= deadline {
            return false;
        }
        sys::futex_wait(&FINAL_NOW_SERVED, served, (deadline - now).min(50_000_000));
    }
}

/// Has the collector thread write the final files, waits for it (at most `timeout_ns`),
/// then dies of `sig`.
fn die_after_collector_dump(sig: i32, timeout_ns: u64) {
    FATAL_REQUESTED.store(1, Ordering::Release);
    wake();
    let deadline = sys::monotonic_ns() + timeout_ns;
    while FATAL_DONE.load(Ordering::Acquire) == 0 {
        let now = sys::monotonic_ns();
        if now >= deadline {
            break;
        }
        sys::futex_wait(&FATAL_DONE, 0, (deadline - now).min(50_000_000));
    }
    die_of(sig);
}

/// Async-signal-safe. Dies of `sig` by its default action (the files are written).
pub fn die_of(sig: i32) {
    // SAFETY: plain data and async-signal-safe calls (sigaction, pthread_sigmask, tgkill).
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        real::sigaction(sig, &dfl, std::ptr::null_mut());
        sys::tgkill_self(sys::gettid(), sig);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        real::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// Whether a dump can run right here, in a handler that interrupted the program: not inside
/// rprof (no rprof lock or its allocator held by this thread, and no other thread exists),
/// and stack enough below.
fn safe_here() -> bool {
    if guard::held() || OWN.is_locked() {
        return false;
    }
    let probe = 0u8;
    let sp = std::ptr::addr_of!(probe) as u64;
    // The stack this runs on: the thread's, or the alternate stack a handler was delivered
    // on (a dump signal that lands while the CPU handler runs there).
    let floor = crate::signal_safe::thread_stacks::floor_of(sp);
    floor != 0 && sp - floor >= STACK_NEEDED
}

/// Async-signal-safe: runs the requested dumps now if that is safe, else defers them.
fn serve_here() {
    if safe_here() {
        serve_now();
    } else {
        guard::defer();
    }
}

/// Carries out what was asked for, on this thread (no collector thread runs).
fn serve_now() {
    let Some(_g) = guard::Guard::enter() else {
        guard::defer();
        return;
    };
    crate::kinds::cpu::own_work(true);
    let fatal = FATAL_SIGNAL.swap(0, Ordering::AcqRel);
    if fatal != 0 {
        crate::consumers::finish(files::Ending::Dying);
        die_of(fatal as i32);
    }
    let requested = SNAPSHOT_REQUESTS.load(Ordering::Acquire);
    if SNAPSHOTS_SERVED.swap(requested, Ordering::AcqRel) != requested {
        files::snapshot(true);
    }
    crate::kinds::cpu::own_work(false);
}

/// Deferred work, once a thread has left rprof (see `guard::set_deferred_handler`).
pub fn serve_deferred() {
    if !running() {
        serve_now();
        return;
    }
    let fatal = FATAL_SIGNAL.swap(0, Ordering::AcqRel);
    if fatal != 0 {
        die_after_collector_dump(fatal as i32, FATAL_DUMP_TIMEOUT_NS);
    }
}

/// In a fork child: the collector thread did not survive the fork, and the child has one
/// thread; requests meant for the parent are forgotten.
#[allow(unsafe_code)]
#[link_section = ".text.hot.rprof_fork"]
pub fn reset_after_fork() {
    store_changed!(THREAD, 0);
    store_changed!(STARTED, false);
    store_changed!(SNAPSHOT_REQUESTS, 0);
    store_changed!(SNAPSHOTS_SERVED, 0);
    store_changed!(FATAL_REQUESTED, 0);
    store_changed!(FATAL_DONE, 0);
    store_changed!(FATAL_SIGNAL, 0);
    store_changed!(FINAL_NOW_REQUESTS, 0);
    store_changed!(FINAL_NOW_SERVED, 0);
}
