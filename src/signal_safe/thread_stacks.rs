//! Each thread's stack span, recorded when the thread starts (or at load for the thread
//! that loads rprof) and read by the stack walks: the unwinder reads only memory between
//! the interrupted stack pointer and the top recorded here.
#![allow(unsafe_code)]

//!
//! The span is kept in the thread's `ThreadState` (initial-exec TLS, one `%fs` load): a
//! Rust thread-local in a shared library costs a `__tls_get_addr` call, whose reads of the
//! thread's DTV miss the cache on every sampled allocation.

use crate::signal_safe::thread_state;
use crate::signal_safe::unwind::StackBounds;

/// The calling thread's stack span, looked up now if it was never recorded: a thread
/// rprof did not see start (made through a `pthread_create` found past the interposer, or
/// a raw `clone`) gets its span at its first hooked call, and its later CPU samples and
/// waits their whole stacks. Not signal-safe (pthread_getattr_np allocates): for hooks,
/// inside the reentrancy guard.
pub fn learned() -> Option<StackBounds> {
    if let Some(b) = stack_bounds() {
        return Some(b);
    }
    if thread_state::with(|t| t.stack_looked_up.replace(true)) {
        return None;
    }
    record_current();
    stack_bounds()
}

/// The calling thread's stack span, if it was recorded. Async-signal-safe.
#[inline]
pub fn stack_bounds() -> Option<StackBounds> {
    thread_state::with(|t| {
        let hi = t.stack_hi.get();
        (hi != 0).then(|| StackBounds::live(t.stack_lo.get(), hi))
    })
}

/// The lowest address the stack the caller runs on may use (0: not known), for `here`, an
/// address in the caller's frame. Async-signal-safe. On the thread's own stack, its
/// recorded floor; on an alternate signal stack (one rprof gave the thread, the program's
/// own, Go's), that stack's lowest address: a handler, or work deferred to one, runs there.
pub fn floor_of(here: u64) -> u64 {
    match stack_bounds() {
        Some(b) if here >= b.lo && here < b.hi => b.lo,
        Some(_) => crate::signal_safe::alt_stack::floor_if_ours(here)
            .unwrap_or_else(|| crate::signal_safe::sys::alternate_stack_floor(here)),
        None => 0,
    }
}

/// Records the calling thread's stack span. Not signal-safe.
pub fn record_current() {
    let b = current_stack_bounds();
    thread_state::with(|t| {
        t.stack_lo.set(b.map_or(0, |b| b.lo));
        t.stack_hi.set(b.map_or(0, |b| b.hi));
    });
}

/// The calling thread's stack span. Not signal-safe.
pub fn current_stack_bounds() -> Option<StackBounds> {
    let main = crate::signal_safe::sys::gettid() as u32 == std::process::id();
    main.then(main_stack_bounds)
        .flatten()
        .or_else(pthread_stack_bounds)
}

/// The main thread's stack, without reading /proc/self/maps as pthread_getattr_np does
/// for it (that read is a good part of what a short process pays at load). The kernel
/// copies the executable's name (AT_EXECFN) first, at the very top of the stack mapping,
/// so the page that ends it is the last one; the stack may grow down to RLIMIT_STACK.
fn main_stack_bounds() -> Option<StackBounds> {
    // SAFETY: getauxval only reads the auxiliary vector.
    let execfn = unsafe { libc::getauxval(libc::AT_EXECFN) };
    if execfn == 0 {
        return None;
    }
    // SAFETY: AT_EXECFN points to the NUL-terminated name the kernel placed on the stack.
    let len = unsafe { libc::strlen(execfn as *const libc::c_char) } as u64;
    let hi = (execfn + len + 1).next_multiple_of(4096);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills `lim`.
    let limit = match unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut lim) } {
        0 if lim.rlim_cur != libc::RLIM_INFINITY => lim.rlim_cur,
        _ => 1 << 30,
    };
    let here = &lim as *const _ as u64;
    (here < hi).then(|| StackBounds::live(hi.saturating_sub(limit.max(hi - here)), hi))
}

/// The calling thread's stack span from pthread_getattr_np.
fn pthread_stack_bounds() -> Option<StackBounds> {
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
        (rc == 0 && !addr.is_null())
            .then(|| StackBounds::live(addr as u64, addr as u64 + size as u64))
    }
}
