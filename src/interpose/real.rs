//! The next definitions (in lookup order) of the functions rprof interposes, found with
//! dlsym(RTLD_NEXT) and cached. `init` resolves them all at load so that signal handlers
//! only ever read the cache.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, Ordering};

pub type PthreadCreateFn = unsafe extern "C" fn(
    *mut libc::pthread_t,
    *const libc::pthread_attr_t,
    extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
    *mut libc::c_void,
) -> libc::c_int;
type SigactionFn =
    unsafe extern "C" fn(libc::c_int, *const libc::sigaction, *mut libc::sigaction) -> libc::c_int;
type SignalFn = unsafe extern "C" fn(libc::c_int, libc::sighandler_t) -> libc::sighandler_t;
type DlcloseFn = unsafe extern "C" fn(*mut libc::c_void) -> libc::c_int;

struct Next {
    name: &'static CStr,
    ptr: AtomicPtr<libc::c_void>,
}

impl Next {
    const fn new(name: &'static CStr) -> Self {
        Next {
            name,
            ptr: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    fn get(&self) -> *mut libc::c_void {
        let p = self.ptr.load(Ordering::Acquire);
        if !p.is_null() {
            return p;
        }
        // SAFETY: dlsym with a NUL-terminated name.
        let p = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) };
        self.ptr.store(p, Ordering::Release);
        p
    }
}

static PTHREAD_CREATE: Next = Next::new(c"pthread_create");
static SIGACTION: Next = Next::new(c"sigaction");
static SIGNAL: Next = Next::new(c"signal");
static DLCLOSE: Next = Next::new(c"dlclose");

pub fn init() {
    for n in [&PTHREAD_CREATE, &SIGACTION, &SIGNAL, &DLCLOSE] {
        n.get();
    }
}

pub fn pthread_create() -> Option<PthreadCreateFn> {
    let p = PTHREAD_CREATE.get();
    // SAFETY: a non-null result of dlsym("pthread_create") has this signature.
    (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut libc::c_void, PthreadCreateFn>(p) })
}

/// Calls the real sigaction; -1 with ENOSYS if it cannot be found.
pub fn sigaction(sig: i32, act: *const libc::sigaction, oact: *mut libc::sigaction) -> i32 {
    let p = SIGACTION.get();
    if p.is_null() {
        // SAFETY: writes this thread's errno.
        unsafe { *libc::__errno_location() = libc::ENOSYS };
        return -1;
    }
    // SAFETY: dlsym("sigaction") has this signature; arguments are the caller's.
    unsafe { std::mem::transmute::<*mut libc::c_void, SigactionFn>(p)(sig, act, oact) }
}

pub fn signal(sig: i32, handler: libc::sighandler_t) -> libc::sighandler_t {
    let p = SIGNAL.get();
    if p.is_null() {
        return libc::SIG_ERR;
    }
    // SAFETY: dlsym("signal") has this signature.
    unsafe { std::mem::transmute::<*mut libc::c_void, SignalFn>(p)(sig, handler) }
}

pub fn dlclose(handle: *mut libc::c_void) -> i32 {
    let p = DLCLOSE.get();
    if p.is_null() {
        return -1;
    }
    // SAFETY: dlsym("dlclose") has this signature; the handle is the program's.
    unsafe { std::mem::transmute::<*mut libc::c_void, DlcloseFn>(p)(handle) }
}
