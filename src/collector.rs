//! The collector thread: carries out dump requests that signal handlers can only record.
//!
//! Handlers talk to it through three counters and a futex word, all async-signal-safe:
//! `SNAPSHOT_REQUESTS` (the dump signal), `FATAL_REQUESTED`/`FATAL_DONE` (SIGINT/SIGTERM
//! that will end the process once the final files are written), and `WAKE`. No file
//! descriptor is involved, so a program that closes every fd cannot break it.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::dump;
use crate::interpose::real;
use crate::log::warning;
use crate::signal_safe::sys;

static WAKE: AtomicU32 = AtomicU32::new(0);
static SNAPSHOT_REQUESTS: AtomicU32 = AtomicU32::new(0);
static FATAL_REQUESTED: AtomicU32 = AtomicU32::new(0);
static FATAL_DONE: AtomicU32 = AtomicU32::new(0);
/// Set to make the collector thread return; its pthread_t (+1) while it runs.
static STOP: AtomicU32 = AtomicU32::new(0);
static THREAD: AtomicU64 = AtomicU64::new(0);

/// Requests wake the thread; this bounds a sleep in case a wake-up is ever missed.
const IDLE_WAIT_NS: u64 = 1_000_000_000;

/// Starts the collector thread with every signal blocked, so that process-directed
/// signals go to the program's threads, and without a CPU timer (it is not the program's).
pub fn start() {
    let Some(create) = real::pthread_create() else {
        warning!("pthread_create not found; snapshots are off");
        return;
    };
    // SAFETY: sigset_t is plain data; the calls below only read/write our locals.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        STOP.store(0, Ordering::Release);
        let mut tid: libc::pthread_t = 0;
        let rc = create(&mut tid, std::ptr::null(), run, std::ptr::null_mut());
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if rc == 0 {
            THREAD.store(tid as u64 + 1, Ordering::Release);
        } else {
            warning!("cannot start the collector thread (error {rc}); snapshots are off");
        }
    }
}

extern "C" fn run(_: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: PR_SET_NAME reads a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"rprof-collector".as_ptr()) };
    // Everything this thread allocates is rprof's own.
    crate::guard::hold_forever();
    // Requests count from 0 at load and at fork (before this thread starts): one that came
    // before this thread first ran is still served.
    let mut snapshots_done = 0;
    while STOP.load(Ordering::Acquire) == 0 {
        let seen = WAKE.load(Ordering::Acquire);
        sys::futex_wait(&WAKE, seen, IDLE_WAIT_NS);
        if STOP.load(Ordering::Acquire) != 0 {
            break;
        }
        // A panic here must not take the host down: report it and keep collecting.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if FATAL_REQUESTED.load(Ordering::Acquire) != 0 {
                dump::final_dump(dump::Ending::Dying);
                FATAL_DONE.store(1, Ordering::Release);
                sys::futex_wake(&FATAL_DONE);
            }
            let requested = SNAPSHOT_REQUESTS.load(Ordering::Acquire);
            if requested != snapshots_done {
                snapshots_done = requested;
                dump::snapshot();
            }
        }));
        if r.is_err() {
            warning!("internal error in the collector thread; the profile may be incomplete");
        }
    }
    std::ptr::null_mut()
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
    crate::interpose::locks::real_join((t - 1) as libc::pthread_t);
}

fn wake() {
    WAKE.fetch_add(1, Ordering::Release);
    sys::futex_wake(&WAKE);
}

/// Async-signal-safe. Asks for a snapshot of every profile.
pub fn request_snapshot() {
    SNAPSHOT_REQUESTS.fetch_add(1, Ordering::AcqRel);
    wake();
}

/// Async-signal-safe. Asks for the final files and waits up to `timeout_ns` for them.
pub fn request_final_dump_and_wait(timeout_ns: u64) {
    FATAL_REQUESTED.store(1, Ordering::Release);
    wake();
    let deadline = sys::monotonic_ns() + timeout_ns;
    while FATAL_DONE.load(Ordering::Acquire) == 0 {
        let now = sys::monotonic_ns();
        if now >= deadline {
            return;
        }
        sys::futex_wait(&FATAL_DONE, 0, (deadline - now).min(50_000_000));
    }
}

/// In a fork child: the collector thread did not survive the fork; forget requests meant
/// for the parent and start a new one.
pub fn restart_after_fork() {
    THREAD.store(0, Ordering::Relaxed);
    SNAPSHOT_REQUESTS.store(0, Ordering::Relaxed);
    FATAL_REQUESTED.store(0, Ordering::Relaxed);
    FATAL_DONE.store(0, Ordering::Relaxed);
    start();
}
