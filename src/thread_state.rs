//! The per-thread state the hooks read on every call, in one thread-local so that a hook
//! computes one address: the reentrancy flag (`guard`) and the heap sampler's countdown,
//! random state and counter block (`heap`). Const-initialised, no destructor (a TLS
//! destructor registration would call calloc from inside malloc).
//!
//! Access goes through `FastTls` (the thread pointer plus a fixed offset) once `init` has
//! run, and through the ordinary thread-local access before that.

use std::cell::Cell;

use crate::fast_tls::FastTls;

pub struct ThreadState {
    /// Inside rprof: allocations pass through unprofiled (see `guard`).
    pub held: Cell<bool>,
    /// Bytes left before the next heap sample (see `heap`).
    pub countdown: Cell<i64>,
    pub seeded: Cell<bool>,
    pub rng: Cell<u64>,
    /// This thread's counter block in `heap` (null until first use).
    pub block: Cell<*const ()>,
}

thread_local! {
    static STATE: ThreadState = const {
        ThreadState {
            held: Cell::new(false),
            countdown: Cell::new(0),
            seeded: Cell::new(false),
            rng: Cell::new(0),
            block: Cell::new(std::ptr::null()),
        }
    };
}

static FAST: FastTls = FastTls::new();

/// Enables the fast access path. Call once at load, on the main thread.
pub fn init() {
    FAST.init(STATE.with(|s| s as *const ThreadState as usize));
}

/// Runs `f` on the calling thread's state if the fast access is ready (else None).
#[inline(always)]
#[allow(unsafe_code)]
pub fn with_fast<R>(f: impl FnOnce(&ThreadState) -> R) -> Option<R> {
    // SAFETY: as in `with`.
    FAST.get()
        .map(|a| f(unsafe { &*(a as *const ThreadState) }))
}

/// Runs `f` on the calling thread's state.
#[inline(always)]
#[allow(unsafe_code)]
pub fn with<R>(f: impl FnOnce(&ThreadState) -> R) -> R {
    match FAST.get() {
        // SAFETY: FastTls gives the address of this thread's STATE, which lives as long as
        // the thread; the reference does not escape `f`.
        Some(a) => f(unsafe { &*(a as *const ThreadState) }),
        None => STATE.with(f),
    }
}
