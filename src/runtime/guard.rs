//! The per-thread reentrancy guard: while it is held, the thread's allocations are rprof's
//! own and pass straight to the real allocator, unprofiled and without recursion.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use crate::signal_safe::thread_state;

/// Work a signal handler could not do on the spot because the thread it interrupted was
/// inside rprof (see `defer`): done when that thread releases its guard.
static DEFERRED: AtomicU32 = AtomicU32::new(0);
/// What does it; set once at load.
static ON_DEFERRED: OnceLock<fn()> = OnceLock::new();

/// Sets the function that carries out deferred work (once, at load).
pub fn set_deferred_handler(f: fn()) {
    let _ = ON_DEFERRED.set(f);
}

/// Async-signal-safe. Notes that deferred work waits for the next release of a guard.
pub fn defer() {
    DEFERRED.store(1, Ordering::Release);
}

/// Held while rprof itself runs on a thread (dumps, logging, the sampled path of a hook).
/// Meanwhile the thread's hooks write `heap::DISCARD` instead of its own counter block, so
/// that rprof's allocations are in no count and the unsampled paths need no test of the
/// flag; the block the thread had is kept here and put back on release.
pub struct Guard {
    block: isize,
}

impl Guard {
    /// None when the thread already holds it (we are inside rprof already).
    pub fn enter() -> Option<Guard> {
        // Lazily: a Guard built and dropped when the thread already holds it would release
        // the outer holder's guard.
        thread_state::with(|t| {
            (!t.held.replace(true)).then(|| Guard {
                block: t
                    .block
                    .replace(crate::signal_safe::heap_counters::DISCARD_OFFSET),
            })
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        thread_state::with(|t| {
            t.block.set(self.block);
            t.held.set(false);
        });
        if DEFERRED.load(Ordering::Acquire) != 0 && DEFERRED.swap(0, Ordering::AcqRel) != 0 {
            if let Some(f) = ON_DEFERRED.get() {
                f();
            }
        }
    }
}

/// Whether the calling thread is inside rprof.
#[inline(always)]
pub fn held() -> bool {
    thread_state::with(|t| t.held.get())
}

/// Runs `f` as rprof's own work: allocations in it are not profiled.
pub fn unprofiled<R>(f: impl FnOnce() -> R) -> R {
    let _g = Guard::enter();
    f()
}

/// Marks the calling thread as rprof's for good (its own threads).
pub fn hold_forever() {
    thread_state::with(|t| {
        t.held.set(true);
        t.block
            .set(crate::signal_safe::heap_counters::DISCARD_OFFSET);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_enter_leaves_the_outer_guard_held() {
        let outer = Guard::enter().expect("not held yet");
        assert!(held());
        assert!(Guard::enter().is_none());
        unprofiled(|| assert!(held()));
        assert!(held(), "still held by the outer guard");
        drop(outer);
        assert!(!held());
    }
}
