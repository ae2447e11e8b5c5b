//! The per-thread reentrancy guard: while it is held, the thread's allocations are rprof's
//! own and pass straight to the real allocator, unprofiled and without recursion.

use crate::thread_state;

/// Held while rprof itself runs on a thread (dumps, logging, the sampled path of a hook).
pub struct Guard(());

impl Guard {
    /// None when the thread already holds it (we are inside rprof already).
    pub fn enter() -> Option<Guard> {
        // Lazily: a Guard built and dropped when the thread already holds it would release
        // the outer holder's guard.
        thread_state::with(|t| (!t.held.replace(true)).then(|| Guard(())))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        thread_state::with(|t| t.held.set(false));
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

/// Marks the calling thread as rprof's for good (the collector thread).
pub fn hold_forever() {
    thread_state::with(|t| t.held.set(true));
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
