//! The per-thread reentrancy guard: while it is held, the thread's allocations are rprof's
//! own and pass straight to the real allocator, unprofiled and without recursion.
#![allow(unsafe_code)]

use std::cell::Cell;

use crate::fast_tls::FastTls;

thread_local! {
    static HELD: Cell<bool> = const { Cell::new(false) };
}

static HELD_FAST: FastTls = FastTls::new();

/// Enables the fast access path. Call once at load, on the main thread.
pub fn init_fast_access() {
    HELD_FAST.init(HELD.with(|h| h as *const Cell<bool> as usize));
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
#[inline(always)]
pub fn held() -> bool {
    match HELD_FAST.get() {
        // SAFETY: FastTls gives the address of this thread's HELD (a Cell<bool>).
        Some(a) => unsafe { (*(a as *const Cell<bool>)).get() },
        None => HELD.with(Cell::get),
    }
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
