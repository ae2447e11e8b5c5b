//! The program's signal masks never block the CPU timers' signal, and the program never
//! notices.
//!
//! Servers and tools like `xz -T2` block every signal, start their workers (which inherit
//! that mask) and let one thread take signals: without this, their workers are never
//! sampled. The interposed `pthread_sigmask` and `sigprocmask` pass the program's request
//! on without the CPU signal, and keep per thread what the program believes about it, so
//! that every old mask read back is exactly the one the program set. A new thread inherits
//! its creator's belief, as it inherits its mask. `sigwait`, `sigwaitinfo`, `sigtimedwait`
//! and `signalfd` leave the CPU signal out of their sets, so that they never take a timer
//! signal meant for the handler. The masks that `sigsuspend`, `pselect`, `ppoll` and
//! `epoll_pwait` install only while the thread sleeps are left alone: a sleeping thread
//! uses no CPU, so its timer does not fire, and a signal held back meanwhile is delivered
//! when the call returns.
//!
//! When the CPU signal moves (the program took it), each thread's belief is carried over
//! the next time it changes its mask: the old signal is blocked for real if the program
//! wanted it so, and the new one, which the program never saw, starts from the real mask.
//!
//! A thread that blocks the CPU signal behind rprof's back (a raw system call) cannot be
//! sampled: it is counted, and said once.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::runtime::log::warning;
use crate::signal_safe::real;

thread_local! {
    /// (the signal this belief is about, whether the program believes it blocked here).
    static VIEW: Cell<(i32, bool)> = const { Cell::new((0, false)) };
    /// This thread was found unsampleable already.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

/// Threads found with the CPU signal blocked behind rprof's back.
static UNSAMPLEABLE: AtomicU64 = AtomicU64::new(0);

/// The signal kept deliverable: the CPU timers' while CPU profiling runs; 0 otherwise.
fn kept() -> i32 {
    crate::signal_safe::cpu_signal::in_use()
}

fn empty_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        s
    }
}

/// Whether `sig` is in `set` (a readable sigset).
fn member(set: &libc::sigset_t, sig: i32) -> bool {
    // SAFETY: reads a valid sigset.
    unsafe { libc::sigismember(set, sig) == 1 }
}

fn with(set: &libc::sigset_t, sig: i32, on: bool) -> libc::sigset_t {
    let mut s = *set;
    // SAFETY: edits our copy of a valid sigset.
    unsafe {
        if on {
            libc::sigaddset(&mut s, sig);
        } else {
            libc::sigdelset(&mut s, sig);
        }
    }
    s
}

fn real_mask_change(how: i32, sig: i32) {
    let one = with(&empty_set(), sig, true);
    real::pthread_sigmask(how, &one, std::ptr::null_mut());
}

fn really_blocked(sig: i32) -> bool {
    let mut cur = empty_set();
    real::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur) == 0 && member(&cur, sig)
}

/// Brings this thread's belief up to date with the kept signal `k`; returns whether the
/// program believes `k` blocked. Async-signal-safe.
fn reconcile(k: i32) -> bool {
    let (sig, blocked) = VIEW.with(Cell::get);
    if sig == k {
        return blocked;
    }
    if sig != 0 && blocked {
        // No longer rprof's: blocked for real, as the program asked.
        real_mask_change(libc::SIG_BLOCK, sig);
    }
    let now = k != 0 && really_blocked(k);
    if now {
        real_mask_change(libc::SIG_UNBLOCK, k);
    }
    VIEW.with(|v| v.set((k, now)));
    now
}

/// At load, on the thread that loaded rprof: an inherited mask that blocks the CPU signal
/// is the program's belief, no longer the real mask.
pub fn init_current_thread() {
    reconcile(kept());
}

/// This thread's belief, for a thread it creates (which inherits its mask).
pub fn view() -> (i32, bool) {
    VIEW.with(Cell::get)
}

/// In a new thread: the belief of the thread that created it.
pub fn set_view(v: (i32, bool)) {
    VIEW.with(|c| c.set(v));
}

/// The interposed pthread_sigmask / sigprocmask, `real` being the next definition.
/// Async-signal-safe.
pub fn program_mask(
    real: fn(i32, *const libc::sigset_t, *mut libc::sigset_t) -> i32,
    how: i32,
    set: *const libc::sigset_t,
    old: *mut libc::sigset_t,
) -> i32 {
    let k = kept();
    if k == 0 && VIEW.with(Cell::get).0 == 0 {
        return real(how, set, old);
    }
    let believed = reconcile(k);
    if k == 0 {
        return real(how, set, old);
    }
    // SAFETY: a non-null `set` is the program's readable sigset.
    let asked = (!set.is_null()).then(|| unsafe { *set });
    let passed = asked.map(|s| with(&s, k, false));
    let rc = real(
        how,
        passed.as_ref().map_or(std::ptr::null(), |s| s as *const _),
        old,
    );
    if rc == 0 {
        if !old.is_null() {
            // SAFETY: `old` is the program's writable sigset, just filled in.
            unsafe { *old = with(&*old, k, believed) };
        }
        if let Some(a) = asked {
            let wanted = member(&a, k);
            let now = match how {
                libc::SIG_BLOCK => believed || wanted,
                libc::SIG_UNBLOCK => believed && !wanted,
                libc::SIG_SETMASK => wanted,
                _ => believed,
            };
            VIEW.with(|v| v.set((k, now)));
        }
    }
    rc
}

/// `set` without the CPU signal, for sigwait and its kin and signalfd, unless that would
/// leave nothing to wait for. None: pass the program's set as it is.
pub fn wait_set(set: *const libc::sigset_t) -> Option<libc::sigset_t> {
    let k = kept();
    if k == 0 || set.is_null() {
        return None;
    }
    // SAFETY: the program's readable sigset.
    let s = unsafe { *set };
    if !member(&s, k) {
        return None;
    }
    let without = with(&s, k, false);
    (1..=libc::SIGRTMAX())
        .any(|sig| member(&without, sig))
        .then_some(without)
}

/// Checks whether the calling thread has the CPU signal blocked behind rprof's back (at
/// its exit, and at the final dump); counts it once and says so the first time. Not for
/// signal context.
pub fn check_current_thread() {
    check_current_thread_for(kept());
}

/// `check_current_thread` for CPU signal `k` (0: none), which the final dump reads before
/// it stops the timers, so that no sample lands in the checks.
pub fn check_current_thread_for(k: i32) {
    if k == 0 || COUNTED.with(Cell::get) || VIEW.with(Cell::get).0 != k {
        return;
    }
    if really_blocked(k) {
        COUNTED.with(|c| c.set(true));
        note_unsampleable(crate::signal_safe::sys::gettid(), k);
    }
}

/// Counts a thread that cannot be sampled; the first one is reported.
pub fn note_unsampleable(tid: i32, k: i32) {
    if UNSAMPLEABLE.fetch_add(1, Ordering::Relaxed) == 0 {
        warning!("thread {tid} blocks signal {k} (rprof's CPU timer signal) with a raw system call; such threads are not sampled (said once)");
    }
}

/// Threads found unsampleable so far.
pub fn unsampleable() -> u64 {
    UNSAMPLEABLE.load(Ordering::Relaxed)
}

/// The program's other live threads with the CPU signal blocked, from
/// /proc/self/task/*/status (at the final dump). Threads rprof set itself are skipped.
pub fn check_other_threads_for(k: i32) {
    if k == 0 {
        return;
    }
    let me = crate::signal_safe::sys::gettid();
    for tid in crate::runtime::threads::task_ids() {
        if tid == me || crate::runtime::own_threads::is_own(tid) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")) else {
            continue;
        };
        let blocked = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            // Every signal blocked is glibc at work (a thread being created or exiting
            // blocks them all for a moment), not the program: not counted.
            .is_some_and(|bits| bits & (1 << (k - 1)) != 0 && bits.count_ones() < 60);
        if blocked {
            note_unsampleable(tid, k);
        }
    }
}

/// In a fork child: its one thread keeps its belief; the count starts again.
pub fn reset_after_fork() {
    crate::signal_safe::lock::store_changed!(UNSAMPLEABLE, 0);
}
