//! Threads of rprof's own (the collector, the profile server's): started with libc's pthread_create, not
//! through the interposed one, so that they get no CPU timer and are not the program's;
//! every signal is blocked in them, so that process-directed signals go to the program's
//! threads; everything they allocate is rprof's (the guard is held for good).
#![allow(unsafe_code)]

use crate::interpose::real;

use std::sync::atomic::{AtomicI32, Ordering};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Kernel ids of rprof's threads alive now (0: free), so that thread dumps leave them out.
static OWN: [AtomicI32; 64] = [const { AtomicI32::new(0) }; 64];

/// Whether `tid` is one of rprof's own threads.
pub fn is_own(tid: i32) -> bool {
    OWN.iter().any(|t| t.load(Ordering::Acquire) == tid)
}

/// Starts `job` on a new, joinable thread of rprof's named `name` (at most 15 bytes);
/// None (with the error number) if the thread could not be created.
pub fn spawn(
    name: &'static std::ffi::CStr,
    job: impl FnOnce() + Send + 'static,
) -> Result<libc::pthread_t, i32> {
    let Some(create) = real::pthread_create() else {
        return Err(libc::ENOSYS);
    };
    // The process is multi-threaded from now on.
    crate::threads::set_threaded();
    crate::interpose::locks::set_threaded(true);
    let start: Box<(&'static std::ffi::CStr, Job)> = Box::new((name, Box::new(job)));
    let arg = Box::into_raw(start);
    // SAFETY: sigset_t is plain data; the mask calls only read and write these locals;
    // `run` takes ownership of `arg` if and only if the thread was created.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        crate::interpose::real::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut tid: libc::pthread_t = 0;
        let rc = create(&mut tid, std::ptr::null(), run, arg.cast());
        crate::interpose::real::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if rc != 0 {
            drop(Box::from_raw(arg));
            return Err(rc);
        }
        Ok(tid)
    }
}

/// As `spawn`, for a thread nobody joins; whether it started.
pub fn spawn_detached(name: &'static std::ffi::CStr, job: impl FnOnce() + Send + 'static) -> bool {
    match spawn(name, job) {
        // SAFETY: a thread just created, joinable, joined by nobody.
        Ok(tid) => unsafe { libc::pthread_detach(tid) == 0 },
        Err(_) => false,
    }
}

extern "C" fn run(arg: *mut libc::c_void) -> *mut libc::c_void {
    crate::guard::hold_forever();
    // SAFETY: `arg` is the Box leaked by `spawn` for exactly this thread.
    let (name, job) = *unsafe { Box::from_raw(arg as *mut (&'static std::ffi::CStr, Job)) };
    // SAFETY: PR_SET_NAME reads a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    let me = crate::signal_safe::sys::gettid();
    let slot = OWN.iter().find(|t| {
        t.compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    });
    job();
    if let Some(t) = slot {
        t.store(0, Ordering::Release);
    }
    std::ptr::null_mut()
}
