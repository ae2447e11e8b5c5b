//! Threads of rprof's own (the collector, the profile server's): started with libc's pthread_create, not
//! through the interposed one, so that they get no CPU timer and are not the program's;
//! every signal is blocked in them, so that process-directed signals go to the program's
//! threads; everything they allocate is rprof's (the guard is held for good).
#![allow(unsafe_code)]

use crate::signal_safe::real;

use std::sync::atomic::{AtomicI32, Ordering};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Kernel ids of rprof's threads (0: free), so that thread dumps leave them out. A slot
/// outlives its thread's job: the thread is still listed in /proc for a moment after it,
/// so the slot is freed only once the thread is gone (see `take_slot`).
static OWN: [AtomicI32; 64] = [const { AtomicI32::new(0) }; 64];

/// Whether `tid` is one of rprof's own threads.
pub fn is_own(tid: i32) -> bool {
    OWN.iter().any(|t| t.load(Ordering::Acquire) == tid)
}

/// Takes a slot for thread `me`: a free one, or one whose thread no longer exists.
fn take_slot(me: i32) -> bool {
    OWN.iter().any(|t| {
        let was = t.load(Ordering::Acquire);
        (was == 0 || !crate::signal_safe::sys::thread_exists(was))
            && t.compare_exchange(was, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    })
}

/// What `spawn` hands its new thread.
struct Start {
    name: &'static std::ffi::CStr,
    job: Job,
    /// Set by the thread once it is in OWN; `spawn` waits for it (it is on spawn's stack).
    registered: *const std::sync::atomic::AtomicBool,
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
    crate::runtime::threads::set_threaded();
    let registered = std::sync::atomic::AtomicBool::new(false);
    let start = Box::new(Start {
        name,
        job: Box::new(job),
        registered: &registered,
    });
    let arg = Box::into_raw(start);
    // SAFETY: sigset_t is plain data; the mask calls only read and write these locals;
    // `run` takes ownership of `arg` if and only if the thread was created.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        crate::signal_safe::real::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut tid: libc::pthread_t = 0;
        let rc = create(&mut tid, std::ptr::null(), run, arg.cast());
        crate::signal_safe::real::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if rc != 0 {
            drop(Box::from_raw(arg));
            return Err(rc);
        }
        // Until the thread is in OWN, a thread dump would take it for the program's.
        while !registered.load(Ordering::Acquire) {
            libc::sched_yield();
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
    crate::runtime::guard::hold_forever();
    take_slot(crate::signal_safe::sys::gettid());
    // SAFETY: `arg` is the Box leaked by `spawn` for exactly this thread.
    let start = *unsafe { Box::from_raw(arg as *mut Start) };
    // SAFETY: `spawn` waits on this flag, on its stack, until it is set; not touched after.
    unsafe { (*start.registered).store(true, Ordering::Release) };
    // SAFETY: PR_SET_NAME reads a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, start.name.as_ptr()) };
    (start.job)();
    std::ptr::null_mut()
}
