//! The per-thread reentrancy guard: while it is held, the thread's allocations are rprof's
//! own and pass straight to the real allocator, unprofiled and without recursion.

use std::cell::Cell;

thread_local! {
    static HELD: Cell<bool> = const { Cell::new(false) };
}

/// Held while rprof itself runs on a thread (dumps, logging, the sampled path of a hook).
pub struct Guard(());

impl Guard {
    /// None when the thread already holds it (we are inside rprof already).
    pub fn enter() -> Option<Guard> {
        HELD.with(|h| (!h.replace(true)).then_some(Guard(())))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        HELD.with(|h| h.set(false));
    }
}

/// Whether the calling thread is inside rprof.
#[inline]
pub fn held() -> bool {
    HELD.with(Cell::get)
}

/// Runs `f` as rprof's own work: allocations in it are not profiled.
pub fn unprofiled<R>(f: impl FnOnce() -> R) -> R {
    let _g = Guard::enter();
    f()
}

/// Marks the calling thread as rprof's for good (the collector thread).
pub fn hold_forever() {
    HELD.with(|h| h.set(true));
}
