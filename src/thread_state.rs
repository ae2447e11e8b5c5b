//! The per-thread state the hooks read, in one thread-local: the heap counter block the
//! thread writes (`heap`; the only field the unsampled malloc and free paths read, first
//! so that they reach it with one `%fs`-relative load), the reentrancy flag (`guard`) and
//! the heap sampler's random state. Const-initialised, no destructor (a TLS destructor
//! registration would call calloc from inside malloc).
//!
//! Access goes through `FastTls` (the thread pointer plus a fixed offset) once `init` has
//! run, and through the ordinary thread-local access before that.

use std::cell::Cell;

use crate::fast_tls::FastTls;

#[repr(C)]
pub struct ThreadState {
    /// The counter block the hooks write (`heap::Counters`): `heap::UNCLAIMED` until the
    /// thread's first call claims one, `heap::DISCARD` while the guard is held. Never null.
    pub block: Cell<*const ()>,
    /// Inside rprof: allocations pass through unprofiled (see `guard`).
    pub held: Cell<bool>,
    pub seeded: Cell<bool>,
    pub rng: Cell<u64>,
}

thread_local! {
    static STATE: ThreadState = const {
        ThreadState {
            block: Cell::new(crate::heap::UNCLAIMED_PTR),
            held: Cell::new(false),
            seeded: Cell::new(false),
            rng: Cell::new(0),
        }
    };
}

static FAST: FastTls = FastTls::new();

/// Enables the fast access path. Call once at load, on the main thread.
pub fn init() {
    FAST.init(STATE.with(|s| s as *const ThreadState as usize));
}

/// The calling thread's `block` field, read with one `%fs`-relative load, if the fast
/// access is ready (else None).
#[inline(always)]
pub fn block_fast() -> Option<*const ()> {
    // `block` is the first field of the repr(C) state: its address is the state's.
    FAST.load_word().map(|w| w as *const ())
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
