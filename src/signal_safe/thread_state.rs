//! The per-thread state the hooks read, in one thread-local: which heap counter block the
//! thread writes (`block`; the only field the unsampled malloc and free paths read, first
//! so that they reach it with one `%fs`-relative load), the reentrancy flag (`held`), the
//! heap sampler's random state and the thread's stack span (read by every stack walk).
//!
//! The thread-local is defined in assembly, in `.tbss`, and reached with the initial-exec
//! TLS model: the dynamic linker puts its offset from the thread pointer in a GOT slot when
//! it relocates the library, so an access is that load plus `%fs`, valid from the first
//! call on (before the library's constructor, in every thread), with no `__tls_get_addr`
//! (Rust's thread-locals in a shared library call it, and stable Rust cannot pick the
//! model). librprof.so is loaded at startup (LD_PRELOAD), so its TLS is in the static TLS
//! area; a dlopen of it uses glibc's surplus static TLS, which these 48 bytes fit.
//!
//! All fields start as zero bytes (`.tbss`), which is a valid state: block offset 0 is
//! `heap`'s UNCLAIMED block, the flags are false. No destructor (a TLS destructor
//! registration would call calloc from inside malloc).
#![allow(unsafe_code)]

use std::cell::Cell;

#[repr(C)]
pub struct ThreadState {
    /// The counter block the hooks write (`heap::Counters`), as its offset from
    /// `heap::HOT`: `heap::UNCLAIMED` (0) until the thread's first call claims one,
    /// `heap::DISCARD` while the guard is held.
    pub block: Cell<isize>,
    /// Inside rprof: allocations pass through unprofiled (see `guard`).
    pub held: Cell<bool>,
    pub seeded: Cell<bool>,
    /// `thread_stacks::learned` has looked the stack span up already.
    pub stack_looked_up: Cell<bool>,
    pub rng: Cell<u64>,
    /// The thread's stack span [stack_lo, stack_hi) (`thread_stacks`); stack_hi 0: not
    /// recorded.
    pub stack_lo: Cell<u64>,
    pub stack_hi: Cell<u64>,
}

std::arch::global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 4",
    // Global but hidden: the hooks' assembly (another object file) names it; it is not
    // exported from the library.
    ".globl rprof_thread_state",
    ".hidden rprof_thread_state",
    ".type rprof_thread_state,@tls_object",
    ".size rprof_thread_state, {size}",
    "rprof_thread_state:",
    ".zero {size}",
    ".popsection",
    size = const std::mem::size_of::<ThreadState>(),
);

/// The calling thread's state: its TLS offset (from the GOT) plus the thread pointer
/// (`%fs:0` holds its own address on x86-64 Linux).
#[inline(always)]
fn state() -> *const ThreadState {
    let p: *const ThreadState;
    // SAFETY: reads the GOT slot the dynamic linker filled with the thread-local's offset,
    // and the TCB self-pointer; no side effects but the flags.
    unsafe {
        std::arch::asm!(
            "mov {p}, qword ptr [rip + rprof_thread_state@GOTTPOFF]",
            "add {p}, qword ptr fs:[0]",
            p = out(reg) p,
            options(nostack, pure, readonly),
        )
    };
    p
}

/// Runs `f` on the calling thread's state.
#[inline(always)]
pub fn with<R>(f: impl FnOnce(&ThreadState) -> R) -> R {
    // SAFETY: `state` is this thread's instance, which lives as long as the thread and is
    // valid as zero bytes; the reference does not escape `f`.
    f(unsafe { &*state() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_has_its_own_state_starting_at_zero() {
        let here = with(|t| t as *const ThreadState as usize);
        with(|t| t.rng.set(7));
        let there = std::thread::spawn(|| {
            with(|t| {
                assert_eq!((t.block.get(), t.held.get(), t.rng.get()), (0, false, 0));
                assert_eq!((t.stack_lo.get(), t.stack_hi.get()), (0, 0));
                t as *const ThreadState as usize
            })
        })
        .join()
        .unwrap();
        assert_ne!(here, there);
        assert_eq!(with(|t| t.rng.get()), 7);
    }
}
