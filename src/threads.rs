//! Threads the program starts: each runs a trampoline that arms its CPU timer first.
#![allow(unsafe_code)]

use crate::cpu;
use crate::interpose::real::PthreadCreateFn;
use crate::signal_safe::unwind::StackBounds;

type StartRoutine = extern "C" fn(*mut libc::c_void) -> *mut libc::c_void;

struct Start {
    routine: StartRoutine,
    arg: *mut libc::c_void,
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
    if !cpu::is_active() {
        return real(thread, attr, routine, arg);
    }
    let start = Box::into_raw(Box::new(Start { routine, arg }));
    let rc = real(thread, attr, trampoline, start.cast());
    if rc != 0 {
        // SAFETY: the thread was not created, so nothing else owns `start`.
        drop(Box::from_raw(start));
    }
    rc
}

extern "C" fn trampoline(p: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `p` is the Box leaked by `create` for exactly this thread.
    let start = unsafe { Box::from_raw(p as *mut Start) };
    cpu::arm_current_thread(current_stack_bounds());
    (start.routine)(start.arg)
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
