//! Everything reachable from a signal handler (and from the malloc and lock hooks, which
//! walk stacks with the same unwinder).
//!
//! Contract for every function in this module tree: no heap allocation, no lock that
//! interrupted code may hold, no panic (no slice indexing that can fail, no unwrap), and no
//! libc call that is not async-signal-safe. errno is preserved by the handlers themselves
//! ([`ErrnoGuard`]). Memory is read only where it is known to be mapped: the interrupted
//! thread's stack between its stack pointer and the top recorded when the thread started,
//! and the loaded objects that `_dl_find_object` reports. The few functions here that only
//! rprof's own threads call (a store's `init`, `stack_requests::ask_quietly`) say so.

pub mod alt_stack;
mod cfi;
pub mod cpu_signal;
pub mod fast_hash;
pub mod frame;
/// Go frames beyond a cgo call (`runtime.asmcgocall`).
pub mod go_frames;
pub mod heap_counters;
pub mod lock;
pub mod own_alloc;
pub mod real;
mod rule_cache;
pub mod stack_requests;
pub mod sys;
pub mod thread_stacks;
pub mod thread_state;
pub mod trace_store;
/// The stack walk itself; `cfi` parses the unwind tables, `rule_cache` remembers rules.
pub mod unwind;

#[cfg(test)]
mod tests;

pub use sys::ErrnoGuard;
