//! Each thread's stack span, recorded when the thread starts (or at load for the thread
//! that loads rprof) and read by the stack walks: the unwinder reads only memory between
//! the interrupted stack pointer and the top recorded here.
#![allow(unsafe_code)]

use std::cell::Cell;

use crate::signal_safe::unwind::StackBounds;

thread_local! {
    /// This thread's stack span, recorded by `record_current`.
    static STACK: Cell<Option<StackBounds>> = const { Cell::new(None) };
}

/// The calling thread's stack span, if it was recorded. Async-signal-safe.
pub fn stack_bounds() -> Option<StackBounds> {
    STACK.with(Cell::get)
}

/// Records the calling thread's stack span. Not signal-safe.
pub fn record_current() {
    STACK.with(|s| s.set(current_stack_bounds()));
}

/// The calling thread's stack span (pthread_getattr_np). Not signal-safe.
pub fn current_stack_bounds() -> Option<StackBounds> {
    // SAFETY: attr is initialised by pthread_getattr_np before use and destroyed after.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (rc == 0 && !addr.is_null()).then(|| StackBounds {
            lo: addr as u64,
            hi: addr as u64 + size as u64,
        })
    }
}
