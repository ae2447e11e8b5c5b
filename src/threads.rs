//! The program's threads: each one started by `pthread_create` runs a trampoline that
//! arms its CPU timer first, and every one is counted while it lives.
//!
//! Why count: glibc ends a process whose last thread calls `pthread_exit` only when its
//! count of threads reaches zero, and the collector thread is one of them. When the last
//! of the program's own threads exits, the collector is stopped and joined first, so the
//! process ends exactly as it would without rprof (and writes its files at exit).
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use std::cell::Cell;

use crate::collector;
use crate::cpu;
use crate::interpose::real::PthreadCreateFn;
use crate::signal_safe::unwind::StackBounds;

type StartRoutine = extern "C" fn(*mut libc::c_void) -> *mut libc::c_void;

struct Start {
    routine: StartRoutine,
    arg: *mut libc::c_void,
}

thread_local! {
    /// This thread's stack span, recorded at registration; read by the unwinder.
    static STACK: Cell<Option<StackBounds>> = const { Cell::new(None) };
}

/// The calling thread's stack span, if it registered. Async-signal-safe.
pub fn stack_bounds() -> Option<StackBounds> {
    STACK.with(Cell::get)
}

/// Live threads of the program (not rprof's) that registered with [`register_current`].
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// pthread key (+1) whose destructor runs when a registered thread exits.
static EXIT_KEY: AtomicU32 = AtomicU32::new(0);

/// Creates the exit key. Call once at load, before registering threads.
pub fn init() {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: creates a key whose destructor is an extern "C" fn taking the value.
    if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } == 0 {
        EXIT_KEY.store(key + 1, Ordering::Release);
    }
}

/// Counts the calling thread as one of the program's, until it exits.
pub fn register_current() {
    STACK.with(|s| s.set(current_stack_bounds()));
    // Here rather than at its first malloc, which then makes no system call.
    crate::heap::claim_counters_now();
    let key = EXIT_KEY.load(Ordering::Acquire);
    if key == 0 {
        return;
    }
    LIVE.fetch_add(1, Ordering::AcqRel);
    // SAFETY: the key exists; any non-null value (never dereferenced) makes its destructor
    // run at thread exit.
    unsafe { libc::pthread_setspecific(key - 1, std::ptr::dangling::<libc::c_void>()) };
}

/// In a fork child only the forking thread exists.
pub fn reset_after_fork() {
    LIVE.store(1, Ordering::Release);
}

extern "C" fn on_thread_exit(_: *mut libc::c_void) {
    cpu::disarm_current_thread();
    crate::heap::release_thread();
    if LIVE.fetch_sub(1, Ordering::AcqRel) == 1 {
        collector::stop_and_join();
    }
}

/// pthread_create on behalf of the program.
///
/// # Safety
/// The arguments must be valid for pthread_create; `real` must be libc's pthread_create.
pub unsafe fn create(
    real: PthreadCreateFn,
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    routine: StartRoutine,
    arg: *mut libc::c_void,
) -> libc::c_int {
    if EXIT_KEY.load(Ordering::Acquire) == 0 {
        return real(thread, attr, routine, arg);
    }
    // The process is becoming multi-threaded: mutexes can be contended from now on, and
    // dumps move to rprof's own thread.
    crate::interpose::locks::set_threaded(true);
    crate::guard::unprofiled(collector::ensure_started);
    let start = crate::guard::unprofiled(|| Box::into_raw(Box::new(Start { routine, arg })));
    let rc = real(thread, attr, trampoline, start.cast());
    if rc != 0 {
        // SAFETY: the thread was not created, so nothing else owns `start`.
        crate::guard::unprofiled(|| drop(Box::from_raw(start)));
    }
    rc
}

extern "C" fn trampoline(p: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `p` is the Box leaked by `create` for exactly this thread.
    let start = crate::guard::unprofiled(|| {
        // SAFETY: as above.
        let start = unsafe { Box::from_raw(p as *mut Start) };
        register_current();
        cpu::arm_current_thread();
        *start
    });
    (start.routine)(start.arg)
}

/// Whether the process had threads other than the caller when rprof loaded (a library
/// constructor may start some). Not signal-safe.
pub fn others_at_load() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() > 1)
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
