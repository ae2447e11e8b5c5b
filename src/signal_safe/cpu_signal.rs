//! The signal the CPU timers deliver, and whether they run: read by the CPU handler, the
//! mask shims, the signal table and the thread dump.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Whether the SIGPROF handler records samples.
pub static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The signal the timers deliver: SIGPROF, or the real-time signal they moved to when the
/// program took SIGPROF (`move_to`).
pub static SIGNAL: AtomicI32 = AtomicI32::new(libc::SIGPROF);

/// Records the signal the timers deliver.
pub fn set(sig: i32) {
    SIGNAL.store(sig, Ordering::Release);
}

/// The signal the timers deliver while CPU profiling runs; 0 when it does not.
/// Async-signal-safe.
pub fn in_use() -> i32 {
    if ACTIVE.load(Ordering::Acquire) {
        SIGNAL.load(Ordering::Acquire)
    } else {
        0
    }
}
