//! The trampoline every thread started by `pthread_create` runs first: it registers the
//! thread, arms its CPU timer and hands it the mask its creator believed in; and the
//! creation itself is recorded (the threadcreate kind).
#![allow(unsafe_code)]

use std::sync::atomic::Ordering;

use crate::consumers::collector;
use crate::kinds::cpu;
use crate::runtime::threads;
use crate::signal_safe::real::PthreadCreateFn;

type StartRoutine = extern "C" fn(*mut libc::c_void) -> *mut libc::c_void;

struct Start {
    routine: StartRoutine,
    arg: *mut libc::c_void,
    /// The creator's belief about the CPU signal in its mask, which the thread inherits.
    mask_view: (i32, bool),
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
    if threads::EXIT_KEY.load(Ordering::Acquire) == 0 {
        return real(thread, attr, routine, arg);
    }
    // The process is becoming multi-threaded: mutexes can be contended from now on, and
    // dumps move to rprof's own thread.
    threads::set_threaded();
    crate::runtime::guard::unprofiled(|| {
        crate::kinds::threadcreate::record(crate::interpose::pthread_create as *const () as usize)
    });
    crate::runtime::guard::unprofiled(collector::ensure_started);
    let start = crate::runtime::guard::unprofiled(|| {
        Box::into_raw(Box::new(Start {
            routine,
            arg,
            mask_view: crate::runtime::masks::view(),
        }))
    });
    let rc = real(thread, attr, trampoline, start.cast());
    if rc != 0 {
        // SAFETY: the thread was not created, so nothing else owns `start`.
        crate::runtime::guard::unprofiled(|| drop(Box::from_raw(start)));
    }
    rc
}

extern "C" fn trampoline(p: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `p` is the Box leaked by `create` for exactly this thread.
    let start = crate::runtime::guard::unprofiled(|| {
        // SAFETY: as above.
        let start = unsafe { Box::from_raw(p as *mut Start) };
        crate::runtime::masks::set_view(start.mask_view);
        threads::register_current();
        cpu::arm_current_thread();
        *start
    });
    (start.routine)(start.arg)
}
